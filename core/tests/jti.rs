//! The `jti` of the `client_secret_jwt` assertions a session sends: what RFC 7519 §4.1.7 asks
//! of it is uniqueness (a negligible chance that one value is used twice), and the session gets
//! it from a per-session counter and its seeded generator, as `oauth::jwt` documents.
#![cfg(feature = "jwt")]

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use credflow_core::oauth::AuthMethod;
use credflow_core::secret::Credentials;
use credflow_core::session::{Session, SessionConfig, TokenEndpoint};
use credflow_core::{Instant, UnixTime, WallClock};

const TOKEN_URL: &str = "https://login.mypurecloud.com/oauth/token";

/// The `jti` of each of the first `count` token requests of a session seeded with `seed`:
/// each token lives an hour and the next request goes out when the session asks for it.
fn jtis(seed: u64, count: usize) -> Vec<[u8; 16]> {
    let credentials = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new(TOKEN_URL).unwrap().with_auth(AuthMethod::ClientSecretJwt);
    let mut session: Session<256, 1> =
        Session::new(credentials, endpoint, SessionConfig::default(), seed).unwrap();
    session.set_wall_clock(WallClock::new(Instant::ZERO, UnixTime::from_secs(1_800_000_000)));
    let mut buf = vec![0u8; 2048];
    let mut now = Instant::ZERO;
    let mut out = Vec::new();
    while out.len() < count {
        let Some((ticket, request)) = session.poll_token_request(now, &mut buf).unwrap() else {
            let (at, _) =
                session.poll_timeout().expect("a session with a token wakes to refresh it");
            now = at;
            session.handle_timeout(now);
            continue;
        };
        out.push(jti_of(request.body));
        let body = r#"{"access_token":"t","token_type":"bearer","expires_in":3600}"#;
        session.handle_token_response(now, ticket, 200, &[], body.as_bytes());
    }
    out
}

/// The 16 `jti` bytes of the assertion in a form body.
fn jti_of(body: &str) -> [u8; 16] {
    let assertion = body
        .split('&')
        .find_map(|field| field.strip_prefix("client_assertion="))
        .expect("a client_secret_jwt request carries client_assertion");
    let payload = assertion.split('.').nth(1).expect("header.payload.signature");
    let claims = String::from_utf8(base64url(payload)).unwrap();
    let jti = claims.split(r#""jti":""#).nth(1).and_then(|rest| rest.split('"').next()).unwrap();
    base64url(jti).try_into().expect("16 bytes")
}

/// Decodes unpadded base64url (the `base64` crate is built without `alloc` here).
fn base64url(text: &str) -> Vec<u8> {
    let mut out = vec![0u8; text.len()];
    let len = URL_SAFE_NO_PAD.decode_slice(text, &mut out).unwrap();
    out.truncate(len);
    out
}

#[test]
fn every_assertion_of_a_session_has_its_own_jti() {
    let jtis = jtis(7, 40);
    let distinct: HashSet<_> = jtis.iter().collect();
    assert_eq!(distinct.len(), jtis.len(), "a jti repeated within one session");
    // The second half counts the session's assertions from 1: unique even if the random half
    // repeated.
    let counters: Vec<u64> =
        jtis.iter().map(|jti| u64::from_be_bytes(jti[8..].try_into().unwrap())).collect();
    assert_eq!(counters, (1..=40).collect::<Vec<u64>>());
}

#[test]
fn sessions_seeded_differently_send_different_jtis() {
    // Two processes of one client id, each seeded from its own random source.
    let a: HashSet<_> = jtis(0x5eed_0001, 20).into_iter().collect();
    let b: HashSet<_> = jtis(0x5eed_0002, 20).into_iter().collect();
    assert!(a.is_disjoint(&b), "two differently seeded sessions sent the same jti");
}
