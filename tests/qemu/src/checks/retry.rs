//! Retries (`core/src/retry/`): backoff bounds, the sliding-window budget, and decisions.

use credflow_core::http::Method;
use credflow_core::retry::backoff::{Backoff, BackoffError};
use credflow_core::retry::budget::{BudgetConfig, RetryBudget};
use credflow_core::retry::policy::{
    Attempt, Failure, GiveUpReason, RetryDecision, RetryPolicy, TransportKind, WaitSource,
};
use credflow_core::rng::Rng;
use credflow_core::{Duration, Instant};

use crate::{CheckResult, shown};

const T0: Instant = Instant::from_secs(100);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn at(v: u64) -> Instant {
    Instant::from_millis(v)
}

/// Ceilings double from 500 ms to the 30 s cap and saturate for any retry number.
pub(crate) fn backoff_ceilings() -> CheckResult {
    let b = Backoff::default();
    ensure_eq!(b.validate(), Ok(()));
    let mut ceilings = [0u64; 8];
    for (retry, slot) in (0u32..).zip(ceilings.iter_mut()) {
        *slot = b.ceiling(retry).as_millis();
    }
    ensure_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    let huge = Backoff { base: Duration::MAX, cap: Duration::MAX, multiplier: u32::MAX };
    ensure_eq!((huge.ceiling(u32::MAX), huge.ceiling(0)), (Duration::MAX, Duration::MAX));
    let b1 = Backoff { base: ms(1), cap: Duration::MAX, multiplier: 2 };
    ensure_eq!(
        (b1.ceiling(31), b1.ceiling(32), b1.ceiling(63)),
        (ms(1 << 31), ms(1 << 32), ms(1 << 63))
    );
    ensure_eq!(b1.ceiling(64), Duration::MAX);
    ensure_eq!(Backoff::default().ceiling(u32::MAX), Duration::from_secs(30));
    let swapped = Backoff { base: Duration::from_secs(30), cap: ms(500), multiplier: 2 };
    let err = some!(swapped.validate().err());
    ensure_eq!(err, BackoffError::BaseAboveCap { base: Duration::from_secs(30), cap: ms(500) });
    ensure!(shown::<128>(err).contains("30s exceeds cap 500ms"));
    Ok(())
}

/// Full jitter stays within `[0, ceiling]` and reaches both ends (seeded draws, 64-bit bounds).
pub(crate) fn backoff_jitter_bounds() -> CheckResult {
    let small = Backoff { base: ms(3), cap: ms(3), multiplier: 2 };
    let mut rng = Rng::new(1);
    let mut seen = [false; 4];
    for _ in 0..200 {
        let d = small.delay(0, &mut rng).as_millis();
        let slot = some!(usize::try_from(d).ok().and_then(|i| seen.get_mut(i)));
        *slot = true;
    }
    ensure_eq!(seen, [true; 4]);
    let mut rng = Rng::new(0xb0ff);
    for i in 0..2000u32 {
        let base = ms(rng.below(u64::MAX).max(1));
        let cap = ms(rng.below(u64::MAX));
        let b = Backoff { base, cap, multiplier: u32::try_from(rng.below(7)).unwrap_or(2) };
        let retry = i % 70;
        let d = b.delay(retry, &mut rng);
        ensure!(d <= b.ceiling(retry) && d <= b.cap, "{b:?} retry {retry}: {d}");
    }
    Ok(())
}

