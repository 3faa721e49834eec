//! Timeline tests for what a token endpoint's transport can throw at the session: redirects,
//! which token requests never follow, and answers larger than the adapter reads.

use credflow_core::Instant;
use credflow_core::lifecycle::{LifecycleState, RejectReason, Ticket};
use credflow_core::oauth::TokenErrorClass;
use credflow_core::secret::Credentials;
use credflow_core::session::{
    ApiError, ApiErrorKind, Authorize, Event, HostKey, RequestSpec, Session, SessionConfig,
    TokenEndpoint, TokenProblem,
};

const TOKEN_URL: &str = "https://login.example/oauth/token";

/// Where a redirect pointed is told with the `diagnosis` feature; without it, only that it was
/// not followed.
fn says_redirected_to(text: &str, to: &str) -> bool {
    if cfg!(feature = "diagnosis") {
        text.contains(&format!("redirected to {to}; not followed"))
    } else {
        text.contains("redirected; not followed")
    }
}

/// What a caller can show of `e`: its text, and without the `diagnosis` feature (whose errors
/// carry no copy of the token failure) the session's report of that failure.
fn explained(e: &ApiError, s: &Session<256, 4>) -> String {
    s.error_detail(*e).to_string()
}

fn secs(v: u64) -> Instant {
    Instant::from_secs(v)
}

fn session() -> Session<256, 4> {
    let creds = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new(TOKEN_URL).unwrap();
    Session::new(creds, endpoint, SessionConfig::default(), 7).unwrap()
}

fn poll(s: &mut Session<256, 4>, now: Instant) -> Option<Ticket> {
    let mut buf = [0u8; 1024];
    s.poll_token_request(now, &mut buf).unwrap().map(|(ticket, _)| ticket)
}

/// What a request begun at `now` gets, when it fails.
fn failure(s: &mut Session<256, 4>, now: Instant) -> Option<ApiError> {
    let spec = RequestSpec::new(credflow_core::http::Method::Get, HostKey::from_host("api"));
    let mut req = s.begin(now, spec);
    match s.authorize(now, &mut req) {
        Authorize::Fail(e) => Some(e),
        _ => None,
    }
}

/// A token endpoint answering `status` with `headers`: the session's failure, once.
fn redirected(status: u16, headers: &[(&str, &str)]) -> (Session<256, 4>, ApiError) {
    let mut s = session();
    let ticket = poll(&mut s, secs(0)).unwrap();
    s.handle_token_response(secs(0), ticket, status, headers, b"<a href=\"x\">moved</a>");
    let e = failure(&mut s, secs(1)).expect("a redirect fails requests at once");
    (s, e)
}

/// `at`, the recheck a rejection plans (`recheck_after`, 5 min by default); none without the
/// feature `recheck`, where token requests stay stopped until the credentials change.
fn recheck_at(at: Instant) -> Option<Instant> {
    cfg!(feature = "recheck").then_some(at)
}

#[test]
fn a_redirect_stops_token_requests_and_names_the_origin_only() {
    for status in [301, 302, 303, 307, 308] {
        let location = "http://user:pw@127.0.0.1:4567/oauth/token?steal=1";
        let (mut s, e) = redirected(status, &[("Location", location), ("X-Request-Id", "r-1")]);
        let ApiErrorKind::CredentialsRejected { reason } = e.kind else {
            panic!("{e:?}");
        };
        let detail = s.error_detail(e);
        let oauth = detail.oauth().unwrap();
        assert_eq!((reason, oauth.class), (RejectReason::Redirected, TokenErrorClass::Redirected));
        assert_eq!(e.status, Some(status));
        assert_eq!(detail.correlation_id().map(|c| c.as_str()), Some("r-1"));
        let text = explained(&e, &s);
        assert!(text.starts_with("token requests stopped"), "{text}");
        assert!(text.contains(&format!("HTTP {status}")), "{text}");
        assert!(says_redirected_to(&text, "http://127.0.0.1:4567"), "{text}");
        for secret in ["steal", "/oauth/token", "user", "pw"] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
        assert!(e.likely_cause().contains("never follow redirects"));
        let events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
        assert!(
            events.contains(&Event::TokenEndpointError {
                status,
                class: TokenErrorClass::Redirected
            })
        );
        // Not hammered: no token request until the recheck 5 min later (a load balancer fixed
        // meanwhile), and no breaker trip either.
        assert_eq!(s.error_detail(e).next_probe_at(), recheck_at(secs(300)));
        for t in [1, 60, 299] {
            assert!(poll(&mut s, secs(t)).is_none(), "{status}: token request at {t} s");
        }
        assert_eq!(s.counters().breaker_trips, 0);
        // A new secret (or a fixed client) starts over.
        s.set_credentials(secs(90_000), Credentials::from_strs("client", "other").unwrap());
        assert!(poll(&mut s, secs(90_000)).is_some());
    }
}

