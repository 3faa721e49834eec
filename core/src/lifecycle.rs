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
//! - **Fatal means stop.** `invalid_client`/`unauthorized_client` move the lifecycle to
//!   [`LifecycleState::Rejected`]: no token request is made until
//!   [`Lifecycle::credentials_changed`] is called (secret rotation). Transient failures never
//!   poison it (google-cloud-rust #4541, #5864).
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
use crate::secret::AccessToken;
use crate::time::{Duration, Instant};

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
    /// A shorter one (`Retry-After: 0`) cannot bring the next request before
    /// [`min_refresh_interval`](Self::min_refresh_interval).
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

/// Why token requests were stopped for good (until credentials change).
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
    /// Token requests are stopped until the credentials change.
    Rejected {
        /// Why.
        reason: RejectReason,
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
    /// Token requests stopped until the credentials change.
    CredentialsRejected(RejectReason),
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
struct Held<const N: usize> {
    token: AccessToken<N>,
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
    /// Stopped until the credentials change.
    Rejected(RejectReason),
}

/// Capacity of the event queue; the oldest event is dropped when it overflows. One call makes at
/// most two events, and owners drain after each (the session does), so 4 is ample; every slot
/// costs 40 bytes of RAM.
pub const EVENT_CAPACITY: usize = 4;

/// The token lifecycle state machine. `N` is the token capacity in bytes.
///
/// See the [module documentation](self) for guarantees and call order.
pub struct Lifecycle<const N: usize> {
    config: LifecycleConfig,
    current: Option<Held<N>>,
    phase: Phase,
    /// Consecutive failed requests.
    failures: u32,
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
    next_ticket: u64,
    next_generation: u32,
    events: Deque<LifecycleEvent, EVENT_CAPACITY>,
}

impl<const N: usize> core::fmt::Debug for Lifecycle<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("state", &self.state(Instant::ZERO))
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl<const N: usize> Lifecycle<N> {
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
            spaced_until: Instant::ZERO,
            reauth_spaced_until: Instant::ZERO,
            reauthenticate: false,
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
    pub fn token(&self, now: Instant) -> Option<(&AccessToken<N>, Generation)> {
        match &self.current {
            Some(held) if now < held.usable_until => Some((&held.token, held.generation)),
            _ => None,
        }
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
            Phase::Rejected(reason) => LifecycleState::Rejected { reason },
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
    /// without the rest of the state (for the session's no-token answers).
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

    /// When the next token request becomes due, if none is in flight and requests are not
    /// stopped. An instant at or before `now` means "now".
    ///
    /// The latest of: the held token's refresh point (none without a token), the end of any
    /// backoff, and the spacing, [`LifecycleConfig::min_refresh_interval`] after the last
    /// request's start (after the last refresh-after-401's start when this one is such a
    /// refresh). Every path that makes a request due is bound by it.
    pub fn next_request_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle { not_before } => Some(self.due_at(not_before)),
            Phase::InFlight { .. } | Phase::Rejected(_) => None,
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
        token: AccessToken<N>,
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
        self.reauthenticate = false;
        self.phase = Phase::Idle { not_before: now };
        self.push(LifecycleEvent::TokenAcquired { generation, life, refresh_at, usable_until });
        Some(generation)
    }

    /// Reports a failed token request for `ticket`. Ignored if the ticket is not in flight.
    ///
    /// Transient and rate-limited failures schedule the next attempt (the server's
    /// `Retry-After` if given, else exponential backoff with jitter) and keep serving a usable
    /// token; fatal ones stop requests until [`credentials_changed`](Self::credentials_changed).
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
    /// was cancelled). Releases single flight at once, without backoff: nothing was learned
    /// about the server. The request may have reached the server, so the next one still waits
    /// for the spacing ([`LifecycleConfig::min_refresh_interval`] after this one's start).
    pub fn on_abandoned(&mut self, now: Instant, ticket: Ticket) {
        if self.take_in_flight(ticket).is_some() {
            self.phase = Phase::Idle { not_before: now };
        }
    }

    fn fail(&mut self, now: Instant, failure: TokenFailure, rng: &mut Rng) {
        if let TokenFailure::Fatal(reason) = failure {
            self.phase = Phase::Rejected(reason);
            self.push(LifecycleEvent::CredentialsRejected(reason));
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let backoff = self.config.retry_delay(self.failures, rng);
        let wait = match failure {
            TokenFailure::Transient { retry_after: Some(ra) }
            | TokenFailure::RateLimited { retry_after: Some(ra) } => {
                ra.min(self.config.max_server_wait)
            }
            _ => backoff,
        };
        let not_before = now.saturating_add(wait);
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
    /// any rejection, and make a request due as soon as the spacing allows. A request still in
    /// flight is disowned: its outcome, obtained with the old credentials, will be ignored.
    ///
    /// A credential change does not go early: the next request waits until
    /// [`LifecycleConfig::min_refresh_interval`] after the last one's start (at most that long,
    /// 1 s by default), so an application that reloads its secret in a loop cannot make the
    /// lifecycle storm the token endpoint either.
    pub fn credentials_changed(&mut self, now: Instant) {
        self.current = None;
        self.failures = 0;
        self.reauthenticate = false;
        self.phase = Phase::Idle { not_before: now };
    }

    /// Installs a token obtained elsewhere (restored from a sealed snapshot, or shared by a
    /// fleet) that expires at `expires_at`. Its refresh point is computed as if its remaining
    /// life were its whole life. Ignored while requests are stopped by a rejection or when the
    /// token is already unusable; a request in flight stays in flight and its answer still counts.
    ///
    /// Returns the generation given to it.
    pub fn install(
        &mut self,
        now: Instant,
        token: AccessToken<N>,
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
            self.phase = Phase::Idle { not_before: now };
        }
        self.push(LifecycleEvent::TokenAcquired { generation, life, refresh_at, usable_until });
        Some(generation)
    }

    /// The current token with its absolute expiry, for sealing into a snapshot.
    pub fn current(&self, now: Instant) -> Option<(&AccessToken<N>, Instant)> {
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
            Phase::Idle { .. } => self.next_request_at().map(|at| (at, Wake::RequestDue)),
            Phase::Rejected(_) => None,
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

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;
    use std::vec::Vec;

    type Lc = Lifecycle<64>;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }
    fn s(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }
    fn tok(v: &str) -> AccessToken<64> {
        AccessToken::new(v).unwrap()
    }
    /// No jitter, so instants are exact.
    fn exact() -> LifecycleConfig {
        LifecycleConfig { refresh_jitter_permille: 0, ..LifecycleConfig::default() }
    }

    /// A lifecycle holding a 300 s token acquired by a request sent at `sent`, answered 2 s later.
    fn holding_300s(sent: Instant) -> (Lc, Rng, Generation) {
        let mut lc = Lc::new(exact()).unwrap();
        let mut rng = Rng::new(1);
        let ticket = lc.start_request(sent).unwrap();
        let at = sent + Duration::from_secs(2);
        let g = lc.on_success(at, ticket, tok("A"), Duration::from_secs(300), &mut rng).unwrap();
        (lc, rng, g)
    }

    #[test]
    fn first_request_is_due_at_once_and_single_flight() {
        let mut lc = Lc::new(exact()).unwrap();
        assert_eq!(lc.state(s(0)), LifecycleState::NoToken { next_attempt: Instant::ZERO });
        let ticket = lc.start_request(s(0)).unwrap();
        assert_eq!(lc.start_request(s(0)), None, "never two requests in flight");
        assert_eq!(lc.start_request(s(29)), None);
        assert_eq!(lc.state(s(1)), LifecycleState::Acquiring);
        assert!(lc.token(s(1)).is_none());
        let _ = ticket;
    }

    #[test]
    fn refresh_at_margin_and_expiry_anchored_to_send_time() {
        // Sent at 10 s, answered at 12 s, life 300 s: expires at 310 s (not 312 s), refresh
        // 60 s before expiry at 250 s, stop handing out 5 s before expiry at 305 s.
        let (mut lc, _, g) = holding_300s(s(10));
        let times = lc.token_times(s(12)).unwrap();
        assert_eq!(times.expires_at, s(310));
        assert_eq!(times.refresh_at, s(250));
        assert_eq!(times.usable_until, s(305));
        assert_eq!(lc.start_request(s(250) - Duration::from_millis(1)), None, "T-1: not due");
        assert_eq!(lc.token(t(304_999)).map(|(_, g)| g), Some(g), "T-1: still usable");
        assert_eq!(lc.token(s(305)), None, "T: never handed out at usable-until");
        assert!(lc.start_request(s(250)).is_some(), "T: refresh due");
        assert_eq!(lc.state(s(251)), LifecycleState::Refreshing { generation: g });
        assert!(lc.token(s(251)).is_some(), "old token served while refreshing");
    }

    #[test]
    fn short_tokens_refresh_at_a_fraction_of_life() {
        let cfg = LifecycleConfig::default();
        assert_eq!(cfg.refresh_offset(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(cfg.refresh_offset(Duration::from_secs(61)), Duration::from_millis(30_500));
        assert_eq!(cfg.refresh_offset(Duration::from_secs(300)), Duration::from_secs(240));
        // Long tokens: never later than 90 % of life.
        assert_eq!(cfg.refresh_offset(Duration::from_secs(86_400)), Duration::from_secs(77_760));
        assert_eq!(cfg.safety(Duration::from_secs(2)), Duration::from_millis(200));
        assert_eq!(cfg.refresh_offset(Duration::ZERO), Duration::ZERO);
    }

    /// Driven as an adapter drives it: the expiry wake comes at once and is handled, and the
    /// dropped token must not make the next request due before the spacing.
    #[test]
    fn zero_life_cannot_drive_a_request_loop() {
        let mut lc = Lc::new(exact()).unwrap();
        let mut rng = Rng::new(3);
        let ticket = lc.start_request(s(0)).unwrap();
        let g = lc.on_success(t(5), ticket, tok("Z"), Duration::ZERO, &mut rng).unwrap();
        assert!(lc.token(t(5)).is_none(), "a token with no life is never handed out");
        assert_eq!(lc.poll_timeout(), Some((s(0), Wake::TokenExpiry)));
        lc.handle_timeout(t(5), &mut rng);
        let events: Vec<_> = core::iter::from_fn(|| lc.poll_event()).collect();
        assert_eq!(events.last(), Some(&LifecycleEvent::Expired(g)));
        assert_eq!(lc.state(t(5)), LifecycleState::NoToken { next_attempt: s(1) });
        assert_eq!(lc.poll_timeout(), Some((s(1), Wake::RequestDue)), "says until when");
        assert_eq!(lc.start_request(t(5)), None);
        assert_eq!(lc.start_request(t(999)), None, "T-1");
        assert!(lc.start_request(s(1)).is_some(), "T: min_refresh_interval after the last start");
    }

    /// Every path that makes a request due waits for the spacing: a failure the server asks to
    /// retry at once, an abandoned request, a credential change.
    #[test]
    fn every_path_to_a_due_request_keeps_the_spacing() {
        let mut rng = Rng::new(3);
        let retry_now = [
            TokenFailure::Transient { retry_after: Some(Duration::ZERO) },
            TokenFailure::RateLimited { retry_after: Some(Duration::ZERO) },
        ];
        for failure in retry_now {
            let mut lc = Lc::new(exact()).unwrap();
            let ticket = lc.start_request(s(10)).unwrap();
            lc.on_failure(t(10_010), ticket, failure, &mut rng);
            assert_eq!(
                lc.poll_event(),
                Some(LifecycleEvent::RequestFailed {
                    failure,
                    failures: 1,
                    next_attempt: s(11),
                    serving_stale: false,
                }),
                "the event says until when"
            );
            assert_eq!(lc.next_request_at(), Some(s(11)));
            assert_eq!(lc.start_request(t(10_999)), None, "T-1");
            assert!(lc.start_request(s(11)).is_some(), "T");
        }

        let mut lc = Lc::new(exact()).unwrap();
        let ticket = lc.start_request(s(10)).unwrap();
        lc.on_abandoned(t(10_010), ticket);
        assert_eq!(lc.start_request(t(10_999)), None, "abandoned: T-1");
        assert!(lc.start_request(s(11)).is_some(), "abandoned: T");

        // A credential change does not go early either (a secret reloaded in a loop).
        let mut lc = Lc::new(exact()).unwrap();
        let _ticket = lc.start_request(s(10)).unwrap();
        lc.credentials_changed(t(10_010));
        assert_eq!(lc.state(t(10_010)), LifecycleState::NoToken { next_attempt: s(11) });
        assert_eq!(lc.start_request(t(10_999)), None, "rotated: T-1");
        let _ticket = lc.start_request(s(11)).unwrap();
        lc.credentials_changed(s(11));
        assert_eq!(lc.start_request(t(11_999)), None, "rotated twice: T-1");
        assert!(lc.start_request(s(12)).is_some(), "rotated twice: T");
    }

    /// The one exception: the refresh after a 401 goes at once, but only once per interval, so
    /// a server that refuses every fresh token cannot chain early refreshes.
    #[test]
    fn one_early_refresh_per_interval_after_a_401() {
        let mut lc = Lc::new(exact()).unwrap();
        let mut rng = Rng::new(3);
        let life = Duration::from_secs(300);
        let ticket = lc.start_request(s(0)).unwrap();
        let g1 = lc.on_success(t(10), ticket, tok("A"), life, &mut rng).unwrap();
        assert!(lc.invalidate(t(20), g1));
        let ticket = lc.start_request(t(20)).expect("the refresh after a 401 goes at once");
        let g2 = lc.on_success(t(30), ticket, tok("B"), life, &mut rng).unwrap();
        // The fresh token is refused too: its refresh waits for the spacing of early ones.
        assert!(lc.invalidate(t(40), g2));
        assert_eq!(lc.state(t(40)), LifecycleState::NoToken { next_attempt: t(1020) });
        assert_eq!(lc.poll_timeout(), Some((t(1020), Wake::RequestDue)));
        assert_eq!(lc.start_request(t(1019)), None, "T-1");
        let ticket = lc.start_request(t(1020)).expect("T");
        let g3 = lc.on_success(t(1030), ticket, tok("C"), life, &mut rng).unwrap();
        assert!(lc.invalidate(t(1040), g3));
        assert_eq!(lc.start_request(t(2019)), None, "one per interval, however often refused");
        assert!(lc.start_request(t(2020)).is_some());

        // A backoff in force is not skipped by a 401.
        let mut lc = Lc::new(exact()).unwrap();
        let ticket = lc.start_request(s(0)).unwrap();
        let g = lc.on_success(t(10), ticket, tok("A"), life, &mut rng).unwrap();
        let ticket = lc.start_request(s(240)).unwrap();
        let wait = Duration::from_secs(30);
        lc.on_failure(
            s(241),
            ticket,
            TokenFailure::RateLimited { retry_after: Some(wait) },
            &mut rng,
        );
        assert!(lc.invalidate(s(242), g));
        assert_eq!(lc.next_request_at(), Some(s(271)));
    }

    #[test]
    fn jitter_spreads_a_fleet_but_stays_within_the_margin() {
        let cfg = LifecycleConfig::default();
        let mut seen = Vec::new();
        for seed in 0..50 {
            let mut lc = Lc::new(cfg).unwrap();
            let mut rng = Rng::new(seed);
            let ticket = lc.start_request(s(0)).unwrap();
            lc.on_success(s(0), ticket, tok("A"), Duration::from_secs(300), &mut rng).unwrap();
            let r = lc.token_times(s(0)).unwrap().refresh_at;
            // Refresh between 210 s (240 - 50 % of the 60 s margin) and 240 s.
            assert!(r > s(210) && r <= s(240), "{r}");
            seen.push(r);
        }
        seen.sort();
        seen.dedup();
        assert!(seen.len() > 40, "instances spread their refreshes");
    }

    #[test]
    fn failed_refresh_keeps_serving_the_old_token_with_backoff() {
        let (mut lc, mut rng, g) = holding_300s(s(0));
        let ticket = lc.start_request(s(240)).unwrap();
        lc.on_failure(s(241), ticket, TokenFailure::Transient { retry_after: None }, &mut rng);
        let LifecycleState::BackingOff { next_attempt, failures: 1, serving: true } =
            lc.state(s(241))
        else {
            panic!("{:?}", lc.state(s(241)));
        };
        // Equal jitter: between 0.5 s and 1 s after the failure.
        assert!(next_attempt >= t(241_500) && next_attempt <= s(242), "{next_attempt}");
        assert_eq!(lc.token(s(241)).map(|(_, g)| g), Some(g));
        assert_eq!(lc.start_request(next_attempt - Duration::from_millis(1)), None);
        let ticket = lc.start_request(next_attempt).unwrap();
        lc.on_failure(
            next_attempt,
            ticket,
            TokenFailure::RateLimited { retry_after: Some(Duration::from_secs(30)) },
            &mut rng,
        );
        assert_eq!(lc.next_request_at(), Some(next_attempt + Duration::from_secs(30)));
        // Past usable-until the old token is gone, never served.
        lc.handle_timeout(s(295), &mut rng);
        assert!(lc.token(s(295)).is_none());
        let events: Vec<_> = core::iter::from_fn(|| lc.poll_event()).collect();
        assert!(
            events.iter().any(|e| matches!(e, LifecycleEvent::RequestFailed { failures: 1, .. }))
        );
        assert_eq!(events.last(), Some(&LifecycleEvent::Expired(g)));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = exact();
        let mut rng = Rng::new(9);
        for failures in 1..80 {
            let d = cfg.retry_delay(failures, &mut rng);
            assert!(d <= cfg.retry_cap, "{failures}: {d}");
            assert!(d >= cfg.retry_base.mul_ratio(1, 2));
        }
        assert!(cfg.retry_delay(7, &mut rng) >= Duration::from_secs(30));
    }

    /// Equal jitter on odd ceilings: the fixed half rounds down, the random half covers the
    /// rest up to the ceiling inclusive.
    #[test]
    fn backoff_halves_an_odd_ceiling_downwards() {
        let mut rng = Rng::new(3);
        for (ceiling, lowest) in [(1, 0), (3, 1), (5, 2)] {
            let cfg = LifecycleConfig {
                retry_base: Duration::from_millis(ceiling),
                retry_cap: Duration::from_millis(ceiling),
                ..exact()
            };
            let mut seen = std::vec::Vec::new();
            for _ in 0..200 {
                let d = cfg.retry_delay(1, &mut rng).as_millis();
                if !seen.contains(&d) {
                    seen.push(d);
                }
            }
            seen.sort_unstable();
            assert_eq!(seen, (lowest..=ceiling).collect::<std::vec::Vec<_>>(), "{ceiling}");
        }
    }

    #[test]
    fn invalidate_only_drops_the_rejected_generation() {
        let (mut lc, mut rng, g1) = holding_300s(s(0));
        assert!(lc.invalidate(s(10), g1));
        assert!(lc.token(s(10)).is_none());
        assert!(!lc.invalidate(s(10), g1), "repeated invalidation is harmless");
        let ticket = lc.start_request(s(10)).expect("refresh due at once after a 401");
        let g2 =
            lc.on_success(s(11), ticket, tok("B"), Duration::from_secs(300), &mut rng).unwrap();
        assert!(g2 > g1);
        assert!(!lc.invalidate(s(12), g1), "a late 401 for the old token keeps the new one");
        assert_eq!(lc.token(s(12)).map(|(t, g)| (t.as_str(), g)), Some(("B", g2)));
    }

    #[test]
    fn invalidate_while_refreshing_keeps_the_request_and_drops_the_token() {
        let (mut lc, mut rng, g1) = holding_300s(s(0));
        let ticket = lc.start_request(s(240)).unwrap();
        assert!(lc.invalidate(s(241), g1));
        assert_eq!(lc.state(s(241)), LifecycleState::Acquiring);
        assert_eq!(lc.start_request(s(241)), None, "still single flight");
        assert!(
            lc.on_success(s(242), ticket, tok("B"), Duration::from_secs(300), &mut rng).is_some()
        );
    }

    #[test]
    fn invalid_client_stops_until_credentials_change() {
        let mut lc = Lc::new(exact()).unwrap();
        let mut rng = Rng::new(1);
        assert_eq!(lc.rejected(), None);
        let ticket = lc.start_request(s(0)).unwrap();
        assert_eq!(lc.rejected(), None, "in flight is not rejected");
        lc.on_failure(s(0), ticket, TokenFailure::Fatal(RejectReason::InvalidClient), &mut rng);
        assert_eq!(lc.rejected(), Some(RejectReason::InvalidClient));
        assert_eq!(
            lc.state(s(0)),
            LifecycleState::Rejected { reason: RejectReason::InvalidClient }
        );
        assert_eq!(
            lc.poll_event(),
            Some(LifecycleEvent::CredentialsRejected(RejectReason::InvalidClient))
        );
        for secs in [1, 60, 3600, 86_400] {
            assert_eq!(lc.start_request(s(secs)), None, "no retry loop with a wrong secret");
        }
        assert_eq!(lc.poll_timeout(), None);
        lc.credentials_changed(s(100_000));
        assert_eq!(lc.rejected(), None);
        assert!(lc.start_request(s(100_000)).is_some());
    }

    #[test]
    fn stale_and_late_outcomes_are_ignored() {
        let mut lc = Lc::new(exact()).unwrap();
        let mut rng = Rng::new(1);
        let old = lc.start_request(s(0)).unwrap();
        lc.credentials_changed(s(1)); // disowns `old`
        let new = lc.start_request(s(1)).unwrap();
        assert_eq!(lc.on_success(s(2), old, tok("OLD"), Duration::from_secs(300), &mut rng), None);
        lc.on_failure(s(2), old, TokenFailure::Fatal(RejectReason::InvalidClient), &mut rng);
        assert_eq!(lc.state(s(2)), LifecycleState::Acquiring);
        lc.on_success(s(3), new, tok("NEW"), Duration::from_secs(300), &mut rng).unwrap();
        assert_eq!(lc.token(s(3)).map(|(t, _)| t.as_str()), Some("NEW"));
    }

    #[test]
    fn overdue_request_is_abandoned_not_wedged() {
        let mut lc = Lc::new(exact()).unwrap();
        let mut rng = Rng::new(1);
        let ticket = lc.start_request(s(0)).unwrap();
        assert_eq!(lc.poll_timeout(), Some((s(30), Wake::RequestTimeout)));
        lc.handle_timeout(t(29_999), &mut rng);
        assert!(lc.in_flight(), "T-1: still waiting");
        lc.handle_timeout(s(30), &mut rng);
        assert!(!lc.in_flight(), "T: abandoned");
        assert_eq!(lc.poll_event(), Some(LifecycleEvent::RequestTimedOut));
        // The late answer for the abandoned ticket is ignored.
        assert_eq!(
            lc.on_success(s(31), ticket, tok("L"), Duration::from_secs(300), &mut rng),
            None
        );
    }

    #[test]
    fn abandoned_request_releases_single_flight_without_backoff() {
        let mut lc = Lc::new(exact()).unwrap();
        let ticket = lc.start_request(s(0)).unwrap();
        lc.on_abandoned(s(1), ticket);
        assert!(lc.start_request(s(1)).is_some());
    }

    #[test]
    fn install_serves_a_restored_token_and_plans_its_refresh() {
        let mut lc = Lc::new(exact()).unwrap();
        let mut rng = Rng::new(1);
        let g = lc.install(s(0), tok("R"), s(300), &mut rng).unwrap();
        assert_eq!(lc.token(s(1)).map(|(_, g)| g), Some(g));
        assert_eq!(lc.token_times(s(0)).unwrap().refresh_at, s(240));
        assert_eq!(lc.install(s(0), tok("X"), s(0), &mut rng), None, "expired tokens refused");
    }

    #[test]
    fn poll_timeout_names_the_earliest_deadline() {
        let (lc, _, _) = holding_300s(s(0));
        assert_eq!(lc.poll_timeout(), Some((s(240), Wake::RequestDue)));
        let (mut lc, _, _) = holding_300s(s(0));
        let _ticket = lc.start_request(s(240)).unwrap();
        assert_eq!(lc.poll_timeout(), Some((s(270), Wake::RequestTimeout)));
        // The token stops being usable at 295 s: a request timing out later wakes for the
        // expiry first; one timing out at the same instant wins the tie.
        let (lc, _, _) = holding_300s(s(0));
        assert_eq!(lc.token_times(s(0)).unwrap().usable_until, s(295));
        for (sent, wake) in [
            (s(264), (s(294), Wake::RequestTimeout)),
            (s(265), (s(295), Wake::RequestTimeout)),
            (s(266), (s(295), Wake::TokenExpiry)),
        ] {
            let (mut lc, _, _) = holding_300s(s(0));
            let _ticket = lc.start_request(sent).unwrap();
            assert_eq!(lc.poll_timeout(), Some(wake), "{sent}");
        }
        // Rejected while a token is still usable: only its expiry is left to wake for.
        let (mut lc, mut rng, _) = holding_300s(s(0));
        let ticket = lc.start_request(s(240)).unwrap();
        lc.on_failure(s(241), ticket, TokenFailure::Fatal(RejectReason::InvalidClient), &mut rng);
        assert_eq!(lc.poll_timeout(), Some((s(295), Wake::TokenExpiry)));
    }

    #[test]
    fn config_validation() {
        assert!(LifecycleConfig::default().validate().is_ok());
        let bad = LifecycleConfig { refresh_jitter_permille: 600, ..LifecycleConfig::default() };
        assert_eq!(bad.validate(), Err(ConfigError::JitterTooLarge));
        let bad = LifecycleConfig { min_refresh_permille: 950, ..LifecycleConfig::default() };
        assert_eq!(bad.validate(), Err(ConfigError::RefreshFractions));
        let bad = LifecycleConfig { retry_base: Duration::ZERO, ..LifecycleConfig::default() };
        assert!(Lc::new(bad).is_err());
    }

    /// Operations a caller (or a hostile scheduler) can perform, in any order.
    #[derive(Clone, Debug)]
    enum Op {
        Advance(u64),
        Start,
        Succeed {
            life_s: u64,
        },
        Fail(u8),
        Abandon,
        Invalidate {
            back: u32,
        },
        Timeout,
        /// The adapter sleeps until the next deadline, handles it and starts what is due.
        SleepToDeadline,
        CredentialsChanged,
        Use,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..120_000).prop_map(Op::Advance),
            3 => Just(Op::Start),
            2 => prop_oneof![Just(0u64), 0u64..3, 0u64..400].prop_map(|life_s| Op::Succeed { life_s }),
            2 => any::<u8>().prop_map(Op::Fail),
            1 => Just(Op::Abandon),
            2 => (0u32..3).prop_map(|back| Op::Invalidate { back }),
            2 => Just(Op::Timeout),
            3 => Just(Op::SleepToDeadline),
            1 => Just(Op::CredentialsChanged),
            4 => Just(Op::Use),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Against a reference model of what was acquired and when: never an expired token,
        /// never two requests in flight, never a panic, and outcomes only for the live ticket.
        /// And whatever the lifetimes, failures and timeouts: no two requests start closer than
        /// `min_refresh_interval`, but for one refresh after a 401 per interval.
        #[test]
        fn never_expired_never_two_in_flight(ops in proptest::collection::vec(op(), 1..200), seed: u64) {
            let config = LifecycleConfig::default();
            let min = config.min_refresh_interval;
            let mut lc = Lifecycle::<16>::new(config).unwrap();
            let mut rng = Rng::new(seed);
            let mut now = Instant::ZERO;
            // Model: tickets outstanding, and the absolute expiry of every token by its value.
            let mut outstanding: Option<(Ticket, Instant)> = None;
            let mut expiries: Vec<(std::string::String, Instant)> = Vec::new();
            let mut counter = 0u32;
            // Model of the spacing: the last start, the last start that came early (closer
            // than `min` to the one before), and whether a 401 dropped a token since the last
            // start (with no token or credential change since).
            let mut last_start: Option<Instant> = None;
            let mut last_early: Option<Instant> = None;
            let mut refused_since_start = false;
            let mut start = |lc: &mut Lifecycle<16>, now: Instant, outstanding: &mut Option<(Ticket, Instant)>, refused: &mut bool| {
                let Some(ticket) = lc.start_request(now) else { return Ok(()) };
                prop_assert!(outstanding.is_none(), "two requests in flight");
                *outstanding = Some((ticket, now));
                if let Some(gap) = last_start.map(|at| now.saturating_duration_since(at)) && gap < min {
                    prop_assert!(*refused, "two requests {gap} apart, no 401 between them");
                    prop_assert!(
                        last_early.is_none_or(|at| now.saturating_duration_since(at) >= min),
                        "two early refreshes within {min}"
                    );
                    last_early = Some(now);
                }
                last_start = Some(now);
                *refused = false;
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Advance(ms) => now = now + Duration::from_millis(ms),
                    Op::Start => start(&mut lc, now, &mut outstanding, &mut refused_since_start)?,
                    Op::Succeed { life_s } => {
                        if let Some((ticket, sent)) = outstanding.take() {
                            counter += 1;
                            let value = std::format!("tok{counter}");
                            let life = Duration::from_secs(life_s);
                            if lc.on_success(now, ticket, tok16(&value), life, &mut rng).is_some() {
                                expiries.push((value, sent + life));
                                refused_since_start = false;
                            }
                        }
                    }
                    Op::Fail(kind) => {
                        if let Some((ticket, _)) = outstanding.take() {
                            let failure = match kind % 5 {
                                0 => TokenFailure::Transient { retry_after: None },
                                1 => TokenFailure::RateLimited { retry_after: Some(Duration::from_millis(u64::from(kind) * 100)) },
                                2 => TokenFailure::Transient { retry_after: Some(Duration::MAX) },
                                3 => TokenFailure::Transient { retry_after: Some(Duration::ZERO) },
                                _ => TokenFailure::Fatal(RejectReason::InvalidClient),
                            };
                            lc.on_failure(now, ticket, failure, &mut rng);
                        }
                    }
                    Op::Abandon => {
                        if let Some((ticket, _)) = outstanding.take() {
                            lc.on_abandoned(now, ticket);
                        }
                    }
                    Op::Invalidate { back } => {
                        if let Some((_, g)) = lc.token(now)
                            && lc.invalidate(now, Generation(g.0.saturating_sub(back)))
                        {
                            refused_since_start = true;
                        }
                    }
                    Op::Timeout => lc.handle_timeout(now, &mut rng),
                    Op::SleepToDeadline => {
                        if let Some((at, _)) = lc.poll_timeout() {
                            now = now.max(at);
                        }
                        lc.handle_timeout(now, &mut rng);
                        if !lc.in_flight() {
                            outstanding = None;
                        }
                        start(&mut lc, now, &mut outstanding, &mut refused_since_start)?;
                    }
                    Op::CredentialsChanged => {
                        lc.credentials_changed(now);
                        outstanding = None; // disowned
                        refused_since_start = false;
                    }
                    Op::Use => {}
                }
                // If the lifecycle no longer considers the model's ticket in flight (timeout),
                // the model forgets it too.
                if !lc.in_flight() {
                    outstanding = None;
                }
                if let Some((token, _)) = lc.token(now) {
                    let expiry = expiries.iter().find(|(v, _)| v == token.as_str()).map(|(_, e)| *e);
                    prop_assert!(expiry.is_some(), "served a token never acquired");
                    prop_assert!(now < expiry.unwrap_or(Instant::ZERO), "served an expired token at {now}");
                }
                // The session's shortcut to the rejected state agrees with the state.
                let rejected = match lc.state(now) {
                    LifecycleState::Rejected { reason } => Some(reason),
                    _ => None,
                };
                prop_assert_eq!(lc.rejected(), rejected);
                if let Some((at, _)) = lc.poll_timeout() {
                    let _ = at; // any instant is fine; must not panic
                }
                while lc.poll_event().is_some() {}
            }
        }
    }

    fn tok16(v: &str) -> AccessToken<16> {
        AccessToken::new(v).unwrap()
    }
}
