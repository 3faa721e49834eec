//! Timeline tests for the session: each scenario of the reference guide, with explicit times.
#![allow(clippy::type_complexity)]

use credflow_core::Duration;
use credflow_core::Instant;
use credflow_core::breaker::BreakerEvent;
use credflow_core::http::Method;
use credflow_core::lifecycle::{LifecycleEvent, RejectReason, Ticket};
use credflow_core::oauth::TokenErrorClass;
use credflow_core::ratelimit::pacer::Priority;
use credflow_core::retry::policy::{GiveUpReason, TransportKind};
use credflow_core::secret::Credentials;
use credflow_core::session::{
    ApiError, ApiErrorKind, Authorize, BreakerTarget, Event, HostKey, Reason, RequestSpec,
    RequestState, RetryReason, Session, SessionConfig, TokenEndpoint, Verdict, WaitReason,
};

const TOKEN_URL: &str = "https://login.mypurecloud.com/oauth/token";

fn ms(v: u64) -> Instant {
    Instant::from_millis(v)
}
fn secs(v: u64) -> Instant {
    Instant::from_secs(v)
}

fn token_body(token: &str, expires_in: u64) -> String {
    format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":{expires_in}}}"#)
}

/// A session plus the one token request it may have outstanding.
struct Harness {
    s: Session<256, 4>,
    pending: Option<Ticket>,
    buf: Vec<u8>,
}

impl Harness {
    fn new() -> Self {
        Self::with(SessionConfig::default())
    }

    fn with(config: SessionConfig) -> Self {
        let creds = Credentials::from_strs("client", "secret").unwrap();
        let endpoint = TokenEndpoint::new(TOKEN_URL).unwrap();
        Harness {
            s: Session::new(creds, endpoint, config, 7).unwrap(),
            pending: None,
            buf: vec![0; 2048],
        }
    }

    /// Polls for a token request; returns whether one was produced (and records it).
    fn poll_token(&mut self, now: Instant) -> bool {
        let polled = self.s.poll_token_request(now, &mut self.buf).unwrap();
        match polled {
            Some((ticket, request)) => {
                assert!(self.pending.is_none(), "two token requests in flight");
                assert_eq!(request.path, "/oauth/token");
                self.pending = Some(ticket);
                true
            }
            None => false,
        }
    }

    fn answer_token(&mut self, now: Instant, status: u16, headers: &[(&str, &str)], body: &str) {
        let ticket = self.pending.take().expect("no token request outstanding");
        self.s.handle_token_response(now, ticket, status, headers, body.as_bytes());
    }

    /// Sends the token request and answers it with a token of `life` seconds.
    fn acquire(&mut self, now: Instant, token: &str, life: u64) {
        assert!(self.poll_token(now), "token request expected at {now}");
        self.answer_token(now, 200, &[], &token_body(token, life));
    }

    fn begin(&mut self, now: Instant, method: Method) -> RequestState {
        self.s.begin(now, RequestSpec::new(method, HostKey::from_host("api.mypurecloud.com")))
    }

    /// Authorizes; returns the token value if the session said Send.
    fn send(&mut self, now: Instant, req: &mut RequestState) -> Result<String, Authorize<'_, 256>> {
        match self.s.authorize(now, req) {
            Authorize::Send { token, .. } => Ok(token.as_str().to_owned()),
            other => Err(other),
        }
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }
}

#[test]
fn first_token_then_requests_use_it() {
    let mut h = Harness::new();
    let mut req = h.begin(secs(0), Method::Get);
    match h.s.authorize(secs(0), &mut req) {
        Authorize::Wait { until: Some(t), reason: WaitReason::Token } => assert_eq!(t, secs(0)),
        other => panic!("{other:?}"),
    }
    h.acquire(secs(0), "T1", 300);
    assert_eq!(h.send(secs(0), &mut req).unwrap(), "T1");
    let v = h.s.handle_response(secs(0), &mut req, 200, &[("inin-ratelimit-count", "1")], b"{}");
    assert_eq!(v, Verdict::Done);
    assert!(
        h.events().iter().any(|e| matches!(e, Event::Token(LifecycleEvent::TokenAcquired { .. })))
    );
    let c = h.s.counters();
    assert_eq!((c.requests, c.attempts, c.token_requests, c.retries), (1, 1, 1, 0));
}

#[test]
fn token_expiring_mid_batch_is_refreshed_ahead_and_never_served_expired() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 300);
    let times = h.s.token(secs(0)).unwrap().1;
    assert!(times.refresh_at <= secs(240) && times.refresh_at > secs(210));
    // A batch: one request per second for 400 s. The refresh goes out at the refresh point and is
    // answered 2 s later; every request in between still gets T1 (stale-while-revalidate).
    let mut served = Vec::new();
    for t in 0..400u64 {
        let now = secs(t);
        if h.pending.is_some() && now >= times.refresh_at + Duration::from_secs(2) {
            h.answer_token(now, 200, &[], &token_body("T2", 300));
        }
        let due = h.poll_token(now);
        assert_eq!(due, t == times.refresh_at.as_millis().div_ceil(1000), "refresh at {now}");
        let mut req = h.begin(now, Method::Get);
        let token = h.send(now, &mut req).expect("a token is always usable in this batch");
        let v = h.s.handle_response(now, &mut req, 200, &[], b"");
        assert_eq!(v, Verdict::Done);
        served.push((t, token));
    }
    let switch_s = (times.refresh_at + Duration::from_secs(2)).as_millis().div_ceil(1000);
    for (t, tok) in &served {
        assert_eq!(tok == "T1", *t < switch_s, "at {t} s served {tok}");
    }
    assert_eq!(h.s.counters().token_requests, 2);
}

