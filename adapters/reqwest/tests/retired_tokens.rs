//! A token the client replaced (a refresh, a 401) is still masked for a while: a request sent
//! with it may be answered after the session moved on, and what the server echoes of it goes
//! to callers, the CLI's output and `credflow proxy`'s local clients through `Client::redact`.
//! The session itself masks only the token it holds. Against a token server on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Target};

#[tokio::test]
async fn the_tokens_replaced_last_are_masked_too() {
    let issued = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&issued);
    let server = Hostile::start(move |_| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(
            200,
            &format!(
                r#"{{"access_token":"token-number-{n}-abcdef","token_type":"bearer","expires_in":3600}}"#
            ),
        )
    });
    let client = refreshing_at_will(&server);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let token = client.token().await.unwrap();
        seen.push(token.as_str().to_owned());
        assert!(client.invalidate(&token));
    }
    let current = client.token().await.unwrap().as_str().to_owned();
    assert_eq!(current, "token-number-4-abcdef");
    let echo = format!("401: {} {} {} {current}", seen[0], seen[1], seen[2]);
    let shown = client.redact(&echo).into_owned();
    // The current token and the two it replaced last are masked; an older one is not kept.
    for masked in [&seen[1], &seen[2], &current] {
        assert!(!shown.contains(masked.as_str()), "{masked} in {shown}");
    }
    assert!(shown.contains(&seen[0]), "only the last two are kept: {shown}");
    // A cut echo of a replaced token at the end of a cut body, too.
    let cut = format!("error: {}", &seen[2][..10]);
    let shown = client.redact_cut_bytes(cut.as_bytes()).into_owned();
    assert_eq!(String::from_utf8(shown).unwrap(), "error: [redacted]");
}

/// A request sent with a token the client replaced while it was in flight (a refresh) is
/// answered with a 403 or a 500 that echoes that token, in its message (whole, and cut at the
/// 256 bytes the message is kept to) and its correlation id (cut at 64 bytes): the error's
/// text, correlation id, code and diagnosis mask it, cut echoes included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_echoing_the_token_a_refresh_replaced_is_masked() {
    // Longer than a correlation id: its echo there is cut.
    let first = format!("TOKEN-ONE-{}", "a".repeat(80));
    let issued = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&issued);
    let token_one = first.clone();
    let server = Hostile::start(move |request| {
        if request.path() == "/oauth/token" {
            let token = match count.fetch_add(1, Ordering::SeqCst) {
                0 => token_one.clone(),
                n => format!("TOKEN-TWO-{n}-bbbbbbbbbbbbbbbb"),
            };
            let body =
                format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#);
            return Reply::json(200, &body);
        }
        let sent = request.header("authorization").unwrap_or_default();
        let sent = sent.trim_start_matches("Bearer ").to_owned();
        let status = if request.path().ends_with("/forbidden") { 403 } else { 500 };
        // The message: the token whole, then again where the message is cut (256 bytes).
        let message = format!("token {sent} refused; {} {sent}", "x".repeat(100));
        let body = format!(r#"{{"message":"{message}","code":"{sent}","status":{status}}}"#);
        Reply::json(status, &body)
            .header("ININ-Correlation-Id", &sent)
            .delayed(std::time::Duration::from_millis(600))
    });
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/api/") };
    let client = Client::builder(target, credentials("id", "secret").unwrap())
        .session({
            let mut session = credflow_reqwest::credflow_core::SessionConfig::default();
            session.lifecycle.min_refresh_interval =
                credflow_reqwest::credflow_core::Duration::ZERO;
            session.retry.max_retries = 0;
            session
        })
        .build()
        .unwrap();
    for path in ["/forbidden", "/failing"] {
        let token = client.token().await.unwrap();
        let sent_with = token.as_str().to_owned();
        let request = client.request(reqwest::Method::GET, path).unwrap().build().unwrap();
        let send = tokio::spawn({
            let client = client.clone();
            async move { client.send(request).await }
        });
        // The request is on its way with the token; a refresh replaces it meanwhile.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let replaced = client.refresh().await.unwrap();
        assert_ne!(replaced.as_str(), sent_with);
        let error = send.await.unwrap().expect_err("refused");
        let shown = format!(
            "{error} | {error:?} | {:?} | {:?} | {}",
            error.correlation_id(),
            error.code(),
            error.forbidden().map(ToString::to_string).unwrap_or_default(),
        );
        // Whole or cut, no more than three of its leading bytes.
        assert!(!shown.contains(&sent_with[..4]), "{path}: {shown}");
        assert!(shown.contains("[redacted]"), "{path}: {shown}");
        assert!(error.correlation_id().is_some(), "{path}: {error:?}");
    }
}

