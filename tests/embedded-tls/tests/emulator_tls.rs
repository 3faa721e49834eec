//! credflow-embedded over embedded-tls (TLS 1.3, `no_std`) over TCP, against the HTTPS
//! emulator: the device's whole stack but the network driver, on the host.
//!
//! The token endpoint and the API are two origins, as on Genesys Cloud (`login.localhost` and
//! `api.localhost`, both 127.0.0.1 by RFC 6761, both named by the emulator's certificate), so the
//! client alternates between two TLS connections over one set of record buffers. A TCP relay
//! between the client and the emulator counts connections (each one is a TLS handshake) and
//! can cut them all, as a server or load balancer closing idle connections does.
//!
//! Time: embassy-time's `std` driver and the emulator's tokio clock, as in the adapter's
//! host tests; assertions are on counts, waits are short.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use credflow_core::secret::Credentials;
use credflow_core::session::{Session, SessionConfig, TokenEndpoint};
use credflow_embedded::{Client, ClientConfig, Error, Request, Target, TransportError};
use credflow_embedded_tls::{TlsBuffers, TlsConnector};
use credflow_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig, EmulatorHandle,
};
use embassy_time::Duration;
use embedded_io_adapters::tokio_1::FromTokio;
use embedded_nal_async::{AddrType, Dns, TcpConnect};
use embedded_tls::TlsClock;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// TCP over tokio, to 127.0.0.1 only.
struct LoopbackTcp;

impl TcpConnect for LoopbackTcp {
    type Error = std::io::Error;
    type Connection<'a> = FromTokio<TcpStream>;

    async fn connect(&self, remote: SocketAddr) -> Result<FromTokio<TcpStream>, std::io::Error> {
        assert_eq!(remote.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "tests only reach loopback");
        Ok(FromTokio::new(TcpStream::connect(remote).await?))
    }
}

/// A DNS that is never asked: the tests' hosts are `*.localhost`, resolved by the connector.
struct NoDns;

impl Dns for NoDns {
    type Error = ();

    async fn get_host_by_name(&self, host: &str, _: AddrType) -> Result<IpAddr, ()> {
        panic!("DNS asked for {host}");
    }

    async fn get_host_by_address(&self, _: IpAddr, _: &mut [u8]) -> Result<usize, ()> {
        Err(())
    }
}

/// The operating system's random source, as a device's hardware RNG.
struct OsRng;

impl rand_core::RngCore for OsRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        getrandom::fill(dest).expect("OS randomness");
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for OsRng {}

/// The host's clock: certificate validity dates are checked.
struct HostClock;

impl TlsClock for HostClock {
    fn now() -> Option<u64> {
        Some(SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs())
    }
}

/// A TCP relay in front of the emulator: counts connections, cuts them all on demand.
struct Relay {
    port: u16,
    connections: Arc<AtomicUsize>,
    cut: watch::Sender<u32>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let (cut, _) = watch::channel(0);
        let (count, cuts) = (Arc::clone(&connections), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                    // Dropping both ends closes them: the client sees the server go.
                });
            }
        });
        Relay { port, connections, cut }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Closes every open connection, as a server dropping idle keep-alive connections.
    fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

struct Setup {
    emu: EmulatorHandle,
    relay: Relay,
    ca: Vec<u8>,
}

async fn setup(config: EmulatorConfig) -> Setup {
    let emu = Emulator::start(config.with_tls(true)).await.unwrap();
    let relay = Relay::start(emu.addr()).await;
    let ca = emu.ca_der().unwrap().to_vec();
    Setup { emu, relay, ca }
}

const QUEUES: &str = "/api/v2/routing/queues?pageSize=2";

type Tls<'d, const R: usize> = TlsConnector<'d, LoopbackTcp, NoDns, OsRng, R, 4096, HostClock>;

/// The TLS connector, with its refusals counted.
struct Counted<C> {
    inner: C,
    refused: Arc<AtomicUsize>,
}

impl<C: credflow_embedded::Connector> credflow_embedded::Connector for Counted<C> {
    type Connection = C::Connection;
    type Error = C::Error;

