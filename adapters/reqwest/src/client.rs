//! The shared client: one core session, a background token driver, a lock-free token cache.
//!
//! Every decision is the core's: the session's (lifecycle, pacing, retries, breakers) and, in
//! fleet mode, its fleet drivers' ([`credflow_core::fleet`]). This module holds the public
//! types and the state the parts share; the parts, by role:
//!
//! - `cache`: the token published for lock-free reads, the version waiters watch, the
//!   session's events forwarded, the wait for a token;
//! - `driver`: the token driver (token requests, the fleet's token and lease);
//! - `send`: one API request's attempts (authorize, send, verdict), driven by the core's
//!   `RequestDriver`;
//! - `fleet_link`: the calls to the shared store and the reports of rate-limit facts;
//! - `http_clients`: the two HTTP clients (redirect policies) and the token's origin check.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use credflow_core::fleet::DriverConfig;
use credflow_core::http::redirect::check_token_origin;
use credflow_core::http::url::PlainHttp;
use credflow_core::lifecycle::Generation;
use credflow_core::retry::policy::TransportKind;
use credflow_core::secret::Fingerprint;
use credflow_core::session::{
    ApiError, ApiErrorKind, Counters, ENDPOINT_CAPACITY, ErrorDetail, Event, HostKey, RetryReason,
    Session, SetupError, TokenEndpoint, WaitReason,
};
use credflow_core::{Duration, Instant, Priority, UnixTime, WallClock};
use reqwest::header::HeaderValue;
use tokio::sync::{Notify, broadcast, watch};
use tracing::{Instrument, debug, info, warn};
use zeroize::Zeroizing;

use crate::config::{Config, check_url, url_error};
use crate::error::Error;
use crate::shared::{FleetLink, FleetScope, FleetStatus, Lease};

mod cache;
mod driver;
mod fleet_link;
mod http_clients;
mod lane;
mod send;
mod token_storage;

use http_clients::origin;
pub(crate) use http_clients::{api_client, follow_within_origin, token_client};
pub(crate) use send::{BoxError, transport_kind};

/// Token capacity of the session: Genesys tokens are short; JWTs from other servers run to a
/// few KiB.
pub const TOKEN_CAPACITY: usize = 8192;
/// API hosts with their own circuit breaker.
pub const HOSTS: usize = 8;
/// Events kept for a subscriber that lags (older ones are dropped, and it is told how many).
const EVENT_CAPACITY: usize = 256;
/// Bound on a fleet admission or report (a store that hangs must not hold requests).
const FLEET_CALL_TIMEOUT: StdDuration = StdDuration::from_secs(1);

/// The session of a client: its token kept on the heap, sized to the token (a process with a
/// client per tenant does not pay `TOKEN_CAPACITY` bytes for each).
type CoreSession = Session<TOKEN_CAPACITY, HOSTS, ENDPOINT_CAPACITY, token_storage::HeapToken>;
/// A token as the session keeps it.
type SessionToken = credflow_core::secret::AccessToken<TOKEN_CAPACITY, token_storage::HeapToken>;

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

