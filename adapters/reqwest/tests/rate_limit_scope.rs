//! A token change meeting a spent rate-limit window, against the emulator counting per token or
//! per client id, with the pacer set to each scope (`config.session.pacer.scope`; issue 19).
//!
//! Tokens live 2 s; the window is 30 s of 2 requests, so the first token's window is spent when
//! its successor arrives. The request after the change has a 1 s deadline: one the pacer would
//! hold for the rest of the spent window fails at once instead of sleeping half a minute.

use std::time::Duration;

use credflow_core::ratelimit::pacer::RateLimitScope;
use credflow_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig, EmulatorHandle,
    RateLimitScope as ServerScope,
};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config, RequestOptions};
use reqwest::Method;

async fn setup(server: ServerScope, pacer: RateLimitScope) -> (EmulatorHandle, Client) {
    let config = EmulatorConfig::default()
        .with_api_rate_limit(2, Duration::from_secs(30))
        .with_token_lifetime(Duration::from_secs(2))
        .with_rate_limit_scope(server);
    let emu = Emulator::start(config).await.expect("emulator starts on 127.0.0.1");
    let mut config = Config::custom(
        emu.token_url(),
        emu.api_base(),
        credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap(),
    );
    config.seed = Some(1);
    config.session.pacer.scope = pacer;
    let client = Client::new(config).unwrap();
    (emu, client)
}

/// One GET with a 1 s deadline: its status, or the error's text.
async fn get(client: &Client) -> Result<u16, String> {
    let request = client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    let options = RequestOptions { deadline: Some(Duration::from_secs(1)), ..Default::default() };
    client.send_with(request, options).await.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
}

/// Spends the first token's window, waits until the client holds another token (refreshed as
/// the first nears its expiry), and sends once more.
async fn after_a_token_change(client: &Client) -> Result<u16, String> {
    assert_eq!(get(client).await, Ok(200));
    assert_eq!(get(client).await, Ok(200));
    let first = client.token().await.unwrap().fingerprint();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if client.token().await.unwrap().fingerprint() != first {
            return get(client).await;
        }
    }
    panic!("the token was not refreshed within 5 s of a 2 s life");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_token_a_new_token_is_not_held_by_the_old_tokens_spent_window() {
    for pacer in [RateLimitScope::Token, RateLimitScope::Auto] {
        let (emu, client) = setup(ServerScope::Token, pacer).await;
        assert_eq!(after_a_token_change(&client).await, Ok(200), "{pacer:?}");
        let seen = emu.counters();
        assert!(seen.token.requests <= 3, "{pacer:?}: refreshes only, none for headroom");
        assert_eq!(seen.api.rate_limited, 0, "{pacer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_token_a_per_client_assumption_holds_the_new_token_back() {
    let (emu, client) = setup(ServerScope::Token, RateLimitScope::Client).await;
    assert!(after_a_token_change(&client).await.is_err());
    assert_eq!(emu.counters().api.requests, 2, "nothing sent into the assumed spent window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_the_new_token_inherits_the_spent_window() {
    // Told per client id: nothing is sent. Auto: one probe, answered 429, then the same.
    for (pacer, sent) in [(RateLimitScope::Client, 2), (RateLimitScope::Auto, 3)] {
        let (emu, client) = setup(ServerScope::Client, pacer).await;
        assert!(after_a_token_change(&client).await.is_err(), "{pacer:?}");
        let seen = emu.counters();
        assert_eq!(seen.api.requests, sent, "{pacer:?}");
        assert_eq!(seen.api.rate_limited, sent - 2, "{pacer:?}: at most the probe's 429");
    }
}
