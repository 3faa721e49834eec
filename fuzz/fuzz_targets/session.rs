//! The `Session`, driven by an arbitrary sequence of operations and time steps, against a small
//! model of what the server issued (the fuzzing twin of `core/tests/session_props.rs`).
//!
//! Input: a setup byte (bits 0–1: auth method basic/post/jwt; bit 2: no expiry safety margin
//! and no jitter; bit 3: a breaker that trips on the first failure; bit 4: ten retries; bit 5:
//! no minimum refresh interval; bits 6–7: the recheck after a rejection, default (5 min to
//! 1 h), off, 2 s to 16 s, or 1 ms to 1 s), an RNG seed (u64 little-endian), then operations until the
//! input ends, each a tag byte (`% 19`, see [`Op`]) and its little-endian arguments.
//!
//! Checked after every operation:
//! - a token handed out by `authorize` (or held as usable) is one the server issued and has
//!   not expired by the model's clock, which starts counting when the request was *sent*;
//! - never two token requests in flight;
//! - no two token requests start closer than `min_refresh_interval`, but for one refresh after
//!   a 401 per interval, whatever the token endpoint answered (lifetimes of zero, negative,
//!   fractional or huge, `Retry-After: 0`) and whenever the adapter woke;
//! - after a rejection (invalid_client, a token too long), until a token or a credential
//!   change, no token request starts sooner than the hold after the one before ended, however
//!   it ended (an answer, a transport failure, an abandon, a timeout): `recheck_after`, doubled
//!   per rejection in a row, at most `recheck_cap`; and the rejection's event says when;
//! - after the second abandoned token request in a row and those after it, the next one waits
//!   as after failures: 1 s (`retry_base`), doubling, at most 60 s (`retry_cap`); and no longer:
//!   once the hold, the spacing after the abandoned request's start and the held token's
//!   refresh point have passed, a token request is due, and `poll_token_request` sends it (in
//!   a run of abandons nothing else may hold it back, see [`hold_end`]);
//! - a token shared by the fleet (`handle_token_shared` for the request in flight,
//!   `adopt_shared` without one) is taken exactly when its documentation says: the wall clock
//!   known, the ticket the one in flight (or none in flight and no usable token, for
//!   `adopt_shared`), the credentials not rejected, the token usable past its safety margin; a
//!   refused share of the request in flight counts as an abandoned request;
//! - every token installed gets a generation above all earlier ones, and the token held is the
//!   newest;
//! - every `Wait { until: Some(t) }` and `Verdict::Retry { at }` has `t >= now`, and nothing is
//!   sent past its deadline;
//! - a snapshot changed after sealing is never restored;
//! - once the server is healthy again, the session sends a new request within a bounded time
//!   (unless the credentials were rejected), and never waits for an event that cannot come;
//! - no panic, in `Display` and `Debug` of every output too.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use credflow_core::http::Method;
use credflow_core::http::date::format_http_date;
use credflow_core::lifecycle::{Generation, LifecycleEvent, Ticket, Wake};
use credflow_core::oauth::AuthMethod;
use credflow_core::ratelimit::pacer::Priority;
use credflow_core::retry::policy::TransportKind;
use credflow_core::secret::{AccessToken, Credentials};
use credflow_core::session::{
    Authorize, Event, HostKey, RequestSpec, RequestState, RestoreError, Session, SessionConfig,
    TokenEndpoint, Verdict,
};
use credflow_core::snapshot::UnsealError;
use credflow_core::{Duration, Instant, UnixTime, WallClock};
use credflow_fuzz::{CLIENT, SNAPSHOT_KEY};
use libfuzzer_sys::fuzz_target;

/// Token capacity of the session under test: small, so that too-long tokens are reachable.
const N: usize = 64;
/// The wall clock, when set, maps `Instant::ZERO` to this (one mapping for the whole run, so
/// that a snapshot's wall-clock expiry means the same instant when it is restored).
const WALL_ORIGIN: UnixTime = UnixTime::from_secs(1_700_000_000);
const MAX_OPS: usize = 512;
const MAX_REQUESTS: usize = 16;

