//! Pacing: spreading the requests a server still allows over the time it allows them in.
//!
//! The reference guide scales worker pools by a step function of utilisation (30 %, 70 %, 100 %;
//! kept as [`concurrency_multiplier_permille`]). That still sends in bursts: the quota goes in
//! the first seconds of a window, the rest of the window is spent on 429s. A [`Pacer`] instead
//! answers, for each request, "now" or "not before T", from the latest [`RateLimitSnapshot`]:
//!
//! - **Spacing** (GCRA, as in governor): after each send the next may follow one *emission
//!   interval* later, `time_to_reset / (remaining + 1)`, so that the remaining quota lasts until
//!   the reset; `burst` sends may go back-to-back first (tolerance `(burst - 1) × interval`).
//!   The interval is recomputed at every send and observation, so it follows what other clients
//!   sharing the quota consume.
//! - **Reserve by priority.** [`Priority::Normal`] leaves `critical_reserve_permille` of the limit
//!   to [`Priority::Critical`], and [`Priority::Background`] also leaves
//!   `background_floor_permille` to the others. A reserve only matters for the time left in the
//!   window: the amount held back is `ceil(share × limit × min(time_to_reset, window) / window)`,
//!   shrinking linearly to zero at the reset, so what no higher priority can use before the reset
//!   is not wasted (a flat 10 % reserve would cap utilisation at 90 %), while Critical traffic
//!   spread over the window at up to `share × limit` per window still finds room.
//! - **Other clients.** Processes that share a client id share its limit, and a pacer sees only
//!   its own sends. When the server's `remaining` falls faster than those sends explain, the
//!   difference is what the others use; its rate (averaged over observations) is held back like
//!   a reserve, shrinking to zero at the reset, so a fleet of independent pods does not spend
//!   the window's last requests twice.
//! - **Exhausted**: with nothing left, everyone waits for the reset. When the reset passes with
//!   no new information, a full window of `limit` is assumed.
//! - **429**: after a `Retry-After`, nobody sends before it ends, Critical included (the server
//!   does not know priorities). A 429 without `Retry-After` marks the window exhausted, or pauses
//!   everyone for one second when there is no window to exhaust.
//!
//! With no snapshot yet every check answers [`Pace::Now`]: the pacer never invents a limit.
//!
//! # Reconciling snapshots with local sends
//!
//! Responses arrive late and out of order: a snapshot was true when the server counted its
//! request, not when it is read, and requests sent since may or may not be in it. Within one
//! window the pacer therefore keeps the *smaller* of the server's `remaining` and its own
//! estimate (which subtracted every local send); a snapshot whose reset is later than the
//! current window's (by more than the 1 s rounding of whole-second headers) starts a new window,
//! and its `remaining` is taken as is.
//!
//! # Contract
//!
//! `check` is exact, like governor's `NotUntil`: if it answers `NotBefore { at }` then, absent new
//! inputs, it answers [`Pace::Now`] at `at` and `NotBefore` at `at - 1 ms`. Admitted sends never
//! exceed the server's `remaining`. After a reset the pacer assumes at least one request is
//! allowed, even of a server that said "limit 0", so that it learns when that changes.
//!
//! ```
//! use credflow_core::ratelimit::pacer::{Pace, PaceReason, Pacer, PacerConfig, Priority};
//! use credflow_core::ratelimit::{Dialect, RateLimitSnapshot};
//! use credflow_core::{Duration, Instant};
//!
//! let mut pacer = Pacer::new(PacerConfig { burst: 1, burst_permille: 0, ..PacerConfig::default() });
//! let t0 = Instant::from_secs(10);
//! let snapshot = RateLimitSnapshot {
//!     limit: Some(60),
//!     remaining: Some(60),
//!     reset_after: Some(Duration::from_secs(60)),
//!     window: Some(Duration::from_secs(60)),
//!     dialect: Dialect::IetfStructured,
//! };
//! pacer.observe(t0, &snapshot);
//! assert_eq!(pacer.check(t0, Priority::Normal), Pace::Now);
//! pacer.on_send(t0, Priority::Normal);
//! // 59 left for 60 s: one a second.
//! let next = t0 + Duration::from_secs(1);
//! assert_eq!(pacer.check(t0, Priority::Normal), Pace::NotBefore { at: next, reason: PaceReason::Spacing });
//! assert_eq!(pacer.check(t0, Priority::Critical), Pace::Now);
//! ```

