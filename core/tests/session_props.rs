//! Property tests for the session, driven by arbitrary sequences of events and time steps.
//!
//! Invariants checked after every step, against a small model of what the server issued:
//! - a token handed out by `authorize` is one the server issued and has not expired;
//! - never two token requests in flight;
//! - every "not before T" and every retry instant is at or after `now`;
//! - no input sequence panics.

use credflow_core::http::Method;
use credflow_core::lifecycle::Ticket;
use credflow_core::ratelimit::pacer::Priority;
use credflow_core::retry::policy::TransportKind;
use credflow_core::secret::Credentials;
use credflow_core::session::{
    Authorize, HostKey, RequestSpec, RequestState, Session, SessionConfig, TokenEndpoint, Verdict,
};
use credflow_core::{Duration, Instant};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    PollToken,
    AnswerToken(u8, u16),
    TokenTransport(bool),
    Begin(u8, u8),
    Authorize(usize),
    Respond(usize, u16, u8),
    Transport(usize),
    Abandon(usize),
    Timeout,
    Rotate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..90_000).prop_map(Op::Advance),
        3 => Just(Op::PollToken),
        3 => (any::<u8>(), 0u16..400).prop_map(|(k, life)| Op::AnswerToken(k, life)),
        1 => any::<bool>().prop_map(Op::TokenTransport),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(m, p)| Op::Begin(m, p)),
        5 => any::<usize>().prop_map(Op::Authorize),
        4 => (any::<usize>(), prop_oneof![Just(200u16), Just(401), Just(403), Just(429), Just(500), Just(503), Just(404), 100u16..600], any::<u8>())
            .prop_map(|(i, s, r)| Op::Respond(i, s, r)),
        1 => any::<usize>().prop_map(Op::Transport),
        1 => any::<usize>().prop_map(Op::Abandon),
        2 => Just(Op::Timeout),
        1 => Just(Op::Rotate),
    ]
}

