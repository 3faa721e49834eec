//! The API rate limit counted per client id (the default) or per access token
//! (`EmulatorConfig::rate_limit_scope`, `--rate-limit-scope`): which window a request is counted
//! in, and what its `inin-ratelimit-*` headers describe.

mod common;

use std::time::Duration;

use common::{assert_genesys_error, start};
use credflow_emulator::{DEMO_CLIENT_ID, EmulatorConfig, FaultConfig, RateLimitScope};

const QUEUES: &str = "/api/v2/routing/queues";

/// Long enough that a test's requests all fall in one window (the headers' reset stays put).
const WINDOW: Duration = Duration::from_secs(30);

fn config(scope: RateLimitScope) -> EmulatorConfig {
    EmulatorConfig::default().with_api_rate_limit(3, WINDOW).with_rate_limit_scope(scope)
}

#[test]
fn the_default_scope_is_per_client_id() {
    assert_eq!(EmulatorConfig::default().rate_limit_scope, RateLimitScope::Client);
}

#[tokio::test]
async fn per_client_two_tokens_draw_on_one_window() {
    let f = start(config(RateLimitScope::Client)).await;
    let (t1, t2) = (f.demo_token().await, f.demo_token().await);
    for (i, token) in [&t1, &t1, &t2].into_iter().enumerate() {
        let a = f.get(QUEUES, Some(token)).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.header_u64("inin-ratelimit-count"), Some(i as u64 + 1));
    }
    // The second token's budget is the client's: spent.
    let a = f.get(QUEUES, Some(&t2)).await;
    assert_genesys_error(&a, 429, "too.many.requests.retry.after");
    assert_eq!(a.header_u64("inin-ratelimit-count"), Some(3));
    // A third token, fresh from the token endpoint, does not start a window either.
    let t3 = f.demo_token().await;
    assert_eq!(f.get(QUEUES, Some(&t3)).await.status, 429);
    let c = f.emu.counters();
    assert_eq!((c.api.admitted, c.api.rate_limited), (3, 2));
}

#[tokio::test]
async fn per_token_each_token_has_its_own_window_and_headers() {
    let f = start(config(RateLimitScope::Token)).await;
    let (t1, t2) = (f.demo_token().await, f.demo_token().await);
    for i in 1..=3 {
        let a = f.get(QUEUES, Some(&t1)).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.header_u64("inin-ratelimit-count"), Some(i));
        assert_eq!(a.header_u64("inin-ratelimit-allowed"), Some(3));
    }
    let spent = f.get(QUEUES, Some(&t1)).await;
    assert_genesys_error(&spent, 429, "too.many.requests.retry.after");
    assert_eq!(spent.header_u64("inin-ratelimit-count"), Some(3));
    // The other token of the same client: its own window, counted from one, a full reset.
    let a = f.get(QUEUES, Some(&t2)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header_u64("inin-ratelimit-count"), Some(1));
    assert_eq!(a.header_u64("inin-ratelimit-reset"), Some(WINDOW.as_secs()));
    // Spending it leaves the first token where it was.
    for _ in 0..2 {
        assert_eq!(f.get(QUEUES, Some(&t2)).await.status, 200);
    }
    assert_eq!(f.get(QUEUES, Some(&t2)).await.status, 429);
    let c = f.emu.counters();
    assert_eq!((c.api.admitted, c.api.rate_limited), (6, 2));
    // The admission histogram stays per client id: both tokens' requests are the client's.
    assert_eq!(c.admitted_for(DEMO_CLIENT_ID).total(), 6);
}

#[tokio::test]
async fn per_token_a_window_opens_at_the_tokens_first_request_and_closes_on_time() {
    let window = Duration::from_millis(400);
    let f = start(
        EmulatorConfig::default()
            .with_api_rate_limit(1, window)
            .with_rate_limit_scope(RateLimitScope::Token),
    )
    .await;
    let t1 = f.demo_token().await;
    assert_eq!(f.get(QUEUES, Some(&t1)).await.status, 200);
    assert_eq!(f.get(QUEUES, Some(&t1)).await.status, 429);
    tokio::time::sleep(window).await;
    let a = f.get(QUEUES, Some(&t1)).await;
    assert_eq!((a.status, a.header_u64("inin-ratelimit-count")), (200, Some(1)));
}

#[tokio::test]
async fn per_token_the_daily_limit_stays_per_client() {
    let f =
        start(config(RateLimitScope::Token).with_daily_limit(2, Duration::from_secs(86_400))).await;
    let (t1, t2) = (f.demo_token().await, f.demo_token().await);
    assert_eq!(f.get(QUEUES, Some(&t1)).await.status, 200);
    assert_eq!(f.get(QUEUES, Some(&t2)).await.status, 200);
    // Each token has window left, the client has no day left.
    assert_eq!(f.get(QUEUES, Some(&t2)).await.status, 429);
    assert_eq!(f.emu.counters().api.daily_limited, 1);
}

#[tokio::test]
async fn per_token_a_forced_429_shows_the_tokens_window() {
    let faults = FaultConfig { force_429: Some(Duration::from_secs(30)), ..FaultConfig::default() };
    let f = start(config(RateLimitScope::Token).with_faults(faults)).await;
    let t1 = f.demo_token().await;
    let a = f.get(QUEUES, Some(&t1)).await;
    assert_eq!(a.status, 429);
    // The token's window, shown spent until the fault ends (as every forced 429 shows it).
    assert_eq!(a.header_u64("inin-ratelimit-count"), Some(3));
    assert_eq!(a.header_u64("inin-ratelimit-allowed"), Some(3));
}
