//! The `serde` feature: a service's configuration file holds credflow's target and tuning
//! (durations as `"90s"`), a configuration is written without its secret, and the client's
//! events are structured log records.

use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::{Settings, credentials};
use credflow_reqwest::{AuthMethod, Client, Config, Target};

#[test]
fn a_services_file_sets_target_and_tuning() {
    #[derive(serde::Deserialize)]
    struct ServiceFile {
        target: Target,
        credflow: Settings,
    }
    let file: ServiceFile = serde_json::from_str(
        r#"{
            "target": { "genesys": "eu-west-1" },
            "credflow": {
                "auth_method": "client_secret_post",
                "request_timeout": "10s",
                "token_wait": "1500ms",
                "extra_params": [["audience", "https://api.example"]],
                "session": { "retry": { "max_retries": 5 }, "token_breaker": { "cooldown": "2s" } }
            }
        }"#,
    )
    .unwrap();
    assert_eq!(file.target.token_url(), "https://login.mypurecloud.ie/oauth/token");
    let mut config = Config::custom(
        "http://127.0.0.1:1/t",
        "http://127.0.0.1:1",
        credentials("i", "s").unwrap(),
    );
    config.apply(file.credflow);
    assert_eq!(config.auth_method, AuthMethod::ClientSecretPost);
    assert_eq!(config.request_timeout, Duration::from_secs(10));
    assert_eq!(config.token_wait, Duration::from_millis(1500));
    assert_eq!(config.extra_params, [("audience".to_owned(), "https://api.example".to_owned())]);
    assert_eq!(config.session.retry.max_retries, 5);
    // Left out: the defaults, the token breaker's own included.
    assert_eq!(config.connect_timeout, Duration::from_secs(5));
    assert_eq!(
        config.session.token_breaker.max_cooldown,
        credflow_reqwest::credflow_core::Duration::from_secs(60)
    );

    // Misspelt, unitless or unknown: refused, not ignored.
    for bad in [
        r#"{"request_timout":"10s"}"#,
        r#"{"request_timeout":10}"#,
        r#"{"auth_method":"client_secret_magic"}"#,
    ] {
        assert!(serde_json::from_str::<Settings>(bad).is_err(), "{bad}");
    }
    assert!(serde_json::from_str::<Target>(r#"{"genesys":"mypurecloud.co"}"#).is_err());
}

#[test]
fn a_written_configuration_never_holds_the_secret() {
    let mut config = Config::custom(
        "https://user:url-password@idp.example/oauth/token",
        "https://api.example",
        credentials("client-7", "the-secret-value").unwrap(),
    );
    config.request_timeout = Duration::from_millis(2500);
    let text = serde_json::to_string(&config).unwrap();
    assert!(text.contains(r#""client_id":"client-7""#), "{text}");
    assert!(text.contains(r#""request_timeout":"2500ms""#), "{text}");
    for hidden in ["the-secret-value", "url-password"] {
        assert!(!text.contains(hidden), "{hidden} in {text}");
    }
    // The settings written read back the same.
    let settings = config.settings();
    let again: Settings = serde_json::from_str(&serde_json::to_string(&settings).unwrap()).unwrap();
    assert_eq!(format!("{again:?}"), format!("{settings:?}"));
    let target: Target = serde_json::from_str(
        &serde_json::to_string(&Target::TokenOnly {
            token_url: "https://idp.example/oauth/token".to_owned(),
        })
        .unwrap(),
    )
    .unwrap();
    assert_eq!(target.token_url(), "https://idp.example/oauth/token");
}

#[tokio::test]
async fn events_are_structured_log_records() {
    let server = Hostile::start(|_| {
        Reply::json(200, r#"{"access_token":"tok-serde","token_type":"bearer","expires_in":3600}"#)
    });
    let target = Target::TokenOnly { token_url: server.url("/oauth/token") };
    let client = Client::builder(target, credentials("i", "s").unwrap()).build().unwrap();
    let mut events = client.events();
    let token = client.token().await.unwrap();
    let mut records = Vec::new();
    while let Ok(event) = events.try_recv() {
        records.push(serde_json::to_string(&event).unwrap());
    }
    let all = records.join("\n");
    assert!(all.contains(r#""token_request""#), "{all}");
    assert!(
        all.contains(r#"{"session":{"token":{"token_acquired":{"generation":1,"life":"1h""#),
        "{all}"
    );
    assert!(!all.contains(token.as_str()), "{all}");
}
