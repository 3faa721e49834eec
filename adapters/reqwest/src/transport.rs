//! The HTTP clients a [`Client`](crate::Client) sends through, to share among many clients or
//! to bring your own.
//!
//! A credflow client sends two kinds of requests, through two `reqwest::Client`s:
//!
//! - **Token requests** carry the client credentials (a Basic header, a `client_secret_post`
//!   form body or a `client_secret_jwt` assertion). They always go through a client credflow
//!   builds, with `reqwest::redirect::Policy::none()`: a token endpoint's 3xx is refused by the
//!   session, never followed (on 307 and 308 an HTTP client re-sends the form body wherever
//!   `Location` points; only `Authorization` is dropped across origins). A caller's
//!   `reqwest::Client` is never used for them, whatever its redirect policy.
//! - **API requests** carry the bearer token. credflow's own API client follows a redirect
//!   only within the request's origin (the core's
//!   [`redirect::decide`](credflow_core::http::redirect::decide)) and hands any other 3xx
//!   back. A caller's client ([`Transport::with_api_client`]) is used as it is: its
//!   redirect policy, proxies, pool, TLS, timeouts and default headers are its own.
//!
//! What credflow relies on from a caller's API client: that a redirect to another origin
//! (scheme, host or port) does not carry `Authorization`. reqwest removes it on every such hop,
//! whatever the policy (a change of scheme alone counts since seanmonstar/reqwest#3034, in
//! 0.13.5, the version credflow requires), so the bearer token stays on the API base's origin. A request body is re-sent on
//! a 307 or 308 the client follows: build it with `reqwest::redirect::Policy::none()`, or
//! [`redirect_policy`], to have every 3xx handed back as credflow's own client does. credflow
//! bounds each attempt by [`Config::request_timeout`](crate::Config::request_timeout) (the
//! response and the body read after it): credflow's own API client carries it as reqwest's
//! client-wide timeout ([`ClientBuilder::timeout`](reqwest::ClientBuilder::timeout)), so it
//! applies also to requests you send through [`Transport::api_client`] yourself; with a
//! caller's client, or a `request_timeout` other than the transport's, credflow sets it on each
//! attempt that has none. `connect_timeout` and `user_agent` of the [`Config`](crate::Config)
//! apply only to clients credflow builds.
//!
//! One [`Transport`] serves any number of credflow clients: build it once and hand a clone
//! to each (one connection pool and one TLS configuration instead of one per client id).
//! Its clients send at most [`DEFAULT_TOKEN_REQUEST_LIMIT`] token requests at once
//! ([`Transport::with_token_request_limit`]); the others wait their turn, each within its own
//! token timeout: a thousand tenants started together do not open a thousand connections to the
//! login host at the same instant, nor hold a thousand requests' buffers.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use credflow_reqwest::{Client, Target, Transport, config::credentials};
//! let transport = Transport::new()?;
//! let env = credflow_reqwest::credflow_core::env::parse_environment("mypurecloud.ie")?;
//! let tenants = [("id-a", "secret-a"), ("id-b", "secret-b")];
//! let clients = tenants
//!     .iter()
//!     .map(|(id, secret)| {
//!         Client::builder(Target::Genesys(env), credentials(id, secret)?)
//!             .transport(transport.clone())
//!             .build()
//!     })
//!     .collect::<Result<Vec<_>, _>>()?;
//! # let _ = clients; Ok(()) }
//! ```

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::client::{api_client, follow_within_origin, token_client};
use crate::error::Error;

