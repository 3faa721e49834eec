//! The fleet's 429 hold (`blocked_until` in the rate hash) against a real `redis-server` and the
//! emulator on 127.0.0.1: anyone who can write Redis can set it, and no process can check who
//! did. A pod honours it for at most its retry policy's `max_wait` (the longest it waits on a
//! server's own `Retry-After`), the scripts cut a longer one so that it ends, and what the pod
//! says about the wait names the fleet, never the server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, scope_of, store};
use credflow_core::session::ApiErrorKind;
use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use credflow_redis::RedisStore;
use credflow_reqwest::config::credentials;
use credflow_reqwest::shared::SharedStore;
use credflow_reqwest::{Client, ClientEvent, Config, RequestOptions};
use reqwest::Method;

/// 2500-01-01T00:00:00Z in milliseconds: a hold of about 4 000 000 hours.
const YEAR_2500_MS: i64 = 16_725_225_600_000;

/// The pods' longest accepted wait (`retry.max_wait`), short for the test.
const MAX_WAIT: Duration = Duration::from_millis(1500);

async fn connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Sets the fleet's hold in `rate_key` to the year 2500, as a writer of Redis can.
async fn hold_until_2500(redis: &RedisServer, rate_key: &str) {
    let _: i64 = redis::cmd("HSET")
        .arg(rate_key)
        .arg("blocked_until")
        .arg(YEAR_2500_MS)
        .query_async(&mut connection(redis).await)
        .await
        .unwrap();
}

/// The hold left in `rate_key` on Redis's clock, in ms.
async fn hold_left(redis: &RedisServer, rate_key: &str) -> i64 {
    let mut con = connection(redis).await;
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut con).await.unwrap();
    let until: Option<i64> =
        redis::cmd("HGET").arg(rate_key).arg("blocked_until").query_async(&mut con).await.unwrap();
    until.unwrap_or(0) - (secs * 1000 + micros / 1000)
}

fn pod(emu: &credflow_emulator::EmulatorHandle, store: Arc<RedisStore>) -> Client {
    let mut config = Config::custom(
        emu.token_url(),
        emu.api_base(),
        credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap(),
    )
    .with_shared(store);
    config.session.retry.max_wait = credflow_core::Duration::from_millis(1500);
    config.seed = Some(1);
    Client::new(config).unwrap()
}

fn get(client: &Client) -> reqwest::Request {
    client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap()
}

