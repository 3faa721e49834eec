//! Reading every rate-limit header dialect in use into one [`RateLimitSnapshot`].
//!
//! | dialect | fields | reset |
//! |---|---|---|
//! | [`Dialect::IetfStructured`] (draft -08..-10) | `RateLimit: "default";r=50;t=30`, `RateLimit-Policy: "burst";q=100;w=60, "daily";q=1000;w=86400` | `t`, seconds |
//! | [`Dialect::IetfCombined`] (draft -07) | `RateLimit: limit=100, remaining=50, reset=5`, `RateLimit-Policy: 100;w=10` | seconds |
//! | [`Dialect::IetfSeparate`] (draft -00..-06) | `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` | seconds |
//! | [`Dialect::Genesys`] | `inin-ratelimit-count` (used), `-allowed` (limit), `-reset` | seconds |
//! | [`Dialect::XRateLimit`] (GitHub) | `X-RateLimit-Limit`, `-Remaining`, `-Reset` | epoch seconds |
//! | [`Dialect::XRateLimitDashed`] (X, the guide) | `X-Rate-Limit-Limit`, `-Remaining`, `-Reset` | epoch or seconds |
//!
//! The IETF dialects are read with the `ietf-ratelimit` feature, the `X-` ones with
//! `x-ratelimit` (both on by default); Genesys Cloud's always.
//!
//! # Precedence
//!
//! When a response carries several dialects, the first in the table that yields anything wins:
//! the IETF fields have defined semantics (and the structured form can describe several
//! policies), the Genesys fields are what Genesys Cloud actually sends, and the `X-` fields are
//! conventions whose meaning varies by server. A dialect whose fields are all malformed does not
//! count, and the next one is tried.
//!
//! # Reset: a delay or an epoch?
//!
//! Servers disagree: GitHub sends epoch seconds, most others a delay. Treating an epoch as a delay
//! gives "retry after 1792152901 seconds" (crunchtools/mcp-github PR #42), so every reset value,
//! whatever the dialect, goes through one rule:
//!
//! - below 1 000 000 000 it is a delay in seconds (as a delay that is 31 years; as an epoch it
//!   would be before September 2001, when no current server was written);
//! - from 1 000 000 000 it is an epoch in seconds, and from 1 000 000 000 000 an epoch in
//!   milliseconds (as seconds, that is after the year 33 000). An epoch is turned into a delay
//!   from `reference` (the server's `Date`, else the local wall clock). With no reference the
//!   reset is unknown; an epoch already past is a zero delay; an epoch more than two years after
//!   the reference is implausible and the reset is unknown.
//!
//! (A "within ±2 years of the reference means epoch" rule for smaller values was considered and
//! rejected: with a correct clock it adds nothing to the threshold above, and with an unset
//! clock, a device at 1970 plus uptime, it would misread every short delay as a past epoch.)
//!
//! # Values
//!
//! Only non-negative integers count. In the plain fields a value is the leading run of digits
//! (so `100, 100;w=60` from early drafts reads as 100), saturating instead of overflowing; a value
//! that is not numeric (`12.5`, `ten`, `-1`) is ignored. The `RateLimit` and `RateLimit-Policy`
//! fields are parsed as RFC 8941 structured fields by a small subset parser written here (lists
//! and dictionaries of items with parameters; integers, decimals, strings, tokens, byte
//! sequences, booleans, inner lists). As the drafts require, a malformed structured field is
//! ignored as a whole. With several policies in `RateLimit`, the most restrictive one (least
//! remaining) is reported, with its `RateLimit-Policy` quota and window.

use crate::http::Headers;
use crate::http::retry_after::saturating_decimal;
use crate::ratelimit::{Dialect, RateLimitSnapshot};
use crate::time::{Duration, UnixTime};

/// Reset values at or above this are epoch seconds, below it delays (2001-09-09T01:46:40Z).
pub const EPOCH_THRESHOLD: u64 = 1_000_000_000;
/// Reset values at or above this are epoch milliseconds.
pub const EPOCH_MILLIS_THRESHOLD: u64 = 1_000_000_000_000;
/// An epoch reset further than this after the reference is implausible (two years).
pub const MAX_EPOCH_HORIZON: Duration = Duration::from_secs(2 * 366 * 86_400);

/// Reads the rate-limit state a response reports, in whichever dialect it uses.
///
/// `reference` is the wall-clock time the response was received at (its `Date` header if
/// present, else the local clock); it is only needed to turn an epoch reset into a delay.
/// Returns `None` when no dialect yields a single usable value.
///
/// ```
/// use credflow_core::ratelimit::{headers::parse_rate_limit, Dialect};
/// use credflow_core::{Duration, UnixTime};
///
/// let genesys = [("inin-ratelimit-count", "1"), ("inin-ratelimit-allowed", "180"), ("inin-ratelimit-reset", "61")];
/// let s = parse_rate_limit(&genesys, None).unwrap();
/// assert_eq!((s.limit, s.remaining, s.dialect), (Some(180), Some(179), Dialect::Genesys));
/// assert_eq!(s.reset_after, Some(Duration::from_secs(61)));
///
/// // GitHub's epoch reset (with the `x-ratelimit` feature).
/// # #[cfg(feature = "x-ratelimit")] {
/// let github = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1792152901")];
/// let s = parse_rate_limit(&github, Some(UnixTime::from_secs(1_792_152_841))).unwrap();
/// assert_eq!(s.reset_after, Some(Duration::from_secs(60)));
/// # }
/// ```
#[must_use]
pub fn parse_rate_limit<H: Headers + ?Sized>(
    headers: &H,
    reference: Option<UnixTime>,
) -> Option<RateLimitSnapshot> {
    // Most responses carry none of the fields below: one pass over their names says so.
    parse_listed(headers, reference, headers.any_name(names_rate_limit))
}