/// One step of the run.
#[derive(Debug)]
enum Op {
    /// Time passes: even values are `v / 2` milliseconds, odd ones `v / 2` seconds.
    Advance(u16),
    /// The adapter asks for a token request.
    PollToken,
    /// The token endpoint answers the outstanding request: kind (`% 14`), lifetime in seconds.
    AnswerToken(u8, u16),
    /// The outstanding token request fails in transport (`false`) or is abandoned (`true`).
    TokenTransport(bool),
    /// An API request begins: method and flags, priority and deadline.
    Begin(u8, u8),
    /// Request `i % len` asks to be sent.
    Authorize(u8),
    /// Request `i % len`, if sent, gets a response: index, status selector, headers selector.
    Respond(u8, u16, u8),
    /// Request `i % len`, if sent, fails in transport.
    Transport(u8),
    /// Request `i % len` is dropped by its caller.
    Abandon(u8),
    /// The adapter's timer fires now.
    Timeout,
    /// The secret is rotated.
    Rotate,
    /// The adapter tells the session the wall-clock time.
    WallClock,
    /// The current token is sealed into a snapshot.
    Seal,
    /// The last snapshot is restored: as sealed (0), or with byte `v % len` xored with `v`.
    Restore(u8),
    /// The adapter sleeps until the session's next deadline and handles it.
    SleepToDeadline,
    /// The adapter sleeps until the last "not before" it was given.
    SleepToWait,
    /// Fleet mode: request `i % len`'s next attempt was admitted by the fleet (`v == 0`), or
    /// the fleet holds it back for `v` × 100 ms (up to 109 minutes: short holds and a daily
    /// quota's).
    Fleet(u8, u16),
    /// The fleet answers a token request of this session's with its shared token
    /// (`handle_token_shared`): the ticket `t % 64`-th from the newest handed out (0: the one
    /// in flight, if any), the token as chosen by [`fleet_token`] from `t` and `v`.
    Shared(u8, u16),
    /// The fleet's token is adopted outside a token request (`adopt_shared`): the token as
    /// chosen by [`fleet_token`].
    Adopt(u8, u16),
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.arbitrary::<u8>()? % 19 {
            0 => Op::Advance(u.arbitrary()?),
            1 => Op::PollToken,
            2 => Op::AnswerToken(u.arbitrary()?, u.arbitrary()?),
            3 => Op::TokenTransport(u.arbitrary()?),
            4 => Op::Begin(u.arbitrary()?, u.arbitrary()?),
            5 => Op::Authorize(u.arbitrary()?),
            6 => Op::Respond(u.arbitrary()?, u.arbitrary()?, u.arbitrary()?),
            7 => Op::Transport(u.arbitrary()?),
            8 => Op::Abandon(u.arbitrary()?),
            9 => Op::Timeout,
            10 => Op::Rotate,
            11 => Op::WallClock,
            12 => Op::Seal,
            13 => Op::Restore(u.arbitrary()?),
            14 => Op::SleepToDeadline,
            15 => Op::SleepToWait,
            16 => Op::Fleet(u.arbitrary()?, u.arbitrary()?),
            17 => Op::Shared(u.arbitrary()?, u.arbitrary()?),
            _ => Op::Adopt(u.arbitrary()?, u.arbitrary()?),
        })
    }
}

/// What the "server" issued, and what the harness is waiting for.
struct Model {
    /// (token value, absolute expiry counted from the moment its request was sent).
    issued: Vec<(String, Instant)>,
    outstanding: Option<(Ticket, Instant)>,
    /// The tickets handed out, newest last (at most 64 kept): stale ones for the fleet's
    /// answers too.
    tickets: Vec<Ticket>,
    /// The newest generation seen: returned by an install, in a `TokenAcquired` event or held.
    generation: Generation,
    /// The generation of the last `TokenAcquired` event.
    event_generation: Generation,
    counter: u32,
    wall: bool,
    snapshot: Option<Vec<u8>>,
    last_wait: Option<Instant>,
    /// The token endpoint answered with a fatal error, and no token request went out since
    /// (nor a rotation): requests are stopped until the recheck.
    rejected: bool,
    /// The spacing of token requests.
    spacing: Spacing,
}

/// The spacing invariant, as a model: no two token requests start closer than `min`, except a
/// refresh after a 401 dropped the current token, and such early starts are `min` apart.
struct Spacing {
    min: Duration,
    last_start: Option<Instant>,
    /// The last start closer than `min` to the one before it.
    last_early: Option<Instant>,
    /// A 401 dropped the current token since the last start, and no token or credential change
    /// came since: the next start may be early.
    refused: bool,
    /// Token requests abandoned in a row, and the earliest start that run allows (the last
    /// abandon's instant plus its wait: none after the first).
    abandoned: u32,
    hold: Instant,
    /// The configured hold after a rejection (`None`: stopped until the credentials change) and
    /// its cap.
    recheck_after: Option<Duration>,
    recheck_cap: Duration,
    /// The hold after the last rejection (zero: none since the last token or rotation), and
    /// the earliest start it allows. Lower bounds: the model forgets the hold on every new
    /// token (the lifecycle, on a token installed while a request is in flight, keeps it).
    recheck: Duration,
    recheck_until: Instant,
}

impl Spacing {
    fn started(&mut self, now: Instant) {
        assert!(
            now >= self.recheck_until,
            "a token request at {now}, within the hold of {} after a rejection, until {}",
            self.recheck,
            self.recheck_until
        );
        assert!(
            now >= self.hold,
            "a token request at {now}, within the hold of {} abandoned ones until {}",
            self.abandoned,
            self.hold
        );
        if let Some(gap) = self.last_start.map(|at| now.saturating_duration_since(at))
            && gap < self.min
        {
            assert!(self.refused, "token requests {gap} apart at {now}, no 401 between them");
            assert!(
                self.last_early.is_none_or(|at| now.saturating_duration_since(at) >= self.min),
                "a second early refresh within {} at {now}",
                self.min
            );
            self.last_early = Some(now);
        }
        self.last_start = Some(now);
        self.refused = false;
    }

    /// A token request was abandoned: from the second in a row, the next waits 1 s doubling to
    /// 60 s (the default `retry_base` and `retry_cap`).
    fn abandoned(&mut self, now: Instant) {
        self.abandoned += 1;
        let wait = match self.abandoned {
            1 => Duration::ZERO,
            n => Duration::from_secs((1u64 << (n - 2).min(6)).min(60)),
        };
        self.hold = now + wait;
    }

    /// A token request ended at `now`, however (an answer, a failure, an abandon, a timeout):
    /// after a rejection, the next waits for the hold.
    fn ended(&mut self, now: Instant) {
        if !self.recheck.is_zero() {
            self.recheck_until = now + self.recheck;
        }
    }