#[test]
fn a_relative_redirect_names_the_token_urls_own_origin() {
    for location in ["/oauth/token/", "//LOGIN.example/v2/token", "https://login.example:443/t"] {
        let (s, e) = redirected(308, &[("Location", location)]);
        let text = explained(&e, &s).to_ascii_lowercase();
        assert!(says_redirected_to(&text, "https://login.example:443"), "{text}");
    }
}

#[test]
fn a_redirect_without_a_usable_location_is_refused_all_the_same() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "no Location"),
        (&[("Location", "javascript:alert(1)")], "a non-HTTP URL"),
        (&[("Location", "https://ev il/")], "an unreadable Location"),
        (&[("Location", "https://evil.example:0/")], "an unreadable Location"),
    ];
    for (headers, says) in cases {
        let (s, e) = redirected(302, headers);
        let text = explained(&e, &s);
        assert!(says_redirected_to(&text, says), "{text}");
        assert!(matches!(
            e.kind,
            ApiErrorKind::CredentialsRejected { reason: RejectReason::Redirected, .. }
        ));
    }
}

#[test]
fn a_success_larger_than_the_limit_stops_token_requests() {
    let mut s = session();
    let ticket = poll(&mut s, secs(0)).unwrap();
    s.handle_token_too_large(secs(0), ticket, 200, &[], 65_536);
    let e = failure(&mut s, secs(1)).unwrap();
    // Not a matter of credentials: the answer could not be used.
    let ApiErrorKind::TokenUnavailable { .. } = e.kind else {
        panic!("{e:?}");
    };
    let report = s.error_detail(e).token_failure().unwrap();
    let TokenProblem::Refused(oauth) = &report.problem else { panic!("{report:?}") };
    assert_eq!(oauth.class, TokenErrorClass::TooLarge);
    let text = explained(&e, &s);
    assert!(text.contains("HTTP 200: response larger than 65536 bytes"), "{text}");
    assert!(matches!(
        s.lifecycle().state(secs(1)),
        LifecycleState::Rejected { reason: RejectReason::UnusableResponse, recheck_at: at }
            if at == recheck_at(secs(300))
    ));
    assert!(poll(&mut s, secs(299)).is_none(), "not fetched again before the recheck");
}

#[test]
fn an_error_larger_than_the_limit_goes_by_its_status() {
    let mut s = session();
    let ticket = poll(&mut s, secs(0)).unwrap();
    s.handle_token_too_large(secs(0), ticket, 503, &[("Retry-After", "5")], 65_536);
    let (error, _) = s.last_token_error().unwrap();
    assert_eq!(error.class, TokenErrorClass::Transient);
    assert_eq!(error.to_string(), "HTTP 503: response larger than 65536 bytes");
    assert!(poll(&mut s, secs(4)).is_none(), "Retry-After is honoured");
    assert!(poll(&mut s, secs(5)).is_some(), "and the request is tried again");
    // A redirect too large to read is a redirect.
    let mut s = session();
    let ticket = poll(&mut s, secs(0)).unwrap();
    s.handle_token_too_large(secs(0), ticket, 307, &[("Location", "https://x.example/")], 10);
    assert_eq!(s.last_token_error().unwrap().0.class, TokenErrorClass::Redirected);
    let text = s.last_token_error().unwrap().0.to_string();
    assert!(says_redirected_to(&text, "https://x.example:443"), "{text}");
}
