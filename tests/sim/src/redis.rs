//! The Redis of `credflow-redis`, simulated: the three keys of one client id, and **the very Lua
//! scripts the adapter sends** (`adapters/redis/src/scripts.rs`, compiled into this crate from
//! that file) running on an embedded Lua 5.1 over a simulated keyspace whose `TIME` is the
//! simulator's clock. Nothing of the scripts' logic is repeated here: a change to them changes
//! the simulation.
//!
//! - **Token key** (`GETRANGE`, and `SET … PX` in the publish script): the fleet's token with its
//!   absolute expiry; it disappears when its time to live runs out.
//! - **Lease key** (`SET NX PX` in the acquire script, compare-and-delete in publish/release):
//!   the right to refresh for the fleet, identified by a fencing value.
//! - **Rate hash and slots** (admit, observe, hold and 429 scripts): the fleet's window and
//!   429 hold, and the reserved send slots, as the scripts keep them.
//!
//! `keyspace` implements the commands the scripts call with Redis 7's semantics, and `lua`
//! Redis's scripting environment and its conversions between Lua values and replies.
//!
//! What this module does besides running a script is what the adapter does around it
//! (`RedisStore` in `adapters/redis/src/lib.rs`): the key names, the arguments (spans clamped to
//! 7 days), and the decoding of the answers. The token is stored as `expiry:token` (sealing is
//! not simulated: it changes no decision), and fences count up instead of being random.
//!
//! **Latency.** Every call costs one round trip of [`RTT`] (1 ms: Redis on the same network, as
//! in a cluster beside the pods). A script runs atomically at the instant it is called, on the
//! simulator's clock (`TIME` is the simulator's clock from [`Redis::EPOCH_MS`]; here every clock
//! is the same one), and the caller sees its answer one round trip later. Reports after a
//! response are fire-and-forget in the adapter: they run one round trip after the response
//! (`observe`, then the 429 report one round trip after that), and nobody waits for them.
//!
//! Redis itself never fails here: degraded mode is tested against a real `redis-server`
//! (`adapters/redis/tests/fleet.rs`), not simulated. A script that errors is a bug in it, and
//! panics with Redis's error text.

mod keyspace;
mod lua;

use std::cell::RefCell;
use std::rc::Rc;

use credflow_core::UnixTime;
use credflow_core::ratelimit::pacer::PacerConfig;

use crate::Ms;
use keyspace::Keyspace;
pub use keyspace::Reply;
use lua::{Engine, Script};

/// The adapter's scripts, from its own source file.
#[path = "../../../adapters/redis/src/scripts.rs"]
mod scripts;

/// One Redis round trip.
pub const RTT: Ms = 1;

/// Longest span handed to the scripts, as the adapter clamps them (`MAX_SCRIPT_MS`, 7 days).
const MAX_SCRIPT_MS: Ms = 7 * 24 * 3600 * 1000;

fn clamp_ms(ms: Ms) -> Ms {
    ms.min(MAX_SCRIPT_MS)
}

/// The store's timing, `RedisConfig`'s defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreTiming {
    /// A refresh lease lasts this long if its holder never publishes.
    pub lease_ttl: Ms,
    /// A pod waiting for another's refresh looks again this often.
    pub poll_interval: Ms,
    /// Longest a pod waits for others' refreshes before fetching on its own.
    pub max_wait: Ms,
}

impl Default for StoreTiming {
    fn default() -> Self {
        StoreTiming { lease_ttl: 15_000, poll_interval: 50, max_wait: 20_000 }
    }
}

/// The token as the token key holds it (sealing is not simulated: it changes no decision).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredToken {
    /// The access token.
    pub token: String,
    /// Its absolute expiry, wall clock.
    pub expires_at: UnixTime,
}

impl StoredToken {
    /// The token key's value: `expiry:token`.
    fn encode(&self) -> Vec<u8> {
        format!("{}:{}", self.expires_at.as_secs(), self.token).into_bytes()
    }