/// [`parse_rate_limit`], told already whether the headers hold a rate-limit field (`listed`,
/// their pass over the names: `None` where they cannot list them).
pub(crate) fn parse_listed<H: Headers + ?Sized>(
    headers: &H,
    reference: Option<UnixTime>,
    listed: Option<bool>,
) -> Option<RateLimitSnapshot> {
    if listed == Some(false) {
        return None;
    }
    let combined = headers.get("ratelimit");
    let policy = headers.get("ratelimit-policy");
    if cfg!(feature = "ietf-ratelimit") && (combined.is_some() || policy.is_some()) {
        if let Some(s) = ietf_structured(combined, policy, reference) {
            return Some(s);
        }
        if let Some(s) = ietf_combined(combined, policy, reference) {
            return Some(s);
        }
    }
    // The three-field dialects, tried in order: Genesys Cloud's after the IETF draft's
    // separate fields. Without the features that read other servers' dialects, Genesys
    // Cloud's alone.
    const PLAIN: &[PlainDialect] = &[
        #[cfg(feature = "ietf-ratelimit")]
        PlainDialect {
            dialect: Dialect::IetfSeparate,
            limit: "ratelimit-limit",
            count: Count::Remaining("ratelimit-remaining"),
            reset: "ratelimit-reset",
        },
        PlainDialect {
            dialect: Dialect::Genesys,
            limit: "inin-ratelimit-allowed",
            count: Count::Used("inin-ratelimit-count"),
            reset: "inin-ratelimit-reset",
        },
        #[cfg(feature = "x-ratelimit")]
        PlainDialect {
            dialect: Dialect::XRateLimit,
            limit: "x-ratelimit-limit",
            count: Count::Remaining("x-ratelimit-remaining"),
            reset: "x-ratelimit-reset",
        },
        #[cfg(feature = "x-ratelimit")]
        PlainDialect {
            dialect: Dialect::XRateLimitDashed,
            limit: "x-rate-limit-limit",
            count: Count::Remaining("x-rate-limit-remaining"),
            reset: "x-rate-limit-reset",
        },
    ];
    PLAIN.iter().find_map(|row| plain(headers, row, reference))
}

/// Whether a field named `name` may be one of the dialects' fields (any case): each of them
/// starts with `ratelimit`, `inin-ratelimit`, `x-ratelimit` or `x-rate-limit`.
pub(crate) fn names_rate_limit(name: &str) -> bool {
    let name = name.as_bytes();
    let starts =
        |prefix: &[u8]| name.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix));
    starts(b"ratelimit")
        || starts(b"inin-ratelimit")
        || starts(b"x-ratelimit")
        || starts(b"x-rate-limit")
}

/// A dialect of three plain fields: the limit, a count, the reset.
struct PlainDialect {
    dialect: Dialect,
    /// The field of the limit.
    limit: &'static str,
    /// The field of the count, and what it counts.
    count: Count,
    /// The field of the reset (delay or epoch).
    reset: &'static str,
}

