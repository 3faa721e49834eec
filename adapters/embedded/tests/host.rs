//! The embedded adapter on the host, over real TCP on 127.0.0.1: against the Genesys Cloud
//! emulator, and against tiny scripted HTTP servers for what the emulator does not do (chunked
//! bodies, silently closed keep-alive connections, servers that never answer).
//!
//! Time: embassy-time's `std` driver (real monotonic time, a timer thread). The emulator runs on
//! tokio's real clock too (token expiry, rate-limit windows, `Retry-After`), so both sides see
//! one time line; the mock driver would be a process-wide clock shared by the parallel tests and
//! out of step with the emulator. Waits are kept short (sub-second lifetimes, 100-300 ms
//! timeouts) and every assertion is on counts, never on exact timings.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use credflow_core::retry::policy::TransportKind;
use credflow_core::secret::Credentials;
use credflow_core::session::{ApiErrorKind, RetryReason, Session, SessionConfig, TokenEndpoint};
use credflow_embedded::{Client, ClientConfig, Connector, Error, Request, Target, TransportError};
use credflow_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig, EmulatorHandle,
};
use embassy_time::{Duration, Instant, Timer};
use embedded_io_adapters::tokio_1::FromTokio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Connects to 127.0.0.1 only; counts connections.
#[derive(Default)]
struct Loopback {
    connections: Arc<AtomicUsize>,
}

impl Connector for Loopback {
    type Connection = FromTokio<TcpStream>;
    type Error = std::io::Error;

    async fn connect(&mut self, target: &Target) -> Result<Self::Connection, std::io::Error> {
        assert_eq!(target.host(), "127.0.0.1", "tests only ever connect to loopback");
        assert!(!target.is_tls());
        self.connections.fetch_add(1, Ordering::SeqCst);
        Ok(FromTokio::new(TcpStream::connect(("127.0.0.1", target.port())).await?))
    }
}

type TestClient = Client<Loopback, 1024, 1>;

fn client(token_url: &str, api_base: &str, config: ClientConfig) -> TestClient {
    let credentials = Credentials::from_strs(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap();
    let endpoint = TokenEndpoint::new(token_url).unwrap();
    let session = Session::new(credentials, endpoint, SessionConfig::default(), 42).unwrap();
    Client::new(Loopback::default(), session, api_base, config).unwrap()
}

async fn emulator(config: EmulatorConfig) -> EmulatorHandle {
    Emulator::start(config).await.expect("emulator starts on 127.0.0.1")
}

fn emulator_client(emu: &EmulatorHandle) -> TestClient {
    client(&emu.token_url(), &emu.api_base(), ClientConfig::default())
}

const QUEUES: &str = "/api/v2/routing/queues?pageSize=2";

#[tokio::test]
async fn first_token_is_requested_once_and_cached() {
    let emu = emulator(EmulatorConfig::default()).await;
    let mut client = emulator_client(&emu);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 4096]);
    let token = client.token(&mut tx, &mut rx).await.unwrap();
    assert!(!token.as_str().is_empty());
    let again = client.token(&mut tx, &mut rx).await.unwrap().as_str().len();
    assert!(again > 0);
    assert_eq!(emu.counters().token.requests, 1);
    assert_eq!(emu.counters().token.succeeded, 1);
    assert!(rx.iter().all(|&b| b == 0), "the token response is wiped from rx");
    assert!(tx.iter().all(|&b| b == 0), "the secret is wiped from tx");
}

#[tokio::test]
async fn api_request_carries_the_token_and_reuses_the_connection() {
    let emu = emulator(EmulatorConfig::default()).await;
    let mut client = emulator_client(&emu);
    let connections = Arc::clone(&client.connector_mut().connections);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 8192]);
    for _ in 0..3 {
        let response = client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap();
        assert_eq!(response.status, 200);
        assert!(response.body.starts_with(b"{"), "a JSON page");
        assert!(
            response.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("inin-ratelimit-count"))
        );
    }
    let seen = emu.counters();
    assert_eq!((seen.token.requests, seen.api.requests), (1, 3));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "token and API share one kept-alive connection"
    );
}

#[tokio::test]
async fn token_is_refreshed_after_expiry_without_a_401() {
    // `expires_in` is whole seconds on the wire: a 1 s life is the shortest the client sees as is.
    let emu =
        emulator(EmulatorConfig::default().with_token_lifetime(StdDuration::from_secs(1))).await;
    let mut client = emulator_client(&emu);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 8192]);
    assert_eq!(client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap().status, 200);
    Timer::after(Duration::from_millis(1000)).await;
    assert_eq!(client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap().status, 200);
    let seen = emu.counters();
    assert_eq!(seen.token.requests, 2, "a second token was fetched");
    assert_eq!(seen.responses_401, 0, "before the old one was rejected");
}

