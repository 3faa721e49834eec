//! `oauth::parse_token_response` (RFC 6749 §5.1) on arbitrary bodies and options.
//!
//! Input: 1 flag byte, `default_expires_in` and `max_expires_in` (u32 little-endian seconds),
//! then, if flag bit 0 is set, a length byte and the requested scope, then the body.
//!
//! Checked: no panic; an accepted token is non-empty visible ASCII of at most `N` bytes; the
//! lifetime obeys the rule its `ExpiresInSource` names and never exceeds the maximum; the kept
//! scope is bounded and free of control characters; and the capacity `N` changes nothing but
//! whether the token fits (parsed with N = 1, 16, 64 and 2048 and compared).
#![no_main]

use arbitrary::Unstructured;
use credflow_core::Duration;
use credflow_core::oauth::{
    ExpiresInSource, ResponseError, ResponseOptions, ScopeCheck, TokenResponse,
    parse_token_response,
};
use credflow_fuzz::show;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let flags: u8 = u.arbitrary().unwrap_or(0);
    let default_expires_in = Duration::from_secs(u.arbitrary::<u32>().unwrap_or(0).into());
    let max_expires_in = Duration::from_secs(u.arbitrary::<u32>().unwrap_or(0).into());
    let scope_bytes = if flags & 1 == 1 {
        let len = usize::from(u.arbitrary::<u8>().unwrap_or(0));
        Some(u.bytes(len.min(u.len())).unwrap_or_default())
    } else {
        None
    };
    let requested_scope = match scope_bytes.map(core::str::from_utf8) {
        Some(Ok(scope)) => Some(scope),
        Some(Err(_)) => return,
        None => None,
    };
    let body = u.take_rest();
    let opts = ResponseOptions { default_expires_in, max_expires_in, requested_scope };

    let wide = check::<2048>(body, &opts);
    same_but_capacity(&wide, &check::<64>(body, &opts), 64);
    same_but_capacity(&wide, &check::<16>(body, &opts), 16);
    same_but_capacity(&wide, &check::<1>(body, &opts), 1);
});

/// What does not depend on `N`: the token as text, or the error.
type Outcome = Result<(String, Duration, ExpiresInSource, ScopeCheck), ResponseError>;

fn check<const N: usize>(body: &[u8], opts: &ResponseOptions<'_>) -> Outcome {
    match parse_token_response::<N>(body, opts) {
        Ok(r) => {
            invariants(&r, opts);
            let _ = format!("{r:?}");
            Ok((
                r.access_token.as_str().to_owned(),
                r.expires_in,
                r.expires_in_source,
                r.scope_check,
            ))
        }
        Err(e) => {
            let _ = show(&e);
            if let ResponseError::TokenTooLong { needed, capacity } = e {
                assert_eq!(capacity, N);
                assert!(needed > N, "TokenTooLong with needed {needed} <= capacity {N}");
            }
            Err(e)
        }
    }
}

fn invariants<const N: usize>(r: &TokenResponse<N>, opts: &ResponseOptions<'_>) {
    let token = r.access_token.as_str();
    assert!(!token.is_empty() && token.len() <= N, "token of {} bytes, capacity {N}", token.len());
    assert!(token.bytes().all(|b| b.is_ascii_graphic()), "token with a non-visible byte");
    assert!(r.expires_in <= opts.max_expires_in, "expires_in above the maximum");
    let default = opts.default_expires_in.min(opts.max_expires_in);
    match r.expires_in_source {
        ExpiresInSource::Reported => assert!(!r.expires_in.is_zero()),
        ExpiresInSource::NonPositive => assert!(r.expires_in.is_zero()),
        ExpiresInSource::Clamped => assert_eq!(r.expires_in, opts.max_expires_in),
        ExpiresInSource::Defaulted | ExpiresInSource::Unparseable => {
            assert_eq!(r.expires_in, default)
        }
    }
    if let Some(scope) = &r.granted_scope {
        assert!(!scope.chars().any(char::is_control), "control character kept in scope");
    } else {
        assert!(!r.granted_scope_truncated);
    }
    // Blank means ASCII whitespace only, as the parser reads it.
    if opts.requested_scope.is_none_or(|s| s.trim_ascii().is_empty()) {
        assert_eq!(r.scope_check, ScopeCheck::NotRequested);
    } else if r.granted_scope.is_none() {
        assert_eq!(r.scope_check, ScopeCheck::NotReported);
    }
}

/// `small` (capacity `n`) must equal `wide` (capacity 2048) except where the token's length
/// decides: a token longer than `n` is `TokenTooLong` with its true length.
fn same_but_capacity(wide: &Outcome, small: &Outcome, n: usize) {
    match (wide, small) {
        (Ok((token, ..)), Err(ResponseError::TokenTooLong { needed, .. })) => {
            assert!(token.len() > n);
            assert_eq!(*needed, token.len(), "TokenTooLong does not report the true length");
        }
        (Err(ResponseError::TokenTooLong { needed: a, .. }), small) => {
            assert_eq!(small, &Err(ResponseError::TokenTooLong { needed: *a, capacity: n }));
        }
        (wide, small) => assert_eq!(wide, small, "capacity {n} changed the outcome"),
    }
}
