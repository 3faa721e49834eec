//! The shared client: one core session, a background token driver, a lock-free token cache.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use credflow_core::http::redirect::{self, Origin, Redirect};
use credflow_core::http::url::{PlainHttp, Scheme};
use credflow_core::http::{Headers, Method as CoreMethod};
use credflow_core::lifecycle::{Generation, LifecycleEvent};
use credflow_core::oauth::TokenRequest;
use credflow_core::retry::policy::TransportKind;
use credflow_core::secret::{AccessToken, Fingerprint};
use credflow_core::session::{
    ApiError, ApiErrorKind, Authorize, Counters, Event, HostKey, RequestSpec, RequestState,
    RestoreError, RetryReason, Session, SetupError, TokenEndpoint, TokenProblem, TokenStatus,
    Verdict, WaitReason,
};
use credflow_core::{Duration, Instant, Priority, UnixTime, WallClock};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use std::future::Future;
use tokio::sync::{Notify, broadcast, watch};
use tracing::{Instrument, debug, info, warn};
use zeroize::Zeroizing;

use crate::config::{Config, check_url, url_error};
use crate::error::Error;
use crate::shared::{
    Admission, FleetLink, FleetScope, FleetStatus, Lease, Refresh, SharedToken, Transition,
};

/// Token capacity of the session: Genesys tokens are short; JWTs from other servers run to a
/// few KiB.
pub const TOKEN_CAPACITY: usize = 8192;
/// API hosts with their own circuit breaker.
pub const HOSTS: usize = 8;
/// Bound on a fleet admission or report (a store that hangs must not hold requests).
const FLEET_CALL_TIMEOUT: StdDuration = StdDuration::from_secs(1);

type CoreSession = Session<TOKEN_CAPACITY, HOSTS>;

/// A bearer token handed to callers: cheap to clone, redacted in `Debug`, wiped on drop.
#[derive(Clone)]
pub struct Token(Arc<TokenInner>);

struct TokenInner {
    value: Zeroizing<String>,
    header: HeaderValue,
    generation: Generation,
    fingerprint: Fingerprint,
    expires_at: tokio::time::Instant,
}

impl Token {
    /// The token itself, for callers that build their own requests. Never log it.
    pub fn as_str(&self) -> &str {
        &self.0.value
    }

    /// The ready-made `Authorization: Bearer …` header value (marked sensitive).
    pub fn header_value(&self) -> &HeaderValue {
        &self.0.header
    }

    /// Which token this is, as the session counts them.
    pub fn generation(&self) -> u32 {
        self.0.generation.0
    }

    /// A fingerprint that identifies the token in logs.
    pub fn fingerprint(&self) -> Fingerprint {
        self.0.fingerprint
    }