impl Token {
    /// A token made by hand, for a [`TokenSource`](crate::TokenSource) of your own (a mock in
    /// tests, say): `value` as the server would send it, with its `generation` and time left.
    ///
    /// # Errors
    ///
    /// A configuration error if `value` is not a token credflow would accept from a server
    /// (empty, longer than [`TOKEN_CAPACITY`], or with a character outside visible ASCII).
    pub fn new(value: &str, generation: u32, expires_in: StdDuration) -> Result<Token, Error> {
        let checked = SessionToken::new(value)
            .map_err(|e| Error::config(format!("not a usable token: {e}")))?;
        let now = tokio::time::Instant::now();
        Ok(Token(Arc::new(TokenInner {
            value: Zeroizing::new(value.to_owned()),
            header: send::bearer(&checked),
            generation: Generation(generation),
            fingerprint: checked.fingerprint(),
            expires_at: now
                .checked_add(expires_in)
                .unwrap_or(now + StdDuration::from_secs(365 * 86_400)),
        })))
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
    /// Give up after this long: no attempt starts after it, and the attempt under way ends
    /// at it (its timeout is cut to the time left, response body included).
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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
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
        #[cfg_attr(feature = "serde", serde(with = "crate::settings::duration"))]
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
        #[cfg_attr(
            feature = "serde",
            serde(serialize_with = "crate::settings::duration::option::serialize")
        )]
        wait: Option<StdDuration>,
    },
    /// Fleet mode: a request waits for the fleet's shared rate state, which holds every process
    /// back after a 429 that a process of the fleet was answered (not necessarily this one, and
    /// not this request): its `Retry-After`, at most the retry policy's `max_wait`. The fleet's
    /// word, not an answer of the server to this process.
    FleetHold {
        /// How long the fleet holds the request back.
        #[cfg_attr(feature = "serde", serde(with = "crate::settings::duration"))]
        wait: StdDuration,
    },
}

/// Monotonic and wall clocks, read only here.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    /// A clock whose core time starts now.
    pub(crate) fn start() -> Clock {
        Clock { origin: tokio::time::Instant::now() }
    }

    pub(crate) fn now(&self) -> Instant {
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

    /// The time left until `at` (zero if it has passed).
    fn until(self, at: Instant) -> StdDuration {
        self.to_tokio(at).saturating_duration_since(tokio::time::Instant::now())
    }

    fn wall(&self, now: Instant) -> WallClock {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        WallClock::new(now, UnixTime::from_secs(secs))
    }
}

/// The published token: read by `token()` (and the fleet's admission) without the session's lock.
struct Cached {
    token: Token,
    usable_until: tokio::time::Instant,
}

/// The session, and the header of its token beside it under its lock.
struct SessionCell {
    core: CoreSession,
    /// The `Authorization` header of the token `Shared::sync_cache` last published, with its
    /// generation: built once per token, cloned for each request the session authorizes with
    /// it (under the lock that authorized it, so no other read of the cache is needed).
    header: Option<(Generation, HeaderValue)>,
    /// The tokens replaced last ([`RETIRED_TOKENS`] at most), until they expire: a request
    /// sent with one may be answered after the session moved on (a refresh, a 401), and what
    /// the server echoes of it is masked too ([`Client::redact`]). The session masks only the
    /// token it holds.
    retired: Vec<(Token, tokio::time::Instant)>,
}

/// How many replaced tokens [`SessionCell::retired`] keeps for masking.
const RETIRED_TOKENS: usize = 2;

impl std::ops::Deref for SessionCell {
    type Target = CoreSession;

    fn deref(&self) -> &CoreSession {
        &self.core
    }
}

impl std::ops::DerefMut for SessionCell {
    fn deref_mut(&mut self) -> &mut CoreSession {
        &mut self.core
    }
}