/// A request sent with a token the client replaced while it was in flight is answered with a
/// 404 (handed to the caller as it is) whose body echoes that token JSON-escaped, as servers'
/// encoders write it: `\/` for `/` (PHP's `json_encode`), `\u002B` for `+` (.NET's
/// `System.Text.Json`). `Client::redact_bytes` masks it there as it masks the credentials and
/// the current token, escapes and all; `redact_cut_bytes` masks it cut within an escape too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_token_echoed_json_escaped_in_a_body_is_masked() {
    let issued = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&issued);
    let server = Hostile::start(move |request| {
        if request.path() == "/oauth/token" {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let token = format!("tok/{n}+abcdefgh/ijklmnop+qrst");
            let body =
                format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#);
            return Reply::json(200, &body);
        }
        let sent = request.header("authorization").unwrap_or_default();
        let sent = sent.trim_start_matches("Bearer ");
        let php = sent.replace('/', r"\/");
        let dotnet = sent.replace('+', r"\u002B").replace('/', r"\u002f");
        let body = format!(r#"{{"message":"no queue for {php}","detail":"token {dotnet}"}}"#);
        Reply::json(404, &body).delayed(std::time::Duration::from_millis(600))
    });
    let client = refreshing_at_will(&server);
    let sent_with = client.token().await.unwrap().as_str().to_owned();
    let request = client.request(reqwest::Method::GET, "/queues/q1").unwrap().build().unwrap();
    let send = tokio::spawn({
        let client = client.clone();
        async move { client.send(request).await }
    });
    // The request is on its way with the token; a refresh replaces it meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_ne!(client.refresh().await.unwrap().as_str(), sent_with);
    let response = send.await.unwrap().expect("a 404 is handed over");
    assert_eq!(response.status(), 404);
    let body = response.bytes().await.unwrap();
    let php = sent_with.replace('/', r"\/");
    let dotnet = sent_with.replace('+', r"\u002B").replace('/', r"\u002f");
    // The echoes are there, escaped, and nowhere raw: what the masking has to find.
    let raw = String::from_utf8_lossy(&body).into_owned();
    assert!(raw.contains(&php) && raw.contains(&dotnet) && !raw.contains(&sent_with), "{raw}");
    let shown = String::from_utf8(client.redact_bytes(&body).into_owned()).unwrap();
    assert_eq!(
        shown, r#"{"message":"no queue for [redacted]","detail":"token [redacted]"}"#,
        "the replaced token {sent_with} in {raw}"
    );
    // Cut within the second echo's first escape, after more than four of its bytes.
    let at = raw.find(&dotnet).unwrap() + dotnet.find(r"\u002B").unwrap() + 3;
    let shown = String::from_utf8(client.redact_cut_bytes(&body[..at]).into_owned()).unwrap();
    assert_eq!(shown, r#"{"message":"no queue for [redacted]","detail":"token [redacted]"#);
}

/// A client of `server`'s `/oauth/token` and `/api/` whose tokens may be replaced at once,
/// as often as a test asks (no minimum interval between refreshes).
fn refreshing_at_will(server: &Hostile) -> Client {
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/api/") };
    Client::builder(target, credentials("id", "secret").unwrap())
        .session({
            let mut session = credflow_reqwest::credflow_core::SessionConfig::default();
            session.lifecycle.min_refresh_interval =
                credflow_reqwest::credflow_core::Duration::ZERO;
            session
        })
        .build()
        .unwrap()
}
