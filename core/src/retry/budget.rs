//! *How much* retrying overall: a budget shared by every request to one service.
//!
//! Per-request limits (`max_retries`) do not stop a retry storm: when a service degrades, every
//! request retries, and the load triples just when the service can least take it (the
//! apache/opendal #7376 incident). A budget caps retries as a fraction of recent first attempts,
//! after Finagle and tower's `TpsBudget`, but sans-IO: time is an argument, never read.
//!
//! # The math
//!
//! Accounting is in *milli-retries* so that every quantity is an integer:
//!
//! - each first attempt ([`RetryBudget::deposit`]) adds `retry_permille` (200 = one fifth of a retry);
//! - each retry ([`RetryBudget::try_withdraw`]) costs 1000, and is allowed only if the balance
//!   is at least 1000;
//! - a constant *reserve* of `min_per_sec × window` retries (`min_per_sec × window_ms`
//!   milli-retries) lets quiet clients retry at all.
//!
//! Deposits and withdrawals are recorded in a ring of [`SLOTS`] slots of `window / SLOTS` each
//! (at least 1 ms), aligned on multiples of the slot length; a slot is forgotten once it is
//! [`SLOTS`] slots old. So at every allowed retry at time `t`, counting the events in the slots
//! still held (the *aligned window*, which covers at least the last `window - window/SLOTS` and
//! at most the last `window`):
//!
//! ```text
//! 1000 × retries  ≤  reserve + retry_permille × first_attempts
//! ```
//!
//! With the defaults (10 s, 20 %, 1/s): at most 10 retries plus one per five first attempts in
//! any 10 s. Time that goes backwards counts as the newest slot; a jump of a window or more
//! forgets everything. Sums saturate; nothing overflows.
//!
//! ```
//! use credflow_core::retry::budget::{BudgetConfig, RetryBudget};
//! use credflow_core::Instant;
//!
//! let config = BudgetConfig { min_per_sec: 0, ..BudgetConfig::default() };
//! let mut budget = RetryBudget::new(config);
//! let now = Instant::from_secs(1);
//! for _ in 0..5 {
//!     budget.deposit(now); // five first attempts buy one retry at 20 %
//! }
//! assert!(budget.try_withdraw(now));
//! assert!(!budget.try_withdraw(now));
//! ```

use crate::time::{Duration, Instant, div_rem, mul_sat};

/// Number of slots in the ring: the window is forgotten in steps of a tenth.
pub const SLOTS: usize = 10;

/// Cost of one retry, in milli-retries.
const RETRY_COST: i64 = 1000;

/// Configuration of a [`RetryBudget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BudgetConfig {
    /// How long a first attempt counts towards retries. Default 10 s (tower's and Finagle's).
    pub window: Duration,
    /// Retries each first attempt buys, in thousandths. Default 200: retries may add 20 % on top
    /// of first attempts.
    pub retry_permille: u16,
    /// Retries per second allowed regardless of traffic, so that a client sending one request a
    /// minute may still retry it. Default 1 (10 per 10 s window; tower's 10/s suits a busy
    /// proxy, not one client of one API).
    pub min_per_sec: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig { window: Duration::from_secs(10), retry_permille: 200, min_per_sec: 1 }
    }
}

/// A sliding-window retry budget; see the [module docs](self) for the exact bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryBudget {
    config: BudgetConfig,
    /// Net milli-retries per slot: `+retry_permille` per deposit, `-1000` per withdrawal.
    slots: [i64; SLOTS],
    /// Number (time / `slot_ms`) of the newest slot.
    epoch: u64,
    /// Slot length in milliseconds, at least 1.
    slot_ms: u64,
    /// Milli-retries always available per window.
    reserve: i64,
}

impl RetryBudget {
    /// An empty budget (only the reserve is available).
    pub fn new(config: BudgetConfig) -> Self {
        let window_ms = config.window.as_millis();
        let slot_ms = div_rem(window_ms, SLOTS as u64).map_or(0, |(q, _)| q).max(1);
        // Both factors are non-negative: the unsigned product (out of line), capped at
        // `i64::MAX`, is the signed saturating one.
        let reserve =
            i64::try_from(mul_sat(u64::from(config.min_per_sec), window_ms)).unwrap_or(i64::MAX);
        RetryBudget { config, slots: [0; SLOTS], epoch: 0, slot_ms, reserve }
    }

