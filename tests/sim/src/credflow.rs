//! `credflow` and `credflow-shared`: one real core [`Session`] per pod, driven exactly like the
//! std adapter drives it (`adapters/reqwest/src/client.rs`): a token driver per pod
//! (`poll_token_request`, send, `handle_token_response`, `poll_timeout`, `handle_timeout`) and,
//! per worker, the request loop (`begin`, `authorize`, send, `handle_response`, act on the
//! verdict). A waiting worker sleeps until the instant it was given, and, like the adapter's
//! `version` channel, is woken early by any token or breaker change of its pod; a worker waiting
//! for a token with no instant given sleeps at most the adapter's 30 s token wait, one waiting
//! for a breaker probe at most 1 s. Request deadlines are the adapter's default: none.
//!
//! **Fleet mode** (`credflow-shared`) adds what the adapter does with a `SharedStore`, against
//! the [simulated Redis](crate::redis) of `credflow-redis`:
//!
//! - when a pod's session says a token request is due, its driver first asks the fleet
//!   (`RedisStore::refresh`: read the token key; take a token other than the one it holds;
//!   else take the lease, or poll every 50 ms while another pod holds it, for at most
//!   `max_wait`, then fetch alone). The lease holder sends the token request and publishes the
//!   token; a failed request keeps the lease until it expires (the fleet's back-off);
//! - before each attempt a worker asks the fleet's admission script with the request's priority
//!   and its horizon (`max_wait`): admitted now, or at a reserved slot (it sleeps, then sends
//!   without asking again), or told to wait and ask again, one worker per pod at a time (the
//!   adapter's admission gate; the others queue in order); an admitted attempt is marked
//!   externally paced
//!   (`RequestState::set_externally_paced`), so the local session holds it back only for 429
//!   waits and exhausted windows; a wait longer than the retry policy's `max_wait` is handed
//!   to the local session as the attempt's hold (`RequestState::set_external_hold`: it fails
//!   fast naming the wait, except for the session's one probe per `max_wait`), and so is the
//!   fleet's 429 hold (never longer than `max_wait`); after a local wait for a 429, a spent
//!   window or the fleet's hold the fleet is asked again;
//! - every response's rate-limit headers, and every 429, are reported to the fleet in the
//!   background.

use std::collections::{BTreeMap, VecDeque};

use credflow_core::http::Method;
use credflow_core::http::retry_after::RetryAfter;
use credflow_core::lifecycle::{Generation, Ticket};
use credflow_core::ratelimit::headers::parse_rate_limit;
use credflow_core::ratelimit::pacer::PacerConfig;
use credflow_core::secret::{AccessToken, Credentials};
use credflow_core::session::{
    Authorize, Event, HostKey, RequestSpec, RequestState, SessionConfig, TokenEndpoint, Verdict,
    WaitReason,
};
use credflow_core::{Instant, Priority, Session, UnixTime, WallClock};

use crate::Ms;
use crate::engine::{Fleet, TokenResult, World};
use crate::redis::{Acquire, RTT, Redis, StoreTiming, StoredToken};
use crate::server::Reply;

/// The adapter's longest wait for a token without news (`Config::token_wait`).
const TOKEN_WAIT: Ms = 30_000;
/// How often a tokenless pod held back from requesting reads the fleet's token
/// (`FLEET_PEEK_INTERVAL` in the adapter).
const PEEK_EVERY: Ms = 1_000;
/// The adapter's safety-net wait for a breaker probe's outcome.
const PROBE_WAIT: Ms = 1_000;
/// A sleep to a reserved slot this long or longer reads the fleet's hold before the send
/// (`RESERVATION_RECHECK` in the adapter).
const RESERVATION_RECHECK: Ms = 1_000;
/// Wall-clock time at the start of a run (the fleet shares tokens by absolute expiry).
const EPOCH: UnixTime = UnixTime::from_secs(1_700_000_000);
/// What every worker asks for.
const PRIORITY: Priority = Priority::Normal;

