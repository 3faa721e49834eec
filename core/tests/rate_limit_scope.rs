//! Rate-limit scope (per client id or per access token): timelines of the pacer at a token
//! change under each configured scope, the session's use of it, and properties checked against
//! a reference server that counts either way.
#![cfg(feature = "rate-limit-scope")]

use std::collections::HashMap;

use credflow_core::http::Method;
use credflow_core::lifecycle::{Generation, Ticket};
use credflow_core::ratelimit::pacer::{
    Pace, PaceReason, Pacer, PacerConfig, Priority, RateLimitScope,
};
use credflow_core::ratelimit::{Dialect, RateLimitSnapshot};
use credflow_core::secret::Credentials;
use credflow_core::session::{
    Authorize, HostKey, RequestSpec, RequestState, Session, SessionConfig, TokenEndpoint,
    WaitReason,
};
use credflow_core::{Duration, Instant};
use proptest::prelude::*;

use Priority::{Critical, Normal};

const F: Generation = Generation(1);
const G: Generation = Generation(2);

fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

fn ms(v: u64) -> Instant {
    Instant::from_millis(v)
}

/// What Genesys says: `inin-ratelimit-count`, `-allowed`, `-reset` (no window length).
fn genesys(limit: u64, count: u64, reset_s: u64) -> RateLimitSnapshot {
    RateLimitSnapshot {
        limit: Some(limit),
        remaining: Some(limit.saturating_sub(count)),
        reset_after: Some(Duration::from_secs(reset_s)),
        window: None,
        dialect: Dialect::Genesys,
    }
}

fn pacer(scope: RateLimitScope) -> Pacer {
    Pacer::new(PacerConfig { burst: 1, burst_permille: 0, scope, ..PacerConfig::default() })
}

/// Token F's window seen at 0 s (100 used of 100, reset in 50 s) and again at 10 s, spent:
/// a window seen for ten seconds, forty left.
fn spent_window(scope: RateLimitScope) -> Pacer {
    let mut p = pacer(scope);
    p.use_token(secs(0), F);
    p.observe_for(secs(0), &genesys(100, 90, 50), Some(F));
    p.observe_for(secs(10), &genesys(100, 100, 40), Some(F));
    assert_eq!(
        p.check(secs(10), Critical),
        Pace::NotBefore { at: secs(50), reason: PaceReason::Exhausted }
    );
    p
}

#[test]
fn auto_tells_per_token_from_a_second_window_and_paces_the_new_token_by_it() {
    let mut p = spent_window(RateLimitScope::Auto);
    assert_eq!(p.scope(), RateLimitScope::Auto);
    // A new token: the spent window lets one probe go, and only one.
    p.use_token(secs(10), G);
    assert_eq!(p.check(secs(10), Normal), Pace::Now);
    p.on_send(secs(10), Normal);
    assert!(matches!(p.check(secs(10), Normal), Pace::NotBefore { .. }));
    // Its answer: count 1 of a window resetting in 60 s while F's has 40 s left.
    p.observe_for(secs(11), &genesys(100, 1, 60), Some(G));
    assert_eq!(p.observed_scope(), Some(RateLimitScope::Token));
    assert_eq!(p.scope(), RateLimitScope::Token);
    assert_eq!(p.remaining(secs(11)), Some(99));
    assert_eq!(p.check(secs(12), Normal), Pace::Now);
    // A late answer to F (its window, its 429) is no longer the pacer's business.
    p.observe_for(secs(12), &genesys(100, 100, 38), Some(F));
    p.on_rate_limited_for(secs(12), Some(Duration::from_secs(38)), Some(F));
    assert_eq!(p.remaining(secs(12)), Some(99));
    assert_eq!(p.check(secs(12), Normal), Pace::Now);
    // The next change starts afresh at once, no probe needed.
    let h = Generation(3);
    p.observe_for(secs(13), &genesys(100, 100, 58), Some(G));
    p.use_token(secs(13), h);
    assert_eq!(p.check(secs(13), Normal), Pace::Now);
}

