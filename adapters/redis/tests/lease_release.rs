//! A pod that stops mid-refresh gives its refresh lease back, against a real `redis-server` and
//! the emulator on 127.0.0.1: dropping the last clone of its `Client` releases the lease in the
//! background, `Client::shutdown` releases it before it returns, and the next pod refreshes at
//! once instead of waiting `lease_ttl` (15 s) for nobody. A lease kept on purpose after a failed
//! token request (the fleet's back-off) is not given back.

mod common;

use std::time::{Duration, Instant};

use common::{RedisServer, pod, scope_of, store};
use credflow_emulator::{DEMO_CLIENT_ID, Emulator, EmulatorConfig, EmulatorHandle, FaultTarget};
use credflow_redis::RedisStore;
use credflow_reqwest::ErrorKind;

/// The default lease: what the next pod would wait for on a lease nobody releases.
const LEASE_TTL: Duration = Duration::from_secs(15);

/// The name of the pods' lease key (their scope names the emulator's token URL).
fn lease_key(store: &RedisStore, emu: &EmulatorHandle) -> String {
    let mut scope = scope_of(DEMO_CLIENT_ID);
    scope.token_url = emu.token_url();
    store.key_names(&scope)[1].clone()
}

async fn exists(redis: &RedisServer, key: &str) -> bool {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("EXISTS").arg(key).query_async(&mut con).await.unwrap()
}

/// Waits (at most `limit`) for `key` to be gone.
async fn gone_within(redis: &RedisServer, key: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while exists(redis, key).await {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Waits until the emulator has a token request in flight: the pod holds the lease.
async fn token_request_in_flight(emu: &EmulatorHandle) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while emu.counters().token.in_flight == 0 {
        assert!(Instant::now() < deadline, "the pod never sent its token request");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Before, a dropped client's driver was aborted with its lease in Redis: the next pod polled
/// for the full 15 s `lease_ttl` before it could refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_client_mid_refresh_releases_its_lease_for_the_next_pod() {
    let redis = RedisServer::start();
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tune = |c: &mut credflow_redis::RedisConfig| c.lease_ttl = LEASE_TTL;
    emu.faults().token_latency(Duration::from_secs(60));
    let a = pod(&emu, store(&redis, tune), 1);
    token_request_in_flight(&emu).await;
    let key = lease_key(&store(&redis, tune), &emu);
    assert!(exists(&redis, &key).await, "pod A holds the lease");
    // Pod B is due too: it waits for A's token.
    let b = pod(&emu, store(&redis, tune), 2);
    let b_token = {
        let b = b.clone();
        tokio::spawn(async move { b.token().await })
    };
    emu.faults().token_latency(Duration::ZERO);
    drop(a);
    assert!(
        gone_within(&redis, &key, Duration::from_secs(2)).await,
        "the dropped pod's lease is released, not left for lease_ttl ({LEASE_TTL:?})"
    );
    let token = tokio::time::timeout(Duration::from_secs(5), b_token)
        .await
        .expect("pod B has a token well before lease_ttl")
        .unwrap();
    assert!(token.is_ok(), "{token:?}");
    assert_eq!(emu.counters().token.requests, 2, "A's abandoned request, then B's");
}

/// `shutdown` releases the lease before it returns, and the client refuses work afterwards,
/// at once and saying why; another clone of it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_lease_before_it_returns_and_stops_the_client() {
    let redis = RedisServer::start();
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tune = |c: &mut credflow_redis::RedisConfig| c.lease_ttl = LEASE_TTL;
    emu.faults().token_latency(Duration::from_secs(60));
    let a = pod(&emu, store(&redis, tune), 1);
    let waiting = {
        let a = a.clone();
        tokio::spawn(async move { a.token().await })
    };
    token_request_in_flight(&emu).await;
    let key = lease_key(&store(&redis, tune), &emu);
    assert!(exists(&redis, &key).await, "the pod holds the lease");
    tokio::time::timeout(Duration::from_secs(3), a.shutdown()).await.expect("bounded");
    assert!(!exists(&redis, &key).await, "released by the time shutdown returns");
    let waited = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("a caller waiting for a token is not left waiting")
        .unwrap();
    let refused = a.clone().token().await;
    for result in [waited, refused] {
        let error = result.expect_err("a shut-down client has no token to give");
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert!(error.to_string().contains("shut down"), "{error}");
    }
    let request = a.request(reqwest::Method::GET, "/api/v2/routing/queues").unwrap();
    let error = a.send(request.build().unwrap()).await.expect_err("refused");
    assert!(error.to_string().contains("shut down"), "{error}");
    assert_eq!(emu.counters().api.requests, 0);
}

/// A lease kept after a failed token request is the fleet's back-off: the next pod does not
/// hammer an endpoint that just failed. Dropping the pod does not give it back early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_kept_after_a_failed_request_is_not_released_on_drop() {
    let redis = RedisServer::start();
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tune = |c: &mut credflow_redis::RedisConfig| c.lease_ttl = LEASE_TTL;
    emu.faults().maintenance_for(Duration::from_secs(60), FaultTarget::Token, None);
    let a = pod(&emu, store(&redis, tune), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while emu.counters().token.requests == 0 {
        assert!(Instant::now() < deadline, "the pod never sent its token request");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The answer (503) reaches the pod, which keeps the lease.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let key = lease_key(&store(&redis, tune), &emu);
    assert!(exists(&redis, &key).await, "the back-off lease stays until it expires");
}