    /// In a run of abandons (none in flight): the latest of the hold's end, the spacing after
    /// the abandoned request's start and the hold after a rejection, by which a token request
    /// is due (unless a held token's refresh point is later).
    fn due_by(&self) -> Option<Instant> {
        let start = self.last_start?;
        (self.abandoned > 0).then(|| self.hold.max(start + self.min).max(self.recheck_until))
    }

    /// Exactly what ends a run of abandons in the lifecycle: an outcome of the request in
    /// flight (an answer, a failure, a timeout, a request that could not be encoded), a
    /// credential change, a token installed while none is in flight (a restored snapshot, a
    /// fleet's token). Exact, not merely safe: the model's holds are upper bounds too.
    fn run_ended(&mut self) {
        self.abandoned = 0;
        self.hold = Instant::ZERO;
    }

    /// Follows the session's events at `now`: a 401 that dropped the token allows one early
    /// refresh; a new token takes the allowance back, and ends a rejection's hold. A rejection
    /// doubles the hold (the first: `recheck_after`), at most `recheck_cap`, and its event
    /// names the recheck: at the hold's end, or later for the spacing or a held token's
    /// refresh point, never sooner.
    fn observe(&mut self, now: Instant, event: &Event) {
        match event {
            Event::Token(LifecycleEvent::Invalidated(_)) => self.refused = true,
            Event::Token(LifecycleEvent::TokenAcquired { .. }) => {
                self.refused = false;
                self.recheck = Duration::ZERO;
                self.recheck_until = Instant::ZERO;
            }
            Event::Token(LifecycleEvent::CredentialsRejected { recheck_at, .. }) => {
                let Some(first) = self.recheck_after else {
                    assert_eq!(*recheck_at, None, "a recheck with rechecks off");
                    return;
                };
                self.recheck = (self.recheck + self.recheck).max(first).min(self.recheck_cap);
                self.recheck_until = now + self.recheck;
                assert!(
                    recheck_at.is_some_and(|at| at >= self.recheck_until),
                    "a rejection at {now} names the recheck {recheck_at:?}, before {}",
                    self.recheck_until
                );
            }
            _ => {}
        }
    }
}

impl Model {
    /// A token was installed (restored, shared) under `generation`: above every earlier one.
    fn installed(&mut self, generation: Generation) {
        assert!(
            generation > self.generation,
            "a token installed as {generation:?}, not above {:?}",
            self.generation
        );
        self.generation = generation;
    }

    /// Follows the session's events at `now`: the spacing's, and each new token's generation
    /// above the one before.
    fn observe(&mut self, now: Instant, event: &Event) {
        if let Event::Token(LifecycleEvent::TokenAcquired { generation, .. }) = *event {
            assert!(
                generation > self.event_generation,
                "a token acquired as {generation:?} after {:?}",
                self.event_generation
            );
            self.event_generation = generation;
            self.generation = self.generation.max(generation);
        }
        self.spacing.observe(now, event);
    }
}

