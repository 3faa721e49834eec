//! A circuit breaker: stop calling a service that keeps failing, and probe it before resuming.
//!
//! Keep one [`CircuitBreaker`] per token endpoint and per API host. It is a three-state machine:
//!
//! ```text
//!            trip                     cooldown over
//!  Closed ─────────────▶ Open ────────────────────────▶ HalfOpen
//!    ▲                     ▲                               │ │
//!    │                     └──── probe failed (longer) ────┘ │
//!    └─────────────────────────── probe succeeded ───────────┘
//! ```
//!
//! - **Closed** admits everything. It *trips* on `consecutive_failures` failures in a row (3, as
//!   in the reference guide), or when, at a failure, at least `min_calls` outcomes are known and
//!   failures make up `failure_permille` or more of the last `window` outcomes (catching a service
//!   that fails every other call, which never fails three times in a row).
//! - **Open** rejects everything until `until`. The cooldown doubles with each trip since the
//!   breaker last closed, `min(max_cooldown, cooldown × 2^(trips-1))`, plus a random 0–20 % so
//!   that clients that tripped together do not probe together (`max_cooldown` bounds the
//!   cooldown before that jitter).
//! - **HalfOpen** admits at most `half_open_probes` concurrent probes and answers
//!   [`Admission::ProbeInFlight`] to everyone else: their wait ends with the probe's outcome, not
//!   at an instant anyone can know, so rather than inventing a re-check time the breaker tells
//!   the caller to wait for the next [`BreakerEvent`] (or for its own report of an abandoned
//!   probe). A probe success closes the breaker (counts and trips reset), a failure opens it
//!   again for the next, longer cooldown.
//!
//! The Open → HalfOpen change happens on a timer, not on the first call after it (resilience4j's
//! way): [`next_change`](CircuitBreaker::next_change) says when, and
//! [`BreakerEvent::HalfOpened`] carries exactly `until` however late the breaker is told the time.
//!
//! # Call order
//!
//! 1. Before each request, [`check`](CircuitBreaker::check). Send only if admitted.
//! 2. For each admitted request report exactly one outcome: [`on_success`](CircuitBreaker::on_success),
//!    [`on_failure`](CircuitBreaker::on_failure), or, for a probe cancelled before an outcome,
//!    [`on_abandoned`](CircuitBreaker::on_abandoned) with its [`ProbeTicket`] (its slot is then
//!    released).
//! 3. After every input, drain [`poll_event`](CircuitBreaker::poll_event); wake at
//!    [`next_change`](CircuitBreaker::next_change) and call
//!    [`handle_timeout`](CircuitBreaker::handle_timeout) (every input also does it).
//!
//! **What is a failure is the caller's call.** Count transport errors, timeouts and 5xx as
//! failures. A response that proves the service alive and well-behaved (2xx, and 4xx such as
//! 400, 401, 404 or a 429 that the pacer handles) is a success for the breaker: a wrong request
//! is no reason to stop calling a healthy service.
//!
//! # Late outcomes
//!
//! Outcomes arrive in any order relative to state changes, and the breaker cannot tell which
//! request they belong to. The rules keep state consistent whatever arrives:
//!
//! - while **Open**, successes and failures are ignored: they belong to requests admitted before
//!   the trip, and the decision to stop for a cooldown is already made;
//! - while **HalfOpen**, any outcome counts as a probe's: it was observed after the cooldown, so
//!   it is fresh evidence about the service, whichever request it came from;
//! - abandons release a probe slot only while HalfOpen, only for a ticket of the current
//!   half-open period, and never below zero.

use core::fmt;

use heapless::Deque;

use crate::rng::Rng;
use crate::time::{Duration, Instant};

/// Events kept for [`CircuitBreaker::poll_event`]; older ones are dropped first. One call makes
/// at most one event, and owners drain after each (the session does), so 4 is ample; every
/// slot costs 26 bytes of RAM per breaker on a 32-bit target.
const EVENTS: usize = 4;

/// The largest window the outcome bitset holds.
const MAX_WINDOW: u8 = 64;

