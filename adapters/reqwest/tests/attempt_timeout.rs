//! Each API attempt ends within `Config::request_timeout`, from scripted servers on 127.0.0.1
//! (`credflow_emulator::hostile`): a response head that never comes, an error body that stalls
//! while it is read for classification, and a success body that stalls while the caller reads
//! it (after `send` returned), through credflow's own HTTP client (which carries the timeout
//! itself), a shared transport's (whose own timeout is longer: credflow sets the client's on
//! each attempt) and a caller's one (without a timeout: likewise).

use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Recorded, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::credflow_core::session::SessionConfig;
use credflow_reqwest::{Client, RequestOptions, Target, Transport};
use reqwest::Method;

const TOKEN: &str = r#"{"access_token":"tok-1","token_type":"bearer","expires_in":3600}"#;
/// The attempt's timeout here.
const TIMEOUT: Duration = Duration::from_millis(300);
/// Far past `TIMEOUT`: reaching it means nothing ended the attempt.
const NEVER: Duration = Duration::from_secs(5);

/// Tokens at `/oauth/token`, the rest scripted by `api`.
fn server(api: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Hostile {
    Hostile::start(
        move |req| {
            if req.path() == "/oauth/token" { Reply::json(200, TOKEN) } else { api(req) }
        },
    )
}

/// Which HTTP client API requests go through.
#[derive(Clone, Copy, Debug)]
enum Http {
    /// credflow's own, built for this client: `request_timeout` is its client-wide timeout.
    Own,
    /// A transport shared by many clients, built with the default 30 s timeout.
    Shared,
    /// A caller's `reqwest::Client`, without a timeout of its own.
    Callers,
}

const EACH: [Http; 3] = [Http::Own, Http::Shared, Http::Callers];

/// A client of `server` with the short timeout and no retries, on the HTTP client `http`.
fn client(server: &Hostile, http: Http) -> Client {
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/api/") };
    let mut session = SessionConfig::default();
    session.retry.max_retries = 0;
    let builder = Client::builder(target, credentials("client-1", "secret-1").unwrap())
        .session(session)
        .request_timeout(TIMEOUT)
        .seed(7);
    let builder = match http {
        Http::Own => builder,
        Http::Shared => builder.transport(Transport::new().unwrap()),
        Http::Callers => {
            // This test binary is the application: it chooses the TLS provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
            builder.http_client(reqwest::Client::builder().build().unwrap())
        }
    };
    builder.build().unwrap()
}

async fn get(client: &Client, path: &str) -> Result<reqwest::Response, credflow_reqwest::Error> {
    let request = client.request(Method::GET, path).unwrap().build().unwrap();
    tokio::time::timeout(NEVER, client.send(request)).await.expect("the attempt never ended")
}

#[tokio::test]
async fn a_response_head_that_never_comes_ends_at_the_request_timeout() {
    let server = server(|_| Reply::json(200, "{}").delayed(Duration::from_secs(60)));
    for http in EACH {
        let e = get(&client(&server, http), "slow").await.expect_err("no answer");
        assert!(e.to_string().contains("Transport(Timeout)"), "{http:?}: not a timeout: {e}");
    }
}

#[tokio::test]
async fn an_error_body_that_stalls_while_classified_ends_at_the_request_timeout() {
    let server = server(|_| Reply::status(503).repeat(b"unavailable ", 4096).stall_after(12));
    for http in EACH {
        let e = get(&client(&server, http), "stalled").await.expect_err("a stalled body");
        assert!(e.to_string().contains("Transport(Timeout)"), "{http:?}: not a timeout: {e}");
    }
}

#[tokio::test]
async fn a_success_body_that_stalls_while_the_caller_reads_it_ends_at_the_request_timeout() {
    let server = server(|_| Reply::json(200, "").repeat(b"[1,", 4096).stall_after(300));
    for http in EACH {
        let response = get(&client(&server, http), "items").await.expect("a head");
        assert_eq!(response.status(), 200);
        let read = tokio::time::timeout(NEVER, response.bytes()).await;
        let e = read.expect("the body's read never ended").expect_err("a stalled body");
        assert!(e.is_timeout(), "{http:?}: not a timeout: {e}");
    }
}

/// credflow's own API client carries `request_timeout` as reqwest's client-wide timeout, so a
/// request sent through `Client::http()` directly (without `send`) ends there too; one that
/// sets its own timeout keeps it.
#[tokio::test]
async fn requests_through_the_own_http_client_end_at_the_request_timeout() {
    let server = server(|_| Reply::json(200, "{}").delayed(Duration::from_secs(60)));
    let client = client(&server, Http::Own);
    let plain = client.http().get(server.url("/api/slow")).send();
    let e = tokio::time::timeout(NEVER, plain).await.expect("never ended").expect_err("no answer");
    assert!(e.is_timeout(), "not a timeout: {e}");
    let longer = client.http().get(server.url("/api/slow")).timeout(TIMEOUT * 4).send();
    let started = tokio::time::Instant::now();
    let e = tokio::time::timeout(NEVER, longer).await.expect("never ended").expect_err("no answer");
    assert!(e.is_timeout(), "not a timeout: {e}");
    assert!(started.elapsed() >= TIMEOUT * 4, "the request's own timeout was cut");
}

#[tokio::test]
async fn a_request_deadline_ends_the_attempt_under_way_at_the_deadline() {
    // `request_timeout` far past the wait allowed here: only the deadline can end the attempt.
    let server = server(|_| Reply::json(200, "{}").delayed(Duration::from_secs(60)));
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/api/") };
    let client = Client::builder(target, credentials("client-1", "secret-1").unwrap())
        .request_timeout(Duration::from_secs(30))
        .seed(7)
        .build()
        .unwrap();
    let request = client.request(Method::GET, "slow").unwrap().build().unwrap();
    let options = RequestOptions { deadline: Some(TIMEOUT), ..Default::default() };
    let sent = tokio::time::timeout(NEVER, client.send_with(request, options)).await;
    let e = sent.expect("the attempt outlived the request's deadline").expect_err("no answer");
    assert!(e.to_string().contains("after the request's deadline"), "{e}");
    assert_eq!(server.requests_to("/api/slow"), 1);
}

/// An attempt cut by its request's deadline is the caller's limit, not a failure of the API
/// host: five requests with a 150 ms deadline against an API whose answers never come left the
/// host's breaker open (three failures open it), and the next request, without a deadline,
/// failed fast without being sent. Now the breaker stays closed and that request is answered.
#[tokio::test]
async fn attempts_cut_by_their_deadline_do_not_open_the_breaker() {
    let server = server(|req| {
        let reply = Reply::json(200, "{}");
        // The head of an answer to `slow` comes long after any deadline here.
        if req.path().ends_with("/slow") { reply.delayed(NEVER) } else { reply }
    });
    let client = client(&server, Http::Own);
    for _ in 0..5 {
        let request = client.request(Method::GET, "/api/v2/slow").unwrap().build().unwrap();
        let options =
            RequestOptions { deadline: Some(Duration::from_millis(150)), ..Default::default() };
        let result = client.send_with(request, options).await;
        assert!(result.is_err(), "{result:?}");
    }
    let request = client.request(Method::GET, "/api/v2/fine").unwrap().build().unwrap();
    let response = client.send(request).await;
    assert_eq!(response.map(|r| r.status().as_u16()).unwrap(), 200);
    assert_eq!(server.requests().iter().filter(|r| r.path().ends_with("/fine")).count(), 1);
}