#[test]
fn auto_tells_per_client_from_the_same_window_and_then_carries_it_over() {
    let mut p = spent_window(RateLimitScope::Auto);
    p.use_token(secs(10), G);
    assert_eq!(p.check(secs(10), Normal), Pace::Now, "the probe");
    p.on_send(secs(10), Normal);
    // The probe's answer: a 429 of the same window (reset 39 s after 11 s, F's at 50 s).
    p.observe_for(secs(11), &genesys(100, 100, 39), Some(G));
    p.on_rate_limited_for(secs(11), Some(Duration::from_secs(39)), Some(G));
    assert_eq!(p.observed_scope(), Some(RateLimitScope::Client));
    assert_eq!(
        p.check(secs(11), Critical),
        Pace::NotBefore { at: secs(50), reason: PaceReason::Backoff429 }
    );
    // Told per client: the next token change while spent lets no probe go.
    p.observe_for(secs(50), &genesys(100, 100, 55), Some(G));
    p.use_token(secs(50), Generation(3));
    assert_eq!(
        p.check(secs(50), Critical),
        Pace::NotBefore { at: secs(105), reason: PaceReason::Exhausted }
    );
}

#[test]
fn token_scope_starts_each_token_afresh_and_ignores_the_old_tokens_news() {
    let mut p = spent_window(RateLimitScope::Token);
    p.on_rate_limited_for(secs(10), Some(Duration::from_secs(40)), Some(F));
    p.use_token(secs(10), G);
    // A fresh window of the known limit from now: spaced, not spent, no 429 hold.
    assert_eq!(p.remaining(secs(10)), Some(100));
    assert_eq!(p.check(secs(10), Normal), Pace::Now);
    p.on_send(secs(10), Normal);
    assert_eq!(
        p.check(secs(10), Normal),
        Pace::NotBefore { at: ms(10_000 + 60_000 / 100), reason: PaceReason::Spacing }
    );
    // F's late answers change nothing.
    p.observe_for(secs(11), &genesys(100, 100, 39), Some(F));
    p.on_rate_limited_for(secs(11), Some(Duration::from_secs(39)), Some(F));
    assert_eq!(p.remaining(secs(11)), Some(99));
    assert_eq!(p.check(secs(11), Critical), Pace::Now);
    // G's own answers define its window.
    p.observe_for(secs(11), &genesys(100, 5, 59), Some(G));
    assert_eq!(p.remaining(secs(11)), Some(95));
    p.on_rate_limited_for(secs(11), Some(Duration::from_secs(2)), Some(G));
    assert_eq!(
        p.check(secs(11), Critical),
        Pace::NotBefore { at: secs(13), reason: PaceReason::Backoff429 }
    );
}

#[test]
fn client_scope_carries_the_spent_window_over_a_token_change() {
    let mut p = spent_window(RateLimitScope::Client);
    p.use_token(secs(10), G);
    for priority in [Critical, Normal] {
        assert_eq!(
            p.check(secs(10), priority),
            Pace::NotBefore { at: secs(50), reason: PaceReason::Exhausted }
        );
    }
    // Evidence is still recorded (for reports), but does not change the pacing.
    p.observe_for(secs(50), &genesys(100, 1, 60), Some(G));
    assert_eq!(p.scope(), RateLimitScope::Client);
}

#[test]
fn auto_does_not_tell_near_a_reset_or_for_a_window_seen_just_now() {
    // F's window seen once at 0 s (reset in 50 s): at 3 s it has been seen for less than 4 s.
    let mut p = pacer(RateLimitScope::Auto);
    p.use_token(secs(0), F);
    p.observe_for(secs(0), &genesys(100, 10, 50), Some(F));
    p.use_token(secs(3), G);
    p.observe_for(secs(3), &genesys(100, 1, 60), Some(G));
    assert_eq!(p.observed_scope(), None);
    // Seen for long, but within 2 s of its reset: the second window may be its successor.
    let mut p = pacer(RateLimitScope::Auto);
    p.use_token(secs(0), F);
    p.observe_for(secs(0), &genesys(100, 10, 50), Some(F));
    p.use_token(secs(48), G);
    p.observe_for(secs(48), &genesys(100, 1, 60), Some(G));
    assert_eq!(p.observed_scope(), None);
    // A reset 1.5 s later than F's: neither the same window nor clearly a second one.
    let mut p = pacer(RateLimitScope::Auto);
    p.use_token(secs(0), F);
    p.observe_for(secs(0), &genesys(100, 10, 50), Some(F));
    p.use_token(secs(10), G);
    let snap = RateLimitSnapshot {
        reset_after: Some(Duration::from_millis(41_500)),
        ..genesys(100, 1, 0)
    };
    p.observe_for(secs(10), &snap, Some(G));
    assert_eq!(p.observed_scope(), None);
}