use core::fmt;

mod scope;

pub use scope::RateLimitScope;

use super::RateLimitSnapshot;
use crate::lifecycle::Generation;
use crate::time::{Duration, Instant, div_rem, mul_div, mul_sat};

/// How long everyone waits after a 429 that said neither when to retry nor when the window resets.
const UNKNOWN_429_PAUSE: Duration = Duration::from_secs(1);

/// How far apart two resets may be and still name the same window (whole-second rounding).
const SAME_WINDOW_SLACK: Duration = Duration::from_secs(1);

/// How urgent a request is. Ordered from most to least urgent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Priority {
    /// Must go if anything can (token refresh, call control): not spaced, may use the reserve.
    Critical,
    /// Ordinary traffic: spaced, leaves the critical reserve.
    Normal,
    /// Deferrable work (reports, syncs): spaced, leaves the reserve and the background floor.
    Background,
}

/// The furthest reset of a rate-limit window the pacer believes, and its longest window: a day,
/// a daily quota's ([`RateLimitSnapshot::believed`]). A snapshot whose reset is further is paced
/// as if its reset were unknown (one window of [`PacerConfig::default_window`], or the window it
/// names); a window named longer is read as unknown too (the known one, else the default).
pub const MAX_RESET: Duration = Duration::from_secs(86_400);

/// Configuration of a [`Pacer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct PacerConfig {
    /// Share of the limit, in thousandths, that only [`Priority::Critical`] may use (shrinking
    /// to zero at the reset). Default 100 (10 %).
    pub critical_reserve_permille: u16,
    /// Share of the limit, in thousandths, that [`Priority::Background`] leaves to the others
    /// (shrinking to zero at the reset). Default 300 (30 %).
    pub background_floor_permille: u16,
    /// Sends allowed back-to-back before spacing applies (0 counts as 1). Default 4.
    pub burst: u32,
    /// A larger burst while the quota is plentiful: this share of the remaining requests, in
    /// thousandths, may go back-to-back (default 100 = 10 %). A client far below its limit is
    /// then not slowed down at all, while one that keeps sending is spread over the window.
    /// Zero keeps the burst at `burst`.
    pub burst_permille: u16,
    /// Window length assumed when a server states neither the window nor the reset. Default 60 s
    /// (per-minute limits are the common case, Genesys Cloud's among them).
    pub default_window: Duration,
    /// What the server counts its limit per, and so what a token change does to the window;
    /// see [`RateLimitScope`]. Default [`RateLimitScope::Auto`]: told from the headers.
    #[cfg(feature = "rate-limit-scope")]
    pub scope: RateLimitScope,
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig {
            critical_reserve_permille: 100,
            background_floor_permille: 300,
            burst: 4,
            burst_permille: 100,
            default_window: Duration::from_secs(60),
            #[cfg(feature = "rate-limit-scope")]
            scope: RateLimitScope::Auto,
        }
    }
}

impl PacerConfig {
    /// Checks the configuration once, where it is built. Every configuration is safe to use
    /// (shares are capped at 999 ‰, a zero burst or window counts as 1); these are the likely
    /// mistakes.
    pub fn validate(&self) -> Result<(), PacerConfigError> {
        let too_large = |field, permille| PacerConfigError::ShareTooLarge { field, permille };
        if self.critical_reserve_permille >= 1000 {
            Err(too_large("critical_reserve_permille", self.critical_reserve_permille))
        } else if self.background_floor_permille >= 1000 {
            Err(too_large("background_floor_permille", self.background_floor_permille))
        } else if self.burst_permille >= 1000 {
            Err(too_large("burst_permille", self.burst_permille))
        } else if self.burst == 0 {
            Err(PacerConfigError::ZeroBurst)
        } else if self.default_window.is_zero() {
            Err(PacerConfigError::ZeroWindow)
        } else {
            Ok(())
        }
    }
}

