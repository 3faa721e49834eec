//! The session: one value that ties the token lifecycle, the retry policy and budget, the circuit
//! breakers and the pacer together, sans-IO.
//!
//! An adapter owns one [`Session`] per client id and drives it with the run loop shown in the
//! [crate documentation](crate). The session never blocks, never reads a clock and never does I/O:
//! it is fed `now` and what the network answered, and it answers with the next thing to do.
//!
//! ## Inputs and outputs
//!
//! | the adapter calls | and gets |
//! |---|---|
//! | [`poll_token_request`](Session::poll_token_request) | a token request to send, or nothing due |
//! | [`handle_token_response`](Session::handle_token_response) / [`handle_token_error`](Session::handle_token_error) | state updated, events queued |
//! | [`begin`](Session::begin) then [`authorize`](Session::authorize) | the bearer token to attach, "not before T, because …", or a typed failure |
//! | [`handle_response`](Session::handle_response) / [`handle_transport_error`](Session::handle_transport_error) | a [`Verdict`]: done, retry at T, or fail |
//! | [`poll_timeout`](Session::poll_timeout) / [`handle_timeout`](Session::handle_timeout) | the next deadline and why |
//! | [`poll_event`](Session::poll_event) | events to log: token acquired, refresh failed, breaker opened, … |
//!
//! Every "no" says until when: [`Authorize::Wait`] and [`Verdict::Retry`] carry an instant, and
//! [`ApiError`] says what happened, with the server's codes and correlation id.

use core::fmt;

use heapless::{Deque, String, Vec};

use crate::breaker::{Admission, BreakerConfig, BreakerEvent, CircuitBreaker};
use crate::classify::{CorrelationId, Diagnosis, ResponseClass, classify_response, correlation_id};
use crate::http::date::parse_http_date;
use crate::http::redirect::{LocationError, Origin};
use crate::http::url::{PlainHttp, Url, UrlError};
use crate::http::{Headers, Method};
use crate::lifecycle::{
    ConfigError, Generation, Lifecycle, LifecycleConfig, LifecycleEvent, RejectReason, Ticket,
    TokenFailure, TokenTimes, Wake,
};
use crate::oauth::{
    AuthMethod, EncodeError, JwtInputs, OAuthError, ResponseError, ResponseOptions, ScopeCheck,
    TokenErrorClass, TokenRequest, TokenRequestConfig, encode_token_request, parse_token_error,
    parse_token_response,
};
use crate::ratelimit::pacer::{Pace, PaceReason, Pacer, PacerConfig, Priority};
use crate::redact::Secrets;
use crate::retry::budget::{BudgetConfig, RetryBudget};
use crate::retry::policy::{
    Attempt, Failure, GiveUpReason, RetryDecision, RetryPolicy, TransportKind, WaitSource,
};
use crate::rng::Rng;
use crate::secret::{AccessToken, Credentials, Fingerprint};
use crate::snapshot::{self, SealError, UnsealError};
use crate::text::push_decimal;
use crate::time::{Duration, Instant, UnixTime, WallClock};

/// Default capacity of a [`TokenEndpoint`] in bytes: its token URL, scope and extra parameters
/// together (the const generic `E`). Genesys Cloud needs about 50 (a URL, no scope).
pub const ENDPOINT_CAPACITY: usize = 768;
/// Extra token-request parameters (`audience`, `resource`, …) the session stores.
pub const EXTRA_PARAMS: usize = 4;
/// Events kept until drained; the oldest is dropped on overflow.
pub const SESSION_EVENT_CAPACITY: usize = 8;

/// What the session asks the token endpoint for, owned (no allocation).
///
/// The token URL, the scope and the extra parameters share one buffer of `E` bytes (default
/// [`ENDPOINT_CAPACITY`]); a firmware image sizes it to what it sends (`TokenEndpoint<64>` holds
/// a Genesys Cloud login URL), and its session takes the same `E`.
///
/// The token URL receives the client credentials, so it must be `https`, or `http` to a
/// loopback host (`127.0.0.0/8`, `[::1]`, `localhost`; see
/// [`url`](crate::http::url#plain-http-only-to-loopback)). Plain `http` to any other host
/// needs the explicit opt-in [`TokenEndpoint::new_with_plain_http`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEndpoint<const E: usize = ENDPOINT_CAPACITY> {
    /// The token URL, then the scope and the parameters in the order they were given.
    text: String<E>,
    url_end: usize,
    scope: Option<(usize, usize)>,
    /// `(name start, name end = value start, value end)` in `text`.
    extra: Vec<(usize, usize, usize), EXTRA_PARAMS>,
    auth: AuthMethod,
    jwt_lifetime: Duration,
    plain_http: PlainHttp,
}

/// Why a [`TokenEndpoint`] or [`Session`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupError {
    /// The token URL does not fit the endpoint's capacity (the const generic `E`).
    TokenUrlTooLong,
    /// The token URL is refused: not an absolute `http`/`https` URL, with userinfo, or `http`
    /// to a host that is not loopback without the opt-in (the inner error says which).
    InvalidTokenUrl(UrlError),
    /// The scope does not fit what is left of the endpoint's capacity.
    ScopeTooLong,
    /// More than [`EXTRA_PARAMS`] extra parameters, or one that does not fit what is left of
    /// the endpoint's capacity.
    TooManyExtraParams,
    /// A lifecycle setting is inconsistent.
    Lifecycle(ConfigError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HINT: &str = "raise the endpoint capacity (TokenEndpoint's const generic E, shared \
                            by the URL, the scope and the extra parameters)";
        match self {
            SetupError::TokenUrlTooLong => write!(f, "token URL too long: {HINT}"),
            SetupError::InvalidTokenUrl(e) => write!(f, "invalid token URL: {e}"),
            SetupError::ScopeTooLong => write!(f, "scope too long: {HINT}"),
            SetupError::TooManyExtraParams => {
                write!(f, "more than {EXTRA_PARAMS} extra parameters, or one too long: {HINT}")
            }
            SetupError::Lifecycle(e) => write!(f, "lifecycle configuration: {e}"),
        }
    }
}

impl core::error::Error for SetupError {}

impl<const E: usize> TokenEndpoint<E> {
    /// A client-credentials request to `token_url` with `client_secret_basic` authentication.
    ///
    /// # Errors
    ///
    /// [`SetupError::InvalidTokenUrl`] for a malformed URL, userinfo in it, or `http` to a host
    /// that is not loopback ([`UrlError::InsecureHttp`]); [`SetupError::TokenUrlTooLong`].
    pub fn new(token_url: &str) -> Result<Self, SetupError> {
        TokenEndpoint::new_with_plain_http(token_url, PlainHttp::LoopbackOnly)
    }

    /// [`TokenEndpoint::new`], with `http` token URLs allowed where `plain_http` says.
    /// [`PlainHttp::Anywhere`] is the explicit opt-in to send the client credentials in clear
    /// text to a host that is not loopback: for a test network without TLS, never in
    /// production.
    ///
    /// ```
    /// use credflow_core::http::url::{PlainHttp, UrlError};
    /// use credflow_core::session::{SetupError, TokenEndpoint};
    /// const URL: &str = "http://auth.example.invalid/oauth/token";
    /// assert_eq!(TokenEndpoint::<64>::new(URL), Err(SetupError::InvalidTokenUrl(UrlError::InsecureHttp)));
    /// let endpoint = TokenEndpoint::<64>::new_with_plain_http(URL, PlainHttp::Anywhere)?;
    /// assert_eq!(endpoint.plain_http(), PlainHttp::Anywhere);
    /// # Ok::<(), SetupError>(())
    /// ```
    pub fn new_with_plain_http(token_url: &str, plain_http: PlainHttp) -> Result<Self, SetupError> {
        Url::parse_with(token_url, plain_http).map_err(SetupError::InvalidTokenUrl)?;
        let text = String::try_from(token_url).map_err(|_| SetupError::TokenUrlTooLong)?;
        Ok(TokenEndpoint {
            url_end: text.len(),
            text,
            auth: AuthMethod::default(),
            scope: None,
            extra: Vec::new(),
            jwt_lifetime: Duration::from_secs(60),
            plain_http,
        })
    }

    /// The token endpoint of a Genesys Cloud environment.
    ///
    /// # Errors
    ///
    /// [`SetupError::TokenUrlTooLong`] if `E` is below the URL's length (under 60 bytes).
    pub fn genesys(env: &crate::env::Environment) -> Result<Self, SetupError> {
        TokenEndpoint::new(env.token_url)
    }

    /// Chooses the client authentication method.
    pub fn with_auth(mut self, auth: AuthMethod) -> Self {
        self.auth = auth;
        self
    }

    /// Requests `scope` (space-separated). Genesys Cloud ignores scope for client credentials
    /// (rights come from the OAuth client's roles); generic OAuth2 servers use it.
    pub fn with_scope(mut self, scope: &str) -> Result<Self, SetupError> {
        let range = self.append(scope).ok_or(SetupError::ScopeTooLong)?;
        self.scope = Some(range);
        Ok(self)
    }

    /// Adds an extra form parameter such as `audience` or `resource`.
    pub fn with_param(mut self, name: &str, value: &str) -> Result<Self, SetupError> {
        if self.extra.is_full() {
            return Err(SetupError::TooManyExtraParams);
        }
        let mark = self.text.len();
        let (Some((start, middle)), Some((_, end))) = (self.append(name), self.append(value))
        else {
            self.text.truncate(mark);
            return Err(SetupError::TooManyExtraParams);
        };
        // Cannot fail: fullness was checked above.
        let _ = self.extra.push((start, middle, end));
        Ok(self)
    }

    /// Lifetime of `client_secret_jwt` assertions (default 60 s).
    pub fn with_jwt_lifetime(mut self, lifetime: Duration) -> Self {
        self.jwt_lifetime = lifetime;
        self
    }

    /// The token URL.
    pub fn token_url(&self) -> &str {
        self.text.get(..self.url_end).unwrap_or_default()
    }

    /// The authentication method.
    pub fn auth(&self) -> AuthMethod {
        self.auth
    }

    /// Where `http` token URLs are allowed: [`PlainHttp::LoopbackOnly`] unless built with
    /// [`new_with_plain_http`](Self::new_with_plain_http).
    pub fn plain_http(&self) -> PlainHttp {
        self.plain_http
    }

    /// The requested scope, if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.map(|(start, end)| self.text.get(start..end).unwrap_or_default())
    }

    /// The extra parameters, in the order they were added.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.extra.iter().map(|&(start, middle, end)| {
            (
                self.text.get(start..middle).unwrap_or_default(),
                self.text.get(middle..end).unwrap_or_default(),
            )
        })
    }

    /// Appends `s` to the text and returns its range, or `None` if it does not fit.
    fn append(&mut self, s: &str) -> Option<(usize, usize)> {
        let start = self.text.len();
        self.text.push_str(s).ok()?;
        Some((start, self.text.len()))
    }
}

/// Every tunable of a session, with the defaults described on each part.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct SessionConfig {
    /// Token refresh timing and token-request backoff.
    pub lifecycle: LifecycleConfig,
    /// Per-request retry policy (3 retries, 500 ms backoff base, longest accepted wait).
    pub retry: RetryPolicy,
    /// The retry budget shared by all requests of the session.
    pub budget: BudgetConfig,
    /// Circuit breaker in front of the token endpoint (cooldown capped at 60 s by default).
    #[cfg_attr(feature = "serde", serde(deserialize_with = "crate::serde_impls::token_breaker"))]
    pub token_breaker: BreakerConfig,
    /// Circuit breaker per API host.
    pub api_breaker: BreakerConfig,
    /// Rate-limit pacing and priority reserve.
    pub pacer: PacerConfig,
    /// `expires_in` assumed when a token response has none (default 3600 s).
    pub default_expires_in: Duration,
    /// Longest token life believed (default 7 days); longer values are clamped.
    pub max_expires_in: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            lifecycle: LifecycleConfig::default(),
            retry: RetryPolicy::default(),
            budget: BudgetConfig::default(),
            // Token requests are single-flight, so probes are cheap: cap the cooldown at a
            // minute so a pod is back within about a minute of the endpoint's recovery.
            token_breaker: BreakerConfig {
                max_cooldown: Duration::from_secs(60),
                ..BreakerConfig::default()
            },
            api_breaker: BreakerConfig::default(),
            pacer: PacerConfig::default(),
            default_expires_in: Duration::from_secs(3600),
            max_expires_in: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Identifies an API host (or any caller-chosen target) for its own circuit breaker.
///
/// Adapters derive it from the request's authority, e.g. with [`HostKey::from_host`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct HostKey(pub u64);

impl HostKey {
    /// A key for hostname `host` (FNV-1a, case-insensitive).
    pub fn from_host(host: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in host.bytes() {
            h ^= u64::from(b.to_ascii_lowercase());
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        HostKey(h)
    }
}

/// What a caller says about one API request before it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    /// The HTTP method.
    pub method: Method,
    /// The caller vouches that repeating this request is harmless (for POST/PATCH).
    pub idempotent: bool,
    /// Its priority for pacing.
    pub priority: Priority,
    /// No attempt may start after this instant.
    pub deadline: Option<Instant>,
    /// The breaker it is counted against.
    pub host: HostKey,
}

impl RequestSpec {
    /// A request with `method` to `host`, normal priority, no deadline, not marked idempotent.
    pub fn new(method: Method, host: HostKey) -> Self {
        RequestSpec { method, idempotent: false, priority: Priority::Normal, deadline: None, host }
    }
}

