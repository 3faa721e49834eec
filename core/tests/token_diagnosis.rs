//! What callers are told when no token comes: the last token failure named (status, what was
//! wrong, correlation id, the wait the server asked for), decided against the caller's deadline;
//! and the client's credentials masked wherever the server's text echoes them.

use credflow_core::Instant;
use credflow_core::http::Method;
use credflow_core::lifecycle::Ticket;
use credflow_core::oauth::{AuthMethod, ResponseError};
use credflow_core::retry::policy::TransportKind;
use credflow_core::secret::{Credentials, TokenError};
use credflow_core::session::{
    ApiError, ApiErrorKind, Authorize, HostKey, RequestSpec, Session, SessionConfig, TokenEndpoint,
    TokenFailureReport, TokenProblem, TokenStatus, Verdict,
};
use credflow_core::{Duration, UnixTime, WallClock};

const TOKEN_URL: &str = "https://login.example/oauth/token";
const ID: &str = "client-1";
const SECRET: &str = "s3cr3t-Value-0123456789";

fn secs(v: u64) -> Instant {
    Instant::from_secs(v)
}

fn session(auth: AuthMethod) -> Session<256, 2> {
    let creds = Credentials::from_strs(ID, SECRET).unwrap();
    let endpoint = TokenEndpoint::new(TOKEN_URL).unwrap().with_auth(auth);
    let mut s = Session::new(creds, endpoint, SessionConfig::default(), 3).unwrap();
    s.set_wall_clock(WallClock::new(Instant::ZERO, UnixTime::from_secs(1_700_000_000)));
    s
}

/// Sends the due token request at `now`; returns its ticket and the request's credentials:
/// the `Authorization` value (Basic) or the `client_assertion` (JWT).
fn send_token_request(s: &mut Session<256, 2>, now: Instant) -> (Ticket, String) {
    let mut buf = [0u8; 2048];
    let (ticket, request) = s.poll_token_request(now, &mut buf).unwrap().expect("due");
    let credential = match request.authorization {
        Some(basic) => basic.trim_start_matches("Basic ").to_owned(),
        None => request
            .body
            .split('&')
            .find_map(|pair| pair.strip_prefix("client_assertion="))
            .unwrap_or_default()
            .to_owned(),
    };
    (ticket, credential)
}

fn waiting_error(status: TokenStatus<'_, 256>) -> ApiError {
    match status {
        TokenStatus::Unavailable(error) => error,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// The token failure a waiting caller's error names: the session's report, read on request.
fn named_report<'a>(error: &ApiError, s: &'a Session<256, 2>) -> &'a TokenFailureReport {
    assert!(matches!(error.kind, ApiErrorKind::TokenUnavailable { .. }), "{error:?}");
    s.error_detail(*error).token_failure().expect("a token failure")
}

/// What a caller can show of `error`: its text, and without the `diagnosis` feature (whose
/// errors carry no copy of the token failure) the session's report of that failure.
fn explained(error: &ApiError, s: &Session<256, 2>) -> String {
    s.error_detail(*error).to_string()
}

