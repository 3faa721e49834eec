//! `ratelimit::headers::parse_rate_limit` over arbitrary header fields, every dialect.
//!
//! Input: header lines, `name: value\n` (see the crate docs: a one-byte name stands for one of
//! the real field names, `RateLimit`, `inin-ratelimit-reset`, `X-RateLimit-Reset`, …). A `Date`
//! field, when it parses, is the reference time; otherwise a fixed one is used. Every input is
//! parsed with and without a reference.
//!
//! Checked: no panic; a snapshot always says something; a reset is never an epoch misread as a
//! delay (always under `EPOCH_THRESHOLD` seconds); a reset from an epoch needs a reference; a
//! reference never loses a snapshot; and the four plain dialects (`RateLimit-*`, `inin-*`,
//! `X-RateLimit-*`, `X-Rate-Limit-*`) agree with a model written from the module docs: the
//! first dialect in precedence order that yields a value wins, a value is the leading run of
//! digits followed by nothing, `,`, `;` or whitespace, saturating.
#![no_main]

use credflow_core::Duration;
use credflow_core::UnixTime;
use credflow_core::http::Headers;
use credflow_core::http::date::parse_http_date;
use credflow_core::ratelimit::headers::{
    EPOCH_THRESHOLD, MAX_EPOCH_HORIZON, parse_rate_limit, reset_delay,
};
use credflow_core::ratelimit::{Dialect, RateLimitSnapshot};
use credflow_fuzz::{REFERENCE, header_lines};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (headers, _) = header_lines(data);
    let headers = headers.as_slice();
    let reference = Headers::get(headers, "date").and_then(parse_http_date).unwrap_or(REFERENCE);

    let without = parse_rate_limit(headers, None);
    let with = parse_rate_limit(headers, Some(reference));
    for snapshot in [without, with].into_iter().flatten() {
        check(&snapshot);
    }
    for (reference, parsed) in [(None, without), (Some(reference), with)] {
        let structured = Headers::get(headers, "ratelimit").is_some()
            || Headers::get(headers, "ratelimit-policy").is_some();
        let plain = parsed.filter(|s| PLAIN.iter().any(|(d, _)| *d == s.dialect));
        if !structured || plain.is_some() || parsed.is_none() {
            assert_eq!(
                plain,
                model(headers, reference),
                "the plain dialects disagree with the model"
            );
        }
    }
    // A reference can only add information: whatever was read without one is read with one,
    // unless a dialect that needed it took precedence.
    if without.is_some() {
        assert!(with.is_some(), "a reference time lost a snapshot");
    }

    // The epoch rule on its own, for a value taken from the input.
    if let Some(bytes) = data.get(..8) {
        let value = u64::from_le_bytes(bytes.try_into().unwrap());
        let delay = reset_delay(value, Some(reference));
        if value < EPOCH_THRESHOLD {
            assert_eq!(delay, Some(Duration::from_secs(value)));
            assert_eq!(reset_delay(value, None), delay);
        } else {
            assert_eq!(reset_delay(value, None), None, "an epoch read without a reference");
            assert!(delay.is_none_or(|d| d <= MAX_EPOCH_HORIZON));
        }
    }
});

/// The plain dialects in precedence order, with their limit, remaining (or used) and reset
/// field names.
const PLAIN: [(Dialect, [&str; 3]); 4] = [
    (Dialect::IetfSeparate, ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"]),
    (Dialect::Genesys, ["inin-ratelimit-allowed", "inin-ratelimit-count", "inin-ratelimit-reset"]),
    (Dialect::XRateLimit, ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]),
    (
        Dialect::XRateLimitDashed,
        ["x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"],
    ),
];

/// What the plain dialects say, from the module docs.
fn model(headers: &[(&str, &[u8])], reference: Option<UnixTime>) -> Option<RateLimitSnapshot> {
    let number = |name: &str| {
        let value = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?.1.trim_ascii();
        let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
        let separated = matches!(value.get(digits), None | Some(b',' | b';' | b' ' | b'\t'));
        (digits > 0 && separated).then(|| {
            value[..digits]
                .iter()
                .fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0')))
        })
    };
    PLAIN.iter().find_map(|(dialect, [limit, second, reset])| {
        let limit = number(limit);
        let remaining = match dialect {
            Dialect::Genesys => limit.zip(number(second)).map(|(l, used)| l.saturating_sub(used)),
            _ => number(second),
        };
        let reset_after = number(reset).and_then(|v| reset_delay(v, reference));
        (limit.is_some() || remaining.is_some() || reset_after.is_some()).then_some(
            RateLimitSnapshot { limit, remaining, reset_after, window: None, dialect: *dialect },
        )
    })
}

fn check(s: &RateLimitSnapshot) {
    let _ = format!("{s:?}");
    assert!(
        s.limit.is_some() || s.remaining.is_some() || s.reset_after.is_some() || s.window.is_some(),
        "an empty snapshot"
    );
    if let Some(reset) = s.reset_after {
        assert!(reset < Duration::from_secs(EPOCH_THRESHOLD), "reset of {reset:?}: an epoch?");
    }
}