    /// Time left until the server stops accepting it.
    pub fn expires_in(&self) -> StdDuration {
        self.0.expires_at.saturating_duration_since(tokio::time::Instant::now())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("generation", &self.0.generation.0)
            .field("fingerprint", &self.0.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Per-request options for [`Client::send_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestOptions {
    /// Pacing priority (default normal).
    pub priority: Priority,
    /// The caller vouches that repeating this POST/PATCH is harmless.
    pub idempotent: bool,
    /// Give up (without starting another attempt) after this long.
    pub deadline: Option<StdDuration>,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions { priority: Priority::Normal, idempotent: false, deadline: None }
    }
}

/// What the client reports as it works, for progress displays and timelines. Subscribe with
/// [`Client::events`]; the same facts also go to `tracing`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// An event of the core session (token acquired, breaker opened, rate limited, …).
    Session(Event),
    /// A token request is being sent.
    TokenRequest,
    /// A request is retried after `wait`.
    Retry {
        /// Method and path of the request.
        request: String,
        /// Why.
        reason: RetryReason,
        /// How long until the next attempt.
        wait: StdDuration,
        /// Attempts made so far.
        attempts: u32,
    },
    /// The client joined its fleet again, or left it for its local session (see
    /// [`Client::fleet_status`]). Sent once per change, not per request.
    Fleet(FleetStatus),
    /// A request waits before it is sent.
    Wait {
        /// Why.
        reason: WaitReason,
        /// For how long, if known.
        wait: Option<StdDuration>,
    },
    /// Fleet mode: a request waits for the fleet's shared rate state, which holds every process
    /// back after a 429 that a process of the fleet was answered (not necessarily this one, and
    /// not this request): its `Retry-After`, at most the retry policy's `max_wait`. The fleet's
    /// word, not an answer of the server to this process.
    FleetHold {
        /// How long the fleet holds the request back.
        wait: StdDuration,
    },
}

/// Monotonic and wall clocks, read only here.
#[derive(Clone, Copy, Debug)]
struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    fn now(&self) -> Instant {
        let ms = self.origin.elapsed().as_millis();
        Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    fn to_tokio(self, at: Instant) -> tokio::time::Instant {
        // "Never" becomes a year from now: far enough, and representable.
        let year = StdDuration::from_secs(365 * 86_400);
        let offset = StdDuration::from_millis(at.as_millis());
        self.origin
            .checked_add(offset)
            .unwrap_or_else(|| tokio::time::Instant::now() + year)
            .min(tokio::time::Instant::now() + year)
    }

    fn wall(&self, now: Instant) -> WallClock {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        WallClock::new(now, UnixTime::from_secs(secs))
    }
}

/// The published token: read without locks on the hot path.
struct Cached {
    token: Token,
    usable_until: tokio::time::Instant,
}

struct Shared {
    session: Mutex<CoreSession>,
    cache: ArcSwapOption<Cached>,
    /// Bumped whenever the token or the token endpoint's state changes; waiters watch it.
    version: watch::Sender<u64>,
    /// Wakes the token driver.
    kick: Notify,
    events: broadcast::Sender<ClientEvent>,
    /// API requests: follows redirects within the request's origin only (see [`api_client`]).
    http: reqwest::Client,
    /// Token requests: never follows a redirect (see [`token_client`]).
    token_http: reqwest::Client,
    /// Most bytes of a token response or an API error body read into memory.
    max_response_body: usize,
    clock: Clock,
    /// `None` for a client of tokens only ([`Target::TokenOnly`](crate::Target::TokenOnly)).
    api_base: Option<reqwest::Url>,
    /// Where plain `http` may carry the bearer token (`Config::allow_insecure_http`).
    plain_http: PlainHttp,
    request_timeout: StdDuration,
    token_timeout: StdDuration,
    token_wait: StdDuration,
    /// The longest wait the retry policy accepts (`retry.max_wait`): a longer fleet admission
    /// wait is left to the local session.
    max_wait: StdDuration,
    /// Fleet mode: the shared store and the degraded-mode switch.
    fleet: Option<FleetLink>,
    /// Set by [`Client::shutdown`]: new work fails at once, and the refresh lease the stopped
    /// driver held is left in `left_lease` for `shutdown` to release (instead of in the
    /// background).
    closing: AtomicBool,
    /// Fleet mode: the refresh lease the driver held when `shutdown` stopped it.
    left_lease: Mutex<Option<Lease>>,
    /// Fleet mode: one request per priority class at a time asks the fleet's admission (and
    /// sleeps the wait it answers); the others queue here, in order. Without it every waiting
    /// request re-asks at the instant the fleet named, one wins, and the rest ask again: tens
    /// of store calls per admitted request under load (the simulator measured 27 to 128).
    admission_gates: [Arc<tokio::sync::Mutex<()>>; 3],
}

struct Inner {
    shared: Arc<Shared>,
    /// The token driver; taken by [`Client::shutdown`].
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    /// Stops the driver. A refresh lease it holds is released in the background as its future
    /// is dropped (see [`HeldLease`]).
    fn drop(&mut self) {
        let driver = self.driver.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(driver) = driver.take() {
            driver.abort();
        }
    }
}

/// The credflow client: create one per process (per client id) and share it; it is cheap to
/// clone and `Send + Sync`.
///
/// It keeps a token fresh in a background task (refreshing ahead of expiry, single flight),
/// serves [`token`](Self::token) from a lock-free cache, and sends API requests with
/// [`send`](Self::send): token attached, paced to the server's rate limit, retried by the core's
/// verdicts, with typed errors that carry the server's codes and correlation id.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api_base", &self.inner.shared.api_base.as_ref().map(reqwest::Url::as_str))
            .finish_non_exhaustive()
    }
}

/// The API base as a URL ending in `/`, so that request paths join under it.
fn parse_api_base(text: &str) -> Result<reqwest::Url, Error> {
    let mut api_base =
        reqwest::Url::parse(text).map_err(|e| Error::config(format!("API base {text:?}: {e}")))?;
    if !api_base.path().ends_with('/') {
        let path = format!("{}/", api_base.path());
        api_base.set_path(&path);
    }
    Ok(api_base)
}

/// This client's TLS configuration: rustls with the `ring` provider and the platform's
/// certificate verifier (what reqwest uses by default), built explicitly so that no
/// process-wide default provider is installed: an application may install its own.
fn tls_config() -> Result<rustls::ClientConfig, Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_platform_verifier())
        .map_err(|e| Error::config(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl Client {
    /// Builds a client and starts its token driver. Must be called inside a tokio runtime.
    /// The first token is requested at once, in the background.
    ///
    /// # Errors
    ///
    /// A configuration error (exit code 2), before anything is resolved or connected, for a
    /// token URL or API base that is malformed, carries userinfo, or is plain `http` to a host
    /// that is not loopback without [`Config::allow_insecure_http`] (the core's
    /// [`Url::parse_with`](credflow_core::http::url::Url::parse_with)); for a scope or
    /// parameters that do not fit, an inconsistent session configuration, or no OS randomness.
    pub fn new(config: Config) -> Result<Client, Error> {
        let token_url = config.target.token_url();
        let api_base = config.target.api_base();
        let allow = config.allow_insecure_http;
        let urls = [("token URL", Some(token_url)), ("API base", api_base)];
        for (what, url) in urls.into_iter().filter_map(|(what, url)| Some((what, url?))) {
            if check_url(what, url, allow)? {
                warn!(
                    url,
                    "allow_insecure_http: the {what} is plain http to a host that is not \
                     loopback; the {} cross the network in clear text",
                    if what == "token URL" { "client credentials" } else { "bearer tokens" }
                );
            }
        }
        let plain_http = if allow { PlainHttp::Anywhere } else { PlainHttp::LoopbackOnly };
        let mut endpoint = TokenEndpoint::new_with_plain_http(token_url, plain_http)
            .map_err(|e| match e {
                SetupError::InvalidTokenUrl(e) => url_error("token URL", token_url, e),
                e => Error::config(e.to_string()),
            })?
            .with_auth(config.auth_method);
        if let Some(scope) = &config.scope {
            endpoint = endpoint.with_scope(scope).map_err(|e| Error::config(e.to_string()))?;
        }
        for (name, value) in &config.extra_params {
            endpoint =
                endpoint.with_param(name, value).map_err(|e| Error::config(e.to_string()))?;
        }
        let api_base = config.target.api_base().map(parse_api_base).transpose()?;
        let seed = match config.seed {
            Some(seed) => seed,
            None => {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes)
                    .map_err(|e| Error::config(format!("no OS randomness for jitter: {e}")))?;
                u64::from_le_bytes(bytes)
            }
        };
        let max_wait = StdDuration::from_millis(config.session.retry.max_wait.as_millis());
        let http = api_client(&config)?;
        let token_http = token_client(&config)?;
        let fleet = config.shared.map(|store| {
            let scope = FleetScope {
                client_id: config.credentials.id.as_str().to_owned(),
                token_url: config.target.token_url().to_owned(),
                credential: config.credentials.fingerprint(),
                pacer: config.session.pacer,
                max_hold: max_wait,
            };
            FleetLink::new(store, scope, FLEET_CALL_TIMEOUT)
        });
        let session = Session::new(config.credentials, endpoint, config.session, seed)
            .map_err(|e| Error::config(e.to_string()))?;
        let (version, _) = watch::channel(0);
        let (events, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            session: Mutex::new(session),
            cache: ArcSwapOption::empty(),
            version,
            kick: Notify::new(),
            events,
            http,
            token_http,
            max_response_body: config.max_response_body,
            clock: Clock { origin: tokio::time::Instant::now() },
            api_base,
            plain_http,
            request_timeout: config.request_timeout,
            token_timeout: config.token_timeout,
            token_wait: config.token_wait,
            max_wait,
            fleet,
            closing: AtomicBool::new(false),
            left_lease: Mutex::new(None),
            admission_gates: Default::default(),
        });
        let driver = Mutex::new(Some(tokio::spawn(drive(Arc::clone(&shared)))));
        Ok(Client { inner: Arc::new(Inner { shared, driver }) })
    }

    /// Builds a client from the environment ([`Config::from_env`]).
    pub fn from_env() -> Result<Client, Error> {
        Client::new(Config::from_env()?)
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The API base URL request paths are joined to; `None` for a client of tokens only
    /// ([`Config::token_only`](crate::Config::token_only)).
    pub fn api_base(&self) -> Option<&reqwest::Url> {
        self.shared().api_base.as_ref()
    }

    /// The underlying HTTP client, to build requests for [`send`](Self::send). It follows a
    /// redirect only within the request's origin, at most
    /// [`MAX_REDIRECTS`](credflow_core::http::redirect::MAX_REDIRECTS) in a row; any other 3xx
    /// comes back as it is (see [`credflow_core::http::redirect`]). Token requests go through
    /// a client of their own, which never follows one.
    pub fn http(&self) -> &reqwest::Client {
        &self.shared().http
    }

    /// The credential's fingerprint, for logs.
    pub fn fingerprint(&self) -> Fingerprint {
        self.shared().lock().fingerprint()
    }

    /// The scope requested, the scope granted with the current token (if the server said, with
    /// the client's credentials masked should it echo them), and how they compare.
    pub fn scope(&self) -> (Option<String>, Option<String>, credflow_core::oauth::ScopeCheck) {
        let session = self.shared().lock();
        let (granted, check) = session.granted_scope();
        let secrets = session.secrets(self.shared().clock.now());
        let granted = granted.map(|g| secrets.redacted(g).to_string());
        (session.endpoint().scope().map(str::to_owned), granted, check)
    }

    /// The token endpoint URL.
    pub fn token_url(&self) -> String {
        self.shared().lock().endpoint().token_url().to_owned()
    }

    /// The core session's counters.
    pub fn counters(&self) -> Counters {
        self.shared().lock().counters()
    }

    /// Fleet mode: whether the client works with its fleet or, the shared store having failed,
    /// alone on its local session. `None` without a shared store.
    pub fn fleet_status(&self) -> Option<FleetStatus> {
        self.shared().fleet.as_ref().map(FleetLink::status)
    }

    /// Subscribes to the client's events (token acquired, retries, waits, breaker changes).
    pub fn events(&self) -> broadcast::Receiver<ClientEvent> {
        self.shared().events.subscribe()
    }

    /// Time since the client was created, on the clock the core's instants count from.
    pub fn since_start(&self, at: Instant) -> StdDuration {
        StdDuration::from_millis(at.as_millis())
    }

    /// A valid token. Returns at once, without locks or I/O, when one is cached (the common
    /// case: refreshes happen in the background ahead of expiry); otherwise joins the single
    /// token request in flight, for [`Config::token_wait`] at most.
    ///
    /// Fails sooner when waiting cannot help, with what went wrong with the last token
    /// response ([`Error::status`], [`Error::correlation_id`], [`Error::likely_cause`]): the
    /// credentials were rejected; the answer is not a usable token (an HTML page, invalid JSON,
    /// no `access_token`, a `token_type` other than Bearer: [`ErrorKind::Config`]); the token
    /// endpoint's breaker is open, or it asked for a longer wait than `token_wait` (named:
    /// [`ErrorKind::Unavailable`]).
    ///
    /// [`ErrorKind::Config`]: crate::ErrorKind::Config
    /// [`ErrorKind::Unavailable`]: crate::ErrorKind::Unavailable
    pub async fn token(&self) -> Result<Token, Error> {
        self.shared().open()?;
        if let Some(token) = self.shared().cached() {
            return Ok(token);
        }
        self.shared().wait_for_token().await
    }

    /// Stops the client for a graceful exit, and gives back what it holds in its fleet: call it
    /// once the application no longer sends requests, before the runtime stops.
    ///
    /// The token driver stops (a token request in flight is abandoned). In fleet mode, the
    /// refresh lease this process holds while its token request is out is released with the
    /// store's fence-checked release, awaited for at most the store call bound (1 s), so that
    /// the next process's refresh does not wait for the lease to expire (`lease_ttl`, 15 s on
    /// Redis). A lease kept on purpose after a failed token request (the fleet's back-off)
    /// is not released.
    ///
    /// Afterwards every clone of this client refuses new work: [`token`](Self::token) and
    /// [`send`](Self::send) fail at once, and so do requests still waiting for a token or a
    /// retry. Dropping the last clone without calling this also releases the lease, in the
    /// background on the tokio runtime if one is still running (best effort: a runtime that
    /// shuts down at once may not run it; the lease then expires after `lease_ttl`).
    ///
    /// ```no_run
    /// # async fn demo(client: credflow_reqwest::Client) {
    /// // ... the server has drained its requests ...
    /// client.shutdown().await;
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        let shared = self.shared();
        shared.closing.store(true, Ordering::SeqCst);
        let driver = locked(&self.inner.driver).take();
        if let Some(driver) = driver {
            driver.abort();
            // Cancelled: its future, and any lease guard in it, is dropped once this returns.
            let _ = driver.await;
        }
        // Waiting requests look again, and fail.
        shared.version.send_modify(|v| *v = v.wrapping_add(1));
        let lease = locked(&shared.left_lease).take();
        if let (Some(lease), Some(fleet)) = (lease, shared.fleet.as_ref()) {
            let release = fleet.store.release(&fleet.scope, lease);
            match tokio::time::timeout(fleet.call_timeout, release).await {
                Ok(Ok(())) => info!("shut down: the fleet's refresh lease was released"),
                Ok(Err(error)) => {
                    warn!(%error, "shut down: the fleet's refresh lease was not released; it expires on its own")
                }
                Err(_) => warn!(
                    "shut down: the store did not answer the lease release in time; the lease expires on its own"
                ),
            }
        } else {
            debug!("shut down");
        }
    }

    /// `text` with the client's credentials masked wherever it holds them: the client secret
    /// (as configured and form-encoded), the Basic credentials value, the last
    /// `client_secret_jwt` assertion and the current token, each replaced with `[redacted]`
    /// (see [`credflow_core::redact`] for the rules). For printing or logging what a server
    /// sent: response headers, error bodies. The client's errors and logs are masked already.
    pub fn redact<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        let session = self.shared().lock();
        let secrets = session.secrets(self.shared().clock.now());
        match secrets.find(text.as_bytes(), 0) {
            None => std::borrow::Cow::Borrowed(text),
            Some(_) => std::borrow::Cow::Owned(secrets.redacted(text).to_string()),
        }
    }

    /// [`redact`](Self::redact) for bytes that may not be text (a body): every occurrence is
    /// replaced with `[redacted]`, every other byte kept.
    pub fn redact_bytes<'t>(&self, bytes: &'t [u8]) -> std::borrow::Cow<'t, [u8]> {
        let session = self.shared().lock();
        let secrets = session.secrets(self.shared().clock.now());
        let mut shown = 0;
        let mut out: Option<Vec<u8>> = None;
        while let Some(span) = secrets.find(bytes, shown) {
            let out = out.get_or_insert_with(|| Vec::with_capacity(bytes.len()));
            out.extend_from_slice(&bytes[shown..span.start]);
            out.extend_from_slice(credflow_core::redact::REDACTED.as_bytes());
            shown = span.end;
        }
        match out {
            None => std::borrow::Cow::Borrowed(bytes),
            Some(mut out) => {
                out.extend_from_slice(&bytes[shown..]);
                std::borrow::Cow::Owned(out)
            }
        }
    }

    /// Joins `path` to the API base (a leading `/` is ignored: paths go under the base).
    /// A client of tokens only has no API base: that is a configuration error.
    ///
    /// The URL is on the API base's origin, or this fails, whatever `path` holds: an
    /// absolute URL (`https://other.example/x`), a network-path reference (`\\other.example/x`,
    /// which URL parsers read as `//other.example/x`) or a scheme (`other.example:8443/x`)
    /// would otherwise lead the bearer token elsewhere. The error names the origin it would
    /// go to, never the path.
    pub fn url(&self, path: &str) -> Result<reqwest::Url, Error> {
        let Some(api_base) = self.api_base() else {
            return Err(Error::config(format!(
                "path {path:?}: this client has no API base (it was built for tokens only); \
                 give it one with Config::custom"
            )));
        };
        let url = api_base
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::config(format!("path {path:?}: {e}")))?;
        self.shared().check_origin(&url)?;
        Ok(url)
    }

    /// A request builder for `method` on `path` under the API base; send the built request
    /// with [`send`](Self::send).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, Error> {
        Ok(self.http().request(method, self.url(path)?))
    }

    /// Sends `request` with a token, pacing and retries (default options).
    ///
    /// The request must be on the API base's origin (scheme, host and port), or it is refused
    /// before anything is sent (see [`send_with`](Self::send_with)).
    pub async fn send(&self, request: reqwest::Request) -> Result<reqwest::Response, Error> {
        self.send_with(request, RequestOptions::default()).await
    }

    /// Sends `request` with a token, pacing and retries, as `options` say.
    ///
    /// Returns the response for successes and permanent answers (404, 400, …); a typed
    /// [`Error`] for 403, repeated 401, exhausted retries, an open breaker, a wait longer than
    /// accepted. A request whose body cannot be replayed (a stream) is sent once, never retried.
    ///
    /// The bearer token goes only to the API base's origin: a request for another scheme, host
    /// or port (an absolute URL taken from a response, say) is refused with a configuration
    /// error ([`ErrorKind::Config`](crate::ErrorKind::Config)) that names both origins, before
    /// anything is resolved or sent; so is every request of a client of tokens only. Fetch
    /// other URLs with a client of your own, without the token. (The core's
    /// [`check_token_origin`](credflow_core::http::redirect::check_token_origin).)
    ///
    /// A redirect within the request's origin is followed with the token (RFC 9110 method
    /// rules: 303 becomes a `GET` without body); one to another origin, or past
    /// [`MAX_REDIRECTS`](credflow_core::http::redirect::MAX_REDIRECTS), is returned as it is,
    /// and its `Location` was not contacted: fetch it with a client of your own, without the
    /// token. An error body is read for classification up to
    /// [`Config::max_response_body`](crate::Config::max_response_body) bytes; the response
    /// returned still has all of it.
    pub async fn send_with(
        &self,
        request: reqwest::Request,
        options: RequestOptions,
    ) -> Result<reqwest::Response, Error> {
        let http = self.shared().http.clone();
        self.send_through(request, options, move |attempt| {
            let http = http.clone();
            async move {
                http.execute(attempt).await.map_err(|e| {
                    let kind = transport_kind(&e);
                    (kind, Box::new(e) as BoxError)
                })
            }
        })
        .await
    }

    /// The per-request loop over any way of sending one attempt (the client's own HTTP client,
    /// or the rest of a middleware stack).
    pub(crate) async fn send_through<F, Fut>(
        &self,
        request: reqwest::Request,
        options: RequestOptions,
        transport: F,
    ) -> Result<reqwest::Response, Error>
    where
        F: FnMut(reqwest::Request) -> Fut,
        Fut: Future<Output = Result<reqwest::Response, (TransportKind, BoxError)>>,
    {
        self.shared().check_origin(request.url())?;
        let label = format!("{} {}", request.method(), request.url().path());
        let span = tracing::debug_span!("credflow.send", request = %label);
        self.attempts(request, options, transport, label).instrument(span).await
    }

    async fn attempts<F, Fut>(
        &self,
        request: reqwest::Request,
        options: RequestOptions,
        mut transport: F,
        label: String,
    ) -> Result<reqwest::Response, Error>
    where
        F: FnMut(reqwest::Request) -> Fut,
        Fut: Future<Output = Result<reqwest::Response, (TransportKind, BoxError)>>,
    {
        let shared = Arc::clone(&self.inner.shared);
        let host = HostKey::from_host(request.url().host_str().unwrap_or(""));
        let method = CoreMethod::from_name(request.method().as_str());
        let now = shared.clock.now();
        let deadline = options.deadline.map(|d| now.saturating_add(core_duration(d)));
        // The instant the session's deadline check fails (it passes at the deadline itself):
        // no wait of this loop's own (the admission gate, the fleet's wait) goes past it.
        let give_up =
            deadline.map(|d| shared.clock.to_tokio(d.saturating_add(Duration::from_millis(1))));
        // In a fleet the shared budget admits each attempt with the request's priority, and the
        // session is told so (`set_externally_paced`): it then holds the attempt back only for
        // 429 waits and exhausted windows, not for its own spacing and reserves, which know only
        // this process's sends. An attempt the fleet cannot admit (the store failed, or its wait
        // is longer than the retry policy accepts) is paced locally at the request's priority,
        // which the session always keeps.
        // While degraded, a request whose probe is due asks the fleet (and rejoins it).
        let fleet_paced = shared.fleet.as_ref().is_some_and(FleetLink::usable);
        let mut probe_claimed = fleet_paced;
        let spec = RequestSpec {
            method,
            idempotent: options.idempotent,
            priority: options.priority,
            deadline,
            host,
        };
        let state = shared.lock().begin(now, spec);
        let mut guard = InFlight { shared: Arc::clone(&shared), state };
        let mut original = Some(request);
        let mut version = shared.version.subscribe();
        // Whether the fleet was asked about the next attempt (kept across local waits).
        let mut asked = false;
        // This request's turn at the fleet's admission (see `Shared::admission_gates`), held
        // from the first question until the fleet admits it or leaves it to the session.
        let mut gate: Option<tokio::sync::OwnedMutexGuard<()>> = None;
        // The end of the fleet's window wait handed to the session as the attempt's hold: a
        // failure naming that wait names the fleet, not the server.
        let mut fleet_wait_until: Option<Instant> = None;
        loop {
            // Mark the current version seen *before* asking the session, so a token or breaker
            // change that lands after the answer still wakes the wait below.
            version.borrow_and_update();
            shared.open()?;
            let ask = fleet_paced && !asked && shared.cached().is_some();
            if !ask {
                gate = None;
            }
            if ask {
                if gate.is_none() {
                    let class = Arc::clone(&shared.admission_gates[gate_index(options.priority)]);
                    gate = Some(before(give_up, class.lock_owned()).await?);
                }
                let claimed = std::mem::take(&mut probe_claimed);
                // A slot is worth reserving only if the request will still be waiting for it.
                let within = give_up.map_or(shared.max_wait, |at| {
                    shared.max_wait.min(at.saturating_duration_since(tokio::time::Instant::now()))
                });
                let answer =
                    before(give_up, shared.fleet_admit(options.priority, claimed, within)).await?;
                if !matches!(answer, Some(Admission::Wait(wait)) if wait <= shared.max_wait) {
                    gate = None;
                }
                match answer {
                    Some(Admission::After(wait)) if wait <= within => {
                        // Counted for that instant: sleep, then send without asking again
                        // (the next request of this class asks meanwhile).
                        shared.sleep_for_fleet(wait, give_up).await?;
                        // A 429 another process reported while this one slept holds it too.
                        if wait >= RESERVATION_RECHECK
                            && let Some(hold) = shared.fleet_hold().await
                        {
                            let hold = shared.announce_fleet_hold(hold);
                            let until = shared.clock.now().saturating_add(core_duration(hold));
                            guard.state.set_external_hold(until);
                        }
                        guard.state.set_externally_paced(true);
                        asked = true;
                    }
                    Some(Admission::Wait(wait)) if wait <= shared.max_wait => {
                        shared.sleep_for_fleet(wait, give_up).await?;
                        continue;
                    }
                    Some(Admission::Held(hold)) => {
                        // Another process's 429, relayed (never past `max_wait`): the session
                        // holds the attempt back for it as for a wait of its own, then the
                        // fleet is asked again. A longer wait of the session's own (a 429 this
                        // process was answered) still fails fast, naming the server's wait.
                        let hold = shared.announce_fleet_hold(hold);
                        if give_up.is_some_and(|at| tokio::time::Instant::now() + hold > at) {
                            return Err(Error::held_by_fleet(hold));
                        }
                        let until = shared.clock.now().saturating_add(core_duration(hold));
                        guard.state.set_external_hold(until);
                        asked = true;
                    }
                    Some(Admission::Wait(wait) | Admission::After(wait)) => {
                        // A daily quota's hours (or a store that reserved beyond `within`):
                        // the session paces with the fleet's wait as its own, so it fails fast
                        // naming it, or sends its one probe per `max_wait`, as it does alone.
                        debug!(?wait, "the fleet's wait is longer than accepted");
                        let until = shared.clock.now().saturating_add(core_duration(wait));
                        guard.state.set_external_hold(until);
                        fleet_wait_until = Some(until);
                        asked = true;
                    }
                    Some(Admission::Now) => {
                        guard.state.set_externally_paced(true);
                        asked = true;
                    }
                    None => asked = true,
                }
            }
            let now = shared.clock.now();
            let decision = {
                let mut session = shared.lock();
                session.set_wall_clock(shared.clock.wall(now));
                let decision = match session.authorize(now, &mut guard.state) {
                    Authorize::Send { token, .. } => Step::Send(bearer(token)),
                    Authorize::Wait { until, reason } => Step::Wait(until, reason),
                    Authorize::Fail(e) => Step::Fail(Error::naming_the_fleet(
                        session.error_detail(e),
                        now,
                        fleet_wait_until,
                    )),
                };
                shared.drain(&mut session);
                decision
            };
            let header = match decision {
                Step::Send(header) => header,
                Step::Fail(e) => return Err(e),
                Step::Wait(until, reason) => {
                    // The fleet's admission (or its hold) was for an attempt now. After a
                    // hold of the server's (a 429's, a spent window), the fleet is asked again,
                    // so that the requests held together are spaced by its budget rather than
                    // released together. Across a wait for a token or a breaker's probe (an
                    // outage, not the budget) the admission is kept: asking again on each wake
                    // would spend the fleet's budget on requests that cannot go.
                    if matches!(reason, WaitReason::Paced(_) | WaitReason::Backoff) {
                        guard.state.set_externally_paced(false);
                        guard.state.set_external_hold(Instant::from_millis(0));
                        asked = false;
                    }
                    let now_tokio = tokio::time::Instant::now();
                    let wake = until.map(|at| shared.clock.to_tokio(at));
                    let wait = wake.map(|at| at.saturating_duration_since(now_tokio));
                    let _ = shared.events.send(ClientEvent::Wait { reason, wait });
                    let wake = match (reason, wake) {
                        // A token request is due or in flight: the driver's answer wakes us
                        // (the deadline is only a safety net).
                        (WaitReason::Token, Some(at)) if at <= now_tokio => {
                            shared.kick.notify_one();
                            now_tokio + shared.token_wait
                        }
                        (WaitReason::Token, None) => {
                            shared.kick.notify_one();
                            now_tokio + shared.token_wait
                        }
                        (_, Some(at)) => at,
                        // A probe is testing the service: its outcome wakes us, or a probe
                        // abandoned without an event frees its slot within a second.
                        (_, None) => now_tokio + StdDuration::from_secs(1),
                    };
                    // The session fails the request once its deadline passed: wake for that.
                    let wake = give_up.map_or(wake, |at| wake.min(at));
                    tokio::select! {
                        _ = tokio::time::sleep_until(wake) => {}
                        _ = version.changed() => {}
                    }
                    continue;
                }
            };
            // Keep the original while it can be cloned, so a retry can resend it.
            let (mut attempt, replayable) = match original.as_ref().and_then(|r| r.try_clone()) {
                Some(clone) => (clone, true),
                None => match original.take() {
                    Some(request) => (request, false),
                    None => {
                        return Err(Error::config("request body cannot be replayed for a retry"));
                    }
                },
            };
            attempt.headers_mut().insert(AUTHORIZATION, header);
            if attempt.timeout().is_none() {
                *attempt.timeout_mut() = Some(shared.request_timeout);
            }
            let outcome = execute(transport(attempt), shared.max_response_body).await;
            asked = false;
            let now = shared.clock.now();
            let (verdict, response) = match outcome {
                Ok((response, body)) => {
                    let status = response.status().as_u16();
                    let mut session = shared.lock();
                    let verdict = session.handle_response(
                        now,
                        &mut guard.state,
                        status,
                        &HeaderMapRef(response.headers()),
                        body.as_ref().map_or(b"", |b| &b.read[..]),
                    );
                    let verdict = failed(&session, verdict);
                    shared.settle(&mut session, now);
                    drop(session);
                    Shared::fleet_report(&shared, now, status, response.headers());
                    (verdict, Ok(rebuild(response, body)))
                }
                Err((kind, error)) => {
                    let mut session = shared.lock();
                    let verdict = session.handle_transport_error(now, &mut guard.state, kind);
                    let verdict = failed(&session, verdict);
                    shared.drain(&mut session);
                    drop(session);
                    (verdict, Err(Error::transport_boxed(format!("{label} failed"), error)))
                }
            };
            match verdict {
                Ok(Verdict::Done) => return response,
                Err(e) => return Err(e),
                // Taken out by `failed` already; kept total.
                Ok(Verdict::Fail(e)) => return Err(e.into()),
                Ok(Verdict::Retry { at, reason, .. }) => {
                    if !replayable {
                        debug!(%label, ?reason, "not retried: the request body cannot be replayed");
                        return response;
                    }
                    let wait = shared
                        .clock
                        .to_tokio(at)
                        .saturating_duration_since(tokio::time::Instant::now());
                    info!(%label, ?reason, wait_ms = wait.as_millis() as u64, attempts = guard.state.attempts(), "retrying");
                    let _ = shared.events.send(ClientEvent::Retry {
                        request: label.clone(),
                        reason,
                        wait,
                        attempts: guard.state.attempts(),
                    });
                    if reason == RetryReason::Reauthenticate {
                        shared.kick.notify_one();
                    }
                    tokio::time::sleep_until(shared.clock.to_tokio(at)).await;
                }
            }
        }
    }
}