#[test]
fn the_probe_waits_for_a_429s_retry_after() {
    let mut p = spent_window(RateLimitScope::Auto);
    p.on_rate_limited_for(secs(10), Some(Duration::from_secs(5)), Some(F));
    p.use_token(secs(10), G);
    assert_eq!(
        p.check(secs(10), Critical),
        Pace::NotBefore { at: secs(15), reason: PaceReason::Backoff429 }
    );
    assert_eq!(p.check(secs(15), Normal), Pace::Now);
}

// --- The session: which token a request went with reaches the pacer. ---

const TOKEN_URL: &str = "https://login.mypurecloud.com/oauth/token";

struct Harness {
    s: Session<256, 4>,
    buf: Vec<u8>,
}

impl Harness {
    fn new(scope: RateLimitScope) -> Self {
        let creds = Credentials::from_strs("client", "secret").unwrap();
        let endpoint = TokenEndpoint::new(TOKEN_URL).unwrap();
        let mut config = SessionConfig::default();
        config.pacer.scope = scope;
        Harness { s: Session::new(creds, endpoint, config, 7).unwrap(), buf: vec![0; 2048] }
    }

    fn acquire(&mut self, now: Instant, token: &str) {
        let (ticket, _): (Ticket, _) =
            self.s.poll_token_request(now, &mut self.buf).unwrap().unwrap();
        let body =
            format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#);
        self.s.handle_token_response(now, ticket, 200, &[] as &[(&str, &str)], body.as_bytes());
    }

    fn begin(&mut self, now: Instant) -> RequestState {
        self.s.begin(now, RequestSpec::new(Method::Get, HostKey::from_host("api.mypurecloud.com")))
    }

    fn send(&mut self, now: Instant, req: &mut RequestState) -> Result<String, WaitReason> {
        match self.s.authorize(now, req) {
            Authorize::Send { token, .. } => Ok(token.as_str().to_owned()),
            Authorize::Wait { reason, .. } => Err(reason),
            other => panic!("{other:?}"),
        }
    }

    /// T1's window spent (100 of 100, reset at 50 s), seen at 0 s and 9 s; a 401 on another
    /// request at 9 s, then T2 at 10 s.
    fn spent_then_new_token(scope: RateLimitScope) -> (Self, RequestState) {
        let mut h = Harness::new(scope);
        h.acquire(secs(0), "T1");
        let (mut a, mut b, mut c) = (h.begin(secs(0)), h.begin(secs(0)), h.begin(secs(0)));
        for req in [&mut a, &mut b, &mut c] {
            assert_eq!(h.send(secs(0), req).unwrap(), "T1");
        }
        let headers = |count: &str, reset: &str| {
            [
                ("inin-ratelimit-count", count.to_owned()),
                ("inin-ratelimit-allowed", "100".to_owned()),
                ("inin-ratelimit-reset", reset.to_owned()),
            ]
        };
        let h0 = headers("99", "50");
        let h0: Vec<(&str, &str)> = h0.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let _ = h.s.handle_response(secs(0), &mut a, 200, &h0[..], b"{}");
        let h9 = headers("100", "41");
        let h9: Vec<(&str, &str)> = h9.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let _ = h.s.handle_response(secs(9), &mut b, 200, &h9[..], b"{}");
        let _ = h.s.handle_response(secs(9), &mut c, 401, &[] as &[(&str, &str)], b"{}");
        h.acquire(secs(10), "T2");
        (h, c)
    }
}

#[test]
fn session_under_a_per_token_scope_sends_with_the_new_token_at_once() {
    let (mut h, mut req) = Harness::spent_then_new_token(RateLimitScope::Token);
    assert_eq!(h.send(secs(10), &mut req), Ok("T2".to_owned()));
}

