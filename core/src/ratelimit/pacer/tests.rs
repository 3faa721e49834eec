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
    assert!(matches!(p.check(now, Critical), Pace::NotBefore { reason: PaceReason::Reserve, .. }));
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
    assert_eq!(p.check(T0 + secs(10), Critical), not_before(T0 + secs(70), PaceReason::Exhausted));
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
    assert_eq!(q.check(T0 + secs(1), Critical), not_before(T0 + secs(30), PaceReason::Exhausted));
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
    let bare = RateLimitSnapshot { limit: None, reset_after: None, window: None, ..snap(0, 5, 0) };
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
        let s = RateLimitSnapshot { window: Some(Duration::ZERO), ..snap(limit, remaining, reset) };
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
    let table =
        [(1000, 0, 300), (1000, 199, 300), (1000, 200, 700), (1000, 499, 700), (1000, 500, 1000)];
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
            assert!(sent * 100 >= limit * 95, "limit {limit}, latency {latency}: {per_window:?}");
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

/// One quota probe per `max_wait`: the first at once, the next exactly `max_wait` after it (not
/// 1 ms before), and a 429 defers it to `max_wait` after the 429.
#[test]
fn one_quota_probe_per_max_wait_and_none_right_after_a_429() {
    let mut p = pacer(1);
    let max_wait = secs(60);
    assert!(p.take_quota_probe(T0, max_wait));
    assert!(!p.take_quota_probe(T0 + secs(60) - ms(1), max_wait));
    assert!(p.take_quota_probe(T0 + secs(60), max_wait));
    p.defer_quota_probe(T0 + secs(100), max_wait);
    assert!(!p.take_quota_probe(T0 + secs(160) - ms(1), max_wait));
    assert!(p.take_quota_probe(T0 + secs(160), max_wait));
}
