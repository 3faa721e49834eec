//! `credflow`: one real core [`Session`] per pod, driven exactly like the std adapter drives it
//! (`adapters/reqwest/src/client.rs`): a token driver per pod (`poll_token_request`, send,
//! `handle_token_response`, `poll_timeout`, `handle_timeout`) and, per worker, the request loop
//! (`begin`, `authorize`, send, `handle_response`, act on the verdict). A waiting worker sleeps
//! until the instant it was given, and, like the adapter's `version` channel, is woken early by
//! any token or breaker change of its pod; a worker waiting for a token with no instant given
//! sleeps at most the adapter's 30 s token wait, one waiting for a breaker probe at most 1 s.
//! Request deadlines are the adapter's default: none.

use credflow_core::http::Method;
use credflow_core::lifecycle::{Generation, Ticket};
use credflow_core::secret::Credentials;
use credflow_core::session::{
    Authorize, Event, HostKey, RequestSpec, RequestState, SessionConfig, TokenEndpoint, Verdict,
    WaitReason,
};
use credflow_core::{Instant, Session};

use crate::Ms;
use crate::engine::{Fleet, TokenResult, World};
use crate::server::Reply;

/// The adapter's longest wait for a token without news (`Config::token_wait`).
const TOKEN_WAIT: Ms = 30_000;
/// The adapter's safety-net wait for a breaker probe's outcome.
const PROBE_WAIT: Ms = 1_000;

enum State {
    Idle,
    Waiting(RequestState),
    InFlight(RequestState),
}

struct Pod {
    session: Session,
    ticket: Option<Ticket>,
    /// The generation published to the (simulated) lock-free cache.
    published: Option<Generation>,
}

/// The credflow fleet.
pub(crate) struct Credflow {
    pods: Vec<Pod>,
    workers: Vec<State>,
    buf: Vec<u8>,
    host: HostKey,
}

fn at(ms: Ms) -> Instant {
    Instant::from_millis(ms)
}

impl Credflow {
    pub(crate) fn new(world: &World, seed: u64, config: &SessionConfig) -> Result<Self, String> {
        let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token")
            .map_err(|e| e.to_string())?;
        let mut pods = Vec::new();
        for p in 0..world.scenario.pods {
            let credentials = Credentials::from_strs("sim-client", "sim-secret")
                .map_err(|(part, e)| format!("{part:?}: {e}"))?;
            let pod_seed = seed ^ (p as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let session = Session::new(credentials, endpoint.clone(), config.clone(), pod_seed)
                .map_err(|e| e.to_string())?;
            pods.push(Pod { session, ticket: None, published: None });
        }
        let workers = (0..world.workers()).map(|_| State::Idle).collect();
        Ok(Credflow {
            pods,
            workers,
            buf: vec![0; 4096],
            host: HostKey::from_host("api.mypurecloud.com"),
        })
    }

    /// The token driver's loop body: send a token request if one is due, else sleep until the
    /// session's next deadline.
    fn drive(&mut self, world: &mut World, pod: usize) {
        let now = world.now();
        let p = &mut self.pods[pod];
        if p.ticket.is_some() {
            return;
        }
        match p.session.poll_token_request(at(now), &mut self.buf) {
            Ok(Some((ticket, _request))) => {
                p.ticket = Some(ticket);
                world.send_token(pod, None);
            }
            Ok(None) | Err(_) => {
                if let Some((next, _)) = p.session.poll_timeout() {
                    // The adapter sleeps until `next`; a deadline already passed fires at once,
                    // which here is the next millisecond.
                    world.pod_timer(pod, next.as_millis().max(now + 1));
                }
            }
        }
        self.buf.fill(0);
        self.changed(world, pod);
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
            if matches!(self.workers.get(worker), Some(State::Waiting(_))) {
                world.wake(worker, now);
            }
        }
    }

    /// The request loop from `authorize` on, for a worker holding `req`.
    fn step(&mut self, world: &mut World, worker: usize, mut req: RequestState) {
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
                let wait = match (until, reason) {
                    (Some(t), _) => t.as_millis().max(now),
                    (None, WaitReason::Token) => now + TOKEN_WAIT,
                    (None, _) => now + PROBE_WAIT,
                };
                self.workers[worker] = State::Waiting(req);
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
                let spec =
                    RequestSpec { idempotent: true, ..RequestSpec::new(Method::Get, self.host) };
                let req = self.pods[pod].session.begin(at(world.now()), spec);
                self.step(world, worker, req);
            }
            State::Waiting(req) => self.step(world, worker, req),
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
        match verdict {
            Verdict::Done => world.finish_job(worker, (200..300).contains(&reply.status), rtt),
            Verdict::Retry { at: t, .. } => {
                self.workers[worker] = State::Waiting(req);
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
        let now = at(world.now());
        let p = &mut self.pods[pod];
        let Some(ticket) = p.ticket.take() else { return };
        match result {
            Ok((token, expires_in)) => {
                let body = format!(
                    r#"{{"access_token":"{token}","token_type":"bearer","expires_in":{expires_in}}}"#
                );
                let headers = [("content-type", "application/json")];
                p.session.handle_token_response(now, ticket, 200, &headers, body.as_bytes());
            }
            Err(reply) => {
                let headers = reply.header_pairs();
                p.session.handle_token_response(
                    now,
                    ticket,
                    reply.status,
                    headers.as_slice(),
                    reply.body.as_bytes(),
                );
            }
        }
        // The adapter bumps its version after every token answer.
        self.changed(world, pod);
        self.wake_waiters(world, pod);
        self.drive(world, pod);
    }

    fn on_pod_timer(&mut self, world: &mut World, pod: usize) {
        let now = world.now();
        self.pods[pod].session.handle_timeout(at(now));
        self.changed(world, pod);
        self.wake_waiters(world, pod);
        self.drive(world, pod);
    }
}