#[test]
fn session_under_a_per_client_scope_waits_for_the_shared_window() {
    let (mut h, mut req) = Harness::spent_then_new_token(RateLimitScope::Client);
    assert_eq!(h.send(secs(10), &mut req), Err(WaitReason::Paced(PaceReason::Exhausted)));
}

#[test]
fn session_auto_probes_once_and_learns_from_the_answer() {
    let (mut h, mut req) = Harness::spent_then_new_token(RateLimitScope::Auto);
    assert_eq!(h.send(secs(10), &mut req), Ok("T2".to_owned()));
    let fresh = [
        ("inin-ratelimit-count", "1"),
        ("inin-ratelimit-allowed", "100"),
        ("inin-ratelimit-reset", "60"),
    ];
    let _ = h.s.handle_response(secs(10), &mut req, 200, &fresh[..], b"{}");
    let mut next = h.begin(secs(10));
    assert_eq!(h.send(secs(10), &mut next), Ok("T2".to_owned()));
}

// --- Properties against a reference server. ---

/// A Genesys-like server: fixed windows opened by the first request after the previous one
/// closed, per client id or per token; whole-second resets rounded up.
struct Server {
    per_token: bool,
    limit: u64,
    window_ms: u64,
    /// Key (0 per client, the generation per token) → (opened at, count).
    windows: HashMap<u32, (u64, u64)>,
}

impl Server {
    /// Counts a request of token `generation` at `t`; the status and what the headers say.
    fn handle(&mut self, t: u64, token: u32) -> (u16, RateLimitSnapshot) {
        let key = if self.per_token { token } else { 0 };
        let w = self.windows.entry(key).or_insert((t, 0));
        if t >= w.0 + self.window_ms {
            *w = (t, 0);
        }
        let admitted = w.1 < self.limit;
        if admitted {
            w.1 += 1;
        }
        let reset_s = (w.0 + self.window_ms - t).div_ceil(1000).max(1);
        (if admitted { 200 } else { 429 }, genesys(self.limit, w.1, reset_s))
    }
}

#[derive(Debug, Clone)]
struct Case {
    per_token: bool,
    scope: RateLimitScope,
    limit: u64,
    window_s: u64,
    concurrency: usize,
    /// Round trip of each request, in ms (cycled).
    latencies: Vec<u64>,
    /// Token changes, ms after the previous one.
    changes: Vec<u64>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        prop_oneof![
            Just(RateLimitScope::Auto),
            Just(RateLimitScope::Client),
            Just(RateLimitScope::Token)
        ],
        6u64..60,
        prop_oneof![Just(10u64), Just(20), Just(60)],
        1usize..6,
        proptest::collection::vec(0u64..900, 1..8),
        proptest::collection::vec(500u64..90_000, 1..6),
    )
        .prop_map(|(per_token, scope, limit, window_s, concurrency, latencies, changes)| {
            Case { per_token, scope, limit, window_s, concurrency, latencies, changes }
        })
}

/// What a run showed.
#[derive(Debug, Default)]
struct Outcome {
    /// Sends the token-blind pacer (same inputs, per client) would have held back.
    beyond_blind: u32,
    /// Token changes made.
    changes: u32,
    /// Scopes the pacer reported, in order of change.
    verdicts: Vec<RateLimitScope>,
    /// Token changes (under a per-token scope in force) at which the new token was held back.
    held_at_change: u32,
}

