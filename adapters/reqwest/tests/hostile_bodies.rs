//! Bodies too large or too slow, from scripted servers on 127.0.0.1
//! (`credflow_emulator::hostile`): the client reads at most `Config::max_response_body` bytes
//! of a token response or an API error body, within the token request's timeout, and says so.

use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Recorded, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config, ErrorKind};
use reqwest::Method;

const TOKEN: &str = r#"{"access_token":"tok-1","token_type":"bearer","expires_in":3600}"#;
const MIB: u64 = 1024 * 1024;

fn config(server: &Hostile) -> Config {
    let mut config = Config::custom(
        server.url("/oauth/token"),
        server.url("/api"),
        credentials("client-1", "secret-1").unwrap(),
    );
    config.seed = Some(7);
    config.token_wait = Duration::from_secs(3);
    // On a client that reads a body whole, this is what bounds it (and this test's memory).
    config.token_timeout = Duration::from_secs(2);
    config
}

/// Tests that measure the process's memory run one at a time: another's growth is not theirs.
static MEASURED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The process's resident memory, from `/proc/self/status` (Linux), in bytes.
fn resident() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A token endpoint answering `reply`, the client's error, and how much the process grew.
async fn token_error(reply: Reply) -> (Hostile, credflow_reqwest::Error, u64) {
    let _alone = MEASURED.lock().await;
    let server = Hostile::start(move |_| reply.clone());
    let before = resident();
    let client = Client::new(config(&server)).unwrap();
    let e = client.token().await.expect_err("no token in that");
    let grown = resident().zip(before).map_or(0, |(after, before)| after.saturating_sub(before));
    (server, e, grown)
}

#[tokio::test]
async fn an_endless_token_response_is_cut_at_the_limit_and_refused() {
    // 8 KiB chunks for up to 1 GiB, without a length: a client reading it whole grows by
    // hundreds of MiB before its timeout.
    let reply = Reply::json(200, "").endless(&[b' '; 8192], 1024 * MIB);
    let (server, e, grown) = token_error(reply).await;
    let text = e.to_string();
    assert_eq!((e.kind(), e.status()), (ErrorKind::Config, Some(200)), "{text}");
    assert!(text.contains("HTTP 200: response larger than 65536 bytes"), "{text}");
    assert!(grown < 64 * MIB, "the process grew by {} MiB", grown / MIB);
    // Not fetched again: no token response that large is any use.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.requests_to("/oauth/token"), 1);
}

#[tokio::test]
async fn a_hundred_megabyte_token_response_is_refused_by_its_length() {
    let reply = Reply::json(200, "").repeat(b"{\"access_token\":\"", 100 * MIB);
    let (server, e, grown) = token_error(reply).await;
    let text = e.to_string();
    assert!(text.contains("response larger than 65536 bytes"), "{text}");
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(grown < 64 * MIB, "the process grew by {} MiB", grown / MIB);
    assert_eq!(server.requests_to("/oauth/token"), 1);
}

#[tokio::test]
async fn the_limit_is_the_configured_one_and_a_body_of_exactly_that_size_is_read() {
    let padded = |len: usize| format!("{TOKEN:<len$}");
    for (len, ok) in [(1024, true), (1025, false)] {
        let body = padded(len);
        assert_eq!(body.len(), len);
        let server = Hostile::start(move |_| Reply::json(200, &body));
        let mut config = config(&server);
        config.max_response_body = 1024;
        let client = Client::new(config).unwrap();
        match client.token().await {
            Ok(token) => assert!(ok && token.as_str() == "tok-1"),
            Err(e) => {
                assert!(!ok, "{len} bytes: {e}");
                assert!(e.to_string().contains("response larger than 1024 bytes"), "{e}");
            }
        }
    }
}

