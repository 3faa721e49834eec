//! `credflow` and `credflow-shared`: one real core [`Session`] per pod, driven as the std
//! adapter (`adapters/reqwest`) drives it, by the same core types: per pod a token driver
//! (`poll_token_request`, send, `handle_token_response`, `poll_timeout`, `handle_timeout`) and,
//! per worker, the request loop of the core's [`RequestDriver`] and session (`begin`,
//! `RequestDriver::poll`, `authorize`, send, `handle_response`, act on the verdict). A worker
//! waiting on the session sleeps until the instant the driver gives (`handle_wait`: at most the
//! adapter's 30 s token wait, or 1 s for a breaker probe) and, like the adapter's `version`
//! channel, is woken early by any token or breaker change of its pod; its sleeps for the fleet
//! and for a retry are not cut short, as in the adapter. Request deadlines are the adapter's
//! default: none.
//!
//! **Fleet mode** (`credflow-shared`) adds what the adapter does with a `SharedStore`, against
//! the [simulated Redis](crate::redis) of `credflow-redis`; every decision is the core's
//! ([`credflow_core::fleet`]), this file only carries the answers, one round trip late:
//!
//! - when a pod's session says a token request is due, its driver first asks the fleet
//!   (`RedisStore::refresh`, simulated here: read the token key; take a token other than the
//!   one the core's [`TokenDriver`] excludes; else take the lease, or poll every 50 ms while
//!   another pod holds it, for at most `max_wait`, then fetch alone). The lease holder sends
//!   the token request and publishes the token as the driver says (a failed request keeps
//!   the lease until it expires: the fleet's back-off); a pod with no token that may not
//!   request one reads the fleet's when the driver says (about once a second);
//! - before each attempt a worker asks the fleet's admission script when its
//!   [`RequestDriver`] says, one worker per pod at a time (the driver's admission gate; the
//!   others queue in order), and hands the answer back to it;
//! - every response's rate-limit headers, and every 429 with the wait the session read from it
//!   ([`ResponseReport`]), are reported to the fleet in the background.

use std::collections::{BTreeMap, VecDeque};

use credflow_core::fleet::{
    Admission, DriverConfig, LeaseEnd, Peek, RequestDriver, ResponseReport, Step, TokenDriver,
};
use credflow_core::http::Method;
use credflow_core::lifecycle::{Generation, Ticket};
use credflow_core::ratelimit::headers::parse_rate_limit;
use credflow_core::ratelimit::pacer::PacerConfig;
use credflow_core::secret::{AccessToken, Credentials, Fingerprint};
use credflow_core::session::{
    Authorize, Event, HostKey, RequestSpec, RequestState, SessionConfig, TokenEndpoint, Verdict,
};
use credflow_core::{Duration, Instant, Priority, Session, UnixTime, WallClock};

use crate::Ms;
use crate::engine::{Fleet, TokenResult, World};
use crate::redis::{Acquire, RTT, Redis, StoreTiming, StoredToken};
use crate::server::Reply;

/// Wall-clock time at the start of a run (the fleet shares tokens by absolute expiry).
const EPOCH: UnixTime = UnixTime::from_secs(1_700_000_000);
/// What every worker asks for.
const PRIORITY: Priority = Priority::Normal;

/// One API request of a worker: the session's state of it and the core's driver.
struct Request {
    state: RequestState,
    driver: RequestDriver,
}