/// Each unusable success answer is recorded with its status, what was wrong and the
/// correlation id. Retrying does not fix such an answer: a waiting caller is told at once,
/// whatever its deadline, while token requests go on in the background.
#[test]
fn an_unusable_token_response_is_named_at_once() {
    type IsExpected = fn(&ResponseError) -> bool;
    let cases: [(&str, &str, IsExpected); 4] = [
        ("text/html; charset=utf-8", "<html>captive portal</html>", |e| {
            *e == ResponseError::NotJson
        }),
        ("application/json", r#"{"access_token":"#, |e| *e == ResponseError::Malformed),
        ("application/json", r#"{"token_type":"Bearer"}"#, |e| {
            *e == ResponseError::MissingAccessToken
        }),
        ("application/json", r#"{"access_token":"a\r\nb","token_type":"Bearer"}"#, |e| {
            matches!(e, ResponseError::InvalidAccessToken(TokenError::InvalidCharacter { .. }))
        }),
    ];
    for (content_type, body, is_expected) in cases {
        let mut s = session(AuthMethod::ClientSecretBasic);
        let (ticket, _) = send_token_request(&mut s, secs(0));
        let headers = [("Content-Type", content_type), ("ININ-Correlation-Id", "corr-1")];
        s.handle_token_response(secs(0), ticket, 200, &headers[..], body.as_bytes());
        let report = s.last_token_failure().expect("recorded").clone();
        match &report.problem {
            TokenProblem::Unusable { status: 200, error, content_type: media } => {
                assert!(is_expected(error), "{body}: {error:?}");
                // The media type is the `diagnosis` feature's detail.
                let expected =
                    content_type.split(';').next().filter(|_| cfg!(feature = "diagnosis"));
                assert_eq!(media.as_deref(), expected);
            }
            other => panic!("{body}: {other:?}"),
        }
        assert!(!report.is_retryable(), "a configuration to fix, not an outage");
        for deadline in [None, Some(secs(3600))] {
            let error = waiting_error(s.check_token_before(secs(0), deadline));
            let id = s.error_detail(error).correlation_id().map(|c| c.as_str());
            assert_eq!((error.status, id), (Some(200), Some("corr-1")));
            assert!(matches!(
                &error.kind,
                ApiErrorKind::TokenUnavailable { retry_at: Some(_), .. }
            ));
            assert_eq!(*named_report(&error, &s), report);
        }
        // The next token request still goes out when due; while it is in flight, callers wait
        // for its answer, and a token clears the failure.
        let next = s.poll_timeout().unwrap().0;
        let (ticket, _) = send_token_request(&mut s, next);
        assert!(matches!(s.check_token(next), TokenStatus::Pending { until: None }));
        let good = br#"{"access_token":"abc","token_type":"Bearer","expires_in":3600}"#;
        s.handle_token_response(next, ticket, 200, &[("a", "b")], good);
        assert!(matches!(s.check_token(next), TokenStatus::Ready(..)));
        assert!(s.last_token_failure().is_none());
        let text = {
            let mut s = session(AuthMethod::ClientSecretBasic);
            let (ticket, _) = send_token_request(&mut s, secs(0));
            s.handle_token_response(secs(0), ticket, 200, &headers[..], body.as_bytes());
            explained(&waiting_error(s.check_token(secs(0))), &s)
        };
        assert!(text.contains("HTTP 200") && text.contains("corr-1"), "{text}");
        if content_type.starts_with("text/html") {
            assert!(text.contains("not a JSON object"), "{text}");
            assert_eq!(text.contains("text/html"), cfg!(feature = "diagnosis"), "{text}");
        }
    }
}

/// A waiting caller's error is small: it has the failure's status, and the session keeps the
/// report (its correlation id, the server's error), read on request with `error_detail`, with
/// or without the `diagnosis` feature.
#[test]
fn the_error_is_small_and_the_session_keeps_the_failure() {
    // An answer that is not a token.
    let mut s = session(AuthMethod::ClientSecretBasic);
    let (ticket, _) = send_token_request(&mut s, secs(0));
    let headers = [("Content-Type", "text/html"), ("ININ-Correlation-Id", "corr-1")];
    s.handle_token_response(secs(0), ticket, 200, &headers[..], b"<html>portal</html>");
    let error = waiting_error(s.check_token(secs(0)));
    assert!(matches!(error.kind, ApiErrorKind::TokenUnavailable { .. }), "{error:?}");
    let detail = s.error_detail(error);
    assert_eq!(detail.token_failure(), s.last_token_failure());
    assert!(s.last_token_failure().is_some());
    let id = detail.correlation_id().map(|c| c.as_str());
    assert_eq!((error.status, id), (Some(200), Some("corr-1")));
    let text = error.to_string();
    assert!(text.starts_with("no token available: the token endpoint answered HTTP 200"), "{text}");
    assert!(error.likely_cause().contains("last token failure"), "{}", error.likely_cause());
    assert_eq!(detail.likely_cause(), s.last_token_failure().unwrap().likely_cause());
    // Rejected credentials.
    let mut s = session(AuthMethod::ClientSecretBasic);
    let (ticket, _) = send_token_request(&mut s, secs(0));
    let body = br#"{"error":"invalid_client","error_description":"authentication failed"}"#;
    s.handle_token_response(secs(0), ticket, 401, &[("ININ-Correlation-Id", "corr-2")], body);
    let error = waiting_error(s.check_token(secs(0)));
    assert!(matches!(error.kind, ApiErrorKind::CredentialsRejected { .. }), "{error:?}");
    let (kept, id) = s.last_token_error().expect("kept in the session");
    assert_eq!(kept.description.as_str(), "authentication failed");
    let detail = s.error_detail(error);
    assert_eq!(detail.oauth(), Some(kept));
    assert_eq!(detail.code(), Some("invalid_client"));
    assert_eq!((error.status, detail.correlation_id()), (Some(401), id));
    assert!(detail.to_string().contains("authentication failed"), "{detail}");
}

