//! `Retry-After` (RFC 9110 §10.2.3), HTTP-dates (§5.6.7) and the wait in Genesys 429 bodies, on
//! the whole input.
//!
//! Checked: no panic; a parsed date formats back to itself (IMF-fixdate) and parses again to
//! the same instant; for the first 8 bytes read as a time in range, format then parse is the
//! identity; `Retry-After` agrees with the date parser; delays are digits only; the body scan
//! reads at most its limit.
#![no_main]

use credflow_core::http::date::{MAX_HTTP_DATE, format_http_date, parse_http_date};
use credflow_core::http::retry_after::{
    BODY_SCAN_LIMIT, RetryAfter, genesys_retry_after_from_body, parse_retry_after,
};
use credflow_core::{Duration, UnixTime};
use credflow_fuzz::REFERENCE;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Dates: parse, and round-trip what parses.
    let date = parse_http_date(data);
    if let Some(t) = date {
        assert!(t <= MAX_HTTP_DATE, "a date after 9999 parsed");
        let text = format_http_date(t);
        assert_eq!(parse_http_date(text.as_str().as_bytes()), Some(t), "{}", text.as_str());
        let _ = format!("{text:?}");
    }
    // Any time in range: format then parse is the identity.
    if let Some(bytes) = data.get(..8) {
        let secs = u64::from_le_bytes(bytes.try_into().unwrap()) % (MAX_HTTP_DATE.as_secs() + 1);
        let t = UnixTime::from_secs(secs);
        let text = format_http_date(t);
        assert_eq!(text.as_str().len(), 29);
        assert_eq!(parse_http_date(text.as_str().as_bytes()), Some(t), "{}", text.as_str());
    }
    // A time past the last four-digit year is clamped, not garbled.
    assert_eq!(format_http_date(UnixTime::from_secs(u64::MAX)), format_http_date(MAX_HTTP_DATE));

    // Retry-After: either form, consistent with the date parser.
    match parse_retry_after(data) {
        Some(RetryAfter::Delay(d)) => {
            let digits = data.trim_ascii();
            assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
            assert_eq!(RetryAfter::Delay(d).delay(None), Some(d));
        }
        Some(RetryAfter::At(t)) => {
            assert_eq!(date, Some(t), "Retry-After and the date parser disagree");
            let wait = RetryAfter::At(t).delay(Some(REFERENCE));
            assert_eq!(wait, Some(t.saturating_duration_since(REFERENCE)));
            assert_eq!(RetryAfter::At(t).delay(None), None);
        }
        None => assert!(date.is_none(), "a valid HTTP-date refused as Retry-After"),
    }

    // The Genesys body scan: bounded, and only ever whole seconds (or saturated).
    let wait = genesys_retry_after_from_body(data);
    if data.len() > BODY_SCAN_LIMIT {
        assert_eq!(wait, genesys_retry_after_from_body(&data[..BODY_SCAN_LIMIT]));
    }
    if let Some(d) = wait {
        assert!(d == Duration::MAX || d == Duration::from_secs(d.as_secs()));
    }
});
