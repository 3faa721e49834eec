//! Property tests for the session, driven by arbitrary sequences of events and time steps.
//!
//! Invariants checked after every step, against a small model of what the server issued:
//! - a token handed out by `authorize` is one the server issued and has not expired;
//! - never two token requests in flight;
//! - every "not before T" and every retry instant is at or after `now`;
//! - no input sequence panics.
//!
//! And, driven as an adapter drives it (sleep to `poll_timeout`, `handle_timeout`, poll for a
//! token request) against a token endpoint that answers anything (lifetimes of zero, negative,
//! fractional or huge, any status, any body, `Retry-After: 0`, transport failures): no two token
//! requests start closer than `min_refresh_interval`, but for one refresh after a 401 per
//! interval.
//!
//! And, after a 429 whose `Retry-After` is far past the retry policy's `max_wait`: requests of
//! any priority and deadline are sent exactly when the quota's probe is due (one per
//! `max_wait`), the others fail naming the server's wait, and a probe's success lifts the hold.

use credflow_core::http::Method;
use credflow_core::lifecycle::{LifecycleEvent, Ticket};
use credflow_core::ratelimit::pacer::Priority;
use credflow_core::retry::policy::{GiveUpReason, TransportKind};
use credflow_core::secret::Credentials;
use credflow_core::session::{
    ApiErrorKind, Authorize, Event, HostKey, RequestSpec, RequestState, RetryReason, Session,
    SessionConfig, TokenEndpoint, Verdict,
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
            // `has_events` says whether `poll_event` has one to give, whatever came before.
            loop {
                let said = s.has_events();
                let event = s.poll_event();
                prop_assert_eq!(said, event.is_some(), "{:?}", event);
                if event.is_none() {
                    break;
                }
            }
        }
    }
}

/// `expires_in` as servers write it, the hostile ones included (raw JSON).
const LIFETIMES: [&str; 22] = [
    "0",
    "-0",
    "-5",
    "-1",
    "\"0\"",
    "\"-5\"",
    "\"0.9\"",
    "0.9",
    "0.0",
    "1e-3",
    "-1e30",
    "1e30",
    "1",
    "2",
    "\"1\"",
    "3",
    "60",
    "3600",
    "\"3600\"",
    "null",
    "\"soon\"",
    "99999999999999999999",
];

/// What the token endpoint answers.
#[derive(Clone, Debug)]
enum TokenAnswer {
    /// 2xx with a token of this lifetime (an index into [`LIFETIMES`], or an integer).
    Granted { status: u16, lifetime: Result<usize, i32> },
    /// An OAuth error body.
    Error { status: u16, code: &'static str, description: &'static str },
    /// Any status, any bytes.
    Raw { status: u16, body: Vec<u8> },
}

fn token_answer() -> impl Strategy<Value = TokenAnswer> {
    let status = prop_oneof![Just(200u16), Just(201), Just(204), 100u16..600];
    let lifetime =
        prop_oneof![3 => (0..LIFETIMES.len()).prop_map(Ok), 1 => (-10i32..10).prop_map(Err)];
    let code = prop_oneof![
        Just(("invalid_request", "rate limit exceeded; slow down")),
        Just(("invalid_client", "authentication failed")),
        Just(("server_error", "")),
        Just(("temporarily_unavailable", "")),
        Just(("invalid_request", "missing grant_type")),
    ];
    prop_oneof![
        6 => (status, lifetime).prop_map(|(status, lifetime)| TokenAnswer::Granted { status, lifetime }),
        2 => (prop_oneof![Just(400u16), Just(401), Just(429), Just(503), 100u16..600], code)
            .prop_map(|(status, (code, description))| TokenAnswer::Error { status, code, description }),
        2 => (prop_oneof![Just(200u16), Just(500), Just(502), 100u16..600], proptest::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(status, body)| TokenAnswer::Raw { status, body }),
    ]
}