/// A [`PacerConfig`] that is almost certainly a mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PacerConfigError {
    /// A reserve or floor of 1000 ‰ or more would starve the priorities below it.
    ShareTooLarge {
        /// The share's field (`critical_reserve_permille`, `background_floor_permille` or
        /// `burst_permille`).
        field: &'static str,
        /// The configured share.
        permille: u16,
    },
    /// A burst of zero: one is used.
    ZeroBurst,
    /// A zero default window: the pacer would assume quotas refill every millisecond.
    ZeroWindow,
}

impl fmt::Display for PacerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacerConfigError::ShareTooLarge { field, permille } => write!(
                f,
                "pacer {field} {permille}\u{2030} leaves nothing to lower priorities: use less than 1000"
            ),
            PacerConfigError::ZeroBurst => {
                f.write_str("pacer burst is zero: use 1 for strict spacing")
            }
            PacerConfigError::ZeroWindow => {
                f.write_str("pacer default window is zero: quotas would refill every millisecond")
            }
        }
    }
}

impl core::error::Error for PacerConfigError {}

/// Why a request must wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum PaceReason {
    /// Spreading the remaining quota evenly until the reset.
    Spacing,
    /// What is left is held back for higher priorities.
    Reserve,
    /// Nothing is left until the reset.
    Exhausted,
    /// The server answered 429 and said how long to wait.
    Backoff429,
}

/// The answer of [`Pacer::check`].
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Pace {
    /// Send now (then call [`Pacer::on_send`]).
    Now,
    /// Do not send before `at` (always later than the `now` checked).
    NotBefore {
        /// The earliest instant the same check answers [`Pace::Now`].
        at: Instant,
        /// What holds the request back at `at - 1 ms`.
        reason: PaceReason,
    },
}

/// What the pacer believes about the current window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    /// Requests per window (at least `remaining` when observed).
    limit: u64,
    /// Requests left, after every local send.
    remaining: u64,
    /// When the quota is replenished.
    reset_at: Instant,
    /// Window length, at least 1 ms.
    length: Duration,
    /// GCRA theoretical arrival time of the next spaced send.
    tat: Instant,
    /// Emission interval computed at the last update.
    interval: Duration,
    /// When the server's `remaining` was last observed.
    observed_at: Instant,
}

impl Window {
    /// Brings the window to `now`: if the reset has passed, a fresh one of `limit` (at least
    /// one request, so that a client told "limit 0" still learns when that changes), aligned on
    /// whole windows after the known reset, with no spacing history. In place: a window still
    /// current is left alone, not copied.
    fn roll(&mut self, now: Instant) {
        let Some(late) = now.checked_duration_since(self.reset_at) else {
            return;
        };
        let length = self.length.max(Duration::from_millis(1));
        let windows =
            div_rem(late.as_millis(), length.as_millis()).map_or(0, |(q, _)| q).saturating_add(1);
        self.remaining = self.limit.max(1);
        self.reset_at = self.reset_at.saturating_add(length.saturating_mul(windows));
        self.tat = Instant::ZERO;
        self.interval = Duration::ZERO;
        self.observed_at = now;
    }

    /// Requests `priority` must leave for others at `now` (`now` before the reset), and the share
    /// of the limit it is computed from.
    fn held_back(&self, now: Instant, permille: u16) -> (u64, u64) {
        // Below `limit` (permille < 1000), and `held` below `share` (left <= window): both fit.
        let share = mul_div(self.limit, u64::from(permille.min(999)), 1000, false).unwrap_or(0);
        let window = self.length.as_millis().max(1);
        let left = self.reset_at.saturating_duration_since(now).as_millis().min(window);
        let held = mul_div(share, left, window, true).unwrap_or(u64::MAX);
        (held, share)
    }

    /// Recomputes the emission interval: what is left of the window over what is left of the
    /// quota, plus one so that the last send falls before the reset.
    fn respace(&mut self, now: Instant) {
        self.interval = self
            .reset_at
            .saturating_duration_since(now)
            .mul_ratio(1, self.remaining.saturating_add(1));
    }
}

/// Who decided that a request may go: what [`Pacer::pace`] holds it back for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Sender {
    /// This pacer, at the request's priority: spacing, reserves and other clients' share apply
    /// ([`Pacer::check`]).
    Local(Priority),
    /// An external pacer (a fleet's shared budget) admitted it: only what the server enforces
    /// applies ([`Pacer::check_admitted`]).
    Admitted,
}

