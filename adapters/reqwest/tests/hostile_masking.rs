//! A server that makes masking costly: the token endpoint issues a token of 8 000 `A`s and
//! `B0001` (within the session's capacity), then the API answers 404 with 64 KiB of `A`s and
//! headers of 4 000 `A`s. Every position of that text starts 8 000 bytes of the token: searched
//! the way it was (each position compared with the token until the `B`), one body took 5 s
//! under the session's lock, stalling every other request. The search has a budget of work
//! linear in the text's length now (`credflow_core::redact::work_limit`), and where it runs
//! out, the rest of the text is masked: the caller gets the answer, masked, at once. Against a
//! server on 127.0.0.1. No timing is asserted but a generous bound (the machine may be slow).

use std::time::{Duration, Instant};

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config};
use reqwest::Method;

/// What a masked text shows in the place of a credential.
const REDACTED: &str = "[redacted]";
/// Far above what the masking takes now (milliseconds), far below what it took (seconds per
/// text, minutes for the whole test).
const GENEROUS: Duration = Duration::from_secs(30);

fn hostile_token() -> String {
    format!("{}B0001", "A".repeat(8000))
}

fn server() -> Hostile {
    let token = hostile_token();
    Hostile::start(move |req| {
        if req.path() == "/oauth/token" {
            return Reply::json(
                200,
                &format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#),
            );
        }
        let mut reply = Reply::status(404).body(&[b'A'; 65536]);
        for i in 0..8 {
            reply = reply.header(&format!("x-filler-{i}"), &"A".repeat(4000));
        }
        reply
    })
}

fn client(server: &Hostile) -> Client {
    let mut config = Config::custom(
        server.url("/oauth/token"),
        server.url("/api"),
        credentials("client-1", "secret-1").unwrap(),
    );
    config.seed = Some(7);
    Client::new(config).unwrap()
}

/// The body and the headers of the 404 are masked at once: what the search could not afford
/// is masked whole, the token never shows (nor its first bytes at the end of a cut body).
#[tokio::test]
async fn a_body_made_to_be_costly_to_search_is_masked_at_once() {
    let server = server();
    let client = client(&server);
    let token = hostile_token();
    assert_eq!(client.token().await.unwrap().as_str(), token);
    let request = client.request(Method::GET, "missing").unwrap().build().unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(response.status(), 404);
    let headers: Vec<Vec<u8>> =
        response.headers().values().map(|v| v.as_bytes().to_vec()).collect();
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), 65536);

    let started = Instant::now();
    for cut in [false, true] {
        let masked = if cut { client.redact_cut_bytes(&body) } else { client.redact_bytes(&body) };
        let masked = String::from_utf8(masked.into_owned()).unwrap();
        // Searched for a while, then the rest masked: `A`s, then the marker, nothing after.
        assert!(masked.ends_with(REDACTED), "{}", &masked[masked.len() - 40..]);
        let searched = masked.len() - REDACTED.len();
        assert!(searched < body.len(), "{searched} bytes shown");
        assert!(masked[..searched].bytes().all(|b| b == b'A'));
        assert!(!masked.contains(&token));
    }
    // The proxy masks every header value (all of them together first, then one by one).
    let mut all = Vec::new();
    for value in &headers {
        all.extend_from_slice(value);
        all.push(b'\n');
        let masked = client.redact_bytes(value);
        if value.len() >= 4000 {
            assert!(masked.ends_with(REDACTED.as_bytes()));
        }
    }
    assert!(client.redact_bytes(&all).ends_with(REDACTED.as_bytes()));
    let took = started.elapsed();
    assert!(took < GENEROUS, "masking took {took:?}");

    // Another caller is not held up by the lock meanwhile: a token is served as before.
    assert_eq!(client.token().await.unwrap().as_str(), token);
}

/// The token echoed whole in such a body is masked, however the search ends there.
#[tokio::test]
async fn an_echo_of_the_long_token_in_a_costly_body_never_shows() {
    let server = server();
    let client = client(&server);
    let token = hostile_token();
    client.token().await.unwrap();
    for at in [0usize, 100, 30_000] {
        let body = format!("{}{token}{}", "A".repeat(at), "A".repeat(65536 - at - token.len()));
        let masked = client.redact_bytes(body.as_bytes());
        let masked = String::from_utf8(masked.into_owned()).unwrap();
        assert!(!masked.contains(&token), "echo at {at}");
        assert!(masked.contains(REDACTED));
    }
    // A short echo in an ordinary body is found exactly, as before.
    let body = format!(r#"{{"message":"bad token {token}","code":"bad.credentials"}}"#);
    let masked = client.redact(&body);
    assert_eq!(masked, r#"{"message":"bad token [redacted]","code":"bad.credentials"}"#);
}