/// `at`, the recheck a rejection plans (`recheck_after`, 5 min by default); none without the
/// feature `recheck`, where token requests stay stopped until the credentials change.
fn recheck_at(at: Instant) -> Option<Instant> {
    cfg!(feature = "recheck").then_some(at)
}

/// A `token_type` the client cannot use stops token requests: waiting callers are told at once
/// what was wrong, not "credentials rejected", and when one request checks again (5 min).
#[test]
fn a_token_type_other_than_bearer_is_named_at_once() {
    let mut s = session(AuthMethod::ClientSecretBasic);
    let (ticket, _) = send_token_request(&mut s, secs(0));
    let body = br#"{"access_token":"abc","token_type":"mac"}"#;
    s.handle_token_response(secs(0), ticket, 200, &[("x-request-id", "req-9")], body);
    let error = waiting_error(s.check_token(secs(0)));
    let recheck = recheck_at(secs(300));
    assert!(
        matches!(error.kind, ApiErrorKind::TokenUnavailable { retry_at, .. } if retry_at == recheck)
    );
    assert_eq!(s.error_detail(error).next_probe_at(), recheck);
    let report = named_report(&error, &s);
    assert!(matches!(report.problem, TokenProblem::Unusable { .. }));
    let text = explained(&error, &s);
    assert!(
        text.contains("\"mac\"") && text.contains("HTTP 200") && text.contains("req-9"),
        "{text}"
    );
    assert!(report.likely_cause().contains("bearer"), "{}", report.likely_cause());
    assert_eq!(s.error_detail(error).likely_cause(), report.likely_cause());
}

/// 429 and 503 with a `Retry-After` longer than the caller waits fail the wait at once, naming
/// the server's wait as it asked it (the lifecycle caps its own wait at ten minutes).
#[test]
fn a_retry_after_beyond_the_deadline_fails_the_wait_at_once() {
    for status in [429u16, 503] {
        let mut s = session(AuthMethod::ClientSecretBasic);
        let (ticket, _) = send_token_request(&mut s, secs(0));
        let headers = [("Retry-After", "3600"), ("ININ-Correlation-Id", "corr-ra")];
        s.handle_token_response(secs(1), ticket, status, &headers[..], b"");
        // Within ten minutes' wait, the caller would wait for the next attempt...
        assert!(matches!(
            s.check_token_before(secs(1), Some(secs(1000))),
            TokenStatus::Pending { until: Some(_) }
        ));
        // ...with 20 s, it is told now.
        let error = waiting_error(s.check_token_before(secs(1), Some(secs(21))));
        match &error.kind {
            ApiErrorKind::TokenUnavailable { retry_at: Some(at), .. } => assert!(*at > secs(21)),
            other => panic!("{other:?}"),
        }
        let report = named_report(&error, &s);
        assert_eq!(report.retry_after, Some(Duration::from_secs(3600)));
        assert!(report.is_retryable());
        assert_eq!(error.status, Some(status));
        let text = explained(&error, &s);
        assert!(text.contains("3600 s") && text.contains("corr-ra"), "{text}");
    }
}

/// `Retry-After: 0` on a failed token request asks for no wait: the likely cause is the
/// failure's own (a server error), not "the token endpoint asked to wait", which it was said
/// to be whatever the value.
#[test]
fn a_retry_after_of_zero_is_not_named_as_a_long_wait() {
    let mut s = session(AuthMethod::ClientSecretBasic);
    let (ticket, _) = send_token_request(&mut s, secs(0));
    s.handle_token_response(secs(1), ticket, 503, &[("Retry-After", "0")][..], b"");
    let error = waiting_error(s.check_token_before(secs(1), Some(secs(1))));
    let report = named_report(&error, &s);
    assert_eq!(report.retry_after, Some(Duration::ZERO));
    assert!(!report.likely_cause().contains("asked to wait"), "{}", report.likely_cause());
    let next = s.lifecycle().next_request_at().unwrap();
    let (ticket, _) = send_token_request(&mut s, next);
    s.handle_token_response(secs(9), ticket, 503, &[("Retry-After", "30")][..], b"");
    let report = s.last_token_failure().unwrap();
    assert!(report.likely_cause().contains("asked to wait"), "{}", report.likely_cause());
}