/// The state of one API request across its attempts. Created by [`Session::begin`], owned by
/// the caller, handed back to every session call about that request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "pass the request state to authorize and handle_response"]
pub struct RequestState {
    spec: RequestSpec,
    attempts: u32,
    retries: u32,
    reauthenticated: bool,
    generation: Option<Generation>,
    not_before: Instant,
    probe: bool,
    in_flight: bool,
    externally_paced: bool,
    /// Not before this, on an external pacer's word (`Instant::from_millis(0)`: no hold).
    external_hold: Instant,
}

impl RequestState {
    /// The request's description.
    pub fn spec(&self) -> &RequestSpec {
        &self.spec
    }

    /// Attempts sent so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Retries made so far (not counting the single re-authentication retry after a 401).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Marks the next attempt as admitted by an external pacer (`true`), or clears the mark:
    /// a fleet's shared rate budget that counted the attempt against the limit every process
    /// shares, applying the spacing, burst and priority reserves with every process's sends in
    /// view (the std adapter's fleet mode).
    ///
    /// While the mark is set, [`Session::authorize`] holds the attempt back only for what the
    /// server enforces, a 429's `Retry-After` and an exhausted window
    /// ([`Pacer::check_admitted`](crate::ratelimit::pacer::Pacer::check_admitted)), not for
    /// this session's spacing, reserves and estimate of other clients, which know only this
    /// process's sends. The mark survives waits (for a token, a backoff) and is cleared when the
    /// attempt is sent: the next attempt needs its own admission. An attempt without the mark,
    /// because the external pacer could not be asked, is paced here at the request's own
    /// [`priority`](RequestSpec::priority), which the mark never changes.
    pub fn set_externally_paced(&mut self, admitted: bool) {
        self.externally_paced = admitted;
    }

    /// Whether the next attempt was admitted by an external pacer
    /// ([`set_externally_paced`](Self::set_externally_paced)).
    pub fn externally_paced(&self) -> bool {
        self.externally_paced
    }

    /// Holds the next attempt back until `until` on an external pacer's word: a fleet's shared
    /// budget that cannot admit it sooner (another process's 429 held the fleet back, or the
    /// shared window is spent), for longer than the caller would sleep on the pacer's behalf.
    ///
    /// [`Session::authorize`] treats the hold as its own pacer's answer: a hold within
    /// [`RetryPolicy::max_wait`](crate::retry::policy::RetryPolicy) is waited for, and a longer
    /// one (a daily quota's hours) fails fast naming the wait, except for the session's one
    /// probe per `max_wait`, exactly as for a wait this session learned itself. The hold never
    /// shortens a wait of the session's own, and is cleared when the attempt is sent.
    pub fn set_external_hold(&mut self, until: Instant) {
        self.external_hold = until;
    }
}

/// The answer to [`Session::check_token`].
// Returned by value and consumed at once; boxing is not available without an allocator.
#[allow(clippy::large_enum_variant)]
#[must_use]
pub enum TokenStatus<'s, const N: usize> {
    /// A usable token and its timing.
    Ready(&'s AccessToken<N>, TokenTimes),
    /// None yet: ask again at `until`, or on the next token event when `None`.
    Pending {
        /// When the next token request can go out, if known.
        until: Option<Instant>,
    },
    /// None can be had now, and waiting will not help soon.
    Unavailable(ApiError),
}

impl<const N: usize> fmt::Debug for TokenStatus<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenStatus::Ready(_, times) => f.debug_tuple("Ready").field(times).finish(),
            TokenStatus::Pending { until } => {
                f.debug_struct("Pending").field("until", until).finish()
            }
            TokenStatus::Unavailable(e) => f.debug_tuple("Unavailable").field(e).finish(),
        }
    }
}

/// Why an [`Authorize::Wait`] waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum WaitReason {
    /// No usable token yet; one is being requested. Wait for a token event (or `until`).
    Token,
    /// The pacer spreads requests over the rate-limit window.
    Paced(PaceReason),
    /// A retry scheduled by the verdict is not due yet.
    Backoff,
    /// The breaker is half-open and its probe is in flight.
    BreakerProbe,
}

/// The answer to [`Session::authorize`].
// Returned by value and consumed at once; boxing is not available without an allocator.
#[allow(clippy::large_enum_variant)]
#[must_use]
pub enum Authorize<'s, const N: usize> {
    /// Send now with `Authorization: Bearer <token>`; report the outcome with the same state.
    Send {
        /// The token to attach.
        token: &'s AccessToken<N>,
        /// Its generation (kept in the request state for 401 handling).
        generation: Generation,
    },
    /// Not yet. Call again at `until`, or when a token event arrives if `until` is `None`.
    Wait {
        /// When to ask again, if known.
        until: Option<Instant>,
        /// Why.
        reason: WaitReason,
    },
    /// The request cannot be sent; return this error to the caller.
    Fail(ApiError),
}

impl<const N: usize> fmt::Debug for Authorize<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authorize::Send { generation, .. } => {
                f.debug_struct("Send").field("generation", generation).finish_non_exhaustive()
            }
            Authorize::Wait { until, reason } => {
                f.debug_struct("Wait").field("until", until).field("reason", reason).finish()
            }
            Authorize::Fail(e) => f.debug_tuple("Fail").field(e).finish(),
        }
    }
}

/// Why a request is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum RetryReason {
    /// The token was rejected (401); a new one is being fetched, the request is retried once.
    Reauthenticate,
    /// Rate-limited (429).
    RateLimited,
    /// A transient server error (408, 5xx).
    ServerError(u16),
    /// A transport failure.
    Transport(TransportKind),
}

/// The session's verdict on one attempt's outcome.
// Returned by value and consumed at once; boxing is not available without an allocator.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Hand the response to the caller as it is (success, or a permanent answer such as 404).
    Done,
    /// Send again, not before `at` (call [`Session::authorize`] then).
    Retry {
        /// Earliest instant for the next attempt.
        at: Instant,
        /// Why.
        reason: RetryReason,
        /// Where the wait came from (the server's `Retry-After`, or backoff).
        source: WaitSource,
    },
    /// Give up and return this error.
    Fail(ApiError),
}

/// What went wrong, in terms a caller can act on. Carries the server's codes and the correlation
/// id wherever there was a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// What happened.
    pub kind: ApiErrorKind,
    /// The HTTP status of the last response, if there was one.
    pub status: Option<u16>,
    /// The platform's correlation id (`ININ-Correlation-Id`, `X-Request-Id` or `contextId`).
    pub correlation_id: Option<CorrelationId>,
}

/// The kinds of [`ApiError`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// The token endpoint refused the credentials, or answered in a way no retry can change (a
    /// redirect, an unusable response: see `reason`); nothing is retried until the credentials
    /// change.
    CredentialsRejected {
        /// Why, in OAuth terms.
        reason: RejectReason,
        /// The server's error, when it sent one. Copied into the error with the `diagnosis`
        /// feature only; without it `None`, and [`Session::last_token_error`] has it.
        oauth: Option<OAuthError>,
    },
    /// No token could be obtained in time: the token endpoint is down or rate-limited, its
    /// breaker is open, the next token request would come after the caller's deadline, or its
    /// answers cannot be used as tokens. `retry_at` says when the next token request is planned
    /// (`None`: none is, until the configuration changes, or one is in flight).
    TokenUnavailable {
        /// When the next token request may go out.
        retry_at: Option<Instant>,
        /// What went wrong with the last token request, if one failed. Copied into the error
        /// with the `diagnosis` feature only; without it `None`, and
        /// [`Session::last_token_failure`] has it (the error's `status` and `correlation_id`
        /// are the failure's in both cases).
        last: Option<TokenFailureReport>,
    },
    /// The API rejected a fresh token too (401 twice).
    Unauthorized,
    /// 403: the client lacks a permission or scope. Not retried.
    Forbidden(Diagnosis),
    /// The circuit breaker for this host is open until `until`.
    CircuitOpen {
        /// When it lets a probe through.
        until: Instant,
    },
    /// The retry policy gave up.
    GaveUp {
        /// Why it gave up.
        reason: GiveUpReason,
        /// What the last attempt hit.
        last: RetryReason,
    },
    /// The request's deadline passed before it could be sent.
    DeadlineExceeded,
}

impl ApiError {
    fn new(kind: ApiErrorKind) -> Self {
        ApiError { kind, status: None, correlation_id: None }
    }

    /// A one-line explanation of the likely cause.
    pub fn likely_cause(&self) -> &'static str {
        match &self.kind {
            ApiErrorKind::CredentialsRejected { reason, .. } => reason.likely_cause(),
            ApiErrorKind::TokenUnavailable { last: Some(report), .. } => report.likely_cause(),
            // An answer whose report was not copied (no `diagnosis` feature).
            ApiErrorKind::TokenUnavailable { last: None, .. } if self.status.is_some() => {
                "the token endpoint's answer was not a token: the session's last token failure says why"
            }
            ApiErrorKind::TokenUnavailable { last: None, .. } => {
                "the token endpoint did not answer in time: unreachable, overloaded or in maintenance"
            }
            ApiErrorKind::Unauthorized => {
                "a fresh token was rejected too: the token belongs to another environment, or the OAuth client was disabled"
            }
            ApiErrorKind::Forbidden(_) => {
                "the OAuth client's roles lack a permission this request needs"
            }
            ApiErrorKind::CircuitOpen { .. } => {
                "the API host failed repeatedly; requests are held back until it recovers"
            }
            ApiErrorKind::GaveUp { reason, .. } => reason.likely_cause(),
            ApiErrorKind::DeadlineExceeded => "the request's deadline passed while waiting",
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ApiErrorKind::CredentialsRejected { reason, oauth } => {
                // A redirect or an unusable answer stops token requests too, but says nothing
                // about the credentials.
                f.write_str(match reason {
                    RejectReason::Redirected | RejectReason::UnusableResponse => {
                        "token requests stopped"
                    }
                    _ => "credentials rejected",
                })?;
                match oauth {
                    Some(e) => write!(f, ": {e}")?,
                    None => write!(f, " ({reason:?})")?,
                }
            }
            ApiErrorKind::TokenUnavailable { last: Some(report), .. } => {
                write!(f, "no token available: {report}")?
            }
            ApiErrorKind::TokenUnavailable { last: None, .. } => match self.status {
                // An answer whose report was not copied (no `diagnosis` feature).
                Some(status) => {
                    write!(f, "no token available: the token endpoint answered HTTP {status}")?
                }
                None => f.write_str("no token available: the token endpoint did not answer")?,
            },
            ApiErrorKind::Unauthorized => {
                f.write_str("unauthorized (401) even with a fresh token")?
            }
            ApiErrorKind::Forbidden(d) => write!(f, "forbidden (403): {d}")?,
            ApiErrorKind::CircuitOpen { until } => write!(f, "circuit open until {until}")?,
            ApiErrorKind::GaveUp { reason, last } => write!(f, "gave up after {last:?}: {reason}")?,
            ApiErrorKind::DeadlineExceeded => f.write_str("deadline exceeded")?,
        }
        if let Some(id) = &self.correlation_id {
            write!(f, " [correlation id {id}]")?;
        }
        Ok(())
    }
}

impl core::error::Error for ApiError {}

/// Capacity of [`TokenProblem::Unusable`]'s media type, in bytes.
pub const CONTENT_TYPE_CAPACITY: usize = 48;

/// What went wrong with a token request.
// Kept in the session and in errors by value; boxing is not available without an allocator.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenProblem {
    /// The token endpoint answered with an error status (RFC 6749 §5.2).
    Refused(OAuthError),
    /// A success status whose body is not a usable token response (RFC 6749 §5.1): an HTML page
    /// from a proxy or captive portal, invalid JSON, no `access_token`, a `token_type` other
    /// than `Bearer`, a token with a character an HTTP header cannot carry, an OAuth error body
    /// with a success status.
    Unusable {
        /// The HTTP status.
        status: u16,
        /// What was wrong with the body.
        error: ResponseError,
        /// The media type of `Content-Type` (`text/html`), if there was one (cut to
        /// [`CONTENT_TYPE_CAPACITY`] bytes, control characters replaced by spaces). Recorded
        /// with the `diagnosis` feature only.
        content_type: Option<String<CONTENT_TYPE_CAPACITY>>,
    },
    /// No answer: the request failed in transport.
    Transport(TransportKind),
    /// No answer within the lifecycle's request timeout.
    TimedOut,
}

/// The last failed token request, as the session recorded it: what went wrong, the
/// correlation id and the wait the server asked for. Every text in it that came from the server
/// is bounded and has the client's credentials masked ([`crate::redact`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFailureReport {
    /// What went wrong.
    pub problem: TokenProblem,
    /// The platform's correlation id of the answer, if there was one.
    pub correlation_id: Option<CorrelationId>,
    /// The wait the server asked for (`Retry-After`), as it asked: the lifecycle may wait less
    /// ([`LifecycleConfig::max_server_wait`]).
    pub retry_after: Option<Duration>,
}