/// The HTTP clients of one or many credflow [`Client`](crate::Client)s: cheap to clone (each
/// `reqwest::Client` is an `Arc` inside); see the [module docs](self) for what each is used for.
#[derive(Clone)]
pub struct Transport {
    pub(crate) api: reqwest::Client,
    pub(crate) token: reqwest::Client,
    /// One permit per token request in flight, shared by every client of this transport.
    pub(crate) token_slots: Arc<tokio::sync::Semaphore>,
    /// The number of permits (for `Debug`).
    token_request_limit: NonZeroUsize,
    /// The total timeout credflow's own API client applies to each request by itself
    /// (reqwest's client-wide timeout); `None` for a caller's client, whose timeouts credflow
    /// does not know.
    pub(crate) api_timeout: Option<Duration>,
}

/// Token requests a [`Transport`]'s clients send at once unless
/// [`Transport::with_token_request_limit`] says otherwise.
pub const DEFAULT_TOKEN_REQUEST_LIMIT: usize = 32;

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("api", &if self.api_timeout.is_none() { "the caller's" } else { "credflow's" })
            .field("api_timeout", &self.api_timeout)
            .field("token_request_limit", &self.token_request_limit)
            .finish_non_exhaustive()
    }
}

/// The connect timeout of the clients [`Transport::new`] builds, and
/// [`Config::connect_timeout`](crate::Config::connect_timeout)'s default.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The total timeout of each request through the API client [`Transport::new`] builds, and
/// [`Config::request_timeout`](crate::Config::request_timeout)'s default: one value, so that a
/// client left at the default on a shared transport needs no timeout set per attempt.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The `User-Agent` of credflow's own clients unless configured.
pub(crate) const DEFAULT_USER_AGENT: &str = concat!("credflow/", env!("CARGO_PKG_VERSION"));

impl Transport {
    /// credflow's own clients with the defaults of [`Config`](crate::Config): a 5 s connect
    /// timeout, a 30 s total timeout for each API request (`request_timeout`'s default; a
    /// client configured with another one sets it on each attempt), `User-Agent:
    /// credflow/VERSION`, rustls with the platform's verifier (no
    /// process-wide crypto provider installed), the redirect policies of the
    /// [module docs](self).
    ///
    /// # Errors
    ///
    /// A transport error if TLS cannot be set up (no usable certificate verifier).
    pub fn new() -> Result<Transport, Error> {
        Transport::with_settings(DEFAULT_CONNECT_TIMEOUT, DEFAULT_USER_AGENT)
    }

    /// credflow's own clients with this connect timeout and `User-Agent` (and, as
    /// [`Transport::new`], a 30 s total timeout for each API request).
    ///
    /// # Errors
    ///
    /// As [`Transport::new`].
    pub fn with_settings(connect_timeout: Duration, user_agent: &str) -> Result<Transport, Error> {
        Transport::with_roots(connect_timeout, user_agent, &[])
    }