    fn decode(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?;
        let (secs, token) = text.split_once(':')?;
        let expires_at = UnixTime::from_secs(secs.parse().ok()?);
        Some(StoredToken { token: token.to_owned(), expires_at })
    }
}

/// The answer of the acquire script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquire {
    /// The token changed since it was read: read it again.
    Changed,
    /// The lease is the caller's, under this fencing value.
    Taken(u64),
    /// Another holds the lease, for this many more milliseconds.
    Held(Ms),
}

/// The scripts, loaded once.
struct Scripts {
    acquire: Script,
    publish: Script,
    release: Script,
    admit: Script,
    observe: Script,
    hold: Script,
    rate_limited: Script,
}

/// Key names, as `RedisStore::key_names` builds them for the simulator's client id.
const TOKEN: &[u8] = b"credflow:{sim-client|https://login.mypurecloud.com/oauth/token}:token";
const LEASE: &[u8] = b"credflow:{sim-client|https://login.mypurecloud.com/oauth/token}:lease";
const RATE: &[u8] = b"credflow:{sim-client|https://login.mypurecloud.com/oauth/token}:rate";
const SLOTS: &[u8] = b"credflow:{sim-client|https://login.mypurecloud.com/oauth/token}:slots";

/// The last index of the token key read (`GETRANGE`'s end), standing for the adapter's
/// `at_rest::MAX_VALUE_LEN` (a little over 8 KiB): every simulated token is far shorter, so
/// its exact value changes no decision here.
const READ_UP_TO: usize = 8 << 10;

/// One client id's keys in a simulated Redis, and the scripts that decide on them.
pub struct Redis {
    engine: Engine,
    scripts: Scripts,
    next_fence: u64,
    /// Calls made (round trips).
    pub calls: u64,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("engine", &self.engine).field("calls", &self.calls).finish()
    }
}

impl Default for Redis {
    fn default() -> Self {
        Redis::new()
    }
}

/// A script answer's `i`-th integer (0 when absent: the decoders below check what matters).
fn int_at(reply: &Reply, i: usize) -> i64 {
    match reply {
        Reply::Array(items) => match items.get(i) {
            Some(Reply::Int(n)) => *n,
            other => panic!("script answer {reply:?}: item {i} is {other:?}"),
        },
        other => panic!("script answer {other:?} is not an array"),
    }
}

fn non_negative(n: i64, what: &str) -> Ms {
    u64::try_from(n).unwrap_or_else(|_| panic!("the script answered a negative {what}: {n}"))
}

/// `-1` for unknown, as the adapter sends it.
fn known(v: Option<Ms>) -> String {
    v.map_or(-1, |v| i64::try_from(clamp_ms(v)).unwrap_or(i64::MAX)).to_string()
}

impl Redis {
    /// Where `TIME` starts: the simulator's instant 0 is this many ms after the Unix epoch
    /// (the simulator's wall clock, 2023-11-14), so that the scripts compute on the magnitudes
    /// they meet in production.
    pub const EPOCH_MS: u64 = 1_700_000_000_000;

    /// An empty Redis with the scripts loaded.
    pub fn new() -> Self {
        let keyspace = Rc::new(RefCell::new(Keyspace::default()));
        let engine = Engine::new(keyspace).expect("a Lua state with Redis's environment");
        let load = |name: &str, body: &str| {
            engine.load(name, body).unwrap_or_else(|e| panic!("the {name} script compiles: {e}"))
        };
        let scripts = Scripts {
            acquire: load("acquire", scripts::ACQUIRE),
            publish: load("publish", scripts::PUBLISH),
            release: load("release", scripts::RELEASE),
            admit: load("admit", &scripts::admit()),
            observe: load("observe", &scripts::observe()),
            hold: load("hold", &scripts::hold()),
            rate_limited: load("rate_limited", &scripts::rate_limited()),
        };
        Redis { engine, scripts, next_fence: 0, calls: 0 }
    }

    fn set_clock(&mut self, now: Ms) {
        self.engine.keyspace().now = Self::EPOCH_MS.saturating_add(now);
    }

