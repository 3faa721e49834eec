//! `classify::classify_response` on arbitrary statuses, header fields and bodies.
//!
//! Input: an HTTP/1.1-shaped response (see the crate docs): status line, `name: value` lines,
//! an empty line, the body. Each input is classified without a reference time, with its own
//! `Date` if it parses, and with a fixed reference.
//!
//! Checked: no panic, `Display` included; the class follows the status table; the waits are
//! the ones `Retry-After` and the body give; the rate-limit snapshot is the header parser's;
//! correlation ids and diagnoses are bounded and free of control characters.
#![no_main]

use credflow_core::UnixTime;
use credflow_core::classify::{
    CORRELATION_ID_CAPACITY, Classified, DiagnosisKind, ResponseClass, WaitSource,
    classify_response, correlation_id,
};
use credflow_core::http::Headers;
use credflow_core::http::date::parse_http_date;
use credflow_core::http::retry_after::{RetryAfter, genesys_retry_after_from_body};
use credflow_core::ratelimit::headers::parse_rate_limit;
use credflow_fuzz::{REFERENCE, response, show};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, headers, body) = response(data);
    let headers = headers.as_slice();
    let date = Headers::get(headers, "date").and_then(parse_http_date);
    for reference in [None, date, Some(REFERENCE)] {
        let c = classify_response(status, headers, body, reference);
        check(status, headers, body, reference, &c);
    }
    if let Some(id) = correlation_id(headers, body) {
        check_text(id.as_str(), CORRELATION_ID_CAPACITY);
    }
});

fn check(
    status: u16,
    headers: &[(&str, &[u8])],
    body: &[u8],
    reference: Option<UnixTime>,
    c: &Classified,
) {
    let _ = format!("{c:?}");
    assert_eq!(c.rate_limit, parse_rate_limit(headers, reference));
    if let Some(id) = &c.correlation_id {
        let _ = show(id);
        check_text(id.as_str(), CORRELATION_ID_CAPACITY);
    }
    let header_wait = RetryAfter::from_headers(headers).and_then(|r| r.delay(reference));
    match (&c.class, status) {
        (ResponseClass::Success, 100..=399) => {}
        (ResponseClass::Unauthorized { genesys_code, .. }, 401) => {
            if let Some(code) = genesys_code {
                assert!(!code.is_empty());
            }
        }
        (ResponseClass::Forbidden(d), 403) => {
            let _ = show(d);
            check_text(&d.missing, usize::MAX);
            check_text(&d.message, usize::MAX);
            if d.kind == DiagnosisKind::Unexplained {
                assert!(d.missing.is_empty(), "an unexplained refusal names what is missing");
            }
        }
        (ResponseClass::RateLimited { retry_after, source }, 429) => match source {
            WaitSource::Header => assert_eq!(*retry_after, header_wait),
            WaitSource::Body => {
                assert!(header_wait.is_none());
                assert_eq!(*retry_after, genesys_retry_after_from_body(body));
            }
            WaitSource::None => {
                assert!(retry_after.is_none() && header_wait.is_none());
                assert!(genesys_retry_after_from_body(body).is_none());
            }
        },
        (ResponseClass::Transient { status: s, retry_after }, 408 | 500 | 502 | 503 | 504) => {
            assert_eq!(*s, status);
            assert_eq!(*retry_after, header_wait);
        }
        (ResponseClass::Permanent { status: s }, _) => {
            assert_eq!(*s, status);
            assert!(!matches!(status, 100..=399 | 401 | 403 | 429 | 408 | 500 | 502 | 503 | 504));
        }
        (class, status) => panic!("status {status} classified as {class:?}"),
    }
}

fn check_text(text: &str, capacity: usize) {
    assert!(text.len() <= capacity, "{text:?} longer than {capacity}");
    assert!(!text.chars().any(char::is_control), "control character in {text:?}");
}