#[tokio::test]
async fn maintain_refreshes_ahead_of_expiry() {
    let emu =
        emulator(EmulatorConfig::default().with_token_lifetime(StdDuration::from_secs(1))).await;
    // Token requests are at least `min_refresh_interval` apart (1 s by default): a 1 s token can
    // be refreshed ahead of its expiry only with a shorter interval.
    let mut config = SessionConfig::default();
    config.lifecycle.min_refresh_interval = credflow_core::Duration::from_millis(200);
    let credentials = Credentials::from_strs(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap();
    let endpoint = TokenEndpoint::new(&emu.token_url()).unwrap();
    let session = Session::new(credentials, endpoint, config, 42).unwrap();
    let mut client: TestClient =
        Client::new(Loopback::default(), session, &emu.api_base(), ClientConfig::default())
            .unwrap();
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 4096]);
    client.token(&mut tx, &mut rx).await.unwrap();
    let first = Instant::now();
    // The refresh point lies between half and 90 % of the life: one maintain() reaches it.
    client.maintain(&mut tx, &mut rx).await.unwrap();
    let waited = first.elapsed();
    assert!(waited < Duration::from_millis(1000), "refreshed before expiry, after {waited:?}");
    assert_eq!(emu.counters().token.requests, 2);
}

#[tokio::test]
async fn a_401_gets_a_new_token_and_one_retry() {
    let emu = emulator(EmulatorConfig::default()).await;
    let mut client = emulator_client(&emu);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 8192]);
    client.token(&mut tx, &mut rx).await.unwrap();
    emu.revoke_all_tokens();
    let response = client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap();
    assert_eq!(response.status, 200);
    let seen = emu.counters();
    assert_eq!((seen.responses_401, seen.token.requests, seen.api.requests), (1, 2, 2));
    assert_eq!(client.counters().unauthorized, 1);
}

#[tokio::test]
async fn a_429_waits_for_retry_after_then_succeeds() {
    let emu = emulator(EmulatorConfig::default()).await;
    let mut client = emulator_client(&emu);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 8192]);
    client.token(&mut tx, &mut rx).await.unwrap();
    emu.faults().force_429_for(StdDuration::from_millis(300));
    let start = Instant::now();
    let response = client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap();
    assert_eq!(response.status, 200);
    // Retry-After is whole seconds, rounded up: 1 s.
    assert!(start.elapsed() >= Duration::from_millis(900), "waited {:?}", start.elapsed());
    assert_eq!(emu.counters().responses_429, 1);
    assert_eq!(client.counters().rate_limited, 1);
}

#[tokio::test]
async fn a_response_larger_than_rx_is_a_typed_error() {
    let emu = emulator(EmulatorConfig::default()).await;
    let mut client = emulator_client(&emu);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 1024]);
    let big = Request::get("/api/v2/routing/queues?pageSize=100");
    match client.request(&big, &mut tx, &mut rx).await {
        Err(Error::ResponseTooLarge {
            status: Some(200),
            needed: Some(needed),
            capacity: 1024,
        }) => {
            assert!(needed > 1024)
        }
        other => panic!("expected ResponseTooLarge, got {other:?}"),
    }
    // The client is still usable for responses that fit.
    let small =
        client.request(&Request::get("/api/v2/routing/queues?pageSize=1"), &mut tx, &mut rx).await;
    assert_eq!(small.unwrap().status, 200);
}

#[tokio::test]
async fn a_tx_buffer_too_small_for_the_head_says_how_much_is_needed() {
    let emu = emulator(EmulatorConfig::default()).await;
    let mut client = emulator_client(&emu);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 4096]);
    client.token(&mut tx, &mut rx).await.unwrap();
    let mut small = [0u8; 64];
    match client.request(&Request::get(QUEUES), &mut small, &mut rx).await {
        Err(Error::RequestTooLarge { needed }) => assert!(needed > 64 && needed < 1024),
        other => panic!("expected RequestTooLarge, got {other:?}"),
    }
    assert_eq!(emu.counters().api.requests, 0, "nothing was sent");
}

// ----- scripted servers ------------------------------------------------------------------

/// What a scripted server does after writing a reply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Keep the connection for the next request.
    KeepOpen,
    /// Close the connection silently (no `Connection: close`).
    Close,
}

/// A reply, or silence: `None` reads the request and never answers.
type Reply = Option<(Vec<u8>, Then)>;

