//! The session (`core/src/session.rs`, scenarios of `core/tests/session.rs`) driven with virtual
//! time: the adapter's run loop, with the clock in the test's hands.
//!
//! Sessions use `Session<256, 2>`: a 256-byte token and two API hosts keep each one a few KiB on
//! the stack (see [`crate::footprint`]); the default `Session<2048, 4>` is for servers.

use credflow_core::breaker::BreakerEvent;
use credflow_core::http::{Method, NoHeaders};
use credflow_core::lifecycle::{LifecycleEvent, LifecycleState, RejectReason, Ticket};
use credflow_core::oauth::TokenErrorClass;
use credflow_core::ratelimit::pacer::Priority;
use credflow_core::retry::policy::{GiveUpReason, WaitSource};
use credflow_core::secret::Credentials;
use credflow_core::session::{
    ApiErrorKind, Authorize, BreakerTarget, Event, HostKey, Reason, RequestSpec, RequestState,
    RetryReason, Session, SessionConfig, TokenEndpoint, Verdict, WaitReason,
};
use credflow_core::{Duration, Instant, UnixTime, WallClock};

use crate::{CheckResult, Failure, shown};

const TOKEN_URL: &str = "https://login.mypurecloud.com/oauth/token";
const API: &str = "api.mypurecloud.com";

type Token = heapless::String<32>;

fn secs(v: u64) -> Instant {
    Instant::from_secs(v)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A session plus the one token request it may have outstanding. The session lives in the
/// check's frame, built there in place ([`Session::new_in`]): built by value, the session and
/// the `Result` around it would each take as much stack again while it is moved into place.
struct Harness<'s> {
    s: &'s mut Session<256, 2>,
    pending: Option<Ticket>,
}

impl<'s> Harness<'s> {
    fn new(slot: &'s mut Option<Session<256, 2>>, config: SessionConfig) -> Result<Self, Failure> {
        let creds = ok!(Credentials::from_strs("client", "secret"));
        let endpoint = ok!(TokenEndpoint::new(TOKEN_URL));
        Ok(Harness { s: ok!(Session::new_in(slot, creds, endpoint, config, 7)), pending: None })
    }