/// A request in flight when the deadline passes: the caller is told, with the last failure
/// of an earlier attempt if there was one.
#[test]
fn a_deadline_passing_during_a_request_ends_the_wait() {
    let mut s = session(AuthMethod::ClientSecretBasic);
    let (ticket, _) = send_token_request(&mut s, secs(0));
    s.handle_token_error(secs(0), ticket, Some(TransportKind::Connect));
    let at = s.poll_timeout().unwrap().0;
    s.handle_timeout(at);
    let _ = send_token_request(&mut s, at);
    assert!(matches!(
        s.check_token_before(at, Some(secs(5))),
        TokenStatus::Pending { until: None }
    ));
    let error = waiting_error(s.check_token_before(secs(6), Some(secs(5))));
    let text = explained(&error, &s);
    assert!(text.contains("could not connect"), "{text}");
}

/// An API request whose deadline passed while it waited for a token says why the token did not
/// come, not just "deadline exceeded".
#[test]
fn an_api_deadline_names_the_token_failure() {
    let mut s = session(AuthMethod::ClientSecretBasic);
    let spec = RequestSpec {
        deadline: Some(secs(2)),
        ..RequestSpec::new(Method::Get, HostKey::from_host("api.example"))
    };
    let mut req = s.begin(secs(0), spec);
    assert!(matches!(s.authorize(secs(0), &mut req), Authorize::Wait { .. }));
    let (ticket, _) = send_token_request(&mut s, secs(0));
    s.handle_token_response(secs(0), ticket, 502, &[("ININ-Correlation-Id", "corr-502")], b"");
    // A gateway error may pass: the request waits for the next attempt...
    assert!(matches!(s.authorize(secs(0), &mut req), Authorize::Wait { .. }));
    // ...and once its deadline passed, says what the last one got.
    match s.authorize(secs(3), &mut req) {
        Authorize::Fail(error) => {
            assert!(matches!(error.kind, ApiErrorKind::TokenUnavailable { .. }), "{error:?}");
            assert_eq!(error.status, Some(502));
            let detail = s.error_detail(error);
            assert!(detail.to_string().contains("HTTP 502 [correlation id corr-502]"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

/// Everything the session keeps of a token endpoint's error masks the secret, the Basic value
/// and the assertion the server echoes: description, code, URI, correlation id.
#[test]
fn token_endpoint_echoes_of_the_credentials_are_masked() {
    let methods: &[AuthMethod] = if cfg!(feature = "jwt") {
        &[AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretJwt]
    } else {
        &[AuthMethod::ClientSecretBasic]
    };
    for &auth in methods {
        let mut s = session(auth);
        let (ticket, credential) = send_token_request(&mut s, secs(0));
        assert!(credential.len() > 20, "{credential}");
        // The assertion is longer than the 256 bytes of a description: echo it in the URI
        // field's place too (also cut), and whole where nothing is cut: in a header printed
        // by the adapter (see `secrets`).
        let body = format!(
            r#"{{"error":"invalid_client","error_description":"bad {SECRET} / {credential}","error_uri":"{credential}"}}"#
        );
        let headers = [("ININ-Correlation-Id", SECRET)];
        s.handle_token_response(secs(0), ticket, 401, &headers[..], body.as_bytes());
        let error = waiting_error(s.check_token(secs(0)));
        let detail = s.error_detail(error);
        let shown = format!("{error} {detail} {detail:?} {:?}", s.last_token_failure());
        let prefix = &credential[..credential.len().min(64)];
        for value in [SECRET, credential.as_str(), prefix] {
            assert!(!shown.contains(value), "{auth:?} leaks {value}: {shown}");
        }
        assert!(shown.contains("[redacted]"), "{shown}");
        let header = format!("WWW-Authenticate: Basic error_description=\"{credential}\"");
        let printed = s.secrets(secs(0)).redacted(&header).to_string();
        assert!(!printed.contains(&credential[..]) && printed.contains("[redacted]"), "{printed}");
    }
}

/// An API response that echoes the token (in its correlation id, a 403's message and
/// challenge) is masked before the 401 drops the token.
#[test]
fn api_echoes_of_the_token_are_masked() {
    let token = "tok-XYZ-0123456789";
    let mut s = session(AuthMethod::ClientSecretBasic);
    let (ticket, _) = send_token_request(&mut s, secs(0));
    let body = format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600}}"#);
    s.handle_token_response(secs(0), ticket, 200, &[("a", "b")], body.as_bytes());
    let host = HostKey::from_host("api.example");
    // 403 with the token in the Genesys message and the challenge.
    let mut req = s.begin(secs(1), RequestSpec::new(Method::Get, host));
    assert!(matches!(s.authorize(secs(1), &mut req), Authorize::Send { .. }));
    let challenge = format!(r#"Bearer error="insufficient_scope", scope="{token}""#);
    let headers = [("WWW-Authenticate", challenge.as_str()), ("ININ-Correlation-Id", token)];
    let body =
        format!(r#"{{"message":"token {token} lacks it","code":"not.allowed","status":403}}"#);
    match s.handle_response(secs(1), &mut req, 403, &headers[..], body.as_bytes()) {
        Verdict::Fail(error) => {
            let detail = s.error_detail(error);
            let shown = format!("{error} {detail} {detail:?}");
            assert!(!shown.contains(token) && shown.contains("[redacted]"), "{shown}");
        }
        other => panic!("{other:?}"),
    }
    // 401 with the token as the correlation id: masked although the 401 drops the token.
    let mut req = s.begin(secs(2), RequestSpec::new(Method::Get, host));
    assert!(matches!(s.authorize(secs(2), &mut req), Authorize::Send { .. }));
    let headers = [("ININ-Correlation-Id", token)];
    let verdict = s.handle_response(secs(2), &mut req, 401, &headers[..], b"");
    assert!(matches!(verdict, Verdict::Retry { .. }), "{verdict:?}");
    let events = format!("{:?}", core::iter::from_fn(|| s.poll_event()).collect::<Vec<_>>());
    assert!(!events.contains(token), "{events}");
}

/// An answer that arrives after the token it was sent with stopped being handed out (its
/// usable-until point, seconds before it expires) still echoes that token: masked with the
/// token the session holds, usable or not.
#[test]
fn an_answer_in_a_tokens_last_seconds_is_masked_with_it() {
    let token = "TOKEN-ONE-aaaa-0123456789";
    let mut s = session(AuthMethod::ClientSecretBasic);
    let (ticket, _) = send_token_request(&mut s, secs(0));
    let body = format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600}}"#);
    s.handle_token_response(secs(0), ticket, 200, &[("a", "b")], body.as_bytes());
    let times = s.token(secs(0)).map(|(_, times)| times).expect("a token");
    assert!(times.usable_until < times.expires_at, "{times:?}");
    let sent = times.usable_until.saturating_sub(Duration::from_secs(1));
    let answered = times.usable_until.saturating_add(Duration::from_millis(500));
    assert!(answered < times.expires_at);
    let host = HostKey::from_host("api.example");
    // A 403 and a 503 (no retry: past the request's deadline) echo it in their message and
    // correlation id.
    for status in [403, 503] {
        let mut spec = RequestSpec::new(Method::Get, host);
        spec.deadline = Some(answered);
        let mut req = s.begin(sent, spec);
        assert!(matches!(s.authorize(sent, &mut req), Authorize::Send { .. }));
        assert!(s.token(answered).is_none(), "no longer handed out");
        let headers = [("ININ-Correlation-Id", token)];
        let body = format!(
            r#"{{"message":"token {token} lacks it","code":"not.allowed","status":{status}}}"#
        );
        match s.handle_response(answered, &mut req, status, &headers[..], body.as_bytes()) {
            Verdict::Fail(error) => {
                let detail = s.error_detail(error);
                let shown = format!("{error} {detail} {detail:?}");
                assert!(!shown.contains(token) && shown.contains("[redacted]"), "{shown}");
            }
            other => panic!("{status}: {other:?}"),
        }
        let printed = s.secrets(answered).redacted(&body).to_string();
        assert!(!printed.contains(token), "{printed}");
    }
}
