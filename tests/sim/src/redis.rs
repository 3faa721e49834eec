//! The Redis of `credflow-redis`, simulated: the three keys of one client id and the Lua scripts
//! that decide on them (`adapters/redis/src/scripts.rs`), ported line by line to integer
//! milliseconds on the simulator's clock.
//!
//! - **Token key** (`GET`, and `SET … PX` in the publish script): the fleet's token with its
//!   absolute expiry; it disappears when its time to live runs out.
//! - **Lease key** (`SET NX PX` in the acquire script, compare-and-delete in publish/release):
//!   the right to refresh for the fleet, identified by a fencing value.
//! - **Rate hash** (admit, observe and 429 scripts): the fleet's window (`limit`, `remaining`,
//!   `reset_at`, `length`, GCRA `tat` and `interval`) and `blocked_until`, rolled over at the
//!   reset, expiring `2 × length + 60 s` after its last save. `blocked_until` never lies more
//!   than the longest hold (the pods' `max_wait`) ahead: the 429 script writes no longer hold,
//!   and the admission and hold scripts cut a longer one (`bound_hold`).
//!
//! **Latency.** Every call costs one round trip of [`RTT`] (1 ms: Redis on the same network, as
//! in a cluster beside the pods). A script runs atomically at the instant it is called, on the
//! simulator's clock (the scripts read Redis's `TIME`; here every clock is the same one), and the
//! caller sees its answer one round trip later. Reports after a response are fire-and-forget in
//! the adapter: they run one round trip after the response (`observe`, then the 429 report one
//! round trip after that), and nobody waits for them.
//!
//! Redis itself never fails here: degraded mode is tested against a real `redis-server`
//! (`adapters/redis/tests/fleet.rs`), not simulated.

use credflow_core::UnixTime;

use crate::Ms;

/// One Redis round trip.
pub const RTT: Ms = 1;

/// The store's timing, `RedisConfig`'s defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StoreTiming {
    /// A refresh lease lasts this long if its holder never publishes.
    pub(crate) lease_ttl: Ms,
    /// A pod waiting for another's refresh looks again this often.
    pub(crate) poll_interval: Ms,
    /// Longest a pod waits for others' refreshes before fetching on its own.
    pub(crate) max_wait: Ms,
}

impl Default for StoreTiming {
    fn default() -> Self {
        StoreTiming { lease_ttl: 15_000, poll_interval: 50, max_wait: 20_000 }
    }
}

/// The token as the token key holds it (sealing is not simulated: it changes no decision).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredToken {
    /// The access token.
    pub(crate) token: String,
    /// Its absolute expiry, wall clock.
    pub(crate) expires_at: UnixTime,
}

/// The answer of the acquire script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquire {
    /// The token changed since it was read: read it again.
    Changed,
    /// The lease is the caller's, under this fencing value.
    Taken(u64),
    /// Another holds the lease, for this many more milliseconds.
    Held(Ms),
}

/// The fleet's window, as the rate hash stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    limit: i64,
    remaining: i64,
    reset_at: i64,
    length: i64,
    tat: i64,
    interval: i64,
    /// The reset the last observation reported (a rollover here does not move it).
    seen: i64,
}

/// The rate hash: its window fields (all or none), `blocked_until`, and the key's expiry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RateHash {
    window: Option<Window>,
    blocked_until: Option<i64>,
    expires_at: Option<Ms>,
}

/// What one client id's keys hold.
#[derive(Debug, Default)]
pub(crate) struct Redis {
    token: Option<(StoredToken, Ms)>,
    lease: Option<(u64, Ms)>,
    rate: RateHash,
    /// The slots key: reserved send instants not yet due.
    slots: Vec<i64>,
    next_fence: u64,
    /// Calls made (round trips).
    pub(crate) calls: u64,
}

