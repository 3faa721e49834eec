//! The bearer token never leaves the API base's origin (scheme, host and port), whatever URL a
//! request carries: one built by hand, one taken from a response (`nextUri`), a path that URL
//! joining reads as another host, or a client of tokens only. Such a request is refused with a
//! configuration error that names both origins (never the path, query or userinfo), before it
//! is resolved, connected or counted, through `Client::send` and through the middleware.
//!
//! Server A (tokens and the API) and server B (the other origin) are scripted servers on
//! 127.0.0.1; B only records what reaches it. The plain-http case uses a host under `.invalid`
//! (RFC 6761), refused before any name is resolved.
//!
//! With the middleware: `cargo test -p credflow-reqwest --features middleware --test
//! hostile_origin`.

use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config, ErrorKind};
use reqwest::Method;

const TOKEN: &str = r#"{"access_token":"tok-1","token_type":"bearer","expires_in":3600}"#;

/// Server A: tokens at `/oauth/token`; under `/api/` a page whose `nextUri` is `next`.
fn api_server(next: String) -> Hostile {
    Hostile::start(move |req| match req.path() {
        "/oauth/token" => Reply::json(200, TOKEN),
        _ => Reply::json(200, &format!(r#"{{"entities":[],"nextUri":"{next}"}}"#)),
    })
}

/// Server B: another origin, where the token must never arrive.
fn elsewhere() -> Hostile {
    Hostile::start(|_| Reply::json(200, r#"{"stolen":true}"#))
}

fn config(a: &Hostile) -> Config {
    let mut config = Config::custom(
        a.url("/oauth/token"),
        a.url("/api"),
        credentials("client-1", "s3cret").unwrap(),
    );
    config.seed = Some(7);
    config.token_wait = Duration::from_secs(2);
    config
}

/// A client of A that holds a token already: a request that got past the check would carry it.
async fn client_with_token(a: &Hostile) -> Client {
    let client = Client::new(config(a)).unwrap();
    client.token().await.unwrap();
    client
}

fn get(url: &str) -> reqwest::Request {
    reqwest::Request::new(Method::GET, url.parse().unwrap())
}

/// The refusal: a configuration error (exit 2) naming `to` and the API base's origin, and
/// nothing of the URL past its origin.
fn assert_refused(e: &credflow_reqwest::Error, to: &str, a: &Hostile, hidden: &[&str]) {
    let text = e.to_string();
    assert_eq!((e.kind(), e.exit_code(), e.status()), (ErrorKind::Config, 2, None), "{text}");
    assert!(text.contains(&format!("request to {to} not sent")), "{text}");
    assert!(text.contains(&format!("the API base is http://{}", a.addr())), "{text}");
    assert!(text.contains("only to the API base's origin"), "{text}");
    for hidden in hidden {
        assert!(!text.contains(hidden), "{hidden} in {text}");
    }
    assert!(e.likely_cause().is_some_and(|c| c.contains("client of your own")), "{e:?}");
}

/// What reached A other than token requests.
fn api_requests(a: &Hostile) -> Vec<credflow_emulator::hostile::Recorded> {
    a.requests().into_iter().filter(|r| r.path() != "/oauth/token").collect()
}

#[tokio::test]
async fn a_next_uri_on_another_origin_is_refused_and_that_origin_receives_nothing() {
    let b = elsewhere();
    let next = format!("http://user:pw@{}/api/v2/users?pageNumber=2&sig=abc", b.addr());
    let a = api_server(next.clone());
    let client = client_with_token(&a).await;

    // A page on A, sent through the client: the token goes with it.
    let request = client.request(Method::GET, "/v2/users").unwrap().build().unwrap();
    let page = client.send(request).await.unwrap().text().await.unwrap();
    let next_uri = page.split(r#""nextUri":""#).nth(1).and_then(|s| s.split('"').next()).unwrap();
    assert_eq!(next_uri, next);

    // Its nextUri points to B: refused, with B's origin and A's named, nothing else.
    let e = client.send(get(next_uri)).await.expect_err("another origin");
    let to = format!("http://{}", b.addr());
    assert_refused(&e, &to, &a, &["user", "pw", "/api/v2/users", "pageNumber", "sig=abc"]);
    // A same host on another scheme is another origin too.
    let tls = format!("https://{}/api/v2/users", a.addr());
    let e = client.send(get(&tls)).await.expect_err("https is another origin than http");
    assert_refused(&e, &format!("https://{}", a.addr()), &a, &["/api/v2/users"]);

    assert!(b.requests().is_empty(), "B was contacted: {:?}", b.requests());
    assert_eq!(api_requests(&a).len(), 1, "only the first page reached A");
    let counters = client.counters();
    assert_eq!((counters.requests, counters.attempts), (1, 1), "refused before it began");
}

#[tokio::test]
async fn a_same_origin_request_built_by_hand_carries_the_token() {
    let a = api_server(String::new());
    let client = client_with_token(&a).await;
    // The API base's origin however the URL spells it: absolute, explicit port, any path,
    // with userinfo (not part of an origin: the full check rather than the API base's text).
    let urls = [
        a.url("/api/v2/users?x=1"),
        format!("HTTP://{}/other/path", a.addr()),
        format!("http://someone@{}/with/userinfo", a.addr()),
    ];
    for url in &urls {
        let response = client.send(get(url)).await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
    }
    let seen = api_requests(&a);
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|r| r.header("authorization") == Some("Bearer tok-1")), "{seen:?}");
    assert_eq!(seen[1].path(), "/other/path");
    assert_eq!(seen[2].path(), "/with/userinfo");
    // Another port on the same host is another origin, however close its text.
    let port = a.addr().port();
    for other in [port.wrapping_add(1), port / 10] {
        let url = format!("http://127.0.0.1:{other}/api/v2/users");
        let e = client.send(get(&url)).await.expect_err("another port");
        assert_refused(&e, &format!("http://127.0.0.1:{other}"), &a, &["/api/v2/users"]);
    }
}

/// Paths handed to `Client::url` and `Client::request` resolve under A, or fail: URL joining
/// reads some of them as another host (`\\host` is `//host` to a WHATWG parser, leading
/// whitespace and tabs are dropped), and an absolute URL replaces the base altogether.
#[tokio::test]
async fn a_path_cannot_lead_client_url_to_another_origin() {
    let b = elsewhere();
    let a = api_server(String::new());
    let client = client_with_token(&a).await;
    let port = b.addr().port();
    let under_a = [
        format!("//127.0.0.1:{port}/x"),
        format!("///127.0.0.1:{port}/x"),
        format!("@127.0.0.1:{port}/x"),
        format!("user@127.0.0.1:{port}/x"),
        format!("127.0.0.1:{port}/x"),
        format!("http:127.0.0.1:{port}/x"),
        // `\` is `/` to the parser: an absolute path on A, outside the base's path.
        format!("/\\127.0.0.1:{port}/x"),
    ];
    for path in &under_a {
        let url = client.url(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let origin = (url.scheme(), url.host_str(), url.port());
        assert_eq!(origin, ("http", Some("127.0.0.1"), Some(a.addr().port())), "{path:?}");
        let request = client.request(Method::GET, path).unwrap().build().unwrap();
        assert_eq!(client.send(request).await.unwrap().status(), 200, "{path:?}");
    }
    let refused = [
        (format!("http://127.0.0.1:{port}/x"), format!("http://127.0.0.1:{port}")),
        (format!("https://127.0.0.1:{port}/x"), format!("https://127.0.0.1:{port}")),
        (format!("https:127.0.0.1:{port}/x"), format!("https://127.0.0.1:{port}")),
        (format!("http://user:pw@127.0.0.1:{port}/x"), format!("http://127.0.0.1:{port}")),
        (format!("\\\\127.0.0.1:{port}/x"), format!("http://127.0.0.1:{port}")),
        (format!(" //127.0.0.1:{port}/x"), format!("http://127.0.0.1:{port}")),
        (format!("\t//127.0.0.1:{port}/x"), format!("http://127.0.0.1:{port}")),
        (format!("http:\\\\127.0.0.1:{port}/x"), format!("http://127.0.0.1:{port}")),
        (format!("localhost:{port}/x"), "a localhost: URL".to_owned()),
    ];
    for (path, to) in &refused {
        let e = client.url(path).expect_err(path);
        assert_refused(&e, to, &a, &["/x", "user", "pw"]);
        let e = client.request(Method::GET, path).expect_err(path);
        assert_refused(&e, to, &a, &["/x", "user", "pw"]);
    }
    assert!(b.requests().is_empty(), "B was contacted: {:?}", b.requests());
    assert_eq!(api_requests(&a).len(), under_a.len());
}

/// Plain http to a host that is not loopback: another origin than A, refused before its name
/// is resolved (a lookup of `.invalid` would fail as a transport error, exit 5), and not let
/// through by `allow_insecure_http`, which loosens only what the API base may be.
#[tokio::test]
async fn plain_http_off_loopback_is_refused_before_any_lookup_even_when_allowed() {
    let a = api_server(String::new());
    for allow in [false, true] {
        let mut config = config(&a);
        config.allow_insecure_http = allow;
        let client = Client::new(config).unwrap();
        client.token().await.unwrap();
        let e = client
            .send(get("http://api.example.invalid/api/v2/users?q=1"))
            .await
            .expect_err("another origin, in clear text");
        assert_refused(&e, "http://api.example.invalid:80", &a, &["/api/v2/users", "q=1"]);
        assert_eq!(client.counters().requests, 0, "allow_insecure_http = {allow}");
    }
    assert!(api_requests(&a).is_empty());
}

#[tokio::test]
async fn a_client_of_tokens_only_sends_no_request() {
    let b = elsewhere();
    let a = api_server(String::new());
    let config = Config::token_only(a.url("/oauth/token"), credentials("client-1", "s").unwrap());
    let client = Client::new(config).unwrap();
    client.token().await.unwrap();
    let e = client.send(get(&b.url("/x?sig=1"))).await.expect_err("no API base");
    let text = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Config, "{text}");
    assert!(text.contains(&format!("request to http://{} not sent", b.addr())), "{text}");
    assert!(text.contains("no API base") && !text.contains("sig"), "{text}");
    assert!(b.requests().is_empty(), "B was contacted: {:?}", b.requests());
}

#[cfg(feature = "middleware")]
mod middleware {
    use std::sync::{Arc, Mutex};

    use http::Extensions;
    use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};

    use super::*;

    /// Records the `Authorization` of every attempt that gets past credflow.
    #[derive(Clone, Default)]
    struct Witness(Arc<Mutex<Vec<Option<String>>>>);

    #[async_trait::async_trait]
    impl Middleware for Witness {
        async fn handle(
            &self,
            req: reqwest::Request,
            extensions: &mut Extensions,
            next: Next<'_>,
        ) -> reqwest_middleware::Result<reqwest::Response> {
            let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_owned());
            self.0.lock().unwrap().push(auth);
            next.run(req, extensions).await
        }
    }

    fn stack(credflow: &Client, witness: &Witness) -> ClientWithMiddleware {
        // The stack's client is the application's, and so is its TLS provider: credflow installs none.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let inner = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        ClientBuilder::new(inner.build().unwrap())
            .with(credflow.clone())
            .with(witness.clone())
            .build()
    }

    fn credflow_error(e: reqwest_middleware::Error) -> credflow_reqwest::Error {
        match e {
            reqwest_middleware::Error::Middleware(e) => e.downcast().unwrap(),
            other => panic!("not credflow's refusal: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_middleware_refuses_another_origin_and_passes_its_own() {
        let b = elsewhere();
        let a = api_server(String::new());
        let credflow = client_with_token(&a).await;
        let witness = Witness::default();
        let http = stack(&credflow, &witness);

        let e = http.get(b.url("/api/v2/users?sig=abc")).send().await.expect_err("B");
        let to = format!("http://{}", b.addr());
        assert_refused(&credflow_error(e), &to, &a, &["/api/v2/users", "sig=abc"]);
        let e = http.get("http://api.example.invalid/x").send().await.expect_err("plain http");
        assert_refused(&credflow_error(e), "http://api.example.invalid:80", &a, &["/x"]);
        assert!(witness.0.lock().unwrap().is_empty(), "an attempt went down the stack");
        assert!(b.requests().is_empty(), "B was contacted: {:?}", b.requests());

        let url = credflow.url("/v2/users").unwrap();
        assert_eq!(http.get(url).send().await.unwrap().status(), 200);
        assert_eq!(*witness.0.lock().unwrap(), [Some("Bearer tok-1".to_owned())]);
        assert_eq!(api_requests(&a).len(), 1);
    }

    #[tokio::test]
    async fn a_client_of_tokens_only_in_a_stack_attaches_its_token_to_nothing() {
        let b = elsewhere();
        let a = api_server(String::new());
        let config =
            Config::token_only(a.url("/oauth/token"), credentials("client-1", "s").unwrap());
        let credflow = Client::new(config).unwrap();
        credflow.token().await.unwrap();
        let witness = Witness::default();
        let e = stack(&credflow, &witness).get(b.url("/x")).send().await.expect_err("no API base");
        assert_eq!(credflow_error(e).kind(), ErrorKind::Config);
        assert!(witness.0.lock().unwrap().is_empty(), "an attempt went down the stack");
        assert!(b.requests().is_empty(), "B was contacted: {:?}", b.requests());
    }
}
