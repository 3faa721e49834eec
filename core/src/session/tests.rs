use super::*;
use crate::breaker::BreakerEvent;
use crate::http::Method;
use crate::http::url::{PlainHttp, UrlError};
use crate::ratelimit::pacer::{PaceReason, Priority};
use crate::retry::policy::{GiveUpReason, TransportKind};

/// The URL, scope and parameters share the endpoint's `E` bytes, each failure says which
/// part did not fit, and the parts read back in order.
#[test]
fn token_endpoint_packs_its_parts_into_one_capacity() {
    const URL: &str = "https://login.example/t"; // 23 bytes
    assert_eq!(TokenEndpoint::<22>::new(URL), Err(SetupError::TokenUrlTooLong));
    let e = TokenEndpoint::<23>::new(URL).unwrap();
    assert_eq!((e.token_url(), e.scope(), e.params().count()), (URL, None, 0));
    assert_eq!(e.clone().with_scope("a").err(), Some(SetupError::ScopeTooLong));
    // 23 + "aud" + "x" + "read" = 31: T-1 fails, T fits.
    let e = TokenEndpoint::<30>::new(URL).unwrap().with_param("aud", "x").unwrap();
    assert_eq!(e.clone().with_scope("read").err(), Some(SetupError::ScopeTooLong));
    let e = TokenEndpoint::<31>::new(URL).unwrap().with_param("aud", "x").unwrap();
    let e = e.with_scope("read").unwrap();
    assert_eq!((e.token_url(), e.scope()), (URL, Some("read")));
    assert!(e.params().eq([("aud", "x")]));
    // A parameter whose name or value does not fit is refused.
    let e = TokenEndpoint::<30>::new(URL).unwrap();
    assert_eq!(e.clone().with_param("resource", "y").err(), Some(SetupError::TooManyExtraParams));
    let e = e.with_param("r", "").unwrap().with_param("s", "z").unwrap();
    assert!(e.params().eq([("r", ""), ("s", "z")]));
    let e = (0..EXTRA_PARAMS)
        .fold(TokenEndpoint::<64>::new(URL).unwrap(), |e, _| e.with_param("p", "v").unwrap());
    assert_eq!(e.with_param("p", "v").err(), Some(SetupError::TooManyExtraParams));
    let genesys = crate::env::parse_environment("mypurecloud.com").unwrap();
    assert_eq!(
        TokenEndpoint::<64>::genesys(genesys).unwrap().token_url(),
        "https://login.mypurecloud.com/oauth/token"
    );
    assert_eq!(TokenEndpoint::<8>::genesys(genesys), Err(SetupError::TokenUrlTooLong));
}

/// The token URL receives the credentials: plain `http` only to loopback, unless the
/// endpoint is built with the opt-in, and never with userinfo (whose text the error does
/// not carry).
#[test]
fn token_endpoint_refuses_plain_http_to_other_hosts_and_userinfo() {
    extern crate std;
    let refused = |url| TokenEndpoint::<64>::new(url).err();
    let insecure = Some(SetupError::InvalidTokenUrl(UrlError::InsecureHttp));
    assert_eq!(refused("http://auth.example.invalid/oauth/token"), insecure);
    assert_eq!(refused("http://10.0.0.1/oauth/token"), insecure);
    for local in ["http://127.0.0.1:8089/oauth/token", "http://[::1]/t", "http://localhost/t"] {
        assert_eq!(refused(local), None, "{local}");
        assert_eq!(TokenEndpoint::<64>::new(local).unwrap().plain_http(), PlainHttp::LoopbackOnly);
    }
    assert_eq!(refused("https://auth.example.invalid/oauth/token"), None);
    let userinfo = SetupError::InvalidTokenUrl(UrlError::UserInfo);
    assert_eq!(refused("http://user:pw@127.0.0.1:1/oauth/token"), Some(userinfo));
    let message = std::format!("{userinfo}");
    assert!(message.contains("not allowed") && !message.contains("pw"), "{message}");

    // Opted in, the session encodes the request (nothing else would send it anywhere).
    let endpoint = TokenEndpoint::new_with_plain_http(
        "http://auth.example.invalid/oauth/token",
        PlainHttp::Anywhere,
    )
    .unwrap();
    let creds = Credentials::from_strs("client", "secret").unwrap();
    let mut session: Session<64, 1> =
        Session::new(creds, endpoint, SessionConfig::default(), 1).unwrap();
    let mut buf = [0u8; 512];
    let (_, request) = session.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
    assert_eq!(request.hostname, "auth.example.invalid");
}

