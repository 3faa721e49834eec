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
//! | [`steady_lane`](Session::steady_lane) / [`settle_lane`](Session::settle_lane) | until when ordinary requests need not ask (an adapter's fast path), and what they did meanwhile |
//!
//! Every "no" says until when: [`Authorize::Wait`] and [`Verdict::Retry`] carry an instant, and
//! [`ApiError`] says what happened (a small `Copy` kind and status);
//! [`error_detail`](Session::error_detail) has what the server said about it: its codes, the
//! correlation id, a 403's missing permissions.
//!
//! ## Where each part lives
//!
//! `endpoint` holds what tokens are requested with; `token` the token side (requests, answers,
//! shared tokens, and the error of a caller without a token); `request` the API side (one
//! request from [`begin`](Session::begin) to its [`Verdict`]); `hosts` the breaker of each API
//! host; `lane` the steady state in which ordinary requests need not ask; `events` the
//! deadlines and the events queued for the caller; `error` what a caller is told. This module holds the session itself, its configuration and its snapshots.

mod endpoint;
mod error;
mod events;
mod hosts;
mod lane;
mod request;
mod token;

#[cfg(test)]
mod tests;

pub use endpoint::{SetupError, TokenEndpoint};
pub use error::{
    ApiError, ApiErrorKind, CONTENT_TYPE_CAPACITY, ErrorDetail, TokenFailureReport, TokenProblem,
};
pub use events::{BreakerTarget, Event, Reason};
use hosts::CallEnd;
pub use hosts::HostKey;
pub use lane::Lane;
use request::ResponseFailure;
pub use request::{Authorize, RequestSpec, RequestState, RetryReason, Verdict, WaitReason};
pub use token::TokenStatus;

use core::fmt;

use heapless::{Deque, String, Vec};

use crate::breaker::{BreakerConfig, CircuitBreaker, ProbeTicket};
use crate::classify::CorrelationId;
use crate::http::Headers;
use crate::http::date::parse_http_date;
use crate::lifecycle::{Generation, Lifecycle, LifecycleConfig};
use crate::oauth::{OAuthError, ScopeCheck};
use crate::ratelimit::pacer::{Pacer, PacerConfig};
use crate::redact::Secrets;
use crate::retry::budget::{BudgetConfig, RetryBudget};
use crate::retry::policy::{GiveUpReason, RetryPolicy};
use crate::rng::Rng;
use crate::secret::{Credentials, Fingerprint, InlineToken, TokenStorage};
use crate::snapshot::{self, SealError, UnsealError};
use crate::time::{Duration, Instant, UnixTime, WallClock};

/// Default capacity of a [`TokenEndpoint`] in bytes: its token URL, scope and extra parameters
/// together (the const generic `E`). Genesys Cloud needs about 50 (a URL, no scope).
pub const ENDPOINT_CAPACITY: usize = 768;
/// Extra token-request parameters (`audience`, `resource`, …) the session stores.
pub const EXTRA_PARAMS: usize = 4;
/// Events kept until drained; the oldest is dropped on overflow.
pub const SESSION_EVENT_CAPACITY: usize = 8;

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

impl SessionConfig {
    /// Checks every part once, as [`Session::new`] does: a setting that is inconsistent or
    /// almost certainly a mistake is an error naming the part (`retry`, `token_breaker`,
    /// `api_breaker`, `pacer`, `lifecycle`) and, inside it, the field.
    ///
    /// ```
    /// use credflow_core::breaker::BreakerConfigError;
    /// use credflow_core::session::{SessionConfig, SetupError};
    /// let mut config = SessionConfig::default();
    /// config.api_breaker.half_open_probes = 0;
    /// assert_eq!(config.validate(), Err(SetupError::ApiBreaker(BreakerConfigError::ZeroProbes)));
    /// ```
    pub fn validate(&self) -> Result<(), SetupError> {
        self.lifecycle.validate().map_err(SetupError::Lifecycle)?;
        self.retry.backoff.validate().map_err(SetupError::RetryBackoff)?;
        self.token_breaker.validate().map_err(SetupError::TokenBreaker)?;
        self.api_breaker.validate().map_err(SetupError::ApiBreaker)?;
        self.pacer.validate().map_err(SetupError::Pacer)
    }
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
/// breaker (the least recently used is recycled when full), `S` where the token is kept: `N`
/// bytes inline by default, or a [`TokenStorage`] sized to the token (a `std` program holding
/// a session per tenant), which accepts the same tokens.
pub struct Session<
    const N: usize = 2048,
    const H: usize = 4,
    const E: usize = ENDPOINT_CAPACITY,
    S = InlineToken<N>,
> {
    credentials: Credentials,
    endpoint: TokenEndpoint<E>,
    config: SessionConfig,
    lifecycle: Lifecycle<N, S>,
    token_breaker: CircuitBreaker,
    hosts: Vec<(HostKey, CircuitBreaker, Instant), H>,
    pacer: Pacer,
    budget: RetryBudget,
    rng: Rng,
    wall: Option<WallClock>,
    /// The last failed token request, kept for the errors callers get while waiting; cleared
    /// when a token is obtained.
    last_token_failure: Option<TokenFailureReport>,
    /// The last API response that failed a request, kept for [`error_detail`](Self::error_detail).
    last_response_failure: ResponseFailure,
    /// What the last `client_secret_jwt` assertion was made of, to mask an echo of it.
    #[cfg(feature = "jwt")]
    last_assertion: Option<crate::oauth::JwtInputs>,
    /// The token request last signed anew for a resend, which is not signed anew again.
    #[cfg(feature = "jwt")]
    resigned: Option<crate::lifecycle::Ticket>,
    /// The token breaker's probe ticket, while the token request in flight is its probe.
    token_probe: Option<ProbeTicket>,
    /// What the last token response said about scope.
    /// (Whole scope tokens that fit the endpoint's capacity `E`.)
    granted: (Option<String<E>>, ScopeCheck),
    jti_counter: u64,
    counters: Counters,
    events: Deque<Event, SESSION_EVENT_CAPACITY>,
}

impl<const N: usize, const H: usize, const E: usize, S> fmt::Debug for Session<N, H, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client", &self.credentials.id)
            .field("credential", &self.credentials.fingerprint())
            .field("token_url", &self.endpoint.token_url())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<const N: usize, const H: usize, const E: usize, S: TokenStorage> Session<N, H, E, S> {
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
        config.validate()?;
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
        config.validate()?;
        Ok(slot.insert(Session::assemble(credentials, endpoint, config, seed)))
    }