/// When a [`CircuitBreaker`] trips and how long it stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BreakerConfig {
    /// Failures in a row that trip the breaker. Default 3 (the reference guide's); 0 disables
    /// this trigger.
    pub consecutive_failures: u32,
    /// How many of the latest outcomes the failure ratio looks at, at most 64. Default 20;
    /// 0 disables the ratio trigger.
    pub window: u8,
    /// Outcomes needed in the window before the ratio can trip the breaker. Default 10.
    pub min_calls: u8,
    /// Failure ratio, in thousandths, that trips the breaker. Default 500.
    pub failure_permille: u16,
    /// Cooldown after the first trip. Default 5 s.
    pub cooldown: Duration,
    /// Longest cooldown, however many trips (before the 0–20 % jitter). Default 5 min.
    pub max_cooldown: Duration,
    /// Concurrent probes while half-open (0 counts as 1). Default 1, as Polly: one trial call
    /// tells as much as ten while costing a sick service less.
    pub half_open_probes: u8,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 3,
            window: 20,
            min_calls: 10,
            failure_permille: 500,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_mins(5),
            half_open_probes: 1,
        }
    }
}

impl BreakerConfig {
    /// Checks the configuration once, where it is built. Every configuration is safe to use;
    /// these are the likely mistakes.
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        if self.consecutive_failures == 0 && self.window == 0 {
            Err(BreakerConfigError::NeverTrips)
        } else if self.window > MAX_WINDOW {
            Err(BreakerConfigError::WindowTooLarge { window: self.window })
        } else if self.window > 0 && self.min_calls > self.window {
            Err(BreakerConfigError::MinCallsAboveWindow {
                min_calls: self.min_calls,
                window: self.window,
            })
        } else if self.cooldown.is_zero() || self.cooldown > self.max_cooldown {
            Err(BreakerConfigError::BadCooldown { cooldown: self.cooldown, max: self.max_cooldown })
        } else if self.half_open_probes == 0 {
            Err(BreakerConfigError::ZeroProbes)
        } else {
            Ok(())
        }
    }
}

/// A [`BreakerConfig`] that is almost certainly a mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BreakerConfigError {
    /// Both triggers are disabled (`consecutive_failures` and `window` are zero).
    NeverTrips,
    /// The window is longer than the 64 outcomes kept; it is used as 64.
    WindowTooLarge {
        /// The configured window.
        window: u8,
    },
    /// `min_calls` exceeds the window, so the ratio trigger can never fire.
    MinCallsAboveWindow {
        /// The configured minimum.
        min_calls: u8,
        /// The configured window.
        window: u8,
    },
    /// The cooldown is zero (a tripped breaker would probe at once) or above `max_cooldown`
    /// (probably the two were swapped).
    BadCooldown {
        /// The configured cooldown.
        cooldown: Duration,
        /// The configured maximum.
        max: Duration,
    },
    /// No probes while half-open; one is used.
    ZeroProbes,
}

impl fmt::Display for BreakerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerConfigError::NeverTrips => {
                f.write_str("breaker can never trip: consecutive_failures and window are both zero")
            }
            BreakerConfigError::WindowTooLarge { window } => {
                write!(f, "breaker window {window} exceeds the 64 outcomes kept")
            }
            BreakerConfigError::MinCallsAboveWindow { min_calls, window } => write!(
                f,
                "breaker min_calls {min_calls} exceeds window {window}: the ratio trigger can never fire"
            ),
            BreakerConfigError::BadCooldown { cooldown, max } => write!(
                f,
                "breaker cooldown {cooldown} must be non-zero and at most max_cooldown {max}: swapped?"
            ),
            BreakerConfigError::ZeroProbes => {
                f.write_str("breaker half_open_probes is zero: a half-open breaker needs a probe")
            }
        }
    }
}

impl core::error::Error for BreakerConfigError {}

/// Where a [`CircuitBreaker`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BreakerState {
    /// Requests flow; outcomes are counted.
    Closed,
    /// Requests are rejected until `until`.
    Open {
        /// When the breaker turns half-open.
        until: Instant,
    },
    /// A few probes test the service.
    HalfOpen,
}