impl SessionCell {
    /// `bytes` with the tokens replaced last (until they expire) masked too, each occurrence
    /// by `[redacted]` (and with `cut`, a token's first bytes ending the text): with the core's
    /// matcher, so an echo JSON-escaped in a raw body (`\/`, `\u002B`) is masked as the
    /// session's own values are.
    ///
    /// A masked copy that is masked again is wiped when it is replaced (it may hold the next
    /// token), and kept as it is when there is nothing more in it.
    fn mask_retired<'t>(
        &self,
        bytes: std::borrow::Cow<'t, [u8]>,
        cut: bool,
    ) -> std::borrow::Cow<'t, [u8]> {
        let now = tokio::time::Instant::now();
        self.retired.iter().filter(|(_, expires_at)| *expires_at > now).fold(
            bytes,
            |text, (token, _)| match text {
                std::borrow::Cow::Borrowed(b) => mask_token(b, token.as_str(), cut),
                std::borrow::Cow::Owned(mut b) => {
                    let masked = match mask_token(&b, token.as_str(), cut) {
                        std::borrow::Cow::Owned(masked) => Some(masked),
                        std::borrow::Cow::Borrowed(_) => None,
                    };
                    match masked {
                        Some(masked) => {
                            zeroize::Zeroize::zeroize(&mut b);
                            std::borrow::Cow::Owned(masked)
                        }
                        None => std::borrow::Cow::Owned(b),
                    }
                }
            },
        )
    }

    /// What the server said about the session's failure `e`
    /// ([`error_detail`](CoreSession::error_detail)), with the tokens replaced last masked in
    /// it too (its message, correlation id, code, diagnosis): a request sent with one may be
    /// answered after a refresh replaced it or its usable-until point passed, and the session
    /// masked the answer with the token it holds only.
    fn detail(&mut self, e: ApiError) -> ErrorDetail<'_> {
        let now = tokio::time::Instant::now();
        for (token, expires_at) in &self.retired {
            if *expires_at > now {
                self.core.mask_in_failures(token.as_str());
            }
        }
        self.core.error_detail(e)
    }

    /// `text` with the tokens replaced last masked, as [`Client::redact`] masks them: for what
    /// the session reports of a server's answer (a correlation id, an error's text), which it
    /// masked with the token it holds only.
    fn unretired<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        match self.mask_retired(std::borrow::Cow::Borrowed(text.as_bytes()), false) {
            std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(text),
            // Replacements are ASCII, at the token's ASCII boundaries: still UTF-8.
            std::borrow::Cow::Owned(bytes) => {
                std::borrow::Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }
}

struct Shared {
    session: Mutex<SessionCell>,
    cache: ArcSwapOption<Cached>,
    /// The session's steady-state lane, for requests to read without its lock (see
    /// `client::lane`).
    lane: ArcSwapOption<lane::LaneCell>,
    /// Whether `lane` holds one (set under the session's lock): a request finds there is
    /// none without a look at `lane`.
    lane_live: AtomicBool,
    /// Bumped whenever the token or the token endpoint's state changes; waiters watch it.
    version: watch::Sender<u64>,
    /// Wakes the token driver.
    kick: Notify,
    /// Created by the first [`Client::events`]: until someone subscribes, events are not even
    /// built (a service holding a client per tenant pays for none of the channels' slots).
    events: OnceLock<broadcast::Sender<ClientEvent>>,
    /// API requests: follows redirects within the request's origin only (see [`api_client`]).
    http: reqwest::Client,
    /// Token requests: never follows a redirect (see [`token_client`]).
    token_http: reqwest::Client,
    /// The transport's token request slots, shared with every client of the transport
    /// ([`Transport::with_token_request_limit`](crate::Transport::with_token_request_limit)).
    token_slots: Arc<tokio::sync::Semaphore>,
    /// Most bytes of a token response or an API error body read into memory.
    max_response_body: usize,
    clock: Clock,
    /// When the session was last told the wall-clock time (core instant, milliseconds;
    /// `u64::MAX` before the first time): see `Shared::refresh_wall_clock`.
    wall_set_at: AtomicU64,
    /// `None` for a client of tokens only ([`Target::TokenOnly`](crate::Target::TokenOnly)).
    api_base: Option<reqwest::Url>,
    /// Where plain `http` may carry the bearer token (`Config::allow_insecure_http`).
    plain_http: PlainHttp,
    /// The API base's origin as its URL spells it (`scheme://host[:port]`), if the core's
    /// [`check_token_origin`](credflow_core::http::redirect::check_token_origin) allows it:
    /// found once, when the client is built (see `Shared::check_origin`).
    api_origin_text: Option<Box<str>>,
    /// The key of the API base's host, the host of every request that passes
    /// `Shared::check_origin` (its host breaker's); for a client of tokens only, which sends
    /// no request, that of an empty host.
    api_host: HostKey,
    request_timeout: StdDuration,
    /// `http` is credflow's own API client and ends each request at `request_timeout` by
    /// itself: an attempt without a deadline or a timeout of its own is sent as it is.
    http_times_out: bool,
    token_timeout: StdDuration,
    token_wait: StdDuration,
    /// The timings of the core's request and token drivers (the retry policy's `max_wait`,
    /// `token_wait`).
    driver: DriverConfig,
    /// Fleet mode: the shared store and the degraded-mode switch.
    fleet: Option<FleetLink>,
    /// Set by [`Client::shutdown`]: new work fails at once, and the refresh lease the stopped
    /// driver held is left in `left_lease` for `shutdown` to release (instead of in the
    /// background).
    closing: AtomicBool,
    /// The span of the latest token request: a request that waited for a token follows from
    /// it (`follows_from`), so a trace shows which refresh held it.
    last_fetch: Mutex<Option<tracing::Span>>,
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
    /// is dropped (see `driver::HeldLease`).
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
/// certificate verifier (what reqwest uses by default), trusting also `extra_roots`
/// ([`Config::extra_root_certificates`]), built explicitly so that no process-wide default
/// provider is installed: an application may install its own.
fn tls_config(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<rustls::ClientConfig, Error> {
    use rustls_platform_verifier::Verifier;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Verifier::new_with_extra_roots(extra_roots.iter().cloned(), provider.clone())
        .map_err(|e| Error::config(format!("cannot set up TLS: {e}")))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("cannot set up TLS: {e}")))?
        .dangerous() // not dangerous: the platform verifier, as `with_platform_verifier` sets it
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Fails (instead of letting `tokio::spawn` panic) outside a tokio runtime: the token driver
/// is a tokio task.
fn require_runtime() -> Result<(), Error> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::config(
            "no tokio runtime: a credflow Client runs a background task, so create it \
             inside one (within #[tokio::main], or Runtime::enter / block_on), with time \
             and I/O enabled",
        ));
    }
    Ok(())
}

