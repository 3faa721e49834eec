//! `Retry-After` (RFC 9110 §10.2.3), and the wait Genesys Cloud writes into its 429 bodies.
//!
//! `Retry-After = HTTP-date / delay-seconds`, where `delay-seconds = 1*DIGIT`.
//!
//! - [`parse_retry_after`] reads either form. Delays are whole seconds, digits only (no sign, no
//!   fraction, no unit); a number too large for any clock saturates to [`Duration::MAX`] instead of
//!   overflowing. Anything else, including negative numbers, is `None`.
//! - [`RetryAfter::delay`] turns either form into a wait. An HTTP-date needs a reference time;
//!   pass the response's own `Date` header when there is one ([`server_date`]), so that the
//!   difference of two server times is used and the client's clock skew cancels out
//!   (awslabs/aws-sdk-rust#1033), and the local wall clock otherwise.
//! - [`genesys_retry_after_from_body`] finds `Retry the request in [42] seconds` in a Genesys
//!   Cloud 429 body, for the rare response whose header was lost on the way (a proxy, a gateway).
//!
//! Callers decide what to do with long waits: Genesys answers daily limits with a `Retry-After`
//! of hours, which a client must surface rather than sleep through silently.
//!
//! [`server_date`]: crate::http::date::server_date

use crate::http::Headers;
use crate::http::date::parse_http_date;
use crate::time::{Duration, UnixTime};

/// How many bytes of a body [`genesys_retry_after_from_body`] looks at.
pub const BODY_SCAN_LIMIT: usize = 4096;

/// A parsed `Retry-After` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RetryAfter {
    /// `Retry-After: 120`: wait this long from the moment the response was received.
    Delay(Duration),
    /// `Retry-After: Fri, 31 Dec 1999 23:59:59 GMT`: do not retry before this wall-clock time.
    At(UnixTime),
}

impl RetryAfter {
    /// Reads the `Retry-After` field of a response, if present and valid.
    #[must_use]
    pub fn from_headers<H: Headers + ?Sized>(headers: &H) -> Option<RetryAfter> {
        headers.get("retry-after").and_then(parse_retry_after)
    }

    /// The wait this value asks for, measured from the moment the response was received.
    ///
    /// `reference` is the wall-clock time of that moment: the server's `Date` header if present
    /// (no clock skew), else the local wall clock. A [`RetryAfter::Delay`] ignores it. A
    /// [`RetryAfter::At`] in the past gives [`Duration::ZERO`]; with no reference at all it gives
    /// `None`, because a date cannot be turned into a wait without knowing what time it is.
    #[must_use]
    pub fn delay(&self, reference: Option<UnixTime>) -> Option<Duration> {
        match *self {
            RetryAfter::Delay(d) => Some(d),
            RetryAfter::At(t) => reference.map(|now| t.saturating_duration_since(now)),
        }
    }
}

/// Parses a `Retry-After` field value: delay-seconds or an HTTP-date.
///
/// ```
/// use credflow_core::http::retry_after::{parse_retry_after, RetryAfter};
/// use credflow_core::{Duration, UnixTime};
///
/// assert_eq!(parse_retry_after(b"120"), Some(RetryAfter::Delay(Duration::from_secs(120))));
/// assert_eq!(
///     parse_retry_after(b"Sun, 06 Nov 1994 08:49:37 GMT"),
///     Some(RetryAfter::At(UnixTime::from_secs(784_111_777)))
/// );
/// assert_eq!(parse_retry_after(b"-1"), None);
/// ```
#[must_use]
pub fn parse_retry_after(value: &[u8]) -> Option<RetryAfter> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return None;
    }
    if value.iter().all(u8::is_ascii_digit) {
        return Some(RetryAfter::Delay(Duration::from_secs(saturating_decimal(value))));
    }
    parse_http_date(value).map(RetryAfter::At)
}