#[test]
fn hundred_concurrent_401s_cause_one_refresh_and_one_retry_each() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 3600);
    let mut reqs: Vec<RequestState> = (0..100).map(|_| h.begin(secs(1), Method::Get)).collect();
    for r in reqs.iter_mut() {
        assert_eq!(h.send(secs(1), r).unwrap(), "T1");
    }
    // The token was revoked: all 100 come back 401.
    let challenge = [("WWW-Authenticate", r#"Bearer error="invalid_token""#)];
    for r in reqs.iter_mut() {
        match h.s.handle_response(secs(2), r, 401, &challenge, b"") {
            Verdict::Retry { at, reason: RetryReason::Reauthenticate, .. } => {
                assert_eq!(at, secs(2))
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(h.poll_token(secs(2)), "one refresh");
    assert!(!h.poll_token(secs(2)), "only one");
    for r in reqs.iter_mut() {
        assert!(matches!(
            h.s.authorize(secs(2), r),
            Authorize::Wait { reason: WaitReason::Token, .. }
        ));
    }
    h.answer_token(secs(3), 200, &[], &token_body("T2", 3600));
    for r in reqs.iter_mut() {
        assert_eq!(h.send(secs(3), r).unwrap(), "T2");
        assert_eq!(h.s.handle_response(secs(3), r, 200, &[], b""), Verdict::Done);
    }
    let c = h.s.counters();
    assert_eq!(c.token_requests, 2);
    assert_eq!(c.unauthorized, 100);
    assert_eq!(c.attempts, 200, "each request retried exactly once");
}

#[test]
fn a_second_401_with_a_fresh_token_fails_with_a_clear_error() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 3600);
    let mut req = h.begin(secs(0), Method::Get);
    h.send(secs(0), &mut req).unwrap();
    let _ = h.s.handle_response(secs(0), &mut req, 401, &[], b"");
    h.acquire(secs(0), "T2", 3600);
    h.send(secs(0), &mut req).unwrap();
    let body = br#"{"message":"bad","code":"bad.credentials","status":401,"contextId":"ctx-9"}"#;
    match h.s.handle_response(secs(0), &mut req, 401, &[("ININ-Correlation-Id", "corr-1")], body) {
        Verdict::Fail(e) => {
            assert_eq!(e.kind, ApiErrorKind::Unauthorized);
            assert_eq!(e.status, Some(401));
            let id = h.s.error_detail(e).correlation_id().map(|c| c.as_str());
            assert_eq!(id, Some("corr-1"));
            assert!(e.likely_cause().contains("environment"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn late_401_for_an_old_generation_keeps_the_new_token() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 3600);
    let mut slow = h.begin(secs(0), Method::Get);
    h.send(secs(0), &mut slow).unwrap();
    let mut fast = h.begin(secs(0), Method::Get);
    h.send(secs(0), &mut fast).unwrap();
    let _ = h.s.handle_response(secs(1), &mut fast, 401, &[], b"");
    h.acquire(secs(1), "T2", 3600);
    // The slow request, sent with T1, now reports its 401: T2 must survive.
    let _ = h.s.handle_response(secs(2), &mut slow, 401, &[], b"");
    assert!(!h.poll_token(secs(2)), "no second refresh");
    assert_eq!(h.send(secs(2), &mut slow).unwrap(), "T2");
}

#[test]
fn retry_after_is_honoured_and_paces_everyone() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 3600);
    let mut req = h.begin(secs(10), Method::Get);
    h.send(secs(10), &mut req).unwrap();
    let headers = [("Retry-After", "42"), ("ININ-Correlation-Id", "c-429")];
    let body = br#"{"message":"Rate limit exceeded the maximum. Retry the request in [42] seconds","code":"too.many.requests.retry.after","status":429}"#;
    match h.s.handle_response(secs(10), &mut req, 429, &headers, body) {
        Verdict::Retry { at, reason: RetryReason::RateLimited, .. } => assert_eq!(at, secs(52)),
        other => panic!("{other:?}"),
    }
    // T-1: the request itself and any other normal request wait.
    assert!(
        matches!(h.s.authorize(ms(51_999), &mut req), Authorize::Wait { until: Some(t), .. } if t == secs(52))
    );
    let mut other = h.begin(secs(11), Method::Get);
    assert!(
        matches!(h.s.authorize(secs(11), &mut other), Authorize::Wait { until: Some(t), reason: WaitReason::Paced(_) } if t >= secs(52))
    );
    // T: allowed.
    assert_eq!(h.send(secs(52), &mut req).unwrap(), "T1");
    assert!(h.events().iter().any(|e| matches!(e, Event::RateLimited { until, correlation_id: Some(c) } if *until == secs(52) && c.as_str() == "c-429")));
}

#[test]
fn post_is_retried_after_429_but_not_after_500() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 3600);
    let mut req = h.begin(secs(0), Method::Post);
    h.send(secs(0), &mut req).unwrap();
    assert!(matches!(
        h.s.handle_response(secs(0), &mut req, 429, &[("Retry-After", "1")], b""),
        Verdict::Retry { .. }
    ));
    h.send(secs(1), &mut req).unwrap();
    match h.s.handle_response(secs(1), &mut req, 500, &[], b"") {
        Verdict::Fail(e) => assert!(matches!(
            e.kind,
            ApiErrorKind::GaveUp { reason: GiveUpReason::NotIdempotent, .. }
        )),
        other => panic!("{other:?}"),
    }
}

#[test]
fn daily_limit_fails_fast_and_names_the_wait() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 3600);
    let mut req = h.begin(secs(0), Method::Get);
    h.send(secs(0), &mut req).unwrap();
    match h.s.handle_response(secs(0), &mut req, 429, &[("Retry-After", "30000")], b"") {
        Verdict::Fail(e) => {
            let GiveUpReason::WaitTooLong { wait, .. } = (match e.kind {
                ApiErrorKind::GaveUp { reason, .. } => reason,
                other => panic!("{other:?}"),
            }) else {
                panic!()
            };
            assert_eq!(wait, Duration::from_secs(30_000));
            assert!(e.to_string().contains("8h20m"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn transient_errors_retry_with_backoff_then_give_up() {
    // A breaker threshold above the retry count, so the retry policy is what gives up.
    let mut config = SessionConfig::default();
    config.api_breaker.consecutive_failures = 10;
    let mut h = Harness::with(config);
    h.acquire(secs(0), "T1", 3600);
    let mut req = h.begin(secs(0), Method::Get);
    let mut now = secs(0);
    for retry in 0..3 {
        h.send(now, &mut req).unwrap();
        match h.s.handle_response(now, &mut req, 502, &[], b"<html>bad gateway</html>") {
            Verdict::Retry { at, reason: RetryReason::ServerError(502), .. } => {
                assert!(at >= now && at <= now + Duration::from_millis(500 << retry));
                now = at;
            }
            other => panic!("retry {retry}: {other:?}"),
        }
    }
    h.send(now, &mut req).unwrap();
    match h.s.handle_response(now, &mut req, 503, &[], b"") {
        Verdict::Fail(e) => assert!(matches!(
            e.kind,
            ApiErrorKind::GaveUp { reason: GiveUpReason::RetriesExhausted { retries: 3 }, .. }
        )),
        other => panic!("{other:?}"),
    }
}

#[test]
fn token_endpoint_maintenance_opens_the_breaker_probes_and_recovers() {
    let mut h = Harness::new();
    let mut now = secs(0);
    let outage_ends = secs(120);
    let answers: [(u16, &[(&str, &str)], &str); 3] = [
        (503, &[], "<html>maintenance</html>"),
        (429, &[], ""),
        (
            400,
            &[],
            r#"{"error":"invalid_request","description":"rate limit exceeded; try later","error_description":"rate limit exceeded; try later"}"#,
        ),
    ];
    let mut sent = Vec::new();
    let mut opened_at = None;
    while now < secs(600) {
        if h.poll_token(now) {
            sent.push(now);
            if now < outage_ends {
                let (status, headers, body) = answers[sent.len() % 3];
                h.answer_token(now, status, headers, body);
            } else {
                h.answer_token(now, 200, &[], &token_body("T", 3600));
            }
        }
        for e in h.events() {
            if let Event::Breaker {
                target: BreakerTarget::TokenEndpoint,
                event: BreakerEvent::Opened { .. },
            } = e
            {
                opened_at.get_or_insert(now);
            }
        }
        if h.s.token(now).is_some() {
            break;
        }
        // Callers arriving while the breaker is open get a fast, typed error.
        if matches!(
            h.s.lifecycle().state(now),
            credflow_core::lifecycle::LifecycleState::BackingOff { .. }
        ) && opened_at.is_some()
        {
            let mut req = h.begin(now, Method::Get);
            match h.s.authorize(now, &mut req) {
                Authorize::Fail(e) => {
                    assert!(matches!(e.kind, ApiErrorKind::TokenUnavailable { .. }), "{e:?}")
                }
                Authorize::Wait { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        // Jump to the next deadline, as an adapter's timer would.
        let next = h.s.poll_timeout().map(|(at, _)| at).unwrap_or(now + Duration::from_secs(1));
        now = next.max(now + Duration::from_millis(1));
        h.s.handle_timeout(now);
    }
    eprintln!("token requests at {sent:?}, opened at {opened_at:?}, recovered at {now}");
    let opened_at = opened_at.expect("breaker opened");
    assert_eq!(sent.iter().filter(|t| **t <= opened_at).count(), 3, "opens after 3 failures");
    assert!(h.s.token(now).is_some(), "recovered at {now}");
    assert!(
        now >= outage_ends && now < outage_ends + Duration::from_secs(330),
        "recovered at {now}"
    );
    // During the outage the token endpoint saw few requests: backoff and breaker cooldowns.
    let during = sent.iter().filter(|t| **t < outage_ends).count();
    assert!(during <= 12, "{during} token requests during a 2 min outage: {sent:?}");
    assert!(h.s.counters().breaker_trips >= 1);
}

/// `at`, the recheck a rejection plans (`recheck_after`, 5 min by default); none without the
/// feature `recheck`, where token requests stay stopped until the credentials change.
fn recheck_at(at: Instant) -> Option<Instant> {
    cfg!(feature = "recheck").then_some(at)
}

/// A wrong secret (or an OAuth client disabled by mistake) stops token requests and says why,
/// and when one request will check again: callers fail fast until then. If the check finds the
/// client accepted again, requests go on without a restart or new credentials.
#[test]
fn invalid_client_stops_says_why_and_when_it_checks_again() {
    let mut h = Harness::new();
    assert!(h.poll_token(secs(0)));
    let body = r#"{"error":"invalid_client","description":"authentication failed","error_description":"authentication failed"}"#;
    h.answer_token(secs(0), 401, &[("ININ-Correlation-Id", "abc-123")], body);
    for t in [1, 299] {
        let mut req = h.begin(secs(t), Method::Get);
        match h.s.authorize(secs(t), &mut req) {
            Authorize::Fail(e) => {
                let ApiErrorKind::CredentialsRejected { reason: RejectReason::InvalidClient } =
                    e.kind
                else {
                    panic!("{e:?}")
                };
                // The server's error stays in the session, read on request, with the recheck.
                let detail = h.s.error_detail(e);
                assert_eq!(detail.correlation_id().map(|c| c.as_str()), Some("abc-123"));
                assert_eq!(detail.next_probe_at(), recheck_at(secs(300)), "recheck_after: 5 min");
                let text = detail.to_string();
                assert!(
                    text.contains("invalid_client") && text.contains("authentication failed"),
                    "{text}"
                );
                assert!(e.likely_cause().contains("region"));
            }
            other => panic!("{other:?}"),
        }
    }
    for t in [1, 60, 299] {
        assert!(!h.poll_token(secs(t)), "no retry loop with a wrong secret");
    }
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::TokenEndpointError { status: 401, class: TokenErrorClass::CredentialsRejected }
    )));
    // The client was enabled again meanwhile: the one recheck gets a token, and says so.
    #[cfg(feature = "recheck")]
    {
        h.acquire(secs(300), "T", 300);
        assert!(
            h.events()
                .iter()
                .any(|e| matches!(e, Event::Token(LifecycleEvent::TokenAcquired { .. })))
        );
        let mut req = h.begin(secs(300), Method::Get);
        assert_eq!(h.send(secs(300), &mut req).ok().as_deref(), Some("T"));
    }
    // Without the feature `recheck`: stopped until the credentials change.
    #[cfg(not(feature = "recheck"))]
    for t in [300, 3600, 86_400] {
        assert!(!h.poll_token(secs(t)), "no request at {t} s");
    }
}

/// A credential change ends the stop at once, whatever the hold left.
#[test]
fn secret_rotation_ends_a_rejection_at_once() {
    let mut h = Harness::new();
    assert!(h.poll_token(secs(0)));
    h.answer_token(secs(0), 401, &[], r#"{"error":"invalid_client"}"#);
    assert!(!h.poll_token(secs(10)));
    h.s.set_credentials(secs(10), Credentials::from_strs("client", "rotated").unwrap());
    h.acquire(secs(10), "T", 300);
}

#[test]
fn a_retry_into_an_open_breaker_fails_at_once_with_the_reopen_time() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 3600);
    let mut req = h.begin(secs(0), Method::Get);
    let mut now = secs(0);
    for _ in 0..2 {
        h.send(now, &mut req).unwrap();
        match h.s.handle_response(now, &mut req, 502, &[], b"") {
            Verdict::Retry { at, .. } => now = at,
            other => panic!("{other:?}"),
        }
    }
    h.send(now, &mut req).unwrap();
    match h.s.handle_response(now, &mut req, 502, &[], b"") {
        Verdict::Fail(e) => {
            assert!(matches!(e.kind, ApiErrorKind::CircuitOpen { until } if until > now), "{e:?}");
            assert_eq!(e.status, Some(502));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn api_breaker_opens_on_server_errors_and_fails_fast() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 3600);
    for _ in 0..3 {
        let mut req = h.begin(secs(1), Method::Get);
        h.send(secs(1), &mut req).unwrap();
        let _ = h.s.handle_transport_error(secs(1), &mut req, TransportKind::Connect);
    }
    let mut req = h.begin(secs(1), Method::Get);
    match h.s.authorize(secs(1), &mut req) {
        Authorize::Fail(e) => match e.kind {
            ApiErrorKind::CircuitOpen { until } => assert!(until > secs(1)),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    let (at, reason) = h.s.poll_timeout().unwrap();
    assert_eq!(reason, Reason::BreakerHalfOpen);
    h.s.handle_timeout(at);
    let mut probe = h.begin(at, Method::Get);
    h.send(at, &mut probe).unwrap();
    let mut waiter = h.begin(at, Method::Get);
    assert!(matches!(
        h.s.authorize(at, &mut waiter),
        Authorize::Wait { reason: WaitReason::BreakerProbe, .. }
    ));
    assert_eq!(h.s.handle_response(at, &mut probe, 200, &[], b""), Verdict::Done);
    assert_eq!(h.send(at, &mut waiter).unwrap(), "T1");
}

/// An attempt timed out at its request's own deadline (the adapters cut each attempt there) is
/// the caller's limit, not a failure of the host: three such requests left the API's breaker
/// open, and every caller, those without a deadline too, failed fast. A timeout before the
/// deadline still counts, and so does one when the request has no deadline.
#[test]
fn timeouts_at_the_callers_deadline_do_not_open_the_breaker() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 3600);
    let host = HostKey::from_host("api.mypurecloud.com");
    for i in 0..5 {
        let at = secs(1 + i);
        let spec = RequestSpec { deadline: Some(at), ..RequestSpec::new(Method::Get, host) };
        let mut req = h.s.begin(at - Duration::from_millis(500), spec);
        h.send(at - Duration::from_millis(500), &mut req).unwrap();
        match h.s.handle_transport_error(at, &mut req, TransportKind::Timeout) {
            Verdict::Fail(e) => assert!(
                matches!(
                    e.kind,
                    ApiErrorKind::GaveUp { reason: GiveUpReason::PastDeadline { .. }, .. }
                ),
                "{e:?}"
            ),
            other => panic!("{other:?}"),
        }
    }
    let mut req = h.begin(secs(10), Method::Get);
    assert_eq!(h.send(secs(10), &mut req).unwrap(), "T1", "the breaker stayed closed");
    let _ = h.s.handle_response(secs(10), &mut req, 200, &[], b"");
    // Timeouts before a deadline, or without one, are the host's.
    for i in 0..3 {
        let at = secs(11 + i);
        let spec = RequestSpec {
            deadline: Some(at + Duration::from_secs(30)),
            ..RequestSpec::new(Method::Get, host)
        };
        let mut req = h.s.begin(at, spec);
        h.send(at, &mut req).unwrap();
        let _ = h.s.handle_transport_error(at, &mut req, TransportKind::Timeout);
    }
    let mut req = h.begin(secs(14), Method::Get);
    assert!(
        matches!(
            h.s.authorize(secs(14), &mut req),
            Authorize::Fail(credflow_core::session::ApiError {
                kind: ApiErrorKind::CircuitOpen { .. },
                ..
            })
        ),
        "timeouts the host caused open it"
    );
}

#[test]
fn forbidden_names_the_missing_permission() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 3600);
    let mut req = h.begin(secs(0), Method::Post);
    h.send(secs(0), &mut req).unwrap();
    let body = br#"{"message":"Unable to perform the requested action. You are missing the following permission(s): [analytics:conversationDetail:view]","code":"missing.permissions","status":403,"contextId":"ctx-403"}"#;
    match h.s.handle_response(secs(0), &mut req, 403, &[], body) {
        Verdict::Fail(e) => {
            assert_eq!(e.kind, ApiErrorKind::Forbidden);
            let detail = h.s.error_detail(e);
            let text = detail.to_string();
            assert!(text.contains("analytics:conversationDetail:view"), "{text}");
            assert_eq!(detail.code(), Some("missing.permissions"));
            assert_eq!(detail.correlation_id().map(|c| c.as_str()), Some("ctx-403"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn deadline_bounds_every_wait() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 3600);
    let spec = RequestSpec { deadline: Some(secs(5)), ..RequestSpec::new(Method::Get, HostKey(1)) };
    let mut req = h.s.begin(secs(0), spec);
    h.send(secs(0), &mut req).unwrap();
    match h.s.handle_response(secs(0), &mut req, 429, &[("Retry-After", "10")], b"") {
        Verdict::Fail(e) => assert!(matches!(
            e.kind,
            ApiErrorKind::GaveUp { reason: GiveUpReason::PastDeadline { .. }, .. }
        )),
        other => panic!("{other:?}"),
    }
}

#[test]
fn critical_requests_use_the_reserve() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 3600);
    // Server says: 5 of 100 left for the next 60 s.
    let headers = [
        ("inin-ratelimit-count", "95"),
        ("inin-ratelimit-allowed", "100"),
        ("inin-ratelimit-reset", "60"),
    ];
    let mut req = h.begin(secs(0), Method::Get);
    h.send(secs(0), &mut req).unwrap();
    assert_eq!(h.s.handle_response(secs(0), &mut req, 200, &headers, b""), Verdict::Done);
    let mut bg = h.s.begin(
        secs(0),
        RequestSpec { priority: Priority::Background, ..RequestSpec::new(Method::Get, HostKey(1)) },
    );
    assert!(matches!(
        h.s.authorize(secs(0), &mut bg),
        Authorize::Wait { reason: WaitReason::Paced(_), .. }
    ));
    let mut crit = h.s.begin(
        secs(0),
        RequestSpec { priority: Priority::Critical, ..RequestSpec::new(Method::Get, HostKey(1)) },
    );
    assert!(matches!(h.s.authorize(secs(0), &mut crit), Authorize::Send { .. }));
}

#[test]
fn sealed_snapshot_survives_a_reboot() {
    use credflow_core::{UnixTime, WallClock};
    let mut h = Harness::new();
    h.s.set_wall_clock(WallClock::new(secs(0), UnixTime::from_secs(1_800_000_000)));
    h.acquire(secs(0), "T1", 3600);
    let mut sealed = [0u8; 512];
    let key = b"0123456789abcdef-device";
    let n = h.s.seal(secs(10), key, &mut sealed).unwrap();
    assert!(n > 0);
    // Reboot: a new session, a new monotonic origin, 100 s later in wall time.
    let mut rebooted = Harness::new();
    rebooted.s.set_wall_clock(WallClock::new(secs(0), UnixTime::from_secs(1_800_000_100)));
    rebooted.s.restore(secs(0), &sealed[..n], key).unwrap();
    let mut req = rebooted.begin(secs(0), Method::Get);
    assert_eq!(rebooted.send(secs(0), &mut req).unwrap(), "T1");
    assert!(!rebooted.poll_token(secs(0)), "no token request after restoring");
    let mut tampered = sealed;
    tampered[20] ^= 1;
    let mut other = Harness::new();
    other.s.set_wall_clock(WallClock::new(secs(0), UnixTime::from_secs(1_800_000_100)));
    assert!(other.s.restore(secs(0), &tampered[..n], key).is_err());
}

#[test]
fn transport_failure_on_the_token_endpoint_backs_off() {
    let mut h = Harness::new();
    assert!(h.poll_token(secs(0)));
    let ticket = h.pending.take().unwrap();
    h.s.handle_token_error(secs(0), ticket, Some(TransportKind::Connect));
    assert!(!h.poll_token(secs(0)), "backs off");
    let (at, reason) = h.s.poll_timeout().unwrap();
    assert_eq!(reason, Reason::TokenRequestDue);
    assert!(at > secs(0) && at <= secs(1));
    assert!(h.poll_token(at));
    assert!(h.s.lifecycle().in_flight());
}

#[test]
fn requests_begun_after_a_daily_limit_fail_fast_instead_of_waiting_hours() {
    let mut h = Harness::new();
    h.acquire(secs(0), "T1", 86_400);
    let mut first = h.begin(secs(0), Method::Get);
    h.send(secs(0), &mut first).unwrap();
    assert!(matches!(
        h.s.handle_response(secs(0), &mut first, 429, &[("Retry-After", "40000")], b""),
        Verdict::Fail(_)
    ));
    // A request begun later is not told to wait 11 hours: it fails at once, naming the wait.
    let mut later = h.begin(secs(5), Method::Get);
    match h.s.authorize(secs(5), &mut later) {
        Authorize::Fail(e) => match e.kind {
            ApiErrorKind::GaveUp { reason: GiveUpReason::WaitTooLong { wait, .. }, .. } => {
                assert_eq!(wait, Duration::from_secs(39_995))
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// A 429 with an absurd `Retry-After` (999 999 999 s, some 31 years) holds every request far
/// past `max_wait` (60 s), and every request here has a deadline well before the hold's end, as
/// every request through `credflow proxy` has (its `--deadline`). Still one request per
/// `max_wait` goes out as the quota's probe (it is sent now, so its deadline is not in the
/// way), the others fail at once naming the server's wait, and once a probe is answered
/// without a 429, requests flow again. The deadline was checked first: every request failed as
/// `DeadlineExceeded`, no probe ever went, and the session never found out that the limit was
/// lifted (the proxy forwarded nothing until it restarted).
#[test]
fn an_absurd_retry_after_is_probed_whatever_the_requests_deadlines() {
    let mut h = Harness::new();
    let max = h.s.config().retry.max_wait;
    assert_eq!(max, Duration::from_secs(60));
    h.acquire(secs(0), "T1", 86_400);
    // Each request may wait 5 s at most.
    let within_5s = |h: &mut Harness, now: Instant| {
        let spec = RequestSpec {
            deadline: Some(now + Duration::from_secs(5)),
            ..RequestSpec::new(Method::Get, HostKey::from_host("api.mypurecloud.com"))
        };
        h.s.begin(now, spec)
    };
    let forever = Duration::from_secs(999_999_999);
    // The server's wait, ending at `hold_end`, is named; and what to tell a caller that retries
    // by itself is not the 31 years but when the next probe may go, `next_probe`
    // (`credflow proxy` relays it as `Retry-After`).
    let named = |h: &Harness, e: ApiError, hold_end: Instant, next_probe: Instant, now: Instant| {
        let wait = hold_end.saturating_duration_since(now);
        let reason = GiveUpReason::WaitTooLong { wait, max };
        let kind = ApiErrorKind::GaveUp { reason, last: RetryReason::RateLimited };
        assert_eq!(e.kind, kind, "at {now}");
        let told = h.s.error_detail(e).next_probe_at();
        assert_eq!(told, cfg!(feature = "diagnosis").then_some(next_probe), "at {now}");
    };
    // Fails at once, naming the wait (not the deadline: waiting would not help).
    let fails_fast = |h: &mut Harness, now: Instant, hold_end: Instant, next_probe: Instant| {
        let mut req = within_5s(h, now);
        match h.s.authorize(now, &mut req) {
            Authorize::Fail(e) => named(h, e, hold_end, next_probe, now),
            other => panic!("at {now}: {other:?}"),
        }
    };
    // The 429, at 10 s.
    let mut first = within_5s(&mut h, secs(10));
    h.send(secs(10), &mut first).unwrap();
    let hold_end = secs(10) + forever;
    match h.s.handle_response(secs(10), &mut first, 429, &[("Retry-After", "999999999")], b"") {
        Verdict::Fail(e) => named(&h, e, hold_end, secs(70), secs(10)),
        other => panic!("{other:?}"),
    }
    fails_fast(&mut h, secs(11), hold_end, secs(70));
    // The first probe, max_wait after the 429 (none at T-1, one at T, only one): the limit
    // still holds.
    fails_fast(&mut h, ms(69_999), hold_end, secs(70));
    let mut p1 = within_5s(&mut h, secs(70));
    assert_eq!(h.send(secs(70), &mut p1).unwrap(), "T1", "the first probe");
    fails_fast(&mut h, secs(70), hold_end, secs(130));
    let verdict = h.s.handle_response(secs(70), &mut p1, 429, &[("Retry-After", "999999999")], b"");
    assert!(matches!(verdict, Verdict::Fail(_)), "{verdict:?}");
    let hold_end = secs(70) + forever;
    fails_fast(&mut h, secs(100), hold_end, secs(130));
    // The second, max_wait after the first: the limit was lifted.
    fails_fast(&mut h, ms(129_999), hold_end, secs(130));
    let mut p2 = within_5s(&mut h, secs(130));
    assert_eq!(h.send(secs(130), &mut p2).unwrap(), "T1", "the second probe");
    fails_fast(&mut h, secs(130), hold_end, secs(190));
    assert_eq!(h.s.handle_response(secs(130), &mut p2, 200, &[], b"{}"), Verdict::Done);
    // Requests flow again, at once.
    for t in [130, 131, 132] {
        let mut req = within_5s(&mut h, secs(t));
        assert_eq!(h.send(secs(t), &mut req).unwrap(), "T1", "at {t} s");
        assert_eq!(h.s.handle_response(secs(t), &mut req, 200, &[], b"{}"), Verdict::Done);
    }
    assert_eq!(h.s.counters().attempts, 6, "the 429, two probes, three requests");
}

#[test]
fn a_token_shared_by_the_fleet_satisfies_the_ticket_without_sending() {
    use credflow_core::session::RestoreError;
    use credflow_core::{AccessToken, UnixTime, WallClock};
    let wall = 1_800_000_000;
    let mut h = Harness::new();
    // Without the wall clock the absolute expiry cannot be placed: the ticket stays in flight.
    assert!(h.poll_token(secs(0)));
    let ticket = h.pending.take().unwrap();
    let token = AccessToken::<256>::new("FLEET").unwrap();
    assert_eq!(
        h.s.handle_token_shared(secs(0), ticket, token.clone(), UnixTime::from_secs(wall + 3600)),
        Err(RestoreError::NoWallClock)
    );
    assert!(h.s.lifecycle().in_flight());
    h.s.set_wall_clock(WallClock::new(secs(0), UnixTime::from_secs(wall)));
    // A token at its expiry is refused; the ticket is released and a request is due at once.
    assert_eq!(
        h.s.handle_token_shared(secs(1), ticket, token.clone(), UnixTime::from_secs(wall + 1)),
        Err(RestoreError::NotUsable)
    );
    assert!(!h.s.lifecycle().in_flight());
    assert!(h.poll_token(secs(1)), "refused shared token: the next request is due at once");
    let ticket = h.pending.take().unwrap();
    let generation =
        h.s.handle_token_shared(secs(1), ticket, token.clone(), UnixTime::from_secs(wall + 3601))
            .unwrap();
    let mut req = h.begin(secs(1), Method::Get);
    assert_eq!(h.send(secs(1), &mut req).unwrap(), "FLEET");
    let times = h.s.token(secs(1)).unwrap().1;
    assert_eq!(times.generation, generation);
    assert_eq!(times.expires_at, secs(3601), "expiry placed on the monotonic clock");
    assert!(times.usable_until < times.expires_at && times.refresh_at < times.usable_until);
    // The same ticket again (stale) changes nothing; a late answer to it is ignored too.
    assert_eq!(
        h.s.handle_token_shared(secs(2), ticket, token, UnixTime::from_secs(wall + 9999)),
        Err(RestoreError::NotUsable)
    );
    h.s.handle_token_response(secs(2), ticket, 200, &[], token_body("LATE", 60).as_bytes());
    assert_eq!(h.send(secs(2), &mut req).unwrap(), "FLEET");
    let c = h.s.counters();
    assert_eq!((c.token_requests, c.shared_tokens, c.token_failures), (2, 1, 0));
    assert!(!h.poll_token(secs(2)), "no refresh before the shared token's refresh point");
}

#[test]
fn a_shared_token_returns_a_breaker_probe_without_charging_the_breaker() {
    use credflow_core::{AccessToken, UnixTime, WallClock};
    let wall = 1_800_000_000;
    let mut h = Harness::new();
    h.s.set_wall_clock(WallClock::new(secs(0), UnixTime::from_secs(wall)));
    // Trip the token breaker with repeated 503s, then wait until it lets a probe through.
    let mut now = secs(0);
    for _ in 0..50 {
        if h.poll_token(now) {
            h.answer_token(now, 503, &[], "");
        }
        now = h.s.poll_timeout().map_or(now + Duration::from_secs(1), |(at, _)| at.max(now));
        h.s.handle_timeout(now);
        if h.events()
            .iter()
            .any(|e| matches!(e, Event::Breaker { event: BreakerEvent::Opened { .. }, .. }))
        {
            break;
        }
    }
    let probe_at = h.s.poll_timeout().unwrap().0;
    h.s.handle_timeout(probe_at);
    assert!(h.poll_token(probe_at), "the half-open breaker lets one probe through");
    let ticket = h.pending.take().unwrap();
    let token = AccessToken::<256>::new("FLEET").unwrap();
    let expires = UnixTime::from_secs(wall + probe_at.as_millis() / 1000 + 3600);
    h.s.handle_token_shared(probe_at, ticket, token, expires).unwrap();
    let mut req = h.begin(probe_at, Method::Get);
    assert_eq!(h.send(probe_at, &mut req).unwrap(), "FLEET");
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e, Event::Breaker { event: BreakerEvent::Opened { .. }, .. })),
        "the shared token does not count as a failure"
    );
}

/// After an outage, a process whose breaker still holds its own token requests back takes the
/// token another process of the fleet fetched (`adopt_shared`), instead of waiting out the
/// cooldown; never while its own request is in flight or while it holds a usable token.
#[test]
fn a_process_held_back_by_its_breaker_adopts_the_fleets_token() {
    use credflow_core::session::RestoreError;
    use credflow_core::{AccessToken, UnixTime, WallClock};
    let wall = 1_800_000_000;
    let mut h = Harness::new();
    let token = AccessToken::<256>::new("FLEET").unwrap();
    let expires = |now: Instant| UnixTime::from_secs(wall + now.as_millis() / 1000 + 3600);
    assert_eq!(
        h.s.adopt_shared(secs(0), token.clone(), expires(secs(0))),
        Err(RestoreError::NoWallClock)
    );
    h.s.set_wall_clock(WallClock::new(secs(0), UnixTime::from_secs(wall)));
    // Its own request in flight decides.
    assert!(h.poll_token(secs(0)));
    assert_eq!(
        h.s.adopt_shared(secs(0), token.clone(), expires(secs(0))),
        Err(RestoreError::NotUsable)
    );
    // The outage: 503s until the breaker opens; no request may go out now.
    let mut now = secs(0);
    h.answer_token(now, 503, &[], "");
    for _ in 0..50 {
        now = h.s.poll_timeout().map_or(now + Duration::from_secs(1), |(at, _)| at.max(now));
        h.s.handle_timeout(now);
        if h.poll_token(now) {
            h.answer_token(now, 503, &[], "");
        }
        if h.events()
            .iter()
            .any(|e| matches!(e, Event::Breaker { event: BreakerEvent::Opened { .. }, .. }))
        {
            break;
        }
    }
    now = now + Duration::from_secs(1);
    assert!(!h.poll_token(now), "the open breaker holds the process back");
    assert!(h.s.token(now).is_none());
    let generation = h.s.adopt_shared(now, token.clone(), expires(now)).unwrap();
    let mut req = h.begin(now, Method::Get);
    assert_eq!(h.send(now, &mut req).unwrap(), "FLEET");
    assert_eq!(h.s.token(now).unwrap().1.generation, generation);
    assert!(h.s.last_token_error().is_none(), "the outage's error is over");
    assert_eq!(h.s.counters().shared_tokens, 1);
    // Holding a usable token, another is refused (the refresh cycle replaces it).
    let other = AccessToken::<256>::new("OTHER").unwrap();
    assert_eq!(h.s.adopt_shared(now, other, expires(now)), Err(RestoreError::NotUsable));
    // A token at its expiry is refused.
    let mut fresh = Harness::new();
    fresh.s.set_wall_clock(WallClock::new(secs(0), UnixTime::from_secs(wall)));
    assert_eq!(
        fresh.s.adopt_shared(secs(0), token, UnixTime::from_secs(wall)),
        Err(RestoreError::NotUsable)
    );
}

/// An adapter that refreshes inline, in the task of a request, bounds the token request by
/// `refresh_limit`: all the request's time while it needs a token, half of it while it holds
/// a usable one (the refresh is ahead of expiry; its own attempt keeps the rest).
#[test]
fn a_refresh_run_for_a_request_takes_at_most_half_its_time_while_it_holds_a_token() {
    let mut h = Harness::new();
    let host = HostKey::from_host("api.mypurecloud.com");
    let with_deadline = |h: &mut Harness, now: Instant, d: u64| {
        let spec = RequestSpec {
            deadline: Some(now + Duration::from_millis(d)),
            ..RequestSpec::new(Method::Get, host)
        };
        h.s.begin(now, spec)
    };
    let no_deadline = h.begin(secs(0), Method::Get);
    assert_eq!(h.s.refresh_limit(secs(0), &no_deadline), None);
    let needs_token = with_deadline(&mut h, secs(0), 800);
    assert_eq!(h.s.refresh_limit(ms(100), &needs_token), Some(Duration::from_millis(700)));
    h.acquire(secs(1), "A", 300);
    let holds_token = with_deadline(&mut h, secs(240), 800);
    assert_eq!(h.s.refresh_limit(ms(240_100), &holds_token), Some(Duration::from_millis(350)));
    assert_eq!(h.s.refresh_limit(ms(241_000), &holds_token), Some(Duration::ZERO), "past it");
    // A token that ends within the half (it is handed out until 296 s): all the time left.
    let ending = with_deadline(&mut h, ms(295_000), 4_000);
    assert_eq!(h.s.refresh_limit(ms(295_000), &ending), Some(Duration::from_millis(4_000)));
    // Once the token is no longer handed out (5 s before expiry), all the time left.
    let late = with_deadline(&mut h, secs(296), 800);
    assert_eq!(h.s.refresh_limit(secs(296), &late), Some(Duration::from_millis(800)));

    // A refresh cut at the half (abandoned): the next request gives it all its time, and a
    // token received ends that.
    let mut h = Harness::new();
    h.acquire(secs(1), "A", 300);
    assert!(h.poll_token(secs(241)), "the refresh is due");
    let ticket = h.pending.take().unwrap();
    h.s.handle_token_error(ms(241_400), ticket, None);
    let next = with_deadline(&mut h, secs(243), 800);
    assert_eq!(h.s.refresh_limit(secs(243), &next), Some(Duration::from_millis(800)));
    h.acquire(secs(243), "B", 300);
    assert_eq!(h.s.refresh_limit(secs(243), &next), Some(Duration::from_millis(400)));
}

/// `client_secret_jwt` before the wall clock is known: the assertion cannot be signed, and
/// each try counts as a failed request (a backoff, so the adapter does not encode it in a
/// loop). Once the wall clock is set, the request goes at once: it waited out the backoff,
/// up to `retry_cap` (60 s) by then, for a cause that was gone.
#[cfg(feature = "jwt")]
#[test]
fn setting_the_wall_clock_ends_the_backoff_of_unsigned_token_requests() {
    use credflow_core::oauth::{AuthMethod, EncodeError};
    use credflow_core::{UnixTime, WallClock};
    let creds = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new(TOKEN_URL).unwrap().with_auth(AuthMethod::ClientSecretJwt);
    let mut s: Session<256, 1> =
        Session::new(creds, endpoint, SessionConfig::default(), 7).unwrap();
    let mut buf = vec![0u8; 2048];
    let mut now = secs(0);
    for _ in 0..8 {
        let at = s.lifecycle().next_request_at().unwrap().max(now);
        now = at;
        assert_eq!(s.poll_token_request(now, &mut buf).err(), Some(EncodeError::MissingJwtInputs));
    }
    let backoff = s.lifecycle().next_request_at().unwrap().saturating_duration_since(now);
    assert!(backoff > Duration::from_secs(20), "backing off {backoff}");
    now = now + Duration::from_secs(2);
    s.set_wall_clock(WallClock::new(now, UnixTime::from_secs(1_800_000_000)));
    assert_eq!(s.lifecycle().next_request_at(), Some(now), "due at once");
    let polled = s.poll_token_request(now, &mut buf).unwrap();
    assert!(polled.is_some_and(|(_, request)| request.body.contains("client_assertion=")));
}
