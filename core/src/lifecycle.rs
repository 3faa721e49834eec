//! The token lifecycle: acquire, hold, refresh early, fall back, expire.
//!
//! A client-credentials token is a lease, like a DHCP lease: it is acquired, held, renewed before
//! it runs out, and lost if renewal keeps failing. [`Lifecycle`] is that state machine, sans-IO:
//! it is told the time and the outcome of each token request, and it answers which token to use,
//! whether a token request is due, and when it next needs attention.
//!
//! ## Guarantees
//!
//! - **Never an expired token.** [`Lifecycle::token`] returns a token only while `now` is before
//!   its *usable-until* point, which is at or before its expiry (expiry minus a small safety
//!   margin for requests in flight). Expiry is anchored to when the token request was *sent*, not
//!   when the answer arrived, so a slow token endpoint cannot stretch a token's life.
//! - **Single flight.** At most one token request is outstanding, whatever the callers do:
//!   [`Lifecycle::start_request`] hands out a [`Ticket`] only when none is in flight. Outcomes for
//!   any other ticket are ignored.
//! - **Refresh ahead, with jitter.** A token is refreshed [`LifecycleConfig::refresh_margin`]
//!   (60 s, the guide's margin) before expiry, but never before
//!   [`LifecycleConfig::min_refresh_permille`] of its life has passed (short-lived tokens would
//!   otherwise refresh in a loop) and never after [`LifecycleConfig::max_refresh_permille`] of it
//!   (long-lived tokens get a wide advisory window). The refresh point is moved earlier by a random
//!   share of the remaining margin drawn from the caller's [`Rng`], so a fleet that started together
//!   does not refresh together.
//! - **Stale-while-revalidate.** While a refresh is in flight or failing, the old token keeps being
//!   served as long as it is usable. A failed refresh never replaces a good token with an error
//!   (google-cloud-rust #5809).
//! - **Generation-aware invalidation.** Each token has a [`Generation`]. [`Lifecycle::invalidate`]
//!   after a 401 drops the token only if it is still the current generation: a late 401 for an
//!   older token cannot throw away a newer one (Azure SDK for C++ #6151).
//! - **Fatal means stop, then check now and then.** `invalid_client`, `unauthorized_client`,
//!   `invalid_scope`, a rejected grant, an unusable answer or a redirect ([`RejectReason`])
//!   move the lifecycle to [`LifecycleState::Rejected`]: no token request is made for
//!   [`LifecycleConfig::recheck_after`] (5 min), then one checks whether the cause is gone (an
//!   OAuth client disabled by mistake and enabled again, a scope granted, a load balancer
//!   fixed). A token ends the stop; another rejection stops requests again for twice as long,
//!   at most [`LifecycleConfig::recheck_cap`] (1 h). Until a token comes, *every* token
//!   request waits at least the current hold after the one before ended, whatever the server
//!   answered meanwhile (a 503, a timeout, an abandoned request), so a rejected client never
//!   sends more than one token request per hold. [`Lifecycle::credentials_changed`] (secret
//!   rotation) ends the stop at once. With `recheck_after: None`, or without the feature
//!   `recheck` (the trimmed firmware build), requests stay stopped until the credentials
//!   change. Transient failures never poison it (google-cloud-rust #4541, #5864).
//! - **No wedge.** A request whose outcome never arrives (the adapter's task was cancelled, the
//!   connection hung) is abandoned after [`LifecycleConfig::request_timeout`] and counted as a
//!   transient failure, so single flight cannot block refresh forever (golang/oauth2 #388).
//! - **Spaced requests, whatever the server sends.** No two token requests start closer than
//!   [`LifecycleConfig::min_refresh_interval`] (1 s), whatever made the second one due: a token
//!   that expired at once (`expires_in: 0`), a failure with `Retry-After: 0`, an abandoned
//!   request, a credential change. [`Lifecycle::next_request_at`] is never earlier than the last
//!   request's start plus the interval, so every path that makes a request due passes through
//!   the same bound. The one exception is the refresh after a 401
//!   ([`Lifecycle::invalidate`]): it may go at once, to replace a token the API refused, but
//!   only once per interval, so a server that refuses every fresh token cannot chain early
//!   refreshes. Over any window of length `w`, at most `w / min_refresh_interval + 1` requests
//!   start; twice that if the API refuses every token.
//!
//! ## Call order
//!
//! ```text
//! loop {
//!     if let Some(ticket) = lc.start_request(now) { send the token request; later:
//!         lc.on_success(now, ticket, token, expires_in, &mut rng) or lc.on_failure(...) }
//!     lc.token(now)           -> Some((token, generation)) to attach, or None: wait
//!     lc.invalidate(now, gen) after a 401 carrying that generation
//!     lc.handle_timeout(now)  when poll_timeout() says so
//!     while let Some(ev) = lc.poll_event() { log it }
//! }
//! ```
//!
//! Handlers tolerate spurious and late calls: a stale ticket, a repeated invalidation, a timeout
//! call at any time are all harmless.

