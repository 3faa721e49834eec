//! Diagnosis against a misbehaving server on 127.0.0.1: a caller waiting for a token is told
//! what went wrong with the last token response (status, what was wrong, correlation id), fast
//! when the server asks for a longer wait than the caller's; and the client's own credentials,
//! echoed back by the server, never reach an error's `Display` or `Debug`.

use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Reply, UNUSABLE_TOKEN_ANSWERS};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{AuthMethod, Client, Config, ErrorKind};
use reqwest::Method;

const ID: &str = "c";
const SECRET: &str = "s3cr3t-Value-0123456789";
const TOKEN: &str = "tok-XYZ-0123456789abcdef";

fn client(server: &Hostile, auth: AuthMethod, token_wait: Duration) -> Client {
    let mut config = Config::custom(
        server.url("/oauth/token"),
        server.url("/"),
        credentials(ID, SECRET).unwrap(),
    );
    config.seed = Some(1);
    config.auth_method = auth;
    config.token_wait = token_wait;
    Client::new(config).unwrap()
}

/// `shown` holds none of `values`.
fn assert_masked(shown: &str, values: &[&str]) {
    for value in values.iter().filter(|v| !v.is_empty()) {
        assert!(!shown.contains(value), "{value:?} shown in: {shown}");
    }
}

/// Each answer that is not a usable token: the error names what was wrong, the status and the
/// correlation id, and is a configuration error (exit 2), not a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_token_response_is_named_not_timed_out() {
    // What the diagnosis of each of UNUSABLE_TOKEN_ANSWERS names.
    let names =
        ["malformed", "text/html", "no access_token", r#""mac""#, "not allowed in an HTTP header"];
    let cases = UNUSABLE_TOKEN_ANSWERS.into_iter().zip(names).map(|((c, b), n)| (c, b, n));
    for (i, (content_type, body, names)) in cases.into_iter().enumerate() {
        let correlation = format!("corr-{i}");
        let reply_id = correlation.clone();
        let server = Hostile::start(move |_| {
            Reply::status(200)
                .header("Content-Type", content_type)
                .header("ININ-Correlation-Id", &reply_id)
                .body(body.as_bytes())
        });
        let client = client(&server, AuthMethod::ClientSecretBasic, Duration::from_secs(2));
        let error = client.token().await.expect_err("no usable token");
        let text = error.to_string();
        assert!(text.contains(names) && text.contains("HTTP 200"), "{body}: {text}");
        assert!(!text.contains("within"), "not a timeout: {text}");
        assert_eq!(error.status(), Some(200), "{body}: {error:?}");
        assert_eq!(error.correlation_id(), Some(correlation.as_str()), "{body}");
        assert_eq!(error.kind(), ErrorKind::Config, "{body}: {error:?}");
        assert!(error.likely_cause().is_some_and(|c| !c.contains("did not answer")), "{error:?}");
        assert!(server.requests_to("/oauth/token") <= 4, "{body}: a bounded number of tries");
    }
}

/// 429 and 503 with `Retry-After: 3600` from the token endpoint: the caller is told at once,
/// with the wait the server asked for, not after its whole token wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_retry_after_from_the_token_endpoint_fails_fast_naming_it() {
    for status in [429u16, 503] {
        let server = Hostile::start(move |_| {
            Reply::json(status, r#"{"error":"temporarily_unavailable"}"#)
                .header("Retry-After", "3600")
                .header("ININ-Correlation-Id", "corr-wait")
        });
        let token_wait = Duration::from_secs(30);
        let client = client(&server, AuthMethod::ClientSecretBasic, token_wait);
        // A generous bound, far below the token wait: the call returned on the server's word.
        let error = tokio::time::timeout(token_wait / 2, client.token())
            .await
            .expect("returned before the token wait elapsed")
            .expect_err("no token");
        let text = error.to_string();
        assert!(text.contains("3600 s") && text.contains(&format!("HTTP {status}")), "{text}");
        assert_eq!(error.status(), Some(status));
        assert_eq!(error.correlation_id(), Some("corr-wait"));
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert_eq!(server.requests_to("/oauth/token"), 1);
    }
}