/// A failing `verdict` as the adapter's error, with what the server said about it (read from
/// the session under the lock that decided it, before another request's failure replaces it).
fn failed(session: &CoreSession, verdict: Verdict) -> Result<Verdict, Error> {
    match verdict {
        Verdict::Fail(e) => Err(session.error_detail(e).into()),
        other => Ok(other),
    }
}

/// The session's own error for a request whose deadline passed while it waited.
fn deadline_exceeded() -> Error {
    Error::from(ApiError { kind: ApiErrorKind::DeadlineExceeded, status: None })
}

/// Awaits `wait`, or fails with [`deadline_exceeded`] when `give_up` comes first.
async fn before<T>(
    give_up: Option<tokio::time::Instant>,
    wait: impl Future<Output = T>,
) -> Result<T, Error> {
    match give_up {
        Some(at) => tokio::time::timeout_at(at, wait).await.map_err(|_| deadline_exceeded()),
        None => Ok(wait.await),
    }
}

/// A std duration as the core's (milliseconds, saturating).
fn core_duration(d: StdDuration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

enum Step {
    Send(HeaderValue),
    Wait(Option<Instant>, WaitReason),
    Fail(Error),
}

/// Holds a request's core state; if the caller drops the future mid-attempt, the session is told
/// (so a breaker probe is released).
struct InFlight {
    shared: Arc<Shared>,
    state: RequestState,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.shared.clock.now();
        let mut session = self.shared.lock();
        session.abandon(now, &mut self.state);
    }
}