use heapless::Deque;

use crate::rng::Rng;
use crate::secret::{AccessToken, InlineToken, TokenStorage};
use crate::time::{Duration, Instant};
use recheck::Recheck;

/// Identifies one token the lifecycle has held; increases with every token acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Generation(pub u32);

/// Names one token request. Returned by [`Lifecycle::start_request`], handed back with its
/// outcome. Outcomes for a ticket that is not the one in flight are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "a ticket must be answered with on_success, on_failure or on_abandoned"]
pub struct Ticket(u64);

impl Ticket {
    /// The ticket's sequence number (for logs).
    pub const fn id(self) -> u64 {
        self.0
    }
}

/// Tuning of the lifecycle. Plain data with [`Default`]; checked by [`LifecycleConfig::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct LifecycleConfig {
    /// Refresh this long before expiry (default 60 s, the guide's margin), subject to the two
    /// fractions below.
    pub refresh_margin: Duration,
    /// Never refresh before this share of the token's life (thousandths; default 500 = half).
    /// Protects short-lived tokens from a refresh loop when the margin exceeds their life.
    pub min_refresh_permille: u16,
    /// Never refresh after this share of the token's life (thousandths; default 900).
    pub max_refresh_permille: u16,
    /// Move the refresh point earlier by a random share, up to this many thousandths, of the time
    /// between the refresh point and expiry (default 500). Capped at 500 so the jitter cannot eat
    /// the whole margin (smithy-rs PR #3402).
    pub refresh_jitter_permille: u16,
    /// Stop handing out a token this long before it expires, so a request in flight does not
    /// arrive with a dead token (default 5 s; never more than a tenth of the token's life).
    pub expiry_safety: Duration,
    /// First wait after a failed token request (default 1 s). Doubles per consecutive failure.
    /// Whatever the wait, the next request starts no sooner than
    /// [`min_refresh_interval`](Self::min_refresh_interval) after the failed one started.
    pub retry_base: Duration,
    /// Longest wait between failed token requests (default 60 s).
    pub retry_cap: Duration,
    /// A token request with no outcome after this long is abandoned as a transient failure
    /// (default 30 s). Adapters should time out their HTTP request sooner.
    pub request_timeout: Duration,
    /// Longest server-requested wait (`Retry-After`) honoured between token requests (default
    /// 10 min); longer waits are cut to this so one odd answer cannot stop refresh for hours.
    /// A wait shorter than the backoff (`Retry-After: 0`) does not shorten it.
    pub max_server_wait: Duration,
    /// Least time between the starts of two token requests (default 1 s), whatever made the
    /// second one due: a token that expired at once, a failure the server asked to retry at
    /// once, an abandoned request, a credential change. Only the refresh after a 401 may go
    /// sooner, once per interval. Tokens living less than this are still used, but refreshed
    /// no more often. Zero turns the spacing off (for tests; a server answering
    /// `expires_in: 0` could then drive a request loop).
    ///
    /// ```
    /// use credflow_core::lifecycle::LifecycleConfig;
    /// use credflow_core::Duration;
    /// let cfg = LifecycleConfig {
    ///     min_refresh_interval: Duration::from_secs(5),
    ///     ..LifecycleConfig::default()
    /// };
    /// assert!(cfg.validate().is_ok());
    /// ```
    pub min_refresh_interval: Duration,
    /// How long token requests stay stopped after the token endpoint rejected the client
    /// ([`RejectReason`]) before one request checks whether the cause is gone (default 5 min);
    /// doubled after each rejection in a row, at most [`recheck_cap`](Self::recheck_cap). Until
    /// a token comes, every token request waits at least the current hold after the one before
    /// ended, whatever the server answered meanwhile. A credential change ends the stop at once.
    /// `None`: stopped until the credentials change.
    ///
    /// The default suits Genesys Cloud, whose tokens live 24 h unless configured otherwise: an
    /// OAuth client disabled by mistake and enabled again, or a scope granted, is noticed
    /// within 5 min at first, and within the hour at worst, long before a token fetched before
    /// the rejection runs out; and a wrong secret costs about 27 token requests a day (5, 10,
    /// 20, 40 min, then hourly), which no rate limit or brute-force alarm takes for an attack.
    ///
    /// ```
    /// use credflow_core::lifecycle::LifecycleConfig;
    /// use credflow_core::Duration;
    /// let cfg = LifecycleConfig {
    ///     recheck_after: Some(Duration::from_secs(30)),
    ///     recheck_cap: Duration::from_mins(10),
    ///     ..LifecycleConfig::default()
    /// };
    /// assert!(cfg.validate().is_ok());
    /// // Stopped until the credentials change.
    /// let cfg = LifecycleConfig { recheck_after: None, ..LifecycleConfig::default() };
    /// assert!(cfg.validate().is_ok());
    /// ```
    #[cfg(feature = "recheck")]
    pub recheck_after: Option<Duration>,
    /// Longest hold between two token requests of a rejected client (default 1 h).
    #[cfg(feature = "recheck")]
    pub recheck_cap: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            refresh_margin: Duration::from_secs(60),
            min_refresh_permille: 500,
            max_refresh_permille: 900,
            refresh_jitter_permille: 500,
            expiry_safety: Duration::from_secs(5),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            min_refresh_interval: Duration::from_secs(1),
            max_server_wait: Duration::from_mins(10),
            #[cfg(feature = "recheck")]
            recheck_after: Some(Duration::from_mins(5)),
            #[cfg(feature = "recheck")]
            recheck_cap: Duration::from_mins(60),
        }
    }
}