    /// Runs one script at `now`: one round trip.
    fn eval(
        &mut self,
        now: Ms,
        which: fn(&Scripts) -> &Script,
        keys: &[&[u8]],
        argv: &[&[u8]],
    ) -> Reply {
        self.calls += 1;
        self.set_clock(now);
        match self.engine.eval(which(&self.scripts), keys, argv) {
            Ok(Reply::Error(e)) | Err(e) => panic!("a script failed: {e}"),
            Ok(reply) => reply,
        }
    }

    fn eval_strings(
        &mut self,
        now: Ms,
        which: fn(&Scripts) -> &Script,
        keys: &[&[u8]],
        argv: &[impl AsRef<[u8]>],
    ) -> Reply {
        let argv: Vec<&[u8]> = argv.iter().map(AsRef::as_ref).collect();
        self.eval(now, which, keys, &argv)
    }

    /// One command at `now`, outside any script, as another writer of Redis would send it
    /// (not counted as a pod's call). `argv[0]` is the command; the names `{token}`, `{lease}`,
    /// `{rate}` and `{slots}` stand for this client id's keys.
    pub fn command(&mut self, now: Ms, argv: &[&str]) -> Reply {
        self.set_clock(now);
        let argv: Vec<Vec<u8>> = argv
            .iter()
            .map(|&a| match a {
                "{token}" => TOKEN.to_vec(),
                "{lease}" => LEASE.to_vec(),
                "{rate}" => RATE.to_vec(),
                "{slots}" => SLOTS.to_vec(),
                a => a.as_bytes().to_vec(),
            })
            .collect();
        self.engine.keyspace().command(&argv)
    }

    /// `EVAL body` at `now` with `keys` and `argv`, as another client of Redis would send it
    /// (not counted as a pod's call): the script's reply, or its error as [`Reply::Error`].
    pub fn script(&mut self, now: Ms, body: &str, keys: &[&str], argv: &[&str]) -> Reply {
        self.set_clock(now);
        let script = match self.engine.load("eval", body) {
            Ok(script) => script,
            Err(e) => return Reply::Error(format!("ERR Error compiling script: {e}")),
        };
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
        self.engine.eval(&script, &keys, &argv).unwrap_or_else(Reply::Error)
    }

    /// `GETRANGE token 0 READ_UP_TO` at `now`: the token key read as the adapter reads it.
    pub fn get_token(&mut self, now: Ms) -> Option<StoredToken> {
        self.calls += 1;
        self.set_clock(now);
        let argv = [
            b"GETRANGE".to_vec(),
            TOKEN.to_vec(),
            b"0".to_vec(),
            READ_UP_TO.to_string().into_bytes(),
        ];
        match self.engine.keyspace().command(&argv) {
            Reply::Bulk(value) => StoredToken::decode(&value),
            _ => None,
        }
    }

    /// The acquire script at `now`: takes the lease if the token is still `seen`.
    pub fn acquire(&mut self, now: Ms, seen: Option<&StoredToken>, lease_ttl: Ms) -> Acquire {
        self.next_fence += 1;
        let fence = self.next_fence;
        let seen = seen.map(StoredToken::encode).unwrap_or_default();
        let argv = [
            seen,
            fence.to_string().into_bytes(),
            lease_ttl.to_string().into_bytes(),
            READ_UP_TO.to_string().into_bytes(),
        ];
        let reply = self.eval_strings(now, |s| &s.acquire, &[TOKEN, LEASE], &argv);
        match int_at(&reply, 0) {
            0 => Acquire::Changed,
            1 => Acquire::Taken(fence),
            _ => Acquire::Held(u64::try_from(int_at(&reply, 1)).unwrap_or(0)),
        }
    }

    /// The publish script at `now`: stores `token` for `ttl` and releases the lease if `fence`
    /// still holds it. Returns whether it was published (as the adapter, not at all when the
    /// token has no time left).
    pub fn publish(&mut self, now: Ms, fence: u64, token: StoredToken, ttl: Ms) -> bool {
        if ttl == 0 {
            return false;
        }
        let argv = [fence.to_string().into_bytes(), token.encode(), ttl.to_string().into_bytes()];
        self.eval_strings(now, |s| &s.publish, &[TOKEN, LEASE], &argv) == Reply::Int(1)
    }