    /// credflow's own clients with this connect timeout and `User-Agent`, trusting also
    /// `extra_roots` besides the platform's certificate authorities (a TLS-inspecting proxy's,
    /// a private server's: see [`Config::extra_root_certificates`](crate::Config::extra_root_certificates)
    /// and [`read_ca_file`](crate::config::read_ca_file)); a 30 s total timeout for each API
    /// request, as [`Transport::new`].
    ///
    /// # Errors
    ///
    /// As [`Transport::new`].
    pub fn with_roots(
        connect_timeout: Duration,
        user_agent: &str,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Transport, Error> {
        Transport::own(connect_timeout, DEFAULT_REQUEST_TIMEOUT, user_agent, extra_roots)
    }

    /// credflow's own clients, the API client's requests bounded by `request_timeout`.
    pub(crate) fn own(
        connect_timeout: Duration,
        request_timeout: Duration,
        user_agent: &str,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Transport, Error> {
        Ok(Transport::assemble(
            api_client(connect_timeout, request_timeout, user_agent, extra_roots)?,
            token_client(connect_timeout, user_agent, extra_roots)?,
            Some(request_timeout),
        ))
    }

    /// API requests through `api`, the caller's client (its pool, proxies, TLS and redirect
    /// policy: see the [module docs](self) for what credflow relies on); token requests
    /// through a client credflow builds, which never follows a redirect.
    ///
    /// ```no_run
    /// # fn demo(env: &'static credflow_reqwest::credflow_core::env::Environment) -> Result<(), credflow_reqwest::Error> {
    /// use credflow_reqwest::{Client, Target, Transport, config::credentials};
    /// let _ = rustls::crypto::ring::default_provider().install_default(); // your TLS choice
    /// let http = reqwest::Client::builder()
    ///     .redirect(credflow_reqwest::transport::redirect_policy())
    ///     .build()
    ///     .map_err(|e| credflow_reqwest::Error::from_reqwest("building the client", e))?;
    /// let client = Client::builder(Target::Genesys(env), credentials("id", "secret")?)
    ///     .transport(Transport::with_api_client(http)?)
    ///     .build()?;
    /// # let _ = client; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Transport::new`] (for the token client).
    pub fn with_api_client(api: reqwest::Client) -> Result<Transport, Error> {
        Ok(Transport::assemble(
            api,
            token_client(DEFAULT_CONNECT_TIMEOUT, DEFAULT_USER_AGENT, &[])?,
            None,
        ))
    }

    /// The caller's API client with credflow's token client.
    pub(crate) fn from_parts(api: reqwest::Client, token: reqwest::Client) -> Transport {
        Transport::assemble(api, token, None)
    }

    fn assemble(
        api: reqwest::Client,
        token: reqwest::Client,
        api_timeout: Option<Duration>,
    ) -> Transport {
        let limit = NonZeroUsize::new(DEFAULT_TOKEN_REQUEST_LIMIT).unwrap_or(NonZeroUsize::MIN);
        Transport {
            api,
            token,
            token_slots: Arc::new(tokio::sync::Semaphore::new(limit.get())),
            token_request_limit: limit,
            api_timeout,
        }
    }

    /// At most `limit` token requests in flight at once among all the clients of this
    /// transport (default [`DEFAULT_TOKEN_REQUEST_LIMIT`]); call it before handing out clones
    /// (a clone made earlier keeps the limit it had).
    ///
    /// A token request that finds every slot taken waits for one, within its own
    /// [`token_timeout`](crate::Config::token_timeout): the wait and the request together
    /// never take longer. One that waits that long fails as a timeout (the session then
    /// retries it as it would any token request that timed out), and a caller of
    /// [`Client::token`](crate::Client::token) still gets its answer within its
    /// [`token_wait`](crate::Config::token_wait).
    ///
    /// ```
    /// # fn demo() -> Result<(), credflow_reqwest::Error> {
    /// use std::num::NonZeroUsize;
    /// let transport = credflow_reqwest::Transport::new()?
    ///     .with_token_request_limit(NonZeroUsize::new(8).expect("not zero"));
    /// # let _ = transport; Ok(()) }
    /// ```
    ///
    /// A limit above what tokio's semaphore holds (`Semaphore::MAX_PERMITS`, about 2^61 on a
    /// 64-bit target: `NonZeroUsize::MAX` for "no limit", say) is that many.
    #[must_use]
    pub fn with_token_request_limit(mut self, limit: NonZeroUsize) -> Transport {
        let permits = limit.get().min(tokio::sync::Semaphore::MAX_PERMITS);
        self.token_slots = Arc::new(tokio::sync::Semaphore::new(permits));
        self.token_request_limit = limit;
        self
    }

    /// The client API requests go through (what [`Client::http`](crate::Client::http)
    /// returns).
    pub fn api_client(&self) -> &reqwest::Client {
        &self.api
    }
}

/// credflow's redirect policy for API requests, for a `reqwest::Client` of your own: a
/// redirect is followed only within the request's origin (scheme, host and port), at most
/// [`MAX_REDIRECTS`](credflow_core::http::redirect::MAX_REDIRECTS) in a row; any other 3xx is
/// handed back as it is, its `Location` not contacted.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(follow_within_origin)
}
