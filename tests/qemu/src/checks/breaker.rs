//! The circuit breaker (`core/src/breaker.rs`): Closed → Open → HalfOpen → Closed, with the
//! outcome window kept as bits of a `u64` (two registers here).

use credflow_core::breaker::{
    Admission, BreakerConfig, BreakerEvent, BreakerState, CircuitBreaker,
};
use credflow_core::rng::Rng;
use credflow_core::{Duration, Instant};

use crate::CheckResult;

const T0: Instant = Instant::from_secs(1_000);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Trips a default breaker with three failures at `now`; returns when it turns half-open.
fn tripped(b: &mut CircuitBreaker, now: Instant, rng: &mut Rng) -> Option<Instant> {
    for _ in 0..3 {
        if !b.check(now).is_admitted() {
            return None;
        }
        b.on_failure(now, rng);
    }
    b.next_change()
}

/// Three failures in a row open it for 5 s plus up to 20 % jitter; it rejects until T-1 and
/// lets one probe through at T.
pub(crate) fn trips_and_half_opens() -> CheckResult {
    let (mut b, mut rng) = (CircuitBreaker::default(), Rng::new(1));
    b.on_failure(T0, &mut rng);
    b.on_failure(T0, &mut rng);
    b.on_success(T0);
    b.on_failure(T0, &mut rng);
    b.on_failure(T0, &mut rng);
    ensure_eq!(b.state(), BreakerState::Closed);
    b.on_failure(T0, &mut rng);
    let until = some!(b.next_change());
    ensure!(until >= T0 + secs(5) && until < T0 + secs(6), "{until}");
    ensure_eq!(
        b.poll_event(),
        Some(BreakerEvent::Opened { until, cooldown: until - T0, trips: 1 })
    );
    ensure_eq!(b.check(until - Duration::from_millis(1)), Admission::Rejected { until });
    let Admission::Probe(ticket) = b.check(until) else {
        return Err(fail!("Admission::Probe"));
    };
    ensure_eq!(b.check(until), Admission::ProbeInFlight);
    ensure_eq!(b.poll_event(), Some(BreakerEvent::HalfOpened { at: until }));
    b.on_abandoned(until + secs(1), ticket);
    b.on_abandoned(until + secs(1), ticket);
    ensure_matches!(b.check(until + secs(2)), Admission::Probe(_));
    ensure_eq!(b.check(until + secs(2)), Admission::ProbeInFlight);
    b.on_success(until + secs(3));
    ensure_eq!(b.state(), BreakerState::Closed);
    ensure_eq!(b.poll_event(), Some(BreakerEvent::Closed { at: until + secs(3) }));
    ensure_eq!(b.poll_event(), None);
    Ok(())
}

/// Failed probes double the cooldown up to the 5 min cap; a success resets it. The event ring
/// keeps the latest 4 events (the session drains it after every call).
pub(crate) fn cooldown_doubles_to_the_cap() -> CheckResult {
    let (mut b, mut rng) = (CircuitBreaker::default(), Rng::new(4));
    let mut until = some!(tripped(&mut b, T0, &mut rng));
    for trips in 2..=12u32 {
        ensure_matches!(b.check(until), Admission::Probe(_));
        b.on_failure(until, &mut rng);
        let next = some!(b.next_change());
        let base = secs(5).saturating_mul(1 << (trips - 1)).min(secs(300));
        let cooldown = next - until;
        ensure!(
            cooldown >= base && cooldown < base + base.mul_permille(200),
            "trip {trips}: {cooldown}"
        );
        until = next;
    }
    let mut events = 0;
    while b.poll_event().is_some() {
        events += 1;
    }
    ensure_eq!(events, 4);
    ensure_matches!(b.check(until), Admission::Probe(_));
    b.on_success(until);
    let again = some!(tripped(&mut b, until, &mut rng));
    ensure!(again - until < secs(6), "trips were reset by the success: {}", again - until);
    Ok(())
}

/// The failure ratio trips only from `min_calls`, only on a failure, over the last `window`
/// outcomes; the largest window (64 outcomes, all bits of the `u64`) works as the others.
pub(crate) fn failure_ratio_window() -> CheckResult {
    let (mut b, mut rng) = (CircuitBreaker::default(), Rng::new(5));
    for _ in 0..4 {
        b.on_success(T0);
        b.on_failure(T0, &mut rng);
    }
    b.on_success(T0);
    ensure_eq!(b.state(), BreakerState::Closed);
    b.on_failure(T0, &mut rng);
    ensure_matches!(b.state(), BreakerState::Open { .. });

    let wide = BreakerConfig {
        consecutive_failures: 0,
        window: 64,
        min_calls: 64,
        failure_permille: 500,
        ..BreakerConfig::default()
    };
    ensure_eq!(wide.validate(), Ok(()));
    let mut b = CircuitBreaker::new(wide);
    // 63 outcomes, 32 failures: below min_calls.
    for i in 0..63u32 {
        if i % 2 == 0 {
            b.on_failure(T0, &mut rng);
        } else {
            b.on_success(T0);
        }
    }
    ensure_eq!(b.state(), BreakerState::Closed);
    b.on_success(T0); // 64 outcomes, 32 failures: successes never trip
    ensure_eq!(b.state(), BreakerState::Closed);
    b.on_success(T0); // the oldest failure slides out: 31 of 64
    b.on_failure(T0, &mut rng); // 32 of 64 = 50 %: trips
    ensure_matches!(b.state(), BreakerState::Open { .. });
    let mut fresh = CircuitBreaker::new(wide);
    for _ in 0..200 {
        fresh.on_success(T0);
    }
    for _ in 0..31 {
        fresh.on_failure(T0, &mut rng);
    }
    ensure_eq!(fresh.state(), BreakerState::Closed);
    fresh.on_failure(T0, &mut rng);
    ensure_matches!(fresh.state(), BreakerState::Open { .. });
    Ok(())
}
