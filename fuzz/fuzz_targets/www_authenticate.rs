//! `http::www_authenticate::parse_bearer_challenge` (RFC 9110 §11.6.1, RFC 6750 §3) and
//! `unescape` on arbitrary field values (the whole input).
//!
//! Checked: no panic; every value returned is borrowed from the input; unescaping never adds
//! characters, and its `Display` equals its iterator; the error code round-trips through
//! `BearerError::from_code`.
#![no_main]

use credflow_core::http::www_authenticate::{BearerError, parse_bearer_challenge, unescape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        check_unescape(text);
    }
    let Some(challenge) = parse_bearer_challenge(data) else { return };
    assert!(contains_ignore_case(data, b"bearer"), "a Bearer challenge out of nowhere");
    let _ = format!("{challenge:?}");
    let range = data.as_ptr_range();
    let other = match challenge.error {
        Some(BearerError::Other(raw)) => Some(raw),
        _ => None,
    };
    let raws = [challenge.error_description, challenge.scope, challenge.realm, other];
    for raw in raws.into_iter().flatten() {
        check_unescape(raw);
        let inside = raw.is_empty() || (range.contains(&raw.as_ptr()) && raw.len() <= data.len());
        assert!(inside, "a value not borrowed from the input");
    }
    if let Some(error) = challenge.error {
        let _ = error.to_string();
        if let BearerError::Other(raw) = error {
            assert_eq!(BearerError::from_code(raw), error);
        }
    }
    let _ = challenge.error_description().map(|d| d.count());
    let _ = challenge.scope().map(|s| s.to_string());
});

fn check_unescape(raw: &str) {
    let chars: String = unescape(raw).collect();
    assert!(chars.chars().count() <= raw.chars().count(), "unescaping added characters");
    assert_eq!(unescape(raw).to_string(), chars);
    if !raw.contains('\\') {
        assert_eq!(chars, raw);
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}