    /// The configuration this budget was built with.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// Records a first attempt (not a retry) at `now`.
    pub fn deposit(&mut self, now: Instant) {
        let gain = i64::from(self.config.retry_permille);
        self.add(now, gain);
    }

    /// Takes one retry from the budget at `now`, if the budget allows it.
    ///
    /// Call it only once everything else agreed to retry: a withdrawal is spent even if the retry
    /// is then not sent.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        self.advance(now);
        let ok = self.balance() >= RETRY_COST;
        if ok {
            self.add(now, RETRY_COST.saturating_neg());
        }
        ok
    }

    /// How many retries [`try_withdraw`](Self::try_withdraw) would allow at `now`, with no
    /// deposits in between (for metrics and logs).
    pub fn available(&self, now: Instant) -> u32 {
        let mut at_now = self.clone();
        at_now.advance(now);
        u32::try_from(at_now.balance().max(0) / RETRY_COST).unwrap_or(u32::MAX)
    }

    /// Records `count` first attempts made at `at`, possibly earlier than the budget's latest
    /// input: each is counted in `at`'s own slot as long as that slot is still held (as if it
    /// had been recorded in order), and not at all once the window has forgotten that slot.
    /// (An in-order [`deposit`](Self::deposit) of a time gone backwards counts in the newest
    /// slot instead.) For first attempts reported together after they were made (a session's
    /// [`settle_lane`](crate::session::Session::settle_lane)).
    pub(crate) fn deposit_many(&mut self, at: Instant, count: u64) {
        let gain = mul_sat(u64::from(self.config.retry_permille), count);
        let gain = i64::try_from(gain).unwrap_or(i64::MAX);
        let epoch = div_rem(at.as_millis(), self.slot_ms).map_or(0, |(q, _)| q);
        if epoch >= self.epoch {
            self.add(at, gain);
        } else if self.epoch.saturating_sub(epoch) < SLOTS as u64
            && let Some(slot) = self.slots.get_mut(index(epoch))
        {
            *slot = slot.saturating_add(gain);
        }
    }

    /// The end of the slot `at` falls in: every deposit from `at` until then counts in one
    /// slot.
    pub(crate) fn slot_end(&self, at: Instant) -> Instant {
        let epoch = div_rem(at.as_millis(), self.slot_ms).map_or(0, |(q, _)| q);
        Instant::from_millis(mul_sat(epoch.saturating_add(1), self.slot_ms))
    }

    fn add(&mut self, now: Instant, amount: i64) {
        self.advance(now);
        if let Some(slot) = self.slots.get_mut(index(self.epoch)) {
            *slot = slot.saturating_add(amount);
        }
    }

    /// Moves the newest slot to `now`'s, clearing the slots that fell out of the window.
    fn advance(&mut self, now: Instant) {
        let epoch = div_rem(now.as_millis(), self.slot_ms).map_or(0, |(q, _)| q);
        let Some(gap) = epoch.checked_sub(self.epoch).filter(|&gap| gap > 0) else {
            return; // same slot, or time went backwards: stay in the newest slot
        };
        let gap = usize::try_from(gap).unwrap_or(SLOTS);
        if gap >= SLOTS {
            self.slots = [0; SLOTS];
        } else {
            // The slots after the newest, around the ring: one division, not one per slot.
            let mut i = index(self.epoch);
            for _ in 0..gap {
                i = i.saturating_add(1);
                if i >= SLOTS {
                    i = 0;
                }
                if let Some(slot) = self.slots.get_mut(i) {
                    *slot = 0;
                }
            }
        }
        self.epoch = epoch;
    }

    fn balance(&self) -> i64 {
        self.slots.iter().fold(self.reserve, |sum, &slot| sum.saturating_add(slot))
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new(BudgetConfig::default())
    }
}