impl TokenFailureReport {
    /// The HTTP status of the answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match &self.problem {
            TokenProblem::Refused(e) => Some(e.status),
            TokenProblem::Unusable { status, .. } => Some(*status),
            TokenProblem::Transport(_) | TokenProblem::TimedOut => None,
        }
    }

    /// Whether asking again may get a token without a change of configuration: a rate limit,
    /// a transient server error, a transport failure. `false` for answers that will not change
    /// by themselves: a body that is not a usable token response, or an error that is neither a
    /// rate limit nor transient (a 404 from the wrong URL).
    pub fn is_retryable(&self) -> bool {
        match &self.problem {
            TokenProblem::Refused(e) => e.class.is_retryable(),
            TokenProblem::Unusable { .. } => false,
            TokenProblem::Transport(_) | TokenProblem::TimedOut => true,
        }
    }

    /// A one-line explanation of the likely cause.
    pub fn likely_cause(&self) -> &'static str {
        if self.retry_after.is_some() {
            return "the token endpoint asked for a longer wait than the caller accepts (rate-limited or in maintenance)";
        }
        match &self.problem {
            TokenProblem::Refused(e) => e.class.likely_cause(),
            TokenProblem::Unusable { error, .. } => match error {
                ResponseError::Empty | ResponseError::NotJson => {
                    "the token URL answers with something else than a token endpoint: the wrong URL, or a proxy or captive portal in between"
                }
                ResponseError::UnsupportedTokenType(_)
                | ResponseError::InvalidAccessToken(_)
                | ResponseError::TokenTooLong { .. } => {
                    "the server issues tokens credflow cannot use as bearer tokens (token type, characters or size)"
                }
                _ => {
                    "the token URL does not answer like an OAuth 2.0 token endpoint: the wrong URL, or a proxy in between"
                }
            },
            TokenProblem::Transport(_) => {
                "the token endpoint could not be reached, or the connection failed"
            }
            TokenProblem::TimedOut => "the token endpoint did not answer in time",
        }
    }
}

impl fmt::Display for TokenFailureReport {
    /// `HTTP 200: token response is not a JSON object (…) (Content-Type text/html)`;
    /// `HTTP 503, asked to wait 3600 s (Retry-After)`. The correlation id is not included: an
    /// [`ApiError`] shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            TokenProblem::Refused(e) => write!(f, "{e}")?,
            TokenProblem::Unusable { status, error, content_type } => {
                write!(f, "HTTP {status}: {error}")?;
                if let Some(media) = content_type {
                    write!(f, " (Content-Type {media})")?;
                }
            }
            TokenProblem::Transport(kind) => {
                let what = match kind {
                    TransportKind::Connect => "could not connect",
                    TransportKind::Reset => "the connection failed",
                    TransportKind::Timeout => "no answer in time",
                    TransportKind::Other => "the exchange failed",
                };
                write!(f, "the token request failed: {what}")?
            }
            TokenProblem::TimedOut => f.write_str("the token request got no answer in time")?,
        }
        if let Some(wait) = self.retry_after {
            write!(f, ", asked to wait {} s (Retry-After)", wait.as_secs_ceil())?;
        }
        Ok(())
    }
}

/// Which breaker an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum BreakerTarget {
    /// The token endpoint.
    TokenEndpoint,
    /// An API host.
    Host(HostKey),
}

/// Something worth logging or counting. Drained with [`Session::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Event {
    /// A token lifecycle event (acquired, refresh failed, expired, invalidated, rejected).
    Token(LifecycleEvent),
    /// The token endpoint answered with an error, or granted a token that had already expired
    /// (`expires_in` zero or less); [`Session::last_token_error`] has the details.
    TokenEndpointError {
        /// The HTTP status.
        status: u16,
        /// How the error was classified.
        class: TokenErrorClass,
    },
    /// A token was granted with less (or other) scope than requested.
    ScopeMismatch(ScopeCheck),
    /// A circuit breaker changed state.
    Breaker {
        /// Which breaker.
        target: BreakerTarget,
        /// What happened.
        event: BreakerEvent,
    },
    /// A 429 arrived: nothing but critical calls goes out before `until`.
    RateLimited {
        /// Until when.
        until: Instant,
        /// The correlation id, if any.
        correlation_id: Option<CorrelationId>,
    },
}

/// Why [`Session::poll_timeout`] wants attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reason {
    /// A token request becomes due: call [`Session::poll_token_request`].
    TokenRequestDue,
    /// The in-flight token request is overdue.
    TokenRequestTimeout,
    /// The usable token expires; waiters may need to be told.
    TokenExpiry,
    /// A breaker becomes half-open.
    BreakerHalfOpen,
}

/// Counters a caller can export (monotonic, saturating).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Counters {
    /// API requests begun.
    pub requests: u64,
    /// API attempts authorized (first attempts and retries).
    pub attempts: u64,
    /// Retries scheduled (including re-authentication retries).
    pub retries: u64,
    /// Token requests started (tickets issued by
    /// [`poll_token_request`](Session::poll_token_request)), including those later satisfied by
    /// a fleet's shared token instead of being sent (also counted in `shared_tokens`).
    pub token_requests: u64,
    /// Token requests satisfied by a token another process obtained
    /// ([`handle_token_shared`](Session::handle_token_shared)).
    pub shared_tokens: u64,
    /// Token requests that failed.
    pub token_failures: u64,
    /// 401 answers from the API.
    pub unauthorized: u64,
    /// 429 answers from the API.
    pub rate_limited: u64,
    /// Times a breaker opened.
    pub breaker_trips: u64,
    /// Total time requests were told to wait by the pacer, in milliseconds.
    pub paced_ms: u64,
    /// Requests that failed with an [`ApiError`].
    pub failed: u64,
}

/// A session for one client id: token lifecycle, retries, breakers and pacing. `N` is the token
/// capacity in bytes (raise it for large JWT tokens), `H` the number of API hosts with their own
/// breaker (the least recently used is recycled when full).
pub struct Session<const N: usize = 2048, const H: usize = 4, const E: usize = ENDPOINT_CAPACITY> {
    credentials: Credentials,
    endpoint: TokenEndpoint<E>,
    config: SessionConfig,
    lifecycle: Lifecycle<N>,
    token_breaker: CircuitBreaker,
    hosts: Vec<(HostKey, CircuitBreaker, Instant), H>,
    pacer: Pacer,
    budget: RetryBudget,
    rng: Rng,
    wall: Option<WallClock>,
    /// The last failed token request, kept for the errors callers get while waiting; cleared
    /// when a token is obtained.
    last_token_failure: Option<TokenFailureReport>,
    /// What the last `client_secret_jwt` assertion was made of, to mask an echo of it.
    #[cfg(feature = "jwt")]
    last_assertion: Option<JwtInputs>,
    token_probe: bool,
    /// Before this instant, requests the pacer would hold longer than `retry.max_wait` fail
    /// fast; at or after it, one goes out as a probe of the quota.
    quota_probe_at: Instant,
    /// What the last token response said about scope.
    /// (Whole scope tokens that fit the endpoint's capacity `E`.)
    granted: (Option<String<E>>, ScopeCheck),
    jti_counter: u64,
    counters: Counters,
    events: Deque<Event, SESSION_EVENT_CAPACITY>,
}