/// Paces requests against one rate limit; see the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pacer {
    config: PacerConfig,
    window: Option<Window>,
    /// The rate at which *other* clients sharing the limit consume it, as a share of the limit
    /// per window in thousandths: estimated from how much faster the server's `remaining` falls
    /// than this pacer's own sends explain. Held back like a reserve, so a pacer that shares its
    /// client id with other processes leaves them what they are about to use.
    others_permille: u16,
    /// Nobody sends before this (a 429's `Retry-After`).
    blocked_until: Instant,
    /// Which token the window belongs to, and what the headers said about the scope.
    scope: scope::ScopeState,
    /// Before this, a request held back longer than its caller waits is refused; at or after
    /// it, one goes out as a probe of the quota ([`take_quota_probe`](Self::take_quota_probe)).
    quota_probe_at: Instant,
}

impl Pacer {
    /// A pacer that knows nothing yet (every check answers [`Pace::Now`]).
    pub fn new(config: PacerConfig) -> Self {
        Pacer {
            config,
            window: None,
            others_permille: 0,
            blocked_until: Instant::ZERO,
            scope: scope::ScopeState::new(),
            quota_probe_at: Instant::ZERO,
        }
    }

    /// The configuration this pacer was built with.
    pub fn config(&self) -> &PacerConfig {
        &self.config
    }

    /// Takes in what a response at `now` said about the limit. Snapshots without `remaining` are
    /// ignored; a missing `limit` keeps the known one (or `remaining`), a missing `window` keeps
    /// the known one (or the default), a missing `reset_after` means one window from now.
    pub fn observe(&mut self, now: Instant, snap: &RateLimitSnapshot) {
        // A reset or window further than a day is read as unknown (see `believed`).
        let snap = snap.believed();
        let Some(server) = snap.remaining else {
            return;
        };
        let mut prev = self.window;
        if let Some(w) = &mut prev {
            w.roll(now);
        }
        // What the snapshot lacks comes from the known window, else the defaults.
        let (mut length, mut limit) = (self.config.default_window, server);
        if let Some(w) = &prev {
            (length, limit) = (w.length, w.limit);
        }
        let length = snap.window.unwrap_or(length).max(Duration::from_millis(1));
        let limit = snap.limit.unwrap_or(limit).max(server);
        let reset_at = now.saturating_add(snap.reset_after.unwrap_or(length));
        let slack = SAME_WINDOW_SLACK.min(Duration::from_millis(length.as_millis() / 2));
        // The same window goes on: its sends and spacing carry over.
        let (mut remaining, mut tat) = (server, Instant::ZERO);
        if let Some(w) = &prev
            && reset_at < w.reset_at.saturating_add(slack)
        {
            self.others_permille = estimate_others(self.others_permille, w, server, now);
            (remaining, tat) = (w.remaining.min(server), w.tat);
        }
        let mut window = Window {
            limit,
            remaining,
            reset_at,
            length,
            tat,
            interval: Duration::ZERO,
            observed_at: now,
        };
        window.respace(now);
        self.window = Some(window);
    }

    /// Whether a request of `priority` may be sent at `now`.
    pub fn check(&self, now: Instant, priority: Priority) -> Pace {
        self.pace(now, Sender::Local(priority))
    }

    /// Whether a request that an external pacer already admitted may be sent at `now`: a fleet's
    /// shared budget, which counted it against the limit every process shares and applied the
    /// spacing, the priority reserves and the burst with every process's sends in view. Only
    /// what the server itself enforces still holds it back here: a 429's `Retry-After` and an
    /// exhausted window. This pacer's spacing, reserves and estimate of other clients know only
    /// this process's sends, and would hold back (or space twice) what the fleet admitted.
    ///
    /// Exact as [`check`](Self::check) is. Record the send with [`on_send`](Self::on_send) and
    /// [`Priority::Critical`]: a send that did not wait for the local schedule does not move it.
    pub fn check_admitted(&self, now: Instant) -> Pace {
        self.pace(now, Sender::Admitted)
    }