/// Finds the wait in a Genesys Cloud 429 body: `Retry the request in [42] seconds`.
///
/// Matching is case-insensitive, the brackets are optional, and spaces around the number are
/// tolerated. Only the first [`BODY_SCAN_LIMIT`] bytes are examined, so the work is bounded
/// whatever the body's size. The body does not have to be valid JSON (it may be a truncated
/// prefix).
///
/// ```
/// use credflow_core::http::retry_after::genesys_retry_after_from_body;
/// use credflow_core::Duration;
///
/// let body = br#"{"message":"Rate limit exceeded the maximum. Retry the request in [42] seconds","code":"too.many.requests.retry.after","status":429}"#;
/// assert_eq!(genesys_retry_after_from_body(body), Some(Duration::from_secs(42)));
/// ```
#[must_use]
pub fn genesys_retry_after_from_body(body: &[u8]) -> Option<Duration> {
    const NEEDLE: &[u8] = b"retry the request in";
    let body = body.get(..BODY_SCAN_LIMIT).unwrap_or(body);
    body.windows(NEEDLE.len())
        .enumerate()
        .filter(|(_, window)| window.eq_ignore_ascii_case(NEEDLE))
        .find_map(|(at, _)| {
            let rest = body.get(at.checked_add(NEEDLE.len())?..)?;
            seconds_after_needle(rest)
        })
}

/// Reads ` [42] seconds` (brackets optional) at the start of `rest`.
fn seconds_after_needle(rest: &[u8]) -> Option<Duration> {
    let rest = rest.trim_ascii_start();
    let (bracketed, rest) = match rest.split_first() {
        Some((b'[', tail)) => (true, tail.trim_ascii_start()),
        _ => (false, rest),
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, rest) = rest.split_at_checked(digits)?;
    if number.is_empty() {
        return None;
    }
    let mut rest = rest.trim_ascii_start();
    if bracketed {
        rest = rest.strip_prefix(b"]")?.trim_ascii_start();
    }
    let unit = rest.get(..b"second".len())?;
    unit.eq_ignore_ascii_case(b"second").then(|| Duration::from_secs(saturating_decimal(number)))
}

