//! The fleet's Lua scripts (`adapters/redis/src/scripts.rs`, run on the simulator's embedded
//! Lua 5.1 and keyspace) against the core's `Pacer`, on the same operation sequences: one
//! client's admissions by priority, the rate-limit headers its responses report, 429s, and time
//! passing.
//!
//! **What must match**, at every admission: whether the request goes now, and otherwise the
//! exact instant it may go and whether that instant is a 429's hold. The scripts are the
//! `Pacer` for a whole fleet (the same window reconciliation, spacing with a burst, reserve by
//! priority, exhaustion and 429 hold), and with one client the fleet is that client.
//!
//! **What is outside the comparison, and why:**
//! - *Reservations.* Asked with a horizon, the admission script counts a request for a slot
//!   ahead (the pods would otherwise all ask again at the same instant); the `Pacer` only
//!   answers "not before". Compared here with no horizon, where the script never reserves;
//!   that a reserved slot is the instant asking again would give is the second property here,
//!   `a_reserved_slot_is_where_asking_again_lands`.
//! - *Other clients.* The `Pacer` estimates how fast processes it does not see spend the shared
//!   limit (a server `remaining` below its own count) and holds that back too; the scripts
//!   count every process's sends, so they have no such estimate. The sequences here report a
//!   `remaining` no lower than the client's own count in the same window.
//! - *The longest hold.* The scripts cut a 429 hold to the pods' `max_wait` (a pod honours no
//!   longer wait, so the fleet relays none); the `Pacer` relies on the session's retry policy
//!   for that bound. The cap here is longer than any `Retry-After` sent.
//! - *A report after an unobserved reset.* Once the reset the last report named has passed,
//!   both roll the window over on their own (a full window of `limit`, one window later). The
//!   next report is then, for the scripts, the server's new window, taken as it is (the
//!   rollover was a guess, its length too when the server does not state it); the `Pacer`
//!   keeps the smaller of it and its own count, as within any window, which also guards
//!   against a late response. Such reports are left out of the sequences (neither sees them):
//!   the scripts' rule was measured on the fleet (`00bbf7d`), the `Pacer`'s is the
//!   conservative one for a process alone.
//! - *A forgotten window.* The rate hash expires when nothing wrote it for twice the window
//!   and a minute (Redis keeps no state forever); the fleet then knows no window until the
//!   next report, while the `Pacer` keeps rolling its own. A sequence is compared up to there.
//!
//! - *A later reset for the same window.* Resets come rounded up to a second; of two reports
//!   of one window the scripts keep the earlier reset (the tighter bound), the `Pacer` the
//!   latest. With one budget for the fleet the earlier is the better estimate (`00bbf7d`); the
//!   `Pacer` paces each process alone, and taking the earlier there lets independent pods'
//!   fresh windows start in step: in the simulator 17 → 28 429s of 4 500 requests in
//!   steady-overload, so it was not changed. Such reports are left out too.
//!
//! A disagreement this test found was a bug in the `Pacer`, fixed there: a bare 429 after an
//! unobserved reset paused everyone for a second instead of spending the window rolled into,
//! unless a send had rolled it already (`a_bare_429_after_a_reset_spends_the_rolled_window`).

use credflow_core::ratelimit::pacer::{Pace, PaceReason, Pacer, PacerConfig, Priority};
use credflow_core::ratelimit::{Dialect, RateLimitSnapshot};
use credflow_core::{Duration, Instant};
use credflow_sim::Ms;
use credflow_sim::redis::{Redis, Reply};
use proptest::prelude::*;

/// The pods' longest hold: beyond every `Retry-After` generated.
const CAP: Ms = 7 * 24 * 3600 * 1000;

