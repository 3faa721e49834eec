//! The same program written the do-it-yourself way, as an embedded developer would without
//! credflow: reqwless (HTTP/1.1 over embedded-tls 0.18, the server's certificate verified
//! against the same CA) posts the client-credentials request with Basic authentication,
//! serde-json-core reads the token, and the token is fetched again at a fixed margin before
//! its expiry and once after a 401. Nothing else: no jitter, no `Retry-After`, no backoff or
//! breaker, no single flight. It is the baseline BENCHMARKS.md compares credflow's image with.

#![no_std]
#![no_main]

use core::fmt::Write as _;

use credflow_board_f767zi::{Board, CLIENT_ID, CLIENT_SECRET, GENESYS_CA, REGION, init};
use embassy_executor::Spawner;
use embassy_net::dns::DnsSocket;
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_time::{Duration, Instant, Timer};
use heapless::String;
use reqwless::client::{HttpClient, TlsConfig, TlsVerify};
use reqwless::request::{Method, RequestBuilder};
use serde::Deserialize;
use static_cell::StaticCell;

type Tcp = TcpClient<'static, 1, 1024, 1024>;
type Http = HttpClient<'static, Tcp, DnsSocket<'static>>;

/// Fetch a new token this long before the old one expires.
const MARGIN: Duration = Duration::from_secs(300);
/// Room for a token (Genesys tokens are well under 1 KiB).
const TOKEN: usize = 1024;
/// The response buffer: head and body.
const RX: usize = 4096;

/// The fields of the token response the program uses.
#[derive(Deserialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    expires_in: u64,
}

/// The token and when to fetch the next.
struct Token {
    value: String<TOKEN>,
    refresh_at: Instant,
}

/// Why a call failed.
#[derive(Debug)]
enum Failure {
    /// reqwless: DNS, TCP, TLS, or an HTTP error.
    Http,
    /// The token endpoint answered something else than a token.
    Token,
}

impl From<reqwless::Error> for Failure {
    fn from(_: reqwless::Error) -> Self {
        Failure::Http
    }
}

/// The HTTP client over its own TLS buffers, in statics.
fn http(board_stack: embassy_net::Stack<'static>, seed: u64) -> &'static mut Http {
    static TCP_STATE: StaticCell<TcpClientState<1, 1024, 1024>> = StaticCell::new();
    static TCP: StaticCell<Tcp> = StaticCell::new();
    static DNS: StaticCell<DnsSocket<'static>> = StaticCell::new();
    static TLS_READ: StaticCell<[u8; 16_640]> = StaticCell::new();
    static TLS_WRITE: StaticCell<[u8; 4096]> = StaticCell::new();
    static HTTP: StaticCell<Http> = StaticCell::new();
    let tcp = TCP.init(TcpClient::new(board_stack, TCP_STATE.init(TcpClientState::new())));
    let dns = DNS.init(DnsSocket::new(board_stack));
    let verify = TlsVerify::Certificate { ca: GENESYS_CA, cert: None, key: None };
    let tls = TlsConfig::new(seed, TLS_READ.init([0; 16_640]), TLS_WRITE.init([0; 4096]), verify);
    HTTP.init(HttpClient::new_with_tls(tcp, dns, tls))
}

/// `POST https://login.<region>/oauth/token` with Basic authentication.
async fn fetch_token(http: &mut Http, rx: &mut [u8]) -> Result<Token, Failure> {
    let mut url: String<96> = String::new();
    write!(url, "https://login.{REGION}/oauth/token").map_err(|_| Failure::Token)?;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let mut request = http
        .request(Method::POST, &url)
        .await?
        .basic_auth(CLIENT_ID, CLIENT_SECRET)
        .headers(&form)
        .body(b"grant_type=client_credentials".as_slice());
    let response = request.send(rx).await?;
    if response.status.0 != 200 {
        return Err(Failure::Token);
    }
    let body = response.body().read_to_end().await?;
    let (token, _) =
        serde_json_core::from_slice::<TokenResponse<'_>>(body).map_err(|_| Failure::Token)?;
    let value = String::try_from(token.access_token).map_err(|_| Failure::Token)?;
    let life = Duration::from_secs(token.expires_in);
    let refresh_at = Instant::now() + life.checked_sub(MARGIN).unwrap_or(Duration::from_secs(0));
    Ok(Token { value, refresh_at })
}

/// `GET https://api.<region>/api/v2/routing/queues?pageSize=1` with the token: the status.
async fn call_api(http: &mut Http, token: &Token, rx: &mut [u8]) -> Result<u16, Failure> {
    let mut url: String<96> = String::new();
    write!(url, "https://api.{REGION}/api/v2/routing/queues?pageSize=1")
        .map_err(|_| Failure::Http)?;
    let mut bearer: String<{ TOKEN + 7 }> = String::new();
    write!(bearer, "Bearer {}", token.value).map_err(|_| Failure::Http)?;
    let auth = [("Authorization", bearer.as_str())];
    let mut request = http.request(Method::GET, &url).await?.headers(&auth);
    let response = request.send(rx).await?;
    let status = response.status.0;
    response.body().discard().await?;
    Ok(status)
}

/// One round: a token if there is none or it is due, the API call, and after a 401 a new
/// token and one more call.
async fn round(http: &mut Http, token: &mut Option<Token>, rx: &mut [u8]) -> Result<u16, Failure> {
    if token.as_ref().is_none_or(|t| Instant::now() >= t.refresh_at) {
        *token = Some(fetch_token(http, rx).await?);
    }
    let current = token.as_ref().ok_or(Failure::Token)?;
    let status = call_api(http, current, rx).await?;
    if status != 401 {
        return Ok(status);
    }
    let fresh = token.insert(fetch_token(http, rx).await?);
    call_api(http, fresh, rx).await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let Board { stack, mut rng, mut green, mut red } = init(spawner).await;
    let http = http(stack, rng.next_u64());
    static RX_BUF: StaticCell<[u8; RX]> = StaticCell::new();
    let rx = RX_BUF.init([0; RX]);
    let mut token = None;
    loop {
        let ok = matches!(round(http, &mut token, rx).await, Ok(200));
        green.set_level(ok.into());
        red.set_level((!ok).into());
        Timer::after(Duration::from_secs(60)).await;
    }
}