enum State {
    Idle,
    /// Waiting for the session: the instant it gave, or a token or breaker change of the pod.
    /// `asked`: the fleet answered about the next attempt (kept across local waits).
    Waiting {
        req: RequestState,
        asked: bool,
    },
    /// The fleet answered (admitted, or a wait too long to sleep); the answer arrives one
    /// round trip after the call.
    Answered(RequestState),
    /// Sleeping the wait the fleet's admission answered; then asks again.
    FleetWait(RequestState),
    /// Sleeping to a slot the fleet reserved (`wait` ms after the answer); then sent without
    /// asking again, after reading the fleet's hold if the sleep was long.
    Reserved(RequestState, Ms),
    /// Queued behind another worker of the pod at the fleet's admission.
    Gated(RequestState),
    InFlight(RequestState),
}

/// What a pod's token driver is waiting for from Redis (fleet mode).
enum Call {
    /// Read the token key (the refresh loop's first step, and again after a nap).
    Get { give_up: Ms },
    /// The token key's value arrived.
    Got { seen: Option<StoredToken>, give_up: Ms },
    /// The acquire script's answer arrived.
    Acquired { answer: Acquire, give_up: Ms },
    /// The publish script's answer arrived: the driver loops.
    Published,
    /// Read the token key without the lease: the pod has no token and may not request one
    /// (the adapter's `adopt_fleet_token`, about once a second).
    Peek,
    /// The token key's value arrived, for a peek.
    Peeked { seen: Option<StoredToken> },
}

struct Pod {
    session: Session,
    ticket: Option<Ticket>,
    /// The generation published to the (simulated) lock-free cache.
    published: Option<Generation>,
    /// Fleet mode: the Redis call the driver awaits.
    call: Option<Call>,
    /// Fleet mode: the lease this pod's token request was sent under.
    lease: Option<u64>,
    /// Fleet mode: the last token held or refused (the fleet is asked for another).
    stale: Option<String>,
    /// Fleet mode: the worker whose turn it is at the fleet's admission (the adapter's
    /// admission gate: one request per priority class per process asks; every worker here asks
    /// with the same priority), and the workers queued behind it, in order.
    gate: Option<usize>,
    gate_queue: VecDeque<usize>,
}

/// A rate-limit report on its way to Redis.
enum Report {
    Observe { remaining: u64, limit: Option<u64>, reset_after: Option<Ms>, window: Option<Ms> },
    RateLimited { retry_after: Option<Ms> },
}

/// The fleet's shared state and the reports not yet applied.
struct Shared {
    redis: Redis,
    timing: StoreTiming,
    pacer: PacerConfig,
    /// The longest fleet-wide 429 hold (`FleetScope::max_hold`: the retry policy's `max_wait`).
    max_hold: Ms,
    /// Reports by the instant their script runs.
    reports: BTreeMap<(Ms, u64), Report>,
    seq: u64,
}

impl Shared {
    /// Runs the reports due by `now`, in order, each at its own instant.
    fn settle(&mut self, now: Ms) {
        while let Some(entry) = self.reports.first_entry() {
            let &(at, _) = entry.key();
            if at > now {
                break;
            }
            match entry.remove() {
                Report::Observe { remaining, limit, reset_after, window } => {
                    let default = self.pacer.default_window.as_millis();
                    self.redis.observe(at, remaining, limit, reset_after, window, default);
                }
                Report::RateLimited { retry_after } => {
                    self.redis.rate_limited(at, retry_after, self.max_hold)
                }
            }
        }
    }

    fn report(&mut self, at: Ms, report: Report) {
        self.seq += 1;
        self.reports.insert((at, self.seq), report);
    }
}

/// The credflow fleet: independent pods, or pods sharing one token and budget.
pub(crate) struct Credflow {
    pods: Vec<Pod>,
    workers: Vec<State>,
    buf: Vec<u8>,
    host: HostKey,
    wall: WallClock,
    /// The longest wait the retry policy accepts: a longer fleet wait is left to the session.
    max_wait: Ms,
    shared: Option<Shared>,
}

fn at(ms: Ms) -> Instant {
    Instant::from_millis(ms)
}