enum State {
    Idle,
    /// Waiting for the session: the instant the driver gave, or a token or breaker change of
    /// the pod.
    Waiting(Request),
    /// Sleeping for the fleet (its reserved slot, its "ask again") or to a retry: not woken
    /// early, as the adapter's plain sleeps are not.
    Sleeping(Request),
    /// The fleet's answer to the admission question, arriving one round trip after the call.
    Asking(Request, Admission),
    /// The fleet's 429 hold read before a reserved slot's send, arriving one round trip after.
    ReadingHold(Request, Option<Duration>),
    /// Queued behind another worker of the pod at the fleet's admission, with the horizon it
    /// asks with when its turn comes.
    Gated(Request, Duration),
    InFlight(Request),
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
    /// The token key's value arrived, for a read without the lease (the adapter's
    /// `adopt_fleet_token`, when the core's `TokenDriver::poll_peek` says).
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
    /// Fleet mode: the core's token driver (which token the fleet must not hand back, when to
    /// read the fleet's token, what becomes of the lease).
    tokens: TokenDriver,
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
    /// The timings of the core's drivers, as the adapter sets them (its default `token_wait`).
    driver: DriverConfig,
    shared: Option<Shared>,
}

fn at(ms: Ms) -> Instant {
    Instant::from_millis(ms)
}

