//! The session keeps its token in an allocation sized to it, and still takes every token up to
//! `TOKEN_CAPACITY` bytes (JWTs of several KiB), whole, and refuses a longer one with an error
//! that says so: never cut, never silently dropped.

use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, TOKEN_CAPACITY, Target};

fn server_sending(token: String) -> Hostile {
    Hostile::start(move |req| match req.path() {
        "/oauth/token" => Reply::json(
            200,
            &format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#),
        ),
        _ => Reply::json(200, "{}"),
    })
}

fn client(server: &Hostile) -> Client {
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/api/") };
    Client::builder(target, credentials("large", "secret").unwrap())
        .token_wait(Duration::from_secs(2))
        .seed(4)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_token_near_the_capacity_is_kept_whole_and_sent_whole() {
    let token = format!("eyJ{}", "x".repeat(TOKEN_CAPACITY - 20));
    let server = server_sending(token.clone());
    let client = client(&server);
    assert_eq!(client.token().await.unwrap().as_str(), token);
    let request = client.request(reqwest::Method::GET, "/api/v2/users/me").unwrap();
    assert_eq!(client.send(request.build().unwrap()).await.unwrap().status(), 200);
    let sent = server.requests().into_iter().find(|r| r.path() != "/oauth/token").unwrap();
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {token}").as_str()));
}

#[tokio::test]
async fn a_token_past_the_capacity_is_refused_with_a_clear_error() {
    let server = server_sending("x".repeat(TOKEN_CAPACITY + 1));
    let client = client(&server);
    let error = client.token().await.expect_err("too long to keep");
    let text = error.to_string();
    assert!(text.contains(&format!("{}", TOKEN_CAPACITY + 1)), "{text}");
}
