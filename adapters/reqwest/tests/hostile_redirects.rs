//! Redirects against scripted servers on 127.0.0.1 (`credflow_emulator::hostile`): token
//! requests never follow one (the secret would go along), API requests follow one only within
//! their origin, with the bearer token, and hand any other back untouched.

use std::sync::Arc;
use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Recorded, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{AuthMethod, Client, Config, ErrorKind};
use reqwest::Method;

const TOKEN: &str = r#"{"access_token":"tok-1","token_type":"bearer","expires_in":3600}"#;
const SECRET: &str = "s3cret-value";

/// A server that hands out tokens to whoever asks: the place a redirect must never lead to.
fn token_thief() -> Hostile {
    Hostile::start(|_| Reply::json(200, TOKEN))
}

fn client(token_url: String, api_base: String, auth: AuthMethod) -> Client {
    let mut config = Config::custom(token_url, api_base, credentials("client-1", SECRET).unwrap());
    config.auth_method = auth;
    config.seed = Some(7);
    config.token_wait = Duration::from_secs(3);
    Client::new(config).unwrap()
}

#[tokio::test]
async fn a_token_endpoint_redirect_is_never_followed_whatever_the_auth_method() {
    let thief = token_thief();
    let elsewhere = format!("http://user:pw@{}/oauth/token?steal=1", thief.addr());
    let mut tried = Vec::new();
    for status in [307, 308] {
        for auth in [
            AuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost,
            AuthMethod::ClientSecretJwt,
        ] {
            let location = elsewhere.clone();
            let endpoint =
                Hostile::start(move |_| Reply::status(status).header("Location", &location));
            let client = client(endpoint.url("/oauth/token"), endpoint.url("/api"), auth);
            let e = client.token().await.expect_err("a redirect gives no token");
            let text = e.to_string();
            assert_eq!((e.kind(), e.status()), (ErrorKind::Config, Some(status)), "{text}");
            assert!(text.contains(&format!("HTTP {status}")), "{text}");
            assert!(
                text.contains(&format!("redirected to http://{}; not followed", thief.addr())),
                "{text}"
            );
            for hidden in ["steal", "/oauth/token", "user", "pw", SECRET] {
                assert!(!text.contains(hidden), "{hidden} in {text}");
            }
            assert!(e.likely_cause().is_some_and(|c| c.contains("never follow redirects")));
            tried.push((status, auth, endpoint, client));
        }
    }
    // Not hammered either: the token URL needs fixing, and retrying cannot help (the first
    // retry would come after about a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (status, auth, endpoint, client) in tried {
        assert!(client.token().await.is_err());
        assert_eq!(endpoint.requests_to("/oauth/token"), 1, "{status} {auth:?}");
    }
    assert!(thief.requests().is_empty(), "the other origin was contacted: {:?}", thief.requests());
}

/// The token and API server: tokens at `/oauth/token`, the rest scripted by `api`.
fn api_server(api: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Hostile {
    Hostile::start(
        move |req| {
            if req.path() == "/oauth/token" { Reply::json(200, TOKEN) } else { api(req) }
        },
    )
}

async fn send(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> reqwest::Response {
    let mut builder = client.request(method, path).unwrap();
    if let Some(body) = body {
        builder = builder.body(body.to_owned());
    }
    client.send(builder.build().unwrap()).await.unwrap()
}

#[tokio::test]
async fn an_api_redirect_to_another_origin_comes_back_untouched() {
    let other = Arc::new(Hostile::start(|_| Reply::json(200, r#"{"stolen":true}"#)));
    let location = format!("{}/files/1?sig=abc", other.url(""));
    let api = {
        let location = location.clone();
        api_server(move |req| {
            let status = req.path().trim_start_matches("/api/").parse().unwrap_or(404);
            Reply::status(status).header("Location", &location)
        })
    };
    let client = client(api.url("/oauth/token"), api.url("/api"), AuthMethod::default());
    for status in [301, 302, 303, 307, 308] {
        for method in [Method::GET, Method::POST] {
            let response = send(&client, method.clone(), &status.to_string(), Some("{}")).await;
            assert_eq!(response.status().as_u16(), status, "{method}");
            assert_eq!(response.headers()["location"], location.as_str());
        }
    }
    assert!(other.requests().is_empty(), "contacted: {:?}", other.requests());
    // The API saw each request once, with the token.
    let seen: Vec<_> = api.requests().into_iter().filter(|r| r.path() != "/oauth/token").collect();
    assert_eq!(seen.len(), 10);
    assert!(seen.iter().all(|r| r.header("authorization") == Some("Bearer tok-1")));
}

#[tokio::test]
async fn an_api_redirect_within_the_origin_is_followed_with_the_token_and_rfc_9110_methods() {
    let api = api_server(|req| match req.path() {
        "/api/old" => Reply::status(308).header("Location", "/api/new"),
        "/api/temp" => Reply::status(307).header("Location", "/api/new"),
        "/api/created" => Reply::status(303).header("Location", "/api/new"),
        "/api/loop" => Reply::status(302).header("Location", "/api/loop"),
        "/api/new" => Reply::json(200, &format!(r#"{{"method":"{}"}}"#, req.method)),
        _ => Reply::status(404),
    });
    let client = client(api.url("/oauth/token"), api.url("/api"), AuthMethod::default());
    let news = |api: &Hostile| -> Vec<Recorded> {
        api.requests().into_iter().filter(|r| r.path() == "/api/new").collect()
    };

    let response = send(&client, Method::GET, "old", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"method":"GET"}"#);

    // 307 keeps the method and the body.
    let response = send(&client, Method::POST, "temp", Some(r#"{"a":1}"#)).await;
    assert_eq!(response.text().await.unwrap(), r#"{"method":"POST"}"#);
    // 303: a GET without the body.
    let response = send(&client, Method::POST, "created", Some(r#"{"a":1}"#)).await;
    assert_eq!(response.text().await.unwrap(), r#"{"method":"GET"}"#);

    let followed = news(&api);
    assert_eq!(followed.len(), 3);
    assert!(followed.iter().all(|r| r.header("authorization") == Some("Bearer tok-1")));
    assert_eq!(followed[1].body_text(), r#"{"a":1}"#);
    assert!(followed[2].body.is_empty());

    // A loop ends after five redirects: the sixth 3xx comes back as it is.
    let response = send(&client, Method::GET, "loop", None).await;
    assert_eq!(response.status(), 302);
    assert_eq!(api.requests_to("/api/loop"), 1 + credflow_core::http::redirect::MAX_REDIRECTS);
}
