//! The tower layer under a hyper-util client, against the emulator and scripted servers on
//! 127.0.0.1: the token attached, a 401 answered with one refresh and one retry, a 429's wait
//! honoured (a body of known size resent), pacing, the API base's origin only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use credflow_emulator::hostile::{Hostile, Reply};
use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use credflow_reqwest::config::credentials;
use credflow_reqwest::tower::{CredflowLayer, CredflowService};
use credflow_reqwest::{Client, ErrorKind, Target};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

type Service = CredflowService<HyperClient<HttpConnector, reqwest::Body>>;

const TOKEN: &str = r#"{"access_token":"tok-tower","token_type":"bearer","expires_in":3600}"#;

fn service(client: &Client) -> Service {
    let hyper = HyperClient::builder(TokioExecutor::new()).build_http::<reqwest::Body>();
    CredflowLayer::new(client.clone()).layer(hyper)
}

fn get(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(url).body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_get_the_token_and_a_401_costs_one_refresh_and_one_retry() {
    let emu = Emulator::start(
        EmulatorConfig::default()
            .with_request_log(false)
            .with_api_rate_limit(10_000, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let target = Target::Custom { token_url: emu.token_url(), api_base: emu.api_base() };
    let client = Client::builder(target, credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap())
        .seed(2)
        .build()
        .unwrap();
    let url = client.url("/api/v2/routing/queues").unwrap();
    let response = service(&client).oneshot(get(url.as_str())).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.is_empty());

    emu.revoke_all_tokens();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let service = service(&client);
            let url = url.to_string();
            tokio::spawn(async move { service.oneshot(get(&url)).await.map(|r| r.status()) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 200, "the caller never sees the 401");
    }
    let seen = emu.counters();
    assert_eq!(seen.token.requests, 2, "one refresh for all affected requests");
    assert!(seen.responses_401 >= 1 && seen.responses_401 <= 10);
    assert_eq!(seen.api.requests, 1 + 10 + seen.responses_401, "each 401 retried exactly once");
}

#[tokio::test]
async fn a_429_is_waited_out_and_a_body_of_known_size_is_sent_again() {
    let api_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&api_calls);
    let server = Hostile::start(move |req| match req.path() {
        "/oauth/token" => Reply::json(200, TOKEN),
        _ if calls.fetch_add(1, Ordering::SeqCst) == 0 => {
            Reply::json(429, "{}").header("Retry-After", "1")
        }
        _ => Reply::json(201, r#"{"ok":true}"#),
    });
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/") };
    let client = Client::builder(target, credentials("i", "s").unwrap()).seed(4).build().unwrap();
    let url = client.url("/api/v2/things").unwrap();
    let request = http::Request::post(url.as_str())
        .extension(credflow_reqwest::RequestOptions { idempotent: true, ..Default::default() })
        .body(Full::new(Bytes::from_static(b"{\"name\":\"x\"}")))
        .unwrap();
    let start = tokio::time::Instant::now();
    let response = service(&client).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 201);
    assert!(start.elapsed() >= Duration::from_millis(900), "Retry-After: 1 was not honoured");
    let sent: Vec<_> =
        server.requests().into_iter().filter(|r| r.path() == "/api/v2/things").collect();
    assert_eq!(sent.len(), 2);
    for attempt in &sent {
        assert_eq!(attempt.body_text(), "{\"name\":\"x\"}");
        assert_eq!(attempt.header("authorization"), Some("Bearer tok-tower"));
    }
}

#[tokio::test]
async fn another_origin_is_refused_before_the_inner_service_sees_it() {
    let server = Hostile::start(|_| Reply::json(200, TOKEN));
    let elsewhere = Hostile::start(|_| Reply::json(200, "{}"));
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/") };
    let client = Client::builder(target, credentials("i", "s").unwrap()).build().unwrap();
    let e = service(&client).oneshot(get(&elsewhere.url("/x"))).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert_eq!(elsewhere.requests().len(), 0);
}

#[tokio::test]
async fn an_error_body_that_never_ends_is_cut_by_the_request_timeout() {
    let server = Hostile::start(|req| match req.path() {
        "/oauth/token" => Reply::json(200, TOKEN),
        _ => Reply::status(500)
            .header("Content-Type", "application/json")
            .repeat(b"{\"message\":\"slow\"}", 1 << 20)
            .stall_after(10),
    });
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/") };
    let client = Client::builder(target, credentials("i", "s").unwrap())
        .request_timeout(Duration::from_millis(300))
        .session({
            let mut session = credflow_reqwest::credflow_core::SessionConfig::default();
            session.retry.max_retries = 1;
            session
        })
        .build()
        .unwrap();
    let url = client.url("/api/v2/slow").unwrap();
    let outcome =
        tokio::time::timeout(Duration::from_secs(10), service(&client).oneshot(get(url.as_str())))
            .await
            .expect("the attempt's timeout bounds a stalled error body");
    let e = outcome.expect_err("a stalled body is a transport failure");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

/// A `request_timeout` too long to add to the clock (`Duration::MAX`, as a configuration file
/// may say for "never") bounds nothing, as it would not in reqwest: the tower path added it to
/// the clock unchecked, and panicked.
#[tokio::test]
async fn a_request_timeout_past_the_clocks_range_is_no_bound_not_a_panic() {
    let server = Hostile::start(|req| match req.path() {
        "/oauth/token" => Reply::json(200, TOKEN),
        _ => Reply::json(200, r#"{"ok":true}"#),
    });
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/") };
    let client = Client::builder(target, credentials("i", "s").unwrap())
        .request_timeout(Duration::MAX)
        .build()
        .unwrap();
    let url = client.url("/api/v2/things").unwrap();
    let response = service(&client).oneshot(get(url.as_str())).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"ok":true}"#);
}

/// A body that always has a frame ready, and never ends.
struct Endless;

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"x")))))
    }
}

/// An inner service whose response body always has a frame ready (a decompression layer on a
/// gzip bomb, a buffered endless stream): the attempt's deadline cuts it. The deadline was
/// looked at only when the body had nothing ready, so such a body was read without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_always_ready_is_cut_by_the_request_timeout() {
    let server = Hostile::start(|_| Reply::json(200, TOKEN));
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/") };
    let client = Client::builder(target, credentials("i", "s").unwrap())
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let inner = tower::service_fn(|_: http::Request<reqwest::Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Endless))
    });
    let service = CredflowLayer::new(client.clone()).layer(inner);
    let url = client.url("/api/v2/endless").unwrap();
    let started = std::time::Instant::now();
    let mut body = service.oneshot(get(url.as_str())).await.unwrap().into_body();
    let mut frames = 0u64;
    let error = loop {
        match body.frame().await {
            Some(Ok(_)) => frames += 1,
            Some(Err(e)) => break e,
            None => panic!("an endless body ended"),
        }
        assert!(frames < 20_000_000, "never cut ({:?})", started.elapsed());
    };
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let chain: Vec<String> =
        std::iter::successors(Some(&error as &(dyn std::error::Error + 'static)), |e| e.source())
            .map(ToString::to_string)
            .collect();
    assert!(chain.iter().any(|e| e.contains("timed out")), "{chain:?}");
}