/// A session holding token `T` (valid for an hour) at `Instant::ZERO`.
fn with_token() -> Session<64, 1> {
    with_token_for_hosts()
}

/// [`with_token`] with breakers for `H` hosts.
fn with_token_for_hosts<const H: usize>() -> Session<64, H> {
    let creds = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
    let mut s = Session::new(creds, endpoint, SessionConfig::default(), 1).unwrap();
    let mut buf = [0u8; 512];
    let (ticket, _) = s.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
    let body = br#"{"access_token":"T","token_type":"Bearer","expires_in":3600}"#;
    s.handle_token_response(Instant::ZERO, ticket, 200, &[("a", "b")], body);
    s
}

/// A late answer to a token request the session disowned (credentials replaced since) while
/// another is in flight is not recorded: it replaced the failure on record (masked with the new
/// credentials, so an echo of the old secret stayed in clear), and an `invalid_client` for the
/// old secret made callers fail fast although the new one was fine.
#[test]
fn a_late_answer_to_a_disowned_token_request_is_ignored() {
    let creds = |secret: &str| Credentials::from_strs("client", secret).unwrap();
    let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
    let mut s: Session<64, 1> =
        Session::new(creds("old-secret"), endpoint, SessionConfig::default(), 1).unwrap();
    let mut buf = [0u8; 512];
    let (a, _) = s.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
    s.set_credentials(Instant::from_millis(100), creds("new-secret"));
    let (b, _) = s.poll_token_request(Instant::from_secs(1), &mut buf).unwrap().unwrap();
    while s.poll_event().is_some() {}
    let body = br#"{"error":"invalid_client","error_description":"bad old-secret"}"#;
    s.handle_token_response(Instant::from_millis(1_200), a, 401, &[("a", "b")], body);
    assert!(s.last_token_failure().is_none(), "{:?}", s.last_token_failure());
    assert!(
        !core::iter::from_fn(|| s.poll_event())
            .any(|e| matches!(e, Event::TokenEndpointError { .. })),
        "the disowned answer was reported"
    );
    s.handle_token_error(Instant::from_millis(1_300), a, Some(TransportKind::Reset));
    assert!(s.last_token_failure().is_none(), "a disowned transport failure too");
    // B is abandoned: callers wait for the next request, they are not told the credentials
    // were rejected.
    s.handle_token_error(Instant::from_millis(1_300), b, None);
    let now = Instant::from_millis(1_400);
    assert!(
        matches!(
            s.check_token_before(now, Some(now + Duration::from_secs(10))),
            TokenStatus::Pending { .. }
        ),
        "callers wait"
    );
}

/// An extra parameter no token request could carry is refused when the endpoint is built,
/// not when a request is due (where an adapter could only log it, again and again).
#[test]
fn reserved_or_empty_extra_parameter_names_are_refused_at_once() {
    let endpoint =
        || TokenEndpoint::<128>::new("https://login.mypurecloud.com/oauth/token").unwrap();
    for name in ["", "grant_type", "scope", "client_id", "client_secret", "client_assertion_type"] {
        assert_eq!(
            endpoint().with_param(name, "x").err(),
            Some(SetupError::InvalidParamName),
            "{name:?}"
        );
    }
    assert!(endpoint().with_param("audience", "x").is_ok());
    assert!(endpoint().with_param("Scope", "x").is_ok(), "names are case-sensitive");
}

