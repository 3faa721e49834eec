//! *Whether* and *when* to retry one request: the whole per-request decision.
//!
//! [`RetryPolicy::decide`] answers, for a failed attempt, [`RetryDecision::RetryAt`] an instant or
//! [`RetryDecision::GiveUp`] with the reason. The checks run in this order, and the first "no"
//! wins:
//!
//! 1. **Safe?** RFC 9110 §9.2.2: GET, HEAD, PUT, DELETE and OPTIONS are idempotent and may be
//!    repeated after any transient failure. POST, PATCH and other methods are retried only when
//!    the caller marked the request idempotent (an `Idempotency-Key`, a naturally idempotent
//!    body), *except* after failures where the server did not process the request: a 429
//!    (RFC 6585 §4), a 503 carrying `Retry-After` (RFC 9110 §15.6.4, §10.2.3), or a connection
//!    that never reached the server. A reset or timeout may have been processed: not retried.
//! 2. **Retries left?** At most `max_retries` per request.
//! 3. **How long?** A server's `Retry-After` (RFC 9110 §10.2.3) wins over the backoff schedule,
//!    as the IETF RateLimit draft also requires; a `Retry-After` above `max_wait` gives up at
//!    once ([`GiveUpReason::WaitTooLong`]) instead of sleeping for hours, which is what a daily
//!    quota answers (Genesys Cloud sends `Retry-After` in hours for those).
//! 4. **In time?** A retry that would start after the request's deadline is not scheduled.
//! 5. **Within the budget?** Only when everything else said yes is one retry withdrawn from the
//!    shared [`RetryBudget`], so refused retries never spend it.
//!
//! What counts as a failure worth asking about is the caller's call (see `classify`): permanent
//! errors (400, 401, 403, 404, ...) are not passed here at all.
//!
//! Compared with the reference guide (3 retries, fixed 0.5 s, every method, any `Retry-After`):
//! jittered exponential waits, no blind POST retries, a cap on server-requested waits, a
//! deadline, and a budget against retry storms.

use core::fmt;

use super::backoff::Backoff;
use super::budget::RetryBudget;
use crate::http::Method;
use crate::rng::Rng;
use crate::time::{Duration, Instant};

/// The retry policy for requests to one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RetryPolicy {
    /// Retries per request after the first attempt. Default 3 (the reference guide's).
    pub max_retries: u32,
    /// The wait schedule when the server does not say how long to wait.
    pub backoff: Backoff,
    /// The longest server-requested wait (`Retry-After`) honoured. Default 60 s: long enough for
    /// per-minute quotas to refill, short enough that a daily quota's "come back in 5 hours"
    /// fails fast with [`GiveUpReason::WaitTooLong`].
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            backoff: Backoff::default(),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// How an attempt failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// 408, 500, 502, 503 without `Retry-After`, 504: the request may have been processed.
    Transient,
    /// 503 with `Retry-After`: the server says it did not process the request.
    TransientNotProcessed,
    /// 429 Too Many Requests: rejected before processing.
    RateLimited,
    /// No HTTP response at all.
    Transport(TransportKind),
}

impl Failure {
    /// Whether the server certainly did not process the request, so that repeating it is safe
    /// whatever its method.
    pub const fn is_not_processed(self) -> bool {
        matches!(
            self,
            Failure::TransientNotProcessed
                | Failure::RateLimited
                | Failure::Transport(TransportKind::Connect)
        )
    }
}

/// Which transport failure ended an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TransportKind {
    /// The connection was never established (DNS, refused, TLS handshake): the request never
    /// reached the server.
    Connect,
    /// The connection was reset after the request was (perhaps) sent.
    Reset,
    /// No response in time: the server may be processing it still.
    Timeout,
    /// Anything else after the request was (perhaps) sent.
    Other,
}