/// What a plain dialect's count field counts.
#[derive(Clone, Copy)]
enum Count {
    /// Requests left in the window (most dialects; none of those built in without their
    /// features).
    #[cfg_attr(not(any(feature = "ietf-ratelimit", feature = "x-ratelimit")), allow(dead_code))]
    Remaining(&'static str),
    /// Requests used in the window (Genesys Cloud's `inin-ratelimit-count`): remaining is the
    /// limit less this.
    Used(&'static str),
}

/// Turns a reset value into a delay from `reference` (see the module docs for the rule).
#[must_use]
pub fn reset_delay(value: u64, reference: Option<UnixTime>) -> Option<Duration> {
    if value < EPOCH_THRESHOLD {
        return Some(Duration::from_secs(value));
    }
    let at = if value >= EPOCH_MILLIS_THRESHOLD {
        UnixTime::from_secs(Duration::from_millis(value).as_secs())
    } else {
        UnixTime::from_secs(value)
    };
    let now = reference?;
    let delay = at.saturating_duration_since(now);
    (delay <= MAX_EPOCH_HORIZON).then_some(delay)
}

/// A snapshot, unless it says nothing at all.
fn snapshot(
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_after: Option<Duration>,
    window: Option<Duration>,
    dialect: Dialect,
) -> Option<RateLimitSnapshot> {
    let useful = limit.is_some() || remaining.is_some() || reset_after.is_some();
    useful.then_some(RateLimitSnapshot { limit, remaining, reset_after, window, dialect })
}

/// Reads a dialect of three plain fields.
fn plain<H: Headers + ?Sized>(
    headers: &H,
    row: &PlainDialect,
    reference: Option<UnixTime>,
) -> Option<RateLimitSnapshot> {
    let number = |name: &str| headers.get(name).and_then(leading_integer);
    let limit = number(row.limit);
    let remaining = match row.count {
        Count::Remaining(name) => number(name),
        Count::Used(name) => {
            limit.zip(number(name)).map(|(limit, used)| limit.saturating_sub(used))
        }
    };
    let reset_after = number(row.reset).and_then(|v| reset_delay(v, reference));
    snapshot(limit, remaining, reset_after, None, row.dialect)
}

/// The leading run of digits of a plain field value, if it is followed by nothing, a list or
/// parameter separator, or whitespace (`100`, `100, 100;w=60`); saturating.
fn leading_integer(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, rest) = value.split_at_checked(digits)?;
    if number.is_empty() || !matches!(rest.first(), None | Some(b',' | b';' | b' ' | b'\t')) {
        return None;
    }
    Some(saturating_decimal(number))
}

/// A structured-field integer that is not negative.
fn non_negative(item: Option<sf::Bare<'_>>) -> Option<u64> {
    match item? {
        sf::Bare::Integer(v) => u64::try_from(v).ok(),
        _ => None,
    }
}

/// Draft -08..-10: `RateLimit: "name";r=..;t=..` lists, joined with `RateLimit-Policy` by name.
fn ietf_structured(
    combined: Option<&[u8]>,
    policy: Option<&[u8]>,
    reference: Option<UnixTime>,
) -> Option<RateLimitSnapshot> {
    let policies = policy.and_then(sf::list);
    let policies = policies.as_deref().unwrap_or(&[]);
    let quota = |member: &sf::Member<'_>| {
        (
            non_negative(member.param(b"q")),
            non_negative(member.param(b"w")).map(Duration::from_secs),
        )
    };

    let members = combined.and_then(sf::list);
    let most_restrictive = members
        .iter()
        .flatten()
        .filter_map(|m| {
            let name = m.name()?;
            let remaining = non_negative(m.param(b"r"))?;
            Some((name, remaining, non_negative(m.param(b"t"))))
        })
        .min_by_key(|&(_, remaining, _)| remaining);
    if let Some((name, remaining, reset)) = most_restrictive {
        let (limit, window) =
            policies.iter().find(|p| p.name() == Some(name)).map(quota).unwrap_or((None, None));
        let reset_after = reset.and_then(|t| reset_delay(t, reference));
        return snapshot(limit, Some(remaining), reset_after, window, Dialect::IetfStructured);
    }

    // Only the policy: report the smallest quota.
    let (limit, window) = policies
        .iter()
        .filter(|p| p.name().is_some())
        .map(quota)
        .filter(|(q, _)| q.is_some())
        .min_by_key(|&(q, _)| q)?;
    snapshot(limit, None, None, window, Dialect::IetfStructured)
}

/// Draft -07: `RateLimit: limit=100, remaining=50, reset=5` and `RateLimit-Policy: 100;w=10`.
fn ietf_combined(
    combined: Option<&[u8]>,
    policy: Option<&[u8]>,
    reference: Option<UnixTime>,
) -> Option<RateLimitSnapshot> {
    let dictionary = combined.and_then(sf::dictionary);
    let get = |key: &[u8]| {
        // Duplicate keys: the last one wins (RFC 8941 §3.2).
        let entries = dictionary.as_deref().unwrap_or(&[]);
        entries.iter().rev().find(|(k, _)| *k == key).and_then(|(_, m)| non_negative(m.item))
    };
    let policies = policy.and_then(sf::list);
    let policies = policies.as_deref().unwrap_or(&[]);
    let quota_of = |p: &sf::Member<'_>| non_negative(p.item);

    let mut limit = get(b"limit");
    let remaining = get(b"remaining");
    let reset_after = get(b"reset").and_then(|v| reset_delay(v, reference));
    let matching = match limit {
        Some(l) => policies.iter().find(|p| quota_of(p) == Some(l)),
        None => policies.iter().find(|p| quota_of(p).is_some()),
    };
    let window = matching.and_then(|p| non_negative(p.param(b"w"))).map(Duration::from_secs);
    if limit.is_none() {
        limit = matching.and_then(quota_of);
    }
    snapshot(limit, remaining, reset_after, window, Dialect::IetfCombined)
}

/// A small subset of RFC 8941 structured fields: enough to validate and read lists and
/// dictionaries of items with parameters, without allocating.
mod sf {
    use heapless::Vec;

    use crate::http::cursor::Cursor;

    /// Members kept per field; later members are validated but not kept.
    pub(super) const MAX_MEMBERS: usize = 8;