    /// [`check`](Self::check) for a [`Sender::Local`] request,
    /// [`check_admitted`](Self::check_admitted) for a [`Sender::Admitted`] one: one body, so a
    /// caller that asks both ways has one copy of it.
    pub fn pace(&self, now: Instant, sender: Sender) -> Pace {
        // The latest hold so far (the earliest first on a tie), `now` while nothing holds.
        let mut wait = (now, PaceReason::Backoff429);
        let mut hold = |at: Instant, reason| {
            if at > wait.0 {
                wait = (at, reason);
            }
        };
        hold(self.blocked_until, PaceReason::Backoff429);
        // A probe of a new token's window is held back only by a 429 (module `scope`).
        if let Some(mut w) = self.window.filter(|_| !self.probing()) {
            w.roll(now);
            if w.remaining == 0 {
                hold(w.reset_at, PaceReason::Exhausted);
            }
            // An admitted request is held back only by what the server enforces (above).
            if let Sender::Local(priority) = sender {
                let share = match priority {
                    Priority::Critical => 0,
                    Priority::Normal => self.config.critical_reserve_permille,
                    Priority::Background => self
                        .config
                        .background_floor_permille
                        .max(self.config.critical_reserve_permille),
                };
                let share = share.saturating_add(self.others_permille);
                let (held, share) = w.held_back(now, share);
                if w.remaining != 0 && w.remaining <= held {
                    // The earliest t with held_back(t) <= remaining - 1: ceil(share × x / window)
                    // <= r - 1 holds exactly when x <= (r - 1) × window / share, x = reset - t.
                    let window = w.length.as_millis().max(1);
                    let x = match share {
                        0 => 0,
                        _ => mul_div(w.remaining.saturating_sub(1), window, share, false)
                            .unwrap_or(u64::MAX),
                    };
                    hold(w.reset_at.saturating_sub(Duration::from_millis(x)), PaceReason::Reserve);
                }
                if priority != Priority::Critical {
                    let share = div_rem(
                        mul_sat(w.remaining, u64::from(self.config.burst_permille.min(999))),
                        1000,
                    )
                    .map_or(0, |(q, _)| q);
                    let burst = u64::from(self.config.burst).max(share);
                    let tolerance = w.interval.saturating_mul(burst.saturating_sub(1));
                    hold(w.tat.saturating_sub(tolerance).min(w.reset_at), PaceReason::Spacing);
                }
            }
        }
        match wait {
            (at, reason) if at > now => Pace::NotBefore { at, reason },
            _ => Pace::Now,
        }
    }

    /// Whether, from `now` on and until something is reported to it, this pacer lets any
    /// request with the token of `generation` go at once and records nothing of its send: it
    /// knows no window, holds nothing back (no 429's wait in force) and its token is
    /// `generation`'s, no probe of a new token's window due. What a session's
    /// [`steady_lane`](crate::session::Session::steady_lane) asks.
    pub(crate) fn steady(&self, now: Instant, generation: Generation) -> bool {
        self.window.is_none() && self.blocked_until <= now && self.scope.serves(generation)
    }

    /// Records a request of `priority` sent at `now`: one less in the local estimate, and (for
    /// spaced priorities) the next spaced send one emission interval later. A Critical send does
    /// not move the spacing schedule, having not waited for it; its cost shows in the interval.
    pub fn on_send(&mut self, now: Instant, priority: Priority) {
        self.end_probe();
        let Some(w) = self.window.as_mut() else {
            return;
        };
        w.roll(now);
        w.remaining = w.remaining.saturating_sub(1);
        w.respace(now);
        if priority != Priority::Critical {
            w.tat = w.tat.max(now).saturating_add(w.interval);
        }
    }

    /// Records a 429 received at `now`, with its `Retry-After` as a delay from `now`. Without
    /// one, the window as of `now` is spent: the current one, or the one it rolled over into
    /// at a reset since (whether or not a send has rolled the stored window yet).
    pub fn on_rate_limited(&mut self, now: Instant, retry_after: Option<Duration>) {
        if let Some(w) = self.window.as_mut() {
            w.roll(now);
        }
        match (retry_after, self.window.as_mut()) {
            (Some(wait), _) => {
                self.blocked_until = self.blocked_until.max(now.saturating_add(wait))
            }
            (None, Some(w)) if now < w.reset_at => w.remaining = 0,
            (None, _) => {
                self.blocked_until = self.blocked_until.max(now.saturating_add(UNKNOWN_429_PAUSE))
            }
        }
    }