/// Checks the token URL and the API base against [`Config::allow_insecure_http`], warns about
/// each one that the opt-in lets through in clear text, and says where plain http is allowed.
fn check_urls(config: &Config) -> Result<PlainHttp, Error> {
    let allow = config.allow_insecure_http;
    let urls =
        [("token URL", Some(config.target.token_url())), ("API base", config.target.api_base())];
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
    Ok(if allow { PlainHttp::Anywhere } else { PlainHttp::LoopbackOnly })
}

/// The token endpoint: its URL, authentication method, scope and extra parameters.
fn token_endpoint(config: &Config, plain_http: PlainHttp) -> Result<TokenEndpoint, Error> {
    let token_url = config.target.token_url();
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
        endpoint = endpoint.with_param(name, value).map_err(|e| Error::config(e.to_string()))?;
    }
    Ok(endpoint)
}

/// A jitter seed from the OS.
fn random_seed() -> Result<u64, Error> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::config(format!("no OS randomness for jitter: {e}")))?;
    Ok(u64::from_le_bytes(bytes))
}

/// The link to the fleet's shared store, when one is configured ([`Config::shared`]).
fn fleet_link(config: &Config, clock: Clock) -> Option<FleetLink> {
    let store = config.shared.as_ref()?;
    let scope = FleetScope {
        client_id: config.credentials.id.as_str().to_owned(),
        token_url: config.target.token_url().to_owned(),
        credential: config.credentials.fingerprint(),
        pacer: config.session.pacer,
        max_hold: StdDuration::from_millis(config.session.retry.max_wait.as_millis()),
    };
    Some(FleetLink::new(Arc::clone(store), scope, FLEET_CALL_TIMEOUT, clock))
}

