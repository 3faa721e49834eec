//! The std adapter against the Genesys Cloud emulator over real HTTP on 127.0.0.1.
//!
//! Each test starts its own emulator on an ephemeral port and asserts on what the server saw.
//! Durations are short (sub-second token lifetimes, small windows) to keep wall time low.

use std::time::Duration;

use credflow_core::Duration as CoreDuration;
use credflow_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig, EmulatorHandle,
    LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET,
};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config, ErrorKind};
use reqwest::Method;

async fn emulator(config: EmulatorConfig) -> EmulatorHandle {
    Emulator::start(config).await.expect("emulator starts on 127.0.0.1")
}

fn client_for(
    emu: &EmulatorHandle,
    id: &str,
    secret: &str,
    tune: impl FnOnce(&mut Config),
) -> Client {
    let mut config =
        Config::custom(emu.token_url(), emu.api_base(), credentials(id, secret).unwrap());
    config.seed = Some(1);
    tune(&mut config);
    Client::new(config).unwrap()
}

async fn get(client: &Client, path: &str) -> Result<reqwest::Response, credflow_reqwest::Error> {
    let request = client.request(Method::GET, path)?.build().unwrap();
    client.send(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_sends_on_a_cold_client_make_one_token_request() {
    let emu =
        emulator(EmulatorConfig::default().with_api_rate_limit(10_000, Duration::from_secs(60)))
            .await;
    let client = client_for(&emu, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, |_| {});
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(
                async move { get(&client, "/api/v2/routing/queues").await.map(|r| r.status()) },
            )
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 200);
    }
    let seen = emu.counters();
    assert_eq!(seen.token.requests, 1, "exactly one token request for 500 callers");
    assert_eq!(seen.api.requests, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_refreshed_in_the_background_and_no_401_reaches_callers() {
    let lifetime = Duration::from_secs(2);
    let emu = emulator(
        EmulatorConfig::default()
            .with_token_lifetime(lifetime)
            .with_api_rate_limit(10_000, Duration::from_secs(60)),
    )
    .await;
    let client = client_for(&emu, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, |_| {});
    let run = Duration::from_secs(6);
    let start = tokio::time::Instant::now();
    let mut calls = 0;
    while start.elapsed() < run {
        let response = get(&client, "/api/v2/routing/queues").await.unwrap();
        assert_eq!(response.status(), 200);
        calls += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = emu.counters();
    // A 2 s token is refreshed after 1 s at most, 0.5 s at least (jitter): 6 to 13 requests.
    assert!((4..=14).contains(&seen.token.requests), "token requests: {}", seen.token.requests);
    assert_eq!(seen.responses_401, 0, "refresh ahead of expiry: the API never saw a dead token");
    assert!(calls > 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_costs_one_refresh_and_one_retry_per_request() {
    let emu =
        emulator(EmulatorConfig::default().with_api_rate_limit(10_000, Duration::from_secs(60)))
            .await;
    let client = client_for(&emu, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, |_| {});
    assert_eq!(get(&client, "/api/v2/routing/queues").await.unwrap().status(), 200);
    emu.revoke_all_tokens();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(
                async move { get(&client, "/api/v2/routing/queues").await.map(|r| r.status()) },
            )
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 200, "the caller never sees the 401");
    }
    let seen = emu.counters();
    assert_eq!(seen.token.requests, 2, "one refresh for all affected requests");
    assert!(seen.responses_401 >= 1 && seen.responses_401 <= 20);
    assert_eq!(seen.api.requests, 1 + 20 + seen.responses_401, "each 401 retried exactly once");
    let counters = client.counters();
    assert_eq!(counters.unauthorized, seen.responses_401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_maintenance_opens_the_breaker_then_recovers() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.faults().maintenance_for(
        Duration::from_millis(1500),
        credflow_emulator::FaultTarget::Token,
        None,
    );
    let client = client_for(&emu, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, |c| {
        c.session.lifecycle.retry_base = CoreDuration::from_millis(50);
        c.session.lifecycle.retry_cap = CoreDuration::from_millis(200);
        // Token requests are spaced by at least this (1 s by default), backoff or not: small,
        // so that the breaker's three failures fit in the 1.5 s outage.
        c.session.lifecycle.min_refresh_interval = CoreDuration::from_millis(50);
        c.session.token_breaker.cooldown = CoreDuration::from_millis(300);
        c.session.token_breaker.max_cooldown = CoreDuration::from_millis(600);
    });
    // Callers wait while the first token requests fail; once the breaker has opened, they get a
    // typed error at once: without a new token request reaching the server.
    let mut error = None;
    for _ in 0..100 {
        match client.token().await {
            Err(e) if client.counters().breaker_trips > 0 => {
                error = Some(e);
                break;
            }
            Err(_) => {}
            Ok(_) => panic!("no token during maintenance"),
        }
    }
    let error = error.expect("the breaker opened during the outage");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert_eq!(error.status(), Some(503));
    assert_eq!(error.exit_code(), 5);
    let during = emu.counters().token.requests;
    let again = client.token().await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Unavailable);
    assert_eq!(
        emu.counters().token.requests,
        during,
        "an open breaker answers without the network"
    );
    assert!((3..=8).contains(&during), "token requests during the outage: {during}");
    // After the window the breaker's probe gets a token.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match client.token().await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("did not recover: {e}"),
        }
    }
    let total = emu.counters().token.requests;
    assert!(total <= during + 4, "a bounded number of probes: {during} then {total}");
    assert!(client.counters().breaker_trips >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_respected_and_retry_after_honoured() {
    let emu =
        emulator(EmulatorConfig::default().with_api_rate_limit(20, Duration::from_secs(1))).await;
    let client = client_for(&emu, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, |_| {});
    // Warm up: learn the limit from the headers.
    assert_eq!(get(&client, "/api/v2/routing/queues").await.unwrap().status(), 200);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(
                async move { get(&client, "/api/v2/routing/queues").await.map(|r| r.status()) },
            )
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 200, "every request eventually succeeds");
    }
    let seen = emu.counters();
    let histogram = seen.admitted_for(DEMO_CLIENT_ID);
    assert!(histogram.max_in_window(Duration::from_secs(1)) <= 21, "{histogram:?}");
    assert!(seen.responses_429 <= 5, "pacing keeps 429s rare: {}", seen.responses_429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_names_the_missing_permission() {
    let emu = emulator(EmulatorConfig::default()).await;
    let client = client_for(&emu, LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET, |_| {});
    let request = client
        .request(Method::POST, "/api/v2/analytics/conversations/details/query")
        .unwrap()
        .json_body(r#"{"interval":"2026-01-01T00:00:00Z/2026-01-02T00:00:00Z"}"#)
        .build()
        .unwrap();
    let error = client.send(request).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Permission);
    assert_eq!(error.exit_code(), 4);
    assert_eq!(error.code(), Some("missing.permissions"));
    assert!(error.to_string().contains("analytics:conversationDetail:view"), "{error}");
    assert!(error.correlation_id().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_rejected_once_and_explained() {
    let emu = emulator(EmulatorConfig::default()).await;
    let client = client_for(&emu, DEMO_CLIENT_ID, "not-the-secret", |_| {});
    let error = client.token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CredentialsRejected);
    assert_eq!(error.exit_code(), 3);
    assert_eq!(error.code(), Some("invalid_client"));
    assert!(error.likely_cause().unwrap().contains("region"));
    assert!(!format!("{error} {error:?}").contains("not-the-secret"));
    // No retry loop: later calls fail at once without new token requests.
    for _ in 0..5 {
        assert!(client.token().await.is_err());
    }
    assert_eq!(emu.counters().token.requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_token_is_served_without_the_network() {
    let emu = emulator(EmulatorConfig::default()).await;
    let client = client_for(&emu, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, |_| {});
    let first = client.token().await.unwrap();
    for _ in 0..1000 {
        let again = client.token().await.unwrap();
        assert_eq!(again.generation(), first.generation());
    }
    assert_eq!(emu.counters().token.requests, 1);
    assert!(!format!("{first:?}").contains(first.as_str()));
}

trait JsonBody {
    fn json_body(self, body: &str) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &str) -> Self {
        self.header("Content-Type", "application/json").body(body.to_owned())
    }
}