/// Position of slot number `epoch` in the ring.
fn index(epoch: u64) -> usize {
    div_rem(epoch, SLOTS as u64).and_then(|(_, i)| usize::try_from(i).ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn budget(window_s: u64, permille: u16, min_per_sec: u32) -> RetryBudget {
        RetryBudget::new(BudgetConfig {
            window: Duration::from_secs(window_s),
            retry_permille: permille,
            min_per_sec,
        })
    }

    #[test]
    fn empty_budget_without_reserve_refuses() {
        let mut b = budget(10, 200, 0);
        assert!(!b.try_withdraw(at(0)));
        assert_eq!(b.available(at(0)), 0);
    }

    #[test]
    fn reserve_allows_min_per_sec_times_window_then_refills_as_it_ages() {
        let mut b = RetryBudget::default(); // 1/s × 10 s
        assert_eq!(b.available(at(5_000)), 10);
        for _ in 0..10 {
            assert!(b.try_withdraw(at(5_000)));
        }
        assert!(!b.try_withdraw(at(5_000)));
        // The withdrawals sit in slot 5 (5.0..6.0 s), forgotten once it is 10 slots old: 15 s.
        assert!(!b.try_withdraw(at(14_999)));
        assert_eq!(b.available(at(15_000)), 10);
        assert!(b.try_withdraw(at(15_000)));
    }

    #[test]
    fn deposits_buy_retries_at_the_ratio_and_expire_after_the_window() {
        let mut b = budget(10, 200, 0);
        for _ in 0..10 {
            b.deposit(at(1_000));
        }
        assert_eq!(b.available(at(1_000)), 2);
        assert_eq!(b.available(at(10_999)), 2); // T-1: slot 1 still held
        assert_eq!(b.available(at(11_000)), 0); // T: slot 1 is 10 slots old
        assert!(b.try_withdraw(at(10_999)));
        assert!(b.try_withdraw(at(10_999)));
        assert!(!b.try_withdraw(at(10_999)));
    }

    #[test]
    fn retries_backed_by_expired_deposits_still_count_against_new_ones() {
        let mut b = budget(10, 1000, 0);
        b.deposit(at(0));
        assert!(b.try_withdraw(at(9_000)));
        b.deposit(at(10_000)); // slot 0 forgotten; the retry in slot 9 is not
        assert!(!b.try_withdraw(at(10_000)));
        assert!(b.try_withdraw(at(19_000))); // slot 9 forgotten
    }

    #[test]
    fn time_going_backwards_counts_as_the_newest_slot() {
        let mut b = budget(10, 1000, 0);
        b.deposit(at(50_000));
        assert!(b.try_withdraw(at(3_000)));
        assert!(!b.try_withdraw(at(0)));
        assert_eq!(b.available(at(59_999)), 0);
    }

    /// Moving on by `gap` slots forgets exactly the `gap` oldest, from every position in the
    /// ring (including around its end).
    #[test]
    fn moving_on_forgets_exactly_the_oldest_slots() {
        for start in 0..SLOTS as u64 {
            for gap in 0..=SLOTS as u64 + 1 {
                // Ten 1 ms slots, a deposit (one retry) in each.
                let window = Duration::from_millis(10);
                let mut b =
                    RetryBudget::new(BudgetConfig { window, retry_permille: 1000, min_per_sec: 0 });
                for t in start..start + SLOTS as u64 {
                    b.deposit(at(t));
                }
                let newest = start + SLOTS as u64 - 1;
                let kept = (SLOTS as u64).saturating_sub(gap);
                assert_eq!(u64::from(b.available(at(newest + gap))), kept, "{start} {gap}");
            }
        }
    }

    /// The reserve is `min_per_sec × window_ms`, saturating at `i64::MAX`, whatever the sizes.
    #[test]
    fn the_reserve_is_the_saturating_product() {
        let reserve = |min_per_sec: u32, window_ms: u64| {
            let config = BudgetConfig {
                window: Duration::from_millis(window_ms),
                retry_permille: 0,
                min_per_sec,
            };
            RetryBudget::new(config).reserve
        };
        let signed_max = i64::MAX as u64;
        assert_eq!(reserve(3, 10_000), 30_000);
        assert_eq!(reserve(0, u64::MAX), 0);
        assert_eq!(reserve(u32::MAX, 0), 0);
        assert_eq!(reserve(1, signed_max), i64::MAX);
        assert_eq!(reserve(1, signed_max + 1), i64::MAX);
        assert_eq!(reserve(2, signed_max / 2), i64::MAX - 1);
        assert_eq!(reserve(2, signed_max / 2 + 1), i64::MAX);
        assert_eq!(reserve(u32::MAX, u64::MAX), i64::MAX);
        assert_eq!(reserve(u32::MAX, 1 << 31), i64::from(u32::MAX) << 31);
        assert_eq!(reserve(u32::MAX, 1 << 33), i64::MAX);
    }

    #[test]
    fn huge_jumps_and_extreme_configs_do_not_overflow() {
        let mut b = budget(10, u16::MAX, u32::MAX);
        for t in [0, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            b.deposit(at(t));
            assert!(b.try_withdraw(at(t)));
        }
        let mut tiny = RetryBudget::new(BudgetConfig {
            window: Duration::ZERO,
            retry_permille: 1000,
            min_per_sec: 0,
        });
        tiny.deposit(at(7));
        assert!(tiny.try_withdraw(at(16)));
        assert!(!tiny.try_withdraw(at(16)));
        tiny.deposit(at(7)); // recorded in the newest slot (16), forgotten from 26
        assert!(!tiny.try_withdraw(at(27)));
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Deposit,
        Withdraw,
    }

    fn ops() -> impl Strategy<Value = Vec<(u64, bool, Op)>> {
        let op = prop_oneof![3 => Just(Op::Deposit), 2 => Just(Op::Withdraw)];
        // (time step in ms, step backwards?, operation)
        proptest::collection::vec((0u64..3_000, proptest::bool::weighted(0.1), op), 0..300)
    }

    proptest! {
        /// Exact agreement with a model that keeps every event and recounts the aligned window.
        #[test]
        fn matches_a_model_that_keeps_every_event(
            window_ms in 10u64..20_000, permille in 0u16..3000, min_per_sec in 0u32..3, ops in ops(),
        ) {
            let config = BudgetConfig { window: Duration::from_millis(window_ms), retry_permille: permille, min_per_sec };
            let mut b = RetryBudget::new(config);
            let slot = window_ms / SLOTS as u64;
            let reserve = i64::from(min_per_sec) * window_ms as i64;
            let mut events: Vec<(u64, Op)> = Vec::new(); // (slot number, op)
            let (mut t, mut newest) = (0u64, 0u64);
            for (step, back, op) in ops {
                t = if back { t.saturating_sub(step) } else { t + step };
                newest = newest.max(t / slot);
                let held = |e: &&(u64, Op)| e.0 + SLOTS as u64 > newest;
                let deposits = events.iter().filter(held).filter(|e| matches!(e.1, Op::Deposit)).count() as i64;
                let retries = events.iter().filter(held).filter(|e| matches!(e.1, Op::Withdraw)).count() as i64;
                let allowance = reserve + i64::from(permille) * deposits - 1000 * retries;
                prop_assert_eq!(b.available(at(t)) as i64, allowance.max(0) / 1000);
                match op {
                    Op::Deposit => b.deposit(at(t)),
                    Op::Withdraw => {
                        let allowed = b.try_withdraw(at(t));
                        prop_assert_eq!(allowed, allowance >= 1000);
                        if !allowed { continue; }
                    }
                }
                events.push((newest, op));
            }
        }

        /// The contract in real time, with its tolerance of one slot: at every allowed retry at
        /// `t`, `1000 × retries in (t - window + slot, t] ≤ reserve + permille × first attempts
        /// in (t - window, t]`.
        #[test]
        fn retries_in_a_window_are_bounded_by_floor_plus_ratio(
            permille in 0u16..3000, min_per_sec in 0u32..3, ops in ops(),
        ) {
            let window_ms = 10_000u64;
            let slot = window_ms / SLOTS as u64;
            let config = BudgetConfig { window: Duration::from_millis(window_ms), retry_permille: permille, min_per_sec };
            let mut b = RetryBudget::new(config);
            let reserve = u64::from(min_per_sec) * window_ms;
            let (mut deposits, mut retries) = (Vec::new(), Vec::new());
            let mut t = 0u64;
            for (step, _, op) in ops {
                t += step;
                match op {
                    Op::Deposit => { b.deposit(at(t)); deposits.push(t); }
                    Op::Withdraw => if b.try_withdraw(at(t)) {
                        retries.push(t);
                        let since = |from: u64| move |&&e: &&u64| e + from > t;
                        let r = retries.iter().filter(since(window_ms - slot)).count() as u64;
                        let d = deposits.iter().filter(since(window_ms)).count() as u64;
                        prop_assert!(1000 * r <= reserve + u64::from(permille) * d, "t={} r={} d={}", t, r, d);
                    }
                }
            }
        }
    }
}