/// The request being retried, as far as the policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Attempt {
    /// The request method.
    pub method: Method,
    /// The caller vouches that repeating this request is harmless even though its method is not
    /// idempotent (an `Idempotency-Key` header, an upsert).
    pub idempotent: bool,
    /// Retries already made for this request (0 after the first attempt failed).
    pub retries_done: u32,
    /// The latest instant a retry may start, if the request has one.
    pub deadline: Option<Instant>,
}

impl Attempt {
    /// A first attempt with `method`, not marked idempotent, without deadline.
    pub const fn new(method: Method) -> Self {
        Attempt { method, idempotent: false, retries_done: 0, deadline: None }
    }
}

/// Where a retry's wait came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WaitSource {
    /// The server's `Retry-After`.
    ServerRetryAfter,
    /// The policy's jittered backoff.
    Backoff,
}

/// The answer of [`RetryPolicy::decide`].
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RetryDecision {
    /// Send the request again at `at` (`= now + wait`).
    RetryAt {
        /// When to send the retry.
        at: Instant,
        /// How long that is from the failure.
        wait: Duration,
        /// Whether the server or the backoff chose the wait.
        source: WaitSource,
    },
    /// Do not retry; report the last failure to the caller.
    GiveUp(GiveUpReason),
}

/// Why a failed request is not retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum GiveUpReason {
    /// The method is not idempotent and the server may have processed the request.
    NotIdempotent,
    /// The request was already retried `retries` times.
    RetriesExhausted {
        /// Retries made.
        retries: u32,
    },
    /// The shared retry budget is spent: many requests to this service are failing.
    BudgetExhausted,
    /// The server asked for a wait longer than the policy accepts: its `Retry-After`, or a
    /// rate-limit window it says is spent until a reset that far away. Without the core's
    /// `diagnosis` feature, also a long hold of credflow's own pacing (which that feature names
    /// [`ReservedForOthers`](GiveUpReason::ReservedForOthers) or
    /// [`SpacingTooLong`](GiveUpReason::SpacingTooLong)).
    WaitTooLong {
        /// The wait asked for (the server's `Retry-After`, or the time to its window's reset).
        wait: Duration,
        /// The policy's `max_wait`.
        max: Duration,
    },
    /// The retry would start after the request's deadline.
    PastDeadline {
        /// When the retry would have started.
        at: Instant,
        /// The request's deadline.
        deadline: Instant,
    },
    /// credflow's pacing would hold the request longer than the policy accepts: what is left
    /// of the rate-limit window until its reset is kept for higher priorities, and for what
    /// other clients of the same limit are estimated to use
    /// ([`PaceReason::Reserve`](crate::ratelimit::pacer::PaceReason::Reserve)). The server
    /// refused nothing; the request was not sent. Named so with the core's `diagnosis` feature
    /// (a default one); without it, this is a [`WaitTooLong`](GiveUpReason::WaitTooLong).
    ReservedForOthers {
        /// How long the pacer would hold the request.
        wait: Duration,
        /// The policy's `max_wait`.
        max: Duration,
    },
    /// credflow's pacing would hold the request longer than the policy accepts: it spreads what
    /// is left of the rate-limit window evenly until the reset, and the request's turn is that
    /// far away ([`PaceReason::Spacing`](crate::ratelimit::pacer::PaceReason::Spacing)). The
    /// server refused nothing; the request was not sent. Named so with the core's `diagnosis`
    /// feature (a default one); without it, this is a [`WaitTooLong`](GiveUpReason::WaitTooLong).
    SpacingTooLong {
        /// How long the pacer would hold the request.
        wait: Duration,
        /// The policy's `max_wait`.
        max: Duration,
    },
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GiveUpReason::NotIdempotent => f.write_str(
                "not retried: the request is not idempotent and may have been processed \
                 (mark it idempotent, e.g. with an idempotency key, to allow retries)",
            ),
            GiveUpReason::RetriesExhausted { retries } => {
                write!(f, "gave up after {retries} retries: the service keeps failing")
            }
            GiveUpReason::BudgetExhausted => f.write_str(
                "retry budget exhausted: many requests to this service are failing, \
                 and more retries would only add load",
            ),
            // Without `diagnosis`, credflow's own pacing gives up with this too: no claim that the
            // server asked.
            GiveUpReason::WaitTooLong { wait, max } if !cfg!(feature = "diagnosis") => write!(
                f,
                "the rate limit holds the request for {wait}, more than the {max} accepted: \
                 likely an hourly or daily quota is used up, or nearly"
            ),
            GiveUpReason::WaitTooLong { wait, max } => write!(
                f,
                "server asked to retry in {wait}, more than the {max} accepted: \
                 likely an hourly or daily quota is used up"
            ),
            GiveUpReason::PastDeadline { at, deadline } => {
                write!(f, "a retry at {at} would start after the request's deadline {deadline}")
            }
            GiveUpReason::ReservedForOthers { wait, max }
            | GiveUpReason::SpacingTooLong { wait, max } => {
                let how = if matches!(self, GiveUpReason::ReservedForOthers { .. }) {
                    "until its reset is kept for higher-priority requests and for other clients \
                     of the same limit"
                } else {
                    "is spread evenly until its reset, and this request's turn is that far"
                };
                write!(
                    f,
                    "held back by credflow's pacing for {wait}, more than the {max} accepted: \
                     what is left of the rate-limit window {how} (not sent; the server refused \
                     nothing)"
                )
            }
        }
    }
}