/// Before, a hold until the year 2500 failed every request but one probe per `max_wait`, with
/// "server asked to retry in 4 000 000 h": for as long as the key lived, and naming the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_until_the_year_2500_holds_a_pod_for_at_most_max_wait_and_names_the_fleet() {
    let redis = RedisServer::start();
    let emu = Emulator::start(
        EmulatorConfig::default().with_api_rate_limit(10_000, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let client = pod(&emu, store(&redis, |_| {}));
    let mut scope = scope_of(DEMO_CLIENT_ID);
    scope.token_url = emu.token_url();
    let rate_key = store(&redis, |_| {}).key_names(&scope)[2].clone();
    assert_eq!(client.send(get(&client)).await.unwrap().status(), 200);

    hold_until_2500(&redis, &rate_key).await;
    let mut events = client.events();
    for _ in 0..3 {
        let sent = tokio::time::timeout(Duration::from_secs(10), client.send(get(&client))).await;
        let response = sent.expect("not held for hours").expect("held, then sent");
        assert_eq!(response.status(), 200);
    }
    let holds: Vec<Duration> = std::iter::from_fn(|| events.try_recv().ok())
        .filter_map(|e| match e {
            ClientEvent::FleetHold { wait } => Some(wait),
            _ => None,
        })
        .collect();
    assert!(!holds.is_empty(), "the wait is announced as the fleet's");
    assert!(holds.iter().all(|&wait| wait <= MAX_WAIT), "{holds:?}");
    assert!(hold_left(&redis, &rate_key).await <= 0, "the hold was cut, and has ended");
    assert_eq!(emu.counters().api.requests, 4);

    // A request whose deadline comes before the (cut) hold ends fails at once, and says the
    // fleet held it, not the server.
    hold_until_2500(&redis, &rate_key).await;
    let options =
        RequestOptions { deadline: Some(Duration::from_millis(300)), ..Default::default() };
    let error = client.send_with(get(&client), options).await.expect_err("past its deadline");
    let text = error.to_string();
    assert!(text.contains("held by the fleet's shared rate state"), "{text}");
    assert!(!text.contains("server asked"), "{text}");
    assert!(error.likely_cause().is_some_and(|c| c.contains("fleet")), "{error:?}");
    assert!(matches!(
        error.api_error().map(|e| &e.kind),
        Some(ApiErrorKind::DeadlineExceeded { .. })
    ));
    let left = hold_left(&redis, &rate_key).await;
    assert!(left > 0 && left <= MAX_WAIT.as_millis() as i64, "cut to max_wait: {left} ms");
    assert_eq!(emu.counters().api.requests, 4, "not sent");
}

/// The scripts keep the hold within the pods' bound: a 429's Retry-After is relayed for at most
/// `max_hold`, and a longer hold found in the hash (written by anything else) is cut to it,
/// in Redis, on first sight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_bound_the_hold_they_write_and_the_one_they_find() {
    let redis = RedisServer::start();
    let store = store(&redis, |_| {});
    let mut scope = scope_of("bounded-hold");
    scope.max_hold = Duration::from_secs(30);
    let rate_key = store.key_names(&scope)[2].clone();

    store.rate_limited(&scope, Some(Duration::from_secs(5 * 3600))).await.unwrap();
    let left = hold_left(&redis, &rate_key).await;
    assert!(left > 29_000 && left <= 30_000, "a daily quota's Retry-After, relayed: {left} ms");

    hold_until_2500(&redis, &rate_key).await;
    let hold = store.hold(&scope).await.unwrap().expect("held");
    assert!(hold <= scope.max_hold, "{hold:?}");
    let left = hold_left(&redis, &rate_key).await;
    assert!(left > 29_000 && left <= 30_000, "cut in Redis: {left} ms");

    hold_until_2500(&redis, &rate_key).await;
    let admission = store.admit(&scope, credflow_core::Priority::Critical, Duration::ZERO).await;
    match admission.unwrap() {
        credflow_reqwest::shared::Admission::Held(wait) => assert!(wait <= scope.max_hold),
        other => panic!("held by the fleet, bounded: {other:?}"),
    }
    assert!(hold_left(&redis, &rate_key).await <= 30_000);
}

/// The fleet's window spent for hours (a daily quota, as another pod was told, or as anyone
/// wrote it): a wait longer than `max_wait` fails fast after the pod's one probe, as before,
/// but the error says the fleet's rate state holds it, not that the server asked (before: "server
/// asked to retry in 2h").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_fleet_window_fails_fast_naming_the_fleet() {
    let redis = RedisServer::start();
    let emu = Emulator::start(
        EmulatorConfig::default().with_api_rate_limit(10_000, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let client = pod(&emu, store(&redis, |_| {}));
    let mut scope = scope_of(DEMO_CLIENT_ID);
    scope.token_url = emu.token_url();
    let rate_key = store(&redis, |_| {}).key_names(&scope)[2].clone();
    assert_eq!(client.send(get(&client)).await.unwrap().status(), 200);

    let mut con = connection(&redis).await;
    let (secs, _): (i64, i64) = redis::cmd("TIME").query_async(&mut con).await.unwrap();
    let reset_at = (secs + 2 * 3600) * 1000;
    let _: i64 = redis::cmd("HSET")
        .arg(&rate_key)
        .arg(&["limit", "10", "remaining", "0", "length", "60000", "tat", "0", "interval", "0"])
        .arg("reset_at")
        .arg(reset_at)
        .arg("seen")
        .arg(reset_at)
        .query_async(&mut con)
        .await
        .unwrap();
    // The pod's one probe per max_wait goes; the next request fails fast.
    assert_eq!(client.send(get(&client)).await.unwrap().status(), 200, "the probe");
    let error = client.send(get(&client)).await.expect_err("fails fast");
    let text = error.to_string();
    assert!(text.contains("the fleet's shared rate state allows no request"), "{text}");
    assert!(!text.contains("server asked"), "{text}");
    assert!(error.likely_cause().is_some_and(|c| c.contains("fleet")), "{error:?}");
    assert_eq!(emu.counters().api.requests, 2, "the held request was not sent");
}
