//! The quota probe (one request per `max_wait` that goes out although the pacer holds it back
//! for longer, to find out when a limit is lifted) is for limits the server set: a 429's
//! `Retry-After`, an exhausted window. A request held back for higher priorities (the share
//! of the window Background leaves to the others) fails fast instead, every time: there is
//! nothing to find out, and a probe would spend the very requests held back. Found through
//! `credflow proxy`: with `X-Credflow-Priority: background`, the first background request of
//! each minute went out into the floor.

use credflow_core::http::Method;
use credflow_core::ratelimit::pacer::{PaceReason, PacerConfig, Priority};
use credflow_core::retry::policy::GiveUpReason;
use credflow_core::secret::Credentials;
use credflow_core::session::{
    ApiErrorKind, Authorize, HostKey, RequestSpec, RetryReason, Session, SessionConfig,
    TokenEndpoint, Verdict, WaitReason,
};
use credflow_core::{Duration, Instant};

fn host() -> HostKey {
    HostKey::from_host("api.mypurecloud.com")
}

fn spec(priority: Priority) -> RequestSpec {
    RequestSpec { priority, ..RequestSpec::new(Method::Get, host()) }
}

/// A session holding a token, that has seen a response saying 20 of 100 requests are left in
/// a window (60 s, the default) that resets in 100 s.
fn session_at_20_of_100(t0: Instant) -> Session<64, 1> {
    session_seeing(t0, SessionConfig::default(), ("100", "80", "100"))
}

/// A session with `config` holding a token, that has seen a response with Genesys Cloud's
/// rate-limit fields `(allowed, count, reset)`.
fn session_seeing(
    t0: Instant,
    config: SessionConfig,
    fields: (&str, &str, &str),
) -> Session<64, 1> {
    let creds = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
    let mut s = Session::new(creds, endpoint, config, 1).unwrap();
    let mut buf = [0u8; 512];
    let (ticket, _) = s.poll_token_request(t0, &mut buf).unwrap().unwrap();
    let body = br#"{"access_token":"T","token_type":"Bearer","expires_in":3600}"#;
    s.handle_token_response(t0, ticket, 200, &[("a", "b")], body);
    let (allowed, count, reset) = fields;
    let limits = [
        ("inin-ratelimit-allowed", allowed),
        ("inin-ratelimit-count", count),
        ("inin-ratelimit-reset", reset),
    ];
    answered(t0, s, &limits)
}

/// `s` once a request it sends at `t0` is answered 200 with `headers`.
fn answered(t0: Instant, mut s: Session<64, 1>, headers: &[(&str, &str)]) -> Session<64, 1> {
    let mut first = s.begin(t0, spec(Priority::Normal));
    assert!(matches!(s.authorize(t0, &mut first), Authorize::Send { .. }));
    assert_eq!(s.handle_response(t0, &mut first, 200, headers, b""), Verdict::Done);
    s
}

#[test]
fn a_request_held_for_higher_priorities_is_never_sent_as_a_quota_probe() {
    let t0 = Instant::from_secs(10);
    let mut s = session_at_20_of_100(t0);
    let max = SessionConfig::default().retry.max_wait;
    // Background leaves 30 % of the limit (30 > 20 left) until 19 × 60 s / 30 = 38 s before
    // the reset: a hold of 62 s, beyond `max_wait` (60 s).
    let hold = Duration::from_secs(62);
    for later in [0, 1] {
        let now = t0 + Duration::from_secs(later);
        let mut background = s.begin(now, spec(Priority::Background));
        let Authorize::Fail(error) = s.authorize(now, &mut background) else {
            panic!("a background request went into the floor {later} s later");
        };
        let wait = hold.checked_sub(Duration::from_secs(later)).unwrap();
        // The pacer's own choice, named so (with the `diagnosis` feature): not the server's.
        let reason = if cfg!(feature = "diagnosis") {
            GiveUpReason::ReservedForOthers { wait, max }
        } else {
            GiveUpReason::WaitTooLong { wait, max }
        };
        assert_eq!(error.kind, ApiErrorKind::GaveUp { reason, last: RetryReason::RateLimited });
        if cfg!(feature = "diagnosis") {
            let text = error.to_string();
            assert!(text.starts_with("gave up: held back by credflow's pacing"), "{text}");
            assert!(text.contains("higher-priority"), "{text}");
            assert!(!text.contains("server asked"), "{text}");
        }
    }
    // When the hold ends, it goes: a share of the window, not a ban.
    let end = t0 + hold;
    let mut background = s.begin(end, spec(Priority::Background));
    assert!(matches!(s.authorize(end, &mut background), Authorize::Send { .. }));
    // What Background leaves, Normal and Critical may use at once.
    for priority in [Priority::Normal, Priority::Critical] {
        let mut fresh = session_at_20_of_100(t0);
        let mut other = fresh.begin(t0, spec(priority));
        assert!(matches!(fresh.authorize(t0, &mut other), Authorize::Send { .. }), "{priority:?}");
    }
}