/// The value of a run of ASCII digits, saturating at `u64::MAX`.
pub(crate) fn saturating_decimal(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |acc, b| {
        crate::time::mul_sat(acc, 10).saturating_add(u64::from(b.saturating_sub(b'0')))
    })
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;

    const NOV_6_1994: UnixTime = UnixTime::from_secs(784_111_777);

    #[test]
    fn delay_seconds() {
        assert_eq!(parse_retry_after(b"0"), Some(RetryAfter::Delay(Duration::ZERO)));
        assert_eq!(parse_retry_after(b" 42 "), Some(RetryAfter::Delay(Duration::from_secs(42))));
        assert_eq!(parse_retry_after(b"007"), Some(RetryAfter::Delay(Duration::from_secs(7))));
        // u64::MAX seconds and far beyond: saturate, never wrap.
        assert_eq!(
            parse_retry_after(b"18446744073709551615"),
            Some(RetryAfter::Delay(Duration::MAX))
        );
        assert_eq!(
            parse_retry_after(b"99999999999999999999999999999999999999"),
            Some(RetryAfter::Delay(Duration::MAX))
        );
        // 18446744073709551 s is the largest whole-second count whose milliseconds fit.
        assert_eq!(
            parse_retry_after(b"18446744073709551"),
            Some(RetryAfter::Delay(Duration::from_millis(18_446_744_073_709_551_000)))
        );
    }

    #[test]
    fn garbage_and_negatives() {
        for v in
            [&b""[..], b"   ", b"-1", b"+5", b"1.5", b"5s", b"5 6", b"soon", b"0x10", b"\xff\xfe"]
        {
            assert_eq!(parse_retry_after(v), None, "{v:?}");
        }
    }

    #[test]
    fn http_date() {
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(RetryAfter::At(NOV_6_1994))
        );
        // An obsolete format is read only with the `obsolete-dates` feature; without it the
        // value is ignored, as if the header were absent.
        assert_eq!(
            parse_retry_after(b"Sun Nov  6 08:49:37 1994"),
            cfg!(feature = "obsolete-dates").then_some(RetryAfter::At(NOV_6_1994))
        );
    }

    #[test]
    fn delay_against_a_reference() {
        let at = RetryAfter::At(NOV_6_1994);
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(at.delay(Some(UnixTime::from_secs(784_111_777 - 30))), secs(30));
        assert_eq!(at.delay(Some(UnixTime::from_secs(784_111_777 - 1))), secs(1));
        assert_eq!(at.delay(Some(NOV_6_1994)), secs(0));
        assert_eq!(at.delay(Some(UnixTime::from_secs(784_111_777 + 1))), secs(0));
        assert_eq!(at.delay(None), None);
        let d = RetryAfter::Delay(Duration::from_secs(5));
        assert_eq!(d.delay(None), secs(5));
        assert_eq!(d.delay(Some(NOV_6_1994)), secs(5));
    }

    #[test]
    fn from_headers() {
        let h = [("Content-Type", "application/json"), ("retry-after", "3")];
        assert_eq!(RetryAfter::from_headers(&h), Some(RetryAfter::Delay(Duration::from_secs(3))));
        assert_eq!(RetryAfter::from_headers(&[("Retry-After", "later")]), None);
        assert_eq!(RetryAfter::from_headers(&crate::http::NoHeaders), None);
    }

    #[test]
    fn genesys_body_forms() {
        let g = |b: &[u8]| genesys_retry_after_from_body(b).map(Duration::as_secs);
        let full = br#"{"message":"Rate limit exceeded the maximum. Retry the request in [42] seconds","code":"too.many.requests.retry.after","status":429,"contextId":"d4ab3c1e-1f51-4b6a-9bb1-2a4b5fdd1c39","details":[],"errors":[]}"#;
        assert_eq!(g(full), Some(42));
        assert_eq!(g(b"retry the request in 7 seconds"), Some(7));
        assert_eq!(g(b"RETRY THE REQUEST IN [ 1 ] SECOND"), Some(1));
        assert_eq!(g(b"Retry the request in [0] seconds"), Some(0));
        assert_eq!(
            g(b"Retry the request in [99999999999999999999999] seconds"),
            Some(u64::MAX / 1000)
        );
        // The first occurrence that parses wins.
        assert_eq!(
            g(b"Retry the request in [soon] seconds. Retry the request in [5] seconds"),
            Some(5)
        );
    }

    #[test]
    fn genesys_body_near_misses() {
        let g = |b: &[u8]| genesys_retry_after_from_body(b);
        assert_eq!(g(b""), None);
        assert_eq!(g(b"Retry the request in"), None);
        assert_eq!(g(b"Retry the request in [42"), None);
        assert_eq!(g(b"Retry the request in [42] minutes"), None);
        assert_eq!(g(b"Retry the request in [] seconds"), None);
        assert_eq!(g(b"Retry the request in [-3] seconds"), None);
        assert_eq!(g(b"Retry the request in 42] seconds"), None);
        assert_eq!(g(br#"{"message":"Rate limit exceeded","status":429}"#), None);
    }

    #[test]
    fn genesys_body_scan_is_bounded() {
        let mut body = [b' '; BODY_SCAN_LIMIT + 64];
        let tail = b"Retry the request in [9] seconds";
        body[BODY_SCAN_LIMIT..BODY_SCAN_LIMIT + tail.len()].copy_from_slice(tail);
        assert_eq!(genesys_retry_after_from_body(&body), None);
        let at = BODY_SCAN_LIMIT - tail.len();
        body[at..at + tail.len()].copy_from_slice(tail);
        assert_eq!(genesys_retry_after_from_body(&body), Some(Duration::from_secs(9)));
    }

    proptest! {
        #[test]
        fn digits_always_parse_as_a_delay(n in any::<u64>()) {
            let text = std::format!("{n}");
            prop_assert_eq!(parse_retry_after(text.as_bytes()), Some(RetryAfter::Delay(Duration::from_secs(n))));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(r) = parse_retry_after(&bytes) {
                let _ = r.delay(Some(UnixTime::from_secs(1_700_000_000)));
            }
            let _ = genesys_retry_after_from_body(&bytes);
        }

        #[test]
        fn body_scan_never_panics(s in "(Retry the request in|\\[|\\]| |[0-9]{1,3}|seconds?|x){0,12}") {
            let _ = genesys_retry_after_from_body(s.as_bytes());
        }
    }
}