const STATUSES: [u16; 13] = [200, 204, 401, 403, 429, 500, 503, 404, 408, 502, 504, 400, 302];

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let setup: u8 = u.arbitrary().unwrap_or(0);
    let seed: u64 = u.arbitrary().unwrap_or(0);

    let auth =
        [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost, AuthMethod::ClientSecretJwt]
            [usize::from(setup % 3)];
    let mut config = SessionConfig::default();
    if setup & 0b100 != 0 {
        config.lifecycle.expiry_safety = Duration::ZERO;
        config.lifecycle.refresh_jitter_permille = 0;
    }
    if setup & 0b1000 != 0 {
        config.token_breaker.consecutive_failures = 1;
        config.api_breaker.consecutive_failures = 1;
    }
    if setup & 0b1_0000 != 0 {
        config.retry.max_retries = 10;
    }
    if setup & 0b10_0000 != 0 {
        config.lifecycle.min_refresh_interval = Duration::ZERO;
    }
    (config.lifecycle.recheck_after, config.lifecycle.recheck_cap) = match setup >> 6 {
        0 => (config.lifecycle.recheck_after, config.lifecycle.recheck_cap),
        1 => (None, config.lifecycle.recheck_cap),
        2 => (Some(Duration::from_secs(2)), Duration::from_secs(16)),
        _ => (Some(Duration::from_millis(1)), Duration::from_secs(1)),
    };
    let (recheck_after, recheck_cap) =
        (config.lifecycle.recheck_after, config.lifecycle.recheck_cap);
    let creds = Credentials::from_strs(CLIENT.0, CLIENT.1).unwrap();
    let endpoint =
        TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap().with_auth(auth);
    let min_refresh_interval = config.lifecycle.min_refresh_interval;
    let Ok(mut s) = Session::<N, 2>::new(creds, endpoint, config, seed) else { return };

    let mut buf = [0u8; 4096];
    let mut now = Instant::ZERO;
    let mut model = Model {
        issued: Vec::new(),
        outstanding: None,
        tickets: Vec::new(),
        generation: Generation(0),
        event_generation: Generation(0),
        counter: 0,
        wall: false,
        snapshot: None,
        last_wait: None,
        rejected: false,
        spacing: Spacing {
            min: min_refresh_interval,
            last_start: None,
            last_early: None,
            refused: false,
            abandoned: 0,
            hold: Instant::ZERO,
            recheck_after,
            recheck_cap,
            recheck: Duration::ZERO,
            recheck_until: Instant::ZERO,
        },
    };
    let mut reqs: Vec<(RequestState, bool)> = Vec::new(); // (state, sent)

    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(&mut u) else { break };
        if trace() {
            eprintln!("{now}: {op:?}");
        }
        let timers = matches!(op, Op::Timeout | Op::SleepToDeadline);
        match op {
            Op::Advance(v) => {
                let step = u64::from(v >> 1);
                now = now
                    + if v & 1 == 0 {
                        Duration::from_millis(step)
                    } else {
                        Duration::from_secs(step)
                    };
            }
            Op::PollToken => poll_token(&mut s, &mut model, now, &mut buf),
            Op::AnswerToken(kind, life) => {
                if let Some((ticket, sent)) = model.outstanding.take() {
                    answer_token(&mut s, &mut model, now, ticket, sent, kind, life);
                    model.spacing.run_ended();
                    model.spacing.ended(now);
                }
            }
            Op::TokenTransport(abandon) => {
                if let Some((ticket, _)) = model.outstanding.take() {
                    let kind = (!abandon).then_some(TransportKind::Timeout);
                    s.handle_token_error(now, ticket, kind);
                    if abandon {
                        model.spacing.abandoned(now);
                    } else {
                        model.spacing.run_ended();
                    }
                    model.spacing.ended(now);
                }
            }
            Op::Begin(m, p) => {
                let method =
                    [Method::Get, Method::Post, Method::Put, Method::Delete, Method::Patch]
                        [usize::from(m % 5)];
                let priority = [Priority::Critical, Priority::Normal, Priority::Background]
                    [usize::from(p % 3)];
                let deadline = (p % 5 == 0).then(|| now + Duration::from_secs(u64::from(m)));
                let spec = RequestSpec {
                    method,
                    idempotent: m & 0x80 != 0,
                    priority,
                    deadline,
                    host: HostKey(u64::from(m % 3)),
                };
                if reqs.len() < MAX_REQUESTS {
                    reqs.push((s.begin(now, spec), false));
                }
            }
            Op::Authorize(i) => {
                if let Some(i) = index(i, reqs.len()) {
                    let (req, sent) = &mut reqs[i];
                    let deadline = req.spec().deadline;
                    match s.authorize(now, req) {
                        Authorize::Send { token, .. } => {
                            let expiry = model
                                .issued
                                .iter()
                                .find(|(v, _)| v == token.as_str())
                                .map(|(_, e)| *e);
                            let expiry = expiry.expect("a token the server never issued");
                            assert!(
                                now < expiry,
                                "expired token handed out at {now} (expired {expiry})"
                            );
                            assert!(deadline.is_none_or(|d| now <= d), "sent past its deadline");
                            *sent = true;
                        }
                        Authorize::Wait { until: Some(t), reason } => {
                            assert!(t >= now, "wait until {t} < now {now} ({reason:?})");
                            model.last_wait = Some(t);
                        }
                        Authorize::Wait { until: None, .. } => {}
                        Authorize::Fail(e) => {
                            let _ = (e.to_string(), e.likely_cause());
                            let _ = reqs.swap_remove(i);
                        }
                    }
                }
            }
            Op::Respond(i, status, r) => {
                if let Some(i) = index(i, reqs.len())
                    && reqs[i].1
                {
                    let status = if status & 0x8000 == 0 {
                        STATUSES[usize::from(status) % STATUSES.len()]
                    } else {
                        100 + status % 500
                    };
                    let wall_now = model.wall.then(|| {
                        WALL_ORIGIN.saturating_add(now.saturating_duration_since(Instant::ZERO))
                    });
                    let (headers, body) = api_response(status, r, wall_now);
                    let headers: Vec<(&str, &str)> =
                        headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    let verdict = s.handle_response(
                        now,
                        &mut reqs[i].0,
                        status,
                        headers.as_slice(),
                        body.as_bytes(),
                    );
                    reqs[i].1 = false;
                    if judge(now, verdict, &mut model) {
                        let _ = reqs.swap_remove(i);
                    }
                }
            }
            Op::Transport(i) => {
                if let Some(i) = index(i, reqs.len())
                    && reqs[i].1
                {
                    reqs[i].1 = false;
                    let verdict =
                        s.handle_transport_error(now, &mut reqs[i].0, TransportKind::Reset);
                    if judge(now, verdict, &mut model) {
                        let _ = reqs.swap_remove(i);
                    }
                }
            }
            Op::Abandon(i) => {
                if let Some(i) = index(i, reqs.len()) {
                    let (mut req, _) = reqs.swap_remove(i);
                    s.abandon(now, &mut req);
                }
            }
            Op::Fleet(i, v) => {
                if let Some(i) = index(i, reqs.len()) {
                    let (req, _) = &mut reqs[i];
                    if v == 0 {
                        req.set_externally_paced(true);
                    } else {
                        req.set_external_hold(now + Duration::from_millis(u64::from(v) * 100));
                    }
                }
            }
            Op::Timeout => s.handle_timeout(now),
            Op::Rotate => {
                s.set_credentials(now, Credentials::from_strs(CLIENT.0, "rotated").unwrap());
                model.outstanding = None; // disowned
                model.rejected = false;
                model.spacing.refused = false;
                model.spacing.run_ended();
                // A credential change ends a rejection's hold.
                model.spacing.recheck = Duration::ZERO;
                model.spacing.recheck_until = Instant::ZERO;
            }
            Op::WallClock => {
                s.set_wall_clock(WallClock::new(Instant::ZERO, WALL_ORIGIN));
                model.wall = true;
            }
            Op::Seal => {
                let mut out = [0u8; 256];
                match s.seal(now, SNAPSHOT_KEY, &mut out) {
                    Ok(0) => {}
                    Ok(n) => model.snapshot = Some(out[..n].to_vec()),
                    Err(e) => panic!("sealing failed: {e}"),
                }
            }
            Op::Restore(v) => {
                if let Some(mut snapshot) = model.snapshot.clone() {
                    let changed = v != 0;
                    if changed {
                        let at = usize::from(v) % snapshot.len();
                        snapshot[at] ^= v;
                    }
                    match s.restore(now, &snapshot, SNAPSHOT_KEY) {
                        Ok(generation) => {
                            assert!(!changed, "a tampered snapshot was restored");
                            model.installed(generation);
                            if model.outstanding.is_none() {
                                model.spacing.run_ended();
                            }
                        }
                        Err(e) => {
                            let _ = e.to_string();
                            if !changed {
                                assert!(
                                    matches!(
                                        e,
                                        RestoreError::NotUsable
                                            | RestoreError::Unseal(
                                                UnsealError::Expired { .. }
                                                    | UnsealError::WrongCredential
                                            )
                                    ),
                                    "an intact snapshot refused: {e:?}"
                                );
                            }
                        }
                    }
                }
            }
            Op::SleepToDeadline => {
                if let Some((at, why)) = s.poll_timeout() {
                    let _ = format!("{why:?}");
                    if at > now && !at.is_never() {
                        now = at;
                    }
                    s.handle_timeout(now);
                }
            }
            Op::SleepToWait => {
                if let Some(t) = model.last_wait.take() {
                    now = now.max(t);
                }
            }
            Op::Shared(t, v) => {
                let back = usize::from(t % 64);
                if let Some(&ticket) = model.tickets.iter().rev().nth(back) {
                    let (token, expires_at, usable) = fleet_token(&s, &mut model, now, t, v);
                    let result = s.handle_token_shared(now, ticket, token, expires_at);
                    let current = model.outstanding.is_some_and(|(t, _)| t == ticket);
                    if !model.wall {
                        assert_eq!(result, Err(RestoreError::NoWallClock));
                    } else if !current {
                        assert_eq!(result, Err(RestoreError::NotUsable), "a stale ticket's share");
                    } else {
                        // Released as an abandoned request; a token taken ends the run.
                        model.outstanding = None;
                        model.spacing.abandoned(now);
                        model.spacing.ended(now);
                        if usable {
                            let generation = result.expect("a usable shared token refused");
                            model.installed(generation);
                            model.spacing.run_ended();
                        } else {
                            assert_eq!(result, Err(RestoreError::NotUsable), "a spent token");
                        }
                    }
                }
            }
            Op::Adopt(t, v) => {
                let held = s.token(now).is_some();
                let (token, expires_at, usable) = fleet_token(&s, &mut model, now, t, v);
                let result = s.adopt_shared(now, token, expires_at);
                if !model.wall {
                    assert_eq!(result, Err(RestoreError::NoWallClock));
                } else if model.outstanding.is_some() || held || model.rejected || !usable {
                    assert_eq!(
                        result,
                        Err(RestoreError::NotUsable),
                        "adopted (in flight {}, held {held}, rejected {}, usable {usable})",
                        model.outstanding.is_some(),
                        model.rejected
                    );
                } else {
                    let generation = result.expect("a usable shared token refused");
                    model.installed(generation);
                    model.spacing.run_ended();
                }
            }
        }

        if !s.lifecycle().in_flight() && model.outstanding.take().is_some() {
            // Only a deadline handled ends a request the harness did not end itself.
            assert!(timers, "a token request ended by nothing the harness did");
            // Timed out: a failure.
            model.spacing.run_ended();
            model.spacing.ended(now);
        }
        check_hold_ends(&s, &model, now);
        let _ = s.poll_timeout();
        while let Some(event) = s.poll_event() {
            let _ = format!("{event:?}");
            model.observe(now, &event);
        }
        if let Some((token, times)) = s.token(now) {
            let expiry = model.issued.iter().find(|(v, _)| v == token.as_str()).map(|(_, e)| *e);
            let expiry = expiry.expect("the session holds a token the server never issued");
            assert!(now < expiry, "an expired token is held as usable at {now}");
            assert!(times.expires_at <= expiry, "the session believes the token lives longer");
            assert!(times.usable_until <= times.expires_at);
            assert!(
                times.generation >= model.generation,
                "the token held ({:?}) is older than {:?}",
                times.generation,
                model.generation
            );
            model.generation = times.generation;
        }
        let _ = format!("{s:?} {:?}", s.counters());
    }
    // The callers drop what they still hold (an attempt in flight may hold a breaker probe).
    for (mut req, _) in reqs {
        s.abandon(now, &mut req);
    }
    recover(&mut s, &mut model, now, &mut buf);
});