    async fn connect(&mut self, target: &Target) -> Result<C::Connection, C::Error> {
        let result = self.inner.connect(target).await;
        if result.is_err() {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}

type TestClient<'d, const R: usize> = Client<Counted<Tls<'d, R>>, 2048, 1>;

fn refused<const R: usize>(client: &mut TestClient<'_, R>) -> usize {
    client.connector_mut().refused.load(Ordering::SeqCst)
}

fn fast() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

/// A client whose token endpoint is `https://login.localhost` and API `https://api.localhost`
/// (through the relay).
fn client<'d, const R: usize>(
    setup: &Setup,
    buffers: &'d TlsBuffers<R, 4096>,
    ca: &'d [u8],
) -> TestClient<'d, R> {
    client_on(setup, ["login.localhost", "api.localhost"], buffers, ca, fast())
}

fn client_on<'d, const R: usize>(
    setup: &Setup,
    [login, api]: [&str; 2],
    buffers: &'d TlsBuffers<R, 4096>,
    ca: &'d [u8],
    config: ClientConfig,
) -> TestClient<'d, R> {
    let port = setup.relay.port;
    let token_url = format!("https://{login}:{port}/oauth/token");
    let api_base = format!("https://{api}:{port}");
    let credentials = Credentials::from_strs(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap();
    let endpoint = TokenEndpoint::new(&token_url).unwrap();
    let session = Session::new(credentials, endpoint, SessionConfig::default(), 7).unwrap();
    let connector = TlsConnector::new(&LoopbackTcp, &NoDns, buffers, ca, OsRng);
    let connector = Counted { inner: connector, refused: Arc::default() };
    Client::new(connector, session, &api_base, config).unwrap()
}

/// The record buffers a server sending full-size records needs.
const FULL_RECORD: usize = 16_640;

#[tokio::test]
async fn a_token_an_api_request_and_a_401_refreshed_and_retried_over_tls() {
    let setup = setup(EmulatorConfig::default()).await;
    let buffers = TlsBuffers::<FULL_RECORD, 4096>::new();
    let mut client = client(&setup, &buffers, &setup.ca);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 8192]);

    let token = client.token(&mut tx, &mut rx).await.unwrap();
    assert!(!token.as_str().is_empty());
    let response = client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap();
    assert_eq!(response.status, 200);
    assert!(response.body.starts_with(b"{"));
    // Two origins: a connection (and a handshake) for each, the first one closed before the
    // second is opened over the same record buffers.
    assert_eq!(setup.relay.connections(), 2);

    setup.emu.revoke_all_tokens();
    let response = client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap();
    assert_eq!(response.status, 200);
    let seen = setup.emu.counters();
    assert_eq!((seen.responses_401, seen.token.succeeded, seen.api.requests), (1, 2, 3));
    assert_eq!(client.counters().unauthorized, 1);
    // API, then token, then API again: each switch of origin is a new handshake, and the
    // connection to the other origin is closed first, so the buffers are free.
    assert_eq!(setup.relay.connections(), 4);
    assert_eq!(refused(&mut client), 0, "no connect refused for want of buffers");
}