impl core::error::Error for GiveUpReason {}

impl GiveUpReason {
    /// The wait a rate limit asks for, where that is why the request was given up: the
    /// server's (`WaitTooLong`) or credflow's pacing's (`ReservedForOthers`, `SpacingTooLong`).
    /// What a caller should wait before trying again.
    pub const fn rate_limit_wait(&self) -> Option<Duration> {
        match self {
            GiveUpReason::WaitTooLong { wait, .. }
            | GiveUpReason::ReservedForOthers { wait, .. }
            | GiveUpReason::SpacingTooLong { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    /// A one-line explanation of the likely cause, for error messages.
    pub const fn likely_cause(&self) -> &'static str {
        match self {
            GiveUpReason::NotIdempotent => {
                "a non-idempotent request failed after it may have been processed"
            }
            GiveUpReason::RetriesExhausted { .. } => "the service kept failing through every retry",
            GiveUpReason::BudgetExhausted => {
                "many requests to this service are failing; retries were held back to spare it"
            }
            GiveUpReason::WaitTooLong { .. } if !cfg!(feature = "diagnosis") => {
                "an hourly or daily quota is used up, or nearly (the rate limit asks for a very \
                 long wait)"
            }
            GiveUpReason::WaitTooLong { .. } => {
                "an hourly or daily quota is used up (the server asked for a very long wait)"
            }
            GiveUpReason::PastDeadline { .. } => "the request's deadline left no time to retry",
            GiveUpReason::ReservedForOthers { .. } => {
                "the rate-limit window is nearly spent: what is left until it resets is kept for \
                 higher priorities and for other clients of the same client id"
            }
            GiveUpReason::SpacingTooLong { .. } => {
                "the rate-limit window is nearly spent and resets far away: what is left is \
                 spread over the time until then"
            }
        }
    }
}

impl RetryPolicy {
    /// Decides whether and when to retry `attempt`, which failed with `failure` at `now`.
    ///
    /// `retry_after` is the server's `Retry-After`, already turned into a delay from `now`. The
    /// caller deposits into `budget` once per *first* attempt; this withdraws once per retry it
    /// grants. `rng` supplies the backoff jitter.
    pub fn decide(
        &self,
        now: Instant,
        attempt: &Attempt,
        failure: Failure,
        retry_after: Option<Duration>,
        budget: &mut RetryBudget,
        rng: &mut Rng,
    ) -> RetryDecision {
        use GiveUpReason::*;
        let safe =
            failure.is_not_processed() || attempt.method.is_idempotent() || attempt.idempotent;
        if !safe {
            return RetryDecision::GiveUp(NotIdempotent);
        }
        if attempt.retries_done >= self.max_retries {
            return RetryDecision::GiveUp(RetriesExhausted { retries: attempt.retries_done });
        }
        let (wait, source) = match retry_after {
            Some(wait) if wait > self.max_wait => {
                return RetryDecision::GiveUp(WaitTooLong { wait, max: self.max_wait });
            }
            Some(wait) => (wait, WaitSource::ServerRetryAfter),
            None => (self.backoff.delay(attempt.retries_done, rng), WaitSource::Backoff),
        };
        let at = now.saturating_add(wait);
        if let Some(deadline) = attempt.deadline
            && at > deadline
        {
            return RetryDecision::GiveUp(PastDeadline { at, deadline });
        }
        if !budget.try_withdraw(now) {
            return RetryDecision::GiveUp(BudgetExhausted);
        }
        RetryDecision::RetryAt { at, wait, source }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::retry::budget::BudgetConfig;
    use crate::rng::Rng;
    use proptest::prelude::*;
    use std::string::ToString;

    const T0: Instant = Instant::from_secs(100);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn no_budget() -> RetryBudget {
        RetryBudget::new(BudgetConfig { min_per_sec: 0, ..BudgetConfig::default() })
    }

    /// Decides with a roomy budget and a fixed seed.
    fn decide(attempt: &Attempt, failure: Failure, retry_after: Option<Duration>) -> RetryDecision {
        RetryPolicy::default().decide(
            T0,
            attempt,
            failure,
            retry_after,
            &mut RetryBudget::default(),
            &mut Rng::new(1),
        )
    }

    fn give_up(reason: GiveUpReason) -> RetryDecision {
        RetryDecision::GiveUp(reason)
    }

    fn server_wait(wait: Duration) -> RetryDecision {
        RetryDecision::RetryAt { at: T0 + wait, wait, source: WaitSource::ServerRetryAfter }
    }

    #[test]
    fn get_on_5xx_backs_off_three_times_then_gives_up() {
        let policy = RetryPolicy::default();
        let (mut budget, mut rng) = (RetryBudget::default(), Rng::new(9));
        let mut attempt = Attempt::new(Method::Get);
        let mut now = T0;
        for retry in 0..3 {
            let d = policy.decide(now, &attempt, Failure::Transient, None, &mut budget, &mut rng);
            let RetryDecision::RetryAt { at, wait, source: WaitSource::Backoff } = d else {
                panic!("retry {retry}: {d:?}");
            };
            assert!(wait <= policy.backoff.ceiling(retry), "retry {retry}: {wait}");
            assert_eq!(at, now + wait);
            now = at + secs(1); // the retry itself takes a second and fails again
            attempt.retries_done += 1;
        }
        let last = policy.decide(now, &attempt, Failure::Transient, None, &mut budget, &mut rng);
        assert_eq!(last, give_up(GiveUpReason::RetriesExhausted { retries: 3 }));
    }

    #[test]
    fn post_is_retried_only_when_not_processed_or_vouched_for() {
        let post = Attempt::new(Method::Post);
        let no = give_up(GiveUpReason::NotIdempotent);
        assert_eq!(decide(&post, Failure::Transient, None), no);
        assert_eq!(decide(&post, Failure::Transient, Some(secs(1))), no);
        for kind in [TransportKind::Reset, TransportKind::Timeout, TransportKind::Other] {
            assert_eq!(decide(&post, Failure::Transport(kind), None), no);
            assert_eq!(decide(&Attempt::new(Method::Patch), Failure::Transport(kind), None), no);
        }
        assert_eq!(decide(&post, Failure::RateLimited, Some(secs(2))), server_wait(secs(2)));
        assert_eq!(
            decide(&post, Failure::TransientNotProcessed, Some(secs(5))),
            server_wait(secs(5))
        );
        let connect =
            decide(&Attempt::new(Method::Other), Failure::Transport(TransportKind::Connect), None);
        assert!(matches!(connect, RetryDecision::RetryAt { source: WaitSource::Backoff, .. }));
        let vouched = Attempt { idempotent: true, ..post };
        let timeout = decide(&vouched, Failure::Transport(TransportKind::Timeout), None);
        assert!(matches!(timeout, RetryDecision::RetryAt { .. }));
        for method in [Method::Get, Method::Head, Method::Put, Method::Delete, Method::Options] {
            let d = decide(&Attempt::new(method), Failure::Transport(TransportKind::Reset), None);
            assert!(matches!(d, RetryDecision::RetryAt { .. }), "{method:?}");
        }
    }

    #[test]
    fn retry_after_wins_up_to_max_wait_then_fails_fast() {
        let get = Attempt::new(Method::Get);
        assert_eq!(
            decide(&get, Failure::RateLimited, Some(Duration::ZERO)),
            server_wait(Duration::ZERO)
        );
        assert_eq!(decide(&get, Failure::Transient, Some(secs(60))), server_wait(secs(60)));
        let just_over = Duration::from_millis(60_001);
        assert_eq!(
            decide(&get, Failure::RateLimited, Some(just_over)),
            give_up(GiveUpReason::WaitTooLong { wait: just_over, max: secs(60) })
        );
        let daily = decide(&get, Failure::RateLimited, Some(secs(5 * 3600)));
        let RetryDecision::GiveUp(reason) = daily else { panic!("{daily:?}") };
        // Without `diagnosis`, a long hold of credflow's own pacing is a `WaitTooLong` too:
        // the text then claims no more than a rate limit's wait.
        let expected = if cfg!(feature = "diagnosis") {
            "server asked to retry in 5h00m, more than the 1m00s accepted: likely an hourly or daily quota is used up"
        } else {
            "the rate limit holds the request for 5h00m, more than the 1m00s accepted: likely an hourly or daily quota is used up, or nearly"
        };
        assert_eq!(reason.to_string(), expected);
    }

    #[test]
    fn a_rate_limit_wait_is_named_for_the_servers_limit_and_the_pacers_holds_only() {
        let (wait, max) = (secs(90), secs(60));
        for reason in [
            GiveUpReason::WaitTooLong { wait, max },
            GiveUpReason::ReservedForOthers { wait, max },
            GiveUpReason::SpacingTooLong { wait, max },
        ] {
            assert_eq!(reason.rate_limit_wait(), Some(wait), "{reason:?}");
        }
        let at = Instant::from_secs(1);
        for reason in [
            GiveUpReason::NotIdempotent,
            GiveUpReason::RetriesExhausted { retries: 3 },
            GiveUpReason::BudgetExhausted,
            GiveUpReason::PastDeadline { at, deadline: at },
        ] {
            assert_eq!(reason.rate_limit_wait(), None, "{reason:?}");
        }
    }

    #[test]
    fn a_retry_may_start_at_the_deadline_but_not_after() {
        let at_deadline = Attempt { deadline: Some(T0 + secs(3)), ..Attempt::new(Method::Get) };
        assert_eq!(decide(&at_deadline, Failure::RateLimited, Some(secs(3))), server_wait(secs(3)));
        let before = Attempt { deadline: Some(T0 + Duration::from_millis(2_999)), ..at_deadline };
        assert_eq!(
            decide(&before, Failure::RateLimited, Some(secs(3))),
            give_up(GiveUpReason::PastDeadline {
                at: T0 + secs(3),
                deadline: T0 + Duration::from_millis(2_999)
            })
        );
        let passed = Attempt { deadline: Some(T0 - secs(1)), ..at_deadline };
        assert!(matches!(
            decide(&passed, Failure::RateLimited, Some(Duration::ZERO)),
            RetryDecision::GiveUp(GiveUpReason::PastDeadline { .. })
        ));
    }

    #[test]
    fn budget_is_asked_last_and_only_charged_for_granted_retries() {
        let policy = RetryPolicy::default();
        let mut rng = Rng::new(3);
        let mut budget = no_budget();
        budget.deposit(T0);
        budget.deposit(T0);
        budget.deposit(T0);
        budget.deposit(T0);
        budget.deposit(T0); // 5 × 20 % = one retry
        let post = Attempt::new(Method::Post);
        let refused = [
            policy.decide(T0, &post, Failure::Transient, None, &mut budget, &mut rng),
            policy.decide(
                T0,
                &Attempt::new(Method::Get),
                Failure::RateLimited,
                Some(secs(3600)),
                &mut budget,
                &mut rng,
            ),
        ];
        assert!(refused.iter().all(|d| matches!(d, RetryDecision::GiveUp(_))));
        assert_eq!(budget.available(T0), 1);
        let get = Attempt::new(Method::Get);
        let first = policy.decide(T0, &get, Failure::Transient, None, &mut budget, &mut rng);
        assert!(matches!(first, RetryDecision::RetryAt { .. }));
        let second = policy.decide(T0, &get, Failure::Transient, None, &mut budget, &mut rng);
        assert_eq!(second, give_up(GiveUpReason::BudgetExhausted));
    }

    #[test]
    fn every_reason_explains_itself() {
        let reasons = [
            GiveUpReason::NotIdempotent,
            GiveUpReason::RetriesExhausted { retries: 3 },
            GiveUpReason::BudgetExhausted,
            GiveUpReason::WaitTooLong { wait: secs(7200), max: secs(60) },
            GiveUpReason::PastDeadline { at: T0, deadline: T0 - secs(1) },
        ];
        for r in reasons {
            let text = r.to_string();
            assert!(text.contains(':') || text.contains("deadline"), "{text}");
        }
        assert!(
            GiveUpReason::RetriesExhausted { retries: 3 }.to_string().contains("after 3 retries")
        );
    }

    fn failures() -> impl Strategy<Value = Failure> {
        prop_oneof![
            Just(Failure::Transient),
            Just(Failure::TransientNotProcessed),
            Just(Failure::RateLimited),
            Just(Failure::Transport(TransportKind::Connect)),
            Just(Failure::Transport(TransportKind::Reset)),
            Just(Failure::Transport(TransportKind::Timeout)),
            Just(Failure::Transport(TransportKind::Other)),
        ]
    }

    fn methods() -> impl Strategy<Value = Method> {
        prop_oneof![
            Just(Method::Get),
            Just(Method::Head),
            Just(Method::Put),
            Just(Method::Delete),
            Just(Method::Options),
            Just(Method::Post),
            Just(Method::Patch),
            Just(Method::Other),
        ]
    }

    proptest! {
        #[test]
        fn retries_are_never_early_late_or_too_long(
            now in any::<u64>(), method in methods(), idempotent in any::<bool>(),
            retries_done in 0u32..6, deadline in proptest::option::of(any::<u64>()),
            failure in failures(), retry_after in proptest::option::of(0u64..200_000),
            base in 0u64..100_000, cap in 0u64..100_000, max_wait in 0u64..100_000,
            seed in any::<u64>(),
        ) {
            let policy = RetryPolicy {
                max_retries: 3,
                backoff: Backoff { base: Duration::from_millis(base), cap: Duration::from_millis(cap), multiplier: 2 },
                max_wait: Duration::from_millis(max_wait),
            };
            let attempt = Attempt { method, idempotent, retries_done, deadline: deadline.map(Instant::from_millis) };
            let now = Instant::from_millis(now);
            let d = policy.decide(now, &attempt, failure, retry_after.map(Duration::from_millis),
                &mut RetryBudget::default(), &mut Rng::new(seed));
            if let RetryDecision::RetryAt { at, wait, .. } = d {
                prop_assert!(at >= now);
                prop_assert_eq!(at, now + wait);
                prop_assert!(attempt.deadline.is_none_or(|deadline| at <= deadline));
                prop_assert!(wait <= policy.backoff.cap.max(policy.max_wait));
                prop_assert!(retries_done < 3);
                prop_assert!(method.is_idempotent() || idempotent || failure.is_not_processed());
            }
        }
    }
}