impl Credflow {
    /// Pods sharing a Redis when `shared`, else independent ones.
    pub(crate) fn new(
        world: &World,
        seed: u64,
        config: &SessionConfig,
        shared: bool,
    ) -> Result<Self, String> {
        let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token")
            .map_err(|e| e.to_string())?;
        let wall = WallClock::new(Instant::ZERO, EPOCH);
        let mut pods = Vec::new();
        for p in 0..world.scenario.pods {
            let credentials = Credentials::from_strs("sim-client", "sim-secret")
                .map_err(|(part, e)| format!("{part:?}: {e}"))?;
            let pod_seed = seed ^ (p as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut session = Session::new(credentials, endpoint.clone(), config.clone(), pod_seed)
                .map_err(|e| e.to_string())?;
            session.set_wall_clock(wall);
            pods.push(Pod {
                session,
                ticket: None,
                published: None,
                call: None,
                lease: None,
                stale: None,
                gate: None,
                gate_queue: VecDeque::new(),
            });
        }
        let workers = (0..world.workers()).map(|_| State::Idle).collect();
        let shared = shared.then(|| Shared {
            redis: Redis::default(),
            timing: StoreTiming::default(),
            pacer: config.pacer,
            max_hold: config.retry.max_wait.as_millis(),
            reports: BTreeMap::new(),
            seq: 0,
        });
        Ok(Credflow {
            pods,
            workers,
            buf: vec![0; 4096],
            host: HostKey::from_host("api.mypurecloud.com"),
            wall,
            max_wait: config.retry.max_wait.as_millis(),
            shared,
        })
    }

    /// The token driver's loop body: send a token request if one is due (in fleet mode, ask the
    /// fleet first), else sleep until the session's next deadline.
    fn drive(&mut self, world: &mut World, pod: usize) {
        let now = world.now();
        let p = &mut self.pods[pod];
        if p.ticket.is_some() || p.call.is_some() {
            return;
        }
        if let Some((token, _)) = p.session.token(at(now)) {
            p.stale = Some(token.as_str().to_owned());
        }
        match p.session.poll_token_request(at(now), &mut self.buf) {
            Ok(Some((ticket, _request))) => {
                p.ticket = Some(ticket);
                if self.shared.is_some() {
                    let give_up = now + self.shared.as_ref().map_or(0, |s| s.timing.max_wait);
                    self.fleet_step(world, pod, Call::Get { give_up });
                } else {
                    world.send_token(pod, None);
                }
            }
            Ok(None) | Err(_) => {
                // The adapter sleeps until `next`; a deadline already passed fires at once,
                // which here is the next millisecond.
                let next = p.session.poll_timeout().map(|(next, _)| next.as_millis().max(now + 1));
                // Fleet mode, no token and none may be requested: peek at the fleet's once a
                // second.
                let peek = self.shared.is_some()
                    && p.session.token(at(now)).is_none()
                    && !p.session.lifecycle().in_flight();
                match next {
                    Some(next) if !peek || next <= now + PEEK_EVERY => world.pod_timer(pod, next),
                    _ if peek => {
                        p.call = Some(Call::Peek);
                        world.pod_timer(pod, now + PEEK_EVERY);
                    }
                    Some(next) => world.pod_timer(pod, next),
                    None => {}
                }
            }
        }
        self.buf.fill(0);
        self.changed(world, pod);
    }

    /// One step of `RedisStore::refresh` (and of the driver around it) for `pod`: `call` is
    /// what the driver was waiting for, now arrived.
    fn fleet_step(&mut self, world: &mut World, pod: usize, call: Call) {
        let now = world.now();
        let Some(shared) = self.shared.as_mut() else { return };
        shared.settle(now);
        let p = &mut self.pods[pod];
        let wall = self.wall.wall_at(at(now));
        match call {
            Call::Get { give_up } => {
                let seen = shared.redis.get_token(now);
                p.call = Some(Call::Got { seen, give_up });
                world.pod_timer(pod, now + RTT);
            }
            Call::Got { seen, give_up } => {
                if let Some(t) = seen
                    .as_ref()
                    .filter(|t| Some(&t.token) != p.stale.as_ref() && t.expires_at > wall)
                {
                    self.install(world, pod, t.clone());
                    return;
                }
                let answer = shared.redis.acquire(now, seen.as_ref(), shared.timing.lease_ttl);
                p.call = Some(Call::Acquired { answer, give_up });
                world.pod_timer(pod, now + RTT);
            }
            Call::Acquired { answer, give_up } => match answer {
                Acquire::Changed => self.fleet_step(world, pod, Call::Get { give_up }),
                Acquire::Taken(fence) => {
                    p.lease = Some(fence);
                    world.send_token(pod, None);
                }
                Acquire::Held(_) if now >= give_up => {
                    // `StoreError::Busy`: the driver fetches on its own.
                    world.send_token(pod, None);
                }
                Acquire::Held(pttl) => {
                    let nap = shared.timing.poll_interval.min(pttl.max(1)).min(give_up - now);
                    p.call = Some(Call::Get { give_up });
                    world.pod_timer(pod, now + nap);
                }
            },
            Call::Published => self.drive(world, pod),
            Call::Peek => {
                let seen = shared.redis.get_token(now);
                p.call = Some(Call::Peeked { seen });
                world.pod_timer(pod, now + RTT);
            }
            Call::Peeked { seen } => {
                if let Some(t) =
                    seen.filter(|t| Some(&t.token) != p.stale.as_ref() && t.expires_at > wall)
                    && let Ok(token) = AccessToken::new(&t.token)
                {
                    let _ = p.session.adopt_shared(at(now), token, t.expires_at);
                }
                self.pods[pod].session.handle_timeout(at(now));
                self.changed(world, pod);
                self.wake_waiters(world, pod);
                self.drive(world, pod);
            }
        }
    }

    /// Installs the fleet's token for the pod's ticket (the adapter's `install_shared`), then
    /// lets the driver loop.
    fn install(&mut self, world: &mut World, pod: usize, shared: StoredToken) {
        let now = at(world.now());
        let p = &mut self.pods[pod];
        if let Some(ticket) = p.ticket.take() {
            match AccessToken::new(&shared.token) {
                Ok(token) => {
                    if p.session.handle_token_shared(now, ticket, token, shared.expires_at).is_err()
                    {
                        // Too close to expiry: ask for another, or refresh.
                        p.stale = Some(shared.token);
                    }
                }
                Err(_) => p.session.handle_token_error(now, ticket, None),
            }
        }
        self.changed(world, pod);
        self.wake_waiters(world, pod);
        self.drive(world, pod);
    }

    /// Drains events and publishes the token, like the adapter's `drain` and `sync_cache`; wakes
    /// the pod's waiting workers when anything they wait on changed.
    fn changed(&mut self, world: &mut World, pod: usize) {
        let now = world.now();
        let p = &mut self.pods[pod];
        let mut wake = false;
        while let Some(event) = p.session.poll_event() {
            wake |= matches!(event, Event::Breaker { .. });
        }
        let generation = p.session.token(at(now)).map(|(_, times)| times.generation);
        if generation != p.published {
            p.published = generation;
            wake = true;
        }
        if wake {
            self.wake_waiters(world, pod);
        }
    }

    fn wake_waiters(&mut self, world: &mut World, pod: usize) {
        let per_pod = world.scenario.workers;
        let now = world.now();
        for worker in pod * per_pod..(pod + 1) * per_pod {
            if matches!(self.workers.get(worker), Some(State::Waiting { .. })) {
                world.wake(worker, now);
            }
        }
    }

    /// The request loop from the fleet's admission on, for a worker holding `req`.
    fn step(&mut self, world: &mut World, worker: usize, mut req: RequestState, asked: bool) {
        let pod = world.pod_of(worker);
        let now = world.now();
        let ask =
            self.shared.is_some() && !asked && self.pods[pod].session.token(at(now)).is_some();
        if ask {
            let p = &mut self.pods[pod];
            match p.gate {
                Some(holder) if holder != worker => {
                    p.gate_queue.push_back(worker);
                    self.workers[worker] = State::Gated(req);
                    return;
                }
                _ => p.gate = Some(worker),
            }
        } else {
            self.leave_gate(world, pod, worker, now);
        }
        if let Some(shared) = self.shared.as_mut()
            && ask
        {
            shared.settle(now);
            let class = match PRIORITY {
                Priority::Critical => 0,
                Priority::Normal => 1,
                Priority::Background => 2,
            };
            let (counted, wait, held) =
                shared.redis.admission(now, class, &shared.pacer, self.max_wait, shared.max_hold);
            if counted {
                req.set_externally_paced(true);
            } else if held || wait > self.max_wait {
                req.set_external_hold(at(now + RTT + wait));
            }
            if counted && wait > 0 {
                // A reserved slot: sleep to it, then send without asking again.
                self.workers[worker] = State::Reserved(req, wait);
                world.wake(worker, now + RTT + wait);
                self.leave_gate(world, pod, worker, now + RTT);
            } else if counted || held || wait > self.max_wait {
                // Admitted now, or left to the local session (the fleet's 429 hold too: the
                // session waits it out, or fails fast for a longer wait of its own).
                self.workers[worker] = State::Answered(req);
                world.wake(worker, now + RTT);
                self.leave_gate(world, pod, worker, now + RTT);
            } else {
                self.workers[worker] = State::FleetWait(req);
                world.wake(worker, now + RTT + wait);
            }
            return;
        }
        self.authorize(world, worker, req, asked);
    }

    /// Hands the pod's admission turn on if `worker` holds it: the next queued worker asks
    /// at `from` (when the holder has its answer).
    fn leave_gate(&mut self, world: &mut World, pod: usize, worker: usize, from: Ms) {
        let p = &mut self.pods[pod];
        if p.gate != Some(worker) {
            return;
        }
        p.gate = p.gate_queue.pop_front();
        if let Some(next) = p.gate {
            world.wake(next, from);
        }
    }

    /// `authorize`, send, or wait as the session says.
    fn authorize(&mut self, world: &mut World, worker: usize, mut req: RequestState, asked: bool) {
        let pod = world.pod_of(worker);
        let now = world.now();
        let decision = match self.pods[pod].session.authorize(at(now), &mut req) {
            Authorize::Send { token, .. } => {
                world.send_api(worker, token.as_str());
                None
            }
            Authorize::Wait { until, reason } => Some(Ok((until, reason))),
            Authorize::Fail(_) => Some(Err(())),
        };
        match decision {
            None => self.workers[worker] = State::InFlight(req),
            Some(Ok((until, reason))) => {
                // The adapter asks the fleet again after a hold of the server's.
                let asked = if matches!(reason, WaitReason::Paced(_) | WaitReason::Backoff) {
                    req.set_externally_paced(false);
                    req.set_external_hold(at(0));
                    false
                } else {
                    asked
                };
                let wait = match (until, reason) {
                    (Some(t), _) => t.as_millis().max(now),
                    (None, WaitReason::Token) => now + TOKEN_WAIT,
                    (None, _) => now + PROBE_WAIT,
                };
                self.workers[worker] = State::Waiting { req, asked };
                world.wake(worker, wait);
                if reason == WaitReason::Token {
                    self.drive(world, pod); // the adapter's `kick`
                }
            }
            Some(Err(())) => {
                self.workers[worker] = State::Idle;
                world.finish_job(worker, false, 0);
            }
        }
        self.changed(world, pod);
    }

    /// The adapter's `fleet_report`: the response's rate-limit facts go to the fleet in the
    /// background (the observation, then the 429).
    fn report(&mut self, now: Ms, reply: &Reply) {
        let Some(shared) = self.shared.as_mut() else { return };
        let headers = reply.header_pairs();
        let reference = Some(self.wall.wall_at(at(now)));
        let snapshot = parse_rate_limit(headers.as_slice(), reference);
        let retry_after = (reply.status == 429).then(|| {
            RetryAfter::from_headers(headers.as_slice())
                .and_then(|r| r.delay(reference))
                .map(|d| d.as_millis())
        });
        let mut when = now;
        if let Some(s) = snapshot
            && let Some(remaining) = s.remaining
        {
            when += RTT;
            shared.report(
                when,
                Report::Observe {
                    remaining,
                    limit: s.limit,
                    reset_after: s.reset_after.map(|d| d.as_millis()),
                    window: s.window.map(|d| d.as_millis()),
                },
            );
        }
        if let Some(retry_after) = retry_after {
            shared.report(when + RTT, Report::RateLimited { retry_after });
        }
    }
}

impl Fleet for Credflow {
    fn start(&mut self, world: &mut World) {
        for pod in 0..self.pods.len() {
            self.drive(world, pod);
        }
    }