#[test]
fn a_limit_the_server_set_is_still_probed() {
    let t0 = Instant::from_secs(10);
    let mut s = session_at_20_of_100(t0);
    let mut limited = s.begin(t0, spec(Priority::Critical));
    assert!(matches!(s.authorize(t0, &mut limited), Authorize::Send { .. }));
    let verdict = s.handle_response(t0, &mut limited, 429, &[("Retry-After", "7200")], b"");
    assert!(matches!(verdict, Verdict::Fail(_)), "{verdict:?}");
    let max = SessionConfig::default().retry.max_wait;
    let probe_at = t0 + max;
    let mut probe = s.begin(probe_at, spec(Priority::Normal));
    assert!(matches!(s.authorize(probe_at, &mut probe), Authorize::Send { .. }), "the probe");
    let mut next = s.begin(probe_at, spec(Priority::Normal));
    assert!(matches!(s.authorize(probe_at, &mut next), Authorize::Fail(_)), "one at a time");
}

/// A hold that ends past the request's deadline but within `max_wait` fails at once, naming
/// when the request could have gone (what a caller, or `credflow proxy`'s `Retry-After`,
/// needs); one past `max_wait` fails naming the wait, as it would without a deadline (the
/// deadline is not why it failed: none the caller waits for would have been long enough); and
/// a deadline that passes while waiting for something the session cannot date names nothing.
#[test]
fn a_hold_past_the_deadline_says_when_the_request_could_go() {
    let t0 = Instant::from_secs(10);
    let max = SessionConfig::default().retry.max_wait;
    let deadline = Some(t0 + Duration::from_secs(5));
    // 20 of 100 left, the reset in 80 s: Background is held until 38 s before it (19 × 60 s /
    // 30), 42 s, within max_wait (60 s) but past the deadline's 5 s.
    let mut s = session_seeing(t0, SessionConfig::default(), ("100", "80", "80"));
    let mut background = s.begin(t0, RequestSpec { deadline, ..spec(Priority::Background) });
    let Authorize::Fail(error) = s.authorize(t0, &mut background) else {
        panic!("a background request went into the floor");
    };
    let sendable_at = Some(t0 + Duration::from_secs(42));
    assert_eq!(error.kind, ApiErrorKind::DeadlineExceeded { sendable_at });

    // The same with the reset in 100 s: a hold of 62 s, past max_wait too.
    let mut s = session_at_20_of_100(t0);
    let mut background = s.begin(t0, RequestSpec { deadline, ..spec(Priority::Background) });
    let Authorize::Fail(error) = s.authorize(t0, &mut background) else {
        panic!("a background request went into the floor");
    };
    let wait = Duration::from_secs(62);
    let reason = if cfg!(feature = "diagnosis") {
        GiveUpReason::ReservedForOthers { wait, max }
    } else {
        GiveUpReason::WaitTooLong { wait, max }
    };
    assert_eq!(error.kind, ApiErrorKind::GaveUp { reason, last: RetryReason::RateLimited });

    let late = t0 + Duration::from_secs(6);
    let mut normal = s.begin(t0, RequestSpec { deadline, ..spec(Priority::Normal) });
    let Authorize::Fail(error) = s.authorize(late, &mut normal) else {
        panic!("sent past its deadline");
    };
    assert_eq!(error.kind, ApiErrorKind::DeadlineExceeded { sendable_at: None });
}

