//! Bring your own HTTP client, share one among many credflow clients: API requests go through
//! the caller's `reqwest::Client`, token requests never do (they carry the client secret), and
//! a caller's client that follows every redirect still cannot take a secret to another origin.

use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig, LIMITED_CLIENT_ID,
    LIMITED_CLIENT_SECRET,
};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{AuthMethod, Client, ErrorKind, Target, Transport};

const TOKEN: &str = r#"{"access_token":"tok-byo","token_type":"bearer","expires_in":3600}"#;
const SECRET: &str = "byo-s3cret";

/// The application's own client: reqwest's default policy (follows up to 10 redirects,
/// anywhere), and a header of its own to tell its requests apart.
fn callers_client() -> reqwest::Client {
    // This test binary is the application: it chooses the TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-from-caller", reqwest::header::HeaderValue::from_static("yes"));
    reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::limited(10))
        .build()
        .unwrap()
}

fn custom(server: &Hostile) -> Target {
    Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/") }
}

#[tokio::test]
async fn a_shared_transport_serves_many_clients() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let transport = Transport::new().unwrap();
    let target = || Target::Custom { token_url: emu.token_url(), api_base: emu.api_base() };
    let clients: Vec<Client> =
        [(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET), (LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET)]
            .into_iter()
            .map(|(id, secret)| {
                Client::builder(target(), credentials(id, secret).unwrap())
                    .transport(transport.clone())
                    .seed(1)
                    .build()
                    .unwrap()
            })
            .collect();
    for client in &clients {
        let request = client.request(reqwest::Method::GET, "/api/v2/routing/queues").unwrap();
        let response = client.send(request.build().unwrap()).await.unwrap();
        assert!(
            response.status().is_success() || response.status() == 403,
            "{}",
            response.status()
        );
    }
    let seen = emu.counters();
    assert_eq!(seen.token.requests, 2, "one token per client id");
    assert_eq!(seen.api.requests, 2);
}

#[tokio::test]
async fn api_requests_go_through_the_callers_client_and_token_requests_never_do() {
    let server = Hostile::start(|req| match req.path() {
        "/oauth/token" => Reply::json(200, TOKEN),
        _ => Reply::json(200, "{}"),
    });
    let client = Client::builder(custom(&server), credentials("byo", SECRET).unwrap())
        .auth_method(AuthMethod::ClientSecretPost)
        .http_client(callers_client())
        .seed(3)
        .build()
        .unwrap();
    let response = client
        .send(client.request(reqwest::Method::GET, "/api/v2/users/me").unwrap().build().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let requests = server.requests();
    let token = requests.iter().find(|r| r.path() == "/oauth/token").expect("a token request");
    let api = requests.iter().find(|r| r.path() == "/api/v2/users/me").expect("the API request");
    assert_eq!(
        api.header("x-from-caller"),
        Some("yes"),
        "the API request went through the caller's client"
    );
    assert_eq!(api.header("authorization"), Some("Bearer tok-byo"));
    assert_eq!(
        token.header("x-from-caller"),
        None,
        "the token request went through the caller's client"
    );
    assert_eq!(token.form_value("client_secret"), SECRET);
}

#[tokio::test]
async fn a_callers_client_that_follows_every_redirect_takes_no_secret_elsewhere() {
    let thief = Hostile::start(|_| Reply::json(200, TOKEN));
    let elsewhere = thief.url("/steal");
    let server = Hostile::start(move |req| match req.path() {
        // The token endpoint redirects: a client following it would re-send the form body
        // (client_secret_post) to the thief.
        "/oauth/token" if req.target.contains("redirect") => {
            Reply::status(307).header("Location", &elsewhere)
        }
        "/oauth/token" => Reply::json(200, TOKEN),
        // The API redirects to another origin: the caller's client follows it.
        _ => Reply::status(307).header("Location", &elsewhere),
    });
    // Token requests: refused, never followed, whatever the caller's client does.
    let target = Target::Custom {
        token_url: server.url("/oauth/token?redirect=1"),
        api_base: server.url("/"),
    };
    let redirected = Client::builder(target, credentials("byo", SECRET).unwrap())
        .auth_method(AuthMethod::ClientSecretPost)
        .http_client(callers_client())
        .token_wait(Duration::from_secs(2))
        .build()
        .unwrap();
    let e = redirected.token().await.expect_err("a redirected token request gives no token");
    assert_eq!((e.kind(), e.status()), (ErrorKind::Config, Some(307)), "{e}");
    assert_eq!(thief.requests().len(), 0, "the token request was followed to another origin");

    // API requests: the caller's client follows its own policy, and reqwest drops the bearer
    // token on the hop to another origin.
    let client = Client::builder(custom(&server), credentials("byo", SECRET).unwrap())
        .http_client(callers_client())
        .build()
        .unwrap();
    let request = client.request(reqwest::Method::POST, "/api/v2/x").unwrap().body("payload");
    let _ = client.send(request.build().unwrap()).await;
    let stolen = thief.requests();
    assert_eq!(stolen.len(), 1, "the caller's client followed the redirect");
    assert_eq!(stolen[0].header("authorization"), None, "the bearer token went to another origin");
    assert!(!stolen[0].body_text().contains(SECRET));
}
