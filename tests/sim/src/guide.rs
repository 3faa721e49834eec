//! `guide`: the reference guide's code as written, translated event for event.
//!
//! - One `PlatformClient` per pod shared by its worker threads (or, with `trap`, one per worker:
//!   the guide's "Trap" of independent SDK instances). Its token cache expires 60 s before the
//!   token; a thread that finds it empty fetches a token itself: the cache is thread-safe but
//!   does not make concurrent callers wait for one fetch. A failed token fetch raises, and the
//!   wrapper re-raises anything that is not 401 or 429: the job fails.
//! - SDK `retry_config`: up to 3 retries, 0.5 s apart, on 408, 429, 500, 502, 503, 504.
//! - `execute_with_auth_retry(max_auth_retries=2)`: on 401, sleep 250 ms and try again (the
//!   cache is dropped); on 429, sleep `Retry-After` (else `2 ** attempt`) and try again, also
//!   after the last attempt, which then ends in `RuntimeError`.
//! - `monitor_rate_limits`: 0.3 of the pod's workers when over 80 % of the limit is used, 0.7
//!   over 50 %, else all of them; applied before each job starts. The guide reads
//!   `X-Rate-Limit-*`, which the platform does not send (read literally, it would always answer
//!   0.3 from its defaults 100/1000); the simulation reads the platform's `inin-ratelimit-count`
//!   and `inin-ratelimit-allowed` instead, in the guide's favour, and uses its defaults only when
//!   an answer has neither.

use crate::Ms;
use crate::engine::{Fleet, TokenResult, World};
use crate::server::Reply;

const SDK_RETRIES: u32 = 3;
const SDK_RETRY_DELAY: Ms = 500;
const SDK_RETRY_ON: [u16; 6] = [408, 429, 500, 502, 503, 504];
const MAX_AUTH_RETRIES: u32 = 2;
const AUTH_SLEEP: Ms = 250;
const CACHE_MARGIN: Ms = 60_000;
/// How often a thread held back by the concurrency multiplier looks again.
const POOL_POLL: Ms = 250;

#[derive(Clone, Debug)]
enum State {
    Idle,
    /// Waiting for its token fetch.
    Token {
        attempt: u32,
        sdk_try: u32,
    },
    /// Waiting for an API answer.
    Api {
        attempt: u32,
        sdk_try: u32,
        token: String,
    },
    /// Sleeping before calling again.
    Sleep {
        attempt: u32,
        sdk_try: u32,
    },
    /// Sleeping `Retry-After` after the wrapper's last attempt: then `RuntimeError`.
    SleepThenFail,
}

#[derive(Clone, Debug)]
struct SdkClient {
    token: Option<(String, Ms)>,
    multiplier_permille: u64,
    threads: usize,
    active: usize,
}

impl SdkClient {
    fn allowed(&self) -> usize {
        let n = (self.threads as u64 * self.multiplier_permille).div_ceil(1000);
        usize::try_from(n).unwrap_or(usize::MAX).max(1)
    }
}

/// The guide's fleet.
pub(crate) struct Guide {
    trap: bool,
    clients: Vec<SdkClient>,
    workers: Vec<State>,
}

impl Guide {
    pub(crate) fn new(world: &World, trap: bool) -> Self {
        let (count, threads) =
            if trap { (world.workers(), 1) } else { (world.scenario.pods, world.scenario.workers) };
        let client = SdkClient { token: None, multiplier_permille: 1000, threads, active: 0 };
        Guide { trap, clients: vec![client; count], workers: vec![State::Idle; world.workers()] }
    }

    fn client(&self, world: &World, worker: usize) -> usize {
        if self.trap { worker } else { world.pod_of(worker) }
    }

    /// One SDK call: from the cache, or after fetching a token.
    fn call(&mut self, world: &mut World, worker: usize, attempt: u32, sdk_try: u32) {
        let c = self.client(world, worker);
        let now = world.now();
        match self.clients[c].token.clone() {
            Some((token, until)) if now < until => {
                world.send_api(worker, &token);
                self.workers[worker] = State::Api { attempt, sdk_try, token };
            }
            _ => {
                world.send_token(world.pod_of(worker), Some(worker));
                self.workers[worker] = State::Token { attempt, sdk_try };
            }
        }
    }

