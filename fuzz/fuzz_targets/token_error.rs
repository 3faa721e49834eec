//! `oauth::parse_token_error` (RFC 6749 §5.2) on arbitrary statuses and bodies.
//!
//! Input: the status (u16 little-endian), then the body.
//!
//! Checked: no panic, `Display` included; the status is kept; text is free of control
//! characters (it ends up in logs); the class follows the `error` code where there is one.
#![no_main]

use credflow_core::oauth::{ErrorCode, TokenErrorClass, parse_token_error};
use credflow_fuzz::show;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, body @ ..] => (u16::from_le_bytes([*a, *b]), body),
        _ => (0, data),
    };
    let e = parse_token_error(status, body);
    let text = show(&e);
    assert!(text.contains(&status.to_string()));
    let _ = format!("{e:?}");
    let _ = e.class.likely_cause();

    assert_eq!(e.status, status);
    assert!(!e.description.chars().any(char::is_control), "control character in description");
    if let Some(uri) = &e.uri {
        assert!(!uri.chars().any(char::is_control), "control character in error_uri");
    }
    if let Some(ErrorCode::Other(code)) = &e.code {
        assert!(!code.chars().any(char::is_control), "control character in error code");
        assert_eq!(ErrorCode::parse(code), ErrorCode::Other(code.clone()));
    }
    if let Some(code) = &e.code {
        assert_eq!(&ErrorCode::parse(code.as_str()), code, "code does not round-trip");
    }
    let expected = match &e.code {
        Some(ErrorCode::InvalidClient | ErrorCode::UnauthorizedClient) => {
            Some(TokenErrorClass::CredentialsRejected)
        }
        Some(ErrorCode::InvalidScope) => Some(TokenErrorClass::ScopeRejected),
        Some(ErrorCode::InvalidGrant | ErrorCode::UnsupportedGrantType) => {
            Some(TokenErrorClass::GrantRejected)
        }
        _ => None,
    };
    if let Some(class) = expected {
        assert_eq!(e.class, class, "class does not follow the error code");
    }
    assert!(!(e.class.is_fatal() && e.class.is_retryable()));
});
