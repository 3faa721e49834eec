//! What the adapter connects to, and the trait the application implements to connect.

use core::fmt;

use credflow_core::http::url::{PlainHttp, Scheme, Url};
use embedded_io_async::{Read, Write};
use heapless::String;

use crate::error::InvalidUrl;

/// Longest host name a [`Target`] stores. Genesys Cloud hosts are about 30 bytes.
pub const HOST_CAPACITY: usize = 64;

/// A server to connect to: host, port, and whether TLS is expected.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    host: String<HOST_CAPACITY>,
    port: u16,
    tls: bool,
}

impl Target {
    /// The origin of an absolute `https` URL, or of an `http` URL to a loopback host (its path
    /// is ignored). Plain `http` to any other host is refused: see
    /// [`from_url_with`](Self::from_url_with).
    ///
    /// ```
    /// use credflow_core::http::url::UrlError;
    /// use credflow_embedded::{InvalidUrl, Target};
    /// let target = Target::from_url("https://api.mypurecloud.com")?;
    /// assert_eq!((target.host(), target.port(), target.is_tls()), ("api.mypurecloud.com", 443, true));
    /// assert_eq!(Target::from_url("http://127.0.0.1:8089")?.port(), 8089);
    /// assert_eq!(Target::from_url("http://api.example.invalid"), Err(InvalidUrl::Url(UrlError::InsecureHttp)));
    /// # Ok::<(), credflow_embedded::InvalidUrl>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, InvalidUrl> {
        Target::from_url_with(url, PlainHttp::LoopbackOnly)
    }

    /// [`from_url`](Self::from_url), with plain `http` allowed where `plain_http` says:
    /// [`PlainHttp::Anywhere`] is the explicit opt-in to send tokens or credentials in clear
    /// text to a host that is not loopback (logged as a warning with the `defmt` or `log`
    /// feature).
    pub fn from_url_with(url: &str, plain_http: PlainHttp) -> Result<Self, InvalidUrl> {
        let url = Url::parse_with(url, plain_http).map_err(InvalidUrl::Url)?;
        // Without a logger the check would still be linked: `warn!` only discards its text.
        #[cfg(any(feature = "defmt", feature = "log"))]
        if url.is_insecure() {
            warn!(
                "plain http to {} (opted in): secrets sent there cross the network in clear text",
                url.host
            );
        }
        // An IPv6 literal loses its brackets (byte tests: no `str` pattern code linked).
        let host = match url.host.as_bytes() {
            [b'[', .., b']'] => url.host.get(1..url.host.len().saturating_sub(1)),
            _ => None,
        }
        .unwrap_or(url.host);
        Ok(Target {
            host: String::try_from(host).map_err(|_| InvalidUrl::HostTooLong)?,
            port: url.port_or_default(),
            tls: url.scheme == Scheme::Https,
        })
    }

    /// The host name (or IP literal, without brackets): resolve it, and verify the server's
    /// certificate against it (TLS SNI).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `true` for `https`: the connection must be a TLS stream over TCP. `false` (`http`):
    /// a loopback host, or one allowed by the explicit opt-in
    /// ([`PlainHttp::Anywhere`](credflow_core::http::url::PlainHttp)).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The port to write in `Host` (RFC 9110 §7.2): `None` when it is the scheme's default.
    pub(crate) fn host_port(&self) -> Option<u16> {
        let default = if self.tls { 443 } else { 80 };
        (self.port != default).then_some(self.port)
    }

    /// Whether the host is an IPv6 literal (needs brackets in `Host`).
    pub(crate) fn is_ipv6(&self) -> bool {
        self.host.as_bytes().contains(&b':')
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Opens connections for the adapter: DNS, TCP and (for [`Target::is_tls`]) TLS are the
/// application's, so it picks its own stack (embassy-net, a modem's AT sockets, …) and TLS
/// library (embedded-tls, a secure element, …).
///
/// A plain (`http`) target is a loopback host unless the application opted in: `127.x.y.z`,
/// `::1`, or the name `localhost`, which a connector must resolve to a loopback address
/// itself (RFC 6761 §6.3), never through a DNS server.
///
/// The adapter keeps one connection alive and reuses it while the server allows; it drops it
/// (closing it) when the server said `Connection: close`, after a failure or a cancelled call,
/// and when the next request is for another target, before connecting there: it never holds
/// two connections, so a connector with room for one (one socket, one set of TLS record
/// buffers) suffices. It also drops it before a request not safe to repeat (a `POST`) once it
/// has idled [`ClientConfig::keep_alive_limit`](crate::ClientConfig::keep_alive_limit). A
/// connection the server closed while idle is noticed on the next request, which is sent again
/// on a fresh connection if it is safe to repeat, and fails otherwise (see the crate docs).
///
/// A connection whose read fails with [`ErrorKind::OutOfMemory`](embedded_io_async::ErrorKind)
/// (a TLS record larger than the connector's record buffer) ends the call with
/// [`Error::ConnectionBufferTooSmall`](crate::Error::ConnectionBufferTooSmall).
///
/// For HTTPS over embassy-net and embedded-tls, the repository's `tests/embedded-tls` crate is
/// a complete connector (its source is in the repository's README).
///
/// ```
/// use credflow_embedded::{Connector, Target};
/// # struct Tcp; struct Tls;
/// # impl embedded_io_async::ErrorType for Tls { type Error = core::convert::Infallible; }
/// # impl embedded_io_async::Read for Tls { async fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> { Ok(0) } }
/// # impl embedded_io_async::Write for Tls { async fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> { Ok(b.len()) } async fn flush(&mut self) -> Result<(), Self::Error> { Ok(()) } }
/// # async fn open_tls(_: &mut Tcp, _: &str, _: u16) -> Result<Tls, ()> { Ok(Tls) }
/// struct MyConnector { net: Tcp }
///
/// impl Connector for MyConnector {
///     type Connection = Tls;
///     type Error = ();
///     async fn connect(&mut self, target: &Target) -> Result<Tls, ()> {
///         // resolve target.host(), connect to target.port(), TLS handshake with SNI = host
///         open_tls(&mut self.net, target.host(), target.port()).await
///     }
/// }
/// ```
// Embedded executors run tasks on one core; a `Send` bound on the future would exclude the
// `!Send` sockets they hand out.
#[allow(async_fn_in_trait)]
pub trait Connector {
    /// A connected, ready stream (after the TLS handshake for `https` targets).
    type Connection: Read + Write;
    /// Why connecting failed; logged (`Debug`) and reported as [`TransportError::Connect`](crate::TransportError::Connect).
    type Error: fmt::Debug;

    /// Connects to `target`. Bounded by [`ClientConfig::connect_timeout`](crate::ClientConfig::connect_timeout).
    async fn connect(&mut self, target: &Target) -> Result<Self::Connection, Self::Error>;
}