fn bearer<const N: usize>(token: &AccessToken<N>) -> HeaderValue {
    let value = Zeroizing::new(format!("Bearer {}", token.as_str()));
    // The core only accepts visible ASCII tokens, so this cannot fail; fall back to an empty
    // (rejected) header rather than panicking.
    let mut header = HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""));
    header.set_sensitive(true);
    header
}

/// A transport failure's cause, boxed (a reqwest error, or a middleware's).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The first bytes of an error body, read to classify it.
struct ReadBody {
    /// At most the limit's worth: what the session classifies.
    read: Bytes,
    /// The part of the last chunk past the limit, if the body went on: the response handed to
    /// the caller carries it, then the rest of the body.
    more: Option<Bytes>,
}

/// Awaits one attempt; reads the body only for non-success statuses (to classify it), and at
/// most `limit` bytes of it.
async fn execute(
    sent: impl Future<Output = Result<reqwest::Response, (TransportKind, BoxError)>>,
    limit: usize,
) -> Result<(reqwest::Response, Option<ReadBody>), (TransportKind, BoxError)> {
    let mut response = sent.await?;
    if response.status().is_success() || response.status().is_redirection() {
        return Ok((response, None));
    }
    let mut body = Vec::new();
    let more = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(chunk.get(..room).unwrap_or_default());
                    break Some(chunk.slice(room..));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break None,
            Err(e) => return Err((transport_kind(&e), Box::new(e))),
        }
    };
    Ok((response, Some(ReadBody { read: Bytes::from(body), more })))
}