struct Scripted {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

/// Replies, taken in order by the requests of the connections that share them.
type Script = Arc<Mutex<VecDeque<Reply>>>;

/// An HTTP/1.1 server on 127.0.0.1 that answers the n-th request it reads with `replies[n]`.
async fn scripted(replies: Vec<Reply>) -> Scripted {
    let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
    serve(move || Arc::clone(&replies)).await
}

/// An HTTP/1.1 server on 127.0.0.1 whose n-th connection answers its requests with
/// `scripts[n]`, in order: what a request gets depends on the connection it came on.
async fn per_connection(scripts: Vec<Vec<Reply>>) -> Scripted {
    let mut scripts = scripts.into_iter();
    serve(move || Arc::new(Mutex::new(VecDeque::from(scripts.next().unwrap_or_default())))).await
}

/// An HTTP/1.1 server on 127.0.0.1 whose connections take their replies from `script_of`,
/// called once for each connection it accepts.
async fn serve(mut script_of: impl FnMut() -> Script + Send + 'static) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (seen, conns) = (Arc::clone(&requests), Arc::clone(&connections));
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            conns.fetch_add(1, Ordering::SeqCst);
            let (replies, seen) = (script_of(), Arc::clone(&seen));
            tokio::spawn(async move {
                while let Some(head) = read_request(&mut socket).await {
                    seen.lock().unwrap().push(head);
                    let reply = replies.lock().unwrap().pop_front().flatten();
                    let Some((bytes, then)) = reply else {
                        tokio::time::sleep(StdDuration::from_secs(30)).await;
                        return;
                    };
                    if socket.write_all(&bytes).await.is_err() || then == Then::Close {
                        return;
                    }
                }
            });
        }
    });
    Scripted { addr, requests, connections }
}

/// Reads one request (head and `Content-Length` body) and returns it as text; `None` at end of
/// stream.
async fn read_request(socket: &mut TcpStream) -> Option<String> {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        data.push(byte[0]);
    }
    let head = String::from_utf8(data).ok()?;
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    socket.read_exact(&mut body).await.ok()?;
    Some(head + std::str::from_utf8(&body).ok()?)
}

fn token_reply() -> Reply {
    let body = r#"{"access_token":"scripted-token","token_type":"bearer","expires_in":3600}"#;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    Some(([head.as_bytes(), body.as_bytes()].concat(), Then::KeepOpen))
}

fn ok_reply(body: &str, then: Then) -> Reply {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
    Some(([head.as_bytes(), body.as_bytes()].concat(), then))
}

impl Scripted {
    /// How many requests the server read whose request line starts with `line`.
    fn received(&self, line: &str) -> usize {
        self.requests.lock().unwrap().iter().filter(|head| head.starts_with(line)).count()
    }

    /// The requests the server read whose request line starts with `line`, in order.
    #[cfg(feature = "jwt")]
    fn requests_of(&self, line: &str) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|request| request.starts_with(line)).cloned().collect()
    }
}

fn scripted_client(server: &Scripted, config: ClientConfig) -> TestClient {
    let base = format!("http://{}", server.addr);
    client(&format!("{base}/oauth/token"), &base, config)
}

#[tokio::test]
async fn chunked_responses_are_decoded() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n\
        7\r\n{\"a\":[1\r\n1;ext=x\r\n,\r\nA\r\n2,3],\"b\":\"\r\n4\r\nok\"}\r\n0\r\nTrailer: 1\r\n\r\n"
        .to_vec();
    let server = scripted(vec![
        token_reply(),
        Some((chunked, Then::KeepOpen)),
        ok_reply("{}", Then::KeepOpen),
    ])
    .await;
    let mut client = scripted_client(&server, ClientConfig::default());
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    let response = client.request(&Request::get("/api/v2/things"), &mut tx, &mut rx).await.unwrap();
    assert_eq!(response.body, br#"{"a":[1,2,3],"b":"ok"}"#);
    // The connection survives a chunked body: the next request goes on it.
    let next = client.request(&Request::get("/api/v2/things"), &mut tx, &mut rx).await.unwrap();
    assert_eq!(next.body, b"{}");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    let requests = server.requests.lock().unwrap();
    assert!(requests[1].contains("Authorization: Bearer scripted-token\r\n"));
    assert!(requests[0].starts_with("POST /oauth/token HTTP/1.1\r\n"));
}

#[tokio::test]
async fn a_kept_alive_connection_closed_by_the_server_is_replaced() {
    let server = scripted(vec![
        token_reply(),
        ok_reply("first", Then::Close), // closes without saying so
        ok_reply("second", Then::KeepOpen),
    ])
    .await;
    let mut client = scripted_client(&server, ClientConfig::default());
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    let first = client.request(&Request::get("/api/v2/a"), &mut tx, &mut rx).await.unwrap();
    assert_eq!(first.body, b"first");
    // Let the FIN arrive, as it would while a device idles.
    Timer::after(Duration::from_millis(50)).await;
    let second = client.request(&Request::get("/api/v2/b"), &mut tx, &mut rx).await.unwrap();
    assert_eq!(second.body, b"second");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2, "one reconnect");
    assert_eq!(server.requests.lock().unwrap().len(), 3, "nothing sent twice to a live server");
    assert_eq!(client.counters().retries, 0, "a stale connection is not a retry");
}