/// One step of an adapter's life.
#[derive(Clone, Debug)]
enum Step {
    /// Time passes (milliseconds).
    Advance(u64),
    /// The token driver's loop: sleep until `poll_timeout` (if later), `handle_timeout`, then
    /// poll for a token request.
    Drive,
    /// Poll for a token request now.
    PollToken,
    /// The timer fires now.
    Timeout,
    /// The token endpoint answers the outstanding request, with this `Retry-After` (an index:
    /// none, `0`, `1`, `3`, garbage, huge).
    Answer(TokenAnswer, u8),
    /// The outstanding token request fails in transport (`false`) or is abandoned (`true`).
    TokenTransport(bool),
    /// An API request is sent with the current token, if any, and answered with this status.
    Call(u16),
    /// The secret is rotated.
    Rotate,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u64..3_000).prop_map(Step::Advance),
        1 => (0u64..200_000).prop_map(Step::Advance),
        6 => Just(Step::Drive),
        2 => Just(Step::PollToken),
        1 => Just(Step::Timeout),
        6 => (token_answer(), any::<u8>()).prop_map(|(a, r)| Step::Answer(a, r)),
        1 => any::<bool>().prop_map(Step::TokenTransport),
        3 => prop_oneof![3 => Just(401u16), 1 => Just(200), 1 => Just(429), 1 => Just(503)].prop_map(Step::Call),
        1 => Just(Step::Rotate),
    ]
}

const RETRY_AFTER: [Option<&str>; 6] =
    [None, Some("0"), Some("1"), Some("3"), Some("soon"), Some("99999999999")];

/// The spacing invariant, as a model: the starts of token requests, and which may come early.
#[derive(Default)]
struct Spacing {
    last_start: Option<Instant>,
    /// The last start closer than the interval to the one before it.
    last_early: Option<Instant>,
    /// A 401 dropped the current token since the last start (and no token or credential
    /// change came since): the next start may be early.
    refused: bool,
    starts: usize,
}