#[tokio::test]
async fn a_429_waits_for_retry_after_on_the_kept_alive_connection() {
    let setup = setup(EmulatorConfig::default()).await;
    let buffers = TlsBuffers::<FULL_RECORD, 4096>::new();
    let mut client = client(&setup, &buffers, &setup.ca);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 8192]);
    client.token(&mut tx, &mut rx).await.unwrap();
    client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap();
    setup.emu.faults().force_429_for(StdDuration::from_millis(300));
    let start = embassy_time::Instant::now();
    let response = client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap();
    assert_eq!(response.status, 200);
    // Retry-After is whole seconds, rounded up: 1 s.
    assert!(start.elapsed() >= Duration::from_millis(900), "waited {:?}", start.elapsed());
    assert_eq!(setup.emu.counters().responses_429, 1);
    assert_eq!(client.counters().rate_limited, 1);
    assert_eq!(setup.relay.connections(), 2, "the 429 and its retry reuse the connection");
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced_with_a_new_handshake() {
    let setup = setup(EmulatorConfig::default()).await;
    let buffers = TlsBuffers::<FULL_RECORD, 4096>::new();
    let mut client = client(&setup, &buffers, &setup.ca);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 8192]);
    client.token(&mut tx, &mut rx).await.unwrap();
    client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap();
    assert_eq!(setup.relay.connections(), 2);
    client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap();
    assert_eq!(setup.relay.connections(), 2, "kept alive");

    setup.relay.cut_all();
    tokio::time::sleep(StdDuration::from_millis(50)).await;
    let response = client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(setup.relay.connections(), 3, "one reconnect, one new handshake");
    assert_eq!(client.counters().retries, 0, "a connection closed while idle is not a retry");
    assert_eq!(setup.emu.counters().api.requests, 3, "nothing sent twice to a live server");
}

#[tokio::test]
async fn a_record_larger_than_the_read_record_buffer_is_a_clear_error_not_a_hang() {
    let setup = setup(EmulatorConfig { queue_count: 200, ..EmulatorConfig::default() }).await;
    // Too small for the emulator's full-size records (rustls sends up to 16 KiB).
    let buffers = TlsBuffers::<4096, 4096>::new();
    let mut client = client(&setup, &buffers, &setup.ca);
    let (mut tx, mut rx) = ([0u8; 1024], [0u8; 32_768]);
    // The token response and a small page fit in one small record each.
    client.token(&mut tx, &mut rx).await.unwrap();
    client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap();
    let connections = setup.relay.connections();

    let big = Request::get("/api/v2/routing/queues?pageSize=200");
    let result =
        tokio::time::timeout(StdDuration::from_secs(10), client.request(&big, &mut tx, &mut rx))
            .await
            .expect("an error, not a hang");
    match result {
        Err(Error::ConnectionBufferTooSmall) => {}
        other => panic!("expected ConnectionBufferTooSmall, got {other:?}"),
    }
    assert_eq!(setup.relay.connections(), connections, "not retried on new connections");
    assert_eq!(setup.emu.counters().api.requests, 2);
    // The client goes on: a small answer on a new connection.
    let response = client.request(&Request::get(QUEUES), &mut tx, &mut rx).await.unwrap();
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn a_server_the_ca_did_not_sign_or_that_is_not_named_gets_nothing() {
    let setup = setup(EmulatorConfig::default()).await;
    let other = Emulator::start(EmulatorConfig::default().with_tls(true)).await.unwrap();
    let wrong_ca = other.ca_der().unwrap().to_vec();
    let short = ClientConfig { token_wait: Duration::from_millis(500), ..fast() };
    let hosts = ["login.localhost", "api.localhost"];
    // The certificate names `localhost`, `login.localhost` and `api.localhost` (and 127.0.0.1
    // as an IP address, which embedded-tls does not read): by IP literal, no name matches.
    let cases: [(&str, [&str; 2], &[u8]); 2] =
        [("another CA", hosts, &wrong_ca), ("an IP literal", ["127.0.0.1"; 2], &setup.ca)];
    for (case, hosts, ca) in cases {
        let buffers = TlsBuffers::<FULL_RECORD, 4096>::new();
        let mut client = client_on(&setup, hosts, &buffers, ca, short);
        let (mut tx, mut rx) = ([0u8; 1024], [0u8; 8192]);
        let connections = setup.relay.connections();
        let result =
            tokio::time::timeout(StdDuration::from_secs(10), client.token(&mut tx, &mut rx))
                .await
                .expect("bounded by the token wait");
        match result {
            Err(Error::TokenWait { last: Some(TransportError::Connect) }) => {}
            other => panic!("{case}: expected a refused handshake, got {other:?}"),
        }
        assert!(setup.relay.connections() > connections, "{case}: a handshake was tried");
    }
    assert_eq!(setup.emu.counters().token.requests, 0, "no credentials sent");
}