    /// Polls for a token request; records it and says whether there was one.
    fn poll_token(&mut self, now: Instant) -> Result<bool, Failure> {
        let mut buf = [0u8; 512];
        match ok!(self.s.poll_token_request(now, &mut buf)) {
            Some((ticket, request)) => {
                ensure!(self.pending.is_none(), "two token requests in flight at {now}");
                ensure_eq!(request.path, "/oauth/token");
                ensure_eq!(request.authorization, Some("Basic Y2xpZW50OnNlY3JldA=="));
                self.pending = Some(ticket);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn answer(
        &mut self,
        now: Instant,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> CheckResult {
        let ticket = some!(self.pending.take());
        self.s.handle_token_response(now, ticket, status, headers, body);
        Ok(())
    }

    /// Sends the due token request and answers it with `token`, living `life` seconds.
    fn acquire(&mut self, now: Instant, token: &str, life: u64) -> CheckResult {
        ensure!(self.poll_token(now)?, "a token request due at {now}");
        let body: heapless::String<128> = shown(format_args!(
            r#"{{"access_token":"{token}","token_type":"bearer","expires_in":{life}}}"#
        ));
        self.answer(now, 200, &[], body.as_bytes())
    }

    fn begin(&mut self, now: Instant, method: Method) -> RequestState {
        self.s.begin(now, RequestSpec::new(method, HostKey::from_host(API)))
    }

    /// Authorizes `req`; the token it may be sent with, or a failure showing what came instead.
    fn send(&mut self, now: Instant, req: &mut RequestState) -> Result<Token, Failure> {
        match self.s.authorize(now, req) {
            Authorize::Send { token, .. } => Ok(shown(token.as_str())),
            other => Err(fail!("Authorize::Send").with_detail(format_args!("at {now}: {other:?}"))),
        }
    }

    /// Drains the events, counting those `wanted` accepts.
    fn count_events(&mut self, wanted: impl Fn(&Event) -> bool) -> usize {
        let mut n = 0;
        while let Some(event) = self.s.poll_event() {
            if wanted(&event) {
                n += 1;
            }
        }
        n
    }
}

/// One client's day in order: first token, cached use, refresh ahead of expiry with the old token
/// served meanwhile, a revoked token (401: one refresh, one retry), a 429 with `Retry-After`
/// that holds everyone, 5xx with backoff until the breaker opens, its half-open probe, and the
/// recovery.
pub(crate) fn timeline() -> CheckResult {
    let mut h_slot = None;
    let mut h = Harness::new(&mut h_slot, SessionConfig::default())?;
    let api = HostKey::from_host(API);

    // First token: the request waits for it, then goes with it.
    let mut req = h.begin(secs(0), Method::Get);
    ensure_matches!(
        h.s.authorize(secs(0), &mut req),
        Authorize::Wait { until: Some(t), reason: WaitReason::Token } if *t == secs(0)
    );
    h.acquire(secs(0), "T1", 300)?;
    ensure_eq!(h.send(secs(0), &mut req)?.as_str(), "T1");
    let rate = [
        ("inin-ratelimit-count", "1"),
        ("inin-ratelimit-allowed", "300"),
        ("inin-ratelimit-reset", "60"),
    ];
    ensure_eq!(h.s.handle_response(secs(0), &mut req, 200, &rate, b"{}"), Verdict::Done);
    ensure_eq!(
        h.count_events(|e| matches!(e, Event::Token(LifecycleEvent::TokenAcquired { .. }))),
        1
    );

    // Cached: no token request while it is fresh.
    let mut req = h.begin(secs(10), Method::Get);
    ensure_eq!(h.send(secs(10), &mut req)?.as_str(), "T1");
    ensure_eq!(h.s.handle_response(secs(10), &mut req, 200, &NoHeaders, b""), Verdict::Done);
    ensure!(!h.poll_token(secs(10))?);

    // Refresh ahead of expiry (60 s margin, up to half of it as jitter), T1 served meanwhile.
    let times = some!(h.s.token(secs(10))).1;
    ensure!(times.refresh_at > secs(210) && times.refresh_at <= secs(240), "{:?}", times);
    ensure_eq!(h.s.poll_timeout(), Some((times.refresh_at, Reason::TokenRequestDue)));
    ensure!(!h.poll_token(times.refresh_at - ms(1))?);
    ensure!(h.poll_token(times.refresh_at)?);
    let mut req = h.begin(times.refresh_at, Method::Get);
    ensure_eq!(h.send(times.refresh_at + ms(1500), &mut req)?.as_str(), "T1");
    ensure_eq!(
        h.s.handle_response(times.refresh_at + ms(1500), &mut req, 200, &NoHeaders, b""),
        Verdict::Done
    );
    let t2 = times.refresh_at + ms(2000);
    let body = br#"{"access_token":"T2","token_type":"bearer","expires_in":300}"#;
    h.answer(t2, 200, &[("Date", "Tue, 19 Jan 2038 03:14:08 GMT")], body)?;

    // 401: the token was revoked. One refresh, one retry, with the new token.
    let now = t2 + Duration::from_secs(10);
    let mut req = h.begin(now, Method::Get);
    ensure_eq!(h.send(now, &mut req)?.as_str(), "T2");
    let challenge = [("WWW-Authenticate", r#"Bearer error="invalid_token""#)];
    ensure_eq!(
        h.s.handle_response(now, &mut req, 401, &challenge, b""),
        Verdict::Retry {
            at: now,
            reason: RetryReason::Reauthenticate,
            source: WaitSource::Backoff
        }
    );
    ensure!(h.poll_token(now)?, "one refresh");
    ensure!(!h.poll_token(now)?, "only one");
    ensure_matches!(
        h.s.authorize(now, &mut req),
        Authorize::Wait { reason: WaitReason::Token, .. }
    );
    let now = now + ms(300);
    h.answer(now, 200, &[], br#"{"access_token":"T3","token_type":"bearer","expires_in":300}"#)?;
    ensure_eq!(h.send(now, &mut req)?.as_str(), "T3");
    ensure_eq!(h.s.handle_response(now, &mut req, 200, &NoHeaders, b""), Verdict::Done);

    // 429 with Retry-After: the request and everyone else wait 42 s, exactly.
    let mut req = h.begin(now, Method::Get);
    h.send(now, &mut req)?;
    let headers = [("Retry-After", "42"), ("ININ-Correlation-Id", "c-429")];
    let resume = now + Duration::from_secs(42);
    ensure_eq!(
        h.s.handle_response(now, &mut req, 429, &headers, b""),
        Verdict::Retry {
            at: resume,
            reason: RetryReason::RateLimited,
            source: WaitSource::ServerRetryAfter
        }
    );
    ensure_matches!(
        h.s.authorize(resume - ms(1), &mut req),
        Authorize::Wait { until: Some(t), reason: WaitReason::Backoff } if *t == resume
    );
    let mut other = h.begin(now + Duration::from_secs(1), Method::Get);
    ensure_matches!(
        h.s.authorize(now + Duration::from_secs(1), &mut other),
        Authorize::Wait { until: Some(t), reason: WaitReason::Paced(_) } if *t >= resume
    );
    ensure_eq!(
        h.count_events(|e| matches!(
            e,
            Event::RateLimited { until, correlation_id: Some(c) }
                if *until == resume && c.as_str() == "c-429"
        )),
        1
    );
    ensure_eq!(h.send(resume, &mut req)?.as_str(), "T3");
    ensure_eq!(h.s.handle_response(resume, &mut req, 200, &NoHeaders, b""), Verdict::Done);

    // Transient 5xx: backoff within its ceilings, until the third failure opens the breaker.
    let mut now = resume + Duration::from_secs(1);
    let mut req = h.begin(now, Method::Get);
    for (retry, status) in [(0u32, 502u16), (1, 503)] {
        h.send(now, &mut req)?;
        match h.s.handle_response(now, &mut req, status, &NoHeaders, b"<html>bad gateway</html>") {
            Verdict::Retry {
                at,
                reason: RetryReason::ServerError(s),
                source: WaitSource::Backoff,
            } if s == status => {
                ensure!(at >= now && at <= now + ms(500 << retry), "retry {retry} at {at}");
                now = at;
            }
            other => return Err(fail!("a backoff retry").with_detail(format_args!("{other:?}"))),
        }
    }
    h.send(now, &mut req)?;
    let until = match h.s.handle_response(now, &mut req, 500, &NoHeaders, b"") {
        Verdict::Fail(e) => match e.kind {
            ApiErrorKind::CircuitOpen { until } if e.status == Some(500) => until,
            other => return Err(fail!("CircuitOpen").with_detail(format_args!("{other:?}"))),
        },
        other => return Err(fail!("Verdict::Fail").with_detail(format_args!("{other:?}"))),
    };
    ensure!(
        until >= now + Duration::from_secs(5) && until < now + Duration::from_secs(6),
        "{until}"
    );
    let opened = |e: &Event| {
        matches!(
            e,
            Event::Breaker {
                target: BreakerTarget::Host(k),
                event: BreakerEvent::Opened { trips: 1, .. },
            } if *k == api
        )
    };
    ensure_eq!(h.count_events(opened), 1);

    // Open: fail fast, naming the reopen time; the next deadline is the half-open point.
    let mut late = h.begin(now, Method::Get);
    ensure_matches!(
        h.s.authorize(now, &mut late),
        Authorize::Fail(e) if e.kind == ApiErrorKind::CircuitOpen { until }
    );
    ensure_eq!(h.s.poll_timeout(), Some((until, Reason::BreakerHalfOpen)));
    h.s.handle_timeout(until);
    let half_opened = |e: &Event| matches!(e, Event::Breaker { event: BreakerEvent::HalfOpened { at }, .. } if *at == until);
    ensure_eq!(h.count_events(half_opened), 1);

    // Half-open: one probe; others wait for its outcome; success closes it.
    let mut probe = h.begin(until, Method::Get);
    ensure_eq!(h.send(until, &mut probe)?.as_str(), "T3");
    let mut waiter = h.begin(until, Method::Get);
    ensure_matches!(
        h.s.authorize(until, &mut waiter),
        Authorize::Wait { until: None, reason: WaitReason::BreakerProbe }
    );
    ensure_eq!(h.s.handle_response(until, &mut probe, 200, &NoHeaders, b""), Verdict::Done);
    ensure_eq!(
        h.count_events(|e| matches!(e, Event::Breaker { event: BreakerEvent::Closed { .. }, .. })),
        1
    );
    ensure_eq!(h.send(until, &mut waiter)?.as_str(), "T3");

    let c = h.s.counters();
    ensure_eq!((c.token_requests, c.unauthorized, c.rate_limited, c.breaker_trips), (3, 1, 1, 1));
    ensure_eq!((c.retries, c.failed), (4, 2));
    Ok(())
}

/// 100 days of virtual time (past 2^32 ms, where a 32-bit millisecond clock wraps), jumping from
/// deadline to deadline as an adapter's timer does: a token is always served, each refreshed
/// once, ahead of its expiry.
pub(crate) fn hundred_days_of_refreshes() -> CheckResult {
    let mut h_slot = None;
    let mut h = Harness::new(&mut h_slot, SessionConfig::default())?;
    let end = secs(100 * 86_400);
    let mut now = Instant::ZERO;
    let mut served = 0u32;
    let mut n = 0u32;
    while now < end {
        if h.poll_token(now)? {
            n += 1;
            let token: heapless::String<16> = shown(format_args!("T{n}"));
            let body: heapless::String<96> = shown(format_args!(
                r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#
            ));
            h.answer(now + ms(250), 200, &[], body.as_bytes())?;
            now = now + ms(250);
        }
        let mut req = h.begin(now, Method::Get);
        let token = h.send(now, &mut req)?;
        ensure_eq!(h.s.handle_response(now, &mut req, 200, &NoHeaders, b""), Verdict::Done);
        let times = some!(h.s.token(now)).1;
        ensure!(now < times.usable_until && times.refresh_at < times.expires_at, "{now} {times:?}");
        ensure!(
            token.as_str().get(1..).and_then(|s| s.parse::<u32>().ok()) == Some(n),
            "{now}: {token}"
        );
        served += 1;
        let (at, why) = some!(h.s.poll_timeout());
        ensure_eq!(why, Reason::TokenRequestDue);
        h.s.handle_timeout(at);
        now = at;
    }
    // A 3600 s token is refreshed at 90 % of its life (the 60 s margin is below the 10 % cap)
    // less up to half of the remaining 360 s as jitter: one request per 3060..=3240 s.
    ensure!((8_640_000 / 3240..=8_640_000 / 3060 + 1).contains(&n), "{n} token requests");
    ensure_eq!(served, n);
    ensure!(end.as_millis() > u64::from(u32::MAX));
    Ok(())
}

/// The token endpoint in maintenance for two minutes (503, 429, Genesys's 400 "rate limit"):
/// few requests, the breaker opens after three failures, callers fail fast, it recovers alone.
pub(crate) fn token_endpoint_outage() -> CheckResult {
    let mut h_slot = None;
    let mut h = Harness::new(&mut h_slot, SessionConfig::default())?;
    let outage_ends = secs(120);
    let answers: [(u16, &[u8]); 3] = [
        (503, b"<html>maintenance</html>"),
        (429, b""),
        (400, br#"{"error":"invalid_request","description":"rate limit exceeded; try later","error_description":"rate limit exceeded; try later"}"#),
    ];
    let mut now = secs(0);
    let (mut sent, mut sent_by_open, mut during) = (0usize, None, 0usize);
    let mut opened_at = None;
    while now < secs(600) {
        if h.poll_token(now)? {
            sent += 1;
            if now < outage_ends {
                during += 1;
                let (status, body) = some!(answers.get(sent % 3));
                h.answer(now, *status, &[], body)?;
            } else {
                h.answer(
                    now,
                    200,
                    &[],
                    br#"{"access_token":"T","token_type":"bearer","expires_in":3600}"#,
                )?;
            }
        }
        let opened = |e: &Event| {
            matches!(
                e,
                Event::Breaker {
                    target: BreakerTarget::TokenEndpoint,
                    event: BreakerEvent::Opened { .. }
                }
            )
        };
        if h.count_events(opened) > 0 && opened_at.is_none() {
            opened_at = Some(now);
            sent_by_open = Some(sent);
        }
        if h.s.token(now).is_some() {
            break;
        }
        if opened_at.is_some()
            && matches!(h.s.lifecycle().state(now), LifecycleState::BackingOff { .. })
        {
            let mut req = h.begin(now, Method::Get);
            match h.s.authorize(now, &mut req) {
                Authorize::Fail(e) => {
                    ensure_matches!(e.kind, ApiErrorKind::TokenUnavailable { .. })
                }
                Authorize::Wait { .. } => {}
                other => {
                    return Err(fail!("fail fast or wait").with_detail(format_args!("{other:?}")));
                }
            }
        }
        let next = h.s.poll_timeout().map_or(now + Duration::from_secs(1), |(at, _)| at);
        now = next.max(now + ms(1));
        h.s.handle_timeout(now);
    }
    ensure_eq!(sent_by_open, Some(3));
    ensure!(h.s.token(now).is_some(), "recovered by {now}");
    ensure!(
        now >= outage_ends && now < outage_ends + Duration::from_secs(330),
        "recovered at {now}"
    );
    ensure!(during <= 12, "{during} token requests during a 2 min outage");
    ensure!(h.s.counters().breaker_trips >= 1);
    Ok(())
}

/// `invalid_client` stops token requests (no retry loop with a wrong secret) and says why,
/// until one request checks again after 5 min, then 10, or the credentials change.
pub(crate) fn invalid_client_stops() -> CheckResult {
    let mut h_slot = None;
    let mut h = Harness::new(&mut h_slot, SessionConfig::default())?;
    ensure!(h.poll_token(secs(0))?);
    let body = br#"{"error":"invalid_client","description":"authentication failed","error_description":"authentication failed"}"#;
    h.answer(secs(0), 401, &[("ININ-Correlation-Id", "abc-123")], body)?;
    let mut req = h.begin(secs(1), Method::Get);
    match h.s.authorize(secs(1), &mut req) {
        Authorize::Fail(e) => {
            ensure_matches!(
                e.kind,
                ApiErrorKind::CredentialsRejected { reason: RejectReason::InvalidClient }
            );
            let detail = h.s.error_detail(e);
            ensure_eq!(detail.correlation_id().map(|c| c.as_str()), Some("abc-123"));
            let text: heapless::String<192> = shown(detail);
            ensure!(
                text.contains("invalid_client") && text.contains("authentication failed"),
                "{}",
                text
            );
            ensure!(e.likely_cause().contains("region"));
        }
        other => return Err(fail!("Authorize::Fail").with_detail(format_args!("{other:?}"))),
    }
    for t in [1, 60, 299] {
        ensure!(!h.poll_token(secs(t))?, "no retry loop at {t} s");
    }
    ensure_eq!(
        h.count_events(|e| matches!(
            e,
            Event::TokenEndpointError { status: 401, class: TokenErrorClass::CredentialsRejected }
        )),
        1
    );
    // One request checks after 5 min (recheck_after), answered alike: then 10 min.
    ensure!(h.poll_token(secs(300))?, "the recheck at 300 s");
    h.answer(secs(300), 401, &[], body)?;
    for t in [301, 899] {
        ensure!(!h.poll_token(secs(t))?, "no retry loop at {t} s");
    }
    ensure!(h.poll_token(secs(900))?, "the second recheck at 900 s");
    h.answer(secs(900), 401, &[], body)?;
    h.s.set_credentials(secs(100_000), ok!(Credentials::from_strs("client", "rotated")));
    let mut buf = [0u8; 512];
    let (_, request) = some!(ok!(h.s.poll_token_request(secs(100_000), &mut buf)));
    ensure_eq!(request.authorization, Some("Basic Y2xpZW50OnJvdGF0ZWQ="));
    Ok(())
}

/// A sealed token survives a reboot (new session, new monotonic origin, 100 s later), is used
/// without a token request, and a one-bit change in flash is refused.
pub(crate) fn seal_and_restore_across_a_reboot() -> CheckResult {
    let key = b"0123456789abcdef-device";
    let mut sealed = [0u8; 128];
    // Each session lives in its own block: three at once would triple the stack needed.
    let n = {
        let mut h_slot = None;
        let mut h = Harness::new(&mut h_slot, SessionConfig::default())?;
        h.s.set_wall_clock(WallClock::new(secs(0), UnixTime::from_secs(1_800_000_000)));
        h.acquire(secs(0), "T1", 3600)?;
        ok!(h.s.seal(secs(10), key, &mut sealed))
    };
    ensure_eq!(n, 2 + 54);
    let snapshot = some!(sealed.get(..n));
    {
        let mut rebooted_slot = None;
        let mut rebooted = Harness::new(&mut rebooted_slot, SessionConfig::default())?;
        rebooted.s.set_wall_clock(WallClock::new(secs(0), UnixTime::from_secs(1_800_000_100)));
        ok!(rebooted.s.restore(secs(0), snapshot, key));
        let mut req = rebooted.begin(secs(0), Method::Get);
        ensure_eq!(rebooted.send(secs(0), &mut req)?.as_str(), "T1");
        ensure!(!rebooted.poll_token(secs(0))?, "no token request after restoring");
        let times = some!(rebooted.s.token(secs(0))).1;
        ensure_eq!(times.expires_at, secs(3500));
    }
    let mut tampered = [0u8; 128];
    some!(tampered.get_mut(..n)).copy_from_slice(snapshot);
    *some!(tampered.get_mut(20)) ^= 1;
    let mut other_slot = None;
    let mut other = Harness::new(&mut other_slot, SessionConfig::default())?;
    other.s.set_wall_clock(WallClock::new(secs(0), UnixTime::from_secs(1_800_000_100)));
    ensure!(other.s.restore(secs(0), some!(tampered.get(..n)), key).is_err());
    ensure!(other.poll_token(secs(0))?, "a refused snapshot leaves a token request due");
    Ok(())
}

/// A daily quota's 429 (a wait far beyond `max_wait`) fails fast, naming the wait, and later
/// requests fail fast too, except one probe per `max_wait`.
pub(crate) fn daily_quota_fails_fast() -> CheckResult {
    let mut h_slot = None;
    let mut h = Harness::new(&mut h_slot, SessionConfig::default())?;
    h.acquire(secs(0), "T1", 86_400)?;
    let mut first = h.begin(secs(0), Method::Get);
    h.send(secs(0), &mut first)?;
    ensure_matches!(
        h.s.handle_response(secs(0), &mut first, 429, &[("Retry-After", "40000")], b""),
        Verdict::Fail(e) if matches!(
            e.kind,
            ApiErrorKind::GaveUp { reason: GiveUpReason::WaitTooLong { .. }, .. }
        )
    );
    let mut later = h.begin(secs(5), Method::Get);
    ensure_matches!(
        h.s.authorize(secs(5), &mut later),
        Authorize::Fail(e) if e.kind == ApiErrorKind::GaveUp {
            reason: GiveUpReason::WaitTooLong {
                wait: Duration::from_secs(39_995),
                max: Duration::from_secs(60),
            },
            last: RetryReason::RateLimited,
        }
    );
    let mut early = h.begin(secs(60) - ms(1), Method::Get);
    ensure_matches!(h.s.authorize(secs(60) - ms(1), &mut early), Authorize::Fail(_));
    let mut probe = h.begin(secs(60), Method::Get);
    ensure_eq!(h.send(secs(60), &mut probe)?.as_str(), "T1");
    let mut after = h.begin(secs(60), Method::Get);
    ensure_matches!(h.s.authorize(secs(60), &mut after), Authorize::Fail(_));
    Ok(())
}

/// A 403 names the missing permission and is not retried; a deadline bounds a `Retry-After`;
/// Critical requests use the reserve that Background leaves.
pub(crate) fn forbidden_deadline_and_priorities() -> CheckResult {
    let mut h_slot = None;
    let mut h = Harness::new(&mut h_slot, SessionConfig::default())?;
    h.acquire(secs(0), "T1", 3600)?;
    let mut req = h.begin(secs(0), Method::Post);
    h.send(secs(0), &mut req)?;
    let body = br#"{"message":"Unable to perform the requested action. You are missing the following permission(s): [analytics:conversationDetail:view]","code":"missing.permissions","status":403,"contextId":"ctx-403"}"#;
    match h.s.handle_response(secs(0), &mut req, 403, &NoHeaders, body) {
        Verdict::Fail(e) => {
            let detail = h.s.error_detail(e);
            let text: heapless::String<256> = shown(detail);
            ensure!(text.contains("analytics:conversationDetail:view"), "{}", text);
            ensure_eq!(detail.correlation_id().map(|c| c.as_str()), Some("ctx-403"));
        }
        other => return Err(fail!("Verdict::Fail").with_detail(format_args!("{other:?}"))),
    }
    let spec = RequestSpec { deadline: Some(secs(5)), ..RequestSpec::new(Method::Get, HostKey(1)) };
    let mut req = h.s.begin(secs(0), spec);
    h.send(secs(0), &mut req)?;
    ensure_matches!(
        h.s.handle_response(secs(0), &mut req, 429, &[("Retry-After", "10")], b""),
        Verdict::Fail(e) if matches!(
            e.kind,
            ApiErrorKind::GaveUp { reason: GiveUpReason::PastDeadline { .. }, .. }
        )
    );
    let headers = [
        ("inin-ratelimit-count", "95"),
        ("inin-ratelimit-allowed", "100"),
        ("inin-ratelimit-reset", "60"),
    ];
    let now = secs(20);
    let mut req = h.begin(now, Method::Get);
    h.send(now, &mut req)?;
    ensure_eq!(h.s.handle_response(now, &mut req, 200, &headers, b""), Verdict::Done);
    let with = |priority| RequestSpec { priority, ..RequestSpec::new(Method::Get, HostKey(1)) };
    let mut background = h.s.begin(now, with(Priority::Background));
    ensure_matches!(
        h.s.authorize(now, &mut background),
        Authorize::Wait { reason: WaitReason::Paced(_), .. }
    );
    let mut critical = h.s.begin(now, with(Priority::Critical));
    ensure_matches!(h.s.authorize(now, &mut critical), Authorize::Send { .. });
    Ok(())
}