/// The caller's transport (`given`: shared, or with its own API client), else credflow's own
/// with `extra_roots`.
fn transport(
    given: Option<crate::Transport>,
    connect_timeout: StdDuration,
    request_timeout: StdDuration,
    user_agent: &str,
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<crate::Transport, Error> {
    match given {
        Some(_) if !extra_roots.is_empty() => Err(Error::config(
            "extra_root_certificates apply to the HTTP clients credflow builds, not to a \
             Transport given to it: build that one with Transport::with_roots",
        )),
        Some(transport) => Ok(transport),
        None => crate::Transport::own(connect_timeout, request_timeout, user_agent, extra_roots),
    }
}

impl Client {
    /// Builds a client and starts its token driver. Must be called inside a tokio runtime
    /// (with time and I/O enabled); outside one it returns an error saying so, never panics.
    /// The first token is requested at once, in the background.
    ///
    /// # Errors
    ///
    /// A configuration error (exit code 2) outside a tokio runtime; and, before anything is resolved or connected, for a
    /// token URL or API base that is malformed, carries userinfo, or is plain `http` to a host
    /// that is not loopback without [`Config::allow_insecure_http`] (the core's
    /// [`Url::parse_with`](credflow_core::http::url::Url::parse_with)); for a scope or
    /// parameters that do not fit, an inconsistent session configuration, or no OS randomness.
    pub fn new(config: Config) -> Result<Client, Error> {
        require_runtime()?;
        let plain_http = check_urls(&config)?;
        let endpoint = token_endpoint(&config, plain_http)?;
        let api_base = config.target.api_base().map(parse_api_base).transpose()?;
        let seed = match config.seed {
            Some(seed) => seed,
            None => random_seed()?,
        };
        let driver = driver_config(&config);
        let clock = Clock::start();
        let fleet = fleet_link(&config, clock);
        let crate::Transport { api: http, token: token_http, token_slots, api_timeout, .. } =
            transport(
                config.transport,
                config.connect_timeout,
                config.request_timeout,
                &config.user_agent,
                &config.extra_root_certificates,
            )?;
        let session = Session::new(config.credentials, endpoint, config.session, seed)
            .map_err(|e| Error::config(e.to_string()))?;
        let (version, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            session: Mutex::new(SessionCell { core: session, header: None, retired: Vec::new() }),
            cache: ArcSwapOption::empty(),
            lane: ArcSwapOption::empty(),
            lane_live: AtomicBool::new(false),
            version,
            kick: Notify::new(),
            events: OnceLock::new(),
            http,
            token_http,
            token_slots,
            max_response_body: config.max_response_body,
            clock,
            wall_set_at: AtomicU64::new(u64::MAX),
            api_origin_text: api_base
                .as_ref()
                .filter(|base| {
                    origin(base)
                        .is_some_and(|api| check_token_origin(&api, &api, plain_http).is_ok())
                })
                .map(|base| Box::from(&base[..url::Position::BeforePath])),
            api_host: HostKey::from_host(
                api_base.as_ref().and_then(|u| u.host_str()).unwrap_or(""),
            ),
            api_base,
            plain_http,
            request_timeout: config.request_timeout,
            http_times_out: api_timeout == Some(config.request_timeout),
            token_timeout: config.token_timeout,
            token_wait: config.token_wait,
            driver,
            fleet,
            closing: AtomicBool::new(false),
            left_lease: Mutex::new(None),
            last_fetch: Mutex::new(None),
            admission_gates: Default::default(),
        });
        let driver = Mutex::new(Some(tokio::spawn(driver::drive(Arc::clone(&shared)))));
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
    /// a client of their own, which never follows one. When credflow built it, it ends each
    /// request at its transport's `request_timeout` (this client's, unless the transport is
    /// shared), the body included, unless the request sets a timeout of its own; a caller's
    /// client is as the caller built it.
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
        let shared = self.shared();
        let mut session = shared.lock();
        // With the requests sent in the steady-state lane since the session last heard.
        shared.settle_lane(&mut session);
        session.counters()
    }

    /// Fleet mode: whether the client works with its fleet or, the shared store having failed,
    /// alone on its local session. `None` without a shared store.
    pub fn fleet_status(&self) -> Option<FleetStatus> {
        self.shared().fleet.as_ref().map(FleetLink::status)
    }

    /// Subscribes to the client's events (token acquired, retries, waits, breaker changes):
    /// those sent from now on. The channel is made by the first call; a client nobody
    /// subscribes to neither keeps nor builds events.
    pub fn events(&self) -> broadcast::Receiver<ClientEvent> {
        let shared = self.shared();
        shared.events.get_or_init(|| broadcast::channel(EVENT_CAPACITY).0).subscribe()
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
    /// credentials were rejected (until one token request checks again:
    /// [`Error::next_probe_at`]); the answer is not a usable token (an HTML page, invalid JSON,
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

    /// Reports that the API rejected `token` (a 401 for a request sent with another HTTP
    /// stack): the client drops it if it is still the current token, and fetches a new one at
    /// once, in the background; the next [`token`](Self::token) waits for it. Generation-aware:
    /// a token older than the current one is ignored (another caller reported it already, or
    /// the client refreshed meanwhile), so many callers reporting the same 401 cause one
    /// refresh. Reports in a loop cannot storm the token endpoint: a refresh made for a 401
    /// comes no sooner than `min_refresh_interval` (1 s) after the last one
    /// ([`Session::invalidate`](credflow_core::session::Session::invalidate)).
    ///
    /// Returns whether the token was dropped. [`send`](Self::send) does this itself.
    pub fn invalidate(&self, token: &Token) -> bool {
        let shared = self.shared();
        let now = shared.clock.now();
        let dropped = {
            let mut session = shared.lock();
            let dropped = session.invalidate(now, token.0.generation);
            shared.settle(&mut session, now);
            dropped
        };
        if dropped {
            shared.kick.notify_one();
        }
        dropped
    }

    /// A new token, fetched now whatever the current one's remaining life (after the OAuth
    /// client's roles changed, say): the current token is dropped ([`invalidate`](Self::invalidate))
    /// and the next one awaited, for [`Config::token_wait`](crate::Config::token_wait) at most.
    /// Without a current token (none fetched yet, or the last one dropped), the token being
    /// fetched is the new one. Spaced as the refreshes made for a 401: no sooner than
    /// `min_refresh_interval` (1 s) after the last one, so a loop of calls cannot storm the
    /// token endpoint.
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub async fn refresh(&self) -> Result<Token, Error> {
        self.shared().open()?;
        match self.shared().cached() {
            Some(current) => {
                self.invalidate(&current);
                self.token().await
            }
            None => self.shared().wait_for_token().await,
        }
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
    /// `client_secret_jwt` assertion, the current token and the two it replaced last (until
    /// they expire: a request sent with one may be answered after a refresh), each replaced
    /// with `[redacted]`
    /// (see [`credflow_core::redact`] for the rules). For printing or logging what a server
    /// sent: response headers, error bodies. The client's errors and logs are masked already.
    pub fn redact<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        match self.redact_bytes(text.as_bytes()) {
            std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(text),
            // Every replacement is ASCII, at an ASCII boundary of a credential (visible ASCII
            // or form- and Base64-encoded): the text stays UTF-8.
            std::borrow::Cow::Owned(bytes) => std::borrow::Cow::Owned(
                String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
        }
    }

    /// [`redact`](Self::redact) for bytes that may not be text (a body, a header value with
    /// bytes beyond ASCII): every occurrence is replaced with `[redacted]`, every other byte
    /// kept.
    pub fn redact_bytes<'t>(&self, bytes: &'t [u8]) -> std::borrow::Cow<'t, [u8]> {
        self.redact_bytes_as(bytes, false)
    }

    /// [`redact_bytes`](Self::redact_bytes) for the first part of a longer body, cut at its
    /// end: a credential's leading bytes at the very end ([`MIN_CUT_PREFIX`] or more) are
    /// masked too, as the cut echo of it they may be.
    ///
    /// [`MIN_CUT_PREFIX`]: credflow_core::redact::MIN_CUT_PREFIX
    pub fn redact_cut_bytes<'t>(&self, bytes: &'t [u8]) -> std::borrow::Cow<'t, [u8]> {
        self.redact_bytes_as(bytes, true)
    }

    fn redact_bytes_as<'t>(&self, bytes: &'t [u8], cut: bool) -> std::borrow::Cow<'t, [u8]> {
        let session = self.shared().lock();
        let secrets = session.secrets(self.shared().clock.now());
        // One budget of work for the whole text (`credflow_core::redact::work_limit`): a text
        // made to be costly to search has its rest masked, never shown. Searched under the
        // session's lock, which that bound keeps short (about 1 ms for 64 KiB at most here):
        // outside it, the secret and the tokens would have to be copied out (and wiped).
        let masked = mask_spans(bytes, &mut secrets.spans(bytes, cut));
        session.mask_retired(masked, cut)
    }
}