/// A [`LifecycleConfig`] value that cannot work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `min_refresh_permille` is above `max_refresh_permille`, or either is above 1000.
    RefreshFractions,
    /// `refresh_jitter_permille` is above 500.
    JitterTooLarge,
    /// `retry_base` is zero or above `retry_cap`.
    RetryBounds,
    /// `request_timeout` is zero.
    ZeroRequestTimeout,
    /// `recheck_after` is zero or above `recheck_cap`.
    #[cfg(feature = "recheck")]
    RecheckBounds,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::RefreshFractions => {
                "refresh fractions must satisfy min_refresh_permille <= max_refresh_permille <= 1000"
            }
            ConfigError::JitterTooLarge => "refresh_jitter_permille must be at most 500",
            ConfigError::RetryBounds => "retry_base must be non-zero and at most retry_cap",
            ConfigError::ZeroRequestTimeout => "request_timeout must be non-zero",
            #[cfg(feature = "recheck")]
            ConfigError::RecheckBounds => {
                "recheck_after must be non-zero and at most recheck_cap"
            }
        })
    }
}

impl core::error::Error for ConfigError {}

impl LifecycleConfig {
    /// Checks the invariants the lifecycle relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_refresh_permille > self.max_refresh_permille || self.max_refresh_permille > 1000
        {
            return Err(ConfigError::RefreshFractions);
        }
        if self.refresh_jitter_permille > 500 {
            return Err(ConfigError::JitterTooLarge);
        }
        if self.retry_base.is_zero() || self.retry_base > self.retry_cap {
            return Err(ConfigError::RetryBounds);
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::ZeroRequestTimeout);
        }
        #[cfg(feature = "recheck")]
        if self.recheck_after.is_some_and(|first| first.is_zero() || first > self.recheck_cap) {
            return Err(ConfigError::RecheckBounds);
        }
        Ok(())
    }

    /// The (unjittered) offset from the send time at which a token of `life` is refreshed.
    pub fn refresh_offset(&self, life: Duration) -> Duration {
        let ideal = life.saturating_sub(self.refresh_margin);
        let lo = life.mul_permille(self.min_refresh_permille);
        let hi = life.mul_permille(self.max_refresh_permille);
        ideal.max(lo).min(hi)
    }

    /// How long before expiry a token of `life` stops being handed out.
    pub fn safety(&self, life: Duration) -> Duration {
        self.expiry_safety.min(life.mul_ratio(1, 10))
    }

    fn retry_delay(&self, failures: u32, rng: &mut Rng) -> Duration {
        // Equal jitter: half the ceiling fixed, half random. Unlike full jitter it never yields a
        // near-zero wait, which matters for a single token endpoint shared by a fleet.
        let shift = failures.saturating_sub(1).min(32);
        let ceiling = self.retry_base.saturating_mul(1u64 << shift).min(self.retry_cap);
        let half = Duration::from_millis(ceiling.as_millis() / 2);
        half.saturating_add(
            rng.duration_below(
                ceiling.saturating_sub(half).saturating_add(Duration::from_millis(1)),
            ),
        )
    }
}

/// Why token requests were stopped (for [`LifecycleConfig::recheck_after`], or until the
/// credentials change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum RejectReason {
    /// `invalid_client`: wrong id or secret, a disabled client, or the wrong region.
    InvalidClient,
    /// `unauthorized_client`: the client may not use the client-credentials grant.
    UnauthorizedClient,
    /// `invalid_scope`: a requested scope is unknown or not allowed for this client.
    InvalidScope,
    /// `invalid_grant` / `unsupported_grant_type`: the server does not accept this grant.
    GrantRejected,
    /// The token response could not be used (wrong `token_type`, a token larger than the
    /// configured capacity, a response larger than the adapter reads). Retrying would get the
    /// same answer.
    UnusableResponse,
    /// The token endpoint answered with a redirect, which token requests never follow (see
    /// [`http::redirect`](crate::http::redirect)): the token URL needs fixing.
    Redirected,
}