/// What a server that reads a request and closes the connection without an answer does: fails
/// after acting on it, or closes a connection it had kept alive as the request arrives (its
/// idle timeout). The client cannot tell which.
fn read_and_close() -> Reply {
    Some((Vec::new(), Then::Close))
}

/// A `POST` on the kept-alive connection (idle for less than the keep-alive limit) that the
/// server reads and then closes without an answer is not sent again on a new connection, where
/// it would be carried out twice if the server had acted on it (RFC 9112 §9.3.1): the caller gets
/// the transport failure, which the retry policy does not retry for a `POST`. It was sent again.
#[tokio::test]
async fn a_post_on_a_connection_closed_while_idle_is_not_sent_twice() {
    let server = per_connection(vec![
        vec![token_reply(), read_and_close()],
        vec![ok_reply("carried out twice", Then::KeepOpen)],
    ])
    .await;
    let mut client = scripted_client(&server, ClientConfig::default());
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    let result = client.request(&Request::post("/api/v2/things", b"{}"), &mut tx, &mut rx).await;
    match result {
        Err(Error::Api(e)) => assert!(
            matches!(
                e.kind,
                ApiErrorKind::GaveUp { last: RetryReason::Transport(TransportKind::Reset), .. }
            ),
            "{e:?}"
        ),
        other => panic!("expected the transport failure, got {other:?}"),
    }
    assert_eq!(server.received("POST /api/v2/things "), 1, "the POST was sent twice");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

/// A `GET` (safe to repeat) in the same place is sent once more on a new connection, as before:
/// not a retry.
#[tokio::test]
async fn a_get_on_a_connection_closed_while_idle_is_sent_again_once() {
    let server = per_connection(vec![
        vec![token_reply(), read_and_close()],
        vec![ok_reply("listed", Then::KeepOpen)],
    ])
    .await;
    let mut client = scripted_client(&server, ClientConfig::default());
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    let response = client.request(&Request::get("/api/v2/things"), &mut tx, &mut rx).await;
    assert_eq!(response.map(|r| r.body.to_vec()).unwrap(), b"listed");
    assert_eq!(server.received("GET /api/v2/things "), 2);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    assert_eq!(client.counters().retries, 0, "a stale connection is not a retry");
}

/// A `POST` after the kept-alive connection idled for the keep-alive limit goes on a new
/// connection, opened first: the server, which reads what comes on the old one and closes it
/// (its idle timeout firing as the request arrives), never gets it, and it is carried out once.
/// It went on the old connection and was sent again on a new one, twice in all. A `GET` goes on
/// a kept-alive connection however long it idled.
#[tokio::test]
async fn a_post_after_the_keep_alive_limit_goes_on_a_new_connection() {
    let server = per_connection(vec![
        vec![token_reply(), read_and_close()],
        vec![ok_reply("created", Then::KeepOpen), ok_reply("listed", Then::KeepOpen)],
    ])
    .await;
    let config =
        ClientConfig { keep_alive_limit: Duration::from_millis(100), ..ClientConfig::default() };
    let mut client = scripted_client(&server, config);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    client.token(&mut tx, &mut rx).await.unwrap();
    Timer::after(Duration::from_millis(200)).await;
    let post = client.request(&Request::post("/api/v2/things", b"{}"), &mut tx, &mut rx).await;
    assert_eq!(post.map(|r| r.body.to_vec()).unwrap(), b"created");
    assert_eq!(server.received("POST /api/v2/things "), 1, "the POST was sent twice");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    Timer::after(Duration::from_millis(200)).await;
    let get = client.request(&Request::get("/api/v2/things"), &mut tx, &mut rx).await;
    assert_eq!(get.map(|r| r.body.to_vec()).unwrap(), b"listed");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2, "the GET reused the connection");
}

// ----- client_secret_jwt token requests on a connection closed while idle -------------------

/// Only with `client_secret_jwt` (the `jwt` feature, on by default).
#[cfg(feature = "jwt")]
mod jwt_resend {
    use credflow_core::UnixTime;
    use credflow_core::oauth::AuthMethod;

    use super::*;

    const TOKEN_POST: &str = "POST /oauth/token ";