/// A token request that cannot be encoded (here a buffer too small for it) counts as a failed
/// one: the next is a backoff away, not due again at once. Before, it stayed due, and an
/// adapter polling at its next wake (now) encoded it again in a loop.
#[test]
fn a_token_request_that_cannot_be_encoded_backs_off() {
    let creds = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
    let mut s: Session<64, 1> = Session::new(creds, endpoint, SessionConfig::default(), 1).unwrap();
    let now = Instant::from_secs(5);
    let mut small = [0u8; 8];
    assert!(matches!(
        s.poll_token_request(now, &mut small),
        Err(crate::oauth::EncodeError::BufferTooSmall { .. })
    ));
    assert!(s.poll_token_request(now, &mut small).unwrap().is_none(), "not due again at once");
    let next = s.poll_timeout().map(|(at, _)| at).unwrap();
    assert!(next >= now + Duration::from_millis(500), "the backoff: {next:?}");
    // Encodable again (a larger buffer), it goes at that time.
    let mut buf = [0u8; 512];
    assert!(s.poll_token_request(next, &mut buf).unwrap().is_some());
}

/// `new_in` builds the same session as `new` into its slot, replaces what the slot held,
/// and leaves the slot alone when the configuration is refused.
#[test]
fn new_in_builds_in_the_slot_or_leaves_it() {
    let creds = || Credentials::from_strs("client", "secret").unwrap();
    let endpoint = || TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
    let mut slot: Option<Session<64, 1>> = Some(with_token());
    let bad = SessionConfig {
        lifecycle: LifecycleConfig {
            min_refresh_permille: 900,
            max_refresh_permille: 500,
            ..LifecycleConfig::default()
        },
        ..SessionConfig::default()
    };
    let refused = Session::new_in(&mut slot, creds(), endpoint(), bad.clone(), 1);
    assert!(matches!(refused, Err(SetupError::Lifecycle(_))));
    assert!(matches!(
        Session::<64, 1>::new(creds(), endpoint(), bad, 1),
        Err(SetupError::Lifecycle(_))
    ));
    // The refused call left the session with its token in place.
    assert!(slot.as_ref().unwrap().token(Instant::ZERO).is_some());

    let s = Session::new_in(&mut slot, creds(), endpoint(), SessionConfig::default(), 1).unwrap();
    assert!(s.token(Instant::ZERO).is_none(), "a new session, not the old one");
    let mut buf = [0u8; 512];
    let (_, sent) = s.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
    let sent = (sent.path, sent.authorization.map(str::len));
    let mut by_value: Session<64, 1> =
        Session::new(creds(), endpoint(), SessionConfig::default(), 1).unwrap();
    let mut other = [0u8; 512];
    let (_, expected) = by_value.poll_token_request(Instant::ZERO, &mut other).unwrap().unwrap();
    assert_eq!(sent, (expected.path, expected.authorization.map(str::len)));
}