impl RejectReason {
    /// A one-line explanation of the likely cause, for logs and error messages.
    pub const fn likely_cause(self) -> &'static str {
        match self {
            RejectReason::InvalidClient => {
                "wrong client id or secret, a disabled OAuth client, or the wrong region (environments are isolated)"
            }
            RejectReason::UnauthorizedClient => {
                "the OAuth client is not allowed the client-credentials grant"
            }
            RejectReason::InvalidScope => {
                "a requested scope is unknown or not granted to this client"
            }
            RejectReason::GrantRejected => {
                "the server does not accept the client-credentials grant"
            }
            RejectReason::UnusableResponse => {
                "the token response cannot be used (token type or size); check the configuration"
            }
            RejectReason::Redirected => crate::oauth::error::REDIRECTED_CAUSE,
        }
    }
}

/// The outcome of a failed token request, as the session classified it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TokenFailure {
    /// Worth retrying later: 5xx, 408, a transport error, an unparseable answer.
    /// `retry_after` is the server's wish, if it stated one.
    Transient {
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// The token endpoint is rate-limiting this client (429, or Genesys' 400
    /// `rate limit exceeded;`).
    RateLimited {
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help until the credentials or configuration change.
    Fatal(RejectReason),
}

/// What the lifecycle is doing, for observability and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LifecycleState {
    /// No usable token and no request in flight; one is due at `next_attempt`.
    NoToken {
        /// When the next token request may be sent.
        next_attempt: Instant,
    },
    /// No usable token; a request is in flight.
    Acquiring,
    /// A usable token, refresh not yet due or already scheduled.
    Valid {
        /// Its generation.
        generation: Generation,
        /// When it will be refreshed.
        refresh_at: Instant,
    },
    /// A usable token is served while its replacement is requested.
    Refreshing {
        /// The generation being served.
        generation: Generation,
    },
    /// The last request failed; the next one waits until `next_attempt`. `serving` says whether a
    /// still-usable token is being served meanwhile.
    BackingOff {
        /// When the next token request may be sent.
        next_attempt: Instant,
        /// Consecutive failures so far.
        failures: u32,
        /// Whether an older, still-usable token is being served.
        serving: bool,
    },
    /// Token requests are stopped until `recheck_at`, or until the credentials change.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// When one token request checks whether the cause is gone (`None`: rechecks are off,
        /// by [`LifecycleConfig::recheck_after`] or without the feature `recheck`).
        recheck_at: Option<Instant>,
    },
}

/// Something the caller may want to log or count. Drained with [`Lifecycle::poll_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum LifecycleEvent {
    /// A new token is in use.
    TokenAcquired {
        /// Its generation.
        generation: Generation,
        /// Its lifetime as granted.
        life: Duration,
        /// When it will be refreshed.
        refresh_at: Instant,
        /// When it stops being handed out.
        usable_until: Instant,
    },
    /// A token request failed; the next is due at `next_attempt`.
    RequestFailed {
        /// The failure.
        failure: TokenFailure,
        /// Consecutive failures so far.
        failures: u32,
        /// When the next request may be sent.
        next_attempt: Instant,
        /// Whether a still-usable token is being served meanwhile.
        serving_stale: bool,
    },
    /// The in-flight request got no outcome in time and was abandoned.
    RequestTimedOut,
    /// Token requests stopped until `recheck_at` (`None`: until the credentials change). A
    /// [`TokenAcquired`](Self::TokenAcquired) says they are back to normal.
    CredentialsRejected {
        /// Why.
        reason: RejectReason,
        /// When one token request checks whether the cause is gone.
        recheck_at: Option<Instant>,
    },
    /// A token was dropped after the API rejected it.
    Invalidated(Generation),
    /// A token passed its usable-until point with no replacement.
    Expired(Generation),
}

/// Why [`Lifecycle::poll_timeout`] wants to be called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Wake {
    /// A token request becomes due (refresh point or end of backoff).
    RequestDue,
    /// The in-flight request's outcome is overdue.
    RequestTimeout,
    /// The served token stops being usable.
    TokenExpiry,
}

/// A token the lifecycle holds, with the instants computed when it arrived.
#[derive(Clone, PartialEq, Eq)]
struct Held<const N: usize, S> {
    token: AccessToken<N, S>,
    generation: Generation,
    /// Strictly: the token must not be used at or after this instant.
    expires_at: Instant,
    /// When a refresh becomes due.
    refresh_at: Instant,
    /// When the token stops being handed out (`<= expires_at`).
    usable_until: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing in flight; a request is due at `refresh_at` (with a token) or at `not_before`.
    Idle { not_before: Instant },
    /// A request is in flight.
    InFlight { ticket: u64, sent_at: Instant, deadline: Instant },
    /// Stopped until the recheck (`Recheck::at`) or the credentials change.
    Rejected(RejectReason),
}

/// Capacity of the event queue; the oldest event is dropped when it overflows. One call makes at
/// most two events, and owners drain after each (the session does), so 4 is ample; every slot
/// costs 40 bytes of RAM.
pub const EVENT_CAPACITY: usize = 4;