impl<const N: usize, const H: usize, const E: usize> fmt::Debug for Session<N, H, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client", &self.credentials.id)
            .field("credential", &self.credentials.fingerprint())
            .field("token_url", &self.endpoint.token_url())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<const N: usize, const H: usize, const E: usize> Session<N, H, E> {
    /// A session for `credentials` against `endpoint`. `seed` drives every random choice
    /// (jitter, JWT ids): seed it from the OS in production, with a constant in tests.
    ///
    /// The session is returned by value: its caller holds it (and the `Result` around it) in
    /// its own frame before moving it where it lives. For a session that lives in a `static` or
    /// a long-lived frame, [`new_in`](Self::new_in) builds it there instead.
    #[inline(never)]
    pub fn new(
        credentials: Credentials,
        endpoint: TokenEndpoint<E>,
        config: SessionConfig,
        seed: u64,
    ) -> Result<Self, SetupError> {
        config.lifecycle.validate().map_err(SetupError::Lifecycle)?;
        Ok(Session::assemble(credentials, endpoint, config, seed))
    }

    /// [`new`](Self::new), built in `slot` (replacing what it held) and returned there.
    ///
    /// A session is several KiB (about 3.3 KiB + `N` + `E` with `H = 1`); built by value, it
    /// passes through its constructor's return value and its caller's frame before it lands
    /// where it lives, which on a microcontroller can set the stack a task needs. Here it is
    /// written into `slot` in one piece, so the stack holds only the arguments.
    ///
    /// ```
    /// use credflow_core::secret::Credentials;
    /// use credflow_core::session::{Session, SessionConfig, TokenEndpoint};
    ///
    /// let mut slot: Option<Session<1024, 1, 64>> = None;
    /// let credentials = Credentials::from_strs("client-id", "client-secret").map_err(|(_, e)| e)?;
    /// let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token")?;
    /// let session = Session::new_in(&mut slot, credentials, endpoint, SessionConfig::default(), 7)?;
    /// assert_eq!(session.counters().token_requests, 0);
    /// assert!(slot.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// On an error `slot` is left as it was.
    #[inline(never)]
    pub fn new_in(
        slot: &mut Option<Self>,
        credentials: Credentials,
        endpoint: TokenEndpoint<E>,
        config: SessionConfig,
        seed: u64,
    ) -> Result<&mut Self, SetupError> {
        config.lifecycle.validate().map_err(SetupError::Lifecycle)?;
        Ok(slot.insert(Session::assemble(credentials, endpoint, config, seed)))
    }

    /// The session's initial state, for a `config` whose lifecycle settings are valid.
    #[inline(always)]
    fn assemble(
        credentials: Credentials,
        endpoint: TokenEndpoint<E>,
        config: SessionConfig,
        seed: u64,
    ) -> Self {
        Session {
            token_breaker: CircuitBreaker::new(config.token_breaker),
            pacer: Pacer::new(config.pacer),
            budget: RetryBudget::new(config.budget),
            credentials,
            endpoint,
            lifecycle: Lifecycle::validated(config.lifecycle),
            hosts: Vec::new(),
            rng: Rng::new(seed),
            wall: None,
            last_token_failure: None,
            #[cfg(feature = "jwt")]
            last_assertion: None,
            token_probe: false,
            quota_probe_at: Instant::ZERO,
            granted: (None, ScopeCheck::NotRequested),
            jti_counter: 0,
            counters: Counters::default(),
            events: Deque::new(),
            config,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// What the session requests tokens with.
    pub fn endpoint(&self) -> &TokenEndpoint<E> {
        &self.endpoint
    }

    /// The credential's fingerprint, for logs.
    pub fn fingerprint(&self) -> Fingerprint {
        self.credentials.fingerprint()
    }

    /// The error the token endpoint answered the last failed token request with, and its
    /// correlation id: `None` when that request failed otherwise (see
    /// [`last_token_failure`](Self::last_token_failure)) or a token was obtained since. A token
    /// granted already expired (`expires_in` zero or less) counts as an error: a 2xx status
    /// without a code, described as such.
    pub fn last_token_error(&self) -> Option<(&OAuthError, Option<&CorrelationId>)> {
        let report = self.last_token_failure.as_ref()?;
        match &report.problem {
            TokenProblem::Refused(e) => Some((e, report.correlation_id.as_ref())),
            _ => None,
        }
    }

    /// What went wrong with the last failed token request (an error answer, an unusable
    /// response, a transport failure, no answer in time); cleared when a token is obtained.
    pub fn last_token_failure(&self) -> Option<&TokenFailureReport> {
        self.last_token_failure.as_ref()
    }

    /// The client's credentials and token as they are masked in server text at `now` (see
    /// [`crate::redact`]): for adapters that print or log what a server sent (headers, error
    /// bodies). The session masks what it keeps itself.
    pub fn secrets(&self, now: Instant) -> Secrets<'_> {
        #[cfg(feature = "jwt")]
        let assertion = self.last_assertion.map(|inputs| crate::redact::Assertion {
            inputs,
            audience: self.endpoint.token_url(),
            lifetime: self.endpoint.jwt_lifetime,
        });
        #[cfg(not(feature = "jwt"))]
        let assertion = None;
        let token = self.lifecycle.token(now).map(|(token, _)| token.as_str());
        Secrets::new(&self.credentials, token, assertion)
    }

    /// The scope granted with the current token (as the server reported it, if it did) and how
    /// it compares with the requested scope. Server text: mask it with
    /// [`secrets`](Self::secrets) before printing it.
    pub fn granted_scope(&self) -> (Option<&str>, ScopeCheck) {
        (self.granted.0.as_deref(), self.granted.1)
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Tells the session the wall-clock time at `now` (adapters call this whenever they read
    /// their clocks; a device without a real-time clock may never call it). Used for JWT claims,
    /// HTTP-date `Retry-After` without a `Date` header, epoch rate-limit resets and snapshots.
    pub fn set_wall_clock(&mut self, clock: WallClock) {
        self.wall = Some(clock);
    }

    fn wall_at(&self, now: Instant) -> Option<UnixTime> {
        self.wall.map(|w| w.wall_at(now))
    }

    /// The server's clock if the response carries a `Date`, else ours: the reference for
    /// HTTP-dates in the same response, so clock skew cancels out.
    fn reference<Hd: Headers + ?Sized>(&self, now: Instant, headers: &Hd) -> Option<UnixTime> {
        headers.get("date").and_then(parse_http_date).or_else(|| self.wall_at(now))
    }

    /// Replaces the credentials (secret rotation): the current token is dropped, a rejection is
    /// lifted, and a token request becomes due as soon as the spacing of token requests allows
    /// ([`LifecycleConfig::min_refresh_interval`] after the last one's start; see
    /// [`Lifecycle::credentials_changed`]).
    pub fn set_credentials(&mut self, now: Instant, credentials: Credentials) {
        self.credentials = credentials;
        self.lifecycle.credentials_changed(now);
        self.token_breaker = CircuitBreaker::new(self.config.token_breaker);
        self.token_probe = false;
        self.last_token_failure = None;
        #[cfg(feature = "jwt")]
        {
            self.last_assertion = None;
        }
    }

    /// The application reports that the API rejected the token of `generation` (a 401 it got
    /// with a token it sent itself, through another HTTP stack): the token is dropped if it is
    /// still the current one, and a refresh is made due at once, no sooner than
    /// [`LifecycleConfig::min_refresh_interval`] after the last refresh made for a 401 (see
    /// [`Lifecycle::invalidate`]: an application that reports every token in a loop cannot make
    /// the session storm the token endpoint). Returns whether a token was dropped: `false` for
    /// an older generation (the newer token stays) or a repeated call.
    pub fn invalidate(&mut self, now: Instant, generation: Generation) -> bool {
        let dropped = self.lifecycle.invalidate(now, generation);
        self.drain_lifecycle_events();
        dropped
    }

    // ----- token side -------------------------------------------------------------------

    /// The usable token at `now` and its timing, if any (for adapters that publish it to a
    /// lock-free cache).
    pub fn token(&self, now: Instant) -> Option<(&AccessToken<N>, TokenTimes)> {
        let (token, _) = self.lifecycle.token(now)?;
        self.lifecycle.token_times(now).map(|times| (token, times))
    }

    /// Whether a caller that wants only the token (not an API call) can have one at `now`: the
    /// token, or until when to wait for one (`None`: until a token event), or why not. Unlike
    /// [`authorize`](Self::authorize) it neither paces nor counts an attempt.
    ///
    /// A caller that waits at most until some instant uses
    /// [`check_token_before`](Self::check_token_before) instead.
    pub fn check_token(&mut self, now: Instant) -> TokenStatus<'_, N> {
        self.check_token_before(now, None)
    }

    /// [`check_token`](Self::check_token) for a caller that waits until `deadline` at most:
    /// [`TokenStatus::Unavailable`] as soon as waiting cannot help, naming the last token
    /// failure ([`TokenFailureReport`]: its status, what was wrong, its correlation id, the wait
    /// the server asked for):
    ///
    /// - the credentials were rejected ([`ApiErrorKind::CredentialsRejected`]), or token
    ///   requests stopped because the answers cannot be used (a `token_type` other than Bearer,
    ///   a token larger than the capacity);
    /// - the last token request failed in a way retrying does not fix
    ///   ([`TokenFailureReport::is_retryable`] is `false`: an HTML page, invalid JSON, no
    ///   `access_token`, a token with a control character, a 404), until a request in flight
    ///   answers otherwise;
    /// - the token endpoint's breaker is open;
    /// - the next token request is planned after `deadline` (a server's `Retry-After` longer
    ///   than the caller waits, or a backoff);
    /// - `now` is past `deadline`, even with a request in flight.
    ///
    /// A caller that sleeps until the deadline and asks again is answered with the reason it
    /// waited in vain; it never needs an error of its own.
    pub fn check_token_before(
        &mut self,
        now: Instant,
        deadline: Option<Instant>,
    ) -> TokenStatus<'_, N> {
        if self.lifecycle.token(now).is_none() {
            let passed = deadline.is_some_and(|d| now > d);
            let error = match self.token_unavailable(now, deadline) {
                Some(error) => error,
                None if passed => self.token_error(None, None),
                None => return TokenStatus::Pending { until: self.token_wait_until(now) },
            };
            return TokenStatus::Unavailable(error);
        }
        match (self.lifecycle.token(now), self.lifecycle.token_times(now)) {
            (Some((token, _)), Some(times)) => TokenStatus::Ready(token, times),
            _ => TokenStatus::Pending { until: None },
        }
    }

    /// The token lifecycle (read-only), for observability.
    pub fn lifecycle(&self) -> &Lifecycle<N> {
        &self.lifecycle
    }

    /// If a token request is due at `now` and the token endpoint's breaker lets it through,
    /// encodes it into `buf` and returns it with its ticket. Send it, then report the outcome
    /// with [`handle_token_response`](Self::handle_token_response) or
    /// [`handle_token_error`](Self::handle_token_error).
    ///
    /// `buf` holds the client secret (Basic header or form body): zeroize it once sent.
    #[inline(never)]
    pub fn poll_token_request<'b>(
        &mut self,
        now: Instant,
        buf: &'b mut [u8],
    ) -> Result<Option<(Ticket, TokenRequest<'b>)>, EncodeError> {
        match self.lifecycle.next_request_at() {
            Some(at) if at <= now => {}
            _ => return Ok(None),
        }
        let probe = match self.token_breaker.check(now) {
            Admission::Allowed => false,
            Admission::Probe => true,
            Admission::Rejected { .. } | Admission::ProbeInFlight => {
                self.drain_breaker_events();
                return Ok(None);
            }
        };
        self.drain_breaker_events();
        let jwt = self.jwt_inputs(now);
        let extra: Vec<(&str, &str), EXTRA_PARAMS> = self.endpoint.params().collect();
        let cfg = TokenRequestConfig {
            token_url: self.endpoint.token_url(),
            auth: self.endpoint.auth,
            scope: self.endpoint.scope(),
            extra: &extra,
            jwt_lifetime: self.endpoint.jwt_lifetime,
            plain_http: self.endpoint.plain_http,
        };
        let request = match encode_token_request(&cfg, &self.credentials, jwt.as_ref(), buf) {
            Ok(request) => request,
            Err(e) => {
                if probe {
                    self.token_breaker.on_abandoned(now);
                }
                return Err(e);
            }
        };
        let Some(ticket) = self.lifecycle.start_request(now) else {
            if probe {
                self.token_breaker.on_abandoned(now);
            }
            return Ok(None);
        };
        self.token_probe = probe;
        #[cfg(feature = "jwt")]
        {
            self.last_assertion = jwt;
        }
        count(&mut self.counters.token_requests);
        Ok(Some((ticket, request)))
    }

    fn jwt_inputs(&mut self, now: Instant) -> Option<JwtInputs> {
        if cfg!(not(feature = "jwt")) || self.endpoint.auth != AuthMethod::ClientSecretJwt {
            return None;
        }
        let now = self.wall_at(now)?;
        let mut jti = [0u8; 16];
        // Half random, half a counter: unique within the session even if the seed repeats.
        self.rng.fill_bytes(&mut jti[..8]);
        self.jti_counter = self.jti_counter.wrapping_add(1);
        jti[8..].copy_from_slice(&self.jti_counter.to_be_bytes());
        Some(JwtInputs { now, jti })
    }

    /// Reports the token endpoint's answer to the request for `ticket`.
    ///
    /// A failure is recorded for the errors of callers that wait
    /// ([`last_token_failure`](Self::last_token_failure)), with the server's text masked where
    /// it echoes the client's credentials ([`crate::redact`]).
    #[inline(never)]
    pub fn handle_token_response<Hd: Headers + ?Sized>(
        &mut self,
        now: Instant,
        ticket: Ticket,
        status: u16,
        headers: &Hd,
        body: &[u8],
    ) {
        if !self.lifecycle.in_flight() {
            return;
        }
        if !(200..300).contains(&status) {
            self.token_refused(now, ticket, status, headers, body, body);
        } else if self.token_granted(now, ticket, status, headers, body) == Grant::Expired {
            self.token_refused(now, ticket, status, headers, EXPIRED_GRANT, body);
        }
        self.drain_lifecycle_events();
    }

    /// A success answer to the token request for `ticket`: a token to install, or an answer
    /// that cannot be used as one (recorded here), or a token granted already expired (for the
    /// caller to refuse). Out of line, so that the large token response it reads and the
    /// refusal's error are never on the stack together.
    #[inline(never)]
    fn token_granted<Hd: Headers + ?Sized>(
        &mut self,
        now: Instant,
        ticket: Ticket,
        status: u16,
        headers: &Hd,
        body: &[u8],
    ) -> Grant {
        let opts = ResponseOptions {
            default_expires_in: self.config.default_expires_in,
            max_expires_in: self.config.max_expires_in,
            requested_scope: self.endpoint.scope(),
        };
        match parse_token_response::<N>(body, &opts) {
            Ok(response) if !response.expires_in.is_zero() => {
                let generation = self.lifecycle.on_success(
                    now,
                    ticket,
                    response.access_token,
                    response.expires_in,
                    &mut self.rng,
                );
                if generation.is_some() {
                    self.token_breaker.on_success(now);
                    self.last_token_failure = None;
                    let granted = response.granted_scope.as_deref().map(whole_scope_tokens);
                    self.granted = (granted, response.scope_check);
                    if matches!(response.scope_check, ScopeCheck::Narrowed | ScopeCheck::Widened) {
                        self.push(Event::ScopeMismatch(response.scope_check));
                    }
                }
                Grant::Taken
            }
            // A token granted already expired (`expires_in` zero, negative or under a second)
            // is of no use: a failed request, with backoff and a diagnosis (as an error without
            // a code: retrying at once cannot help, but the credentials are not known to be
            // bad), rather than a token to replace at once. (After the arm that takes the token:
            // first, with its guard, it made the build move the large response once per arm.)
            Ok(_) => Grant::Expired,
            // Including a success status with an OAuth error body (`ErrorBody`).
            Err(error) => {
                let failure = match error {
                    ResponseError::TokenTooLong { .. }
                    | ResponseError::UnsupportedTokenType { .. } => {
                        TokenFailure::Fatal(RejectReason::UnusableResponse)
                    }
                    _ => TokenFailure::Transient { retry_after: None },
                };
                let problem =
                    TokenProblem::Unusable { status, error, content_type: media_type(headers) };
                self.record_token_failure(now, problem, headers, body, None);
                self.token_failed(now, ticket, failure, false);
                Grant::Unusable
            }
        }
    }

    /// An error answer to the token request for `ticket`: `error_body` read as an OAuth error
    /// (RFC 6749 §5.2), classified, and recorded with `body`'s correlation id.
    fn token_refused<Hd: Headers + ?Sized>(
        &mut self,
        now: Instant,
        ticket: Ticket,
        status: u16,
        headers: &Hd,
        error_body: &[u8],
        body: &[u8],
    ) {
        let mut error = parse_token_error(status, error_body);
        if error.class == TokenErrorClass::Redirected {
            self.describe_redirect(&mut error, headers.get("location"));
        }
        let retry_after = self.retry_after(now, headers);
        let failure = match error.class {
            TokenErrorClass::CredentialsRejected => TokenFailure::Fatal(
                if error.code == Some(crate::oauth::ErrorCode::UnauthorizedClient) {
                    RejectReason::UnauthorizedClient
                } else {
                    RejectReason::InvalidClient
                },
            ),
            TokenErrorClass::ScopeRejected => TokenFailure::Fatal(RejectReason::InvalidScope),
            TokenErrorClass::GrantRejected => TokenFailure::Fatal(RejectReason::GrantRejected),
            TokenErrorClass::Redirected => TokenFailure::Fatal(RejectReason::Redirected),
            TokenErrorClass::RateLimited => TokenFailure::RateLimited { retry_after },
            _ => TokenFailure::Transient { retry_after },
        };
        // A breaker failure is an outage or overload, not a configuration error.
        let outage =
            matches!(error.class, TokenErrorClass::RateLimited | TokenErrorClass::Transient);
        self.push(Event::TokenEndpointError { status, class: error.class });
        let problem = TokenProblem::Refused(error);
        self.record_token_failure(now, problem, headers, body, retry_after);
        self.token_failed(now, ticket, failure, outage);
    }

    /// Reports that the token endpoint's answer to `ticket` had a body larger than `limit`
    /// bytes, which the adapter stopped reading.
    ///
    /// A success is a [`TooLarge`](TokenErrorClass::TooLarge) failure that stops token requests
    /// ([`RejectReason::UnusableResponse`]); any other status is handled as
    /// [`handle_token_response`](Self::handle_token_response) handles it with an empty body (a
    /// redirect is refused, an error classified by its status). The description says "response
    /// larger than `limit` bytes" (a redirect's says where it pointed).
    pub fn handle_token_too_large<Hd: Headers + ?Sized>(
        &mut self,
        now: Instant,
        ticket: Ticket,
        status: u16,
        headers: &Hd,
        limit: u32,
    ) {
        if !self.lifecycle.in_flight() {
            return;
        }
        if !(200..300).contains(&status) {
            self.handle_token_response(now, ticket, status, headers, b"");
            if let Some(TokenFailureReport { problem: TokenProblem::Refused(error), .. }) =
                self.last_token_failure.as_mut()
                && error.class != TokenErrorClass::Redirected
            {
                describe_size(&mut error.description, limit);
            }
            return;
        }
        let mut error = parse_token_error(status, b"");
        error.class = TokenErrorClass::TooLarge;
        describe_size(&mut error.description, limit);
        self.push(Event::TokenEndpointError { status, class: error.class });
        self.record_token_failure(now, TokenProblem::Refused(error), headers, b"", None);
        self.token_failed(now, ticket, TokenFailure::Fatal(RejectReason::UnusableResponse), false);
        self.drain_lifecycle_events();
    }

    /// Replaces a redirect's description with where it pointed: "redirected to
    /// `scheme://host:port`; not followed" (never the path, query or userinfo; a relative
    /// `Location` names the token URL's origin), or why the `Location` names no such place.
    /// Without the `diagnosis` feature, only "redirected; not followed".
    #[inline(never)]
    fn describe_redirect(&self, error: &mut OAuthError, location: Option<&[u8]>) {
        let text = error.description.as_mut_view();
        text.clear();
        if cfg!(not(feature = "diagnosis")) {
            let _ = text.push_str("redirected; not followed");
            return;
        }
        // The token URL was checked when the endpoint was built.
        let base = Url::parse(self.endpoint.token_url()).map(|url| Origin::of(&url));
        let location = match (base, location.map(|v| core::str::from_utf8(v.trim_ascii()))) {
            (_, None) => Err(LocationError::Missing),
            (Ok(base), Some(Ok(value))) => Origin::of_location(value, base),
            _ => Err(LocationError::Malformed),
        };
        let _ = text.push_str("redirected to ");
        let _ = match location {
            Ok(to) if to.push_to(text) => Ok(()),
            Ok(_) => text.push_str("a long host name"),
            Err(LocationError::Missing) => text.push_str("no Location"),
            Err(LocationError::NotHttp) => text.push_str("a non-HTTP URL"),
            Err(_) => text.push_str("an unreadable Location"),
        };
        let _ = text.push_str("; not followed");
    }

    /// Records a failed token request's answer, its correlation id and the wait it asked for,
    /// with the client's credentials masked wherever the server's text echoes them.
    fn record_token_failure<Hd: Headers + ?Sized>(
        &mut self,
        now: Instant,
        problem: TokenProblem,
        headers: &Hd,
        body: &[u8],
        retry_after: Option<Duration>,
    ) {
        let mut report = TokenFailureReport {
            problem,
            correlation_id: correlation_id(headers, body),
            retry_after,
        };
        let secrets = self.secrets(now);
        match &mut report.problem {
            TokenProblem::Refused(e) => {
                secrets.mask(e.description.as_mut_view());
                if let Some(uri) = e.uri.as_mut() {
                    secrets.mask(uri.as_mut_view());
                }
                if let Some(crate::oauth::ErrorCode::Other(code)) = e.code.as_mut() {
                    secrets.mask(code.as_mut_view());
                }
            }
            TokenProblem::Unusable { error, content_type, .. } => {
                if let ResponseError::UnsupportedTokenType(t) = error {
                    secrets.mask(t.as_mut_view());
                }
                if let Some(media) = content_type.as_mut() {
                    secrets.mask(media.as_mut_view());
                }
            }
            TokenProblem::Transport(_) | TokenProblem::TimedOut => {}
        }
        if let Some(id) = report.correlation_id.as_mut() {
            id.mask(&secrets);
        }
        self.last_token_failure = Some(report);
    }

    /// Reports that the token request for `ticket` failed in transport (connect, reset,
    /// timeout), or was abandoned (`None`: the caller's task was cancelled).
    #[inline(never)]
    pub fn handle_token_error(
        &mut self,
        now: Instant,
        ticket: Ticket,
        kind: Option<TransportKind>,
    ) {
        if !self.lifecycle.in_flight() {
            return;
        }
        match kind {
            Some(kind) => {
                self.last_token_failure = Some(TokenFailureReport {
                    problem: TokenProblem::Transport(kind),
                    correlation_id: None,
                    retry_after: None,
                });
                self.token_failed(now, ticket, TokenFailure::Transient { retry_after: None }, true)
            }
            None => {
                self.lifecycle.on_abandoned(now, ticket);
                if core::mem::take(&mut self.token_probe) {
                    self.token_breaker.on_abandoned(now);
                }
            }
        }
        self.drain_lifecycle_events();
    }

    /// Satisfies the token request for `ticket` with a token obtained elsewhere instead of
    /// sending it: a fleet of processes sharing one token (the request was due here, another
    /// process had already refreshed). `expires_at` is the token's absolute wall-clock expiry, as
    /// the process that fetched it recorded it; it needs the wall clock
    /// ([`set_wall_clock`](Self::set_wall_clock)).
    ///
    /// The ticket is released whatever happens, without backoff and without charging the token
    /// endpoint's breaker (nothing was learned about it); a breaker probe it held is returned.
    /// The ticket still counts as a token request for the spacing: the next one starts no
    /// sooner than [`LifecycleConfig::min_refresh_interval`] after it.
    /// The token is then installed as by [`restore`](Self::restore): served until its refresh
    /// point, computed from its remaining life. A stale ticket changes nothing.
    ///
    /// Errors: [`RestoreError::NoWallClock`]; [`RestoreError::NotUsable`] when the ticket is not
    /// the one in flight, the token is too close to expiry or the credentials were rejected (the
    /// next token request is then due at once: send it, or ask the fleet again).
    #[inline(never)]
    pub fn handle_token_shared(
        &mut self,
        now: Instant,
        ticket: Ticket,
        token: AccessToken<N>,
        expires_at: UnixTime,
    ) -> Result<Generation, RestoreError> {
        let wall = self.wall.ok_or(RestoreError::NoWallClock)?;
        if !self.lifecycle.in_flight() {
            return Err(RestoreError::NotUsable);
        }
        self.lifecycle.on_abandoned(now, ticket);
        if self.lifecycle.in_flight() {
            return Err(RestoreError::NotUsable); // another ticket is in flight
        }
        if core::mem::take(&mut self.token_probe) {
            self.token_breaker.on_abandoned(now);
        }
        let generation = self.install_fleet_token(now, wall, token, expires_at);
        self.drain_breaker_events();
        generation
    }

    /// Takes a token another process of the fleet fetched, outside a token request of this
    /// session's: for a process that has no usable token and may not request one yet (after an
    /// outage its breaker or backoff holds it back for up to a minute, while the fleet's lease
    /// holder already has a new token). `expires_at` is as [`handle_token_shared`] takes it.
    ///
    /// Installed as by [`restore`](Self::restore) (the backoff is cleared; the token endpoint's
    /// breaker is left to its own probe, as nothing was learned about the endpoint from here).
    /// Refused with [`RestoreError::NotUsable`] while a token request of this session is in
    /// flight (its answer decides), when the session already holds a usable token, when the
    /// token is too close to expiry, or when the credentials were rejected.
    ///
    /// [`handle_token_shared`]: Self::handle_token_shared
    #[inline(never)]
    pub fn adopt_shared(
        &mut self,
        now: Instant,
        token: AccessToken<N>,
        expires_at: UnixTime,
    ) -> Result<Generation, RestoreError> {
        let wall = self.wall.ok_or(RestoreError::NoWallClock)?;
        if self.lifecycle.in_flight() || self.lifecycle.token(now).is_some() {
            return Err(RestoreError::NotUsable);
        }
        self.install_fleet_token(now, wall, token, expires_at)
    }

    /// Installs a token another process fetched (absolute expiry `expires_at`), counts it and
    /// clears the last token error when it is taken; drains the lifecycle's events.
    fn install_fleet_token(
        &mut self,
        now: Instant,
        wall: WallClock,
        token: AccessToken<N>,
        expires_at: UnixTime,
    ) -> Result<Generation, RestoreError> {
        let generation = self
            .lifecycle
            .install(now, token, wall.instant_at(expires_at), &mut self.rng)
            .ok_or(RestoreError::NotUsable);
        if generation.is_ok() {
            count(&mut self.counters.shared_tokens);
            self.last_token_failure = None;
        }
        self.drain_lifecycle_events();
        generation
    }

    fn token_failed(&mut self, now: Instant, ticket: Ticket, failure: TokenFailure, outage: bool) {
        let was_in_flight = self.lifecycle.in_flight();
        self.lifecycle.on_failure(now, ticket, failure, &mut self.rng);
        if !was_in_flight || self.lifecycle.in_flight() {
            return; // stale ticket
        }
        count(&mut self.counters.token_failures);
        self.token_probe = false;
        if outage {
            self.token_breaker.on_failure(now, &mut self.rng);
        } else {
            self.token_breaker.on_success(now);
        }
        self.drain_breaker_events();
    }

    // ----- API side ---------------------------------------------------------------------

    /// Starts tracking one API request.
    pub fn begin(&mut self, now: Instant, spec: RequestSpec) -> RequestState {
        count(&mut self.counters.requests);
        self.budget.deposit(now);
        RequestState {
            spec,
            attempts: 0,
            retries: 0,
            reauthenticated: false,
            generation: None,
            not_before: now,
            probe: false,
            in_flight: false,
            externally_paced: false,
            external_hold: Instant::from_millis(0),
        }
    }

    /// Decides whether the request may be sent at `now`: with which token, or until when to
    /// wait, or why it cannot be sent at all.
    #[inline(never)]
    pub fn authorize(&mut self, now: Instant, req: &mut RequestState) -> Authorize<'_, N> {
        if req.in_flight {
            // A second authorize without an outcome: treat the earlier attempt as abandoned.
            self.abandon(now, req);
        }
        if let Some(deadline) = req.spec.deadline
            && now > deadline
        {
            // Waiting for a token that did not come: say why it did not.
            if self.lifecycle.token(now).is_none() && self.last_token_failure.is_some() {
                let error = self.token_error(None, self.token_wait_until(now));
                return self.fail_with(error);
            }
            return self.fail(ApiErrorKind::DeadlineExceeded);
        }
        if now < req.not_before {
            return Authorize::Wait { until: Some(req.not_before), reason: WaitReason::Backoff };
        }
        if self.lifecycle.token(now).is_none() {
            if let Some(error) = self.token_unavailable(now, req.spec.deadline) {
                return self.fail_with(error);
            }
            return Authorize::Wait {
                until: self.token_wait_until(now),
                reason: WaitReason::Token,
            };
        }
        if let Some((_, generation)) = self.lifecycle.token(now) {
            self.pacer.use_token(now, generation);
        }
        // An admitted attempt is held back only by what the server enforces.
        let mut pace = self.pacer.pace(now, (!req.externally_paced).then_some(req.spec.priority));
        let hold = req.external_hold;
        if hold > now && !matches!(pace, Pace::NotBefore { at, .. } if at >= hold) {
            // An external pacer's long wait: the shared window spent, or a 429's hold.
            pace = Pace::NotBefore { at: hold, reason: PaceReason::Exhausted };
        }
        if let Pace::NotBefore { at, reason } = pace {
            if req.spec.deadline.is_some_and(|d| at > d) {
                return self.fail(ApiErrorKind::DeadlineExceeded);
            }
            let wait = at.saturating_duration_since(now);
            let max = self.config.retry.max_wait;
            if wait <= max {
                self.counters.paced_ms =
                    crate::time::add_sat(self.counters.paced_ms, wait.as_millis());
                return Authorize::Wait { until: Some(at), reason: WaitReason::Paced(reason) };
            }
            // A quota that frees up only in hours (a daily limit's 429, an exhausted long
            // window), or a bogus wait that saturated to "forever": fail now, naming the wait,
            // rather than holding the caller silently. One request per `max_wait` still goes
            // out as a probe, so the session finds out when the limit is lifted.
            if now < self.quota_probe_at {
                let reason = GiveUpReason::WaitTooLong { wait, max };
                return self.fail(ApiErrorKind::GaveUp { reason, last: RetryReason::RateLimited });
            }
            self.quota_probe_at = now.saturating_add(max);
        }
        let breaker_config = self.config.api_breaker;
        let breaker = self.host_breaker(now, req.spec.host, breaker_config);
        let admission = breaker.check(now);
        self.drain_breaker_events();
        match admission {
            Admission::Allowed => req.probe = false,
            Admission::Probe => req.probe = true,
            Admission::ProbeInFlight => {
                return Authorize::Wait { until: None, reason: WaitReason::BreakerProbe };
            }
            Admission::Rejected { until } => {
                return self.fail(ApiErrorKind::CircuitOpen { until });
            }
        }
        // An admitted send did not wait for the local schedule, so it does not move it (as a
        // Critical one does not); the admission covered this attempt only.
        let paced_as = if req.externally_paced { Priority::Critical } else { req.spec.priority };
        self.pacer.on_send(now, paced_as);
        req.externally_paced = false;
        req.external_hold = Instant::from_millis(0);
        req.attempts = req.attempts.saturating_add(1);
        req.in_flight = true;
        count(&mut self.counters.attempts);
        match self.lifecycle.token(now) {
            Some((token, generation)) => {
                req.generation = Some(generation);
                Authorize::Send { token, generation }
            }
            // Checked above; kept total rather than panicking.
            None => Authorize::Wait { until: None, reason: WaitReason::Token },
        }
    }

    /// When the next token request can go out (never before `now`), if none is in flight.
    fn token_wait_until(&self, now: Instant) -> Option<Instant> {
        if self.lifecycle.in_flight() {
            return None;
        }
        self.lifecycle.next_request_at().map(|at| {
            let at = match self.token_breaker.next_change() {
                Some(change) => at.max(change),
                None => at,
            };
            at.max(now)
        })
    }

    /// Whether a caller without a token, waiting until `deadline` at most, should fail now
    /// rather than wait: the credentials were rejected or the answers cannot be used, the last
    /// token request failed in a way retrying does not fix (an answer that is not a usable
    /// token, a 404), the token endpoint's breaker is open, or the next token request is
    /// planned after the deadline.
    fn token_unavailable(&mut self, now: Instant, deadline: Option<Instant>) -> Option<ApiError> {
        // The lifecycle's state at `now` is Rejected, or (no usable token, a request in flight)
        // Acquiring: asked directly, without building the rest of the state.
        if let Some(reason) = self.lifecycle.rejected() {
            return Some(self.token_error(Some(reason), None));
        }
        if self.lifecycle.in_flight() && self.lifecycle.token(now).is_none() {
            return None; // acquiring
        }
        let breaker_open =
            matches!(self.token_breaker.state(), crate::breaker::BreakerState::Open { .. });
        let retry_at = self.token_wait_until(now);
        let past_deadline = matches!((retry_at, deadline), (Some(at), Some(d)) if at > d);
        // Requests go on in the background (a proxy's page may go away), but a caller is not
        // held for an answer that will not change by itself.
        let unfixed = self.last_token_failure.as_ref().is_some_and(|r| !r.is_retryable());
        (breaker_open || past_deadline || unfixed).then(|| self.token_error(None, retry_at))
    }

    /// The error of a caller without a token, naming the last token failure (its status and
    /// correlation id too): [`ApiErrorKind::CredentialsRejected`] when the lifecycle stopped
    /// for `rejected` credentials, scope or grant, else [`ApiErrorKind::TokenUnavailable`] with
    /// the next token request at `retry_at` (token requests stopped because the answers cannot
    /// be used are not a matter of credentials). Without the `diagnosis` feature, the error
    /// carries no copy of the failure's details (`oauth` and `last` are `None`): they stay in
    /// the session, read on request with [`last_token_failure`](Self::last_token_failure).
    fn token_error(&self, rejected: Option<RejectReason>, retry_at: Option<Instant>) -> ApiError {
        let last = self.last_token_failure.as_ref();
        let status = last.and_then(TokenFailureReport::status);
        let correlation_id = last.and_then(|r| r.correlation_id.clone());
        // Each kind copies only what it carries (the report's texts are several hundred bytes).
        let copied = last.filter(|_| cfg!(feature = "diagnosis"));
        let kind = match rejected {
            Some(reason) if reason != RejectReason::UnusableResponse => {
                let oauth = copied.and_then(|r| match &r.problem {
                    TokenProblem::Refused(e) => Some(e.clone()),
                    _ => None,
                });
                ApiErrorKind::CredentialsRejected { reason, oauth }
            }
            _ => ApiErrorKind::TokenUnavailable { retry_at, last: copied.cloned() },
        };
        ApiError { kind, status, correlation_id }
    }

    fn host_breaker(
        &mut self,
        now: Instant,
        host: HostKey,
        config: BreakerConfig,
    ) -> &mut CircuitBreaker {
        let index = match self.hosts.iter().position(|(k, _, _)| *k == host) {
            Some(i) => i,
            None => {
                if self.hosts.is_full() {
                    // Recycle the least recently used breaker.
                    let lru = self
                        .hosts
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (_, _, used))| *used)
                        .map(|(i, _)| i)
                        .unwrap_or(0);
                    let _ = self.hosts.swap_remove(lru);
                }
                let _ = self.hosts.push((host, CircuitBreaker::new(config), now));
                self.hosts.len().saturating_sub(1)
            }
        };
        // `index` is in bounds by construction; a zero-capacity `H` falls back to the token
        // breaker's sibling below.
        match self.hosts.get_mut(index) {
            Some(entry) => {
                entry.2 = now;
                &mut entry.1
            }
            None => &mut self.token_breaker,
        }
    }

    fn host_open_until(&self, host: HostKey) -> Option<Instant> {
        self.hosts.iter().find(|(k, _, _)| *k == host).and_then(|(_, b, _)| match b.state() {
            crate::breaker::BreakerState::Open { until } => Some(until),
            _ => None,
        })
    }

    /// Tells `host`'s breaker how a call ended. One function, not generic over a closure: each
    /// call site had its own copy (about 0.2 KiB of firmware flash).
    #[inline(never)]
    fn report_to_host_breaker(&mut self, now: Instant, host: HostKey, outcome: CallEnd) {
        if let Some(entry) = self.hosts.iter_mut().find(|(k, _, _)| *k == host) {
            entry.2 = now;
            let breaker = &mut entry.1;
            match outcome {
                CallEnd::Success => breaker.on_success(now),
                CallEnd::Failure => breaker.on_failure(now, &mut self.rng),
                CallEnd::Abandoned => breaker.on_abandoned(now),
            }
        }
        self.drain_breaker_events();
    }

    /// Reports the API's answer to the attempt last authorized for `req`, and returns what to do.
    #[inline(never)]
    pub fn handle_response<Hd: Headers + ?Sized>(
        &mut self,
        now: Instant,
        req: &mut RequestState,
        status: u16,
        headers: &Hd,
        body: &[u8],
    ) -> Verdict {
        req.in_flight = false;
        let reference = self.reference(now, headers);
        let mut classified = classify_response(status, headers, body, reference);
        if let Some(snapshot) = &classified.rate_limit {
            self.pacer.observe_for(now, snapshot, req.generation);
        }
        // Masked now, while the token that was sent is still held (a 401 drops it below).
        self.mask_classified(now, &mut classified);
        let correlation = classified.correlation_id.clone();
        let probe = core::mem::take(&mut req.probe);
        let host = req.spec.host;
        let mut verdict = match classified.class {
            ResponseClass::Success | ResponseClass::Permanent { .. } => {
                self.report_to_host_breaker(now, host, CallEnd::Success);
                Verdict::Done
            }
            ResponseClass::Forbidden(diagnosis) => {
                self.report_to_host_breaker(now, host, CallEnd::Success);
                Verdict::Fail(ApiError::new(ApiErrorKind::Forbidden(diagnosis)))
            }
            ResponseClass::Unauthorized { .. } => {
                count(&mut self.counters.unauthorized);
                self.report_to_host_breaker(now, host, CallEnd::Success);
                if let Some(generation) = req.generation {
                    let _ = self.lifecycle.invalidate(now, generation);
                    self.drain_lifecycle_events();
                }
                if req.reauthenticated {
                    Verdict::Fail(ApiError::new(ApiErrorKind::Unauthorized))
                } else {
                    req.reauthenticated = true;
                    count(&mut self.counters.retries);
                    Verdict::Retry {
                        at: now,
                        reason: RetryReason::Reauthenticate,
                        source: WaitSource::Backoff,
                    }
                }
            }
            ResponseClass::RateLimited { retry_after, .. } => {
                count(&mut self.counters.rate_limited);
                // A 429 is the pacer's business, not an outage: the breaker is not charged.
                if probe {
                    self.report_to_host_breaker(now, host, CallEnd::Abandoned);
                }
                // Everyone waits as the server asked. Waits longer than the retry policy
                // accepts (a daily quota's hours, a bogus "forever") fail fast in `authorize`,
                // with one probe per `max_wait` from now on.
                self.pacer.on_rate_limited_for(now, retry_after, req.generation);
                self.quota_probe_at = now.saturating_add(self.config.retry.max_wait);
                let until = now.saturating_add(retry_after.unwrap_or(Duration::ZERO));
                self.push(Event::RateLimited { until, correlation_id: correlation.clone() });
                self.retry(now, req, Failure::RateLimited, retry_after, RetryReason::RateLimited)
            }
            ResponseClass::Transient { status, retry_after } => {
                self.report_to_host_breaker(now, host, CallEnd::Failure);
                let failure = if status == 503 && retry_after.is_some() {
                    Failure::TransientNotProcessed
                } else {
                    Failure::Transient
                };
                self.retry(now, req, failure, retry_after, RetryReason::ServerError(status))
            }
        };
        self.finish(&mut verdict, Some(status), correlation);
        verdict
    }

    /// Masks the client's credentials in what the session keeps of an API response: its
    /// correlation id and a 403's diagnosis (the Genesys message and code, the challenge's
    /// scope and `error_description`).
    fn mask_classified(&self, now: Instant, classified: &mut crate::classify::Classified) {
        let secrets = self.secrets(now);
        if let Some(id) = classified.correlation_id.as_mut() {
            id.mask(&secrets);
        }
        if let ResponseClass::Forbidden(d) = &mut classified.class {
            secrets.mask(d.message.as_mut_view());
            secrets.mask(d.missing.as_mut_view());
            if let Some(code) = d.code.as_mut() {
                secrets.mask(code.as_mut_view());
            }
        }
    }

    /// Reports that the attempt last authorized for `req` failed in transport.
    #[inline(never)]
    pub fn handle_transport_error(
        &mut self,
        now: Instant,
        req: &mut RequestState,
        kind: TransportKind,
    ) -> Verdict {
        req.in_flight = false;
        req.probe = false;
        let host = req.spec.host;
        self.report_to_host_breaker(now, host, CallEnd::Failure);
        let mut verdict =
            self.retry(now, req, Failure::Transport(kind), None, RetryReason::Transport(kind));
        self.finish(&mut verdict, None, None);
        verdict
    }

    /// The caller gave up on `req` (cancelled, timed out on its side) while an attempt was in
    /// flight: release what it held (a breaker probe). Harmless otherwise.
    pub fn abandon(&mut self, now: Instant, req: &mut RequestState) {
        if core::mem::take(&mut req.in_flight) && core::mem::take(&mut req.probe) {
            let host = req.spec.host;
            self.report_to_host_breaker(now, host, CallEnd::Abandoned);
        }
    }

    fn retry(
        &mut self,
        now: Instant,
        req: &mut RequestState,
        failure: Failure,
        retry_after: Option<Duration>,
        reason: RetryReason,
    ) -> Verdict {
        let attempt = Attempt {
            method: req.spec.method,
            idempotent: req.spec.idempotent,
            retries_done: req.retries,
            deadline: req.spec.deadline,
        };
        match self.config.retry.decide(
            now,
            &attempt,
            failure,
            retry_after,
            &mut self.budget,
            &mut self.rng,
        ) {
            RetryDecision::RetryAt { at, source, .. } => {
                // A retry into an open breaker would only be refused later: say so now.
                if let Some(until) = self.host_open_until(req.spec.host) {
                    return Verdict::Fail(ApiError::new(ApiErrorKind::CircuitOpen { until }));
                }
                req.retries = req.retries.saturating_add(1);
                req.not_before = at;
                count(&mut self.counters.retries);
                Verdict::Retry { at, reason, source }
            }
            RetryDecision::GiveUp(give_up) => {
                Verdict::Fail(ApiError::new(ApiErrorKind::GaveUp { reason: give_up, last: reason }))
            }
        }
    }

    /// Completes a failing `verdict` in place (it is large: moving it costs a copy) with the
    /// response's status and correlation id where it has none, and counts it.
    fn finish(
        &mut self,
        verdict: &mut Verdict,
        status: Option<u16>,
        correlation: Option<CorrelationId>,
    ) {
        if let Verdict::Fail(error) = verdict {
            if error.status.is_none() {
                error.status = status;
            }
            if error.correlation_id.is_none() {
                error.correlation_id = correlation;
            }
            count(&mut self.counters.failed);
        }
    }

    /// Counts a failed request and answers it with an error of `kind` (built here, not at each
    /// call site: each built its own and copied it into the answer).
    fn fail(&mut self, kind: ApiErrorKind) -> Authorize<'_, N> {
        self.fail_with(ApiError::new(kind))
    }

    /// Counts a failed request and answers it with `error`.
    fn fail_with(&mut self, error: ApiError) -> Authorize<'_, N> {
        count(&mut self.counters.failed);
        Authorize::Fail(error)
    }

    fn retry_after<Hd: Headers + ?Sized>(&self, now: Instant, headers: &Hd) -> Option<Duration> {
        let value = headers.get("retry-after")?;
        crate::http::retry_after::parse_retry_after(value)?.delay(self.reference(now, headers))
    }

    // ----- time and events --------------------------------------------------------------

    /// The next instant at which the session has work, and why. `None`: nothing scheduled
    /// (waiters are woken by events).
    pub fn poll_timeout(&self) -> Option<(Instant, Reason)> {
        let lifecycle = self.lifecycle.poll_timeout().map(|(at, wake)| match wake {
            Wake::RequestDue => (
                self.token_breaker.next_change().map_or(at, |c| at.max(c)),
                Reason::TokenRequestDue,
            ),
            Wake::RequestTimeout => (at, Reason::TokenRequestTimeout),
            Wake::TokenExpiry => (at, Reason::TokenExpiry),
        });
        // The earliest breaker change, if earlier than the lifecycle's (which wins a tie).
        let mut next = lifecycle;
        let changes = self.hosts.iter().map(|(_, b, _)| b).chain([&self.token_breaker]);
        for at in changes.filter_map(CircuitBreaker::next_change) {
            if next.is_none_or(|(earliest, _)| at < earliest) {
                next = Some((at, Reason::BreakerHalfOpen));
            }
        }
        next
    }

    /// Processes deadlines that have passed at `now`. Safe to call at any time.
    #[inline(never)]
    pub fn handle_timeout(&mut self, now: Instant) {
        let was_in_flight = self.lifecycle.in_flight();
        self.lifecycle.handle_timeout(now, &mut self.rng);
        if was_in_flight && !self.lifecycle.in_flight() {
            // The token request timed out: an outage as far as the breaker is concerned.
            self.last_token_failure = Some(TokenFailureReport {
                problem: TokenProblem::TimedOut,
                correlation_id: None,
                retry_after: None,
            });
            count(&mut self.counters.token_failures);
            self.token_probe = false;
            self.token_breaker.on_failure(now, &mut self.rng);
        }
        self.token_breaker.handle_timeout(now);
        for (_, breaker, _) in self.hosts.iter_mut() {
            breaker.handle_timeout(now);
        }
        self.drain_breaker_events();
        self.drain_lifecycle_events();
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.drain_lifecycle_events();
        self.drain_breaker_events();
        self.events.pop_front()
    }

    fn push(&mut self, event: Event) {
        if self.events.is_full() {
            let _ = self.events.pop_front();
        }
        let _ = self.events.push_back(event);
    }

    fn drain_lifecycle_events(&mut self) {
        while let Some(e) = self.lifecycle.poll_event() {
            self.push(Event::Token(e));
        }
    }

    fn drain_breaker_events(&mut self) {
        // The token endpoint's breaker (0), then each host's (1..): one loop, so one copy of
        // the counting and pushing.
        let mut i = 0usize;
        loop {
            let (target, breaker) = match i.checked_sub(1) {
                None => (BreakerTarget::TokenEndpoint, &mut self.token_breaker),
                Some(host) => match self.hosts.get_mut(host) {
                    Some((key, breaker, _)) => (BreakerTarget::Host(*key), breaker),
                    None => break,
                },
            };
            let Some(event) = breaker.poll_event() else {
                i = i.saturating_add(1);
                continue;
            };
            if matches!(event, BreakerEvent::Opened { .. }) {
                count(&mut self.counters.breaker_trips);
            }
            self.push(Event::Breaker { target, event });
        }
    }

    // ----- snapshots --------------------------------------------------------------------

    /// Seals the current token into `out` under `key` (see [`crate::snapshot`]). Needs the wall
    /// clock ([`set_wall_clock`](Self::set_wall_clock)). Returns the bytes written, or `Ok(0)`
    /// when there is no usable token to seal.
    pub fn seal(&self, now: Instant, key: &[u8], out: &mut [u8]) -> Result<usize, SealError> {
        let (Some(wall), Some((token, expires_at))) = (self.wall, self.lifecycle.current(now))
        else {
            return Ok(0);
        };
        let expires = wall.wall_at(expires_at);
        snapshot::seal(token, expires, self.credentials.fingerprint(), key, out)
    }

    /// Restores a token sealed by [`seal`](Self::seal) (perhaps before a reboot). Needs the wall
    /// clock. On success the token is served until its refresh point as if freshly acquired.
    #[inline(never)]
    pub fn restore(
        &mut self,
        now: Instant,
        sealed: &[u8],
        key: &[u8],
    ) -> Result<Generation, RestoreError> {
        let wall = self.wall.ok_or(RestoreError::NoWallClock)?;
        let restored =
            snapshot::unseal::<N>(sealed, key, wall.wall_at(now), self.credentials.fingerprint())
                .map_err(RestoreError::Unseal)?;
        let expires_at = wall.instant_at(restored.expires_at);
        let generation = self
            .lifecycle
            .install(now, restored.token, expires_at, &mut self.rng)
            .ok_or(RestoreError::NotUsable)?;
        self.drain_lifecycle_events();
        Ok(generation)
    }
}

