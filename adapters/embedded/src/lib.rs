//! # credflow-embedded
//!
//! credflow on a microcontroller: the sans-IO [`credflow_core`] session driven over any
//! [`embedded_io_async`] transport, timed with [`embassy_time`]. `#![no_std]`, no `alloc`, no
//! `unsafe`; every buffer is the caller's, every capacity a const generic.
//!
//! ## What the adapter owns, and what it does not
//!
//! | the adapter | the application |
//! |---|---|
//! | HTTP/1.1 on the wire (RFC 9112): request heads, response heads (`httparse`), bodies by `Content-Length`, chunked (§7.1) or until close | DNS, TCP, TLS: a [`Connector`] that yields a connected `Read + Write` stream (embassy-net + embedded-tls, a modem's sockets, …) |
//! | one kept-alive connection, replaced when the server closed it (a request not safe to repeat is not sent twice) | the buffers: `tx` for request heads, `rx` for responses |
//! | the clock (`embassy_time::Instant`), sleeping (`Timer::at`), timeouts (`with_timeout`) | the time driver (the HAL's) and the executor |
//! | the session's behaviour: token cached and refreshed ahead of expiry, 401 → new token and one retry, 429/5xx backoff with `Retry-After`, breakers, pacing, priorities | the seed for jitter (from a hardware RNG), the wall-clock time if known (SNTP/RTC), flash for sealed tokens |
//!
//! ## Use
//!
//! ```no_run
//! # use credflow_embedded::{Connector, Target};
//! # struct Net; struct Tls;
//! # impl embedded_io_async::ErrorType for Tls { type Error = core::convert::Infallible; }
//! # impl embedded_io_async::Read for Tls { async fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> { Ok(0) } }
//! # impl embedded_io_async::Write for Tls { async fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> { Ok(b.len()) } async fn flush(&mut self) -> Result<(), Self::Error> { Ok(()) } }
//! # impl Connector for Net { type Connection = Tls; type Error = (); async fn connect(&mut self, _: &Target) -> Result<Tls, ()> { Ok(Tls) } }
//! # async fn run(net: Net, seed: u64) -> Result<(), credflow_embedded::Error> {
//! use credflow_core::env::parse_environment;
//! use credflow_core::secret::Credentials;
//! use credflow_core::session::{Session, SessionConfig, TokenEndpoint};
//! use credflow_embedded::{Client, ClientConfig, Request};
//!
//! let env = parse_environment("mypurecloud.com").unwrap();
//! let credentials = Credentials::from_strs("client-id", "client-secret").unwrap();
//! // Capacities: a 1 KiB token, one API host, 64 bytes of token endpoint (the login URL).
//! let endpoint = TokenEndpoint::<64>::genesys(env).unwrap();
//! let session: Session<1024, 1, 64> =
//!     Session::new(credentials, endpoint, SessionConfig::default(), seed).unwrap();
//! let mut client = Client::new(net, session, env.api_base, ClientConfig::default()).unwrap();
//!
//! let (mut tx, mut rx) = ([0u8; 2048], [0u8; 8192]);
//! let response = client.request(&Request::get("/api/v2/routing/queues?pageSize=5"), &mut tx, &mut rx).await?;
//! assert_eq!(response.status, 200); // response.body borrows rx
//! # Ok(()) }
//! ```
//!
//! ## Buffers
//!
//! - `tx` holds one request head: about 200 bytes plus the token plus the caller's header
//!   fields, and the token request (about 400 bytes with Basic authentication). 2 KiB is ample
//!   for Genesys tokens. Too small: [`Error::RequestTooLarge`] with the size needed.
//! - `rx` holds one whole response, head and body (a chunked body is decoded in place). Size it
//!   for the largest response the application reads. Too small: [`Error::ResponseTooLarge`]; a
//!   non-2xx body is cut to fit instead ([`Response::truncated`]), since only its first bytes
//!   matter to classify it.
//! - Both are wiped after each exchange that carried a secret or a token. A call cancelled
//!   during such an exchange (its future dropped, e.g. by a `select` or a timeout around it)
//!   cannot wipe them: the token request (with the client secret), the token response or a
//!   request head with the bearer token may stay there. If you cancel calls, wipe the buffers
//!   after (`credflow_core::secret::wipe`), or keep them where nothing else reads.
//! - The connection's own buffers are the connector's: a TLS stream needs a read record
//!   buffer that holds a whole record (16 640 bytes for servers that send full-size records);
//!   one too small is [`Error::ConnectionBufferTooSmall`].
//!
//! ## A connection the server closed while idle
//!
//! The adapter has no task of its own to notice a kept-alive connection closing between calls
//! (and `embedded-tls` streams cannot say whether a read would block), so it finds out when it
//! next sends on it: the write succeeds, the read ends before the first byte of an answer. That
//! looks the same as a server that received the request, acted on it and then failed, so the
//! core's rule ([`credflow_core::http::keep_alive`]) decides by what the request is, as RFC 9112
//! §9.3.1 asks and Go's `net/http` does:
//!
//! - A request safe to repeat (`GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`, a request marked
//!   [`idempotent`](Request::idempotent), and every token request: a second one at worst gets a
//!   second token) goes on the kept-alive connection however long it idled, and is sent once
//!   more on a new connection if that turns out closed. This is not a retry (the counters say
//!   none, the retry policy is not asked). A token request signed with `client_secret_jwt` is
//!   sent again as the session signs it anew
//!   ([`Session::resign_token_request`](credflow_core::session::Session::resign_token_request)):
//!   its assertion's `jti` may be single-use (RFC 7523 §3), and the new one has not been seen.
//!   Without that it failed, and the next token request waited the lifecycle's backoff (1 s).
//! - Any other request (a `POST` or `PATCH` not marked idempotent) goes on the kept-alive
//!   connection only if it has idled less than [`ClientConfig::keep_alive_limit`] (default
//!   4 s, below the 5 s after which Apache httpd and Node.js close idle connections), else on a
//!   new one. If the connection still turns out closed, it is not sent again: the call fails as
//!   after any transport failure once a request was sent (for such a request, the retry policy
//!   gives up: [`Error::Api`] with the transport failure), since the server may have acted on it.
//!
//! A server known to keep connections longer (nginx 75 s, an AWS load balancer 60 s) lets the
//! limit go up, saving a new connection (a TLS handshake) for a `POST` after a longer pause.
//!
//! ## Timeouts
//!
//! [`ClientConfig`] bounds connecting, each API exchange, each token exchange, and a call's
//! total wait for a token; a request's [`deadline`](Request::deadline) bounds every exchange
//! made for it. A server that trickles bytes is cut off at the exchange deadline (a transport
//! timeout: retried for idempotent requests).
//!
//! ## Logging
//!
//! Features `defmt` or `log` (at most one: enabling both is a compile error) log token
//! acquisitions, token endpoint errors, retries and waits, never a secret or a token. With
//! neither, nothing is logged and no formatting code is linked.
//!
//! ## Snapshots
//!
//! [`Client::seal`] and [`Client::restore`] keep a token across reboots (sealed and
//! authenticated with a device key, bound to the credentials; see
//! [`credflow_core::snapshot`]): write the sealed bytes to flash after a refresh, restore them
//! at boot once the wall clock is known ([`Client::set_wall_clock`]).

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// docs.rs (nightly, `--cfg docsrs`): mark each item a feature gates with that feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    warn(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::cast_possible_truncation
    )
)]

#[macro_use]
mod fmt;

mod client;
mod error;
mod transport;
// Public only to the fuzz targets (feature `__fuzzing`, not part of the API): the request
// writer and the response reader, driven by in-memory connections.
#[cfg(feature = "__fuzzing")]
#[doc(hidden)]
pub mod wire;
#[cfg(not(feature = "__fuzzing"))]
mod wire;

pub use client::{Client, ClientConfig, Request, Response};
pub use error::{Error, HttpError, InvalidUrl, TransportError};
pub use transport::{Connector, HOST_CAPACITY, Target};
pub use wire::{MAX_HEADERS, MAX_INTERIM, MAX_SKIPPED, ResponseHeaders};

/// The core crate, re-exported so applications name one version.
pub use credflow_core;

// The README is the crates.io page: its example compiles as a doctest, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