/// The fingerprint the fleet's token is known by.
fn fingerprint(token: &StoredToken) -> Fingerprint {
    Fingerprint::of_token(token.token.as_bytes())
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
        let driver = DriverConfig { max_wait: config.retry.max_wait, ..DriverConfig::default() };
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
                tokens: TokenDriver::new(&driver),
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
            driver,
            shared,
        })
    }

    /// The token driver's loop body: send a token request if one is due (in fleet mode, ask the
    /// fleet first), else sleep until the session's next deadline, or read the fleet's token
    /// when the core's token driver says.
    fn drive(&mut self, world: &mut World, pod: usize) {
        let now = world.now();
        let p = &mut self.pods[pod];
        if p.ticket.is_some() || p.call.is_some() {
            return;
        }
        p.tokens.handle_held(p.session.token(at(now)).map(|(token, _)| token.fingerprint()));
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
                let tokenless =
                    p.session.token(at(now)).is_none() && !p.session.lifecycle().in_flight();
                let peek = match self.shared {
                    Some(_) => p.tokens.poll_peek(at(now), tokenless),
                    None => Peek::Off,
                };
                match (peek, next) {
                    (Peek::Due, _) => {
                        self.buf.fill(0);
                        return self.peek(world, pod);
                    }
                    (Peek::At(t), Some(next)) => world.pod_timer(pod, next.min(t.as_millis())),
                    (Peek::At(t), None) => world.pod_timer(pod, t.as_millis()),
                    (Peek::Off, Some(next)) => world.pod_timer(pod, next),
                    (Peek::Off, None) => {}
                }
            }
        }
        self.buf.fill(0);
        self.changed(world, pod);
    }

    /// Reads the fleet's token without the lease (`SharedStore::current`): the answer arrives
    /// one round trip later.
    fn peek(&mut self, world: &mut World, pod: usize) {
        let now = world.now();
        let Some(shared) = self.shared.as_mut() else { return };
        shared.settle(now);
        let seen = shared.redis.get_token(now);
        self.pods[pod].call = Some(Call::Peeked { seen });
        world.pod_timer(pod, now + RTT);
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
                // The store hands out a live token other than the one the driver excludes.
                if let Some(t) = seen
                    .as_ref()
                    .filter(|t| t.expires_at > wall && p.tokens.handle_offer(fingerprint(t)))
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
            Call::Peeked { seen } => {
                if let Some(t) =
                    seen.filter(|t| t.expires_at > wall && p.tokens.handle_offer(fingerprint(t)))
                {
                    let taken = AccessToken::new(&t.token).is_ok_and(|token| {
                        p.session.adopt_shared(at(now), token, t.expires_at).is_ok()
                    });
                    match taken {
                        true => p.tokens.handle_taken(fingerprint(&t)),
                        false => p.tokens.handle_refused(fingerprint(&t)),
                    }
                }
                p.session.handle_timeout(at(now));
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
            let taken = match AccessToken::new(&shared.token) {
                Ok(token) => {
                    p.session.handle_token_shared(now, ticket, token, shared.expires_at).is_ok()
                }
                Err(_) => {
                    p.session.handle_token_error(now, ticket, None);
                    false
                }
            };
            // Refused (too close to expiry, unusable): ask for another, or refresh.
            match taken {
                true => p.tokens.handle_taken(fingerprint(&shared)),
                false => p.tokens.handle_refused(fingerprint(&shared)),
            }
        }
        self.changed(world, pod);
        self.wake_waiters(world, pod);
        self.drive(world, pod);
    }

    /// Drains events and publishes the token, like the adapter's `drain` and `sync_cache`; wakes
    /// the pod's waiting workers when anything they wait on changed. Each event is shown to
    /// `observe` too.
    fn changed_with(&mut self, world: &mut World, pod: usize, mut observe: impl FnMut(&Event)) {
        let now = world.now();
        let p = &mut self.pods[pod];
        let mut wake = false;
        while let Some(event) = p.session.poll_event() {
            observe(&event);
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

    fn changed(&mut self, world: &mut World, pod: usize) {
        self.changed_with(world, pod, |_| {});
    }

    fn wake_waiters(&mut self, world: &mut World, pod: usize) {
        let per_pod = world.scenario.workers;
        let now = world.now();
        for worker in pod * per_pod..(pod + 1) * per_pod {
            if matches!(self.workers.get(worker), Some(State::Waiting(_))) {
                world.wake(worker, now);
            }
        }
    }

    /// The request loop for a worker holding `req`: what its driver says next.
    fn step(&mut self, world: &mut World, worker: usize, mut req: Request) {
        let pod = world.pod_of(worker);
        let now = world.now();
        let has_token = self.pods[pod].session.token(at(now)).is_some();
        let step = req.driver.poll(at(now), has_token);
        if !req.driver.holds_gate() {
            self.leave_gate(world, pod, worker, now);
        }
        match step {
            Step::AskFleet { within, .. } => self.ask(world, worker, req, within),
            // Never here: each question's answer is handed back where it arrives.
            Step::AwaitFleet => {
                let _ = req.driver.handle_admission(at(now), None, &mut req.state);
                self.step(world, worker, req);
            }
            Step::ReadHold => {
                let Some(shared) = self.shared.as_mut() else { return };
                shared.settle(now);
                let held = shared.redis.hold(now, shared.max_hold);
                let held = (held > 0).then(|| Duration::from_millis(held));
                self.workers[worker] = State::ReadingHold(req, held);
                world.wake(worker, now + RTT);
            }
            Step::Sleep { until, .. } => {
                self.workers[worker] = State::Sleeping(req);
                world.wake(worker, until.as_millis());
            }
            Step::Fail(_) => world.finish_job(worker, false, 0),
            Step::Authorize => self.authorize(world, worker, req),
        }
    }

    /// Asks the fleet's admission for `worker`'s next attempt, in its turn at the pod's gate.
    fn ask(&mut self, world: &mut World, worker: usize, req: Request, within: Duration) {
        let pod = world.pod_of(worker);
        let now = world.now();
        let p = &mut self.pods[pod];
        match p.gate {
            Some(holder) if holder != worker => {
                p.gate_queue.push_back(worker);
                self.workers[worker] = State::Gated(req, within);
                return;
            }
            _ => p.gate = Some(worker),
        }
        let Some(shared) = self.shared.as_mut() else { return };
        shared.settle(now);
        let class = match PRIORITY {
            Priority::Critical => 0,
            Priority::Normal => 1,
            Priority::Background => 2,
        };
        let (counted, wait, held) =
            shared.redis.admission(now, class, &shared.pacer, within.as_millis(), shared.max_hold);
        let wait = Duration::from_millis(wait);
        let answer = match (counted, held) {
            (true, _) if wait.is_zero() => Admission::Now,
            (true, _) => Admission::After(wait),
            (false, true) => Admission::Held(wait),
            (false, false) => Admission::Wait(wait),
        };
        self.workers[worker] = State::Asking(req, answer);
        world.wake(worker, now + RTT);
    }

    /// Hands the pod's admission turn on if `worker` holds it: the next queued worker asks
    /// at `from`.
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

    /// `authorize`, send, or wait as the session and the driver say.
    fn authorize(&mut self, world: &mut World, worker: usize, mut req: Request) {
        let pod = world.pod_of(worker);
        let now = world.now();
        match self.pods[pod].session.authorize(at(now), &mut req.state) {
            Authorize::Send { token, .. } => {
                world.send_api(worker, token.as_str());
                req.driver.handle_sent();
                self.workers[worker] = State::InFlight(req);
            }
            Authorize::Wait { until, reason } => {
                let wake = req.driver.handle_wait(at(now), until, reason, &mut req.state);
                self.workers[worker] = State::Waiting(req);
                world.wake(worker, wake.at.as_millis().max(now));
                if wake.kick_token_driver {
                    self.drive(world, pod);
                }
            }
            Authorize::Fail(_) => world.finish_job(worker, false, 0),
        }
        self.changed(world, pod);
    }

    /// The adapter's `fleet_report`: the response's rate-limit facts go to the fleet in the
    /// background (the observation, then the 429 with the wait the session read from it).
    fn report(&mut self, now: Ms, reply: &Reply, rate_limited: Option<Option<Duration>>) {
        let Some(shared) = self.shared.as_mut() else { return };
        let headers = reply.header_pairs();
        let reference = Some(self.wall.wall_at(at(now)));
        let snapshot = parse_rate_limit(headers.as_slice(), reference);
        let mut when = now;
        if let Some(s) = snapshot.map(|s| s.believed())
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
        if let Some(wait) = rate_limited {
            let retry_after = wait.map(Duration::as_millis);
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
        let now = at(world.now());
        match std::mem::replace(&mut self.workers[worker], State::Idle) {
            State::Idle => {
                world.begin_job(worker);
                let pod = world.pod_of(worker);
                let spec = RequestSpec {
                    idempotent: true,
                    priority: PRIORITY,
                    ..RequestSpec::new(Method::Get, self.host)
                };
                let state = self.pods[pod].session.begin(now, spec);
                let driver = RequestDriver::new(self.driver, None, self.shared.is_some());
                self.step(world, worker, Request { state, driver });
            }
            State::Waiting(req) | State::Sleeping(req) => self.step(world, worker, req),
            State::Gated(req, within) => self.ask(world, worker, req, within),
            State::Asking(mut req, answer) => {
                let _ = req.driver.handle_admission(now, Some(answer), &mut req.state);
                self.step(world, worker, req);
            }
            State::ReadingHold(mut req, held) => {
                let _ = req.driver.handle_hold(now, held, &mut req.state);
                self.step(world, worker, req);
            }
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
            &mut req.state,
            reply.status,
            headers.as_slice(),
            reply.body.as_bytes(),
        );
        let mut report = ResponseReport::default();
        report.handle_verdict(&verdict);
        self.changed_with(world, pod, |event| report.handle_event(at(now), event));
        self.report(now, &reply, report.rate_limited());
        match verdict {
            Verdict::Done => world.finish_job(worker, (200..300).contains(&reply.status), rtt),
            Verdict::Retry { at: t, .. } => {
                self.workers[worker] = State::Sleeping(req);
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
        // with, as the core's token driver says (the simulated token requests always reach
        // the endpoint: a failed one keeps the lease until it expires, the fleet's back-off).
        let fresh =
            p.session.token(at(now)).filter(|(_, times)| Some(times.generation) != before).map(
                |(token, times)| StoredToken {
                    token: token.as_str().to_owned(),
                    expires_at: self.wall.wall_at(times.expires_at),
                },
            );
        let end = p.tokens.handle_token_answer(fresh.is_some(), true);
        let lease = p.lease.take();
        // The adapter bumps its version after every token answer.
        self.changed(world, pod);
        self.wake_waiters(world, pod);
        if let (Some(shared), Some(fence), Some(token), LeaseEnd::Publish) =
            (self.shared.as_mut(), lease, fresh, end)
        {
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