/// The token lifecycle state machine. `N` is the token capacity in bytes, `S` where the token
/// is kept ([`TokenStorage`]).
///
/// See the [module documentation](self) for guarantees and call order.
pub struct Lifecycle<const N: usize, S = InlineToken<N>> {
    config: LifecycleConfig,
    current: Option<Held<N, S>>,
    phase: Phase,
    /// Consecutive failed requests.
    failures: u32,
    /// The last request was abandoned (no outcome: the caller gave up or was cancelled), and
    /// the wait that followed it (`None`: it had an outcome).
    abandoned: Option<Duration>,
    /// The last request's start plus `min_refresh_interval` (zero before the first): no
    /// request starts earlier, but for a refresh after a 401.
    spaced_until: Instant,
    /// The same for the last request that started as a refresh after a 401 (zero before the
    /// first): the next such refresh starts no earlier. `<= spaced_until`.
    reauth_spaced_until: Instant,
    /// Set by `invalidate` (the API refused the current token): the next request is a refresh
    /// after a 401, bound by `reauth_spaced_until` only. Cleared when a request starts or a
    /// token arrives, and by `credentials_changed`.
    reauthenticate: bool,
    /// The hold after the last rejection, while no token came since.
    recheck: Recheck,
    next_ticket: u64,
    next_generation: u32,
    events: Deque<LifecycleEvent, EVENT_CAPACITY>,
}