#[derive(Clone, Debug)]
enum Op {
    /// Time passes, then a request of this priority asks to be sent.
    Admit { after: Ms, priority: Priority },
    /// A response reports the limit: `remaining` is `extra` above the client's own count (or
    /// `extra` itself when it has none).
    Observe { extra: u64, limit: Option<u64>, reset_after: Option<Ms>, window: Option<Ms> },
    /// A 429, with its `Retry-After`.
    RateLimited { retry_after: Option<Ms> },
    /// Time passes.
    Wait(Ms),
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![Just(Priority::Critical), Just(Priority::Normal), Just(Priority::Background)]
}

fn op() -> impl Strategy<Value = Op> {
    let seconds = |max: u64| prop_oneof![(0..=max).prop_map(|s| s * 1000), 0..=max * 1000];
    prop_oneof![
        6 => (prop_oneof![Just(0u64), 0..2_000u64], priority())
            .prop_map(|(after, priority)| Op::Admit { after, priority }),
        2 => (
            0..30u64,
            proptest::option::of(1..200u64),
            proptest::option::of(seconds(90)),
            proptest::option::of(prop_oneof![Just(60_000u64), 1..120_000u64]),
        )
            .prop_map(|(extra, limit, reset_after, window)| Op::Observe {
                extra,
                limit,
                reset_after,
                window
            }),
        1 => proptest::option::of(seconds(30)).prop_map(|retry_after| Op::RateLimited { retry_after }),
        1 => prop_oneof![0..5_000u64, 0..200_000u64].prop_map(Op::Wait),
    ]
}

fn config() -> impl Strategy<Value = PacerConfig> {
    (0..400u16, 0..600u16, 1..8u32, prop_oneof![Just(0u16), 0..300u16], 1..120u64).prop_map(
        |(critical, background, burst, burst_permille, window_s)| PacerConfig {
            critical_reserve_permille: critical,
            background_floor_permille: background,
            burst,
            burst_permille,
            default_window: Duration::from_secs(window_s),
            ..PacerConfig::default()
        },
    )
}

fn class(priority: Priority) -> u8 {
    match priority {
        Priority::Critical => 0,
        Priority::Normal => 1,
        Priority::Background => 2,
    }
}

/// Whether a report (its reset `reset_after` from `now`, its window) is one of the two kinds
/// the scripts and the `Pacer` reconcile differently (see the module docs): one after the
/// reset the last report named (the rate hash's `seen`), or one of the same window naming a
/// later reset.
fn reconciled_differently(
    redis: &mut Redis,
    now: Ms,
    reset_after: Option<Ms>,
    window: Option<Ms>,
) -> bool {
    let Reply::Array(fields) =
        redis.command(now, &["HMGET", "{rate}", "seen", "reset_at", "length"])
    else {
        return false;
    };
    let number = |i: usize| match fields.get(i) {
        Some(Reply::Bulk(n)) => String::from_utf8_lossy(n).parse::<u64>().ok(),
        _ => None,
    };
    let (Some(seen), Some(reset_at), Some(length)) = (number(0), number(1), number(2)) else {
        return false;
    };
    let now = Redis::EPOCH_MS + now;
    let length = window.unwrap_or(length).max(1);
    let reported = now + reset_after.unwrap_or(length);
    let slack = (length / 2).min(1000);
    seen <= now || (reset_at < reported && reported < reset_at + slack)
}