pub(crate) fn transport_kind(e: &reqwest::Error) -> TransportKind {
    if e.is_connect() {
        TransportKind::Connect
    } else if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_request() || e.is_body() || e.is_decode() {
        TransportKind::Reset
    } else {
        TransportKind::Other
    }
}

/// A response whose body was read for classification, rebuilt so the caller can still read
/// all of it: what was read, then (a body longer than the limit) the rest as it comes.
fn rebuild(response: reqwest::Response, body: Option<ReadBody>) -> reqwest::Response {
    let Some(ReadBody { read, more }) = body else {
        return response;
    };
    let url = response.url().clone();
    let (parts, rest) = http::Response::<reqwest::Body>::from(response).into_parts();
    let body = match more {
        None => reqwest::Body::from(read),
        Some(more) => reqwest::Body::wrap(Resumed { read: [Some(read), Some(more)], rest }),
    };
    let mut builder = http::Response::builder().status(parts.status).version(parts.version);
    if let Some(headers) = builder.headers_mut() {
        *headers = parts.headers;
    }
    if let Some(extensions) = builder.extensions_mut() {
        extensions.extend(parts.extensions);
    }
    match reqwest::ResponseBuilderExt::url(builder, url).body(body) {
        Ok(rebuilt) => reqwest::Response::from(rebuilt),
        // Status, version and headers come from a response: the builder cannot refuse them.
        Err(e) => unreachable_response(e),
    }
}

#[cold]
fn unreachable_response(e: http::Error) -> reqwest::Response {
    warn!(error = %e, "could not rebuild a response");
    reqwest::Response::from(http::Response::new(reqwest::Body::from(Bytes::new())))
}

/// A response body whose first bytes were read already: those, then the rest as it comes.
struct Resumed {
    read: [Option<Bytes>; 2],
    rest: reqwest::Body,
}

impl http_body::Body for Resumed {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, reqwest::Error>>> {
        let this = self.get_mut();
        if let Some(bytes) = this.read.iter_mut().find_map(Option::take) {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes))));
        }
        std::pin::Pin::new(&mut this.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.iter().all(Option::is_none) && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let read = self.read.iter().flatten().map(|b| b.len() as u64).sum::<u64>();
        let rest = self.rest.size_hint();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(read));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(read));
        }
        hint
    }
}

/// The client token requests go through: credflow's own, whatever the caller does with API
/// requests, and it never follows a redirect. A 3xx comes back to the session, which refuses
/// it (see [`credflow_core::http::redirect`]): had it been followed, a `client_secret_post`
/// form body or a `client_secret_jwt` assertion would be sent again on 307 and 308, wherever
/// `Location` pointed (HTTP libraries drop only `Authorization` across origins).
fn token_client(config: &Config) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .user_agent(&config.user_agent)
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls_config()?)
        .build()
        .map_err(|e| Error::transport("cannot build the HTTP client for token requests", e))
}

/// The client API requests go through: it follows a redirect only as the core decides
/// ([`redirect::decide`]: within the request's origin, so the bearer token stays where it is
/// meant to go, at most `MAX_REDIRECTS` in a row), and hands any other 3xx back as it is.
fn api_client(config: &Config) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .user_agent(&config.user_agent)
        .redirect(reqwest::redirect::Policy::custom(follow_within_origin))
        .tls_backend_preconfigured(tls_config()?)
        .build()
        .map_err(|e| Error::transport("cannot build the HTTP client", e))
}

/// The API client's redirect policy: the core's decision. reqwest applies the method rules of
/// RFC 9110 (303 becomes a `GET` without body, 301 and 302 turn a `POST` into a `GET`, 307 and
/// 308 resend the body if it can be replayed, else return the 3xx).
fn follow_within_origin(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    let previous = attempt.previous();
    let from = previous.first().and_then(origin);
    let to = origin(attempt.url());
    let status = attempt.status().as_u16();
    let decision = match &from {
        Some(from) => redirect::decide(status, from, to.as_ref(), previous.len().saturating_sub(1)),
        None => Redirect::Return(redirect::NotFollowed::NoLocation),
    };
    match decision {
        Redirect::Follow => attempt.follow(),
        Redirect::Return(why) => {
            let to = to.map(|o| o.to_string()).unwrap_or_default();
            debug!(status, ?why, %to, "redirect not followed: the 3xx goes to the caller");
            attempt.stop()
        }
    }
}

/// The origin of a URL, if it is an `http` or `https` one.
fn origin(url: &reqwest::Url) -> Option<Origin<'_>> {
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return None,
    };
    Some(Origin { scheme, host: url.host_str()?, port: url.port_or_known_default()? })
}

/// The core's header access over a reqwest header map.
struct HeaderMapRef<'a>(&'a HeaderMap);

impl Headers for HeaderMapRef<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(HeaderValue::as_bytes)
    }
}

impl Shared {
    /// Refuses a URL the bearer token may not go to (the core's [`redirect::check_token_origin`]):
    /// another origin than the API base's, or any URL for a client of tokens only. The error
    /// names origins only, never a path, query or userinfo.
    fn check_origin(&self, url: &reqwest::Url) -> Result<(), Error> {
        let to = origin(url);
        let shown = to.map_or_else(|| format!("a {}: URL", url.scheme()), |to| to.to_string());
        let Some(api) = self.api_base.as_ref().and_then(origin) else {
            return Err(Error::config(format!(
                "request to {shown} not sent: this client has no API base (it was built for \
                 tokens only), so no request carries its token; give it one with Config::custom"
            )));
        };
        let checked = match &to {
            Some(to) => redirect::check_token_origin(to, &api, self.plain_http),
            None => Err(redirect::TokenOriginError::OtherOrigin),
        };
        checked.map_err(|e| {
            Error::other_origin(format!("request to {shown} not sent: {e}; the API base is {api}"))
        })
    }