    fn on_wake(&mut self, world: &mut World, worker: usize) {
        match std::mem::replace(&mut self.workers[worker], State::Idle) {
            State::Idle => {
                world.begin_job(worker);
                let pod = world.pod_of(worker);
                let spec = RequestSpec {
                    idempotent: true,
                    priority: PRIORITY,
                    ..RequestSpec::new(Method::Get, self.host)
                };
                let req = self.pods[pod].session.begin(at(world.now()), spec);
                self.step(world, worker, req, false);
            }
            State::Waiting { req, asked } => self.step(world, worker, req, asked),
            State::FleetWait(req) | State::Gated(req) => self.step(world, worker, req, false),
            State::Answered(req) => self.step(world, worker, req, true),
            State::Reserved(mut req, wait) => match self.shared.as_mut() {
                // The adapter's `RESERVATION_RECHECK`: a 429 reported meanwhile holds it too.
                Some(shared) if wait >= RESERVATION_RECHECK => {
                    let now = world.now();
                    let held = shared.redis.hold(now, shared.max_hold);
                    if held > 0 {
                        req.set_external_hold(at(now + RTT + held));
                    }
                    self.workers[worker] = State::Answered(req);
                    world.wake(worker, now + RTT);
                }
                _ => self.step(world, worker, req, true),
            },
            in_flight @ State::InFlight(_) => self.workers[worker] = in_flight,
        }
    }

