//! `Client::builder`: every setting by name, and no panic outside a tokio runtime.

use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{AuthMethod, Client, Config, ErrorKind, Target};

const TOKEN: &str = r#"{"access_token":"tok-b","token_type":"bearer","expires_in":3600}"#;

#[tokio::test]
async fn the_builder_sets_what_it_names() {
    let server = Hostile::start(|_| Reply::json(200, TOKEN));
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/api/") };
    let client = Client::builder(target, credentials("builder-id", "builder-secret").unwrap())
        .auth_method(AuthMethod::ClientSecretPost)
        .scope("read write")
        .extra_param("audience", "https://api.example")
        .user_agent("my-service/2")
        .token_wait(Duration::from_secs(2))
        .seed(9)
        .build()
        .unwrap();
    assert_eq!(client.token().await.unwrap().as_str(), "tok-b");
    let requests = server.requests();
    let token = &requests[0];
    assert_eq!(token.form_value("client_id"), "builder-id");
    assert_eq!(token.form_value("client_secret"), "builder-secret");
    assert_eq!(token.form_value("scope"), "read%20write");
    assert_eq!(token.form_value("audience"), "https%3A%2F%2Fapi.example");
    assert_eq!(token.header("user-agent"), Some("my-service/2"));
}

#[tokio::test]
async fn a_builder_starts_from_a_config() {
    let server = Hostile::start(|_| Reply::json(200, TOKEN));
    let config = Config::token_only(server.url("/oauth/token"), credentials("i", "s").unwrap());
    let builder = credflow_reqwest::ClientBuilder::from_config(config).scope("x");
    assert_eq!(builder.config().scope.as_deref(), Some("x"));
    assert_eq!(builder.build().unwrap().token().await.unwrap().as_str(), "tok-b");
}

#[test]
fn outside_a_tokio_runtime_building_is_an_error_not_a_panic() {
    let config =
        Config::token_only("http://127.0.0.1:9/oauth/token", credentials("i", "s").unwrap());
    let e = Client::new(config.clone()).expect_err("no runtime, no client");
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("no tokio runtime"), "{e}");
    let e = credflow_reqwest::ClientBuilder::from_config(config).build().expect_err("no runtime");
    assert!(e.to_string().contains("no tokio runtime"), "{e}");
    // Inside one, the same configuration builds.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _entered = runtime.enter();
    let config =
        Config::token_only("http://127.0.0.1:9/oauth/token", credentials("i", "s").unwrap());
    assert!(Client::new(config).is_ok());
}

/// An extra parameter no token request could carry (one the grant sets itself, or no name)
/// is refused when the client is built. Before, the client was built, and its token driver
/// found out at every turn, in a loop: a warning per turn, a core busy, no request sent.
#[tokio::test]
async fn an_extra_parameter_the_grant_sets_itself_is_refused_when_built() {
    let server = Hostile::start(|_| Reply::json(200, TOKEN));
    for name in ["scope", "client_secret", ""] {
        let target =
            Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/api/") };
        let built = Client::builder(target, credentials("id", "secret").unwrap())
            .extra_param(name, "read")
            .build();
        let error = built.expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::Config, "{name:?}: {error}");
        assert!(error.to_string().contains("sets itself"), "{error}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.requests().is_empty());
}
