//! The connector: resolve, connect, TLS 1.3 handshake with the server's certificate verified.

use core::fmt;
use core::marker::PhantomData;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use credflow_embedded::{Connector, Target};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embedded_nal_async::{AddrType, Dns, TcpConnect};
use embedded_tls::pki::CertVerifier;
use embedded_tls::{
    Aes128GcmSha256, Certificate, CryptoProvider, CryptoRngCore, NoClock, TlsClock, TlsConfig,
    TlsConnection, TlsContext, TlsError, TlsVerifier,
};

use crate::buffers::{Lease, TlsBuffers};

/// Room for the server's certificate chain as the verifier keeps it between the
/// `Certificate` and `CertificateVerify` handshake messages (on the handshake's stack).
pub const CERT_CAPACITY: usize = 4096;

/// A [`Connector`] for `https` targets: DNS and TCP from any `embedded-nal-async` stack
/// (embassy-net's `DnsSocket` and `TcpClient`), TLS 1.3 from embedded-tls
/// (`TLS_AES_128_GCM_SHA256`, ECDHE on P-256).
///
/// The server's certificate chain must lead to `ca` (DER), and the certificate must name the
/// target's host: see [`TlsConnector::new`] for exactly what is checked. `localhost` and
/// `*.localhost` resolve to 127.0.0.1 without asking DNS (RFC 6761 §6.3); an IP literal is
/// used as it is. Plain `http` targets are refused ([`ConnectError::NotTls`]).
///
/// `R` and `W` are the record buffers' sizes ([`TlsBuffers`]); `C` is the clock the
/// certificate's validity period is checked against: [`NoClock`] (the default) checks none,
/// for a device that does not know the date; one that does (SNTP, a battery-backed RTC)
/// passes its own [`TlsClock`].
pub struct TlsConnector<'d, T, D, G, const R: usize, const W: usize, C = NoClock>
where
    T: TcpConnect,
    D: Dns,
{
    tcp: &'d T,
    dns: &'d D,
    buffers: &'d TlsBuffers<R, W>,
    ca: &'d [u8],
    rng: G,
    _clock: PhantomData<C>,
}

impl<'d, T, D, G, const R: usize, const W: usize, C> TlsConnector<'d, T, D, G, R, W, C>
where
    T: TcpConnect,
    D: Dns,
    G: CryptoRngCore,
    C: TlsClock,
{
    /// A connector over `tcp` and `dns`, with `buffers` for the one connection at a time,
    /// trusting the certificate authority `ca` (DER), with `rng` for the handshake's
    /// ephemeral keys and randoms (a hardware RNG, or a CSPRNG seeded from one).
    ///
    /// What embedded-tls's verifier (`embedded_tls::pki::CertVerifier`) checks, and what it
    /// does not:
    /// - each certificate of the chain the server sent is signed by the one above it, and
    ///   the last one by `ca`'s key: ECDSA P-256 with SHA-256 (the `p384`, `ed25519` and
    ///   `rsa` features of embedded-tls add those; `rsa` needs an allocator). The server
    ///   must send its intermediates; `ca` is the root or an intermediate that signed the
    ///   last certificate sent;
    /// - the server's certificate names the target's host, in a `subjectAltName` DNS entry
    ///   (at most three are read, `*` matches one label) or else its common name. IP
    ///   addresses in `subjectAltName` are not read: connect by name;
    /// - the server proves it holds the certificate's key (the handshake's
    ///   `CertificateVerify` signature);
    /// - validity dates, only with a clock `C` other than [`NoClock`];
    /// - not checked: basic constraints, key usage, extended key usage, revocation.
    ///
    /// Another verifier (a secure element, pinning a key) plugs in where
    /// `CryptoProvider::verifier` hands out the `CertVerifier` in this file.
    pub fn new(
        tcp: &'d T,
        dns: &'d D,
        buffers: &'d TlsBuffers<R, W>,
        ca: &'d [u8],
        rng: G,
    ) -> Self {
        TlsConnector { tcp, dns, buffers, ca, rng, _clock: PhantomData }
    }

    async fn resolve(&self, host: &str) -> Result<IpAddr, ConnectError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(ip);
        }
        if host.eq_ignore_ascii_case("localhost")
            || host.len() > ".localhost".len()
                && host
                    .get(host.len() - ".localhost".len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"))
        {
            return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        self.dns.get_host_by_name(host, AddrType::Either).await.map_err(|_| ConnectError::Dns)
    }
}

impl<'d, T, D, G, const R: usize, const W: usize, C> Connector
    for TlsConnector<'d, T, D, G, R, W, C>