/// A failing verdict carries the response's status, its detail the correlation id, and it is
/// counted once; a transport failure's has neither; retries and successes are not counted as failures.
#[test]
fn failing_verdicts_are_completed_and_counted() {
    let mut s = with_token();
    let now = Instant::ZERO;
    let send = |s: &mut Session<64, 1>| {
        let mut req = s.begin(now, RequestSpec::new(Method::Get, HostKey(1)));
        assert!(matches!(s.authorize(now, &mut req), Authorize::Send { .. }));
        req
    };
    let mut req = send(&mut s);
    let headers = [("ININ-Correlation-Id", "c-403")];
    match s.handle_response(now, &mut req, 403, &headers, b"") {
        Verdict::Fail(e) => {
            assert_eq!(e.status, Some(403));
            let id = s.error_detail(e).correlation_id();
            assert_eq!(id.map(CorrelationId::as_str), Some("c-403"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.counters().failed, 1);
    let mut req = send(&mut s);
    assert_eq!(s.handle_response(now, &mut req, 200, &headers, b""), Verdict::Done);
    assert_eq!(s.counters().failed, 1);
    let mut req = send(&mut s);
    let verdict = s.handle_transport_error(now, &mut req, TransportKind::Connect);
    assert!(matches!(verdict, Verdict::Retry { .. }), "{verdict:?}");
    assert_eq!(s.counters().failed, 1);
    let mut req = s.begin(
        now,
        RequestSpec { idempotent: false, ..RequestSpec::new(Method::Post, HostKey(1)) },
    );
    assert!(matches!(s.authorize(now, &mut req), Authorize::Send { .. }));
    match s.handle_transport_error(now, &mut req, TransportKind::Reset) {
        Verdict::Fail(e) => {
            assert_eq!(e.status, None);
            assert_eq!(s.error_detail(e).correlation_id(), None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.counters().failed, 2);
}

/// Opens `host`'s breaker at `now` (three transport failures); returns when it half-opens.
fn trip<const H: usize>(s: &mut Session<64, H>, host: u64, now: Instant) -> Instant {
    for _ in 0..3 {
        let mut req = s.begin(now, RequestSpec::new(Method::Get, HostKey(host)));
        assert!(matches!(s.authorize(now, &mut req), Authorize::Send { .. }));
        let _ = s.handle_transport_error(now, &mut req, TransportKind::Connect);
    }
    s.host_open_until(HostKey(host)).unwrap()
}

/// Breaker events come out token endpoint first, then host by host, each in order, and
/// every opening is counted.
#[test]
fn breaker_events_are_drained_in_order() {
    let mut s: Session<64, 2> = with_token_for_hosts();
    let first = trip(&mut s, 1, Instant::from_secs(1));
    let second = trip(&mut s, 2, Instant::from_secs(2));
    s.token_breaker.on_failure(Instant::from_secs(3), &mut Rng::new(1));
    s.token_breaker.on_failure(Instant::from_secs(3), &mut Rng::new(1));
    s.token_breaker.on_failure(Instant::from_secs(3), &mut Rng::new(1));
    let token_until = s.token_breaker.next_change().unwrap();
    let later = first.max(second).max(token_until);
    while s.poll_event().is_some() {}
    s.handle_timeout(later); // all three half-open at once
    let events: Vec<Event, 8> = core::iter::from_fn(|| s.poll_event()).collect();
    let half_opened =
        |target, at| Event::Breaker { target, event: BreakerEvent::HalfOpened { at } };
    assert_eq!(
        events.as_slice(),
        [
            half_opened(BreakerTarget::TokenEndpoint, token_until),
            half_opened(BreakerTarget::Host(HostKey(1)), first),
            half_opened(BreakerTarget::Host(HostKey(2)), second),
        ]
    );
    assert_eq!(s.counters().breaker_trips, 3);
}

/// `poll_timeout` names the earliest of the lifecycle's wake and every open breaker's end
/// of cooldown, whichever breaker it is.
#[test]
fn poll_timeout_names_the_earliest_breaker_change() {
    let mut s: Session<64, 2> = with_token_for_hosts();
    let (lifecycle_at, _) = s.lifecycle.poll_timeout().unwrap();
    assert_eq!(s.poll_timeout().map(|(at, _)| at), Some(lifecycle_at));
    let first = trip(&mut s, 1, Instant::from_secs(2));
    let second = trip(&mut s, 2, Instant::from_secs(1));
    assert!(second < first && first < lifecycle_at);
    assert_eq!(s.poll_timeout(), Some((second, Reason::BreakerHalfOpen)));
    s.handle_timeout(second);
    assert_eq!(s.poll_timeout(), Some((first, Reason::BreakerHalfOpen)));
    s.handle_timeout(first);
    assert_eq!(s.poll_timeout().map(|(at, _)| at), Some(lifecycle_at));
}

/// Fleet mode: the fleet admitted an attempt of a Background request that the local pacer
/// would space; once the fleet cannot be asked, the same request is paced locally at its
/// own priority again.
#[test]
fn an_externally_paced_attempt_skips_only_the_local_pacing() {
    let config = SessionConfig {
        pacer: crate::ratelimit::pacer::PacerConfig {
            burst: 1,
            burst_permille: 0,
            ..Default::default()
        },
        ..SessionConfig::default()
    };
    let creds = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
    let mut s: Session<64, 1> = Session::new(creds, endpoint, config, 1).unwrap();
    let mut buf = [0u8; 512];
    let (ticket, _) = s.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
    let body = br#"{"access_token":"T","token_type":"Bearer","expires_in":3600}"#;
    s.handle_token_response(Instant::ZERO, ticket, 200, &[("a", "b")], body);
    let host = HostKey::from_host("api.mypurecloud.com");
    let spec =
        RequestSpec { priority: Priority::Background, ..RequestSpec::new(Method::Get, host) };
    let t0 = Instant::from_secs(1);
    let window = [
        ("inin-ratelimit-count", "50"),
        ("inin-ratelimit-allowed", "100"),
        ("inin-ratelimit-reset", "60"),
    ];
    let mut first = s.begin(t0, spec);
    assert!(matches!(s.authorize(t0, &mut first), Authorize::Send { .. }));
    assert_eq!(s.handle_response(t0, &mut first, 200, &window, b""), Verdict::Done);
    let mut spaced = s.begin(t0, spec);
    assert!(matches!(s.authorize(t0, &mut spaced), Authorize::Send { .. }));
    // The local schedule now spaces Background requests...
    let mut req = s.begin(t0, spec);
    let Authorize::Wait { until: Some(next), reason: WaitReason::Paced(PaceReason::Spacing) } =
        s.authorize(t0, &mut req)
    else {
        panic!("spaced locally")
    };
    // ...but an attempt the fleet admitted goes now, and keeps its priority.
    req.set_externally_paced(true);
    assert!(req.externally_paced());
    assert!(matches!(s.authorize(t0, &mut req), Authorize::Send { .. }));
    assert!(!req.externally_paced(), "one admission, one attempt");
    assert_eq!(req.spec().priority, Priority::Background);
    assert_eq!(s.handle_response(t0, &mut req, 200, &window, b""), Verdict::Done);
    // The next attempt without an admission (the fleet unreachable) is paced at Background
    // again, on the schedule the admitted send did not move.
    let mut later = s.begin(t0, spec);
    assert!(matches!(
        s.authorize(t0, &mut later),
        Authorize::Wait { until: Some(t), reason: WaitReason::Paced(PaceReason::Spacing) } if t == next
    ));
    // A 429's wait holds an admitted attempt too.
    let t1 = next;
    assert!(matches!(s.authorize(t1, &mut later), Authorize::Send { .. }));
    let mut limited = [("Retry-After", "5"); 4];
    limited[..3].copy_from_slice(&window);
    let _ = s.handle_response(t1, &mut later, 429, &limited, b"");
    let mut admitted = s.begin(t1, spec);
    admitted.set_externally_paced(true);
    let resume = t1 + Duration::from_secs(5);
    assert!(matches!(
        s.authorize(resume - Duration::from_millis(1), &mut admitted),
        Authorize::Wait { until: Some(t), reason: WaitReason::Paced(PaceReason::Backoff429) } if t == resume
    ));
    assert!(admitted.externally_paced(), "a wait keeps the admission");
    assert!(matches!(s.authorize(resume, &mut admitted), Authorize::Send { .. }));
}

/// Fleet mode: the fleet cannot admit an attempt for hours (a daily quota's 429 seen by
/// another process). The hold is the session's own pacing answer: a short one is waited
/// for, a long one sends the session's one probe per `max_wait` and then fails fast naming
/// the wait; it never shortens the session's own wait, and is cleared by the send.
#[test]
fn an_external_hold_paces_like_the_sessions_own() {
    let mut s = with_token();
    let host = HostKey::from_host("api.mypurecloud.com");
    let spec = RequestSpec::new(Method::Get, host);
    let t0 = Instant::from_secs(1);
    let max = SessionConfig::default().retry.max_wait;
    // Short: a wait, with the hold as its end.
    let mut short = s.begin(t0, spec);
    let at = t0 + Duration::from_secs(2);
    short.set_external_hold(at);
    assert!(matches!(
        s.authorize(t0, &mut short),
        Authorize::Wait { until: Some(t), reason: WaitReason::Paced(PaceReason::Exhausted) } if t == at
    ));
    assert!(matches!(s.authorize(at, &mut short), Authorize::Send { .. }));
    assert_eq!(s.handle_response(at, &mut short, 200, &[("a", "b")], b""), Verdict::Done);
    // Long: the first is the probe, the next fails fast naming the wait.
    let hours = Duration::from_secs(3 * 3600);
    let mut probe = s.begin(at, spec);
    probe.set_external_hold(at + hours);
    assert!(matches!(s.authorize(at, &mut probe), Authorize::Send { .. }), "the probe");
    assert_eq!(s.handle_response(at, &mut probe, 200, &[("a", "b")], b""), Verdict::Done);
    let mut held = s.begin(at, spec);
    held.set_external_hold(at + hours);
    let Authorize::Fail(error) = s.authorize(at, &mut held) else { panic!("fails fast") };
    assert_eq!(
        error.kind,
        ApiErrorKind::GaveUp {
            reason: GiveUpReason::WaitTooLong { wait: hours, max },
            last: RetryReason::RateLimited
        }
    );
    // Without the hold, the same request goes.
    let mut free = s.begin(at, spec);
    assert!(matches!(s.authorize(at, &mut free), Authorize::Send { .. }));
    let _ = s.handle_response(at, &mut free, 429, &[("Retry-After", "30")], b"");
    // A hold shorter than the session's own 429 wait does not shorten it.
    let mut again = s.begin(at, spec);
    again.set_external_hold(at + Duration::from_secs(1));
    assert!(matches!(
        s.authorize(at, &mut again),
        Authorize::Wait { until: Some(t), reason: WaitReason::Paced(PaceReason::Backoff429) }
            if t == at + Duration::from_secs(30)
    ));
}

/// Found by `fuzz/fuzz_targets/session.rs`: one 429 with an absurd `Retry-After` (a number
/// that saturates to "forever") paced every later request, critical ones included, until
/// `Instant::MAX`: the session never sent again. The pacer now holds requests back for at
/// most the longest wait the retry policy honours (`max_wait`); the request that got the 429
/// still fails fast with `WaitTooLong`, and so does the next probe while the limit lasts.
#[test]
fn an_absurd_retry_after_does_not_silence_the_session() {
    let max_wait = SessionConfig::default().retry.max_wait;
    for retry_after in ["99999999999999999999", "30000"] {
        let mut s = with_token();
        let host = HostKey::from_host("api.mypurecloud.com");
        let t0 = Instant::from_secs(1);
        let mut req = s.begin(t0, RequestSpec::new(Method::Get, host));
        assert!(matches!(s.authorize(t0, &mut req), Authorize::Send { .. }));
        let verdict = s.handle_response(t0, &mut req, 429, &[("Retry-After", retry_after)], b"");
        assert!(
            matches!(
                &verdict,
                Verdict::Fail(ApiError {
                    kind: ApiErrorKind::GaveUp { reason: GiveUpReason::WaitTooLong { .. }, .. },
                    ..
                })
            ),
            "{verdict:?}"
        );
        let mut next = s.begin(
            t0,
            RequestSpec { priority: Priority::Critical, ..RequestSpec::new(Method::Get, host) },
        );
        // Later requests fail fast, naming the wait, instead of waiting for hours...
        let resume = t0 + max_wait;
        let fails_fast = |a: Authorize<'_, 64>| {
            matches!(
                a,
                Authorize::Fail(ApiError {
                    kind: ApiErrorKind::GaveUp { reason: GiveUpReason::WaitTooLong { .. }, .. },
                    ..
                })
            )
        };
        assert!(fails_fast(s.authorize(t0, &mut next)), "Retry-After {retry_after}");
        let before = resume.checked_sub(Duration::from_millis(1)).unwrap();
        let mut again = s.begin(before, RequestSpec::new(Method::Get, host));
        assert!(fails_fast(s.authorize(before, &mut again)));
        // ...but one probe per max_wait goes out, so the session learns when it is lifted.
        let mut probe = s.begin(resume, RequestSpec::new(Method::Get, host));
        assert!(matches!(s.authorize(resume, &mut probe), Authorize::Send { .. }));
        let mut after = s.begin(resume, RequestSpec::new(Method::Get, host));
        assert!(fails_fast(s.authorize(resume, &mut after)), "one probe at a time");
        assert_eq!(s.handle_response(resume, &mut probe, 200, &[("a", "b")], b""), Verdict::Done);
        let rate_limited = core::iter::from_fn(|| s.poll_event()).find_map(|e| match e {
            Event::RateLimited { until, .. } => Some(until),
            _ => None,
        });
        assert!(
            rate_limited.is_some_and(|until| until > resume),
            "the server's own wait is reported"
        );
        // The probe was answered without a 429: the server's hold is over, and so is the
        // session's (it used to stay, one request a `max_wait` getting through, for as long as
        // the absurd wait said).
        let mut lifted = s.begin(resume, RequestSpec::new(Method::Get, host));
        assert!(
            matches!(s.authorize(resume, &mut lifted), Authorize::Send { .. }),
            "the probe's answer lifted the hold (Retry-After {retry_after})"
        );
    }
}

/// The probe of a long hold that failed in transport found nothing out: when the hold has run
/// out and the request is retried (no probe then), and another request's 429 sets a new hold
/// while that retry is in flight, the retry's answer must not lift the new hold.
#[test]
fn a_probe_lost_in_transport_does_not_lift_a_later_hold() {
    let max_wait = SessionConfig::default().retry.max_wait;
    let mut s = with_token();
    let host = HostKey::from_host("api.mypurecloud.com");
    let get = RequestSpec::new(Method::Get, host);
    let t0 = Instant::from_secs(1);
    let long = crate::http::Decimal::new(max_wait.as_secs() * 3);
    let long = [("Retry-After", long.as_str())];
    let mut first = s.begin(t0, get);
    assert!(matches!(s.authorize(t0, &mut first), Authorize::Send { .. }));
    assert!(matches!(s.handle_response(t0, &mut first, 429, &long, b""), Verdict::Fail(_)));
    // The probe goes out and its connection is reset: retried later.
    let resume = t0 + max_wait;
    let mut probe = s.begin(resume, get);
    assert!(matches!(s.authorize(resume, &mut probe), Authorize::Send { .. }));
    let verdict = s.handle_transport_error(resume, &mut probe, TransportKind::Reset);
    assert!(matches!(verdict, Verdict::Retry { .. }), "{verdict:?}");
    // The hold has run out: the retry goes as any request does, and so does another one,
    // which gets a new long 429.
    let later = t0 + max_wait + max_wait + max_wait + max_wait;
    assert!(matches!(s.authorize(later, &mut probe), Authorize::Send { .. }));
    let mut other = s.begin(later, get);
    assert!(matches!(s.authorize(later, &mut other), Authorize::Send { .. }));
    assert!(matches!(s.handle_response(later, &mut other, 429, &long, b""), Verdict::Fail(_)));
    assert_eq!(s.handle_response(later, &mut probe, 200, &[("a", "b")], b""), Verdict::Done);
    // The new hold stands: a request fails fast rather than being sent into it.
    let mut next = s.begin(later, get);
    assert!(
        matches!(
            s.authorize(later, &mut next),
            Authorize::Fail(ApiError { kind: ApiErrorKind::GaveUp { .. }, .. })
        ),
        "the retry's answer lifted the new hold"
    );
}

/// `has_events` sees an event in each queue `poll_event` takes from (the session's own, the
/// lifecycle's, the token endpoint's breaker, each host's breaker), and none once taken.
#[test]
fn has_events_sees_every_queue_poll_event_takes_from() {
    let mut s = with_token();
    while s.poll_event().is_some() {}
    assert!(!s.has_events());

    let generation = s.lifecycle.token(Instant::ZERO).map(|(_, t)| t).unwrap();
    assert!(s.lifecycle.invalidate(Instant::ZERO, generation));
    assert!(s.has_events(), "the lifecycle's queue");
    while s.poll_event().is_some() {}
    assert!(!s.has_events());

    let mut rng = crate::rng::Rng::new(1);
    for _ in 0..64 {
        s.token_breaker.on_failure(Instant::ZERO, &mut rng);
    }
    assert!(s.has_events(), "the token endpoint's breaker");
    while s.poll_event().is_some() {}
    assert!(!s.has_events());

    let config = s.config.api_breaker;
    let breaker = s.host_breaker(Instant::ZERO, HostKey::from_host("api.example"), config);
    for _ in 0..64 {
        breaker.on_failure(Instant::ZERO, &mut rng);
    }
    assert!(s.has_events(), "a host's breaker");
    while s.poll_event().is_some() {}
    assert!(!s.has_events());

    s.push(Event::Breaker {
        target: BreakerTarget::TokenEndpoint,
        event: BreakerEvent::Closed { at: Instant::ZERO },
    });
    assert!(s.has_events(), "the session's queue");
}