/// Asks the session for a token request at `now` and checks what it does against the model.
fn poll_token(s: &mut Session<N, 2>, model: &mut Model, now: Instant, buf: &mut [u8]) {
    let hold_end = hold_end(s, model, now);
    match s.poll_token_request(now, buf) {
        Ok(Some((ticket, request))) => {
            assert!(model.outstanding.is_none(), "two token requests in flight");
            let _ = format!("{request:?}");
            assert!(request.body.starts_with("grant_type=client_credentials"));
            model.outstanding = Some((ticket, now));
            model.rejected = false; // the recheck
            if model.tickets.len() == 64 {
                let _ = model.tickets.remove(0);
            }
            model.tickets.push(ticket);
            model.spacing.started(now);
        }
        Ok(None) => {
            if let Some(end) = hold_end {
                assert!(
                    end > now,
                    "no token request at {now}, after {} abandoned ones, although their hold, \
                     the spacing and the refresh point ended at {end}",
                    model.spacing.abandoned
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                s.endpoint().auth() == AuthMethod::ClientSecretJwt && !model.wall,
                "encode failed: {e}"
            );
            // Started, then failed at once: spaced as any start, and an outcome.
            model.spacing.started(now);
            model.spacing.run_ended();
            model.spacing.ended(now);
            model.rejected = false;
        }
    }
}

/// In a run of abandoned token requests with none in flight: the instant by which the next
/// token request is due, the latest of the run's hold, the spacing after the abandoned
/// request's start and the held token's refresh point. `None` outside a run, and while the
/// session still holds a token past its usable-until point (no timeout handled since), whose
/// refresh point it does not show.
///
/// Nothing else may hold the request back past that instant. The lifecycle's backoff after
/// failures is replaced by the hold (`on_abandoned` sets its own), and a backoff starts only
/// with a failure, which ends the run. A 401 in the run only shortens the spacing (to the one
/// after the last early refresh). Requests stop for rejected credentials only on an answer,
/// which ends the run. The token endpoint's breaker admitted the abandoned request (closed,
/// or half-open with it as its probe), an abandon charges it nothing and gets its probe back,
/// and all that could open it again (a failure, a timeout) ends the run: it admits the next
/// request. (The wall clock a signed request needs was there for the abandoned one.)
fn hold_end(s: &Session<N, 2>, model: &Model, now: Instant) -> Option<Instant> {
    if model.outstanding.is_some() {
        return None;
    }
    let due_by = model.spacing.due_by()?;
    if let Some((at, Wake::TokenExpiry)) = s.lifecycle().poll_timeout()
        && at <= now
    {
        return None;
    }
    let refresh = s.token(now).map_or(Instant::ZERO, |(_, times)| times.refresh_at);
    Some(due_by.max(refresh))
}

/// The hold after abandoned token requests ends when the model says: the lifecycle has the
/// next request due by then (or now).
fn check_hold_ends(s: &Session<N, 2>, model: &Model, now: Instant) {
    if let Some(end) = hold_end(s, model, now) {
        let due = s.lifecycle().next_request_at();
        assert!(
            due.is_some_and(|at| at <= end.max(now)),
            "after {} abandoned token requests, the next is due at {due:?}, after the end of \
             their hold, the spacing and the refresh point ({end}), at {now}",
            model.spacing.abandoned
        );
    }
}

/// A token the fleet shares, and when its record says it expires (whole wall-clock seconds, as
/// the fleet keeps it), and whether it is usable at `now` as the session's documentation
/// promises: before its expiry less the safety margin (`expiry_safety`, at most a tenth of its
/// remaining life). With bit 7 of `t` set, a token the server issued before (`v % len`), the
/// session's own or the fleet's, its expiry rounded down; else a new one expiring `v` seconds
/// after the whole second of `now`, less 2 s (some spent already, some about to be).
fn fleet_token(
    s: &Session<N, 2>,
    model: &mut Model,
    now: Instant,
    t: u8,
    v: u16,
) -> (AccessToken<N>, UnixTime, bool) {
    let since_origin = |at: Instant| at.saturating_duration_since(Instant::ZERO).as_secs();
    let (value, secs) = if t & 0x80 != 0 && !model.issued.is_empty() {
        let (value, expiry) = &model.issued[usize::from(v) % model.issued.len()];
        (value.clone(), since_origin(*expiry))
    } else {
        model.counter += 1;
        let value = format!("fleet{}", model.counter);
        let secs = (since_origin(now) + u64::from(v)).saturating_sub(2);
        model.issued.push((value.clone(), Instant::ZERO + Duration::from_secs(secs)));
        (value, secs)
    };
    let expires_at = WALL_ORIGIN.saturating_add(Duration::from_secs(secs));
    let expiry = WallClock::new(Instant::ZERO, WALL_ORIGIN).instant_at(expires_at);
    let life = expiry.saturating_duration_since(now);
    let usable = now < expiry.saturating_sub(s.config().lifecycle.safety(life));
    (AccessToken::new(&value).expect("fits"), expires_at, usable)
}

/// Longest a healthy server may have to wait for the session to send again: the longest wait
/// the server asked for in this harness (a 2-hour `Retry-After`), plus slack for backoff and
/// breaker cooldowns.
const RECOVERY_HORIZON: Duration = Duration::from_secs(3 * 3600);

/// From now on the server is healthy and every earlier request has been dropped. Unless the
/// credentials were rejected, a new critical request must be sent within a bounded number of
/// steps and of (virtual) time, and no wait may be for an event that cannot come; once the
/// server answers it (a 200 with an allowance to spare), so must a second one: the first may
/// have been the one probe per `max_wait` of a long rate-limit hold, and its answer ends the
/// hold.
fn recover(s: &mut Session<N, 2>, model: &mut Model, mut now: Instant, buf: &mut [u8]) {
    if !model.wall {
        // client_secret_jwt cannot sign without it; the others do not care.
        s.set_wall_clock(WallClock::new(Instant::ZERO, WALL_ORIGIN));
        model.wall = true;
    }
    let start = now;
    let spec = RequestSpec {
        method: Method::Get,
        idempotent: true,
        priority: Priority::Critical,
        deadline: None,
        host: HostKey(0),
    };
    let mut req = s.begin(now, spec);
    // The first request sent was answered: the next one must go too.
    let mut answered = false;
    for _ in 0..256 {
        assert!(
            now.saturating_duration_since(start) <= RECOVERY_HORIZON,
            "no recovery {:?} after the server became healthy",
            now.saturating_duration_since(start)
        );
        s.handle_timeout(now);
        if !s.lifecycle().in_flight() && model.outstanding.take().is_some() {
            model.spacing.run_ended(); // timed out
            model.spacing.ended(now);
        }
        check_hold_ends(s, model, now);
        if model.outstanding.is_none() {
            poll_token(s, model, now, buf);
        }
        if let Some((ticket, sent)) = model.outstanding.take() {
            answer_token(s, model, now, ticket, sent, 0, 3600);
            model.spacing.run_ended();
            model.spacing.ended(now);
        }
        while let Some(event) = s.poll_event() {
            model.observe(now, &event);
        }
        let answer = s.authorize(now, &mut req);
        if trace() {
            eprintln!("{now}: recovering: {answer:?}");
        }
        match answer {
            Authorize::Send { token, .. } => {
                let expiry =
                    model.issued.iter().find(|(v, _)| v == token.as_str()).map(|(_, e)| *e);
                assert!(expiry.is_some_and(|e| now < e), "recovered with a dead token");
                if answered {
                    return;
                }
                // What a healthy Genesys Cloud answers: a success, and an allowance to spare.
                let healthy: &[(&str, &str)] = &[
                    ("inin-ratelimit-allowed", "1000000"),
                    ("inin-ratelimit-count", "1"),
                    ("inin-ratelimit-reset", "60"),
                ];
                assert_eq!(s.handle_response(now, &mut req, 200, healthy, b"{}"), Verdict::Done);
                answered = true;
                req = s.begin(now, spec);
            }
            Authorize::Wait { until: Some(t), reason } => {
                assert!(t >= now, "wait until {t} < now {now} ({reason:?})");
                now = t;
            }
            Authorize::Wait { until: None, reason } => {
                let next = s.poll_timeout().map(|(at, _)| at);
                assert!(
                    s.lifecycle().in_flight() || next.is_some(),
                    "waits ({reason:?}) for an event that cannot come"
                );
                if let Some(at) = next {
                    now = now.max(at);
                }
            }
            Authorize::Fail(e) => {
                use credflow_core::session::ApiErrorKind;
                match e.kind {
                    ApiErrorKind::CredentialsRejected { .. } => {
                        assert!(model.rejected, "credentials rejected out of nowhere: {e}");
                        // The error names the recheck, which a healthy server answers with a
                        // token: recovered without new credentials. Off: nothing to wait for.
                        let recheck = s.error_detail(e).next_probe_at();
                        assert_eq!(recheck.is_some(), model.spacing.recheck_after.is_some());
                        let Some(recheck) = recheck else { return };
                        assert!(recheck >= now, "a recheck at {recheck}, before {now}");
                        now = recheck;
                    }
                    ApiErrorKind::CircuitOpen { until } => now = now.max(until),
                    // A quota wait longer than the policy accepts fails fast (the server's
                    // limit, or the pacer's own hold); one request per max_wait goes out as a
                    // probe of a limit the server set.
                    ApiErrorKind::GaveUp { reason, .. } if reason.rate_limit_wait().is_some() => {
                        now = now + s.config().retry.max_wait
                    }
                    ApiErrorKind::TokenUnavailable { retry_at, .. } => {
                        let next = retry_at.or_else(|| s.poll_timeout().map(|(at, _)| at));
                        // Token requests stopped for an answer that cannot be used (a token
                        // too long): as after rejected credentials, only new configuration
                        // recovers, and the model knows when that happened.
                        let Some(next) = next else {
                            assert!(model.rejected, "no token and no plan to get one: {e}");
                            return;
                        };
                        now = now.max(next);
                    }
                    _ => panic!("unexpected failure while recovering: {e}"),
                }
                req = s.begin(now, spec);
            }
        }
    }
    panic!("no recovery in 256 steps");
}

/// `CREDFLOW_FUZZ_TRACE=1` prints every operation, to triage a crash:
/// `CREDFLOW_FUZZ_TRACE=1 cargo +nightly fuzz run session <crash file>`.
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("CREDFLOW_FUZZ_TRACE").is_some())
}