struct Model {
    /// (token value, absolute expiry) of every token the "server" issued.
    issued: Vec<(String, Instant)>,
    outstanding: Option<(Ticket, Instant)>,
    counter: u32,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn session_invariants(ops in proptest::collection::vec(op(), 1..160), seed: u64) {
        let creds = Credentials::from_strs("client", "secret").unwrap();
        let endpoint = TokenEndpoint::new("https://login.example.com/oauth/token").unwrap();
        let mut s: Session<64, 2> = Session::new(creds, endpoint, SessionConfig::default(), seed).unwrap();
        let mut buf = [0u8; 1024];
        let mut now = Instant::ZERO;
        let mut model = Model { issued: Vec::new(), outstanding: None, counter: 0 };
        let mut reqs: Vec<(RequestState, bool)> = Vec::new(); // (state, sent)

        for op in ops {
            match op {
                Op::Advance(ms) => now = now + Duration::from_millis(ms),
                Op::PollToken => {
                    if let Some((ticket, _req)) = s.poll_token_request(now, &mut buf).unwrap() {
                        prop_assert!(model.outstanding.is_none(), "two token requests in flight");
                        model.outstanding = Some((ticket, now));
                    }
                }
                Op::AnswerToken(kind, life) => {
                    if let Some((ticket, sent)) = model.outstanding.take() {
                        match kind % 6 {
                            0..=2 => {
                                model.counter += 1;
                                let value = format!("tok{}", model.counter);
                                let body = format!(r#"{{"access_token":"{value}","token_type":"Bearer","expires_in":{life}}}"#);
                                model.issued.push((value, sent + Duration::from_secs(u64::from(life))));
                                s.handle_token_response(now, ticket, 200, &[("Date", "garbage")], body.as_bytes());
                            }
                            3 => s.handle_token_response(now, ticket, 503, &[("Retry-After", "3")], b"<html>"),
                            4 => s.handle_token_response(now, ticket, 400, &[], br#"{"error":"invalid_request","error_description":"rate limit exceeded; slow down"}"#),
                            _ => s.handle_token_response(now, ticket, 401, &[], br#"{"error":"invalid_client"}"#),
                        }
                    }
                }
                Op::TokenTransport(abandon) => {
                    if let Some((ticket, _)) = model.outstanding.take() {
                        s.handle_token_error(now, ticket, if abandon { None } else { Some(TransportKind::Timeout) });
                    }
                }
                Op::Begin(m, p) => {
                    let method = [Method::Get, Method::Post, Method::Put, Method::Delete][usize::from(m % 4)];
                    let priority = [Priority::Critical, Priority::Normal, Priority::Background][usize::from(p % 3)];
                    let deadline = (p % 5 == 0).then(|| now + Duration::from_secs(u64::from(m)));
                    let spec = RequestSpec { method, idempotent: m % 7 == 0, priority, deadline, host: HostKey(u64::from(m % 3)) };
                    if reqs.len() < 16 {
                        reqs.push((s.begin(now, spec), false));
                    }
                }
                Op::Authorize(i) => {
                    if !reqs.is_empty() {
                        let i = i % reqs.len();
                        let (req, sent) = &mut reqs[i];
                        match s.authorize(now, req) {
                            Authorize::Send { token, .. } => {
                                let expiry = model.issued.iter().find(|(v, _)| v == token.as_str()).map(|(_, e)| *e);
                                prop_assert!(expiry.is_some(), "a token the server never issued");
                                prop_assert!(now < expiry.unwrap(), "expired token handed out at {now}");
                                *sent = true;
                            }
                            Authorize::Wait { until: Some(t), .. } => prop_assert!(t >= now, "wait until {t} < now {now}"),
                            Authorize::Wait { until: None, .. } => {}
                            Authorize::Fail(_) => { let _ = reqs.swap_remove(i); }
                        }
                    }
                }
                Op::Respond(i, status, r) => {
                    if !reqs.is_empty() {
                        let i = i % reqs.len();
                        if reqs[i].1 {
                            let ra = format!("{}", r % 8);
                            let headers = [("Retry-After", ra.as_str()), ("inin-ratelimit-count", "5"), ("inin-ratelimit-allowed", "20"), ("inin-ratelimit-reset", "30")];
                            let hs: &[(&str, &str)] = if r % 2 == 0 { &headers } else { &headers[1..] };
                            let v = s.handle_response(now, &mut reqs[i].0, status, hs, b"{}");
                            reqs[i].1 = false;
                            match v {
                                Verdict::Retry { at, .. } => prop_assert!(at >= now),
                                Verdict::Done | Verdict::Fail(_) => { let _ = reqs.swap_remove(i); }
                            }
                        }
                    }
                }
                Op::Transport(i) => {
                    if !reqs.is_empty() {
                        let i = i % reqs.len();
                        if reqs[i].1 {
                            reqs[i].1 = false;
                            match s.handle_transport_error(now, &mut reqs[i].0, TransportKind::Reset) {
                                Verdict::Retry { at, .. } => prop_assert!(at >= now),
                                _ => { let _ = reqs.swap_remove(i); }
                            }
                        }
                    }
                }
                Op::Abandon(i) => {
                    if !reqs.is_empty() {
                        let i = i % reqs.len();
                        let (mut req, _) = reqs.swap_remove(i);
                        s.abandon(now, &mut req);
                    }
                }
                Op::Timeout => s.handle_timeout(now),
                Op::Rotate => {
                    s.set_credentials(now, Credentials::from_strs("client", "rotated").unwrap());
                    model.outstanding = None; // disowned
                }
            }
            if !s.lifecycle().in_flight() {
                model.outstanding = None;
            }
            if let Some((token, times)) = s.token(now) {
                let expiry = model.issued.iter().find(|(v, _)| v == token.as_str()).map(|(_, e)| *e);
                prop_assert!(expiry.is_some_and(|e| now < e && times.expires_at <= e));
            }
            let _ = s.poll_timeout();
            while s.poll_event().is_some() {}
        }
    }
}