    /// Whether a request this pacer holds back for longer than its caller waits, `max_wait` (a
    /// daily quota's hours, a bogus "forever"), may go out at `now` all the same, as the probe
    /// that finds out when the limit is lifted: at most one per `max_wait`, none within
    /// `max_wait` of a 429 ([`defer_quota_probe`](Self::defer_quota_probe)). Taking the probe
    /// defers the next one. The caller fails the others fast, naming the wait.
    pub fn take_quota_probe(&mut self, now: Instant, max_wait: Duration) -> bool {
        if now < self.quota_probe_at {
            return false;
        }
        self.defer_quota_probe(now, max_wait);
        true
    }

    /// When [`take_quota_probe`](Self::take_quota_probe) next lets a probe go: `max_wait` after
    /// the last 429 or the last probe (earlier when a probe was returned), at once if that has
    /// passed.
    pub fn next_quota_probe(&self) -> Instant {
        self.quota_probe_at
    }

    /// The probe [`take_quota_probe`](Self::take_quota_probe) gave at `now` was not sent after
    /// all (a circuit breaker refused the attempt): the next request may take it.
    pub fn return_quota_probe(&mut self, now: Instant) {
        self.quota_probe_at = now;
    }

    /// The request sent as the probe of [`take_quota_probe`](Self::take_quota_probe) was
    /// answered without a 429: the server holds requests back no longer, whatever the last
    /// `Retry-After` said (a daily quota raised, a bogus "forever"). A spent window is left to
    /// the answer's own rate-limit fields.
    pub fn lift_hold(&mut self) {
        self.blocked_until = Instant::ZERO;
    }

    /// Records that the server answered a request about its quota at `now` (a 429): the next
    /// probe of [`take_quota_probe`](Self::take_quota_probe) goes out `max_wait` later at the
    /// earliest.
    pub fn defer_quota_probe(&mut self, now: Instant, max_wait: Duration) {
        self.quota_probe_at = now.saturating_add(max_wait);
    }

    /// The local estimate of requests left at `now`, if any snapshot was seen.
    pub fn remaining(&self, now: Instant) -> Option<u64> {
        self.window.map(|mut w| {
            w.roll(now);
            w.remaining
        })
    }
}

/// Updates the estimate of other clients' consumption from one observation in the same window:
/// `prev` is this pacer's view (its own sends subtracted) since `prev.observed_at`, `server` what
/// the server says is left now. A deficit is what others used; none halves the estimate. Own
/// requests still in flight can only make the server's count *higher* than the local one, so
/// they never read as others' use.
fn estimate_others(others: u16, prev: &Window, server: u64, now: Instant) -> u16 {
    let deficit = prev.remaining.saturating_sub(server);
    if deficit == 0 {
        return others / 2;
    }
    let elapsed = now.saturating_duration_since(prev.observed_at).as_millis().max(1);
    // deficit × 1000 × length / (elapsed × limit); the saturating factors only saturate far
    // beyond 999, which is where the sample is capped anyway.
    let per_window = mul_div(
        mul_sat(deficit, 1000),
        prev.length.as_millis(),
        mul_sat(elapsed, prev.limit.max(1)),
        false,
    )
    .unwrap_or(u64::MAX);
    let sample = u16::try_from(per_window.min(999)).unwrap_or(999);
    // An even average of the old estimate and the new sample: quick to follow, slow to jump.
    u16::try_from(u32::from(others).saturating_add(u32::from(sample)).div_ceil(2)).unwrap_or(999)
}

/// The reference guide's worker-pool multiplier, in thousandths: 300 when more than 80 % of the
/// limit is used, 700 when more than 50 %, else 1000. A zero limit counts as fully used.
///
/// Kept for callers that size worker pools; the [`Pacer`] itself spaces requests instead.
pub fn concurrency_multiplier_permille(limit: u64, remaining: u64) -> u16 {
    let used = u128::from(limit.saturating_sub(remaining));
    let limit = u128::from(limit);
    if limit == 0 || used.saturating_mul(10) > limit.saturating_mul(8) {
        300
    } else if used.saturating_mul(2) > limit {
        700
    } else {
        1000
    }
}

#[cfg(test)]
mod tests;