    fn on_api_reply(&mut self, world: &mut World, worker: usize, reply: Reply, rtt: Ms) {
        let State::InFlight(mut req) = std::mem::replace(&mut self.workers[worker], State::Idle)
        else {
            return;
        };
        let pod = world.pod_of(worker);
        let now = world.now();
        let headers = reply.header_pairs();
        let verdict = self.pods[pod].session.handle_response(
            at(now),
            &mut req,
            reply.status,
            headers.as_slice(),
            reply.body.as_bytes(),
        );
        self.changed(world, pod);
        self.report(now, &reply);
        match verdict {
            Verdict::Done => world.finish_job(worker, (200..300).contains(&reply.status), rtt),
            Verdict::Retry { at: t, .. } => {
                self.workers[worker] = State::Waiting { req, asked: false };
                world.wake(worker, t.as_millis().max(now));
            }
            Verdict::Fail(_) => world.finish_job(worker, false, rtt),
        }
    }

    fn on_token_reply(
        &mut self,
        world: &mut World,
        pod: usize,
        _worker: Option<usize>,
        result: TokenResult,
    ) {
        let now = world.now();
        let p = &mut self.pods[pod];
        let Some(ticket) = p.ticket.take() else { return };
        let before = p.session.token(at(now)).map(|(_, times)| times.generation);
        match result {
            Ok((token, expires_in)) => {
                let body = format!(
                    r#"{{"access_token":"{token}","token_type":"bearer","expires_in":{expires_in}}}"#
                );
                let headers = [("content-type", "application/json")];
                p.session.handle_token_response(at(now), ticket, 200, &headers, body.as_bytes());
            }
            Err(reply) => {
                let headers = reply.header_pairs();
                p.session.handle_token_response(
                    at(now),
                    ticket,
                    reply.status,
                    headers.as_slice(),
                    reply.body.as_bytes(),
                );
            }
        }
        // Only a token this request obtained goes to the fleet, under the lease it was sent
        // with; a failed request keeps the lease until it expires (the fleet's back-off).
        let fresh =
            p.session.token(at(now)).filter(|(_, times)| Some(times.generation) != before).map(
                |(token, times)| StoredToken {
                    token: token.as_str().to_owned(),
                    expires_at: self.wall.wall_at(times.expires_at),
                },
            );
        let lease = p.lease.take();
        // The adapter bumps its version after every token answer.
        self.changed(world, pod);
        self.wake_waiters(world, pod);
        if let (Some(shared), Some(fence), Some(token)) = (self.shared.as_mut(), lease, fresh) {
            let ttl = token.expires_at.saturating_duration_since(self.wall.wall_at(at(now)));
            if !ttl.is_zero() {
                shared.settle(now);
                shared.redis.publish(now, fence, token, ttl.as_millis());
                self.pods[pod].call = Some(Call::Published);
                world.pod_timer(pod, now + RTT);
                return;
            }
        }
        self.drive(world, pod);
    }

    fn finish(&mut self, world: &mut World) {
        if let Some(shared) = self.shared.as_ref() {
            world.rec.store_calls = shared.redis.calls;
        }
    }

    fn on_pod_timer(&mut self, world: &mut World, pod: usize) {
        if let Some(call) = self.pods[pod].call.take() {
            self.fleet_step(world, pod, call);
            return;
        }
        let now = world.now();
        self.pods[pod].session.handle_timeout(at(now));
        self.changed(world, pod);
        self.wake_waiters(world, pod);
        self.drive(world, pod);
    }
}