/// Why [`Session::restore`] did not install a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreError {
    /// The session does not know the wall-clock time.
    NoWallClock,
    /// The snapshot was rejected.
    Unseal(UnsealError),
    /// The token is too close to expiry, or the credentials were rejected.
    NotUsable,
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::NoWallClock => {
                f.write_str("wall-clock time unknown; call set_wall_clock first")
            }
            RestoreError::Unseal(e) => write!(f, "{e}"),
            RestoreError::NotUsable => f.write_str("restored token is too close to expiry"),
        }
    }
}

impl core::error::Error for RestoreError {}

/// How an API call ended, for its host's breaker.
#[derive(Clone, Copy)]
enum CallEnd {
    Success,
    Failure,
    Abandoned,
}

/// The diagnosis of a token granted already expired, as an OAuth error body without a code: it
/// is read by the same code as the server's errors, and a 2xx status without a code classifies
/// as [`TokenErrorClass::Permanent`] (retried with backoff, the breaker not charged).
const EXPIRED_GRANT: &[u8] =
    br#"{"error_description":"token granted already expired (expires_in below 1 s)"}"#;

/// What [`Session::token_granted`] made of a success answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// A token, installed.
    Taken,
    /// A token granted already expired: to be refused.
    Expired,
    /// No usable token (recorded as such).
    Unusable,
}