/// `bytes` with every span of `spans` replaced by `[redacted]`; where the search ran out of
/// work (a text made to be costly to search), the last span is the rest of the text: the
/// marker shows it, and a debug event says so (a warning would let such a server write a line
/// per header value to the log).
fn mask_spans<'t>(
    bytes: &'t [u8],
    spans: &mut credflow_core::redact::Spans<'_, '_>,
) -> std::borrow::Cow<'t, [u8]> {
    let (mut shown, mut last) = (0, 0);
    let mut out: Option<Vec<u8>> = None;
    for span in spans.by_ref() {
        last = span.start;
        let out = out.get_or_insert_with(|| Vec::with_capacity(bytes.len()));
        out.extend_from_slice(&bytes[shown..span.start]);
        out.extend_from_slice(credflow_core::redact::REDACTED.as_bytes());
        shown = span.end;
    }
    if spans.exhausted() {
        debug!(
            len = bytes.len(),
            masked_from = last,
            "masking the server's text ran out of work (it repeats a credential's start over \
             and over): its rest is masked"
        );
    }
    match out {
        None => std::borrow::Cow::Borrowed(bytes),
        Some(mut out) => {
            out.extend_from_slice(&bytes[shown..]);
            std::borrow::Cow::Owned(out)
        }
    }
}