    /// The session's initial state, for a valid `config`.
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
            last_response_failure: ResponseFailure::default(),
            #[cfg(feature = "jwt")]
            last_assertion: None,
            #[cfg(feature = "jwt")]
            resigned: None,
            token_probe: None,
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

    /// What the server said about `error`, which this session returned last: the last token
    /// failure for [`CredentialsRejected`](ApiErrorKind::CredentialsRejected) and
    /// [`TokenUnavailable`](ApiErrorKind::TokenUnavailable); the correlation id and, for
    /// [`Forbidden`](ApiErrorKind::Forbidden), the diagnosis of the response that failed a
    /// request for the other kinds with a status; nothing for the kinds without one (an open
    /// breaker, a deadline). For a rate limit's wait past `max_wait`, when the next request
    /// goes out as the limit's probe, and for rejected credentials, when the next token
    /// request checks whether they are accepted again ([`ErrorDetail::next_probe_at`]). Read
    /// it before the session handles another failure.
    pub fn error_detail(&self, error: ApiError) -> ErrorDetail<'_> {
        let mut detail = ErrorDetail {
            error,
            token_failure: None,
            correlation_id: None,
            forbidden: None,
            next_probe_at: None,
        };
        if cfg!(feature = "diagnosis")
            && let ApiErrorKind::GaveUp {
                reason: GiveUpReason::WaitTooLong { .. },
                last: RetryReason::RateLimited,
            } = error.kind
        {
            detail.next_probe_at = Some(self.pacer.next_quota_probe());
        }
        match error.kind {
            ApiErrorKind::CredentialsRejected { .. } | ApiErrorKind::TokenUnavailable { .. } => {
                if self.lifecycle.rejected().is_some() {
                    detail.next_probe_at = self.lifecycle.next_request_at();
                }
                detail.token_failure = self.last_token_failure.as_ref();
                detail.correlation_id =
                    detail.token_failure.and_then(|r| r.correlation_id.as_ref());
            }
            _ if error.status.is_some() => {
                let response = &self.last_response_failure;
                detail.correlation_id = response.correlation_id.as_ref();
                if error.kind == ApiErrorKind::Forbidden {
                    detail.forbidden = response.forbidden.as_ref();
                }
            }
            _ => {}
        }
        detail
    }

    /// The client's credentials and token as they are masked in server text at `now` (see
    /// [`crate::redact`]): for adapters that print or log what a server sent (headers, error
    /// bodies). The session masks what it keeps itself.
    ///
    /// The token is the one the session holds, also past its usable-until point (until
    /// [`handle_timeout`](Self::handle_timeout) drops it): an answer that arrives in a token's
    /// last seconds was sent with it, and may echo it.
    pub fn secrets(&self, now: Instant) -> Secrets<'_> {
        let _ = now;
        #[cfg(feature = "jwt")]
        let assertion = self.last_assertion.map(|inputs| crate::redact::Assertion {
            inputs,
            audience: self.endpoint.token_url(),
            lifetime: self.endpoint.jwt_lifetime,
        });
        #[cfg(not(feature = "jwt"))]
        let assertion = None;
        let token = self.lifecycle.held().map(|token| token.as_str());
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
        // Until the first wall clock, a `client_secret_jwt` request cannot be signed: every
        // backoff in force came from such requests (each counted as a failed request, so that
        // it is not encoded again in a loop). The cause is gone, so is the wait.
        #[cfg(feature = "jwt")]
        if self.wall.is_none() && self.endpoint.auth == crate::oauth::AuthMethod::ClientSecretJwt {
            self.lifecycle.lift_backoff(clock.at);
        }
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
        self.token_probe = None;
        self.last_token_failure = None;
        #[cfg(feature = "jwt")]
        {
            self.last_assertion = None;
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
        let restored = snapshot::unseal_into::<N, S>(
            sealed,
            key,
            wall.wall_at(now),
            self.credentials.fingerprint(),
        )
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

/// Adds one to a counter, saturating. Out of line, so that a 32-bit target has one copy of the
/// 64-bit saturating increment rather than one at each counting place.
#[inline(never)]
fn count(counter: &mut u64) {
    *counter = counter.saturating_add(1);
}