/// The budget: a reserve of `min_per_sec × window`, deposits buying retries at 20 %, slots
/// forgotten after the window (T-1 and T), and no overflow at `u64::MAX` milliseconds.
pub(crate) fn retry_budget() -> CheckResult {
    let mut b = RetryBudget::default();
    ensure_eq!(b.available(at(5_000)), 10);
    for _ in 0..10 {
        ensure!(b.try_withdraw(at(5_000)));
    }
    ensure!(!b.try_withdraw(at(5_000)));
    ensure!(!b.try_withdraw(at(14_999)));
    ensure_eq!(b.available(at(15_000)), 10);
    let mut b = RetryBudget::new(BudgetConfig {
        window: Duration::from_secs(10),
        retry_permille: 200,
        min_per_sec: 0,
    });
    for _ in 0..10 {
        b.deposit(at(1_000));
    }
    ensure_eq!((b.available(at(10_999)), b.available(at(11_000))), (2, 0));
    let mut extreme = RetryBudget::new(BudgetConfig {
        window: Duration::from_secs(10),
        retry_permille: u16::MAX,
        min_per_sec: u32::MAX,
    });
    for t in [0, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
        extreme.deposit(at(t));
        ensure!(extreme.try_withdraw(at(t)), "{t}");
    }
    Ok(())
}

/// Decisions: GET backs off three times then gives up; POST only when not processed; a
/// `Retry-After` wins up to `max_wait`; a retry may start at the deadline, not after.
pub(crate) fn retry_decisions() -> CheckResult {
    let policy = RetryPolicy::default();
    let (mut budget, mut rng) = (RetryBudget::default(), Rng::new(9));
    let mut attempt = Attempt::new(Method::Get);
    let mut now = T0;
    for retry in 0..3 {
        match policy.decide(now, &attempt, Failure::Transient, None, &mut budget, &mut rng) {
            RetryDecision::RetryAt { at, wait, source: WaitSource::Backoff } => {
                ensure!(
                    wait <= policy.backoff.ceiling(retry) && at == now + wait,
                    "{retry}: {wait}"
                );
                now = at + Duration::from_secs(1);
            }
            other => {
                return Err(
                    fail!("a backoff retry").with_detail(format_args!("{retry}: {other:?}"))
                );
            }
        }
        attempt.retries_done += 1;
    }
    ensure_eq!(
        policy.decide(now, &attempt, Failure::Transient, None, &mut budget, &mut rng),
        RetryDecision::GiveUp(GiveUpReason::RetriesExhausted { retries: 3 })
    );
    let decide = |attempt: &Attempt, failure, retry_after| {
        policy.decide(
            T0,
            attempt,
            failure,
            retry_after,
            &mut RetryBudget::default(),
            &mut Rng::new(1),
        )
    };
    let post = Attempt::new(Method::Post);
    let server = |wait: Duration| RetryDecision::RetryAt {
        at: T0 + wait,
        wait,
        source: WaitSource::ServerRetryAfter,
    };
    ensure_eq!(
        decide(&post, Failure::Transient, None),
        RetryDecision::GiveUp(GiveUpReason::NotIdempotent)
    );
    ensure_eq!(
        decide(&post, Failure::Transport(TransportKind::Timeout), None),
        RetryDecision::GiveUp(GiveUpReason::NotIdempotent)
    );
    ensure_eq!(decide(&post, Failure::RateLimited, Some(ms(2000))), server(ms(2000)));
    ensure_matches!(
        decide(&post, Failure::Transport(TransportKind::Connect), None),
        RetryDecision::RetryAt { .. }
    );
    let get = Attempt::new(Method::Get);
    ensure_eq!(
        decide(&get, Failure::Transient, Some(Duration::from_secs(60))),
        server(Duration::from_secs(60))
    );
    ensure_eq!(
        decide(&get, Failure::RateLimited, Some(ms(60_001))),
        RetryDecision::GiveUp(GiveUpReason::WaitTooLong {
            wait: ms(60_001),
            max: Duration::from_secs(60)
        })
    );
    let at_deadline = Attempt { deadline: Some(T0 + ms(3000)), ..get };
    ensure_eq!(decide(&at_deadline, Failure::RateLimited, Some(ms(3000))), server(ms(3000)));
    let before = Attempt { deadline: Some(T0 + ms(2999)), ..get };
    ensure_eq!(
        decide(&before, Failure::RateLimited, Some(ms(3000))),
        RetryDecision::GiveUp(GiveUpReason::PastDeadline {
            at: T0 + ms(3000),
            deadline: T0 + ms(2999)
        })
    );
    Ok(())
}
