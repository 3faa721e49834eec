//! The `jti` of the `client_secret_jwt` assertions a session sends: what RFC 7519 §4.1.7 asks
//! of it is uniqueness (a negligible chance that one value is used twice), and the session gets
//! it from a per-session counter and its seeded generator, as `oauth::jwt` documents.
#![cfg(feature = "jwt")]

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use credflow_core::lifecycle::Ticket;
use credflow_core::oauth::AuthMethod;
use credflow_core::retry::policy::TransportKind;
use credflow_core::secret::Credentials;
use credflow_core::session::{Session, SessionConfig, TokenEndpoint};
use credflow_core::{Instant, UnixTime, WallClock};
use proptest::prelude::*;

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

// ----- a token request signed anew for its resend (`Session::resign_token_request`) ---------

/// A `client_secret_jwt` session with a wall clock, seeded with `seed`.
fn jwt_session(seed: u64) -> Session<256, 1> {
    let credentials = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new(TOKEN_URL).unwrap().with_auth(AuthMethod::ClientSecretJwt);
    let mut session = Session::new(credentials, endpoint, SessionConfig::default(), seed).unwrap();
    session.set_wall_clock(WallClock::new(Instant::ZERO, UnixTime::from_secs(1_800_000_000)));
    session
}

/// The `iat` claim of the assertion in a form body.
fn iat_of(body: &str) -> u64 {
    let assertion = body.split('&').find_map(|f| f.strip_prefix("client_assertion=")).unwrap();
    let claims = String::from_utf8(base64url(assertion.split('.').nth(1).unwrap())).unwrap();
    let iat = claims.split(r#""iat":"#).nth(1).and_then(|rest| rest.split(',').next());
    iat.unwrap().parse().unwrap()
}

const TOKEN: &[u8] = br#"{"access_token":"t","token_type":"bearer","expires_in":3600}"#;

#[test]
fn a_token_request_signed_anew_has_a_new_jti_and_iat_and_the_same_length() {
    let mut session = jwt_session(7);
    let mut buf = vec![0u8; 2048];
    let (ticket, first) = session.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
    let (first_body, first_len) = (first.body.to_owned(), first.body.len());
    let mut wire = vec![0u8; 2048];
    let first_wire = first.write_http1(&mut wire).unwrap();

    let later = Instant::from_millis(1_500);
    let mut again = vec![0u8; 2048];
    let resent = session.resign_token_request(later, ticket, &mut again).expect("signed anew");
    assert_ne!(jti_of(resent.body), jti_of(&first_body), "the resend repeats the jti");
    let counter = |jti: [u8; 16]| u64::from_be_bytes(jti[8..].try_into().unwrap());
    assert_eq!(counter(jti_of(resent.body)), counter(jti_of(&first_body)) + 1);
    assert_eq!((iat_of(&first_body), iat_of(resent.body)), (1_800_000_000, 1_800_000_001));
    assert_eq!(resent.body.len(), first_len, "written where the first was");
    assert_eq!(resent.write_http1(&mut wire).unwrap(), first_wire);

    // The same token request: answered under its ticket, no failure, counted once.
    assert!(session.lifecycle().is_in_flight(ticket));
    session.handle_token_response(later, ticket, 200, &[], TOKEN);
    assert!(session.token(later).is_some());
    let counters = session.counters();
    assert_eq!((counters.token_requests, counters.token_failures), (1, 0));
}

#[test]
fn a_token_request_is_signed_anew_once_at_most() {
    let mut session = jwt_session(7);
    let mut buf = vec![0u8; 2048];
    let (ticket, _) = session.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
    assert!(session.resign_token_request(Instant::ZERO, ticket, &mut buf).is_some());
    // A server that closes every connection: the resend is lost too, and not sent a third time.
    assert!(session.resign_token_request(Instant::ZERO, ticket, &mut buf).is_none());
    assert!(session.resign_token_request(Instant::from_secs(1), ticket, &mut buf).is_none());
    // Its failure is reported as any other; the next token request may be signed anew once.
    session.handle_token_error(Instant::ZERO, ticket, Some(TransportKind::Reset));
    assert!(session.resign_token_request(Instant::ZERO, ticket, &mut buf).is_none());
    let at = session.lifecycle().next_request_at().unwrap();
    let (next, _) = session.poll_token_request(at, &mut buf).unwrap().unwrap();
    assert!(session.resign_token_request(at, next, &mut buf).is_some());
    assert!(session.resign_token_request(at, next, &mut buf).is_none());
}

#[test]
fn only_a_token_request_in_flight_with_an_assertion_is_signed_anew() {
    let mut buf = vec![0u8; 2048];
    // Answered: no longer in flight.
    let mut session = jwt_session(7);
    let (ticket, _) = session.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
    session.handle_token_response(Instant::ZERO, ticket, 200, &[], TOKEN);
    assert!(session.resign_token_request(Instant::ZERO, ticket, &mut buf).is_none());

    // Basic: nothing to sign (resent as sent, `Repeat::AsSent`).
    let credentials = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new(TOKEN_URL).unwrap();
    let mut basic: Session<256, 1> =
        Session::new(credentials, endpoint, SessionConfig::default(), 7).unwrap();
    let (ticket, _) = basic.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
    assert!(basic.resign_token_request(Instant::ZERO, ticket, &mut buf).is_none());

    // A buffer too small: not signed anew, and may be tried again with room.
    let mut session = jwt_session(7);
    let (ticket, _) = session.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
    assert!(session.resign_token_request(Instant::ZERO, ticket, &mut buf[..40]).is_none());
    assert!(session.resign_token_request(Instant::ZERO, ticket, &mut buf).is_some());
}

/// What a test does next to a session's token requests.
#[derive(Clone, Debug)]
enum Op {
    /// Polls for a token request (sent, if there is one).
    Poll,
    /// Asks for the last request polled signed anew (its connection turned out closed).
    Resign,
    /// The last request polled is answered with a token.
    Answer,
    /// The last request polled fails in transport.
    Fail,
    /// Time passes (milliseconds).
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Poll),
        3 => Just(Op::Resign),
        1 => Just(Op::Answer),
        1 => Just(Op::Fail),
        2 => (0u64..40_000).prop_map(Op::Wait),
    ]
}