    /// The release script at `now`: gives the lease back if `fence` still holds it. Returns
    /// whether it did.
    pub fn release(&mut self, now: Ms, fence: u64) -> bool {
        let argv = [fence.to_string()];
        self.eval_strings(now, |s| &s.release, &[LEASE], &argv) == Reply::Int(1)
    }

    /// [`admission`](Self::admission) without whether the wait is the 429 hold.
    pub fn admit(
        &mut self,
        now: Ms,
        class: u8,
        pacer: &PacerConfig,
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
    pub fn admission(
        &mut self,
        now: Ms,
        class: u8,
        pacer: &PacerConfig,
        horizon: Ms,
        cap: Ms,
    ) -> (bool, Ms, bool) {
        let argv = [
            class.to_string(),
            pacer.critical_reserve_permille.to_string(),
            pacer.background_floor_permille.to_string(),
            pacer.burst.to_string(),
            pacer.burst_permille.to_string(),
            clamp_ms(horizon).to_string(),
            clamp_ms(cap).to_string(),
        ];
        let reply = self.eval_strings(now, |s| &s.admit, &[RATE, SLOTS], &argv);
        let wait = non_negative(int_at(&reply, 1), "wait");
        (int_at(&reply, 0) == 1, wait, int_at(&reply, 2) == 1)
    }

    /// The observation script at `now`: the server's `remaining`, and its `limit`, reset delay
    /// and window length in ms when known.
    pub fn observe(
        &mut self,
        now: Ms,
        remaining: u64,
        limit: Option<u64>,
        reset_after: Option<Ms>,
        window: Option<Ms>,
        default_window: Ms,
    ) {
        let known_count = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let argv = [
            known_count(Some(remaining)).to_string(),
            known_count(limit).to_string(),
            known(reset_after),
            known(window),
            default_window.to_string(),
        ];
        self.eval_strings(now, |s| &s.observe, &[RATE, SLOTS], &argv);
    }

    /// The hold script at `now`: the fleet's 429 hold left, in ms (0 when none), at most `cap`.
    pub fn hold(&mut self, now: Ms, cap: Ms) -> Ms {
        let reply = self.eval_strings(now, |s| &s.hold, &[RATE], &[clamp_ms(cap).to_string()]);
        u64::try_from(int_at(&reply, 0)).unwrap_or(0)
    }

    /// The 429 script at `now`, with the `Retry-After` in ms when given, holding the fleet for
    /// at most `cap`.
    pub fn rate_limited(&mut self, now: Ms, retry_after: Option<Ms>, cap: Ms) {
        let argv = [known(retry_after), clamp_ms(cap).to_string()];
        self.eval_strings(now, |s| &s.rate_limited, &[RATE, SLOTS], &argv);
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
        assert_eq!(r.command(183_000, &["PTTL", "{rate}"]), Reply::Int(-2));
    }

    /// A hold beyond the longest a pod honours (one year 2500's instant written by anyone) is
    /// cut to it on first sight, so that it ends; a 429's longer Retry-After is relayed for at
    /// most that long.
    #[test]
    fn a_hold_never_lasts_longer_than_the_pods_honour() {
        let config = PacerConfig::default();
        let mut r = Redis::default();
        r.command(0, &["HSET", "{rate}", "blocked_until", "16725225600000"]);
        assert_eq!(r.hold(1_000, 2_000), 2_000);
        assert_eq!(r.admit(1_500, 0, &config, 0, 2_000), (false, 1_500), "cut, and it ends");
        assert_eq!(r.admit(3_000, 0, &config, 0, 2_000), (true, 0));
        r.rate_limited(3_000, Some(3_600_000), 2_000);
        assert_eq!(r.admit(3_000, 0, &config, 0, 2_000), (false, 2_000));
        assert_eq!(r.admit(5_000, 0, &config, 0, 2_000), (true, 0));
    }
}
