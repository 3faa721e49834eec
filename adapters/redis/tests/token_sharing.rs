//! `TokenSharing`: one token and budget for the fleet (the default), or one per pod with
//! refreshes taken in turn, against a real `redis-server` and the emulator counting its API
//! limit per token or per client id (issue 19).

mod common;

use std::time::Duration;

use common::{RedisServer, pod, scope_of, store};
use credflow_emulator::{Emulator, EmulatorConfig, EmulatorHandle, FaultConfig, RateLimitScope};
use credflow_redis::{PodName, TokenSharing};
use credflow_reqwest::Client;
use reqwest::Method;

/// A window longer than any test, so every count below is within one window.
const WINDOW: Duration = Duration::from_secs(30);

async fn emulator(scope: RateLimitScope, limit: u64, faults: FaultConfig) -> EmulatorHandle {
    let config = EmulatorConfig::default()
        .with_api_rate_limit(limit, WINDOW)
        .with_rate_limit_scope(scope)
        .with_faults(faults);
    Emulator::start(config).await.unwrap()
}

fn per_pod(redis: &RedisServer, emu: &EmulatorHandle, name: &str, seed: u64) -> Client {
    let name = PodName::new(name).unwrap();
    pod(emu, store(redis, |c| c.token_sharing = TokenSharing::PerPod(name)), seed)
}

/// One GET; its status and `inin-ratelimit-count`.
async fn get_count(client: &Client) -> (u16, Option<u64>) {
    let request = client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    let response = client.send(request).await.unwrap();
    let count = response
        .headers()
        .get("inin-ratelimit-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (response.status().as_u16(), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_token_scope_pods_with_their_own_tokens_have_a_budget_each() {
    let redis = RedisServer::start();
    let emu = emulator(RateLimitScope::Token, 3, FaultConfig::default()).await;
    let pods: Vec<Client> = (0..3).map(|i| per_pod(&redis, &emu, &format!("pod-{i}"), i)).collect();
    // Three requests each: each pod's own token's budget, all within one 30 s window.
    for client in &pods {
        for expected in 1..=3 {
            assert_eq!(get_count(client).await, (200, Some(expected)));
        }
    }
    let seen = emu.counters();
    assert_eq!(seen.token.requests, 3, "one token per pod, none for headroom");
    assert_eq!((seen.api.admitted, seen.api.rate_limited), (9, 0));
    // Each pod's token is in its own key, under the fleet's prefix and hash tag.
    let mut scope = scope_of(credflow_emulator::DEMO_CLIENT_ID);
    scope.token_url = emu.token_url();
    let name = PodName::new("pod-1").unwrap();
    let keys = store(&redis, |c| c.token_sharing = TokenSharing::PerPod(name)).key_names(&scope);
    assert!(keys[0].ends_with(":pod:pod-1:token") && keys[2].ends_with(":pod:pod-1:rate"));
    assert!(keys[1].ends_with("}:lease"), "the lease stays the fleet's: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_token_scope_a_fleet_sharing_one_token_shares_one_budget() {
    let redis = RedisServer::start();
    let emu = emulator(RateLimitScope::Token, 3, FaultConfig::default()).await;
    let pods: Vec<Client> = (0..3).map(|i| pod(&emu, store(&redis, |_| {}), i)).collect();
    let mut counts = Vec::new();
    for client in &pods {
        counts.push(get_count(client).await);
    }
    // One token: the three pods' requests are one count.
    assert_eq!(counts, vec![(200, Some(1)), (200, Some(2)), (200, Some(3))]);
    assert_eq!(emu.counters().token.requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_scope_per_pod_tokens_still_draw_on_the_clients_one_budget() {
    let redis = RedisServer::start();
    let emu = emulator(RateLimitScope::Client, 10, FaultConfig::default()).await;
    let pods: Vec<Client> = (0..3).map(|i| per_pod(&redis, &emu, &format!("pod-{i}"), i)).collect();
    let mut counts = Vec::new();
    for client in &pods {
        counts.push(get_count(client).await);
    }
    assert_eq!(counts, vec![(200, Some(1)), (200, Some(2)), (200, Some(3))]);
    assert_eq!(emu.counters().token.requests, 3, "three tokens, no more budget");
}

/// Pods that start together take their tokens one at a time under the fleet's lease, so the
/// token endpoint never sees two requests of the fleet at once (100 ms per token request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_pod_refreshes_take_turns_across_the_fleet() {
    let redis = RedisServer::start();
    let faults =
        FaultConfig { token_latency: Duration::from_millis(100), ..FaultConfig::default() };
    let emu = emulator(RateLimitScope::Token, 100, faults).await;
    let pods: Vec<Client> = (0..5).map(|i| per_pod(&redis, &emu, &format!("pod-{i}"), i)).collect();
    let calls: Vec<_> = pods
        .iter()
        .map(|client| {
            let client = client.clone();
            tokio::spawn(async move { get_count(&client).await.0 })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    let seen = emu.counters();
    assert_eq!(seen.token.requests, 5);
    assert_eq!(seen.token.max_in_flight, 1, "refreshes took turns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_the_same_name_share_their_token() {
    let redis = RedisServer::start();
    let emu = emulator(RateLimitScope::Token, 10, FaultConfig::default()).await;
    let a = per_pod(&redis, &emu, "same", 1);
    let b = per_pod(&redis, &emu, "same", 2);
    assert_eq!(get_count(&a).await, (200, Some(1)));
    assert_eq!(get_count(&b).await, (200, Some(2)));
    assert_eq!(emu.counters().token.requests, 1);
}
