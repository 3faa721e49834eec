//! NUCLEO-F767ZI keeping a Genesys Cloud token and calling one API every minute, with
//! credflow: embassy-net (DHCP, DNS) + embedded-tls (TLS 1.3, the server's certificate
//! verified) + credflow-embedded. The token is refreshed ahead of expiry with jitter between
//! calls; a 401 gets a new token and one retry, a 429 waits its `Retry-After`, token endpoint
//! outages back off behind a breaker, all as the session decides.
//!
//! The server's certificate chain is checked against `GENESYS_CA` and its name against the
//! host; its validity dates are not, as this board has no clock it can trust before the
//! network is up (`TlsConnector`'s clock parameter takes one: SNTP, a battery-backed RTC).

#![no_std]
#![no_main]

use credflow_board_f767zi::{Board, CLIENT_ID, CLIENT_SECRET, GENESYS_CA, REGION, init};
use credflow_core::env::parse_environment;
use credflow_core::secret::Credentials;
use credflow_core::session::{Session, SessionConfig, TokenEndpoint};
use credflow_embedded::{Client, ClientConfig, Request};
use credflow_embedded_tls::{TlsBuffers, TlsConnector};
use embassy_executor::Spawner;
use embassy_net::Stack;
use embassy_net::dns::DnsSocket;
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_stm32::peripherals::RNG;
use embassy_stm32::rng::Rng;
use embassy_time::{Duration, with_timeout};
use static_cell::StaticCell;

/// One TCP connection at a time; TLS reads whole records from its receive buffer as they come.
type Tcp = TcpClient<'static, 1, 1024, 1024>;
/// A full-size TLS record (16 KiB + 256) to read, 4 KiB to write.
type Buffers = TlsBuffers<16_640, 4096>;
type Connector = TlsConnector<'static, Tcp, DnsSocket<'static>, Rng<'static, RNG>, 16_640, 4096>;
/// Token up to 1 KiB, one API host, 64 bytes of token endpoint.
type GenesysClient = Client<Connector, 1024, 1, 64>;

/// The request head (with the token) and the token request.
const TX: usize = 1024;
/// The largest response read: a token response, one queue.
const RX: usize = 4096;

/// Built in a function of its own and kept in statics, so that `main`'s future does not keep
/// the construction's temporaries for good.
fn client(stack: Stack<'static>, mut rng: Rng<'static, RNG>) -> &'static mut GenesysClient {
    static TCP_STATE: StaticCell<TcpClientState<1, 1024, 1024>> = StaticCell::new();
    static TCP: StaticCell<Tcp> = StaticCell::new();
    static DNS: StaticCell<DnsSocket<'static>> = StaticCell::new();
    static TLS: StaticCell<Buffers> = StaticCell::new();
    static CLIENT: StaticCell<GenesysClient> = StaticCell::new();

    let tcp = TCP.init(TcpClient::new(stack, TCP_STATE.init(TcpClientState::new())));
    let dns = DNS.init(DnsSocket::new(stack));
    let buffers = TLS.init(Buffers::new());
    let seed = rng.next_u64();
    let connector = TlsConnector::new(tcp, dns, buffers, GENESYS_CA, rng);

    let env = parse_environment(REGION).expect("GENESYS_ENV_NAME names a Genesys Cloud region");
    let credentials =
        Credentials::from_strs(CLIENT_ID, CLIENT_SECRET).expect("client id and secret are set");
    let endpoint = TokenEndpoint::genesys(env).expect("the login URL fits 64 bytes");
    let session = Session::new(credentials, endpoint, SessionConfig::default(), seed)
        .expect("the default session configuration is valid");
    let client = Client::new(connector, session, env.api_base, ClientConfig::default())
        .expect("the API base is https");
    CLIENT.init(client)
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let Board { stack, rng, mut green, mut red } = init(spawner).await;
    let client = client(stack, rng);
    static TX_BUF: StaticCell<[u8; TX]> = StaticCell::new();
    static RX_BUF: StaticCell<[u8; RX]> = StaticCell::new();
    let (tx, rx) = (TX_BUF.init([0; TX]), RX_BUF.init([0; RX]));
    let request = Request::get("/api/v2/routing/queues?pageSize=1");
    loop {
        let ok = matches!(client.request(&request, tx, rx).await, Ok(r) if r.status == 200);
        green.set_level(ok.into());
        red.set_level((!ok).into());
        // Until the next call, keep the token fresh (refresh ahead of expiry, breaker
        // half-open probes); cancelling `maintain` at the minute is safe.
        let _ = with_timeout(Duration::from_secs(60), client.maintain(tx, rx)).await;
    }
}