/// A token endpoint that echoes what it was sent (the secret, the Basic value, the assertion)
/// in its `error_description`, a Genesys `message`, `ININ-Correlation-Id` and
/// `WWW-Authenticate`: the error never shows them, and `Client::redact` masks them in headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_credentials_never_reach_the_error() {
    for auth in
        [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost, AuthMethod::ClientSecretJwt]
    {
        for field in ["error_description", "message"] {
            let server = Hostile::start(move |req| Reply::echoing_credentials(req, field, SECRET));
            let client = client(&server, auth, Duration::from_secs(2));
            let error = client.token().await.expect_err("rejected");
            let sent = &server.requests()[0];
            let basic = sent.basic_credentials();
            let assertion = sent.form_value("client_assertion");
            if auth == AuthMethod::ClientSecretJwt {
                assert!(assertion.len() > 100 && assertion.len() < 256, "{assertion}");
            }
            let shown = format!("{error} {error:?} {:?}", error.code());
            assert_masked(&shown, &[SECRET, basic, &assertion]);
            assert!(shown.contains("[redacted]"), "{auth:?} {field}: {shown}");
            assert_eq!(error.kind(), ErrorKind::CredentialsRejected, "{shown}");
            let header = format!("Basic realm=\"{assertion} {basic} {SECRET}\"");
            assert_masked(&client.redact(&header), &[SECRET, basic, &assertion]);
            assert_masked(
                &String::from_utf8_lossy(&client.redact_bytes(header.as_bytes())),
                &[SECRET, basic, &assertion],
            );
        }
    }
}

/// An API that echoes the token (401: correlation id, challenge, message; 403: the challenge's
/// scope and description) and the secret: the errors never show them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_echoing_the_token_never_shows_it_in_errors() {
    for status in [401u16, 403] {
        let server = Hostile::start(move |req| {
            if req.path() == "/oauth/token" {
                let body = format!(
                    r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3600}}"#
                );
                return Reply::json(200, &body);
            }
            let sent = req.header("authorization").unwrap_or("").trim_start_matches("Bearer ");
            let challenge = if status == 401 {
                format!(r#"Bearer error="invalid_token", error_description="{sent} expired""#)
            } else {
                format!(
                    r#"Bearer error="insufficient_scope", scope="{sent}", error_description="{SECRET}""#
                )
            };
            let body = format!(
                r#"{{"message":"token {sent} refused","code":"bad.token","status":{status}}}"#
            );
            Reply::json(status, &body)
                .header("ININ-Correlation-Id", sent)
                .header("WWW-Authenticate", &challenge)
        });
        let client = client(&server, AuthMethod::ClientSecretBasic, Duration::from_secs(2));
        let request = client.request(Method::GET, "/api/v2/users/me").unwrap().build().unwrap();
        let error = client.send(request).await.expect_err("refused");
        let shown = format!("{error} {error:?} {:?}", error.correlation_id());
        assert_masked(&shown, &[TOKEN, SECRET]);
        assert!(shown.contains("[redacted]"), "{status}: {shown}");
        assert_eq!(error.status(), Some(status));
    }
}

/// A granted `scope` that echoes the secret: `Client::scope` (what `credflow token --json`
/// prints) masks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_scope_echoing_the_secret_is_masked() {
    let server = Hostile::start(|_| {
        let body = format!(
            r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3600,"scope":"read {SECRET}"}}"#
        );
        Reply::json(200, &body)
    });
    let client = client(&server, AuthMethod::ClientSecretBasic, Duration::from_secs(2));
    client.token().await.expect("a token");
    let (_, granted, _) = client.scope();
    assert_eq!(granted.as_deref(), Some("read [redacted]"));
}
