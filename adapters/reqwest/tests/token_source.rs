//! `token()` users report back: `invalidate(&token)` drops only that token, `refresh()` forces
//! a new one, and neither can storm the token endpoint.

use std::time::Duration;

use credflow_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig, EmulatorHandle,
};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Target, TokenSource};

async fn setup() -> (EmulatorHandle, Client) {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let target = Target::Custom { token_url: emu.token_url(), api_base: emu.api_base() };
    let client = Client::builder(target, credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap())
        .seed(5)
        .build()
        .unwrap();
    (emu, client)
}

#[tokio::test]
async fn invalidate_drops_that_token_only() {
    let (emu, client) = setup().await;
    let first = client.token().await.unwrap();
    assert!(client.invalidate(&first), "the current token is dropped");
    let second = client.token().await.unwrap();
    assert!(second.generation() > first.generation());
    assert_ne!(second.as_str(), first.as_str());
    // A late report of the old token (another task's 401) leaves the new one alone.
    assert!(!client.invalidate(&first));
    assert!(!client.invalidate(&first));
    let again = client.token().await.unwrap();
    assert_eq!(again.generation(), second.generation());
    assert_eq!(emu.counters().token.requests, 2);
    // Through the trait, as an application holding `Arc<dyn TokenSource>` does.
    let source: std::sync::Arc<dyn TokenSource> = std::sync::Arc::new(client.clone());
    let via_trait = source.token().await.unwrap();
    assert_eq!(via_trait.generation(), second.generation());
    assert!(source.invalidate(&via_trait));
    assert!(source.token().await.unwrap().generation() > second.generation());
}

#[tokio::test]
async fn refresh_forces_a_new_token_and_a_loop_of_them_is_spaced() {
    let (emu, client) = setup().await;
    let first = client.token().await.unwrap();
    let second = client.refresh().await.unwrap();
    assert!(second.generation() > first.generation());
    assert_ne!(second.as_str(), first.as_str());
    // An application that reports every token it gets in a loop for 2.5 s gets one refresh per
    // min_refresh_interval (1 s): each `token()` waits for the spaced refresh.
    let start = tokio::time::Instant::now();
    let mut calls = 0;
    while start.elapsed() < Duration::from_millis(2_500) {
        let token = client.token().await.unwrap();
        client.invalidate(&token);
        calls += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent = emu.counters().token.requests;
    assert!(calls >= 2, "{calls} calls");
    assert!(sent <= 5, "{sent} token requests for {calls} reports in 2.5 s");
}

#[tokio::test]
async fn a_hand_made_token_is_checked_like_a_servers() {
    let token = credflow_reqwest::Token::new("abc.def", 3, Duration::from_secs(60)).unwrap();
    assert_eq!((token.as_str(), token.generation()), ("abc.def", 3));
    assert_eq!(token.header_value().to_str().unwrap(), "Bearer abc.def");
    assert!(token.header_value().is_sensitive());
    assert!(!format!("{token:?}").contains("abc"));
    for bad in ["", "a b", "a\r\nX-Evil: 1"] {
        assert!(credflow_reqwest::Token::new(bad, 1, Duration::from_secs(1)).is_err(), "{bad:?}");
    }
}

/// `refresh()` on a client that holds no token yet waits for the token being fetched and
/// returns it: that one is new already. It used to take that token, drop it and wait for
/// another, spaced a second after the first: two token requests and up to twice `token_wait`
/// (here the second came 2.4 s after the call, past its 2 s `token_wait`).
#[tokio::test]
async fn refresh_without_a_token_yet_makes_one_request_within_token_wait() {
    use credflow_emulator::hostile::{Hostile, Reply};
    let server = Hostile::start(|_| {
        let body = r#"{"access_token":"slow-token","token_type":"bearer","expires_in":3600}"#;
        Reply::json(200, body).delayed(Duration::from_millis(1_200))
    });
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/") };
    let client = Client::builder(target, credentials("i", "s").unwrap())
        .token_wait(Duration::from_secs(2))
        .seed(6)
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let token = client.refresh().await.unwrap();
    let took = start.elapsed();
    assert_eq!(token.as_str(), "slow-token");
    assert_eq!(server.requests_to("/oauth/token"), 1, "one token request, after {took:?}");
    assert!(took < Duration::from_secs(2), "within token_wait: {took:?}");
}
