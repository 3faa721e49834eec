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
        if self.critical_reserve_permille >= 1000 {
            Err(PacerConfigError::ShareTooLarge { permille: self.critical_reserve_permille })
        } else if self.background_floor_permille >= 1000 {
            Err(PacerConfigError::ShareTooLarge { permille: self.background_floor_permille })
        } else if self.burst_permille >= 1000 {
            Err(PacerConfigError::ShareTooLarge { permille: self.burst_permille })
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
            PacerConfigError::ShareTooLarge { permille } => write!(
                f,
                "pacer share {permille}\u{2030} leaves nothing to lower priorities: use less than 1000"
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
    /// current is left alone (built anew and returned, it was copied whole on both paths).
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
        self.pace(now, Some(priority))
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
        self.pace(now, None)
    }

    /// [`check`](Self::check) for `Some(priority)`, [`check_admitted`](Self::check_admitted) for
    /// `None`: one body, so a caller that asks both ways has one copy of it.
    pub(crate) fn pace(&self, now: Instant, priority: Option<Priority>) -> Pace {
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
            if let Some(priority) = priority {
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
mod tests {
    extern crate std;
    use super::*;
    use crate::ratelimit::Dialect;
    use proptest::prelude::*;
    use std::vec::Vec;

    use Priority::{Background, Critical, Normal};

    const T0: Instant = Instant::from_secs(1_000);
    const ALL: [Priority; 3] = [Critical, Normal, Background];

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn snap(limit: u64, remaining: u64, reset_s: u64) -> RateLimitSnapshot {
        RateLimitSnapshot {
            limit: Some(limit),
            remaining: Some(remaining),
            reset_after: Some(secs(reset_s)),
            window: Some(secs(60)),
            dialect: Dialect::Genesys,
        }
    }

    fn pacer(burst: u32) -> Pacer {
        Pacer::new(PacerConfig { burst, burst_permille: 0, ..PacerConfig::default() })
    }

    fn not_before(at: Instant, reason: PaceReason) -> Pace {
        Pace::NotBefore { at, reason }
    }

    #[test]
    fn without_a_snapshot_nothing_is_invented() {
        let mut p = pacer(1);
        for _ in 0..1000 {
            assert!(ALL.iter().all(|&prio| p.check(T0, prio) == Pace::Now));
            p.on_send(T0, Normal);
        }
        assert_eq!(p.remaining(T0), None);
        p.on_rate_limited(T0, None); // nothing known: a short pause for everyone
        assert_eq!(p.check(T0, Critical), not_before(T0 + secs(1), PaceReason::Backoff429));
        assert_eq!(p.check(T0 + secs(1), Critical), Pace::Now);
    }

    #[test]
    fn spacing_spreads_what_is_left_until_the_reset() {
        let mut p = pacer(1);
        p.observe(T0, &snap(60, 60, 60));
        p.on_send(T0, Normal); // 59 left in 60 s: one a second
        let next = T0 + secs(1);
        assert_eq!(p.check(next - ms(1), Normal), not_before(next, PaceReason::Spacing));
        assert_eq!(p.check(next - ms(1), Background), not_before(next, PaceReason::Spacing));
        assert_eq!(p.check(next - ms(1), Critical), Pace::Now);
        assert_eq!(p.check(next, Normal), Pace::Now);
        p.on_send(next, Normal); // 58 left in 59 s
        assert_eq!(p.check(next, Normal), not_before(next + ms(59_000 / 59), PaceReason::Spacing));
    }

    #[test]
    fn burst_goes_back_to_back_then_spacing_applies() {
        let mut p = pacer(4);
        p.observe(T0, &snap(60, 60, 60));
        for _ in 0..4 {
            assert_eq!(p.check(T0, Normal), Pace::Now);
            p.on_send(T0, Normal);
        }
        // tat = 1000 + 1016 + 1034 + 1052 ms; tolerance 3 × 1052 ms.
        assert_eq!(p.check(T0, Normal), not_before(T0 + ms(946), PaceReason::Spacing));
    }

    #[test]
    fn the_reserve_is_held_for_critical_and_shrinks_towards_the_reset() {
        let mut p = pacer(1);
        p.observe(T0, &snap(100, 10, 60)); // reserve 10 of 100, background floor 30
        assert_eq!(p.check(T0, Critical), Pace::Now);
        // Normal holds back ceil(10 × (60 s - t) / 60 s): 9 from t = 6 s.
        assert_eq!(p.check(T0, Normal), not_before(T0 + secs(6), PaceReason::Reserve));
        assert_eq!(p.check(T0 + ms(5_999), Normal), not_before(T0 + secs(6), PaceReason::Reserve));
        assert_eq!(p.check(T0 + secs(6), Normal), Pace::Now);
        // Background holds back ceil(30 × (60 s - t) / 60 s): 9 from t = 42 s.
        assert_eq!(p.check(T0, Background), not_before(T0 + secs(42), PaceReason::Reserve));
        assert_eq!(p.check(T0 + secs(42), Background), Pace::Now);
    }

    #[test]
    fn an_admitted_request_waits_only_for_what_the_server_enforces() {
        let mut p = pacer(1);
        p.observe(T0, &snap(100, 50, 60));
        // Other clients used 20 in 6 s: their share is held back from every local priority.
        p.observe(T0 + secs(6), &snap(100, 30, 54));
        p.on_send(T0 + secs(6), Normal);
        let now = T0 + secs(6);
        assert!(matches!(p.check(now, Normal), Pace::NotBefore { .. }));
        assert!(matches!(
            p.check(now, Critical),
            Pace::NotBefore { reason: PaceReason::Reserve, .. }
        ));
        // Admitted elsewhere: neither spacing nor reserves nor the others' share apply.
        assert_eq!(p.check_admitted(now), Pace::Now);
        p.on_send(now, Critical);
        assert_eq!(p.remaining(now), Some(28), "still counted locally");
        // A 429's Retry-After holds it back, to the millisecond.
        p.on_rate_limited(now, Some(secs(5)));
        let until = now + secs(5);
        assert_eq!(p.check_admitted(until - ms(1)), not_before(until, PaceReason::Backoff429));
        assert_eq!(p.check_admitted(until), Pace::Now);
        // So does an exhausted window, until its reset.
        p.observe(until, &snap(100, 0, 40));
        let reset = until + secs(40);
        assert_eq!(p.check_admitted(reset - ms(1)), not_before(reset, PaceReason::Exhausted));
        assert_eq!(p.check_admitted(reset), Pace::Now);
        // Without a snapshot nothing is invented.
        assert_eq!(pacer(1).check_admitted(T0), Pace::Now);
    }

    /// A window rolls over exactly at its reset (in place, whole windows later), not a
    /// millisecond before; a limit of zero rolls into a window of one.
    #[test]
    fn a_window_rolls_over_at_its_reset() {
        let mut p = pacer(1);
        p.observe(T0, &snap(10, 3, 30));
        let reset = T0 + secs(30);
        assert_eq!(p.remaining(reset - ms(1)), Some(3));
        assert_eq!(p.remaining(reset), Some(10));
        // Spent, then two and a half windows late: the next reset is three windows on.
        p.on_rate_limited(reset - ms(1), None);
        assert_eq!(p.remaining(reset - ms(1)), Some(0));
        let late = reset + secs(150);
        assert_eq!(p.check_admitted(late), Pace::Now);
        p.on_send(late, Critical);
        assert_eq!(p.remaining(late), Some(9));
        assert_eq!(p.remaining(reset + secs(180) - ms(1)), Some(9));
        assert_eq!(p.remaining(reset + secs(180)), Some(10));
        let mut zero = pacer(1);
        zero.observe(T0, &snap(0, 0, 30));
        assert_eq!(zero.remaining(reset), Some(1));
    }

    /// A reset less than the slack (1 s) past the known one names the same window: the local
    /// count carries over; at the slack it is a new window and the server's count stands.
    #[test]
    fn the_same_window_ends_at_the_slack() {
        for (extra_ms, expected) in [(999, 49), (1000, 50)] {
            let mut p = pacer(1);
            p.observe(T0, &snap(100, 50, 60));
            p.on_send(T0, Normal);
            let now = T0 + secs(1);
            let reset_after = T0 + secs(60) + ms(extra_ms) - now;
            let later = RateLimitSnapshot { reset_after: Some(reset_after), ..snap(100, 50, 0) };
            p.observe(now, &later);
            assert_eq!(p.remaining(now), Some(expected), "{extra_ms} ms past the known reset");
        }
    }

    /// The plain and the admitted check share one body: an exhausted window holds both alike,
    /// for every priority, to the millisecond of its reset.
    #[test]
    fn an_exhausted_window_holds_every_check_alike() {
        let mut p = pacer(1);
        p.observe(T0, &snap(10, 0, 30));
        let reset = T0 + secs(30);
        for now in [T0, reset - ms(1)] {
            let expected = not_before(reset, PaceReason::Exhausted);
            assert_eq!(p.check_admitted(now), expected);
            for priority in ALL {
                assert_eq!(p.check(now, priority), expected, "{priority:?}");
            }
        }
        assert_eq!(p.check_admitted(reset), Pace::Now);
        assert_eq!(p.check(reset, Critical), Pace::Now);
    }

    #[test]
    fn exhausted_everyone_waits_for_the_reset_then_a_full_window_is_assumed() {
        let mut p = pacer(1);
        p.observe(T0, &snap(100, 1, 30));
        p.on_send(T0, Critical);
        let reset = T0 + secs(30);
        for prio in ALL {
            assert_eq!(p.check(reset - ms(1), prio), not_before(reset, PaceReason::Exhausted));
            assert_eq!(p.check(reset, prio), Pace::Now);
        }
        assert_eq!(p.remaining(reset), Some(100));
        assert_eq!(p.remaining(reset + secs(125)), Some(100));
        p.on_send(reset + secs(125), Normal);
        assert_eq!(p.remaining(reset + secs(125)), Some(99));
        assert_eq!(p.remaining(reset + ms(179_999)), Some(99)); // windows at reset + 60 s × k
        assert_eq!(p.remaining(reset + secs(180)), Some(100));
    }

    #[test]
    fn a_limit_of_zero_still_lets_one_request_learn_each_window() {
        let mut p = pacer(1);
        p.observe(T0, &snap(0, 0, 10));
        assert_eq!(p.check(T0, Critical), not_before(T0 + secs(10), PaceReason::Exhausted));
        assert_eq!(p.check(T0 + secs(10), Background), Pace::Now);
        p.on_send(T0 + secs(10), Background);
        assert_eq!(
            p.check(T0 + secs(10), Critical),
            not_before(T0 + secs(70), PaceReason::Exhausted)
        );
    }

    /// Of several holds the latest wins, and on a tie the one checked first (a 429's wait before
    /// an exhausted window); a hold that ends at `now` holds nothing.
    #[test]
    fn the_latest_hold_wins_and_a_tie_goes_to_the_429() {
        for (wait_s, at_s, reason) in [
            (29, 30, PaceReason::Exhausted),
            (30, 30, PaceReason::Backoff429),
            (31, 31, PaceReason::Backoff429),
        ] {
            let mut p = pacer(1);
            p.observe(T0, &snap(100, 0, 30));
            p.on_rate_limited(T0, Some(secs(wait_s)));
            let expected = not_before(T0 + secs(at_s), reason);
            assert_eq!(p.check(T0, Critical), expected, "{wait_s}");
            assert_eq!(p.check_admitted(T0), expected, "{wait_s}");
        }
        let mut p = pacer(1);
        p.on_rate_limited(T0, Some(secs(1)));
        assert_eq!(p.check(T0 + secs(1), Normal), Pace::Now);
        assert_eq!(p.check_admitted(T0 + secs(1)), Pace::Now);
        assert_eq!(
            p.check(T0 + secs(1) - ms(1), Normal),
            not_before(T0 + secs(1), PaceReason::Backoff429)
        );
    }

    /// A bare 429 after an unobserved reset spends the window the pacer rolled over into, as it
    /// does once a send has rolled it (the fleet's 429 script, too): not a 1 s pause that
    /// depends on whether anything was sent since the reset.
    #[test]
    fn a_bare_429_after_a_reset_spends_the_rolled_window() {
        let reset = T0 + secs(30);
        let next = reset + secs(60);
        let mut sent = pacer(1);
        sent.observe(T0, &snap(10, 3, 30));
        sent.on_send(reset, Critical);
        sent.on_rate_limited(reset, None);
        let mut quiet = pacer(1);
        quiet.observe(T0, &snap(10, 3, 30));
        quiet.on_rate_limited(reset, None);
        for p in [sent, quiet] {
            assert_eq!(p.check(reset, Critical), not_before(next, PaceReason::Exhausted));
        }
    }

    #[test]
    fn retry_after_stops_everyone_and_a_bare_429_empties_the_window() {
        let mut p = pacer(1);
        p.observe(T0, &snap(100, 50, 30));
        p.on_rate_limited(T0, Some(secs(42)));
        p.on_rate_limited(T0, Some(secs(2))); // a shorter wait does not cut the longer one short
        let until = T0 + secs(42);
        for prio in ALL {
            assert_eq!(p.check(until - ms(1), prio), not_before(until, PaceReason::Backoff429));
        }
        assert_eq!(p.check(until, Critical), Pace::Now);
        let mut q = pacer(1);
        q.observe(T0, &snap(100, 50, 30));
        q.on_rate_limited(T0 + secs(1), None);
        assert_eq!(
            q.check(T0 + secs(1), Critical),
            not_before(T0 + secs(30), PaceReason::Exhausted)
        );
    }

    #[test]
    fn snapshots_in_one_window_keep_the_lower_count_and_a_new_window_resets_it() {
        let mut p = pacer(1);
        p.observe(T0, &snap(100, 80, 30));
        for _ in 0..10 {
            p.on_send(T0, Critical);
        }
        p.observe(T0 + secs(1), &snap(100, 75, 29)); // measured before our last sends
        assert_eq!(p.remaining(T0 + secs(1)), Some(70));
        p.observe(T0 + secs(2), &snap(100, 60, 28)); // another client spent some
        assert_eq!(p.remaining(T0 + secs(2)), Some(60));
        p.observe(T0 + ms(2_500), &snap(100, 65, 28)); // late and out of order, still the window
        assert_eq!(p.remaining(T0 + ms(2_500)), Some(60));
        p.observe(T0 + secs(3), &snap(100, 99, 60)); // the server moved to a new window
        assert_eq!(p.remaining(T0 + secs(3)), Some(99));
        let partial = RateLimitSnapshot { remaining: None, ..snap(7, 7, 7) };
        p.observe(T0 + secs(3), &partial);
        assert_eq!(p.remaining(T0 + secs(3)), Some(99));
        let bare =
            RateLimitSnapshot { limit: None, reset_after: None, window: None, ..snap(0, 5, 0) };
        let mut q = pacer(1);
        q.observe(T0, &bare); // limit = remaining, one default window
        assert_eq!(q.remaining(T0 + secs(60)), Some(5));
    }

    /// A window shorter than two seconds tolerates half its length (rounded down) between two
    /// resets of the same window: 1 ms for a 3 ms window.
    #[test]
    fn a_short_window_tolerates_half_its_length_between_resets() {
        let short = |remaining, reset_ms| RateLimitSnapshot {
            limit: Some(100),
            remaining: Some(remaining),
            reset_after: Some(ms(reset_ms)),
            window: Some(ms(3)),
            dialect: Dialect::Genesys,
        };
        for (later_reset, same) in [(2, true), (3, false)] {
            let mut p = pacer(1);
            p.observe(T0, &short(50, 2)); // resets at T0 + 2 ms
            // The same instant, a higher count and a reset `later_reset - 2` ms later.
            p.observe(T0, &short(60, later_reset));
            let kept = if same { 50 } else { 60 };
            assert_eq!(p.remaining(T0), Some(kept), "{later_reset}");
        }
    }

    #[test]
    fn consumption_by_other_clients_is_left_to_them() {
        // Limit 300/min. Between two responses 10 s apart the server's `remaining` fell by 60
        // with no local sends: others use about 360 a window (capped at 999 permille, averaged
        // with the previous estimate of zero: 500 permille).
        let mut p = Pacer::new(PacerConfig::default());
        let t0 = Instant::from_secs(1000);
        p.observe(t0, &snap(300, 200, 60));
        let t1 = t0 + Duration::from_secs(10);
        p.observe(t1, &snap(300, 140, 50));
        // 50 s left: others will want ~0.5 × 300 × 50/60 = 125, and Normal leaves 10 % too:
        // 150 held back > 140 left, so Normal waits; alone, it would have gone at once.
        assert!(matches!(
            p.check(t1, Priority::Normal),
            Pace::NotBefore { reason: PaceReason::Reserve, .. }
        ));
        let mut alone = Pacer::new(PacerConfig::default());
        alone.observe(t1, &snap(300, 140, 50));
        assert_eq!(alone.check(t1, Priority::Normal), Pace::Now);
        // The estimate decays when the server's count matches the local one again.
        let t2 = t1 + Duration::from_secs(5);
        p.observe(t2, &snap(300, 140, 45));
        p.observe(t2 + Duration::from_secs(1), &snap(300, 140, 44));
        assert!(p.others_permille < 200, "{}", p.others_permille);
    }

    #[test]
    fn a_plentiful_quota_allows_a_proportional_burst() {
        // 900 left for 60 s: 10 % of them (90) may go at once, then spacing applies.
        let mut p = Pacer::new(PacerConfig::default());
        let t0 = Instant::from_secs(1000);
        p.observe(t0, &snap(1000, 900, 60));
        let mut sent = 0;
        while p.check(t0, Priority::Normal) == Pace::Now {
            p.on_send(t0, Priority::Normal);
            sent += 1;
        }
        assert!((80..=90).contains(&sent), "{sent} sent back-to-back");
        assert!(matches!(
            p.check(t0, Priority::Normal),
            Pace::NotBefore { reason: PaceReason::Spacing, .. }
        ));
    }

    #[test]
    #[allow(clippy::needless_update, reason = "without rate-limit-scope every field is given")]
    fn hostile_snapshots_do_not_panic() {
        let mut p = Pacer::new(PacerConfig {
            critical_reserve_permille: u16::MAX,
            background_floor_permille: u16::MAX,
            burst: u32::MAX,
            burst_permille: u16::MAX,
            default_window: Duration::ZERO,
            ..PacerConfig::default()
        });
        assert!(p.config().validate().is_err());
        for (limit, remaining, reset) in
            [(0, 0, 0), (u64::MAX, u64::MAX, u64::MAX), (1, u64::MAX, 0), (u64::MAX, 0, 1)]
        {
            let s =
                RateLimitSnapshot { window: Some(Duration::ZERO), ..snap(limit, remaining, reset) };
            for t in [0, 1, u64::MAX - 1, u64::MAX] {
                let now = Instant::from_millis(t);
                p.observe(now, &s);
                for prio in ALL {
                    if let Pace::NotBefore { at, .. } = p.check(now, prio) {
                        assert!(at > now);
                    }
                    p.on_send(now, prio);
                }
                p.on_rate_limited(now, Some(Duration::MAX));
            }
        }
    }

    #[test]
    fn the_guides_multiplier_table() {
        let table = [
            (1000, 0, 300),
            (1000, 199, 300),
            (1000, 200, 700),
            (1000, 499, 700),
            (1000, 500, 1000),
        ];
        for (limit, remaining, expected) in table {
            assert_eq!(concurrency_multiplier_permille(limit, remaining), expected, "{remaining}");
        }
        assert_eq!(concurrency_multiplier_permille(0, 0), 300);
        assert_eq!(concurrency_multiplier_permille(10, u64::MAX), 1000);
        assert_eq!(concurrency_multiplier_permille(u64::MAX, 0), 300);
        assert_eq!(PacerConfig::default().validate(), Ok(()));
    }

    /// A fixed-window server: `limit` requests per `window`, whole-second resets rounded up.
    struct Server {
        limit: u64,
        window: u64,
        used: u64,
        current: u64,
    }

    impl Server {
        /// Counts a request at `t`; its response's snapshot, or `None` for a 429.
        fn handle(&mut self, t: u64) -> Option<RateLimitSnapshot> {
            if t / self.window != self.current {
                self.current = t / self.window;
                self.used = 0;
            }
            if self.used == self.limit {
                return None;
            }
            self.used += 1;
            let reset = (self.current + 1) * self.window - t;
            Some(RateLimitSnapshot {
                limit: Some(self.limit),
                remaining: Some(self.limit - self.used),
                reset_after: Some(secs(reset.div_ceil(1000))),
                window: None,
                dialect: Dialect::Genesys,
            })
        }
    }

    /// Demand above the limit for `windows` windows, answers after `latency` ms; returns
    /// (admitted per server window, 429s after the first window). Before its first answer the
    /// pacer knows nothing and lets everything through, so the first window is a cold start.
    fn simulate(limit: u64, latency: u64, windows: u64) -> (Vec<u64>, u64) {
        let window = 60_000;
        let mut server = Server { limit, window, used: 0, current: 0 };
        let mut p = Pacer::new(PacerConfig::default());
        let mut in_flight: Vec<(u64, Option<RateLimitSnapshot>)> = Vec::new();
        let (mut per_window, mut rejected) = (std::vec![0; windows as usize], 0);
        for t in 0..windows * window {
            let now = Instant::from_millis(t);
            in_flight.retain(|&(due, response)| {
                if due > t {
                    return true;
                }
                match response {
                    Some(s) => p.observe(now, &s),
                    None => p.on_rate_limited(now, None),
                }
                false
            });
            if t % 10 == 0 && p.check(now, Normal) == Pace::Now {
                p.on_send(now, Normal);
                let counted = t + latency / 2;
                let response = server.handle(counted);
                if let Some(n) = per_window.get_mut((counted / window) as usize) {
                    *n += u64::from(response.is_some());
                    rejected += u64::from(response.is_none() && counted >= window);
                }
                in_flight.push((t + latency, response));
            }
        }
        (per_window, rejected)
    }

    #[test]
    fn steady_demand_uses_at_least_95_percent_of_the_limit_without_429s() {
        for (limit, latency) in [(300, 0), (300, 200), (3000, 100), (60, 1000), (1000, 50)] {
            let (per_window, rejected) = simulate(limit, latency, 5);
            assert_eq!(rejected, 0, "limit {limit}, latency {latency}: {per_window:?}");
            for &sent in &per_window[1..] {
                assert!(
                    sent * 100 >= limit * 95,
                    "limit {limit}, latency {latency}: {per_window:?}"
                );
                assert!(sent <= limit);
            }
        }
    }

    // ---- properties ----------------------------------------------------------------------

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Advance(u64),
        Observe {
            limit: Option<u64>,
            remaining: Option<u64>,
            reset_ms: Option<u64>,
            window_ms: Option<u64>,
        },
        Send(Priority),
        RateLimited(Option<u64>),
    }

    fn priority() -> impl Strategy<Value = Priority> {
        prop_oneof![Just(Critical), Just(Normal), Just(Background)]
    }

    fn op() -> impl Strategy<Value = Op> {
        fn opt<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
            proptest::option::weighted(0.8, s)
        }
        let count = || prop_oneof![Just(0u64), Just(1), 0u64..200];
        prop_oneof![
            4 => (0u64..5_000).prop_map(Op::Advance),
            2 => (opt(count()), opt(count()), opt(0u64..120_000), opt(1u64..120_000)).prop_map(
                |(limit, remaining, reset_ms, window_ms)| Op::Observe { limit, remaining, reset_ms, window_ms }),
            4 => priority().prop_map(Op::Send),
            1 => proptest::option::of(0u64..10_000).prop_map(Op::RateLimited),
        ]
    }

    #[allow(clippy::needless_update, reason = "without rate-limit-scope every field is given")]
    fn config() -> impl Strategy<Value = PacerConfig> {
        (0u16..1000, 0u16..1000, 0u32..6, prop_oneof![Just(0u16), 0u16..1000]).prop_map(
            |(reserve, floor, burst, burst_permille)| PacerConfig {
                critical_reserve_permille: reserve,
                background_floor_permille: floor,
                burst,
                burst_permille,
                default_window: secs(60),
                ..PacerConfig::default()
            },
        )
    }

    proptest! {
        /// Governor's "allowed exactly where it tells us", after any history.
        #[test]
        fn allowed_exactly_when_it_said(c in config(), ops in proptest::collection::vec(op(), 0..60)) {
            let mut p = Pacer::new(c);
            let mut now = T0;
            for op in ops {
                match op {
                    Op::Advance(d) => now = now + ms(d),
                    Op::Observe { limit, remaining, reset_ms, window_ms } => p.observe(now, &RateLimitSnapshot {
                        limit, remaining, reset_after: reset_ms.map(ms), window: window_ms.map(ms), dialect: Dialect::Genesys,
                    }),
                    Op::Send(prio) => p.on_send(now, prio),
                    Op::RateLimited(wait) => p.on_rate_limited(now, wait.map(ms)),
                }
                for prio in ALL {
                    if let Pace::NotBefore { at, reason } = p.check(now, prio) {
                        prop_assert!(at > now);
                        prop_assert_eq!(p.check(at, prio), Pace::Now, "{:?} {:?} at {}", prio, reason, at);
                        prop_assert_eq!(p.check(at - ms(1), prio), Pace::NotBefore { at, reason });
                    }
                }
            }
        }

        /// Within one window, admitted sends never exceed the server's `remaining`, and spaced
        /// priorities never take what is still held back for those above them.
        #[test]
        fn admitted_sends_stay_within_remaining_and_reserve(
            c in config(), limit in 1u64..500, spent in 0u64..500, reset_s in 1u64..120,
            demand in proptest::collection::vec((0u64..2_000, priority()), 0..400),
        ) {
            let remaining = limit.saturating_sub(spent);
            let mut p = Pacer::new(c);
            p.observe(T0, &snap(limit, remaining, reset_s));
            let reset = T0 + secs(reset_s);
            let (mut now, mut sent) = (T0, 0u64);
            for (step, prio) in demand {
                now = now + ms(step);
                if now >= reset { break; }
                if p.check(now, prio) != Pace::Now { continue; }
                let share = match prio {
                    Critical => 0,
                    Normal => c.critical_reserve_permille,
                    Background => c.background_floor_permille.max(c.critical_reserve_permille),
                };
                let held = (limit as u128 * share as u128 / 1000 * (reset - now).min(secs(60)).as_millis() as u128)
                    .div_ceil(60_000) as u64;
                prop_assert!(remaining - sent > held, "{:?} took from the reserve: {} left, {} held", prio, remaining - sent, held);
                p.on_send(now, prio);
                sent += 1;
            }
            prop_assert!(sent <= remaining);
        }
    }
}