impl<const N: usize, S: TokenStorage> core::fmt::Debug for Lifecycle<N, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("state", &self.state(Instant::ZERO))
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl<const N: usize, S: TokenStorage> Lifecycle<N, S> {
    /// A lifecycle with no token whose first request is due at once.
    pub fn new(config: LifecycleConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Lifecycle::validated(config))
    }

    /// [`new`](Self::new) for a `config` already validated: a plain value, so that a session
    /// built in place writes it where it lives instead of unwrapping a `Result` of it.
    pub(crate) fn validated(config: LifecycleConfig) -> Self {
        Lifecycle {
            config,
            current: None,
            phase: Phase::Idle { not_before: Instant::ZERO },
            failures: 0,
            abandoned: None,
            spaced_until: Instant::ZERO,
            reauth_spaced_until: Instant::ZERO,
            reauthenticate: false,
            recheck: Recheck::NONE,
            next_ticket: 1,
            next_generation: 1,
            events: Deque::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    /// The token to attach at `now`, with its generation, if one is usable.
    ///
    /// Never returns a token at or after its usable-until point, whatever calls were or were not
    /// made before.
    pub fn token(&self, now: Instant) -> Option<(&AccessToken<N, S>, Generation)> {
        match &self.current {
            Some(held) if now < held.usable_until => Some((&held.token, held.generation)),
            _ => None,
        }
    }

    /// The token held, usable or not: past its usable-until point it is no longer handed out,
    /// but a request sent with it may still be answered (and the answer echo it) until
    /// [`handle_timeout`](Self::handle_timeout) drops it.
    pub(crate) fn held(&self) -> Option<&AccessToken<N, S>> {
        self.current.as_ref().map(|held| &held.token)
    }

    /// The usable token's generation and the instants that govern it, if one is usable at `now`.
    pub fn token_times(&self, now: Instant) -> Option<TokenTimes> {
        match &self.current {
            Some(held) if now < held.usable_until => Some(TokenTimes {
                generation: held.generation,
                refresh_at: held.refresh_at,
                usable_until: held.usable_until,
                expires_at: held.expires_at,
            }),
            _ => None,
        }
    }

    /// What the lifecycle is doing at `now`.
    pub fn state(&self, now: Instant) -> LifecycleState {
        let usable = self.token_times(now);
        match self.phase {
            Phase::Rejected(reason) => {
                LifecycleState::Rejected { reason, recheck_at: self.next_request_at() }
            }
            Phase::InFlight { .. } => match usable {
                Some(t) => LifecycleState::Refreshing { generation: t.generation },
                None => LifecycleState::Acquiring,
            },
            Phase::Idle { not_before } if self.failures > 0 => LifecycleState::BackingOff {
                next_attempt: self.due_at(not_before),
                failures: self.failures,
                serving: usable.is_some(),
            },
            Phase::Idle { not_before } => match usable {
                Some(t) => {
                    LifecycleState::Valid { generation: t.generation, refresh_at: t.refresh_at }
                }
                None => LifecycleState::NoToken { next_attempt: self.due_at(not_before) },
            },
        }
    }

    /// Why token requests are stopped, if they are: [`state`](Self::state)'s `Rejected`
    /// without the rest of the state (for the session's no-token answers; the recheck is
    /// [`next_request_at`](Self::next_request_at)).
    pub(crate) fn rejected(&self) -> Option<RejectReason> {
        match self.phase {
            Phase::Rejected(reason) => Some(reason),
            Phase::Idle { .. } | Phase::InFlight { .. } => None,
        }
    }

    /// Whether a token request is in flight.
    pub fn in_flight(&self) -> bool {
        matches!(self.phase, Phase::InFlight { .. })
    }

    /// Whether `ticket`'s request is the one in flight (not one disowned by a timeout, an
    /// abandon or a credential change, while another may be).
    pub fn is_in_flight(&self, ticket: Ticket) -> bool {
        matches!(self.phase, Phase::InFlight { ticket: t, .. } if t == ticket.0)
    }

    /// When the next token request becomes due, if none is in flight and requests are not
    /// stopped until the credentials change. An instant at or before `now` means "now".
    ///
    /// The latest of: the held token's refresh point (none without a token), the end of any
    /// backoff or of the hold after a rejection (the recheck), and the spacing,
    /// [`LifecycleConfig::min_refresh_interval`] after the last request's start (after the last refresh-after-401's start when this one is such a
    /// refresh). Every path that makes a request due is bound by it.
    pub fn next_request_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle { not_before } => Some(self.due_at(not_before)),
            Phase::Rejected(_) => self.recheck.at().map(|at| self.due_at(at)),
            Phase::InFlight { .. } => None,
        }
    }

    /// When a request is due while idle with backoff until `not_before`. Out of line: its three
    /// callers share one copy of the 64-bit comparisons.
    #[inline(never)]
    fn due_at(&self, not_before: Instant) -> Instant {
        let refresh = match &self.current {
            Some(held) => held.refresh_at,
            None => Instant::ZERO,
        };
        let spaced = if self.reauthenticate { self.reauth_spaced_until } else { self.spaced_until };
        refresh.max(not_before).max(spaced)
    }

    /// Starts a token request if one is due at `now` and none is in flight.
    ///
    /// The caller must send exactly one token request for the returned ticket and report its
    /// outcome with [`on_success`](Self::on_success), [`on_failure`](Self::on_failure) or
    /// [`on_abandoned`](Self::on_abandoned). Returns `None` when nothing is due.
    pub fn start_request(&mut self, now: Instant) -> Option<Ticket> {
        if self.next_request_at()? > now {
            return None;
        }
        self.spaced_until = now.saturating_add(self.config.min_refresh_interval);
        if core::mem::take(&mut self.reauthenticate) {
            self.reauth_spaced_until = self.spaced_until;
        }
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.saturating_add(1);
        self.phase = Phase::InFlight {
            ticket,
            sent_at: now,
            deadline: now.saturating_add(self.config.request_timeout),
        };
        Some(Ticket(ticket))
    }

    fn take_in_flight(&mut self, ticket: Ticket) -> Option<Instant> {
        match self.phase {
            Phase::InFlight { ticket: t, sent_at, .. } if t == ticket.0 => Some(sent_at),
            _ => None,
        }
    }

    /// Reports a token received for `ticket`, valid for `life` from when the request was sent.
    ///
    /// Returns the new generation, or `None` if the ticket is not the one in flight (a late
    /// answer after a timeout or a credential change), in which case nothing changes.
    ///
    /// A token whose life is over on arrival (`life` zero, or shorter than the answer took) is
    /// held but never handed out; it expires at once and the next request waits for the
    /// spacing ([`LifecycleConfig::min_refresh_interval`]). The [session](crate::session) does
    /// not pass a zero `life`: it counts such an answer as a failed request, with backoff.
    pub fn on_success(
        &mut self,
        now: Instant,
        ticket: Ticket,
        token: AccessToken<N, S>,
        life: Duration,
        rng: &mut Rng,
    ) -> Option<Generation> {
        let sent_at = self.take_in_flight(ticket)?;
        let cfg = &self.config;
        let expires_at = sent_at.saturating_add(life);
        let offset = cfg.refresh_offset(life);
        let margin = life.saturating_sub(offset);
        let jitter = rng.duration_below(margin.mul_permille(cfg.refresh_jitter_permille));
        let refresh_at = sent_at
            .saturating_add(offset.saturating_sub(jitter))
            .max(sent_at.saturating_add(cfg.min_refresh_interval));
        let usable_until = expires_at.saturating_sub(cfg.safety(life));
        let generation = Generation(self.next_generation);
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        self.current = Some(Held { token, generation, expires_at, refresh_at, usable_until });
        self.failures = 0;
        self.abandoned = None;
        self.recheck = Recheck::NONE;
        self.reauthenticate = false;
        self.phase = Phase::Idle { not_before: now };
        self.push(LifecycleEvent::TokenAcquired { generation, life, refresh_at, usable_until });
        Some(generation)
    }

    /// Reports a failed token request for `ticket`. Ignored if the ticket is not in flight.
    ///
    /// Transient and rate-limited failures schedule the next attempt (exponential backoff with
    /// jitter, or the server's `Retry-After` where that is longer, or the hold after a
    /// rejection where that is longer still) and keep serving a usable token; fatal ones stop
    /// requests for [`LifecycleConfig::recheck_after`], doubled per rejection in a row, or
    /// until [`credentials_changed`](Self::credentials_changed).
    pub fn on_failure(
        &mut self,
        now: Instant,
        ticket: Ticket,
        failure: TokenFailure,
        rng: &mut Rng,
    ) {
        if self.take_in_flight(ticket).is_none() {
            return;
        }
        self.fail(now, failure, rng);
    }

    /// Reports that the request for `ticket` was abandoned without an outcome (the caller's task
    /// was cancelled, or its own limit came first). Releases single flight at once, without
    /// counting a failure: nothing was learned about the server. The request may have reached
    /// the server, so the next one still waits for the spacing
    /// ([`LifecycleConfig::min_refresh_interval`] after this one's start).
    ///
    /// Abandon after abandon is a pattern, not an accident: every caller's limit shorter than
    /// the server's answers would otherwise send a request per spacing for as long as it
    /// lasts, each one dropped. So from the second abandoned request in a row, the next one
    /// waits as after failures, without jitter: `retry_base` after the second, doubling per
    /// abandon, at most `retry_cap`. Any outcome (a token, a failure) and a credential change
    /// end the run. After a rejection, the hold until the recheck applies too, if longer.
    pub fn on_abandoned(&mut self, now: Instant, ticket: Ticket) {
        if self.take_in_flight(ticket).is_none() {
            return;
        }
        let cfg = &self.config;
        let wait = match self.abandoned {
            None => Duration::ZERO,
            Some(last) if last.is_zero() => cfg.retry_base,
            Some(last) => last.saturating_add(last).min(cfg.retry_cap),
        };
        self.abandoned = Some(wait);
        self.phase = Phase::Idle { not_before: now.saturating_add(self.recheck.held_back(wait)) };
    }

    /// Whether the last token request was abandoned (and no outcome, token or credential
    /// change came since).
    pub(crate) fn last_abandoned(&self) -> bool {
        self.abandoned.is_some()
    }

    /// Ends a backoff in force at `now` (the failures it counted too): the next request is due
    /// as soon as the spacing allows. For a failure that was the client's own (a request that
    /// could not be signed without the wall clock) once its cause is gone. Nothing changes
    /// with a request in flight or requests stopped.
    #[cfg(feature = "jwt")]
    pub(crate) fn lift_backoff(&mut self, now: Instant) {
        if let Phase::Idle { not_before } = self.phase
            && not_before > now
        {
            self.failures = 0;
            self.phase = Phase::Idle { not_before: now };
        }
    }

    fn fail(&mut self, now: Instant, failure: TokenFailure, rng: &mut Rng) {
        if let TokenFailure::Fatal(reason) = failure {
            self.recheck.rejected(&self.config, now);
            self.phase = Phase::Rejected(reason);
            let recheck_at = self.next_request_at();
            self.push(LifecycleEvent::CredentialsRejected { reason, recheck_at });
            return;
        }
        self.failures = self.failures.saturating_add(1);
        self.abandoned = None;
        let backoff = self.config.retry_delay(self.failures, rng);
        // The server's wish lengthens the backoff, never shortens it: a server answering every
        // request with `Retry-After: 0` gets the same growing waits as one that says nothing.
        let wait = match failure {
            TokenFailure::Transient { retry_after: Some(ra) }
            | TokenFailure::RateLimited { retry_after: Some(ra) } => {
                ra.min(self.config.max_server_wait).max(backoff)
            }
            _ => backoff,
        };
        let not_before = now.saturating_add(self.recheck.held_back(wait));
        self.phase = Phase::Idle { not_before };
        let next_attempt = self.due_at(not_before);
        let serving_stale = self.token(now).is_some();
        self.push(LifecycleEvent::RequestFailed {
            failure,
            failures: self.failures,
            next_attempt,
            serving_stale,
        });
    }

    /// Drops the token of `generation` after the API rejected it (401), if it is still the
    /// current one, and makes a refresh due at once, subject to any backoff in force.
    ///
    /// This refresh is the one exception to the spacing of requests: it may start sooner than
    /// [`LifecycleConfig::min_refresh_interval`] after the last request, but no sooner than
    /// that after the last refresh made for a 401. A server that refuses every fresh token
    /// gets one early refresh per interval, not a loop.
    ///
    /// Returns whether a token was dropped. A 401 for an older generation returns `false` and
    /// leaves the newer token alone; a repeated call is harmless.
    pub fn invalidate(&mut self, _now: Instant, generation: Generation) -> bool {
        match &self.current {
            Some(held) if held.generation == generation => {
                self.current = None;
                self.reauthenticate = true;
                self.push(LifecycleEvent::Invalidated(generation));
                true
            }
            _ => false,
        }
    }

    /// The credentials were replaced (secret rotation): forget the current token, any backoff and
    /// any rejection (and its hold), and make a request due as soon as the spacing allows. A request still in
    /// flight is disowned: its outcome, obtained with the old credentials, will be ignored.
    ///
    /// A credential change does not go early: the next request waits until
    /// [`LifecycleConfig::min_refresh_interval`] after the last one's start (at most that long,
    /// 1 s by default), so an application that reloads its secret in a loop cannot make the
    /// lifecycle storm the token endpoint either.
    pub fn credentials_changed(&mut self, now: Instant) {
        self.current = None;
        self.failures = 0;
        self.abandoned = None;
        self.recheck = Recheck::NONE;
        self.reauthenticate = false;
        self.phase = Phase::Idle { not_before: now };
    }

    /// Installs a token obtained elsewhere (restored from a sealed snapshot, or shared by a
    /// fleet) that expires at `expires_at`. Its refresh point is computed as if its remaining
    /// life were its whole life. Ignored while requests are stopped by a rejection (until the
    /// recheck, which may then be answered with such a token) or when the token is already
    /// unusable; a request in flight stays in flight and its answer still counts. Installed
    /// with none in flight, it ends the hold after a rejection, as a token obtained does.
    ///
    /// Returns the generation given to it.
    pub fn install(
        &mut self,
        now: Instant,
        token: AccessToken<N, S>,
        expires_at: Instant,
        rng: &mut Rng,
    ) -> Option<Generation> {
        if matches!(self.phase, Phase::Rejected(_)) {
            return None;
        }
        let life = expires_at.saturating_duration_since(now);
        let cfg = &self.config;
        let usable_until = expires_at.saturating_sub(cfg.safety(life));
        if now >= usable_until {
            return None;
        }
        let offset = cfg.refresh_offset(life);
        let jitter = rng
            .duration_below(life.saturating_sub(offset).mul_permille(cfg.refresh_jitter_permille));
        let refresh_at = now
            .saturating_add(offset.saturating_sub(jitter))
            .max(now.saturating_add(cfg.min_refresh_interval));
        let generation = Generation(self.next_generation);
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        self.current = Some(Held { token, generation, expires_at, refresh_at, usable_until });
        self.reauthenticate = false;
        if let Phase::Idle { .. } = self.phase {
            self.failures = 0;
            self.abandoned = None;
            self.recheck = Recheck::NONE;
            self.phase = Phase::Idle { not_before: now };
        }
        self.push(LifecycleEvent::TokenAcquired { generation, life, refresh_at, usable_until });
        Some(generation)
    }

    /// The current token with its absolute expiry, for sealing into a snapshot.
    pub fn current(&self, now: Instant) -> Option<(&AccessToken<N, S>, Instant)> {
        self.current
            .as_ref()
            .filter(|held| now < held.usable_until)
            .map(|held| (&held.token, held.expires_at))
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) or
    /// [`start_request`](Self::start_request) has work, and why.
    pub fn poll_timeout(&self) -> Option<(Instant, Wake)> {
        let phase = match self.phase {
            Phase::InFlight { deadline, .. } => Some((deadline, Wake::RequestTimeout)),
            Phase::Idle { .. } | Phase::Rejected(_) => {
                self.next_request_at().map(|at| (at, Wake::RequestDue))
            }
        };
        let Some(held) = &self.current else {
            return phase;
        };
        // The phase's wake wins a tie with the expiry.
        match phase {
            Some(wake) if wake.0 <= held.usable_until => Some(wake),
            _ => Some((held.usable_until, Wake::TokenExpiry)),
        }
    }

    /// Processes deadlines that have passed at `now`: abandons an overdue request (as a
    /// transient failure) and drops a token past its usable-until point. Safe to call at any time.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut Rng) {
        if let Phase::InFlight { deadline, .. } = self.phase
            && now >= deadline
        {
            self.push(LifecycleEvent::RequestTimedOut);
            self.fail(now, TokenFailure::Transient { retry_after: None }, rng);
        }
        if let Some(held) = &self.current
            && now >= held.usable_until
        {
            let generation = held.generation;
            self.current = None;
            self.push(LifecycleEvent::Expired(generation));
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<LifecycleEvent> {
        self.events.pop_front()
    }

    /// Whether [`poll_event`](Self::poll_event) has an event to give.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    fn push(&mut self, event: LifecycleEvent) {
        if self.events.is_full() {
            let _ = self.events.pop_front();
        }
        let _ = self.events.push_back(event);
    }
}

/// The instants governing the usable token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TokenTimes {
    /// Its generation.
    pub generation: Generation,
    /// When its refresh becomes due.
    pub refresh_at: Instant,
    /// When it stops being handed out.
    pub usable_until: Instant,
    /// When the server will stop accepting it.
    pub expires_at: Instant,
}

mod recheck;
#[cfg(test)]
mod tests;