    /// Logs and announces a change of fleet status, once per change.
    fn fleet_transition(&self, transition: Transition, error: Option<&crate::shared::StoreError>) {
        let status = match transition {
            Transition::None => return,
            Transition::Degraded => {
                let error = error.map(ToString::to_string).unwrap_or_default();
                warn!(%error, "shared store unreachable: working alone on the local session until it answers");
                FleetStatus::Degraded
            }
            Transition::Rejoined => {
                info!("shared store answers again: rejoined the fleet");
                FleetStatus::Joined
            }
        };
        let _ = self.events.send(ClientEvent::Fleet(status));
    }

    /// The fleet's admission for one attempt; `None` when the store is not usable (degraded).
    /// `claimed`: the caller already checked [`FleetLink::usable`] (and may hold the probe).
    /// `within`: the longest the request will wait for a reserved slot.
    async fn fleet_admit(
        &self,
        priority: Priority,
        claimed: bool,
        within: StdDuration,
    ) -> Option<Admission> {
        let fleet = self.fleet.as_ref().filter(|f| claimed || f.usable())?;
        let (result, transition) =
            fleet.call(fleet.call_timeout, fleet.store.admit(&fleet.scope, priority, within)).await;
        self.fleet_transition(transition, result.as_ref().err());
        result.ok()
    }

    /// Sleeps `wait` for the fleet (a slot it reserved, or its answer to ask again), announced
    /// as a pacing wait; fails at once when the wait would end after `give_up` (the fleet has no
    /// slot before the deadline).
    async fn sleep_for_fleet(
        &self,
        wait: StdDuration,
        give_up: Option<tokio::time::Instant>,
    ) -> Result<(), Error> {
        let wake = tokio::time::Instant::now() + wait;
        if give_up.is_some_and(|at| wake > at) {
            return Err(deadline_exceeded());
        }
        let reason = WaitReason::Paced(credflow_core::ratelimit::pacer::PaceReason::Spacing);
        let _ = self.events.send(ClientEvent::Wait { reason, wait: Some(wait) });
        tokio::time::sleep_until(wake).await;
        Ok(())
    }

    /// The fleet's 429 hold as this process honours it: never longer than the retry policy's
    /// `max_wait` (a store answering more is cut, and said to be), announced as the fleet's
    /// ([`ClientEvent::FleetHold`]), not as the server's.
    fn announce_fleet_hold(&self, hold: StdDuration) -> StdDuration {
        if hold > self.max_wait {
            warn!(
                answered = ?hold,
                max_wait = ?self.max_wait,
                "the fleet's shared store held requests back for longer than the retry policy's max_wait after another pod's 429; cut to max_wait"
            );
        }
        let hold = hold.min(self.max_wait);
        debug!(
            ?hold,
            "held by the fleet's shared rate state: a pod of the fleet was answered 429 (not this request)"
        );
        let _ = self.events.send(ClientEvent::FleetHold { wait: hold });
        hold
    }