/// The answer of [`CircuitBreaker::check`].
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Admission {
    /// Send the request (the breaker is closed).
    Allowed,
    /// Send the request as a probe; its outcome decides whether the breaker closes. Keep the
    /// ticket with the request: a probe that ends without an outcome gives it back with
    /// [`on_abandoned`](CircuitBreaker::on_abandoned).
    Probe(ProbeTicket),
    /// Do not send yet: probes are testing the service. Check again when their outcome is known:
    /// on the next [`BreakerEvent`], or after reporting a probe abandoned (which frees its slot
    /// without an event).
    ProbeInFlight,
    /// Do not send before `until` (always later than the `now` checked).
    Rejected {
        /// When the breaker turns half-open.
        until: Instant,
    },
}

impl Admission {
    /// Whether the request may be sent now.
    pub const fn is_admitted(self) -> bool {
        matches!(self, Admission::Allowed | Admission::Probe(_))
    }
}

/// A half-open breaker's leave to send one probe, handed out by [`CircuitBreaker::check`] as
/// the token lifecycle hands out [`Ticket`](crate::lifecycle::Ticket)s. The probe's outcome
/// ([`on_success`](CircuitBreaker::on_success), [`on_failure`](CircuitBreaker::on_failure))
/// settles it; a probe that ends without one gives it back with
/// [`on_abandoned`](CircuitBreaker::on_abandoned). A ticket of an earlier half-open period
/// changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "a probe ticket is settled by the probe's outcome, or given back with on_abandoned"]
pub struct ProbeTicket {
    /// The half-open period it was handed out in.
    period: u32,
}

/// A state change, to log, count or wake waiting requests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum BreakerEvent {
    /// The breaker tripped (or a probe failed).
    Opened {
        /// When it turns half-open.
        until: Instant,
        /// The cooldown, jitter included.
        cooldown: Duration,
        /// Trips since the breaker last closed, this one included.
        trips: u32,
    },
    /// The cooldown ended; probes may go. `at` is the end of the cooldown, however late noticed.
    HalfOpened {
        /// When the cooldown ended.
        at: Instant,
    },
    /// A probe succeeded; requests flow again.
    Closed {
        /// When the success was reported.
        at: Instant,
    },
}