impl Spacing {
    fn started(&mut self, now: Instant, min: Duration) -> Result<(), TestCaseError> {
        if let Some(gap) = self.last_start.map(|at| now.saturating_duration_since(at))
            && gap < min
        {
            prop_assert!(self.refused, "token requests {gap} apart at {now}, no 401 between them");
            prop_assert!(
                self.last_early.is_none_or(|at| now.saturating_duration_since(at) >= min),
                "a second early refresh within {min} at {now}"
            );
            self.last_early = Some(now);
        }
        self.last_start = Some(now);
        self.refused = false;
        self.starts += 1;
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the token endpoint answers and whenever the adapter wakes, no two token
    /// requests start closer than `min_refresh_interval`, but for one refresh after a 401 per
    /// interval.
    #[test]
    fn token_requests_are_spaced_whatever_the_server_sends(
        steps in proptest::collection::vec(step(), 1..200),
        interval_ms in prop_oneof![Just(1_000u64), Just(200), 1u64..5_000],
        seed: u64,
    ) {
        let creds = Credentials::from_strs("client", "secret").unwrap();
        let endpoint = TokenEndpoint::new("https://login.example.com/oauth/token").unwrap();
        let mut config = SessionConfig::default();
        let min = Duration::from_millis(interval_ms);
        config.lifecycle.min_refresh_interval = min;
        let mut s: Session<64, 2> = Session::new(creds, endpoint, config, seed).unwrap();
        let mut buf = [0u8; 1024];
        let mut now = Instant::ZERO;
        let mut outstanding: Option<Ticket> = None;
        let mut spacing = Spacing::default();
        let mut counter = 0u32;

        for step in steps {
            let mut poll = false;
            match step {
                Step::Advance(ms) => now = now + Duration::from_millis(ms),
                Step::Drive => {
                    if let Some((at, _)) = s.poll_timeout()
                        && at > now
                        && !at.is_never()
                    {
                        now = at;
                    }
                    s.handle_timeout(now);
                    poll = true;
                }
                Step::PollToken => poll = true,
                Step::Timeout => s.handle_timeout(now),
                Step::Answer(answer, r) => {
                    if let Some(ticket) = outstanding.take() {
                        let retry_after = RETRY_AFTER[usize::from(r) % RETRY_AFTER.len()];
                        let headers: Vec<(&str, &str)> = retry_after.map(|v| ("Retry-After", v)).into_iter().collect();
                        let (status, body) = match answer {
                            TokenAnswer::Granted { status, lifetime } => {
                                counter += 1;
                                let expires_in = match lifetime {
                                    Ok(i) => LIFETIMES[i].to_owned(),
                                    Err(n) => n.to_string(),
                                };
                                (status, format!(r#"{{"access_token":"tok{counter}","token_type":"Bearer","expires_in":{expires_in}}}"#).into_bytes())
                            }
                            TokenAnswer::Error { status, code, description } => {
                                (status, format!(r#"{{"error":"{code}","error_description":"{description}"}}"#).into_bytes())
                            }
                            TokenAnswer::Raw { status, body } => (status, body),
                        };
                        s.handle_token_response(now, ticket, status, headers.as_slice(), &body);
                    }
                }
                Step::TokenTransport(abandon) => {
                    if let Some(ticket) = outstanding.take() {
                        s.handle_token_error(now, ticket, (!abandon).then_some(TransportKind::Reset));
                    }
                }
                Step::Call(status) => {
                    let spec = RequestSpec::new(Method::Get, HostKey(1));
                    let mut req = s.begin(now, spec);
                    if let Authorize::Send { .. } = s.authorize(now, &mut req) {
                        let _ = s.handle_response(now, &mut req, status, &[("Retry-After", "1")], b"{}");
                    }
                }
                Step::Rotate => {
                    s.set_credentials(now, Credentials::from_strs("client", "rotated").unwrap());
                    outstanding = None; // disowned
                    spacing.refused = false;
                }
            }
            if poll && let Some((ticket, _)) = s.poll_token_request(now, &mut buf).unwrap() {
                prop_assert!(outstanding.is_none(), "two token requests in flight");
                outstanding = Some(ticket);
                spacing.started(now, min)?;
            }
            if !s.lifecycle().in_flight() {
                outstanding = None;
            }
            while let Some(event) = s.poll_event() {
                match event {
                    Event::Token(LifecycleEvent::Invalidated(_)) => spacing.refused = true,
                    Event::Token(LifecycleEvent::TokenAcquired { .. }) => spacing.refused = false,
                    _ => {}
                }
            }
        }
    }
}

/// The storm's shape, as a timeline: an adapter that answers every token request at once with
/// a token that has no life, and wakes whenever `poll_timeout` says. Over 20 s of virtual time
/// it may send at most one request per `min_refresh_interval` (1 s) plus one; before the
/// spacing was enforced in the lifecycle it sent one request per wake, thousands.
#[test]
fn a_token_with_no_life_does_not_drive_a_request_loop() {
    for expires_in in ["0", "-5", "\"0.9\"", "0.9", "-1e30"] {
        let creds = Credentials::from_strs("client", "secret").unwrap();
        let endpoint = TokenEndpoint::new("https://login.example.com/oauth/token").unwrap();
        let mut s: Session<64, 2> =
            Session::new(creds, endpoint, SessionConfig::default(), 1).unwrap();
        let mut buf = [0u8; 1024];
        let body =
            format!(r#"{{"access_token":"t","token_type":"bearer","expires_in":{expires_in}}}"#);
        let mut now = Instant::ZERO;
        let mut starts = Vec::new();
        for _ in 0..10_000 {
            s.handle_timeout(now);
            if let Some((ticket, _)) = s.poll_token_request(now, &mut buf).unwrap() {
                starts.push(now);
                s.handle_token_response(now, ticket, 200, &[], body.as_bytes());
            }
            while s.poll_event().is_some() {}
            match s.poll_timeout() {
                Some((at, _)) if at > now && at < Instant::from_secs(20) => now = at,
                Some((at, _)) if at <= now => {}
                _ => break,
            }
        }
        assert!(
            starts.len() <= 21,
            "expires_in {expires_in}: {} token requests in 20 s",
            starts.len()
        );
        assert!(
            starts
                .windows(2)
                .all(|w| w[1].saturating_duration_since(w[0]) >= Duration::from_secs(1)),
            "expires_in {expires_in}: requests closer than min_refresh_interval: {starts:?}"
        );
        // No token is served, and the reason is on record: a failure, not a success.
        assert!(s.token(now).is_none());
        let (error, _) = s.last_token_error().expect("a diagnosis");
        assert_eq!(error.status, 200);
        let said =
            if cfg!(feature = "diagnosis") { "granted already expired" } else { "expires_in<1s" };
        assert!(error.to_string().contains(said), "{error}");
        assert_eq!(error.class, credflow_core::oauth::TokenErrorClass::Permanent);
        assert!(s.counters().token_failures >= 1);
    }
}

/// What a request does after the quota's probe of [`ProbeStep::Ask`] was sent.
#[derive(Clone, Copy, Debug)]
enum ProbeAnswer {
    /// The server answers 429 again, with this `Retry-After` (an index into
    /// [`LONG_RETRY_AFTER`]): the limit holds.
    Limited(u8),
    /// The caller drops the request before an answer: the probe found nothing out.
    Dropped,
}

/// One step after a 429 whose `Retry-After` is far past `max_wait`.
#[derive(Clone, Debug)]
enum ProbeStep {
    /// Time passes (milliseconds).
    Advance(u64),
    /// A request begins at this priority (an index) and deadline (seconds from now, or none),
    /// and asks to be sent; if sent, it gets this answer.
    Ask { priority: u8, deadline: Option<u16>, answer: ProbeAnswer },
}

fn probe_step() -> impl Strategy<Value = ProbeStep> {
    let answer = prop_oneof![
        3 => any::<u8>().prop_map(ProbeAnswer::Limited),
        1 => Just(ProbeAnswer::Dropped),
    ];
    prop_oneof![
        3 => (0u64..5_000).prop_map(ProbeStep::Advance),
        2 => (0u64..130_000).prop_map(ProbeStep::Advance),
        6 => (any::<u8>(), proptest::option::of(0u16..200), answer)
            .prop_map(|(priority, deadline, answer)| ProbeStep::Ask { priority, deadline, answer }),
    ]
}

/// `Retry-After` values of a limit that holds for far longer than `max_wait` (60 s) and than a
/// run (at most 64 steps of 130 s): a day, some 31 years, and a number past any clock.
const LONG_RETRY_AFTER: [&str; 3] = ["86400", "999999999", "99999999999999999999"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// After a 429 with a `Retry-After` far past `max_wait`, the requests that follow (any
    /// priority, any deadline or none, at any time) are sent exactly when a model says the
    /// quota's probe is due: `max_wait` after the last 429 or the last probe, one at a time;
    /// every other fails at once, naming the server's wait (not its deadline: none is long
    /// enough). Once a probe is answered without a 429, requests flow again. A request's
    /// deadline used to be checked first, and every request that had one failed without a probe.
    #[test]
    fn a_long_hold_is_probed_once_per_max_wait_whatever_the_deadlines(
        steps in proptest::collection::vec(probe_step(), 1..64),
        first in 0..LONG_RETRY_AFTER.len(),
    ) {
        let creds = Credentials::from_strs("client", "secret").unwrap();
        let endpoint = TokenEndpoint::new("https://login.example.com/oauth/token").unwrap();
        let mut s: Session<64, 2> = Session::new(creds, endpoint, SessionConfig::default(), 1).unwrap();
        let max = s.config().retry.max_wait;
        let mut buf = [0u8; 1024];
        let mut now = Instant::from_secs(1);
        let (ticket, _) = s.poll_token_request(now, &mut buf).unwrap().unwrap();
        let body = br#"{"access_token":"T","token_type":"Bearer","expires_in":86400}"#;
        s.handle_token_response(now, ticket, 200, &[], body);
        let host = HostKey(1);
        let ask = |s: &mut Session<64, 2>, now: Instant, priority: Priority, deadline: Option<Instant>| {
            let mut req = s.begin(now, RequestSpec { priority, deadline, ..RequestSpec::new(Method::Get, host) });
            let sent = matches!(s.authorize(now, &mut req), Authorize::Send { .. });
            (req, sent)
        };
        // The model: when the next probe is due, and when the server's hold ends (`None`: past
        // any clock).
        let limited = |s: &mut Session<64, 2>, now: Instant, req: &mut RequestState, retry_after: &str| {
            let verdict = s.handle_response(now, req, 429, &[("Retry-After", retry_after)], b"");
            let held = retry_after.parse::<u64>().ok().map(|secs| now + Duration::from_secs(secs));
            (verdict, held)
        };
        let (mut first_req, sent) = ask(&mut s, now, Priority::Normal, None);
        prop_assert!(sent);
        let (_, mut hold_end) = limited(&mut s, now, &mut first_req, LONG_RETRY_AFTER[first]);
        let mut due = now + max;
        let mut probes = 0u32;

        for step in steps {
            match step {
                ProbeStep::Advance(ms) => now = now + Duration::from_millis(ms),
                ProbeStep::Ask { priority, deadline, answer } => {
                    let priority = [Priority::Critical, Priority::Normal, Priority::Background][usize::from(priority % 3)];
                    let deadline = deadline.map(|secs| now + Duration::from_secs(u64::from(secs)));
                    let mut req = s.begin(now, RequestSpec { priority, deadline, ..RequestSpec::new(Method::Get, host) });
                    match s.authorize(now, &mut req) {
                        Authorize::Send { .. } => {
                            prop_assert!(now >= due, "a probe at {now}, due at {due}");
                            probes += 1;
                            due = now + max;
                            match answer {
                                ProbeAnswer::Limited(r) => {
                                    let retry_after = LONG_RETRY_AFTER[usize::from(r) % LONG_RETRY_AFTER.len()];
                                    let (verdict, held) = limited(&mut s, now, &mut req, retry_after);
                                    prop_assert!(matches!(verdict, Verdict::Fail(_)), "{verdict:?}");
                                    hold_end = match (hold_end, held) {
                                        (Some(a), Some(b)) => Some(a.max(b)),
                                        _ => None,
                                    };
                                }
                                ProbeAnswer::Dropped => s.abandon(now, &mut req),
                            }
                        }
                        Authorize::Fail(e) => {
                            prop_assert!(now < due, "no probe at {now}, due at {due}: {e:?}");
                            let ApiErrorKind::GaveUp { reason: GiveUpReason::WaitTooLong { wait, max: m }, last: RetryReason::RateLimited } = e.kind else {
                                return Err(TestCaseError::fail(format!("at {now}: {e:?}")));
                            };
                            prop_assert_eq!(m, max);
                            match hold_end {
                                Some(end) => prop_assert_eq!(wait, end.saturating_duration_since(now)),
                                None => prop_assert!(wait > max),
                            }
                        }
                        other => return Err(TestCaseError::fail(format!("at {now}: {other:?}"))),
                    }
                }
            }
        }
        // The next probe goes when due, whatever its deadline, and its success lifts the hold.
        now = now.max(due);
        let soon = Some(now + Duration::from_secs(1));
        let (mut probe, sent) = ask(&mut s, now, Priority::Background, soon);
        prop_assert!(sent, "no probe at {now} (due at {due}) after {probes} probes");
        prop_assert_eq!(s.handle_response(now, &mut probe, 200, &[], b"{}"), Verdict::Done);
        for priority in [Priority::Background, Priority::Normal, Priority::Critical] {
            let (mut req, sent) = ask(&mut s, now, priority, soon);
            prop_assert!(sent, "{priority:?} held after the hold was lifted");
            prop_assert_eq!(s.handle_response(now, &mut req, 200, &[], b"{}"), Verdict::Done);
        }
    }
}