proptest! {
    /// Against a reference model: a request is signed anew exactly when it is in flight and has
    /// not been signed anew yet, and no `jti` is ever sent twice.
    #[test]
    fn a_request_in_flight_is_signed_anew_once_and_no_jti_repeats(
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut session = jwt_session(11);
        let mut buf = vec![0u8; 2048];
        let mut now = Instant::ZERO;
        let mut last: Option<Ticket> = None;
        let mut resigned: HashSet<Ticket> = HashSet::new();
        let mut sent: HashSet<[u8; 16]> = HashSet::new();
        for op in ops {
            session.handle_timeout(now);
            match op {
                Op::Poll => {
                    if let Some((ticket, request)) = session.poll_token_request(now, &mut buf).unwrap() {
                        prop_assert!(sent.insert(jti_of(request.body)), "a jti sent twice");
                        last = Some(ticket);
                    }
                }
                Op::Resign => {
                    let Some(ticket) = last else { continue };
                    let expected =
                        session.lifecycle().is_in_flight(ticket) && !resigned.contains(&ticket);
                    let request = session.resign_token_request(now, ticket, &mut buf);
                    prop_assert_eq!(request.is_some(), expected);
                    if let Some(request) = request {
                        prop_assert!(sent.insert(jti_of(request.body)), "a jti sent twice");
                        resigned.insert(ticket);
                    }
                }
                Op::Answer => {
                    if let Some(ticket) = last {
                        session.handle_token_response(now, ticket, 200, &[], TOKEN);
                    }
                }
                Op::Fail => {
                    if let Some(ticket) = last {
                        session.handle_token_error(now, ticket, Some(TransportKind::Reset));
                    }
                }
                Op::Wait(ms) => now = now + credflow_core::Duration::from_millis(ms),
            }
        }
    }
}