fn ms(now: Ms) -> i64 {
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// `ceil(a / b)` for `a >= 0`, `b > 0`, as Lua's `math.ceil(a / b)` on exact integers.
fn div_ceil(a: i64, b: i64) -> i64 {
    (a + b - 1).div_euclid(b)
}

impl Redis {
    /// `GET token` at `now`.
    pub(crate) fn get_token(&mut self, now: Ms) -> Option<StoredToken> {
        self.calls += 1;
        self.expire(now);
        self.token.as_ref().map(|(t, _)| t.clone())
    }

    /// The acquire script at `now`: takes the lease if the token is still `seen`.
    pub(crate) fn acquire(
        &mut self,
        now: Ms,
        seen: Option<&StoredToken>,
        lease_ttl: Ms,
    ) -> Acquire {
        self.calls += 1;
        self.expire(now);
        if self.token.as_ref().map(|(t, _)| t) != seen {
            return Acquire::Changed;
        }
        match self.lease {
            Some((_, until)) => Acquire::Held(until - now),
            None => {
                self.next_fence += 1;
                self.lease = Some((self.next_fence, now + lease_ttl));
                Acquire::Taken(self.next_fence)
            }
        }
    }

    /// The publish script at `now`: stores `token` for `ttl` and releases the lease if `fence`
    /// still holds it. Returns whether it was published.
    pub(crate) fn publish(&mut self, now: Ms, fence: u64, token: StoredToken, ttl: Ms) -> bool {
        self.calls += 1;
        self.expire(now);
        if self.lease.map(|(f, _)| f) != Some(fence) {
            return false;
        }
        self.token = Some((token, now + ttl));
        self.lease = None;
        true
    }

    /// Drops the keys whose time to live ran out by `now`.
    fn expire(&mut self, now: Ms) {
        if self.token.as_ref().is_some_and(|&(_, until)| until <= now) {
            self.token = None;
        }
        if self.lease.is_some_and(|(_, until)| until <= now) {
            self.lease = None;
        }
        if self.rate.expires_at.is_some_and(|until| until <= now) {
            self.rate = RateHash::default();
        }
    }

    /// The scripts' shared prelude: `blocked_until` and the window rolled over at the reset
    /// (not saved).
    fn prelude(&mut self, now: Ms) -> (i64, Option<Window>) {
        self.expire(now);
        let now = ms(now);
        let blocked = self.rate.blocked_until.unwrap_or(0);
        let rolls = self.rate.window.is_some_and(|w| now >= w.reset_at);
        if rolls {
            self.slots.retain(|&slot| slot > now);
        }
        let pending = i64::try_from(self.slots.len()).unwrap_or(0);
        let window = self.rate.window.map(|mut w| {
            if now >= w.reset_at {
                let windows = (now - w.reset_at) / w.length + 1;
                // Slots reserved before a reset brought forward count in the new window.
                w.remaining = (w.limit.max(1) - pending).max(0);
                w.reset_at += w.length * windows;
                w.tat = 0;
                w.interval = 0;
            }
            w
        });
        (blocked, window)
    }

    /// The scripts' `bound_hold` at `now`: a `blocked_until` more than `cap` ms ahead is cut to
    /// `cap` from now. Returns how far it reached (0 when within bounds).
    fn bound_hold(&mut self, now: Ms, cap: Ms) -> i64 {
        let (t, cap) = (ms(now), ms(cap));
        match self.rate.blocked_until {
            Some(blocked) if blocked > t + cap => {
                self.rate.blocked_until = Some(t + cap);
                (blocked - t).min(1_000_000_000_000_000)
            }
            _ => 0,
        }
    }

    /// As the script's `save`: the key lives for the window (twice its length, and at least to
    /// its reset) and the 429 hold, plus a minute.
    fn save(&mut self, now: Ms, w: Window) {
        self.rate.window = Some(w);
        let t = ms(now);
        let blocked = self.rate.blocked_until.unwrap_or(0);
        let span = (w.length * 2).max(w.reset_at - t).max(blocked - t);
        self.rate.expires_at = Some(now + u64::try_from(span).unwrap_or(u64::MAX / 4) + 60_000);
    }

    /// [`admission`](Self::admission) without whether the wait is the 429 hold.
    #[cfg(test)]
    pub(crate) fn admit(
        &mut self,
        now: Ms,
        class: u8,
        pacer: &credflow_core::ratelimit::pacer::PacerConfig,
        horizon: Ms,
        cap: Ms,
    ) -> (bool, Ms) {
        let (counted, wait, _) = self.admission(now, class, pacer, horizon, cap);
        (counted, wait)
    }

    /// The admission script at `now` for priority `class` (0 critical, 1 normal, 2 background)
    /// with the caller's `horizon` and longest hold `cap`: `(counted, wait ms, held)`; counted
    /// with a wait is a reserved slot (send then without asking again), not counted is "ask
    /// again after the wait", `held` when that wait is the fleet's 429 hold (`Admission::Held`).
    pub(crate) fn admission(
        &mut self,
        now: Ms,
        class: u8,
        pacer: &credflow_core::ratelimit::pacer::PacerConfig,
        horizon: Ms,
        cap: Ms,
    ) -> (bool, Ms, bool) {
        self.calls += 1;
        let (_, w) = self.prelude(now);
        self.bound_hold(now, cap);
        let blocked = self.rate.blocked_until.unwrap_or(0);
        let t = ms(now);
        let mut wait = 0;
        if blocked > t {
            wait = blocked - t;
        }
        let hold = wait;
        let Some(mut w) = w else {
            return (wait == 0, u64::try_from(wait).unwrap_or(0), wait > 0);
        };
        let reserve = i64::from(pacer.critical_reserve_permille);
        let share_pm = match class {
            0 => 0,
            1 => reserve,
            _ => i64::from(pacer.background_floor_permille).max(reserve),
        }
        .min(999);
        let share = w.limit * share_pm / 1000;
        let left = (w.reset_at - t).min(w.length);
        let held = div_ceil(share * left, w.length);
        if w.remaining == 0 {
            wait = wait.max(w.reset_at - t);
        } else if w.remaining <= held {
            let x = if share > 0 { (w.remaining - 1) * w.length / share } else { 0 };
            wait = wait.max(w.reset_at - x - t);
        }
        if class != 0 {
            let burst = i64::from(pacer.burst)
                .max(1)
                .max(w.remaining * i64::from(pacer.burst_permille.min(999)) / 1000);
            let at = (w.tat - w.interval * (burst - 1)).min(w.reset_at);
            wait = wait.max(at - t);
        }
        let horizon = i64::try_from(horizon).unwrap_or(i64::MAX);
        let edge = w.reset_at.min(w.seen) - 1000.min(w.length / 2);
        if wait > 0 && (wait > horizon || blocked > t || w.remaining == 0 || t + wait >= edge) {
            return (false, u64::try_from(wait).unwrap_or(0), hold > 0 && wait == hold);
        }
        let slot = t + wait;
        w.remaining -= 1;
        w.interval = (w.reset_at - slot) / (w.remaining + 1);
        if class != 0 {
            w.tat = w.tat.max(slot) + w.interval;
        }
        self.save(now, w);
        if wait > 0 {
            self.slots.push(slot);
        }
        (true, u64::try_from(wait).unwrap_or(0), false)
    }

    /// The observation script at `now`: the server's `remaining`, and its `limit`, reset delay
    /// and window length in ms when known.
    pub(crate) fn observe(
        &mut self,
        now: Ms,
        remaining: u64,
        limit: Option<u64>,
        reset_after: Option<Ms>,
        window: Option<Ms>,
        default_window: Ms,
    ) {
        self.calls += 1;
        let (_, w) = self.prelude(now);
        let t = ms(now);
        let server = ms(remaining);
        let length = window.map(ms).or(w.map(|w| w.length)).unwrap_or(ms(default_window)).max(1);
        let limit = limit.map(ms).or(w.map(|w| w.limit)).unwrap_or(server).max(server);
        // The script's `pending()`: reserved slots still to come are not in the server's count.
        self.slots.retain(|&slot| slot > t);
        let server = (server - i64::try_from(self.slots.len()).unwrap_or(0)).max(0);
        let reset_at = t + reset_after.map(ms).unwrap_or(length);
        let slack = 1000.min(length / 2);
        let mut n = Window {
            limit,
            remaining: server,
            reset_at,
            length,
            tat: 0,
            interval: 0,
            seen: reset_at,
        };
        if let Some(w) = w
            && w.seen > t
            && reset_at < w.reset_at + slack
        {
            n.remaining = w.remaining.min(server);
            n.tat = w.tat;
            // Resets come rounded up: each is an upper bound, the earliest the tightest.
            n.reset_at = w.reset_at.min(reset_at);
            n.seen = n.reset_at;
        }
        n.interval = (n.reset_at - t) / (n.remaining + 1);
        self.save(now, n);
    }

    /// The hold script at `now`: the fleet's 429 hold left, in ms (0 when none), at most `cap`.
    pub(crate) fn hold(&mut self, now: Ms, cap: Ms) -> Ms {
        self.calls += 1;
        self.expire(now);
        self.bound_hold(now, cap);
        let left = self.rate.blocked_until.unwrap_or(0) - ms(now);
        u64::try_from(left.max(0)).unwrap_or(0)
    }

    /// The 429 script at `now`, with the `Retry-After` in ms when given, holding the fleet for
    /// at most `cap`.
    pub(crate) fn rate_limited(&mut self, now: Ms, retry_after: Option<Ms>, cap: Ms) {
        self.calls += 1;
        let (_, w) = self.prelude(now);
        self.bound_hold(now, cap);
        let blocked = self.rate.blocked_until.unwrap_or(0);
        let t = ms(now);
        if retry_after.is_none()
            && let Some(mut w) = w
            && t < w.reset_at
        {
            w.remaining = 0;
            self.save(now, w);
            return;
        }
        let after = retry_after.map_or(1000, ms).min(ms(cap));
        self.rate.blocked_until = Some(blocked.max(t + after));
        // The script's `PEXPIRE max(PTTL, after + 60000)`: extended, never shortened.
        let until = now + u64::try_from(after).unwrap_or(0) + 60_000;
        self.rate.expires_at = Some(self.rate.expires_at.map_or(until, |e| e.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credflow_core::ratelimit::pacer::PacerConfig;

    /// The pods' longest hold (`retry.max_wait`, 60 s by default).
    const CAP: Ms = 60_000;

    fn token(name: &str) -> StoredToken {
        StoredToken { token: name.to_owned(), expires_at: UnixTime::from_secs(100) }
    }

    #[test]
    fn one_lease_at_a_time_until_published_or_expired() {
        let mut r = Redis::default();
        assert_eq!(r.get_token(0), None);
        let Acquire::Taken(fence) = r.acquire(0, None, 1_000) else { panic!("free lease") };
        assert_eq!(r.acquire(10, None, 1_000), Acquire::Held(990));
        // A stale holder cannot publish; the lease expires at T exactly.
        assert!(!r.publish(10, fence + 1, token("a"), 5_000));
        assert_eq!(r.acquire(999, None, 1_000), Acquire::Held(1));
        let Acquire::Taken(second) = r.acquire(1_000, None, 1_000) else { panic!("expired") };
        assert!(!r.publish(1_001, fence, token("a"), 5_000), "the first holder lost it");
        assert!(r.publish(1_001, second, token("b"), 5_000));
        assert_eq!(r.get_token(1_002), Some(token("b")));
        assert_eq!(r.acquire(1_002, None, 1_000), Acquire::Changed, "the token changed");
        assert_eq!(r.get_token(6_001), None, "the token key expires with the token");
    }

    fn observed(r: &mut Redis, now: Ms, remaining: u64, reset_after: Ms) {
        r.observe(now, remaining, Some(60), Some(reset_after), None, 60_000);
    }

    #[test]
    fn admission_spends_the_window_then_waits_for_the_reset() {
        let config = PacerConfig { burst: 1, burst_permille: 0, ..PacerConfig::default() };
        let mut r = Redis::default();
        assert_eq!(r.admit(0, 1, &config, 0, CAP).1, 0, "no window known: admitted, not counted");
        observed(&mut r, 0, 2, 60_000);
        // Critical takes what is left; nothing then remains until the reset.
        assert_eq!(r.admit(0, 0, &config, 0, CAP).1, 0);
        assert_eq!(r.admit(0, 0, &config, 0, CAP).1, 0);
        assert_eq!(r.admit(0, 0, &config, 0, CAP).1, 60_000);
        assert_eq!(r.admit(59_999, 0, &config, 0, CAP).1, 1);
        assert_eq!(r.admit(60_000, 0, &config, 0, CAP).1, 0, "a full window after the reset");
    }

    #[test]
    fn spacing_and_reserve_match_the_pacer() {
        use credflow_core::ratelimit::pacer::{Pace, Pacer, Priority};
        use credflow_core::ratelimit::{Dialect, RateLimitSnapshot};
        use credflow_core::{Duration, Instant};
        // Same inputs, one pacer alone: the script's waits are the pacer's, to the millisecond.
        let config = PacerConfig::default();
        let mut r = Redis::default();
        let mut pacer = Pacer::new(config);
        let snapshot = RateLimitSnapshot {
            limit: Some(60),
            remaining: Some(20),
            reset_after: Some(Duration::from_secs(30)),
            window: Some(Duration::from_secs(60)),
            dialect: Dialect::Genesys,
        };
        pacer.observe(Instant::ZERO, &snapshot);
        r.observe(0, 20, Some(60), Some(30_000), Some(60_000), 60_000);
        let mut now = 0;
        let mut sent = 0;
        while now < 40_000 {
            let pace = pacer.check(Instant::from_millis(now), Priority::Normal);
            let wait = r.admit(now, 1, &config, 0, CAP).1;
            match pace {
                Pace::Now => {
                    assert_eq!(wait, 0, "at {now}");
                    pacer.on_send(Instant::from_millis(now), Priority::Normal);
                    sent += 1;
                }
                Pace::NotBefore { at, .. } => {
                    assert_eq!(wait, at.as_millis() - now, "at {now}");
                    now = at.as_millis();
                }
            }
        }
        assert!(sent > 20, "this window's 20, then some of the next window's: {sent}");
    }

    /// A reserved slot is the instant asking again would have been admitted at: the same
    /// sequence of sends, with one script call each instead of one per wake-up.
    #[test]
    fn reservations_are_the_slots_asking_again_would_give() {
        let config = PacerConfig::default();
        let (mut asking, mut reserving) = (Redis::default(), Redis::default());
        for r in [&mut asking, &mut reserving] {
            r.observe(0, 20, Some(60), Some(30_000), Some(60_000), 60_000);
        }
        let mut slots = Vec::new();
        let mut now = 0;
        while slots.len() < 10 {
            match asking.admit(now, 1, &config, 0, CAP) {
                (true, 0) => slots.push(now),
                (false, wait) => now += wait,
                (true, wait) => panic!("reserved {wait} ms beyond a zero horizon"),
            }
        }
        let calls = reserving.calls;
        let reserved: Vec<Ms> = (0..10)
            .map(|_| match reserving.admit(0, 1, &config, 60_000, CAP) {
                (true, wait) => wait,
                (false, wait) => panic!("not reserved: {wait} ms"),
            })
            .collect();
        assert_eq!(reserved, slots);
        assert_eq!(reserving.calls - calls, 10, "one call per request");
        // Not beyond the horizon, nor through a 429's hold.
        assert!(!reserving.admit(0, 1, &config, 1, CAP).0);
        let mut held = Redis::default();
        held.observe(0, 20, Some(60), Some(30_000), Some(60_000), 60_000);
        held.rate_limited(0, Some(2_000), CAP);
        assert_eq!(held.admit(0, 1, &config, 60_000, CAP), (false, 2_000));
    }

    /// Slots reserved before a reset that a later response brought forward land in the new
    /// window: the rollover counts them there.
    #[test]
    fn slots_beyond_a_reset_brought_forward_count_in_the_next_window() {
        let config = PacerConfig { burst: 1, burst_permille: 0, ..PacerConfig::default() };
        let mut r = Redis::default();
        r.observe(0, 10, Some(10), Some(10_000), None, 60_000);
        assert_eq!(r.admit(0, 1, &config, 60_000, CAP), (true, 0));
        let slots: Vec<Ms> = (0..3).map(|_| r.admit(0, 1, &config, 60_000, CAP).1).collect();
        let beyond = slots.iter().filter(|&&slot| slot > 1_600).count();
        assert_eq!(beyond, 2, "{slots:?}");
        // A response says the window resets at 1.5 s (an earlier reset, the same window).
        r.observe(100, 6, Some(10), Some(1_400), None, 60_000);
        // After that reset the two slots still to come are counted in the new window.
        let mut admitted = 0;
        while r.admit(1_600, 0, &config, 0, CAP) == (true, 0) {
            admitted += 1;
        }
        assert_eq!(admitted, 10 - beyond);
    }

    #[test]
    fn a_429_holds_the_fleet_back() {
        let config = PacerConfig::default();
        let mut r = Redis::default();
        r.rate_limited(0, Some(2_000), CAP);
        assert_eq!(r.admit(0, 0, &config, 0, CAP).1, 2_000, "critical too");
        assert_eq!(r.admit(1_999, 2, &config, 0, CAP).1, 1);
        assert_eq!(r.admit(2_000, 2, &config, 0, CAP).1, 0);
        // Without Retry-After, a known window is marked spent.
        observed(&mut r, 3_000, 10, 10_000);
        r.rate_limited(3_000, None, CAP);
        assert_eq!(r.admit(3_000, 0, &config, 0, CAP).1, 10_000);
        // The hash expires 2 × length + 60 s after its last save.
        assert_eq!(r.admit(183_000, 1, &config, 0, CAP).1, 0);
        assert_eq!(r.rate, RateHash::default());
    }

    /// A hold beyond the longest a pod honours (one year 2500's instant written by anyone) is
    /// cut to it on first sight, so that it ends; a 429's longer Retry-After is relayed for at
    /// most that long.
    #[test]
    fn a_hold_never_lasts_longer_than_the_pods_honour() {
        let config = PacerConfig::default();
        let mut r = Redis::default();
        r.rate.blocked_until = Some(16_725_225_600_000);
        assert_eq!(r.hold(1_000, 2_000), 2_000);
        assert_eq!(r.admit(1_500, 0, &config, 0, 2_000), (false, 1_500), "cut, and it ends");
        assert_eq!(r.admit(3_000, 0, &config, 0, 2_000), (true, 0));
        r.rate_limited(3_000, Some(3_600_000), 2_000);
        assert_eq!(r.admit(3_000, 0, &config, 0, 2_000), (false, 2_000));
        assert_eq!(r.admit(5_000, 0, &config, 0, 2_000), (true, 0));
    }
}