/// Adds one to a counter, saturating. Out of line: a 64-bit saturating increment inlined at
/// each of the session's fifteen counting places cost a 32-bit firmware about 0.2 KiB.
#[inline(never)]
fn count(counter: &mut u64) {
    *counter = counter.saturating_add(1);
}

/// Writes "response larger than `limit` bytes" over `description`.
fn describe_size(description: &mut String<256>, limit: u32) {
    description.clear();
    let text = description.as_mut_view();
    let _ = text.push_str("response larger than ");
    let _ = push_decimal(text, limit) && text.push_str(" bytes").is_ok();
}

/// The media type of a response's `Content-Type` (before any parameter), bounded, control
/// characters replaced by spaces; `None` without the `diagnosis` feature.
fn media_type<Hd: Headers + ?Sized>(headers: &Hd) -> Option<String<CONTENT_TYPE_CAPACITY>> {
    if cfg!(not(feature = "diagnosis")) {
        return None;
    }
    let value = core::str::from_utf8(headers.get("content-type")?).ok()?;
    let media = value.split(';').next().unwrap_or_default().trim_ascii();
    let mut out = String::new();
    let _ = crate::text::push_sanitized(out.as_mut_view(), &mut media.chars());
    (!out.is_empty()).then_some(out)
}

/// The whole space-separated tokens of `scope` that fit `E` bytes, one space apart.
fn whole_scope_tokens<const E: usize>(scope: &str) -> String<E> {
    let mut out = String::new();
    for token in scope.split_ascii_whitespace() {
        let mark = out.len();
        let separated = out.is_empty() || out.push(' ').is_ok();
        if !separated || out.push_str(token).is_err() {
            out.truncate(mark);
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The URL, scope and parameters share the endpoint's `E` bytes, each failure says which
    /// part did not fit, and the parts read back in order.
    #[test]
    fn token_endpoint_packs_its_parts_into_one_capacity() {
        const URL: &str = "https://login.example/t"; // 23 bytes
        assert_eq!(TokenEndpoint::<22>::new(URL), Err(SetupError::TokenUrlTooLong));
        let e = TokenEndpoint::<23>::new(URL).unwrap();
        assert_eq!((e.token_url(), e.scope(), e.params().count()), (URL, None, 0));
        assert_eq!(e.clone().with_scope("a").err(), Some(SetupError::ScopeTooLong));
        // 23 + "aud" + "x" + "read" = 31: T-1 fails, T fits.
        let e = TokenEndpoint::<30>::new(URL).unwrap().with_param("aud", "x").unwrap();
        assert_eq!(e.clone().with_scope("read").err(), Some(SetupError::ScopeTooLong));
        let e = TokenEndpoint::<31>::new(URL).unwrap().with_param("aud", "x").unwrap();
        let e = e.with_scope("read").unwrap();
        assert_eq!((e.token_url(), e.scope()), (URL, Some("read")));
        assert!(e.params().eq([("aud", "x")]));
        // A parameter whose name or value does not fit is refused.
        let e = TokenEndpoint::<30>::new(URL).unwrap();
        assert_eq!(
            e.clone().with_param("resource", "y").err(),
            Some(SetupError::TooManyExtraParams)
        );
        let e = e.with_param("r", "").unwrap().with_param("s", "z").unwrap();
        assert!(e.params().eq([("r", ""), ("s", "z")]));
        let e = (0..EXTRA_PARAMS)
            .fold(TokenEndpoint::<64>::new(URL).unwrap(), |e, _| e.with_param("p", "v").unwrap());
        assert_eq!(e.with_param("p", "v").err(), Some(SetupError::TooManyExtraParams));
        let genesys = crate::env::parse_environment("mypurecloud.com").unwrap();
        assert_eq!(
            TokenEndpoint::<64>::genesys(genesys).unwrap().token_url(),
            "https://login.mypurecloud.com/oauth/token"
        );
        assert_eq!(TokenEndpoint::<8>::genesys(genesys), Err(SetupError::TokenUrlTooLong));
    }

    /// The token URL receives the credentials: plain `http` only to loopback, unless the
    /// endpoint is built with the opt-in, and never with userinfo (whose text the error does
    /// not carry).
    #[test]
    fn token_endpoint_refuses_plain_http_to_other_hosts_and_userinfo() {
        extern crate std;
        let refused = |url| TokenEndpoint::<64>::new(url).err();
        let insecure = Some(SetupError::InvalidTokenUrl(UrlError::InsecureHttp));
        assert_eq!(refused("http://auth.example.invalid/oauth/token"), insecure);
        assert_eq!(refused("http://10.0.0.1/oauth/token"), insecure);
        for local in ["http://127.0.0.1:8089/oauth/token", "http://[::1]/t", "http://localhost/t"] {
            assert_eq!(refused(local), None, "{local}");
            assert_eq!(
                TokenEndpoint::<64>::new(local).unwrap().plain_http(),
                PlainHttp::LoopbackOnly
            );
        }
        assert_eq!(refused("https://auth.example.invalid/oauth/token"), None);
        let userinfo = SetupError::InvalidTokenUrl(UrlError::UserInfo);
        assert_eq!(refused("http://user:pw@127.0.0.1:1/oauth/token"), Some(userinfo));
        let message = std::format!("{userinfo}");
        assert!(message.contains("not allowed") && !message.contains("pw"), "{message}");

        // Opted in, the session encodes the request (nothing else would send it anywhere).
        let endpoint = TokenEndpoint::new_with_plain_http(
            "http://auth.example.invalid/oauth/token",
            PlainHttp::Anywhere,
        )
        .unwrap();
        let creds = Credentials::from_strs("client", "secret").unwrap();
        let mut session: Session<64, 1> =
            Session::new(creds, endpoint, SessionConfig::default(), 1).unwrap();
        let mut buf = [0u8; 512];
        let (_, request) = session.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
        assert_eq!(request.hostname, "auth.example.invalid");
    }

    /// A session holding token `T` (valid for an hour) at `Instant::ZERO`.
    fn with_token() -> Session<64, 1> {
        with_token_for_hosts()
    }

    /// [`with_token`] with breakers for `H` hosts.
    fn with_token_for_hosts<const H: usize>() -> Session<64, H> {
        let creds = Credentials::from_strs("client", "secret").unwrap();
        let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
        let mut s = Session::new(creds, endpoint, SessionConfig::default(), 1).unwrap();
        let mut buf = [0u8; 512];
        let (ticket, _) = s.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
        let body = br#"{"access_token":"T","token_type":"Bearer","expires_in":3600}"#;
        s.handle_token_response(Instant::ZERO, ticket, 200, &[("a", "b")], body);
        s
    }

    /// `new_in` builds the same session as `new` into its slot, replaces what the slot held,
    /// and leaves the slot alone when the configuration is refused.
    #[test]
    fn new_in_builds_in_the_slot_or_leaves_it() {
        let creds = || Credentials::from_strs("client", "secret").unwrap();
        let endpoint = || TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
        let mut slot: Option<Session<64, 1>> = Some(with_token());
        let bad = SessionConfig {
            lifecycle: LifecycleConfig {
                min_refresh_permille: 900,
                max_refresh_permille: 500,
                ..LifecycleConfig::default()
            },
            ..SessionConfig::default()
        };
        let refused = Session::new_in(&mut slot, creds(), endpoint(), bad.clone(), 1);
        assert!(matches!(refused, Err(SetupError::Lifecycle(_))));
        assert!(matches!(
            Session::<64, 1>::new(creds(), endpoint(), bad, 1),
            Err(SetupError::Lifecycle(_))
        ));
        // The refused call left the session with its token in place.
        assert!(slot.as_ref().unwrap().token(Instant::ZERO).is_some());

        let s =
            Session::new_in(&mut slot, creds(), endpoint(), SessionConfig::default(), 1).unwrap();
        assert!(s.token(Instant::ZERO).is_none(), "a new session, not the old one");
        let mut buf = [0u8; 512];
        let (_, sent) = s.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
        let sent = (sent.path, sent.authorization.map(str::len));
        let mut by_value: Session<64, 1> =
            Session::new(creds(), endpoint(), SessionConfig::default(), 1).unwrap();
        let mut other = [0u8; 512];
        let (_, expected) =
            by_value.poll_token_request(Instant::ZERO, &mut other).unwrap().unwrap();
        assert_eq!(sent, (expected.path, expected.authorization.map(str::len)));
    }

    /// A failing verdict carries the response's status and correlation id and is counted once;
    /// a transport failure's has neither; retries and successes are not counted as failures.
    #[test]
    fn failing_verdicts_are_completed_and_counted() {
        let mut s = with_token();
        let now = Instant::ZERO;
        let send = |s: &mut Session<64, 1>| {
            let mut req = s.begin(now, RequestSpec::new(Method::Get, HostKey(1)));
            assert!(matches!(s.authorize(now, &mut req), Authorize::Send { .. }));
            req
        };
        let mut req = send(&mut s);
        let headers = [("ININ-Correlation-Id", "c-403")];
        match s.handle_response(now, &mut req, 403, &headers, b"") {
            Verdict::Fail(e) => {
                assert_eq!(e.status, Some(403));
                assert_eq!(e.correlation_id.as_ref().map(CorrelationId::as_str), Some("c-403"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.counters().failed, 1);
        let mut req = send(&mut s);
        assert_eq!(s.handle_response(now, &mut req, 200, &headers, b""), Verdict::Done);
        assert_eq!(s.counters().failed, 1);
        let mut req = send(&mut s);
        let verdict = s.handle_transport_error(now, &mut req, TransportKind::Connect);
        assert!(matches!(verdict, Verdict::Retry { .. }), "{verdict:?}");
        assert_eq!(s.counters().failed, 1);
        let mut req = s.begin(
            now,
            RequestSpec { idempotent: false, ..RequestSpec::new(Method::Post, HostKey(1)) },
        );
        assert!(matches!(s.authorize(now, &mut req), Authorize::Send { .. }));
        match s.handle_transport_error(now, &mut req, TransportKind::Reset) {
            Verdict::Fail(e) => assert_eq!((e.status, e.correlation_id), (None, None)),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.counters().failed, 2);
    }

    /// Opens `host`'s breaker at `now` (three transport failures); returns when it half-opens.
    fn trip<const H: usize>(s: &mut Session<64, H>, host: u64, now: Instant) -> Instant {
        for _ in 0..3 {
            let mut req = s.begin(now, RequestSpec::new(Method::Get, HostKey(host)));
            assert!(matches!(s.authorize(now, &mut req), Authorize::Send { .. }));
            let _ = s.handle_transport_error(now, &mut req, TransportKind::Connect);
        }
        s.host_open_until(HostKey(host)).unwrap()
    }

    /// Breaker events come out token endpoint first, then host by host, each in order, and
    /// every opening is counted.
    #[test]
    fn breaker_events_are_drained_in_order() {
        let mut s: Session<64, 2> = with_token_for_hosts();
        let first = trip(&mut s, 1, Instant::from_secs(1));
        let second = trip(&mut s, 2, Instant::from_secs(2));
        s.token_breaker.on_failure(Instant::from_secs(3), &mut Rng::new(1));
        s.token_breaker.on_failure(Instant::from_secs(3), &mut Rng::new(1));
        s.token_breaker.on_failure(Instant::from_secs(3), &mut Rng::new(1));
        let token_until = s.token_breaker.next_change().unwrap();
        let later = first.max(second).max(token_until);
        while s.poll_event().is_some() {}
        s.handle_timeout(later); // all three half-open at once
        let events: Vec<Event, 8> = core::iter::from_fn(|| s.poll_event()).collect();
        let half_opened =
            |target, at| Event::Breaker { target, event: BreakerEvent::HalfOpened { at } };
        assert_eq!(
            events.as_slice(),
            [
                half_opened(BreakerTarget::TokenEndpoint, token_until),
                half_opened(BreakerTarget::Host(HostKey(1)), first),
                half_opened(BreakerTarget::Host(HostKey(2)), second),
            ]
        );
        assert_eq!(s.counters().breaker_trips, 3);
    }

    /// `poll_timeout` names the earliest of the lifecycle's wake and every open breaker's end
    /// of cooldown, whichever breaker it is.
    #[test]
    fn poll_timeout_names_the_earliest_breaker_change() {
        let mut s: Session<64, 2> = with_token_for_hosts();
        let (lifecycle_at, _) = s.lifecycle.poll_timeout().unwrap();
        assert_eq!(s.poll_timeout().map(|(at, _)| at), Some(lifecycle_at));
        let first = trip(&mut s, 1, Instant::from_secs(2));
        let second = trip(&mut s, 2, Instant::from_secs(1));
        assert!(second < first && first < lifecycle_at);
        assert_eq!(s.poll_timeout(), Some((second, Reason::BreakerHalfOpen)));
        s.handle_timeout(second);
        assert_eq!(s.poll_timeout(), Some((first, Reason::BreakerHalfOpen)));
        s.handle_timeout(first);
        assert_eq!(s.poll_timeout().map(|(at, _)| at), Some(lifecycle_at));
    }

    /// Fleet mode: the fleet admitted an attempt of a Background request that the local pacer
    /// would space; once the fleet cannot be asked, the same request is paced locally at its
    /// own priority again.
    #[test]
    fn an_externally_paced_attempt_skips_only_the_local_pacing() {
        let config = SessionConfig {
            pacer: crate::ratelimit::pacer::PacerConfig {
                burst: 1,
                burst_permille: 0,
                ..Default::default()
            },
            ..SessionConfig::default()
        };
        let creds = Credentials::from_strs("client", "secret").unwrap();
        let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
        let mut s: Session<64, 1> = Session::new(creds, endpoint, config, 1).unwrap();
        let mut buf = [0u8; 512];
        let (ticket, _) = s.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
        let body = br#"{"access_token":"T","token_type":"Bearer","expires_in":3600}"#;
        s.handle_token_response(Instant::ZERO, ticket, 200, &[("a", "b")], body);
        let host = HostKey::from_host("api.mypurecloud.com");
        let spec =
            RequestSpec { priority: Priority::Background, ..RequestSpec::new(Method::Get, host) };
        let t0 = Instant::from_secs(1);
        let window = [
            ("inin-ratelimit-count", "50"),
            ("inin-ratelimit-allowed", "100"),
            ("inin-ratelimit-reset", "60"),
        ];
        let mut first = s.begin(t0, spec);
        assert!(matches!(s.authorize(t0, &mut first), Authorize::Send { .. }));
        assert_eq!(s.handle_response(t0, &mut first, 200, &window, b""), Verdict::Done);
        let mut spaced = s.begin(t0, spec);
        assert!(matches!(s.authorize(t0, &mut spaced), Authorize::Send { .. }));
        // The local schedule now spaces Background requests...
        let mut req = s.begin(t0, spec);
        let Authorize::Wait { until: Some(next), reason: WaitReason::Paced(PaceReason::Spacing) } =
            s.authorize(t0, &mut req)
        else {
            panic!("spaced locally")
        };
        // ...but an attempt the fleet admitted goes now, and keeps its priority.
        req.set_externally_paced(true);
        assert!(req.externally_paced());
        assert!(matches!(s.authorize(t0, &mut req), Authorize::Send { .. }));
        assert!(!req.externally_paced(), "one admission, one attempt");
        assert_eq!(req.spec().priority, Priority::Background);
        assert_eq!(s.handle_response(t0, &mut req, 200, &window, b""), Verdict::Done);
        // The next attempt without an admission (the fleet unreachable) is paced at Background
        // again, on the schedule the admitted send did not move.
        let mut later = s.begin(t0, spec);
        assert!(matches!(
            s.authorize(t0, &mut later),
            Authorize::Wait { until: Some(t), reason: WaitReason::Paced(PaceReason::Spacing) } if t == next
        ));
        // A 429's wait holds an admitted attempt too.
        let t1 = next;
        assert!(matches!(s.authorize(t1, &mut later), Authorize::Send { .. }));
        let mut limited = [("Retry-After", "5"); 4];
        limited[..3].copy_from_slice(&window);
        let _ = s.handle_response(t1, &mut later, 429, &limited, b"");
        let mut admitted = s.begin(t1, spec);
        admitted.set_externally_paced(true);
        let resume = t1 + Duration::from_secs(5);
        assert!(matches!(
            s.authorize(resume - Duration::from_millis(1), &mut admitted),
            Authorize::Wait { until: Some(t), reason: WaitReason::Paced(PaceReason::Backoff429) } if t == resume
        ));
        assert!(admitted.externally_paced(), "a wait keeps the admission");
        assert!(matches!(s.authorize(resume, &mut admitted), Authorize::Send { .. }));
    }

    /// Fleet mode: the fleet cannot admit an attempt for hours (a daily quota's 429 seen by
    /// another process). The hold is the session's own pacing answer: a short one is waited
    /// for, a long one sends the session's one probe per `max_wait` and then fails fast naming
    /// the wait; it never shortens the session's own wait, and is cleared by the send.
    #[test]
    fn an_external_hold_paces_like_the_sessions_own() {
        let mut s = with_token();
        let host = HostKey::from_host("api.mypurecloud.com");
        let spec = RequestSpec::new(Method::Get, host);
        let t0 = Instant::from_secs(1);
        let max = SessionConfig::default().retry.max_wait;
        // Short: a wait, with the hold as its end.
        let mut short = s.begin(t0, spec);
        let at = t0 + Duration::from_secs(2);
        short.set_external_hold(at);
        assert!(matches!(
            s.authorize(t0, &mut short),
            Authorize::Wait { until: Some(t), reason: WaitReason::Paced(PaceReason::Exhausted) } if t == at
        ));
        assert!(matches!(s.authorize(at, &mut short), Authorize::Send { .. }));
        assert_eq!(s.handle_response(at, &mut short, 200, &[("a", "b")], b""), Verdict::Done);
        // Long: the first is the probe, the next fails fast naming the wait.
        let hours = Duration::from_secs(3 * 3600);
        let mut probe = s.begin(at, spec);
        probe.set_external_hold(at + hours);
        assert!(matches!(s.authorize(at, &mut probe), Authorize::Send { .. }), "the probe");
        assert_eq!(s.handle_response(at, &mut probe, 200, &[("a", "b")], b""), Verdict::Done);
        let mut held = s.begin(at, spec);
        held.set_external_hold(at + hours);
        let Authorize::Fail(error) = s.authorize(at, &mut held) else { panic!("fails fast") };
        assert_eq!(
            error.kind,
            ApiErrorKind::GaveUp {
                reason: GiveUpReason::WaitTooLong { wait: hours, max },
                last: RetryReason::RateLimited
            }
        );
        // Without the hold, the same request goes.
        let mut free = s.begin(at, spec);
        assert!(matches!(s.authorize(at, &mut free), Authorize::Send { .. }));
        let _ = s.handle_response(at, &mut free, 429, &[("Retry-After", "30")], b"");
        // A hold shorter than the session's own 429 wait does not shorten it.
        let mut again = s.begin(at, spec);
        again.set_external_hold(at + Duration::from_secs(1));
        assert!(matches!(
            s.authorize(at, &mut again),
            Authorize::Wait { until: Some(t), reason: WaitReason::Paced(PaceReason::Backoff429) }
                if t == at + Duration::from_secs(30)
        ));
    }

    /// Found by `fuzz/fuzz_targets/session.rs`: one 429 with an absurd `Retry-After` (a number
    /// that saturates to "forever") paced every later request, critical ones included, until
    /// `Instant::MAX`: the session never sent again. The pacer now holds requests back for at
    /// most the longest wait the retry policy honours (`max_wait`); the request that got the 429
    /// still fails fast with `WaitTooLong`, and so does the next probe while the limit lasts.
    #[test]
    fn an_absurd_retry_after_does_not_silence_the_session() {
        let max_wait = SessionConfig::default().retry.max_wait;
        for retry_after in ["99999999999999999999", "30000"] {
            let mut s = with_token();
            let host = HostKey::from_host("api.mypurecloud.com");
            let t0 = Instant::from_secs(1);
            let mut req = s.begin(t0, RequestSpec::new(Method::Get, host));
            assert!(matches!(s.authorize(t0, &mut req), Authorize::Send { .. }));
            let verdict =
                s.handle_response(t0, &mut req, 429, &[("Retry-After", retry_after)], b"");
            assert!(
                matches!(
                    &verdict,
                    Verdict::Fail(ApiError {
                        kind: ApiErrorKind::GaveUp { reason: GiveUpReason::WaitTooLong { .. }, .. },
                        ..
                    })
                ),
                "{verdict:?}"
            );
            let mut next = s.begin(
                t0,
                RequestSpec { priority: Priority::Critical, ..RequestSpec::new(Method::Get, host) },
            );
            // Later requests fail fast, naming the wait, instead of waiting for hours...
            let resume = t0 + max_wait;
            let fails_fast = |a: Authorize<'_, 64>| {
                matches!(
                    a,
                    Authorize::Fail(ApiError {
                        kind: ApiErrorKind::GaveUp { reason: GiveUpReason::WaitTooLong { .. }, .. },
                        ..
                    })
                )
            };
            assert!(fails_fast(s.authorize(t0, &mut next)), "Retry-After {retry_after}");
            let before = resume.checked_sub(Duration::from_millis(1)).unwrap();
            let mut again = s.begin(before, RequestSpec::new(Method::Get, host));
            assert!(fails_fast(s.authorize(before, &mut again)));
            // ...but one probe per max_wait goes out, so the session learns when it is lifted.
            let mut probe = s.begin(resume, RequestSpec::new(Method::Get, host));
            assert!(matches!(s.authorize(resume, &mut probe), Authorize::Send { .. }));
            let mut after = s.begin(resume, RequestSpec::new(Method::Get, host));
            assert!(fails_fast(s.authorize(resume, &mut after)), "one probe at a time");
            assert_eq!(
                s.handle_response(resume, &mut probe, 200, &[("a", "b")], b""),
                Verdict::Done
            );
            let rate_limited = core::iter::from_fn(|| s.poll_event()).find_map(|e| match e {
                Event::RateLimited { until, .. } => Some(until),
                _ => None,
            });
            assert!(
                rate_limited.is_some_and(|until| until > resume),
                "the server's own wait is reported"
            );
        }
    }
}