fn index(i: u8, len: usize) -> Option<usize> {
    (len > 0).then(|| usize::from(i) % len)
}

/// Checks a verdict; returns whether the request is finished.
fn judge(now: Instant, verdict: Verdict, model: &mut Model) -> bool {
    match verdict {
        Verdict::Retry { at, reason, source } => {
            assert!(at >= now, "retry at {at} < now {now} ({reason:?}, {source:?})");
            model.last_wait = Some(at);
            false
        }
        Verdict::Done => true,
        Verdict::Fail(e) => {
            let _ = (e.to_string(), e.likely_cause());
            true
        }
    }
}

/// The token endpoint's answer of the given kind.
fn answer_token(
    s: &mut Session<N, 2>,
    model: &mut Model,
    now: Instant,
    ticket: Ticket,
    sent: Instant,
    kind: u8,
    life: u16,
) {
    let issue = |model: &mut Model, life: Duration| {
        model.counter += 1;
        let value = format!("tok{}", model.counter);
        model.issued.push((value.clone(), sent + life));
        value
    };
    let json = [("Content-Type", "application/json")];
    match kind % 14 {
        0 => {
            let value = issue(model, Duration::from_secs(life.into()));
            let body = format!(r#"{{"access_token":"{value}","token_type":"Bearer","expires_in":{life}}}"#);
            s.handle_token_response(now, ticket, 200, &json, body.as_bytes());
        }
        1 => {
            // PayPal style: a string lifetime, and an escaped slash-free token.
            let value = issue(model, Duration::from_secs(life.into()));
            let body = format!(r#"{{"token_type":"bearer","expires_in":"{life}","access_token":"{value}","scope":"a b"}}"#);
            s.handle_token_response(now, ticket, 200, &[("Date", "garbage")], body.as_bytes());
        }
        2 => {
            // No lifetime: the configured default (3600 s) applies.
            let value = issue(model, s.config().default_expires_in);
            let body = format!(r#"{{"access_token":"{value}","token_type":"BEARER"}}"#);
            s.handle_token_response(now, ticket, 201, &json, body.as_bytes());
        }
        3 => s.handle_token_response(now, ticket, 503, &[("Retry-After", "3")], b"<html>"),
        4 => s.handle_token_response(
            now,
            ticket,
            400,
            &json,
            br#"{"error":"invalid_request","description":"rate limit exceeded; slow down","error_description":"rate limit exceeded; slow down"}"#,
        ),
        5 => {
            model.rejected = true;
            s.handle_token_response(
            now,
            ticket,
            401,
            &json,
            br#"{"error":"invalid_client","description":"authentication failed","error_description":"authentication failed"}"#,
        )
        }
        6 => s.handle_token_response(now, ticket, 200, &[], b"<html><body>captive portal</body></html>"),
        7 => {
            let wait = (life % 120).to_string();
            s.handle_token_response(now, ticket, 429, &[("Retry-After", wait.as_str())], b"")
        }
        8 => {
            model.rejected = true; // a token too long for the session's capacity is fatal
            let body = format!(r#"{{"access_token":"{}","token_type":"Bearer","expires_in":60}}"#, "x".repeat(N + 1 + usize::from(life % 8)));
            s.handle_token_response(now, ticket, 200, &json, body.as_bytes());
        }
        9 => s.handle_token_response(now, ticket, 500, &[], b""),
        10 => {
            // A lifetime no token can use, however it is written: spent on arrival.
            const SPENT: [&str; 8] = ["0", "-0", "-5", "0.9", "\"0.9\"", "-1e30", "1e-3", "\"-5\""];
            let expires_in = SPENT[usize::from(life) % SPENT.len()];
            let value = issue(model, Duration::ZERO);
            let body = format!(r#"{{"access_token":"{value}","token_type":"Bearer","expires_in":{expires_in}}}"#);
            s.handle_token_response(now, ticket, 200, &json, body.as_bytes());
        }
        11 => {
            // A lifetime beyond any maximum: clamped, so believed no longer than the server
            // says.
            let value = issue(model, Duration::MAX);
            let expires_in = ["1e30", "\"1e30\"", "99999999999999999999", "1e999"][usize::from(life) % 4];
            let body = format!(r#"{{"access_token":"{value}","token_type":"Bearer","expires_in":{expires_in}}}"#);
            s.handle_token_response(now, ticket, 200, &json, body.as_bytes());
        }
        12 => s.handle_token_response(now, ticket, 503, &[("Retry-After", "0")], b""),
        _ => s.handle_token_response(
            now,
            ticket,
            400,
            &[("Retry-After", "0")],
            br#"{"error":"invalid_request","error_description":"rate limit exceeded; retry at once"}"#,
        ),
    }
}

/// An API response: header fields chosen by the bits of `r`, a body fitting `status`.
fn api_response(
    status: u16,
    r: u8,
    wall_now: Option<UnixTime>,
) -> (Vec<(&'static str, String)>, String) {
    let mut headers = Vec::new();
    if r & 1 != 0 {
        let value = match (r >> 1) & 7 {
            0 => "0".to_owned(),
            1 => "1".to_owned(),
            2 => "5".to_owned(),
            3 => "30".to_owned(),
            4 => "7200".to_owned(), // a daily limit: hours
            5 => format_http_date(
                wall_now
                    .unwrap_or(UnixTime::from_secs(0))
                    .saturating_add(Duration::from_secs(u64::from(r))),
            )
            .as_str()
            .to_owned(),
            6 => "soon".to_owned(),
            _ => "99999999999999999999".to_owned(),
        };
        headers.push(("Retry-After", value));
    }
    if r & 0x10 != 0 {
        headers.push(("inin-ratelimit-count", (u16::from(r) * 3).to_string()));
        headers.push(("inin-ratelimit-allowed", "300".to_owned()));
        headers.push(("inin-ratelimit-reset", (r >> 2).to_string()));
    }
    if r & 0x20 != 0
        && let Some(wall) = wall_now
    {
        headers.push(("Date", format_http_date(wall).as_str().to_owned()));
    }
    if r & 0x40 != 0 {
        headers
            .push(("WWW-Authenticate", r#"Bearer realm="api", error="invalid_token""#.to_owned()));
    }
    headers.push(("ININ-Correlation-Id", "0d1f6a2e-5b3c-4e8f-9a71-2c6d8e4b0f13".to_owned()));
    let body = match status {
        429 if r & 0x80 != 0 => format!(
            r#"{{"message":"Rate limit exceeded the maximum. Retry the request in [{}] seconds","code":"too.many.requests.retry.after","status":429}}"#,
            r % 61
        ),
        403 => r#"{"message":"You are missing the following permission(s): [routing:queue:view]","code":"missing.permissions","status":403}"#.to_owned(),
        401 => r#"{"message":"Authentication failed","code":"bad.credentials","status":401}"#.to_owned(),
        _ => "{}".to_owned(),
    };
    (headers, body)
}