/// A request whose turn under the pacer's spacing is further away than `max_wait` (a long
/// window's last requests spread until its reset) fails at once, and says that the pacing, not
/// the server, holds it. Spacing holds back no request the server would refuse: no probe goes.
#[test]
fn a_request_spaced_past_max_wait_names_the_pacing() {
    let t0 = Instant::from_secs(10);
    // Strict spacing (no burst); 500 of 1 000 requests left, the reset a day away: one request
    // every 86 400 s / 501 = 172 s, more than `max_wait` (60 s). What Normal leaves to
    // Critical (100 of 1 000) is far below what is left.
    let config = SessionConfig {
        pacer: PacerConfig { burst: 1, burst_permille: 0, ..PacerConfig::default() },
        ..SessionConfig::default()
    };
    let max = config.retry.max_wait;
    let mut s = session_seeing(t0, config, ("1000", "500", "86400"));
    let mut first = s.begin(t0, spec(Priority::Normal));
    assert!(matches!(s.authorize(t0, &mut first), Authorize::Send { .. }), "the first goes");
    for later in [0, 61, 110] {
        let now = t0 + Duration::from_secs(later);
        let mut next = s.begin(now, spec(Priority::Normal));
        let Authorize::Fail(error) = s.authorize(now, &mut next) else {
            panic!("a request {later} s later was sent within the spacing");
        };
        let ApiErrorKind::GaveUp { reason, last: RetryReason::RateLimited } = error.kind else {
            panic!("{error:?}");
        };
        let wait = match reason {
            GiveUpReason::SpacingTooLong { wait, max: m } if cfg!(feature = "diagnosis") => {
                assert_eq!(m, max);
                let text = error.to_string();
                assert!(text.starts_with("gave up: held back by credflow's pacing"), "{text}");
                assert!(text.contains("spread"), "{text}");
                assert!(!text.contains("server asked"), "{text}");
                wait
            }
            GiveUpReason::WaitTooLong { wait, max: m } if !cfg!(feature = "diagnosis") => {
                assert_eq!(m, max);
                assert!(!error.to_string().contains("server asked"), "{error}");
                wait
            }
            other => panic!("{other:?}"),
        };
        assert!(wait > max, "{wait}");
    }
    // Once its turn is within `max_wait`, the request waits for it.
    let now = t0 + Duration::from_secs(120);
    let mut next = s.begin(now, spec(Priority::Normal));
    match s.authorize(now, &mut next) {
        Authorize::Wait { until: Some(at), reason: WaitReason::Paced(PaceReason::Spacing) } => {
            assert!(at > now && at <= now + max, "{at}")
        }
        other => panic!("{other:?}"),
    }
}

/// One answer claiming a reset decades away (a delay of 999 999 999 s, which the header rules
/// read as seconds) with a few requests left: the share kept for higher priorities held every
/// Normal and Background request back that long, failing each fast, with nothing ever sent to
/// learn otherwise. A reset further than a day (`pacer::MAX_RESET`) is read as unknown: the
/// window is paced as one of its default length, and Normal requests go.
#[test]
fn a_reset_decades_away_does_not_hold_lower_priorities_back() {
    let t0 = Instant::from_secs(10);
    let mut s = session_seeing(t0, SessionConfig::default(), ("300", "295", "999999999"));
    let mut normal = s.begin(t0, spec(Priority::Normal));
    let sent = match s.authorize(t0, &mut normal) {
        Authorize::Send { .. } => true,
        Authorize::Wait { until: Some(at), .. } => at <= t0 + Duration::from_secs(60),
        Authorize::Wait { .. } => false,
        Authorize::Fail(e) => panic!("held back for decades: {e:?}"),
    };
    assert!(sent, "a Normal request goes within a window");
    // A reset within a day is believed as it is: a hold beyond max_wait fails fast.
    let mut s = session_seeing(t0, SessionConfig::default(), ("300", "295", "86400"));
    let mut background = s.begin(t0, spec(Priority::Background));
    assert!(matches!(s.authorize(t0, &mut background), Authorize::Fail(_)));
}

/// The same decades named as the window's length instead of its reset (`RateLimit-Policy:
/// 300;w=999999999`, no reset given, which is then one window away): a window longer than a day
/// is read as unknown too, so the default window is paced and Normal requests go.
#[cfg(feature = "ietf-ratelimit")]
#[test]
fn a_window_decades_long_does_not_hold_lower_priorities_back() {
    let t0 = Instant::from_secs(10);
    let s = session_seeing(t0, SessionConfig::default(), ("300", "0", "60"));
    let mut s = answered(
        t0,
        s,
        &[("RateLimit", "limit=300, remaining=5"), ("RateLimit-Policy", "300;w=999999999")],
    );
    let mut normal = s.begin(t0, spec(Priority::Normal));
    match s.authorize(t0, &mut normal) {
        Authorize::Send { .. } => {}
        Authorize::Wait { until: Some(at), .. } => {
            assert!(at <= t0 + Duration::from_secs(60), "held until {at:?}")
        }
        other => panic!("held back for decades: {other:?}"),
    }
}