where
    T: TcpConnect,
    D: Dns,
    G: CryptoRngCore,
    C: TlsClock,
{
    type Connection = TlsStream<'d, T::Connection<'d>>;
    type Error = ConnectError;

    async fn connect(&mut self, target: &Target) -> Result<Self::Connection, ConnectError> {
        if !target.is_tls() {
            return Err(ConnectError::NotTls);
        }
        // Copies of the `'d` references: what they lend lives as long as the connector's
        // borrows, not as long as this call.
        let (tcp, buffers): (&'d T, &'d TlsBuffers<R, W>) = (self.tcp, self.buffers);
        let ip = self.resolve(target.host()).await?;
        let (lease, read, write) = buffers.lend().ok_or(ConnectError::Busy)?;
        let socket = tcp
            .connect(SocketAddr::new(ip, target.port()))
            .await
            .map_err(|e| ConnectError::Tcp(embedded_io_async::Error::kind(&e)))?;
        let mut stream = TlsStream { tls: TlsConnection::new(socket, read, write), _lease: lease };
        let config = TlsConfig::new().with_server_name(target.host());
        let provider = Provider::<'_, G, C> {
            rng: &mut self.rng,
            verifier: CertVerifier::new(Certificate::X509(self.ca)),
        };
        stream.tls.open(TlsContext::new(&config, provider)).await.map_err(ConnectError::Tls)?;
        Ok(stream)
    }
}

/// The handshake's randomness and verifier.
struct Provider<'a, G, C: TlsClock> {
    rng: &'a mut G,
    verifier: CertVerifier<'a, Aes128GcmSha256, C, CERT_CAPACITY>,
}

impl<G: CryptoRngCore, C: TlsClock> CryptoProvider for Provider<'_, G, C> {
    type CipherSuite = Aes128GcmSha256;
    // No client certificate: the signer is never asked for.
    type Signature = &'static [u8];

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Aes128GcmSha256>, TlsError> {
        Ok(&mut self.verifier)
    }
}

/// An open TLS connection, holding the record buffers until it is dropped.
pub struct TlsStream<'d, S: Read + Write> {
    // Declared before the lease, so dropped before it: the buffers are given back only once
    // nothing refers to them.
    tls: TlsConnection<'d, S, Aes128GcmSha256>,
    _lease: Lease<'d>,
}

impl<S: Read + Write> ErrorType for TlsStream<'_, S> {
    type Error = StreamError;
}

impl<S: Read + Write> Read for TlsStream<'_, S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        self.tls.read(buf).await.map_err(StreamError)
    }
}

impl<S: Read + Write> Write for TlsStream<'_, S> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, StreamError> {
        self.tls.write(buf).await.map_err(StreamError)
    }

    async fn flush(&mut self) -> Result<(), StreamError> {
        self.tls.flush().await.map_err(StreamError)
    }
}

/// A TLS error on an open connection.
///
/// Its [`kind`](embedded_io_async::Error::kind) is what credflow-embedded reports
/// (`TransportError::Io(kind)`): the transport's own kind for a socket error,
/// [`ErrorKind::OutOfMemory`] for a record larger than the read record buffer (the server
/// sends records up to 16 KiB plus overhead; a smaller buffer works only with servers that
/// send smaller records), [`ErrorKind::Other`] for the rest (a bad record, an alert, the
/// server closing the connection).
#[derive(Clone, Copy, Debug)]
pub struct StreamError(pub TlsError);

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            TlsError::InsufficientSpace => {
                f.write_str("TLS record larger than the read record buffer")
            }
            e => write!(f, "TLS: {e:?}"),
        }
    }
}

impl core::error::Error for StreamError {}

impl embedded_io_async::Error for StreamError {
    fn kind(&self) -> ErrorKind {
        match self.0 {
            TlsError::Io(kind) => kind,
            TlsError::InsufficientSpace => ErrorKind::OutOfMemory,
            _ => ErrorKind::Other,
        }
    }
}

/// Why [`TlsConnector`] could not connect.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The target is plain `http`: this connector only speaks TLS.
    NotTls,
    /// The host name did not resolve.
    Dns,
    /// The record buffers are held by another connection (one at a time).
    Busy,
    /// The TCP connection failed.
    Tcp(ErrorKind),
    /// The TLS handshake failed: `InvalidCertificate` or `InvalidSignature` for a server
    /// the verifier refused (see [`TlsConnector::new`]), an alert from the server, …
    Tls(TlsError),
}