    /// `Err` once [`Client::shutdown`] was called.
    fn open(&self) -> Result<(), Error> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(Error::shut_down());
        }
        Ok(())
    }

    /// The fleet's current hold (see [`SharedStore::hold`]), if the store is usable and
    /// reports one.
    async fn fleet_hold(&self) -> Option<StdDuration> {
        let fleet = self.fleet.as_ref().filter(|f| f.usable())?;
        let (result, transition) =
            fleet.call(fleet.call_timeout, fleet.store.hold(&fleet.scope)).await;
        self.fleet_transition(transition, result.as_ref().err());
        result.ok().flatten().filter(|hold| !hold.is_zero())
    }

    /// Reports a response's rate-limit facts to the fleet, in the background.
    fn fleet_report(shared: &Arc<Shared>, now: Instant, status: u16, headers: &HeaderMap) {
        let Some(fleet) = shared.fleet.as_ref() else { return };
        let headers = HeaderMapRef(headers);
        let reference = headers
            .get("date")
            .and_then(credflow_core::http::date::parse_http_date)
            .or_else(|| Some(shared.clock.wall(now).wall_at(now)));
        let snapshot = credflow_core::ratelimit::headers::parse_rate_limit(&headers, reference);
        let retry_after = (status == 429).then(|| {
            credflow_core::http::retry_after::RetryAfter::from_headers(&headers)
                .and_then(|r| r.delay(reference))
                .map(|d| StdDuration::from_millis(d.as_millis()))
        });
        if (snapshot.is_none() && retry_after.is_none()) || fleet.status() != FleetStatus::Joined {
            return;
        }
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            let Some(fleet) = shared.fleet.as_ref() else { return };
            if let Some(snapshot) = snapshot {
                let (result, transition) = fleet
                    .call(fleet.call_timeout, fleet.store.observe(&fleet.scope, snapshot))
                    .await;
                shared.fleet_transition(transition, result.as_ref().err());
            }
            if let Some(retry_after) = retry_after {
                let (result, transition) = fleet
                    .call(fleet.call_timeout, fleet.store.rate_limited(&fleet.scope, retry_after))
                    .await;
                shared.fleet_transition(transition, result.as_ref().err());
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, CoreSession> {
        // A panic while holding the lock cannot leave the session inconsistent in a way that
        // matters more than stopping every caller: keep going with the inner value.
        self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self) -> Option<Token> {
        let guard = self.cache.load();
        let cached = guard.as_ref()?;
        (tokio::time::Instant::now() < cached.usable_until).then(|| cached.token.clone())
    }

    /// Publishes the session's usable token to the lock-free cache (or withdraws it), and
    /// wakes waiters when it changed.
    fn sync_cache(&self, session: &CoreSession, now: Instant) {
        let current = self.cache.load().as_ref().map(|c| c.token.0.generation);
        match session.token(now) {
            Some((token, times)) if current != Some(times.generation) => {
                let inner = TokenInner {
                    value: Zeroizing::new(token.as_str().to_owned()),
                    header: bearer(token),
                    generation: times.generation,
                    fingerprint: token.fingerprint(),
                    expires_at: self.clock.to_tokio(times.expires_at),
                };
                self.cache.store(Some(Arc::new(Cached {
                    token: Token(Arc::new(inner)),
                    usable_until: self.clock.to_tokio(times.usable_until),
                })));
                self.version.send_modify(|v| *v = v.wrapping_add(1));
            }
            Some(_) => {}
            None if current.is_some() => {
                self.cache.store(None);
                self.version.send_modify(|v| *v = v.wrapping_add(1));
            }
            None => {}
        }
    }

    /// After a change to the session: its events forwarded, its token published (both wake
    /// waiters when something they wait for changed).
    fn settle(&self, session: &mut CoreSession, now: Instant) {
        self.drain(session);
        self.sync_cache(session, now);
    }

    /// Forwards the session's events to `tracing` and to subscribers; wakes waiters when a
    /// breaker changed (a request waiting for a probe's outcome).
    fn drain(&self, session: &mut CoreSession) {
        let mut wake = false;
        while let Some(event) = session.poll_event() {
            wake |= matches!(event, Event::Breaker { .. });
            match &event {
                Event::Token(LifecycleEvent::TokenAcquired { generation, life, .. }) => {
                    info!(generation = generation.0, life = %life, "token acquired")
                }
                Event::Token(e @ LifecycleEvent::RequestFailed { .. }) => {
                    // An error answer was logged with its event; anything else (an unusable
                    // answer, a transport failure) is named here.
                    match session.last_token_failure() {
                        Some(report) if !matches!(report.problem, TokenProblem::Refused(_)) => {
                            let correlation_id = report
                                .correlation_id
                                .as_ref()
                                .map(|c| c.as_str().to_owned())
                                .unwrap_or_default();
                            warn!(error = %report, %correlation_id, "token request failed")
                        }
                        _ => debug!(event = ?e, "token lifecycle"),
                    }
                }
                Event::Token(e) => debug!(event = ?e, "token lifecycle"),
                Event::TokenEndpointError { status, class } => {
                    let detail = session.last_token_error().map(|(e, c)| {
                        (e.to_string(), c.map(|c| c.as_str().to_owned()).unwrap_or_default())
                    });
                    let (error, correlation_id) = detail.unwrap_or_default();
                    warn!(status, ?class, %error, %correlation_id, "token endpoint error")
                }
                Event::Breaker { target, event } => warn!(?target, ?event, "circuit breaker"),
                Event::RateLimited { until, correlation_id } => {
                    let id =
                        correlation_id.as_ref().map(|c| c.as_str().to_owned()).unwrap_or_default();
                    info!(until = %until, correlation_id = %id, "rate limited")
                }
                other => debug!(event = ?other, "session event"),
            }
            let _ = self.events.send(ClientEvent::Session(event));
        }
        if wake {
            self.version.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Waits for a token until `token_wait` has passed. The session decides when waiting no
    /// longer helps (a rejection, an open breaker, a next attempt after the deadline, the
    /// deadline itself) and names the last token failure; this only relays its answer.
    async fn wait_for_token(&self) -> Result<Token, Error> {
        let mut version = self.version.subscribe();
        let deadline = self.clock.now().saturating_add(core_duration(self.token_wait));
        // The session's check fails once `now` is past the deadline: wake just after it.
        let give_up = self.clock.to_tokio(deadline.saturating_add(Duration::from_millis(1)));
        loop {
            version.borrow_and_update();
            self.open()?;
            if let Some(token) = self.cached() {
                return Ok(token);
            }
            let now = self.clock.now();
            let until = {
                let mut session = self.lock();
                let status = match session.check_token_before(now, Some(deadline)) {
                    TokenStatus::Ready(..) => None,
                    TokenStatus::Pending { until } => Some(until),
                    TokenStatus::Unavailable(e) => return Err(session.error_detail(e).into()),
                };
                self.sync_cache(&session, now);
                self.drain(&mut session);
                status
            };
            let Some(until) = until else { continue };
            self.kick.notify_one();
            let wake = until.map_or(give_up, |at| self.clock.to_tokio(at).min(give_up));
            tokio::select! {
                _ = version.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// An owned copy of the core's token request, so the session lock is not held across I/O.
struct OwnedTokenRequest {
    url: String,
    headers: Vec<(&'static str, Zeroizing<String>)>,
    body: Zeroizing<String>,
}

impl OwnedTokenRequest {
    fn from(request: &TokenRequest<'_>) -> Self {
        let url = format!("{}://{}{}", request.scheme.as_str(), request.host, request.path);
        let headers = request
            .headers()
            .filter(|(name, _)| !matches!(*name, "Host" | "Content-Length"))
            .map(|(name, value)| (name, Zeroizing::new(value.to_owned())))
            .collect();
        OwnedTokenRequest { url, headers, body: Zeroizing::new(request.body.to_owned()) }
    }
}

/// The token driver: sends token requests when the session says so, sleeps until the next
/// deadline, and publishes tokens. Runs until the last [`Client`] is dropped, or
/// [`Client::shutdown`].
async fn drive(shared: Arc<Shared>) {
    let mut buf = Zeroizing::new(vec![0u8; 16 * 1024]);
    // Fingerprint of the token this process holds (or held last): the fleet is asked for
    // another one.
    let mut stale: Option<Fingerprint> = None;
    // Fingerprint of a fleet token this process refused (unusable, or too close to expiry):
    // named instead of `stale` until a token is installed, so that the fleet hands out the lease
    // rather than the same token again (it is not the one this process holds).
    let mut refused: Option<Fingerprint> = None;
    // While tokenless and held back, when to read the fleet's token next (kept across wakes,
    // so that kicks from waiting requests cannot postpone it forever).
    let mut next_peek: Option<tokio::time::Instant> = None;
    loop {
        let now = shared.clock.now();
        let outgoing = {
            let mut session = shared.lock();
            session.set_wall_clock(shared.clock.wall(now));
            if let Some((token, _)) = session.token(now) {
                stale = Some(token.fingerprint());
            }
            let outgoing = match session.poll_token_request(now, &mut buf) {
                Ok(Some((ticket, request))) => Some((ticket, OwnedTokenRequest::from(&request))),
                Ok(None) => None,
                Err(e) => {
                    warn!(error = %e, "cannot encode the token request; check the configuration");
                    None
                }
            };
            shared.drain(&mut session);
            outgoing
        };
        zeroize::Zeroize::zeroize(&mut buf[..]);
        if let Some((ticket, request)) = outgoing {
            let mut lease = None;
            if let Some(fleet) = shared.fleet.as_ref().filter(|f| f.usable()) {
                let (result, transition) = fleet
                    .call(shared.token_wait, fleet.store.refresh(&fleet.scope, refused.or(stale)))
                    .await;
                shared.fleet_transition(transition, result.as_ref().err());
                match result {
                    Ok(Refresh::Token(token)) => {
                        // Refused (too close to expiry, unusable): ask for another, or take
                        // the lease and refresh.
                        refused = install_shared(&shared, ticket, &token);
                        continue;
                    }
                    Ok(Refresh::Lease(granted)) => {
                        lease = Some(HeldLease::new(&shared, granted));
                    }
                    Err(error) => debug!(%error, "fleet refresh failed: fetching locally"),
                }
            }
            let _ = shared.events.send(ClientEvent::TokenRequest);
            let result = send_token_request(&shared, request).await;
            // A connection that never reached the token endpoint taught the fleet nothing: let
            // another pod try at once rather than wait for the lease to expire.
            let unreached = matches!(result, Err(TransportKind::Connect));
            let fresh = {
                let now = shared.clock.now();
                let mut session = shared.lock();
                let before = session.token(now).map(|(_, times)| times.generation);
                match result {
                    Ok(TokenAnswer::Read { status, headers, body }) => session
                        .handle_token_response(now, ticket, status, &HeaderMapRef(&headers), &body),
                    Ok(TokenAnswer::TooLarge { status, headers }) => session
                        .handle_token_too_large(
                            now,
                            ticket,
                            status,
                            &HeaderMapRef(&headers),
                            // A limit past 4 GiB is named as 4 GiB: still true of the body.
                            u32::try_from(shared.max_response_body).unwrap_or(u32::MAX),
                        ),
                    Err(kind) => session.handle_token_error(now, ticket, Some(kind)),
                }
                shared.settle(&mut session, now);
                // Only a token this request obtained goes to the fleet.
                session.token(now).filter(|(_, times)| Some(times.generation) != before).map(
                    |(token, times)| SharedToken {
                        token: Zeroizing::new(token.as_str().to_owned()),
                        expires_at: shared.clock.wall(now).wall_at(times.expires_at),
                    },
                )
            };
            // Waiters also watch for failures (to give up early on a rejection).
            shared.version.send_modify(|v| *v = v.wrapping_add(1));
            if fresh.is_some() {
                refused = None;
            }
            if let (Some(lease), Some(fleet)) = (lease, shared.fleet.as_ref()) {
                publish(&shared, fleet, lease, fresh, unreached).await;
            }
            continue;
        }
        let (next, tokenless) = {
            let session = shared.lock();
            shared.sync_cache(&session, now);
            let tokenless = session.token(now).is_none() && !session.lifecycle().in_flight();
            (session.poll_timeout(), tokenless)
        };
        let due = next.map(|(at, _)| shared.clock.to_tokio(at));
        let mut sleep =
            due.unwrap_or_else(|| tokio::time::Instant::now() + StdDuration::from_secs(3600));
        // No token, and no request allowed yet (backoff or an open breaker after an outage):
        // read the fleet's token about once a second, as another process may have one.
        if tokenless && shared.fleet.is_some() {
            let at =
                *next_peek.get_or_insert_with(|| tokio::time::Instant::now() + FLEET_PEEK_INTERVAL);
            if tokio::time::Instant::now() >= at {
                next_peek = Some(tokio::time::Instant::now() + FLEET_PEEK_INTERVAL);
                if let Some(fingerprint) = adopt_fleet_token(&shared, refused.or(stale)).await {
                    refused = Some(fingerprint);
                }
                continue;
            }
            sleep = sleep.min(at);
        } else {
            next_peek = None;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(sleep) => {
                // A deadline of the session's (not only a peek's): let it act, and let waiting
                // requests look again.
                if due.is_some_and(|at| at <= tokio::time::Instant::now()) {
                    {
                        let now = shared.clock.now();
                        let mut session = shared.lock();
                        session.handle_timeout(now);
                        shared.settle(&mut session, now);
                    }
                    shared.version.send_modify(|v| *v = v.wrapping_add(1));
                }
            }
            _ = shared.kick.notified() => {}
        }
    }
}

/// A request that slept this long or longer to a reserved slot reads the fleet's hold before
/// it is sent (a shorter sleep could only meet a 429 reported within it).
const RESERVATION_RECHECK: StdDuration = StdDuration::from_secs(1);

/// How often a process without a token, held back from requesting one, reads the fleet's.
const FLEET_PEEK_INTERVAL: StdDuration = StdDuration::from_secs(1);

/// Takes the fleet's token (other than `stale`) into a session that has none and may not
/// request one yet; see [`SharedStore::current`]. Returns the fingerprint of a token it could
/// not take (unusable, or too close to expiry), which is not to be offered again.
async fn adopt_fleet_token(shared: &Shared, stale: Option<Fingerprint>) -> Option<Fingerprint> {
    let fleet = shared.fleet.as_ref().filter(|f| f.usable())?;
    let (result, transition) =
        fleet.call(fleet.call_timeout, fleet.store.current(&fleet.scope, stale)).await;
    shared.fleet_transition(transition, result.as_ref().err());
    let token = result.ok().flatten()?;
    offer_fleet_token(
        shared,
        &token,
        |session, now, value| {
            session.adopt_shared(now, value, token.expires_at).inspect(|_| {
                debug!("took the fleet's token while held back from requesting one");
            })
        },
        |_, _| {},
    )
}

/// Installs a token the fleet shared for `ticket`. Returns the token's fingerprint if the session
/// refused it (too close to expiry, unusable), so that the fleet is asked for another.
fn install_shared(
    shared: &Shared,
    ticket: credflow_core::lifecycle::Ticket,
    token: &SharedToken,
) -> Option<Fingerprint> {
    offer_fleet_token(
        shared,
        token,
        |session, now, value| session.handle_token_shared(now, ticket, value, token.expires_at),
        // Released without backoff: the next round asks the fleet for a token other than this
        // one, or for the lease (never this one again: no loop on a bad entry).
        |session, now| session.handle_token_error(now, ticket, None),
    )
}

/// Offers the fleet's `token` to the session: `take` installs it; `unusable` runs when it is
/// not a token this process can hold. Returns the fingerprint of a token not taken (refused,
/// or unusable), which is not to be offered again.
fn offer_fleet_token(
    shared: &Shared,
    token: &SharedToken,
    take: impl FnOnce(
        &mut CoreSession,
        Instant,
        AccessToken<TOKEN_CAPACITY>,
    ) -> Result<Generation, RestoreError>,
    unusable: impl FnOnce(&mut CoreSession, Instant),
) -> Option<Fingerprint> {
    let now = shared.clock.now();
    let mut session = shared.lock();
    session.set_wall_clock(shared.clock.wall(now));
    let refused = match AccessToken::<TOKEN_CAPACITY>::new(&token.token) {
        Ok(value) => {
            let fingerprint = value.fingerprint();
            match take(&mut session, now, value) {
                Ok(_) => None,
                Err(error) => {
                    debug!(%error, "fleet token not taken");
                    Some(fingerprint)
                }
            }
        }
        Err(error) => {
            warn!(%error, "fleet token unusable");
            unusable(&mut session, now);
            Some(Fingerprint::of_token(token.token.as_bytes()))
        }
    };
    shared.settle(&mut session, now);
    refused
}

/// Hands the token fetched under `lease` to the fleet. A failed request keeps the lease until
/// it expires (the fleet's back-off), unless it never reached the token endpoint (`unreached`).
async fn publish(
    shared: &Shared,
    fleet: &FleetLink,
    mut held: HeldLease,
    fresh: Option<SharedToken>,
    unreached: bool,
) {
    let Some(lease) = held.lease.clone() else { return };
    let (result, transition) = match &fresh {
        Some(token) => {
            fleet.call(fleet.call_timeout, fleet.store.publish(&fleet.scope, lease, token)).await
        }
        None if unreached => {
            let (result, transition) =
                fleet.call(fleet.call_timeout, fleet.store.release(&fleet.scope, lease)).await;
            (result.map(|()| false), transition)
        }
        None => {
            held.keep();
            return;
        }
    };
    // Published or released (or failed, and then not ours to retry): no longer the guard's.
    held.keep();
    shared.fleet_transition(transition, result.as_ref().err());
    match result {
        Ok(true) => debug!("token published to the fleet"),
        Ok(false) => debug!("lease expired before the token came: not published"),
        Err(error) => debug!(%error, "token not published"),
    }
}

/// Fleet mode: the refresh lease this process holds while its token request is out. If the
/// driver stops before it is settled (the last [`Client`] dropped, or [`Client::shutdown`]),
/// dropping the guard gives the lease back with the store's fence-checked release, so that the
/// next process's refresh does not wait `lease_ttl` for nobody: on the tokio runtime, bounded
/// by the store call timeout, or, during `shutdown`, by `shutdown` itself (which awaits it).
/// Releasing after a publish, or after the lease expired and another process took it, is
/// harmless: the release deletes the lease only if it still holds this fence.
struct HeldLease {
    shared: Arc<Shared>,
    lease: Option<Lease>,
}

impl HeldLease {
    fn new(shared: &Arc<Shared>, lease: Lease) -> Self {
        HeldLease { shared: Arc::clone(shared), lease: Some(lease) }
    }

    /// Settled: published, released, or kept on purpose until it expires (the fleet's
    /// back-off after a failed token request).
    fn keep(&mut self) {
        self.lease = None;
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else { return };
        if self.shared.closing.load(Ordering::SeqCst) {
            *locked(&self.shared.left_lease) = Some(lease);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            debug!("no tokio runtime to release the fleet's refresh lease; it expires on its own");
            return;
        };
        let shared = Arc::clone(&self.shared);
        runtime.spawn(async move {
            let Some(fleet) = shared.fleet.as_ref() else { return };
            let release = fleet.store.release(&fleet.scope, lease);
            match tokio::time::timeout(fleet.call_timeout, release).await {
                Ok(Ok(())) => debug!("the stopped client's refresh lease was released"),
                Ok(Err(error)) => {
                    debug!(%error, "the stopped client's refresh lease was not released")
                }
                Err(_) => debug!("the stopped client's refresh lease was not released in time"),
            }
        });
    }
}

/// A mutex's value, even if a panic poisoned it (the values guarded with this stay consistent).
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the token endpoint answered.
enum TokenAnswer {
    /// The whole answer; the body holds the token, and is wiped when dropped.
    Read { status: u16, headers: HeaderMap, body: Zeroizing<Vec<u8>> },
    /// An answer whose body was larger than the limit: not read further.
    TooLarge { status: u16, headers: HeaderMap },
}

/// Sends a token request through the token client (no redirects), and reads the answer, at
/// most `max_response_body` bytes of it, within `token_timeout` (reqwest's request timeout
/// covers the body: one that trickles forever is a timeout).
async fn send_token_request(
    shared: &Shared,
    request: OwnedTokenRequest,
) -> Result<TokenAnswer, TransportKind> {
    let mut builder = shared.token_http.post(&request.url).timeout(shared.token_timeout);
    for (name, value) in &request.headers {
        let mut value = HeaderValue::from_str(value).map_err(|_| TransportKind::Other)?;
        if *name == "Authorization" {
            value.set_sensitive(true);
        }
        builder = builder.header(*name, value);
    }
    let mut response =
        builder.body(request.body.as_bytes().to_vec()).send().await.map_err(|e| {
            debug!(error = %e, "token request failed in transport");
            transport_kind(&e)
        })?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let limit = shared.max_response_body;
    let declared = response.content_length().map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if declared.is_some_and(|n| n > limit) {
        return Ok(TokenAnswer::TooLarge { status, headers });
    }
    let mut body = Zeroizing::new(Vec::with_capacity(declared.unwrap_or(4096).min(limit)));
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        debug!(error = %e, "token response failed in transport");
        transport_kind(&e)
    })? {
        if chunk.len() > limit.saturating_sub(body.len()) {
            return Ok(TokenAnswer::TooLarge { status, headers });
        }
        extend_wiped(&mut body, &chunk);
    }
    Ok(TokenAnswer::Read { status, headers, body })
}

/// Appends `bytes` to `body`; when it must grow, the old allocation is wiped (it held part of
/// a token response), not left to the allocator as `Vec`'s own growth would.
fn extend_wiped(body: &mut Zeroizing<Vec<u8>>, bytes: &[u8]) {
    let needed = body.len().saturating_add(bytes.len());
    if needed > body.capacity() {
        let mut grown = Zeroizing::new(Vec::with_capacity(needed.max(body.capacity() * 2)));
        grown.extend_from_slice(body);
        *body = grown;
    }
    body.extend_from_slice(bytes);
}

/// The index of `priority`'s admission gate.
fn gate_index(priority: Priority) -> usize {
    match priority {
        Priority::Critical => 0,
        Priority::Normal => 1,
        Priority::Background => 2,
    }
}