/// The quota probe is taken only by an attempt that goes out: one the API host's open breaker
/// then refused spent it, and the next probe was a whole `max_wait` (60 s) away, so the first
/// request after the breaker's cooldown, which would have probed both the host and the
/// exhausted quota, failed fast instead.
#[test]
fn an_attempt_the_breaker_refuses_does_not_spend_the_quota_probe() {
    let t0 = Instant::from_secs(1);
    let mut s = session_seeing(t0, SessionConfig::default(), ("100", "0", "60"));
    // Three 500s open the breaker; the last one says the window is spent for an hour.
    let spent = [
        ("inin-ratelimit-allowed", "100"),
        ("inin-ratelimit-count", "100"),
        ("inin-ratelimit-reset", "3600"),
    ];
    for i in 0..3 {
        let mut req = s.begin(t0, spec(Priority::Normal));
        assert!(matches!(s.authorize(t0, &mut req), Authorize::Send { .. }), "attempt {i}");
        let headers: &[(&str, &str)] = if i == 2 { &spent } else { &[] };
        let _ = s.handle_response(t0, &mut req, 500, headers, b"");
        s.abandon(t0, &mut req);
    }
    // Held for an hour by the quota, past max_wait: the probe would go, but the breaker is open.
    let mut refused = s.begin(t0, spec(Priority::Normal));
    match s.authorize(t0, &mut refused) {
        Authorize::Fail(e) => assert!(matches!(e.kind, ApiErrorKind::CircuitOpen { .. }), "{e:?}"),
        other => panic!("expected the open breaker's refusal, got {other:?}"),
    }
    // After the cooldown (5 s, up to 20 % more), the next request probes both.
    let later = t0 + Duration::from_secs(7);
    let mut next = s.begin(later, spec(Priority::Normal));
    let answer = s.authorize(later, &mut next);
    assert!(matches!(answer, Authorize::Send { .. }), "{answer:?}");
}

/// The same with the API host's breaker half-open and its one probe out, rather than open: an
/// attempt held past `max_wait` takes the quota probe, then waits for the breaker's probe
/// (`WaitReason::BreakerProbe`) without being sent, so the quota probe is the next attempt's.
/// Once the breaker's probe is answered, a request held the same way goes as the quota probe at
/// once, not a whole `max_wait` later.
#[test]
fn an_attempt_waiting_for_the_breakers_probe_does_not_spend_the_quota_probe() {
    let t0 = Instant::from_secs(1);
    let mut s = session_at_20_of_100(t0);
    // Three 500s open the breaker.
    for i in 0..3 {
        let mut req = s.begin(t0, spec(Priority::Normal));
        assert!(matches!(s.authorize(t0, &mut req), Authorize::Send { .. }), "attempt {i}");
        let _ = s.handle_response(t0, &mut req, 500, &[], b"");
        s.abandon(t0, &mut req);
    }
    // After the cooldown (5 s, up to 20 % more), one request goes as the breaker's probe.
    let t1 = t0 + Duration::from_secs(7);
    let mut probe = s.begin(t1, spec(Priority::Normal));
    assert!(matches!(s.authorize(t1, &mut probe), Authorize::Send { .. }));
    // Requests held by the fleet for an hour, past max_wait (60 s): each would be the quota
    // probe, but the breaker's probe is out, so none is sent and none spends it.
    let held = |s: &mut Session<64, 1>, at: Instant| {
        let mut req = s.begin(at, spec(Priority::Normal));
        req.set_external_hold(at + Duration::from_secs(3600));
        req
    };
    for _ in 0..2 {
        let mut waiting = held(&mut s, t1);
        match s.authorize(t1, &mut waiting) {
            Authorize::Wait { until: None, reason: WaitReason::BreakerProbe } => {}
            other => panic!("expected a wait for the breaker's probe, got {other:?}"),
        }
        s.abandon(t1, &mut waiting);
    }
    // The breaker's probe succeeds; the next held request is the quota probe, at once.
    assert_eq!(s.handle_response(t1, &mut probe, 200, &[], b""), Verdict::Done);
    let t2 = t1 + Duration::from_millis(10);
    let mut next = held(&mut s, t2);
    let answer = s.authorize(t2, &mut next);
    assert!(matches!(answer, Authorize::Send { .. }), "{answer:?}");
    // And it took the probe: the one after it fails fast, naming the wait.
    let mut after = held(&mut s, t2);
    match s.authorize(t2, &mut after) {
        Authorize::Fail(e) => assert!(
            matches!(e.kind, ApiErrorKind::GaveUp { reason: GiveUpReason::WaitTooLong { .. }, .. }),
            "{e:?}"
        ),
        other => panic!("expected a fast failure after the probe, got {other:?}"),
    }
}
