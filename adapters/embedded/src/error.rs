//! The adapter's errors: what the core decided ([`Error::Api`]), and what only an adapter can
//! know (buffers too small, a malformed response, a misconfigured request).

use core::fmt;

use credflow_core::http::url::UrlError;
use credflow_core::oauth::EncodeError;
use credflow_core::session::ApiError;
use embedded_io_async::ErrorKind;

/// A response or request that is not valid HTTP/1.1, or a request the caller built wrongly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum HttpError {
    /// The response head is not HTTP/1.x: the peer is not an HTTP server, or TLS is missing
    /// (an `https` URL served over a plain TCP connection, or the reverse).
    MalformedHead,
    /// The response head has more than [`MAX_HEADERS`](crate::MAX_HEADERS) fields.
    TooManyHeaders,
    /// More than [`MAX_INTERIM`](crate::MAX_INTERIM) interim (1xx) responses came before the
    /// final one.
    TooManyInterim,
    /// `Content-Length` is not a number, or two values disagree.
    InvalidContentLength,
    /// The chunked body is malformed (a size that is not hex, too long, or missing CRLF).
    InvalidChunk,
    /// The request path is not an origin-form path (`/…`, visible ASCII, no spaces).
    InvalidPath,
    /// A request header name is not a token, or its value contains CR, LF or another control.
    InvalidHeader,
    /// A request header the adapter sets itself (`Host`, `Authorization`, `Content-Length`,
    /// `Transfer-Encoding`, `Connection`) was passed by the caller.
    ReservedHeader,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpError::MalformedHead => {
                "malformed HTTP response head (not HTTP, or a TLS mismatch)"
            }
            HttpError::TooManyHeaders => "too many header fields in the response",
            HttpError::TooManyInterim => "too many interim (1xx) responses",
            HttpError::InvalidContentLength => "invalid or conflicting Content-Length",
            HttpError::InvalidChunk => "malformed chunked transfer coding",
            HttpError::InvalidPath => "request path must start with '/' and be visible ASCII",
            HttpError::InvalidHeader => "request header name or value is not allowed",
            HttpError::ReservedHeader => "request header is set by the adapter itself",
        })
    }
}

impl core::error::Error for HttpError {}

/// Why one exchange with a server failed in transport. The session decides whether to retry;
/// callers see these only inside [`Error::Api`] (as the last retry reason) or
/// [`Error::TokenWait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TransportError {
    /// The connector could not connect (DNS, TCP, TLS handshake), or not within the connect
    /// timeout.
    Connect,
    /// The connection failed while the request was written or the response read.
    Io(ErrorKind),
    /// The server closed the connection in the middle of the response.
    Closed,
    /// The server did not answer within the I/O timeout.
    Timeout,
    /// The server answered with something that is not HTTP/1.1.
    Http(HttpError),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Connect => f.write_str("could not connect (DNS, TCP or TLS)"),
            TransportError::Io(kind) => write!(f, "connection failed: {kind:?}"),
            TransportError::Closed => f.write_str("server closed the connection mid-response"),
            TransportError::Timeout => f.write_str("server did not answer in time"),
            TransportError::Http(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for TransportError {}

/// A URL given to the client is refused: see the inner [`UrlError`] (malformed, userinfo, or
/// plain `http` to a host that is not loopback without the opt-in), or its host is longer than
/// [`HOST_CAPACITY`](crate::HOST_CAPACITY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum InvalidUrl {
    /// The core's URL check refused it: [`UrlError::InsecureHttp`] for `http` to a host that is
    /// not loopback (opt in with [`PlainHttp::Anywhere`](credflow_core::http::url::PlainHttp),
    /// see [`ClientConfig::plain_http`](crate::ClientConfig::plain_http)), [`UrlError::UserInfo`]
    /// for `user:password@`, and so on.
    Url(UrlError),
    /// The host does not fit [`HOST_CAPACITY`](crate::HOST_CAPACITY).
    HostTooLong,
}

impl fmt::Display for InvalidUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidUrl::Url(e) => write!(f, "{e}"),
            InvalidUrl::HostTooLong => f.write_str("URL host is too long"),
        }
    }
}

impl core::error::Error for InvalidUrl {}

/// What can go wrong with a [`Client`](crate::Client) call. Small and `Copy`: the server's
/// side of an [`Error::Api`] (its error text, a 403's diagnosis, the correlation id) stays in
/// the session, read with [`Session::error_detail`](credflow_core::session::Session::error_detail)
/// through [`Client::session`](crate::Client::session) before the next call on the client (which
/// may record a newer failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The session gave up or refused: credentials rejected, 403, 401 twice, retries exhausted
    /// (the last retry reason says which failure), breaker open, deadline passed.
    Api(ApiError),
    /// A response does not fit the receive buffer: the caller's `rx` is `capacity` bytes, the
    /// response needs `needed` (unknown for chunked or close-delimited bodies). Enlarge `rx`.
    /// The session was told of the response; the connection was dropped.
    ResponseTooLarge {
        /// The HTTP status of the response that did not fit (`None`: even its head did not).
        status: Option<u16>,
        /// Bytes the head and body need together, when the server said.
        needed: Option<usize>,
        /// The receive buffer's size.
        capacity: usize,
    },
    /// The connection could not hold what the server sent: its read reported
    /// [`ErrorKind::OutOfMemory`], as a TLS stream does for a record larger than its read
    /// record buffer (servers send records of up to 16 KiB plus 256 bytes of overhead).
    /// Enlarge the connector's buffer; `rx` is not the cause. Not retried (a new connection
    /// would fail alike); the connection was dropped.
    ConnectionBufferTooSmall,
    /// The request head (or the token request) does not fit the transmit buffer: `tx` must be
    /// at least `needed` bytes. Long tokens and many caller headers make heads long.
    RequestTooLarge {
        /// Bytes the request head needs.
        needed: usize,
    },
    /// The token request could not be encoded: a buffer too small or a configuration error
    /// (see the inner error).
    TokenRequest(EncodeError),
    /// The caller's request is malformed (path or header); nothing was sent.
    InvalidRequest(HttpError),
    /// No token within [`ClientConfig::token_wait`](crate::ClientConfig::token_wait): the token
    /// endpoint is slow or unreachable. `last` is the last transport failure, if any.
    TokenWait {
        /// The last transport failure of a token request.
        last: Option<TransportError>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api(e) => write!(f, "{e}"),
            Error::ResponseTooLarge { needed: Some(n), capacity, .. } => {
                write!(f, "response needs {n} bytes, the receive buffer has {capacity}")
            }
            Error::ResponseTooLarge { needed: None, capacity, .. } => {
                write!(f, "response does not fit the {capacity}-byte receive buffer")
            }
            Error::ConnectionBufferTooSmall => {
                f.write_str("the connection's own buffer (TLS record buffer) is too small")
            }
            Error::RequestTooLarge { needed } => {
                write!(f, "request needs a {needed}-byte transmit buffer")
            }
            Error::TokenRequest(e) => write!(f, "cannot encode the token request: {e}"),
            Error::InvalidRequest(e) => write!(f, "invalid request: {e}"),
            Error::TokenWait { last: Some(e) } => write!(f, "no token in time: {e}"),
            Error::TokenWait { last: None } => f.write_str("no token in time"),
        }
    }
}

impl core::error::Error for Error {}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(e)
    }
}