    /// A bare item (RFC 8941 §3.3). Only what rate limits use is kept.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Bare<'a> {
        /// An integer (at most 15 digits).
        Integer(i64),
        /// A string, raw (escapes intact).
        String(&'a [u8]),
        /// A token.
        Token(&'a [u8]),
        /// A decimal, byte sequence or boolean.
        Other,
    }

    /// A list or dictionary member: an item (or an inner list, `item: None`) and its
    /// parameters, kept as validated raw text and read on demand.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Member<'a> {
        pub(super) item: Option<Bare<'a>>,
        params: &'a [u8],
    }

    impl<'a> Member<'a> {
        /// The item as a policy name: a string or a token.
        pub(super) fn name(&self) -> Option<&'a [u8]> {
            match self.item? {
                Bare::String(s) | Bare::Token(s) => Some(s),
                _ => None,
            }
        }

        /// The value of parameter `key` (the last one if repeated; `Other` for a bare key,
        /// which means boolean true).
        pub(super) fn param(&self, key: &[u8]) -> Option<Bare<'a>> {
            let mut p = Cursor(self.params);
            let mut found = None;
            while p.eat(b';') {
                p.skip_sp();
                let k = p.key()?;
                let v = if p.eat(b'=') { p.bare_item()? } else { Bare::Other };
                if k == key {
                    found = Some(v);
                }
            }
            found
        }
    }

    /// Parses a List field (RFC 8941 §4.2.1); `None` if it is malformed.
    pub(super) fn list(input: &[u8]) -> Option<Vec<Member<'_>, MAX_MEMBERS>> {
        let mut p = Cursor(input.trim_ascii());
        let mut out = Vec::new();
        while !p.0.is_empty() {
            let member = p.member()?;
            let _ = out.push(member); // full: validated, not kept
            p.ows();
            if p.0.is_empty() {
                break;
            }
            if !p.eat(b',') {
                return None;
            }
            p.ows();
            if p.0.is_empty() {
                return None; // trailing comma
            }
        }
        Some(out)
    }

    /// Parses a Dictionary field (RFC 8941 §4.2.2); `None` if it is malformed.
    pub(super) fn dictionary(input: &[u8]) -> Option<Vec<(&[u8], Member<'_>), MAX_MEMBERS>> {
        let mut p = Cursor(input.trim_ascii());
        let mut out = Vec::new();
        while !p.0.is_empty() {
            let key = p.key()?;
            let member = if p.eat(b'=') {
                p.member()?
            } else {
                Member { item: Some(Bare::Other), params: p.params()? }
            };
            let _ = out.push((key, member));
            p.ows();
            if p.0.is_empty() {
                break;
            }
            if !p.eat(b',') {
                return None;
            }
            p.ows();
            if p.0.is_empty() {
                return None;
            }
        }
        Some(out)
    }

    /// The structured-field productions, on the shared header cursor.
    impl<'a> Cursor<'a> {
        fn skip_sp(&mut self) {
            let n = self.0.iter().take_while(|&&b| b == b' ').count();
            self.advance(n);
        }

        /// `sf-item / inner-list`, each with its parameters.
        fn member(&mut self) -> Option<Member<'a>> {
            if self.eat(b'(') {
                loop {
                    self.skip_sp();
                    if self.eat(b')') {
                        break;
                    }
                    self.bare_item()?;
                    self.params()?;
                    if !matches!(self.peek(), Some(b' ' | b')')) {
                        return None;
                    }
                }
                return Some(Member { item: None, params: self.params()? });
            }
            let item = self.bare_item()?;
            Some(Member { item: Some(item), params: self.params()? })
        }

        /// `*( ";" *SP key [ "=" bare-item ] )`, returned as validated raw text.
        fn params(&mut self) -> Option<&'a [u8]> {
            let start = self.0;
            while self.eat(b';') {
                self.skip_sp();
                self.key()?;
                if self.eat(b'=') {
                    self.bare_item()?;
                }
            }
            start.get(..start.len().saturating_sub(self.0.len()))
        }

        /// `( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
        fn key(&mut self) -> Option<&'a [u8]> {
            if !matches!(self.peek(), Some(b'a'..=b'z' | b'*')) {
                return None;
            }
            Some(self.take_while(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'.' | b'*')
            }))
        }

        fn bare_item(&mut self) -> Option<Bare<'a>> {
            match self.peek()? {
                b'-' | b'0'..=b'9' => self.sf_number(),
                b'"' => self.sf_string(),
                b'*' | b'a'..=b'z' | b'A'..=b'Z' => Some(Bare::Token(self.take_while(|b| {
                    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b)
                }))),
                b':' => {
                    self.advance(1);
                    self.take_while(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
                    });
                    self.eat(b':').then_some(Bare::Other)
                }
                b'?' => {
                    self.advance(1);
                    (self.eat(b'0') || self.eat(b'1')).then_some(Bare::Other)
                }
                _ => None,
            }
        }

        /// `sf-integer` (at most 15 digits) or `sf-decimal` (at most 12 + 3 digits).
        fn sf_number(&mut self) -> Option<Bare<'a>> {
            let negative = self.eat(b'-');
            let int = self.take_while(|b| b.is_ascii_digit());
            if int.is_empty() {
                return None;
            }
            if self.eat(b'.') {
                let frac = self.take_while(|b| b.is_ascii_digit());
                return (int.len() <= 12 && (1..=3).contains(&frac.len())).then_some(Bare::Other);
            }
            if int.len() > 15 {
                return None;
            }
            let magnitude = i64::try_from(super::saturating_decimal(int)).ok()?;
            Some(Bare::Integer(if negative { magnitude.checked_neg()? } else { magnitude }))
        }

        /// `sf-string`: printable ASCII, with `\"` and `\\` the only escapes.
        fn sf_string(&mut self) -> Option<Bare<'a>> {
            self.advance(1);
            let start = self.0;
            loop {
                match self.peek()? {
                    b'\\' => {
                        self.advance(1);
                        if !matches!(self.peek()?, b'"' | b'\\') {
                            return None;
                        }
                        self.advance(1);
                    }
                    b'"' => {
                        let inside = start.get(..start.len().saturating_sub(self.0.len()))?;
                        self.advance(1);
                        return Some(Bare::String(inside));
                    }
                    0x20..=0x7e => self.advance(1),
                    _ => return None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::string::String as StdString;
    use std::vec::Vec as StdVec;

    const NOW: UnixTime = UnixTime::from_secs(1_792_152_841);

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    fn parse(h: &[(&str, &str)], reference: Option<UnixTime>) -> Option<RateLimitSnapshot> {
        parse_rate_limit(h, reference)
    }

    #[test]
    fn genesys_dialect() {
        let h = [
            ("inin-ratelimit-count", "1"),
            ("inin-ratelimit-allowed", "180"),
            ("inin-ratelimit-reset", "61"),
        ];
        let s = parse(&h, None).unwrap();
        assert_eq!(
            s,
            RateLimitSnapshot {
                limit: Some(180),
                remaining: Some(179),
                reset_after: secs(61),
                window: None,
                dialect: Dialect::Genesys
            }
        );
        // Over the limit: remaining saturates at zero.
        let h = [("ININ-RateLimit-Count", "200"), ("ININ-RateLimit-Allowed", "180")];
        assert_eq!(parse(&h, None).unwrap().remaining, Some(0));
        // Used count alone says nothing about what remains.
        let h = [("inin-ratelimit-count", "5"), ("inin-ratelimit-reset", "x")];
        assert_eq!(parse(&h, None), None);
        let h = [("inin-ratelimit-allowed", "300")];
        assert_eq!(parse(&h, None).unwrap().remaining, None);
        let h = [("inin-ratelimit-count", "5"), ("inin-ratelimit-reset", "7")];
        assert_eq!(parse(&h, None).map(|s| (s.limit, s.remaining)), Some((None, None)));
    }

    #[test]
    #[cfg(all(feature = "ietf-ratelimit", feature = "x-ratelimit"))]
    fn dialects_in_order() {
        let ietf = ("RateLimit-Remaining", "1");
        let genesys = ("inin-ratelimit-allowed", "2");
        let x = ("X-RateLimit-Remaining", "3");
        let dashed = ("X-Rate-Limit-Remaining", "4");
        let dialect = |h: &[(&str, &str)]| parse(h, None).map(|s| s.dialect);
        assert_eq!(dialect(&[dashed, x, genesys, ietf]), Some(Dialect::IetfSeparate));
        assert_eq!(dialect(&[dashed, x, genesys]), Some(Dialect::Genesys));
        assert_eq!(dialect(&[dashed, x]), Some(Dialect::XRateLimit));
        assert_eq!(dialect(&[dashed]), Some(Dialect::XRateLimitDashed));
        // A dialect whose fields say nothing usable is passed over.
        assert_eq!(
            dialect(&[dashed, ("inin-ratelimit-count", "9")]),
            Some(Dialect::XRateLimitDashed)
        );
    }

    #[test]
    #[cfg(feature = "x-ratelimit")]
    fn github_epoch_reset() {
        let h = [
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1792152901"),
        ];
        let s = parse(&h, Some(NOW)).unwrap();
        assert_eq!((s.limit, s.remaining, s.reset_after), (Some(5000), Some(0), secs(60)));
        assert_eq!(s.dialect, Dialect::XRateLimit);
        // Never "retry after 1792152901 seconds": without a reference the reset is unknown.
        let s = parse(&h, None).unwrap();
        assert_eq!(s.reset_after, None);
        assert_eq!(s.remaining, Some(0));
        // An epoch in the past is a zero delay; T-1 and T.
        assert_eq!(
            parse(&h, Some(UnixTime::from_secs(1_792_152_900))).unwrap().reset_after,
            secs(1)
        );
        assert_eq!(
            parse(&h, Some(UnixTime::from_secs(1_792_152_901))).unwrap().reset_after,
            secs(0)
        );
        assert_eq!(
            parse(&h, Some(UnixTime::from_secs(1_792_152_999))).unwrap().reset_after,
            secs(0)
        );
    }

    #[test]
    fn reset_rule_boundaries() {
        assert_eq!(reset_delay(0, None), secs(0));
        assert_eq!(reset_delay(EPOCH_THRESHOLD - 1, None), secs(EPOCH_THRESHOLD - 1));
        assert_eq!(reset_delay(EPOCH_THRESHOLD, None), None);
        assert_eq!(reset_delay(EPOCH_THRESHOLD, Some(NOW)), secs(0));
        // Epoch milliseconds.
        assert_eq!(reset_delay(1_792_152_901_000, Some(NOW)), secs(60));
        assert_eq!(reset_delay(1_792_152_901_999, Some(NOW)), secs(60));
        // Implausibly far: unknown, not a decades-long wait.
        let horizon = MAX_EPOCH_HORIZON.as_secs();
        assert_eq!(reset_delay(NOW.as_secs() + horizon, Some(NOW)), secs(horizon));
        assert_eq!(reset_delay(NOW.as_secs() + horizon + 1, Some(NOW)), None);
        assert_eq!(reset_delay(u64::MAX, Some(NOW)), None);
    }

    #[test]
    #[cfg(feature = "x-ratelimit")]
    fn x_rate_limit_dashed_with_delta() {
        let h = [
            ("x-rate-limit-limit", "100"),
            ("x-rate-limit-remaining", "99"),
            ("x-rate-limit-reset", "60"),
        ];
        let s = parse(&h, None).unwrap();
        assert_eq!((s.limit, s.remaining, s.reset_after), (Some(100), Some(99), secs(60)));
        assert_eq!(s.dialect, Dialect::XRateLimitDashed);
    }

    #[test]
    #[cfg(feature = "ietf-ratelimit")]
    fn ietf_separate_fields() {
        let h =
            [("RateLimit-Limit", "100"), ("RateLimit-Remaining", "50"), ("RateLimit-Reset", "5")];
        let s = parse(&h, None).unwrap();
        assert_eq!((s.limit, s.remaining, s.reset_after), (Some(100), Some(50), secs(5)));
        assert_eq!(s.dialect, Dialect::IetfSeparate);
        // Early drafts append quota policies to the limit.
        let h = [("RateLimit-Limit", "10, 10;w=1, 50;w=60"), ("RateLimit-Remaining", "3")];
        let s = parse(&h, None).unwrap();
        assert_eq!((s.limit, s.remaining), (Some(10), Some(3)));
    }

    #[test]
    #[cfg(not(feature = "ietf-ratelimit"))]
    fn ietf_fields_are_ignored_when_not_built_in() {
        let ietf = ("RateLimit", "limit=100, remaining=50, reset=5");
        assert_eq!(parse(&[ietf, ("RateLimit-Policy", "100;w=10")], None), None);
        let separate = [("RateLimit-Limit", "100"), ("RateLimit-Remaining", "50")];
        assert_eq!(parse(&separate, None), None);
        let genesys = [ietf, ("inin-ratelimit-count", "10"), ("inin-ratelimit-allowed", "300")];
        let s = parse(&genesys, None).unwrap();
        assert_eq!((s.remaining, s.dialect), (Some(290), Dialect::Genesys));
    }

    #[test]
    #[cfg(not(feature = "x-ratelimit"))]
    fn x_fields_are_ignored_when_not_built_in() {
        let github = [("X-RateLimit-Limit", "5000"), ("X-RateLimit-Remaining", "0")];
        assert_eq!(parse(&github, None), None);
        let dashed = [("x-rate-limit-remaining", "1"), ("inin-ratelimit-allowed", "300")];
        assert_eq!(parse(&dashed, None).map(|s| s.dialect), Some(Dialect::Genesys));
    }

    #[test]
    #[cfg(feature = "ietf-ratelimit")]
    fn ietf_draft_07() {
        let h =
            [("RateLimit", "limit=100, remaining=50, reset=5"), ("RateLimit-Policy", "100;w=10")];
        let s = parse(&h, None).unwrap();
        assert_eq!(
            s,
            RateLimitSnapshot {
                limit: Some(100),
                remaining: Some(50),
                reset_after: secs(5),
                window: secs(10),
                dialect: Dialect::IetfCombined
            }
        );
        let h = [("RateLimit", "remaining=0,reset=30"), ("RateLimit-Policy", "10;w=1, 100;w=60")];
        let s = parse(&h, None).unwrap();
        assert_eq!(
            (s.limit, s.remaining, s.reset_after, s.window),
            (Some(10), Some(0), secs(30), secs(1))
        );
        let h = [
            ("RateLimit", "limit=100, remaining=5, remaining=4"),
            ("RateLimit-Policy", "10;w=1, 100;w=60"),
        ];
        let s = parse(&h, None).unwrap();
        assert_eq!((s.limit, s.remaining, s.window), (Some(100), Some(4), secs(60)));
    }

    #[test]
    #[cfg(feature = "ietf-ratelimit")]
    fn ietf_structured_picks_the_most_restrictive_policy() {
        let h = [
            ("RateLimit", r#""burst";r=50;t=30, "daily";r=5;t=86000"#),
            ("RateLimit-Policy", r#""burst";q=100;w=60, "daily";q=1000;w=86400"#),
        ];
        let s = parse(&h, Some(NOW)).unwrap();
        assert_eq!(
            s,
            RateLimitSnapshot {
                limit: Some(1000),
                remaining: Some(5),
                reset_after: secs(86_000),
                window: secs(86_400),
                dialect: Dialect::IetfStructured
            }
        );
        let h = [("RateLimit", r#""default";r=50;t=30"#)];
        let s = parse(&h, None).unwrap();
        assert_eq!(
            (s.limit, s.remaining, s.reset_after, s.window),
            (None, Some(50), secs(30), None)
        );
        // Token names (draft -08), extra parameters, odd spacing.
        let h = [
            ("RateLimit", "  default;r=0;t=1;pk=:cHsdsRa894==: "),
            ("RateLimit-Policy", "default;q=10;qu=\"requests\";w=1"),
        ];
        let s = parse(&h, None).unwrap();
        assert_eq!((s.limit, s.remaining, s.window), (Some(10), Some(0), secs(1)));
        // Policy alone: its smallest quota.
        let h = [("RateLimit-Policy", r#""daily";q=1000;w=86400, "burst";q=100;w=60"#)];
        let s = parse(&h, None).unwrap();
        assert_eq!((s.limit, s.remaining, s.window), (Some(100), None, secs(60)));
    }

    #[test]
    fn malformed_structured_fields_are_ignored() {
        for bad in [
            r#""default";r=50;t=30,"#,
            r#""default";r=50;t=30 junk"#,
            r#""unterminated;r=50"#,
            r#""default";R=50"#,
            r#""default";r=1234567890123456"#,
            r#""default";r=50;;t=1"#,
            "limit=100, remaining=50,",
            "(a b;r=1",
        ] {
            let h = [("RateLimit", bad), ("inin-ratelimit-allowed", "7")];
            let s = parse(&h, None).unwrap();
            assert_eq!((s.limit, s.dialect), (Some(7), Dialect::Genesys), "{bad:?}");
        }
        // Well-formed but unusable (negative, decimal, wrong type): ignored too.
        for unusable in [r#""d";r=-1"#, r#""d";r=1.5"#, r#""d";r="5""#, r#""d";t=5"#] {
            let h = [("RateLimit", unusable), ("inin-ratelimit-allowed", "9")];
            assert_eq!(parse(&h, None).unwrap().dialect, Dialect::Genesys, "{unusable:?}");
        }
    }

    #[test]
    #[cfg(all(feature = "ietf-ratelimit", feature = "x-ratelimit"))]
    fn precedence() {
        let all = [
            ("x-rate-limit-remaining", "1"),
            ("x-ratelimit-remaining", "2"),
            ("inin-ratelimit-allowed", "3"),
            ("ratelimit-remaining", "4"),
            ("ratelimit", r#""p";r=5"#),
        ];
        let order = [
            Dialect::IetfStructured,
            Dialect::IetfSeparate,
            Dialect::Genesys,
            Dialect::XRateLimit,
            Dialect::XRateLimitDashed,
        ];
        for (skip, expected) in order.iter().enumerate() {
            let h: StdVec<(&str, &str)> = all[..all.len() - skip].to_vec();
            assert_eq!(parse_rate_limit(h.as_slice(), None).unwrap().dialect, *expected);
        }
        let h = [("ratelimit", "limit=1"), ("inin-ratelimit-allowed", "3")];
        assert_eq!(parse(&h, None).unwrap().dialect, Dialect::IetfCombined);
    }

    #[test]
    fn values_are_integers_only_and_saturate() {
        let h = [
            ("inin-ratelimit-allowed", "99999999999999999999999"),
            ("inin-ratelimit-count", " 12 "),
        ];
        let s = parse(&h, None).unwrap();
        assert_eq!((s.limit, s.remaining), (Some(u64::MAX), Some(u64::MAX - 12)));
        for junk in ["", "ten", "-1", "12.5", "0x10", "1e3", "12abc"] {
            assert_eq!(parse(&[("inin-ratelimit-allowed", junk)], None), None, "{junk:?}");
        }
        assert_eq!(parse(&[], None), None);
        assert_eq!(parse_rate_limit(&crate::http::NoHeaders, Some(NOW)), None);
    }

    #[test]
    fn sf_subset_parser() {
        let l = sf::list(br#"a, "b\"c";x=1;y, (1 2 "x");z=?0, :YWJj:, 1.5, -7;n"#).unwrap();
        assert_eq!(l.len(), 6);
        assert_eq!(l[0].item, Some(sf::Bare::Token(b"a")));
        assert_eq!(l[1].item, Some(sf::Bare::String(br#"b\"c"#)));
        assert_eq!(l[1].param(b"x"), Some(sf::Bare::Integer(1)));
        assert_eq!(l[1].param(b"y"), Some(sf::Bare::Other));
        assert_eq!(l[2].item, None);
        assert_eq!(l[5].item, Some(sf::Bare::Integer(-7)));
        assert_eq!(sf::list(b"").map(|l| l.len()), Some(0));
        assert!(sf::list(b"a,,b").is_none());
        assert!(sf::list(b"\"\x01\"").is_none());
        assert!(sf::list(br#""bad\escape""#).is_none());
        assert!(sf::list(b"?2").is_none());
        assert!(sf::list(b"1.2345").is_none());
        assert!(sf::list(b"(1 2").is_none());
        assert!(sf::list(b"(1,2)").is_none());
        let many = sf::list(b"1,2,3,4,5,6,7,8,9,10").unwrap();
        assert_eq!(many.len(), sf::MAX_MEMBERS);
        let d = sf::dictionary(b"a=1, b, c=(1 2);p=1").unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[1].1.item, Some(sf::Bare::Other));
        assert!(sf::dictionary(b"A=1").is_none());
        assert!(sf::dictionary(br#""x";r=1"#).is_none());
    }

    const NAMES: [&str; 14] = [
        "ratelimit",
        "ratelimit-policy",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "inin-ratelimit-count",
        "inin-ratelimit-allowed",
        "inin-ratelimit-reset",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ];

    /// Names beside the dialects' own: other fields, and theirs in other cases.
    const OTHER_NAMES: [&str; 5] =
        ["Date", "Retry-After", "X-Request-Id", "X-RATELIMIT-RESET", "RateLimit-Remaining"];

    /// Reads only by name, as a header store that cannot list its fields does.
    struct ByNameOnly<'a>(&'a [(&'a str, &'a [u8])]);

    impl Headers for ByNameOnly<'_> {
        fn get(&self, name: &str) -> Option<&[u8]> {
            Headers::get(self.0, name)
        }
    }

    #[test]
    fn every_dialects_field_is_named_a_rate_limit() {
        for name in NAMES {
            assert!(names_rate_limit(name), "{name}");
            assert!(names_rate_limit(&name.to_ascii_uppercase()), "{name}");
        }
        for other in ["date", "retry-after", "x-request-id", "rate", "x-rate-limi", "inin-rate"] {
            assert!(!names_rate_limit(other), "{other}");
        }
        let none = [("date", "Sun, 06 Dec 2026 09:00:00 GMT"), ("content-type", "text/plain")];
        assert_eq!(none.any_name(names_rate_limit), Some(false));
        assert_eq!([("X-RateLimit-Reset", "1")].any_name(names_rate_limit), Some(true));
    }

    proptest! {
        /// Skipping the dialects when no field is named for a rate limit changes nothing: the
        /// same fields read by name only give the same snapshot.
        #[test]
        fn listing_the_names_first_gives_the_same_snapshot(
            fields in proptest::collection::vec(
                (
                    prop_oneof![
                        proptest::sample::select(NAMES.to_vec()),
                        proptest::sample::select(OTHER_NAMES.to_vec()),
                    ]
                    .prop_map(StdString::from)
                    .boxed()
                    .prop_union("[a-zA-Z-]{1,24}".boxed()),
                    prop_oneof![
                        "[0-9]{1,12}".prop_map(|v| v.into_bytes()),
                        Just(br#""default";r=5;t=30"#.to_vec()),
                        Just(b"limit=100, remaining=50, reset=5".to_vec()),
                        proptest::collection::vec(any::<u8>(), 0..16),
                    ],
                ),
                0..6,
            ),
            reference in proptest::option::of(1_700_000_000u64..1_900_000_000),
        ) {
            let headers: StdVec<(&str, &[u8])> =
                fields.iter().map(|(n, v)| (n.as_ref(), v.as_slice())).collect();
            let reference = reference.map(UnixTime::from_secs);
            prop_assert_eq!(
                parse_rate_limit(headers.as_slice(), reference),
                parse_rate_limit(&ByNameOnly(headers.as_slice()), reference)
            );
        }

        #[test]
        fn never_panics_on_arbitrary_values(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), NAMES.len()),
            reference in proptest::option::of(any::<u64>()),
        ) {
            let headers: StdVec<(&str, &[u8])> =
                NAMES.iter().copied().zip(values.iter().map(StdVec::as_slice)).collect();
            let _ = parse_rate_limit(headers.as_slice(), reference.map(UnixTime::from_secs));
        }

        #[test]
        fn never_panics_on_structured_near_misses(
            combined in r#"[ ",;=()?:*a-z0-9.\-]{0,40}"#,
            policy in r#"[ ",;=()?:*a-z0-9.\-]{0,40}"#,
        ) {
            let h = [("ratelimit", combined.as_str()), ("ratelimit-policy", policy.as_str())];
            if let Some(s) = parse(&h, Some(NOW)) {
                prop_assert!(s.limit.is_some() || s.remaining.is_some() || s.reset_after.is_some());
            }
        }

        #[test]
        fn epoch_resets_never_become_huge_delays(value in EPOCH_THRESHOLD.., now in 1_500_000_000u64..2_500_000_000) {
            if let Some(d) = reset_delay(value, Some(UnixTime::from_secs(now))) {
                prop_assert!(d <= MAX_EPOCH_HORIZON);
            }
        }
    }
}