    fn finish(&mut self, world: &mut World, worker: usize, ok: bool, rtt: Ms) {
        let c = self.client(world, worker);
        self.clients[c].active = self.clients[c].active.saturating_sub(1);
        self.workers[worker] = State::Idle;
        world.finish_job(worker, ok, rtt);
    }

    fn sleep(&mut self, world: &mut World, worker: usize, state: State, wait: Ms) {
        self.workers[worker] = state;
        world.wake(worker, world.now() + wait);
    }
}

/// `monitor_rate_limits`, with the platform's header names.
fn multiplier_permille(reply: &Reply) -> u64 {
    let allowed = reply.header("inin-ratelimit-allowed").and_then(|v| v.parse::<u64>().ok());
    let count = reply.header("inin-ratelimit-count").and_then(|v| v.parse::<u64>().ok());
    let (remaining, limit) = match (allowed, count) {
        (Some(limit), Some(count)) => (limit.saturating_sub(count), limit),
        _ => (100, 1000),
    };
    let used = limit.saturating_sub(remaining);
    if limit == 0 || used * 10 > limit * 8 {
        300
    } else if used * 2 > limit {
        700
    } else {
        1000
    }
}

impl Fleet for Guide {
    fn on_wake(&mut self, world: &mut World, worker: usize) {
        match self.workers[worker].clone() {
            State::Idle => {
                let c = self.client(world, worker);
                if self.clients[c].active >= self.clients[c].allowed() {
                    world.wake(worker, world.now() + POOL_POLL);
                    return;
                }
                self.clients[c].active += 1;
                world.begin_job(worker);
                self.call(world, worker, 0, 0);
            }
            State::Sleep { attempt, sdk_try } => self.call(world, worker, attempt, sdk_try),
            State::SleepThenFail => self.finish(world, worker, false, 0),
            State::Token { .. } | State::Api { .. } => {}
        }
    }

    fn on_api_reply(&mut self, world: &mut World, worker: usize, reply: Reply, rtt: Ms) {
        let State::Api { attempt, sdk_try, token } = self.workers[worker].clone() else {
            return;
        };
        let c = self.client(world, worker);
        self.clients[c].multiplier_permille = multiplier_permille(&reply);
        let status = reply.status;
        if (200..300).contains(&status) {
            return self.finish(world, worker, true, rtt);
        }
        if SDK_RETRY_ON.contains(&status) && sdk_try < SDK_RETRIES {
            let state = State::Sleep { attempt, sdk_try: sdk_try + 1 };
            return self.sleep(world, worker, state, SDK_RETRY_DELAY);
        }
        // The SDK raises `ApiException`; the wrapper decides.
        match status {
            401 if attempt < MAX_AUTH_RETRIES => {
                if self.clients[c].token.as_ref().is_some_and(|(t, _)| *t == token) {
                    self.clients[c].token = None;
                }
                let state = State::Sleep { attempt: attempt + 1, sdk_try: 0 };
                self.sleep(world, worker, state, AUTH_SLEEP);
            }
            429 => {
                let wait = reply
                    .header("retry-after")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1 << attempt)
                    .saturating_mul(1000);
                let state = if attempt < MAX_AUTH_RETRIES {
                    State::Sleep { attempt: attempt + 1, sdk_try: 0 }
                } else {
                    State::SleepThenFail
                };
                self.sleep(world, worker, state, wait);
            }
            _ => self.finish(world, worker, false, rtt),
        }
    }

    fn on_token_reply(
        &mut self,
        world: &mut World,
        _pod: usize,
        worker: Option<usize>,
        result: TokenResult,
    ) {
        let Some(worker) = worker else { return };
        let State::Token { attempt, sdk_try } = self.workers[worker] else {
            return;
        };
        match result {
            Ok((token, expires_in)) => {
                let c = self.client(world, worker);
                let until =
                    (world.now() + expires_in.saturating_mul(1000)).saturating_sub(CACHE_MARGIN);
                self.clients[c].token = Some((token, until));
                self.call(world, worker, attempt, sdk_try);
            }
            // Neither 401 nor 429: `raise e`.
            Err(_) => self.finish(world, worker, false, 0),
        }
    }
}