/// Drives a pacer as a client that always has work (up to `concurrency` in flight) against the
/// reference server, with a token change at each of `case.changes`, for three minutes.
fn run(case: &Case) -> Outcome {
    let config = PacerConfig {
        default_window: Duration::from_secs(case.window_s),
        scope: case.scope,
        ..PacerConfig::default()
    };
    let mut pacer = Pacer::new(config);
    let mut blind = Pacer::new(PacerConfig { scope: RateLimitScope::Client, ..config });
    let mut server = Server {
        per_token: case.per_token,
        limit: case.limit,
        window_ms: case.window_s * 1000,
        windows: HashMap::new(),
    };
    let mut out = Outcome::default();
    let mut changes = case.changes.iter().scan(0u64, |at, d| {
        *at += d;
        Some(*at)
    });
    let mut next_change = changes.next();
    let mut generation = 1u32;
    // (arrives at, generation, status, snapshot)
    let mut in_flight: Vec<(u64, u32, u16, RateLimitSnapshot)> = Vec::new();
    let mut latency = case.latencies.iter().cycle();
    let mut t = 0u64;
    let horizon = 180_000u64;
    while t < horizon {
        // Answers due by now, in arrival order.
        in_flight.sort_by_key(|r| r.0);
        while in_flight.first().is_some_and(|r| r.0 <= t) {
            let (at, g, status, snap) = in_flight.remove(0);
            let at = Instant::from_millis(at);
            pacer.observe_for(at, &snap, Some(Generation(g)));
            blind.observe(at, &snap);
            if status == 429 {
                let wait = snap.reset_after;
                pacer.on_rate_limited_for(at, wait, Some(Generation(g)));
                blind.on_rate_limited(at, wait);
            }
            if let Some(scope) = pacer.observed_scope()
                && out.verdicts.last() != Some(&scope)
            {
                out.verdicts.push(scope);
            }
        }
        let now = Instant::from_millis(t);
        if next_change.is_some_and(|c| c <= t) {
            next_change = changes.next();
            generation += 1;
            out.changes += 1;
            pacer.use_token(now, Generation(generation));
            if pacer.scope() == RateLimitScope::Token && pacer.check(now, Critical) != Pace::Now {
                out.held_at_change += 1;
            }
        }
        pacer.use_token(now, Generation(generation));
        let mut wake = next_change.unwrap_or(horizon).min(horizon);
        while in_flight.len() < case.concurrency {
            match pacer.check(now, Normal) {
                Pace::Now => {
                    if blind.check(now, Normal) != Pace::Now {
                        out.beyond_blind += 1;
                    }
                    pacer.on_send(now, Normal);
                    blind.on_send(now, Normal);
                    let (status, snap) = server.handle(t, generation);
                    let arrives = t + latency.next().copied().unwrap_or(0);
                    in_flight.push((arrives, generation, status, snap));
                }
                Pace::NotBefore { at, .. } => {
                    wake = wake.min(at.as_millis());
                    break;
                }
            }
        }
        if let Some(first) = in_flight.iter().map(|r| r.0).min() {
            wake = wake.min(first);
        }
        t = wake.max(t + 1);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The headers never tell the wrong scope (round trips under a second).
    #[test]
    fn detection_never_names_the_wrong_scope(case in case()) {
        let out = run(&case);
        let wrong = if case.per_token { RateLimitScope::Client } else { RateLimitScope::Token };
        prop_assert!(!out.verdicts.contains(&wrong), "{case:?}: {out:?}");
    }

    /// Per client id, a token change costs at most one send beyond what a pacer that ignores
    /// tokens allows (Auto's probe, while nothing is told), none once configured or told.
    /// (Configured per token against a per-client server, it bursts: that is misconfiguration.)
    #[test]
    fn per_client_a_token_change_never_bursts(mut case in case()) {
        if case.scope == RateLimitScope::Token {
            case.scope = RateLimitScope::Auto;
        }
        case.per_token = false;
        let out = run(&case);
        let allowed = match case.scope {
            RateLimitScope::Auto => out.changes,
            _ => 0,
        };
        prop_assert!(out.beyond_blind <= allowed, "{case:?}: {out:?}");
    }

    /// Per token, under a per-token scope in force, a new token is never held back by the old
    /// token's window or 429s.
    #[test]
    fn per_token_a_new_token_starts_free(mut case in case()) {
        case.per_token = true;
        prop_assert_eq!(run(&case).held_at_change, 0, "{:?}", case);
    }
}

/// Auto learns a per-token scope under steady overload (every window spent at the change) and
/// a per-client one likewise.
#[test]
fn auto_tells_both_scopes_under_steady_overload() {
    for per_token in [true, false] {
        let case = Case {
            per_token,
            scope: RateLimitScope::Auto,
            limit: 20,
            window_s: 60,
            concurrency: 4,
            latencies: vec![80, 120, 200],
            changes: vec![70_000, 30_000],
        };
        let out = run(&case);
        let expected = if per_token { RateLimitScope::Token } else { RateLimitScope::Client };
        assert_eq!(out.verdicts, vec![expected], "per_token {per_token}: {out:?}");
    }
}