/// Runs `ops` through both; `Err` says where and how they first disagree.
fn agree(config: PacerConfig, ops: &[Op]) -> Result<(), String> {
    let mut redis = Redis::new();
    let mut pacer = Pacer::new(config);
    let mut now: Ms = 0;
    for (step, op) in ops.iter().enumerate() {
        if let Op::Admit { after, .. } = op {
            now += after;
        }
        let at = Instant::from_millis(now);
        if pacer.remaining(at).is_some()
            && redis.command(now, &["PTTL", "{rate}"]) == Reply::Int(-2)
        {
            // The rate hash expired: the fleet forgot the window (see the module docs).
            return Ok(());
        }
        match *op {
            Op::Admit { priority, .. } => {
                let script = redis.admission(now, class(priority), &config, 0, CAP);
                let pace = pacer.check(at, priority);
                let expected = match pace {
                    Pace::Now => (true, 0, false),
                    Pace::NotBefore { at: until, reason } => {
                        (false, until.as_millis() - now, reason == PaceReason::Backoff429)
                    }
                };
                if script != expected {
                    return Err(format!(
                        "step {step} at {now} ms, {priority:?}: script {script:?}, pacer {pace:?}"
                    ));
                }
                if pace == Pace::Now {
                    pacer.on_send(at, priority);
                }
            }
            Op::Observe { extra, limit, reset_after, window } => {
                if reconciled_differently(&mut redis, now, reset_after, window) {
                    continue;
                }
                let remaining = pacer.remaining(at).unwrap_or(0) + extra;
                redis.observe(
                    now,
                    remaining,
                    limit,
                    reset_after,
                    window,
                    config.default_window.as_millis(),
                );
                pacer.observe(
                    at,
                    &RateLimitSnapshot {
                        limit,
                        remaining: Some(remaining),
                        reset_after: reset_after.map(Duration::from_millis),
                        window: window.map(Duration::from_millis),
                        dialect: Dialect::Genesys,
                    },
                );
            }
            Op::RateLimited { retry_after } => {
                redis.rate_limited(now, retry_after, CAP);
                pacer.on_rate_limited(at, retry_after.map(Duration::from_millis));
            }
            Op::Wait(ms) => now += ms,
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The scripts and the `Pacer` answer every admission alike.
    #[test]
    fn the_scripts_pace_one_client_as_the_pacer_does(
        config in config(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        if let Err(e) = agree(config, &ops) {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// A reserved slot is the instant asking again would have been admitted at: requests of one
/// priority, asked in turn by one client that sleeps until each wait ends and asks again (no
/// horizon), and asked all at once with a horizon, get the same send instants, as far as the
/// script reserves, and while the slots come in order. Out of order, the client asking in turn
/// cannot ask before the request ahead of it went: of several priorities, a Critical request
/// behind a spaced Normal one; within one, a request the burst lets in before the slot
/// reserved ahead of it (the burst's tolerance is `burst - 1` emission intervals, and the
/// interval grows as the quota shrinks, in the `Pacer` too).
fn reserves_as_asking_again(
    config: PacerConfig,
    (limit, remaining, reset_s, window_s): (u64, u64, u64, u64),
    priorities: &[Priority],
) -> Result<(), String> {
    let (mut asking, mut reserving) = (Redis::new(), Redis::new());
    for r in [&mut asking, &mut reserving] {
        r.observe(0, remaining, Some(limit), Some(reset_s * 1000), Some(window_s * 1000), 60_000);
    }
    let mut now = 0;
    for (i, &priority) in priorities.iter().enumerate() {
        let class = class(priority);
        let (counted, slot, _) = reserving.admission(0, class, &config, CAP, CAP);
        if !counted || slot < now {
            // Not reserved (the window's last second, or its end: asked again later), or out
            // of order (see above).
            return Ok(());
        }
        loop {
            match asking.admission(now, class, &config, 0, CAP) {
                (true, 0, _) => break,
                (false, wait, _) if wait > 0 => now += wait,
                other => return Err(format!("request {i}: asking answered {other:?} at {now}")),
            }
        }
        if slot != now {
            return Err(format!(
                "request {i} ({priority:?}): reserved {slot} ms, asking again {now} ms"
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn a_reserved_slot_is_where_asking_again_lands(
        config in config(),
        window in (1..100u64, 0..100u64, 1..120u64, 1..120u64)
            .prop_map(|(limit, left, reset_s, window_s)| (limit, left.min(limit), reset_s, window_s)),
        priorities in (priority(), 1..30usize).prop_map(|(p, n)| vec![p; n]),
    ) {
        if let Err(e) = reserves_as_asking_again(config, window, &priorities) {
            return Err(TestCaseError::fail(e));
        }
    }
}