/// A circuit breaker for one service; see the [module docs](self) for the contract.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    /// Outcomes since the breaker last closed, newest in bit 0, 1 = failure. Only the low
    /// `window` bits are kept.
    outcomes: u64,
    /// How many of those bits hold outcomes (at most `window`).
    calls: u8,
    /// Failures in a row, in the closed state.
    consecutive: u32,
    /// Trips since the breaker last closed.
    trips: u32,
    /// Probes in flight; zero unless half-open.
    probes: u8,
    /// Half-open periods so far (wrapping): the period the probe tickets of this one carry.
    half_open_period: u32,
    events: Deque<BreakerEvent, EVENTS>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            state: BreakerState::Closed,
            outcomes: 0,
            calls: 0,
            consecutive: 0,
            trips: 0,
            probes: 0,
            half_open_period: 0,
            events: Deque::new(),
        }
    }

    /// The configuration this breaker was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Whether a request may be sent at `now`. A [`Admission::Probe`] takes a probe slot, which
    /// its outcome (or its ticket, given to [`on_abandoned`](Self::on_abandoned)) gives back.
    pub fn check(&mut self, now: Instant) -> Admission {
        self.handle_timeout(now);
        match self.state {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::Open { until } => Admission::Rejected { until },
            BreakerState::HalfOpen if self.probes < self.config.half_open_probes.max(1) => {
                self.probes = self.probes.saturating_add(1);
                Admission::Probe(ProbeTicket { period: self.half_open_period })
            }
            BreakerState::HalfOpen => Admission::ProbeInFlight,
        }
    }

    /// Advances timers to `now`: an open breaker whose cooldown is over turns half-open. Every
    /// other input calls this first; call it alone when [`next_change`](Self::next_change) is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let BreakerState::Open { until } = self.state
            && now >= until
        {
            self.state = BreakerState::HalfOpen;
            self.probes = 0;
            self.half_open_period = self.half_open_period.wrapping_add(1);
            self.push(BreakerEvent::HalfOpened { at: until });
        }
    }

    /// Reports that an admitted request succeeded at `now`.
    pub fn on_success(&mut self, now: Instant) {
        self.handle_timeout(now);
        match self.state {
            BreakerState::Closed => {
                self.record(false);
            }
            BreakerState::HalfOpen => self.close(now),
            BreakerState::Open { .. } => {}
        }
    }

    /// Reports that an admitted request failed at `now`; `rng` jitters the cooldown if the
    /// breaker opens.
    pub fn on_failure(&mut self, now: Instant, rng: &mut Rng) {
        self.handle_timeout(now);
        match self.state {
            BreakerState::Closed => {
                if self.record(true) {
                    self.open(now, rng);
                }
            }
            BreakerState::HalfOpen => self.open(now, rng),
            BreakerState::Open { .. } => {}
        }
    }

    /// Reports that the probe of `ticket` ended without an outcome (cancelled, dropped): its
    /// slot is given back. A ticket of an earlier half-open period changes nothing; a request
    /// admitted without a ticket ([`Admission::Allowed`]) holds no slot and needs no call.
    pub fn on_abandoned(&mut self, now: Instant, ticket: ProbeTicket) {
        self.handle_timeout(now);
        if self.state == BreakerState::HalfOpen && ticket.period == self.half_open_period {
            self.probes = self.probes.saturating_sub(1);
        }
    }

    /// The state as of the last input (an expired cooldown shows as open until an input or
    /// [`handle_timeout`](Self::handle_timeout) notices it).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// When the state changes by itself: the end of the cooldown while open, else `None`
    /// (closed and half-open change only on outcomes). For the caller's `poll_timeout`.
    pub fn next_change(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open { until } => Some(until),
            BreakerState::Closed | BreakerState::HalfOpen => None,
        }
    }

    /// The oldest state change not yet taken.
    pub fn poll_event(&mut self) -> Option<BreakerEvent> {
        self.events.pop_front()
    }

    /// Whether [`poll_event`](Self::poll_event) has a state change to give.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Whether reporting a success ([`on_success`](Self::on_success)) at any instant would leave
    /// this breaker as it is: closed, its window full of successes, no failure in a row, no
    /// event queued. What a session's [`steady_lane`](crate::session::Session::steady_lane) asks.
    pub(crate) fn success_changes_nothing(&self) -> bool {
        self.state == BreakerState::Closed
            && self.outcomes == 0
            && self.calls == self.config.window.min(MAX_WINDOW)
            && self.consecutive == 0
            && self.events.is_empty()
    }

    /// Records a closed-state outcome; whether the breaker must trip.
    fn record(&mut self, failure: bool) -> bool {
        let window = self.config.window.min(MAX_WINDOW);
        let mask = 1u64.checked_shl(u32::from(window)).map_or(u64::MAX, |bit| bit.wrapping_sub(1));
        self.outcomes = (self.outcomes.wrapping_shl(1) | u64::from(failure)) & mask;
        self.calls = self.calls.saturating_add(1).min(window);
        self.consecutive = if failure { self.consecutive.saturating_add(1) } else { 0 };
        if !failure {
            return false;
        }
        let in_a_row = self.config.consecutive_failures;
        // 32 bits suffice (and are cheap on 32-bit targets): at most 64 × 1000 and
        // 65 535 × 64, so neither product saturates.
        let calls = u32::from(self.calls);
        let failures = self.outcomes.count_ones();
        (in_a_row > 0 && self.consecutive >= in_a_row)
            || (calls >= u32::from(self.config.min_calls.max(1))
                && failures.saturating_mul(1000)
                    >= u32::from(self.config.failure_permille).saturating_mul(calls))
    }

    fn open(&mut self, now: Instant, rng: &mut Rng) {
        self.trips = self.trips.saturating_add(1);
        let doubling = 1u64.checked_shl(self.trips.saturating_sub(1)).unwrap_or(u64::MAX);
        let base = self.config.cooldown.saturating_mul(doubling).min(self.config.max_cooldown);
        let cooldown = base.saturating_add(rng.duration_below(base.mul_permille(200)));
        let until = now.saturating_add(cooldown);
        self.state = BreakerState::Open { until };
        self.reset_counts();
        self.push(BreakerEvent::Opened { until, cooldown, trips: self.trips });
    }

    fn close(&mut self, now: Instant) {
        self.state = BreakerState::Closed;
        self.trips = 0;
        self.reset_counts();
        self.push(BreakerEvent::Closed { at: now });
    }

    fn reset_counts(&mut self) {
        self.outcomes = 0;
        self.calls = 0;
        self.consecutive = 0;
        self.probes = 0;
    }

    fn push(&mut self, event: BreakerEvent) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(event);
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker::new(BreakerConfig::default())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;
    use std::vec::Vec;

    const T0: Instant = Instant::from_secs(1_000);

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn events(b: &mut CircuitBreaker) -> Vec<BreakerEvent> {
        core::iter::from_fn(|| b.poll_event()).collect()
    }

    /// Trips a default breaker at `now` with three failures; returns when it turns half-open.
    fn tripped(b: &mut CircuitBreaker, now: Instant, rng: &mut Rng) -> Instant {
        for _ in 0..3 {
            assert!(b.check(now).is_admitted());
            b.on_failure(now, rng);
        }
        b.next_change().expect("open")
    }

    #[test]
    fn three_failures_in_a_row_open_it_until_the_cooldown_ends() {
        let (mut b, mut rng) = (CircuitBreaker::default(), Rng::new(1));
        b.on_failure(T0, &mut rng);
        b.on_failure(T0, &mut rng);
        b.on_success(T0); // the streak is broken
        b.on_failure(T0, &mut rng);
        b.on_failure(T0, &mut rng);
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure(T0, &mut rng);
        let until = b.next_change().expect("open");
        assert!(until >= T0 + secs(5) && until < T0 + secs(6), "{until}");
        assert_eq!(
            events(&mut b),
            [BreakerEvent::Opened { until, cooldown: until - T0, trips: 1 }]
        );
        assert_eq!(b.check(until - ms(1)), Admission::Rejected { until });
        assert_eq!(b.state(), BreakerState::Open { until });
        assert!(matches!(b.check(until), Admission::Probe(_)));
        assert_eq!(events(&mut b), [BreakerEvent::HalfOpened { at: until }]);
        assert_eq!(b.next_change(), None);
    }

    #[test]
    fn half_open_is_reported_at_the_end_of_the_cooldown_however_late_noticed() {
        let (mut b, mut rng) = (CircuitBreaker::default(), Rng::new(2));
        let until = tripped(&mut b, T0, &mut rng);
        let _ = events(&mut b);
        b.handle_timeout(until + secs(3600));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(events(&mut b), [BreakerEvent::HalfOpened { at: until }]);
        b.handle_timeout(until + secs(7200)); // spurious calls change nothing
        assert_eq!(events(&mut b), []);
    }

    #[test]
    fn one_probe_at_a_time_and_an_abandoned_probe_frees_its_slot() {
        let (mut b, mut rng) = (CircuitBreaker::default(), Rng::new(3));
        let until = tripped(&mut b, T0, &mut rng);
        let Admission::Probe(ticket) = b.check(until) else { panic!("a probe") };
        assert_eq!(b.check(until + secs(1)), Admission::ProbeInFlight);
        b.on_abandoned(until + secs(2), ticket);
        b.on_abandoned(until + secs(2), ticket); // a spurious second abandon frees nothing more
        assert!(matches!(b.check(until + secs(3)), Admission::Probe(_)));
        assert_eq!(b.check(until + secs(3)), Admission::ProbeInFlight);
        b.on_success(until + secs(4));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.check(until + secs(4)), Admission::Allowed);
        let log = events(&mut b);
        assert_eq!(log.last(), Some(&BreakerEvent::Closed { at: until + secs(4) }));
    }

    /// A probe ticket belongs to its half-open period: one kept from an earlier period (its
    /// probe failed, the breaker opened and half-opened again) frees no slot of the new one.
    #[test]
    fn a_ticket_of_an_earlier_half_open_period_frees_nothing() {
        let (mut b, mut rng) = (CircuitBreaker::default(), Rng::new(9));
        let until = tripped(&mut b, T0, &mut rng);
        let Admission::Probe(old) = b.check(until) else { panic!("a probe") };
        b.on_failure(until, &mut rng);
        let until = b.next_change().expect("open again");
        let Admission::Probe(new) = b.check(until) else { panic!("a probe") };
        assert_ne!(old, new);
        b.on_abandoned(until, old);
        assert_eq!(b.check(until), Admission::ProbeInFlight);
        b.on_abandoned(until, new);
        assert!(matches!(b.check(until), Admission::Probe(_)));
    }

    #[test]
    fn failed_probes_double_the_cooldown_up_to_the_cap_and_success_resets_it() {
        let (mut b, mut rng) = (CircuitBreaker::default(), Rng::new(4));
        let mut until = tripped(&mut b, T0, &mut rng);
        let mut expected = Vec::new();
        for trips in 2..=9u32 {
            assert!(matches!(b.check(until), Admission::Probe(_)));
            b.on_failure(until, &mut rng);
            let next = b.next_change().expect("open again");
            let base = secs(5).saturating_mul(1 << (trips - 1)).min(secs(300));
            assert!(
                next - until >= base && next - until < base + base.mul_permille(200),
                "trip {trips}"
            );
            expected.push((trips, next));
            until = next;
        }
        let opened: Vec<_> = events(&mut b)
            .into_iter()
            .filter_map(|e| match e {
                BreakerEvent::Opened { trips, until, .. } => Some((trips, until)),
                _ => None,
            })
            .collect();
        // Each round makes two events (half-open, opened): the ring keeps the latest rounds.
        let rounds = EVENTS / 2;
        assert_eq!(opened.len(), rounds, "the ring keeps the latest {EVENTS} events");
        assert_eq!(opened[..], expected[expected.len() - rounds..]);
        assert!(matches!(b.check(until), Admission::Probe(_)));
        b.on_success(until);
        let again = tripped(&mut b, until, &mut rng);
        assert!(again - until < secs(6), "trips were reset by the success");
    }

    #[test]
    fn failure_ratio_trips_only_from_min_calls_and_only_on_a_failure() {
        let (mut b, mut rng) = (CircuitBreaker::default(), Rng::new(5));
        for _ in 0..4 {
            b.on_success(T0);
            b.on_failure(T0, &mut rng);
        }
        b.on_success(T0); // 9 outcomes, 4 failures
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure(T0, &mut rng); // 10 outcomes, 5 failures: 50 %
        assert!(matches!(b.state(), BreakerState::Open { .. }));

        let mut b = CircuitBreaker::default();
        for _ in 0..4 {
            b.on_failure(T0, &mut rng);
            b.on_success(T0);
        }
        b.on_failure(T0, &mut rng); // 9 outcomes, 5 failures: below min_calls
        b.on_success(T0); // 10 outcomes, 5 failures: successes never trip
        assert_eq!(b.state(), BreakerState::Closed);
        for _ in 0..20 {
            b.on_success(T0);
        }
        b.on_failure(T0, &mut rng); // old failures slid out of the 20-outcome window
        assert_eq!(b.state(), BreakerState::Closed);
    }

    /// The ratio at its extremes, a full 64-outcome window: 1000 ‰ trips only when every
    /// outcome failed, and a share above 1000 ‰ never trips.
    #[test]
    fn failure_ratio_at_the_extremes_of_a_full_window() {
        let mut rng = Rng::new(8);
        let ratio_only = |failure_permille| BreakerConfig {
            consecutive_failures: 0,
            window: 64,
            min_calls: 64,
            failure_permille,
            ..BreakerConfig::default()
        };
        let mut b = CircuitBreaker::new(ratio_only(1000));
        b.on_success(T0);
        for _ in 0..63 {
            b.on_failure(T0, &mut rng);
        }
        assert_eq!(b.state(), BreakerState::Closed); // 63 of 64
        b.on_failure(T0, &mut rng); // 64 of 64: the success slid out
        assert!(matches!(b.state(), BreakerState::Open { .. }));

        let mut b = CircuitBreaker::new(ratio_only(u16::MAX));
        for _ in 0..200 {
            b.on_failure(T0, &mut rng);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn late_outcomes_while_open_are_ignored() {
        let (mut b, mut rng) = (CircuitBreaker::default(), Rng::new(6));
        let until = tripped(&mut b, T0, &mut rng);
        let _ = events(&mut b);
        b.on_failure(until - ms(1), &mut rng);
        b.on_success(until - ms(1));
        assert_eq!(b.state(), BreakerState::Open { until });
        assert_eq!(events(&mut b), []);
        // After the cooldown, a late outcome is fresh evidence, like a probe's.
        b.on_success(until);
        assert_eq!(
            events(&mut b),
            [BreakerEvent::HalfOpened { at: until }, BreakerEvent::Closed { at: until }]
        );
    }

    #[test]
    fn hostile_configs_do_not_panic() {
        let mut rng = Rng::new(7);
        let configs = [
            BreakerConfig { window: u8::MAX, min_calls: u8::MAX, ..BreakerConfig::default() },
            BreakerConfig {
                window: 0,
                min_calls: 0,
                consecutive_failures: 0,
                ..BreakerConfig::default()
            },
            BreakerConfig {
                cooldown: Duration::MAX,
                max_cooldown: Duration::MAX,
                ..BreakerConfig::default()
            },
            BreakerConfig {
                cooldown: Duration::ZERO,
                half_open_probes: 0,
                ..BreakerConfig::default()
            },
        ];
        let valid: Vec<bool> = configs.iter().map(|c| c.validate().is_ok()).collect();
        assert_eq!(valid, [false, false, true, false]);
        assert_eq!(BreakerConfig::default().validate(), Ok(()));
        for config in configs {
            let mut b = CircuitBreaker::new(config);
            for t in [0, 1, u64::MAX - 1, u64::MAX] {
                let now = Instant::from_millis(t);
                for _ in 0..70 {
                    if let Admission::Rejected { until } = b.check(now) {
                        assert!(until > now);
                    }
                    b.on_failure(now, &mut rng);
                }
                b.on_success(now);
            }
        }
    }

    // ---- model-based property ------------------------------------------------------------

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum ModelState {
        Closed,
        Open(Instant),
        HalfOpen(u8),
    }

    /// The contract, written the obvious way: every outcome kept in a list.
    struct Model {
        c: BreakerConfig,
        state: ModelState,
        /// Half-open periods so far: the period of the tickets handed out now.
        period: u32,
        history: Vec<bool>, // failures since the last state change, oldest first
        trips: u32,
        rng: Rng,
        events: Vec<BreakerEvent>,
    }

    impl Model {
        fn tick(&mut self, now: Instant) {
            if let ModelState::Open(until) = self.state
                && now >= until
            {
                self.state = ModelState::HalfOpen(0);
                self.period += 1;
                self.events.push(BreakerEvent::HalfOpened { at: until });
            }
        }

        fn check(&mut self, now: Instant) -> Admission {
            self.tick(now);
            match self.state {
                ModelState::Closed => Admission::Allowed,
                ModelState::Open(until) => Admission::Rejected { until },
                ModelState::HalfOpen(p) if p < self.c.half_open_probes.max(1) => {
                    self.state = ModelState::HalfOpen(p + 1);
                    Admission::Probe(ProbeTicket { period: self.period })
                }
                ModelState::HalfOpen(_) => Admission::ProbeInFlight,
            }
        }

        fn open(&mut self, now: Instant) {
            self.trips += 1;
            let doubled = (self.c.cooldown.as_millis() as u128) << (self.trips - 1).min(100);
            let base = ms(doubled.min(self.c.max_cooldown.as_millis() as u128) as u64);
            let cooldown = base + self.rng.duration_below(ms(base.as_millis() / 5));
            self.state = ModelState::Open(now + cooldown);
            self.history.clear();
            self.events.push(BreakerEvent::Opened {
                until: now + cooldown,
                cooldown,
                trips: self.trips,
            });
        }

        fn outcome(&mut self, now: Instant, failure: bool) {
            self.tick(now);
            match self.state {
                ModelState::Open(_) => {}
                ModelState::HalfOpen(_) if failure => self.open(now),
                ModelState::HalfOpen(_) => {
                    self.state = ModelState::Closed;
                    self.trips = 0;
                    self.history.clear();
                    self.events.push(BreakerEvent::Closed { at: now });
                }
                ModelState::Closed => {
                    self.history.push(failure);
                    let in_a_row = self.history.iter().rev().take_while(|&&f| f).count() as u32;
                    let window: Vec<bool> = self
                        .history
                        .iter()
                        .rev()
                        .take(self.c.window.min(64).into())
                        .copied()
                        .collect();
                    let fails = window.iter().filter(|&&f| f).count() as u64;
                    let calls = window.len() as u64;
                    let by_streak =
                        self.c.consecutive_failures > 0 && in_a_row >= self.c.consecutive_failures;
                    let by_ratio = calls > 0
                        && calls >= u64::from(self.c.min_calls)
                        && fails * 1000 >= u64::from(self.c.failure_permille) * calls;
                    if failure && (by_streak || by_ratio) {
                        self.open(now);
                    }
                }
            }
        }

        fn abandon(&mut self, now: Instant, ticket: ProbeTicket) {
            self.tick(now);
            if let ModelState::HalfOpen(p) = self.state
                && ticket.period == self.period
            {
                self.state = ModelState::HalfOpen(p.saturating_sub(1));
            }
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Advance(u64),
        Check,
        Success,
        Failure,
        /// Gives back one of the probe tickets handed out so far (its index, modulo their
        /// number), of this half-open period or an earlier one.
        Abandon(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => (0u64..4_000).prop_map(Op::Advance),
            3 => Just(Op::Check),
            2 => Just(Op::Success),
            3 => Just(Op::Failure),
            1 => any::<usize>().prop_map(Op::Abandon),
        ]
    }

    fn config() -> impl Strategy<Value = BreakerConfig> {
        (0u32..5, 0u8..70, 0u8..25, 0u16..1100, 0u64..8_000, 0u64..60_000, 0u8..4).prop_map(
            |(consecutive_failures, window, min_calls, failure_permille, cooldown, max, probes)| {
                BreakerConfig {
                    consecutive_failures,
                    window,
                    min_calls,
                    failure_permille,
                    cooldown: ms(cooldown),
                    max_cooldown: ms(max),
                    half_open_probes: probes,
                }
            },
        )
    }

    proptest! {
        #[test]
        fn behaves_like_the_reference_model(
            c in config(), seed in any::<u64>(), ops in proptest::collection::vec(op(), 0..300),
        ) {
            let mut b = CircuitBreaker::new(c);
            let mut m = Model { c, state: ModelState::Closed, period: 0, history: Vec::new(), trips: 0, rng: Rng::new(seed), events: Vec::new() };
            let mut rng = Rng::new(seed);
            let mut now = T0;
            let mut seen = Vec::new();
            let mut tickets = Vec::new();
            for op in ops {
                match op {
                    Op::Advance(d) => now = now + ms(d),
                    Op::Check => {
                        let got = b.check(now);
                        prop_assert_eq!(got, m.check(now));
                        match got {
                            Admission::Rejected { until } => prop_assert!(until > now),
                            Admission::Probe(ticket) => tickets.push(ticket),
                            _ => {}
                        }
                    }
                    Op::Success => { b.on_success(now); m.outcome(now, false); }
                    Op::Failure => { b.on_failure(now, &mut rng); m.outcome(now, true); }
                    Op::Abandon(i) => {
                        if let Some(&ticket) = tickets.get(i % tickets.len().max(1)) {
                            b.on_abandoned(now, ticket);
                            m.abandon(now, ticket);
                        }
                    }
                }
                let state = match m.state {
                    ModelState::Closed => BreakerState::Closed,
                    ModelState::Open(until) => BreakerState::Open { until },
                    ModelState::HalfOpen(_) => BreakerState::HalfOpen,
                };
                prop_assert_eq!(b.state(), state);
                prop_assert!(b.probes <= c.half_open_probes.max(1));
                prop_assert!(b.state() == BreakerState::HalfOpen || b.probes == 0);
                seen.extend(core::iter::from_fn(|| b.poll_event()));
            }
            prop_assert_eq!(seen, m.events);
        }
    }
}