#[tokio::test]
async fn an_endless_token_error_is_cut_and_classified_by_its_status() {
    let reply = Reply::status(503).endless(&[b'x'; 8192], 1024 * MIB);
    let server = Hostile::start(move |_| reply.clone());
    let _alone = MEASURED.lock().await;
    let before = resident();
    let client = Client::new(config(&server)).unwrap();
    let mut events = client.events();
    let _ = client.token().await.expect_err("no token");
    let grown = resident().zip(before).map_or(0, |(after, before)| after.saturating_sub(before));
    assert!(grown < 64 * MIB, "the process grew by {} MiB", grown / MIB);
    // A 503 is worth retrying (with backoff): a few requests in the token wait, not a storm.
    let sent = server.requests_to("/oauth/token");
    assert!((2..=3).contains(&sent), "{sent} token requests in 3 s");
    let mut classes = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let credflow_reqwest::ClientEvent::Session(
            credflow_core::session::Event::TokenEndpointError { status, class },
        ) = event
        {
            classes.push((status, class));
        }
    }
    assert!(
        classes.contains(&(503, credflow_core::oauth::TokenErrorClass::Transient)),
        "{classes:?}"
    );
}

#[tokio::test]
async fn a_token_response_that_stalls_ends_at_the_token_timeout() {
    // A head, then nothing: the request timeout covers the body, so the client tries again
    // after its backoff instead of waiting forever.
    let server = Hostile::start(|_| Reply::json(200, "").stall());
    let mut config = config(&server);
    config.token_timeout = Duration::from_millis(300);
    let client = Client::new(config).unwrap();
    let e = client.token().await.expect_err("no token");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(server.requests_to("/oauth/token") >= 2, "the first request never ended");
}

/// The token and API server: tokens at `/oauth/token`, the rest scripted by `api`.
fn api_server(api: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Hostile {
    Hostile::start(
        move |req| {
            if req.path() == "/oauth/token" { Reply::json(200, TOKEN) } else { api(req) }
        },
    )
}

#[tokio::test]
async fn an_api_error_body_larger_than_the_limit_reaches_the_caller_whole() {
    let server = api_server(|_| Reply::json(404, "").repeat(b"0123456789abcdef", MIB + 3));
    let client = Client::new(config(&server)).unwrap();
    let request = client.request(Method::GET, "missing").unwrap().build().unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.url().as_str().ends_with("/api/missing"), "{}", response.url());
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len() as u64, MIB + 3);
    assert!(body.chunks(16).all(|c| b"0123456789abcdef".starts_with(c)));
}

#[tokio::test]
async fn an_endless_api_error_body_is_read_only_up_to_the_limit() {
    let server = api_server(|_| Reply::status(500).endless(&[b'x'; 8192], 1024 * MIB));
    let _alone = MEASURED.lock().await;
    let before = resident();
    let client = Client::new(config(&server)).unwrap();
    let request = client.request(Method::GET, "broken").unwrap().build().unwrap();
    // Retried as the policy says, each attempt read up to the limit, then handed over.
    let result = client.send(request).await;
    let grown = resident().zip(before).map_or(0, |(after, before)| after.saturating_sub(before));
    assert!(grown < 64 * MIB, "the process grew by {} MiB", grown / MIB);
    let attempts = server.requests_to("/api/broken");
    assert!((1..=4).contains(&attempts), "{attempts} attempts");
    if let Ok(response) = result {
        assert_eq!(response.status(), 500);
    }
}

/// A `Content-Length` near `usize::MAX` under a limit set that high ("no limit") sized the
/// token response's buffer before a byte arrived: a "capacity overflow" panic that took the
/// token driver down (every later `token()` failed after its wait, no refresh ever again). It
/// is a transport failure now, and the next token request is made.
#[tokio::test]
async fn a_huge_declared_length_under_no_limit_is_not_allocated() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&answered);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let reply: &[u8] = if n == 0 {
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9223372036854775808\r\n\r\n{"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 64\r\nConnection: close\r\n\r\n{\"access_token\":\"tok-2\",\"token_type\":\"bearer\",\"expires_in\":3600}"
            };
            let _ = stream.write_all(reply);
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let mut config = Config::custom(
        format!("{base}/oauth/token"),
        format!("{base}/api"),
        credentials("client-1", "secret-1").unwrap(),
    );
    config.seed = Some(7);
    config.token_wait = Duration::from_secs(5);
    config.max_response_body = usize::MAX;
    config.session.lifecycle.retry_base = credflow_core::Duration::from_millis(50);
    let client = Client::new(config).unwrap();
    let token = client.token().await.expect("a token from the second answer");
    assert_eq!(token.as_str(), "tok-2");
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 2);
}