    /// A client that signs its token requests with `client_secret_jwt`, with a wall clock.
    fn jwt_client(server: &Scripted, config: ClientConfig) -> TestClient {
        let base = format!("http://{}", server.addr);
        let credentials = Credentials::from_strs(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap();
        let endpoint = TokenEndpoint::new(&format!("{base}/oauth/token"))
            .unwrap()
            .with_auth(AuthMethod::ClientSecretJwt);
        let session = Session::new(credentials, endpoint, SessionConfig::default(), 42).unwrap();
        let mut client = Client::new(Loopback::default(), session, &base, config).unwrap();
        client.set_wall_clock(UnixTime::from_secs(1_800_000_000));
        client
    }

    /// A 401 that keeps the connection: the session drops the token, and the next token request
    /// goes on that kept-alive connection.
    fn unauthorized_reply() -> Reply {
        Some((b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec(), Then::KeepOpen))
    }

    /// The `jti` claim of the assertion in a token request, as sent (base64url).
    fn jti_of(request: &str) -> String {
        let assertion = request
            .split("\r\n\r\n")
            .nth(1)
            .and_then(|body| body.split('&').find_map(|f| f.strip_prefix("client_assertion=")))
            .expect("a client_secret_jwt token request carries client_assertion");
        let payload = assertion.split('.').nth(1).expect("header.payload.signature");
        let claims = String::from_utf8(base64url(payload)).unwrap();
        let jti = claims.split(r#""jti":""#).nth(1).and_then(|rest| rest.split('"').next());
        jti.expect("a jti claim").to_owned()
    }

    /// Decodes unpadded base64url (no base64 crate among this crate's dependencies).
    fn base64url(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            other => panic!("not base64url: {other}"),
        };
        let (mut out, mut bits, mut acc) = (Vec::new(), 0u32, 0u32);
        for c in text.bytes() {
            acc = (acc << 6) | u32::from(value(c));
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }

    /// A `client_secret_jwt` token request on the kept-alive connection that the server reads and
    /// closes without an answer (its idle timeout, or a failure after acting on it) is sent once
    /// more on a new connection, signed anew: a `jti` the server has not seen, so a server that
    /// accepts each once answers it. It was not sent again (its `jti` may be single-use): it failed
    /// in transport, and the lifecycle waited its backoff (`retry_base`, 1 s, half of it at least)
    /// before the next token request. No failure now, so no backoff: the session counts none.
    #[tokio::test]
    async fn a_jwt_token_request_on_a_connection_closed_while_idle_is_signed_anew_and_sent_again() {
        let server = per_connection(vec![
            vec![token_reply(), unauthorized_reply(), read_and_close()],
            vec![token_reply(), ok_reply("listed", Then::KeepOpen)],
        ])
        .await;
        let mut client = jwt_client(&server, ClientConfig::default());
        let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
        let response = client.request(&Request::get("/api/v2/things"), &mut tx, &mut rx).await;
        assert_eq!(response.map(|r| r.body.to_vec()).unwrap(), b"listed");

        let tokens = server.requests_of(TOKEN_POST);
        assert_eq!(
            tokens.len(),
            3,
            "the first token, the second lost with the connection and resent"
        );
        let jtis: Vec<String> = tokens.iter().map(|request| jti_of(request)).collect();
        assert_ne!(jtis[1], jtis[2], "the resend repeated the jti the server may have seen");
        assert_ne!(jtis[0], jtis[2]);
        assert_eq!(
            server.connections.load(Ordering::SeqCst),
            2,
            "the resend went on a new connection"
        );
        let counters = client.counters();
        assert_eq!(counters.token_requests, 2, "the resend is the same token request");
        assert_eq!(counters.token_failures, 0, "no failure, so no backoff before the next request");
        assert_eq!(counters.retries, 1, "the 401's; a stale connection is not a retry");
        assert!(tx.iter().all(|&b| b == 0), "the assertions (and the bearer token) wiped from tx");
    }

    /// A server that closes every connection it reads a token request on gets each request twice at
    /// most: the first on the kept-alive connection, the resend, signed anew, on a new connection,
    /// which is never resent from. The next token request (after the backoff of the failure) goes
    /// on a new connection too, and is sent once.
    #[tokio::test]
    async fn a_jwt_token_request_is_sent_twice_at_most_to_a_server_closing_every_connection() {
        let mut scripts = vec![vec![token_reply(), unauthorized_reply(), read_and_close()]];
        scripts.extend(std::iter::repeat_with(|| vec![read_and_close()]).take(20));
        let server = per_connection(scripts).await;
        // A caller that waits for a token long enough for the backoff of a failure or two.
        let config =
            ClientConfig { token_wait: Duration::from_millis(1_500), ..ClientConfig::default() };
        let mut client = jwt_client(&server, config);
        let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
        let result = client.request(&Request::get("/api/v2/things"), &mut tx, &mut rx).await;
        // The caller stops waiting (`TokenWait`), or is told at once that the next token request
        // comes later than it waits (`Api`).
        assert!(matches!(result, Err(Error::TokenWait { .. } | Error::Api(_))), "{result:?}");

        let counters = client.counters();
        let sent = server.received(TOKEN_POST) as u64;
        // Each token request went out once, and the one on the kept-alive connection once more:
        // one resend in all, none of a resend.
        assert!(sent >= 3, "the first token, the second request and its resend: {sent}");
        assert!(sent <= counters.token_requests + 1, "{sent} sent for {counters:?}");
        let jtis: Vec<String> = server.requests_of(TOKEN_POST).iter().map(|r| jti_of(r)).collect();
        let distinct: std::collections::HashSet<&String> = jtis.iter().collect();
        assert_eq!(distinct.len(), jtis.len(), "a jti sent twice: {jtis:?}");
    }
}

#[tokio::test]
async fn a_slow_api_server_times_out() {
    let server = scripted(vec![token_reply(), None]).await;
    let config = ClientConfig { io_timeout: Duration::from_millis(200), ..ClientConfig::default() };
    let mut client = scripted_client(&server, config);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    let start = Instant::now();
    // POST is not idempotent: a timeout (the server may be processing it) is not retried.
    let result = client.request(&Request::post("/api/v2/things", b"{}"), &mut tx, &mut rx).await;
    match result {
        Err(Error::Api(e)) => assert!(
            matches!(
                e.kind,
                ApiErrorKind::GaveUp { last: RetryReason::Transport(TransportKind::Timeout), .. }
            ),
            "{e:?}"
        ),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test]
async fn a_slow_token_endpoint_times_out_and_the_wait_is_bounded() {
    let server = scripted(vec![None, None, None, None, None, None]).await;
    let config = ClientConfig {
        token_timeout: Duration::from_millis(100),
        token_wait: Duration::from_millis(400),
        ..ClientConfig::default()
    };
    let mut client = scripted_client(&server, config);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    let start = Instant::now();
    match client.token(&mut tx, &mut rx).await {
        Err(Error::TokenWait { last: Some(TransportError::Timeout) }) => {}
        other => panic!("expected TokenWait after a timeout, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(2), "took {took:?}");
}

/// A token request takes no longer than the call that sent it waits: `token()` gives up at
/// `token_wait` (300 ms here) even though `token_timeout` (5 s) would wait longer for a token
/// endpoint that never answers. Cut off there, the request is abandoned, not a failure of the
/// endpoint: no transport failure is reported for it. So does `request()` without a deadline:
/// its first token request was bounded by `token_timeout` alone, and its wait for a token
/// began only after it (5.3 s).
#[tokio::test]
async fn a_token_wait_bounds_the_token_request_it_waits_for() {
    let server = scripted(vec![None, None]).await;
    let config = ClientConfig {
        token_timeout: Duration::from_secs(5),
        token_wait: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let mut client = scripted_client(&server, config);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    let start = Instant::now();
    match client.token(&mut tx, &mut rx).await {
        Err(Error::TokenWait { last: None }) => {}
        other => panic!("expected TokenWait without a transport failure, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(server.requests.lock().unwrap().len(), 1);

    let server = scripted(vec![None]).await;
    let mut client = scripted_client(&server, config);
    let start = Instant::now();
    let result = client.request(&Request::get("/api/v2/things"), &mut tx, &mut rx).await;
    let took = start.elapsed();
    // The caller stops waiting (`TokenWait`), or is told at once that the next token request
    // comes later than it waits (`Api`).
    assert!(matches!(result, Err(Error::TokenWait { .. } | Error::Api(_))), "{result:?}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2), "took {took:?}");
}

/// A request's deadline bounds every exchange made for it: the token request it waits for
/// (`token_timeout` 5 s) and its own attempt (`io_timeout` 5 s), against servers that never
/// answer.
#[tokio::test]
async fn a_request_deadline_bounds_its_exchanges() {
    let long = ClientConfig {
        token_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let mut request = Request::get("/api/v2/things");
    request.deadline = Some(Duration::from_millis(300));
    // The token endpoint never answers.
    let server = scripted(vec![None]).await;
    let mut client = scripted_client(&server, long);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    let start = Instant::now();
    let result = client.request(&request, &mut tx, &mut rx).await;
    let took = start.elapsed();
    assert!(matches!(result, Err(Error::Api(_))), "{result:?}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2), "took {took:?}");
    // The API never answers.
    let server = scripted(vec![token_reply(), None]).await;
    let mut client = scripted_client(&server, long);
    let start = Instant::now();
    let result = client.request(&request, &mut tx, &mut rx).await;
    let took = start.elapsed();
    assert!(matches!(result, Err(Error::Api(_))), "{result:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(server.requests.lock().unwrap().len(), 2, "a token request, one attempt");
}

/// Connects to 127.0.0.1, but every connection after the first takes `slow` to open (a device
/// whose network went sluggish after its first request).
struct SlowReconnect {
    connected: bool,
    slow: Duration,
}

impl Connector for SlowReconnect {
    type Connection = FromTokio<TcpStream>;
    type Error = std::io::Error;

    async fn connect(&mut self, target: &Target) -> Result<Self::Connection, std::io::Error> {
        assert_eq!(target.host(), "127.0.0.1", "tests only ever connect to loopback");
        if std::mem::replace(&mut self.connected, true) {
            Timer::after(self.slow).await;
        }
        Ok(FromTokio::new(TcpStream::connect(("127.0.0.1", target.port())).await?))
    }
}

/// A kept-alive connection the server closed is replaced within the exchange's own time: the
/// reconnect does not get `connect_timeout` (15 s) on top of it.
#[tokio::test]
async fn a_reconnect_ends_with_the_exchange() {
    let server = scripted(vec![token_reply(), ok_reply("first", Then::Close)]).await;
    let base = format!("http://{}", server.addr);
    let credentials = Credentials::from_strs(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap();
    let endpoint = TokenEndpoint::new(&format!("{base}/oauth/token")).unwrap();
    // No retries: the test is about the resend on a new connection, within the one attempt.
    let mut session_config = SessionConfig::default();
    session_config.retry.max_retries = 0;
    let session = Session::new(credentials, endpoint, session_config, 42).unwrap();
    let connector = SlowReconnect { connected: false, slow: Duration::from_secs(5) };
    let config = ClientConfig { io_timeout: Duration::from_millis(300), ..ClientConfig::default() };
    let mut client: Client<SlowReconnect, 1024, 1> =
        Client::new(connector, session, &base, config).unwrap();
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    let first = client.request(&Request::get("/api/v2/a"), &mut tx, &mut rx).await.unwrap();
    assert_eq!(first.body, b"first");
    Timer::after(Duration::from_millis(50)).await;
    let start = Instant::now();
    // A GET: sent again on a new connection (a POST is not).
    let mut request = Request::get("/api/v2/b");
    request.deadline = Some(Duration::from_secs(10));
    let result = client.request(&request, &mut tx, &mut rx).await;
    let took = start.elapsed();
    assert!(result.is_err(), "{result:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// An attempt cut by its request's own deadline is the caller's limit, not a failure of the
/// API host: five requests with a short deadline against an API that never answers left its
/// breaker open (it opens after three failures), and the next request, without a deadline,
/// failed fast. Now the breaker stays closed and that request is answered.
#[tokio::test]
async fn attempts_cut_by_their_deadline_do_not_open_the_breaker() {
    let mut script = vec![token_reply()];
    script.extend(std::iter::repeat_with(|| None).take(5));
    script.push(ok_reply("answered", Then::KeepOpen));
    let server = scripted(script).await;
    let config = ClientConfig { io_timeout: Duration::from_secs(5), ..ClientConfig::default() };
    let mut client = scripted_client(&server, config);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    for _ in 0..5 {
        let mut request = Request::get("/api/v2/slow");
        request.deadline = Some(Duration::from_millis(150));
        let result = client.request(&request, &mut tx, &mut rx).await;
        assert!(matches!(result, Err(Error::Api(_))), "{result:?}");
    }
    let answered = client.request(&Request::get("/api/v2/a"), &mut tx, &mut rx).await;
    assert_eq!(answered.map(|r| r.body.to_vec()).unwrap(), b"answered");
}

/// A token request whose connection is still being opened when the caller's limit comes is
/// abandoned as one cut waiting for its answer is: no transport failure of the endpoint's
/// (it was a connect failure, with backoff and the token breaker told).
#[tokio::test]
async fn a_token_request_cut_while_connecting_is_abandoned() {
    let server = scripted(vec![]).await;
    let base = format!("http://{}", server.addr);
    let credentials = Credentials::from_strs(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap();
    let endpoint = TokenEndpoint::new(&format!("{base}/oauth/token")).unwrap();
    let session = Session::new(credentials, endpoint, SessionConfig::default(), 42).unwrap();
    // Every connection takes 5 s to open (the first one included).
    let connector = SlowReconnect { connected: true, slow: Duration::from_secs(5) };
    let config = ClientConfig { token_wait: Duration::from_millis(300), ..ClientConfig::default() };
    let mut client: Client<SlowReconnect, 1024, 1> =
        Client::new(connector, session, &base, config).unwrap();
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    let start = Instant::now();
    match client.token(&mut tx, &mut rx).await {
        Err(Error::TokenWait { last: None }) => {}
        other => panic!("expected TokenWait without a transport failure, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert_eq!(client.counters().token_failures, 0, "no failure of the endpoint's counted");
}

/// A token request is not started once the caller's limit has passed: it would be cut at
/// once, its secret perhaps written on the connection already. With no time to wait for a
/// token (`token_wait` zero), nothing is sent.
#[tokio::test]
async fn no_token_request_is_started_past_the_callers_limit() {
    let server = scripted(vec![token_reply()]).await;
    let config = ClientConfig { token_wait: Duration::from_millis(0), ..ClientConfig::default() };
    let mut client = scripted_client(&server, config);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    match client.token(&mut tx, &mut rx).await {
        Err(Error::TokenWait { .. }) => {}
        other => panic!("expected TokenWait, got {other:?}"),
    }
    Timer::after(Duration::from_millis(100)).await;
    assert_eq!(server.requests.lock().unwrap().len(), 0, "a token request was sent");
}

/// A token endpoint that answers the first token request at once with a token of `life_s`
/// seconds, and the others after `later` (never: `None`) with another; the API answers every
/// request at once, with the token it was sent. Counts token requests.
async fn slow_after_first_token(
    life_s: u32,
    later: Option<StdDuration>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tokens = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&tokens);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let tokens = Arc::clone(&counted);
            tokio::spawn(async move {
                while let Some(head) = read_request(&mut socket).await {
                    let reply = if head.starts_with("POST /oauth/token ") {
                        let token = if tokens.fetch_add(1, Ordering::SeqCst) == 0 {
                            "first"
                        } else {
                            let Some(later) = later else {
                                tokio::time::sleep(StdDuration::from_secs(30)).await;
                                return;
                            };
                            tokio::time::sleep(later).await;
                            "second"
                        };
                        let body = format!(
                            r#"{{"access_token":"{token}","token_type":"bearer","expires_in":{life_s}}}"#
                        );
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    } else {
                        let token = if head.contains("Bearer second") { "second" } else { "first" };
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{token}", token.len())
                    };
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, tokens)
}

/// A refresh ahead of expiry, run by a call with a deadline shorter than the token endpoint's
/// answers, takes at most half of the call's time: the call is then served with the token it
/// holds. It took all of it, and the call failed though its token was good; the refresh, cut,
/// was abandoned and tried again by the next call a second later, for as long as the token
/// lasted. Now the next refresh gets all of a call's time (the endpoint may be slower than half
/// a call, and faster than all of it): against an endpoint that never answers, that call fails,
/// and the refreshes abandoned in a row are held back as failures are.
#[tokio::test]
async fn a_refresh_ahead_of_expiry_does_not_fail_a_call_that_holds_a_token() {
    // A 4 s token: its refresh is due 1-2 s after it was requested, it is handed out until
    // 3.6 s.
    let (addr, tokens) = slow_after_first_token(4, None).await;
    let base = format!("http://{addr}");
    let config = ClientConfig { token_timeout: Duration::from_secs(5), ..ClientConfig::default() };
    let mut client = client(&format!("{base}/oauth/token"), &base, config);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    let start = Instant::now();
    let first = client.request(&Request::get("/api/v2/a"), &mut tx, &mut rx).await;
    assert_eq!(first.map(|r| r.status).ok(), Some(200));
    Timer::at(start + Duration::from_millis(2_100)).await;
    let mut served = Vec::new();
    while start.elapsed() < Duration::from_millis(3_300) {
        let mut request = Request::get("/api/v2/b");
        request.deadline = Some(Duration::from_millis(200));
        let result = client.request(&request, &mut tx, &mut rx).await;
        served.push(result.is_ok());
        Timer::after(Duration::from_millis(50)).await;
    }
    assert!(served.len() >= 5, "{served:?}");
    assert!(served[0], "the call that ran the first refresh was served: {served:?}");
    // The first token, the refresh cut at half a call, then at most one more (1 s later, the
    // spacing), given all of a call's time: the only call that may fail.
    let sent = tokens.load(Ordering::SeqCst);
    assert!((2..=3).contains(&sent), "{sent} token requests");
    let failed = served.iter().filter(|ok| !**ok).count();
    assert!(failed <= sent - 2, "{failed} calls failed, {sent} token requests: {served:?}");
}

/// A token endpoint slower than half a call's deadline but faster than all of it: the first
/// refresh ahead of expiry is cut at the half (the call is served with its token), the next
/// call gives the refresh all its time, and the token is refreshed before it ends.
#[tokio::test]
async fn a_refresh_cut_at_half_a_call_is_given_all_of_the_next() {
    let (addr, tokens) = slow_after_first_token(4, Some(StdDuration::from_millis(250))).await;
    let base = format!("http://{addr}");
    let mut client = client(&format!("{base}/oauth/token"), &base, ClientConfig::default());
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 512]);
    let start = Instant::now();
    let first = client.request(&Request::get("/api/v2/a"), &mut tx, &mut rx).await;
    assert_eq!(first.map(|r| r.body.to_vec()).ok(), Some(b"first".to_vec()));
    Timer::at(start + Duration::from_millis(2_100)).await;
    let mut bodies = Vec::new();
    while start.elapsed() < Duration::from_millis(3_400) {
        let mut request = Request::get("/api/v2/b");
        request.deadline = Some(Duration::from_millis(400));
        let result = client.request(&request, &mut tx, &mut rx).await;
        let body = result.map(|r| r.body.to_vec());
        assert!(body.is_ok(), "call {} at {:?}: {body:?}", bodies.len(), start.elapsed());
        bodies.extend(body);
        Timer::after(Duration::from_millis(50)).await;
    }
    assert_eq!(bodies.last().map(Vec::as_slice), Some(&b"second"[..]), "refreshed");
    assert_eq!(tokens.load(Ordering::SeqCst), 3, "the first token, a refresh cut, one answered");
}