/// `bytes` with every occurrence of `token` replaced by `[redacted]`, found as the core finds
/// the token it holds ([`token_spans`]: JSON escapes read, the escaped span masked whole, one
/// budget of work for the text), and with `cut` (the first part of a longer text) its first
/// [`MIN_CUT_PREFIX`] bytes or more at the very end too.
///
/// [`token_spans`]: credflow_core::redact::token_spans
/// [`MIN_CUT_PREFIX`]: credflow_core::redact::MIN_CUT_PREFIX
fn mask_token<'t>(bytes: &'t [u8], token: &str, cut: bool) -> std::borrow::Cow<'t, [u8]> {
    mask_spans(bytes, &mut credflow_core::redact::token_spans(bytes, token, cut))
}

impl Client {
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
    /// before anything is sent (see [`send_with`](Self::send_with)). The future does not
    /// borrow the client: spawn it, or drop the client while it runs (the request keeps what it
    /// needs, the token driver included, until it ends).
    // `#[inline]` on this and `send_with`: the future is built where the caller keeps it,
    // not built here and copied there.
    #[inline]
    pub fn send(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<reqwest::Response, Error>> + Send + use<> {
        self.send_with(request, RequestOptions::default())
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
    #[inline]
    pub fn send_with(
        &self,
        request: reqwest::Request,
        options: RequestOptions,
    ) -> impl Future<Output = Result<reqwest::Response, Error>> + Send + use<> {
        let times_out = self.shared().http_times_out;
        self.send_through(request, options, times_out, |http, attempt| {
            // reqwest's future (boxed already), not the request, is what the attempt holds.
            let sent = http.execute(attempt);
            async move {
                sent.await.map_err(|e| {
                    let kind = transport_kind(&e);
                    (kind, Box::new(e) as BoxError)
                })
            }
        })
    }

    /// The per-request loop over any way of sending one attempt (the client's own HTTP client,
    /// handed to `transport` with each attempt, or the rest of a middleware stack).
    /// `http_times_out`: `transport` ends each request at `request_timeout` by itself.
    ///
    /// Not an `async fn`, nor are [`send`](Self::send) and [`send_with`](Self::send_with):
    /// each would wrap the attempts' future (kilobytes) in one more, copied whole whenever it
    /// moves.
    pub(crate) fn send_through<F, Fut>(
        &self,
        request: reqwest::Request,
        options: RequestOptions,
        http_times_out: bool,
        transport: F,
    ) -> impl Future<Output = Result<reqwest::Response, Error>> + use<F, Fut>
    where
        F: FnMut(&reqwest::Client, reqwest::Request) -> Fut,
        Fut: Future<Output = Result<reqwest::Response, (TransportKind, BoxError)>>,
    {
        // OpenTelemetry's HTTP client fields (the path, never the query: it may carry
        // secrets of the caller's); each attempt is a child span (see `send::attempt_span`).
        let span = tracing::info_span!(
            "credflow.send",
            "http.request.method" = request.method().as_str(),
            "server.address" = request.url().host_str(),
            "server.port" = request.url().port_or_known_default(),
            "url.path" = request.url().path(),
        );
        send::attempts(Arc::clone(&self.inner), request, options, http_times_out, transport)
            .instrument(span)
    }
}

/// The session's own error for a request whose deadline passed while it waited.
fn deadline_exceeded() -> Error {
    Error::from(ApiError {
        kind: ApiErrorKind::DeadlineExceeded { sendable_at: None },
        status: None,
    })
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

/// The timings of the core's fleet drivers: the retry policy's `max_wait`, `token_wait`.
fn driver_config(config: &Config) -> DriverConfig {
    DriverConfig {
        max_wait: config.session.retry.max_wait,
        token_wait: core_duration(config.token_wait),
        ..DriverConfig::default()
    }
}

/// A std duration as the core's (milliseconds, saturating).
pub(crate) fn core_duration(d: StdDuration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A core duration as std's.
fn std_duration(d: Duration) -> StdDuration {
    StdDuration::from_millis(d.as_millis())
}

impl Shared {
    /// `Err` once [`Client::shutdown`] was called.
    fn open(&self) -> Result<(), Error> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(Error::shut_down());
        }
        Ok(())
    }

    /// Sends the event `make` builds to the subscribers of [`Client::events`], if there ever
    /// was one.
    fn emit(&self, make: impl FnOnce() -> ClientEvent) {
        if let Some(events) = self.events.get() {
            let _ = events.send(make());
        }
    }

    fn lock(&self) -> MutexGuard<'_, SessionCell> {
        // A panic while holding the lock cannot leave the session inconsistent in a way that
        // matters more than stopping every caller: keep going with the inner value.
        self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A mutex's value, even if a panic poisoned it (the values guarded with this stay consistent).
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client allocates its event channel (256 slots) when someone first subscribes, not
    /// when it is built: a service holding a client per tenant pays for none it does not read.
    #[tokio::test]
    async fn the_event_channel_is_made_by_the_first_subscriber() {
        // A token URL nothing listens on (port 9, discard): the driver's request fails; no
        // matter, only the channel is looked at.
        let credentials = crate::config::credentials("tenant", "secret").expect("credentials");
        let client = Client::new(Config::token_only("http://127.0.0.1:9/token", credentials))
            .expect("client");
        assert!(client.shared().events.get().is_none(), "no channel before events()");
        let _events = client.events();
        assert!(client.shared().events.get().is_some());
        client.shutdown().await;
    }
}
