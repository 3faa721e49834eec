//! `naive`: what a hurried integration does. One token per pod, fetched by whichever worker
//! finds none (no single flight), kept until a 401; no pacing; every failure (429, 5xx, token
//! error) retried at once, up to 3 times, after which the job fails.

use crate::Ms;
use crate::engine::{Fleet, TokenResult, World};
use crate::server::Reply;

const MAX_RETRIES: u32 = 3;

#[derive(Clone, Debug)]
enum State {
    Idle,
    Token { retries: u32 },
    Api { retries: u32, token: String },
}

/// The naive fleet.
pub(crate) struct Naive {
    tokens: Vec<Option<String>>,
    workers: Vec<State>,
}

impl Naive {
    pub(crate) fn new(world: &World) -> Self {
        Naive {
            tokens: vec![None; world.scenario.pods],
            workers: vec![State::Idle; world.workers()],
        }
    }

    fn attempt(&mut self, world: &mut World, worker: usize, retries: u32) {
        let pod = world.pod_of(worker);
        match self.tokens.get(pod).cloned().flatten() {
            Some(token) => {
                world.send_api(worker, &token);
                self.workers[worker] = State::Api { retries, token };
            }
            None => {
                world.send_token(pod, Some(worker));
                self.workers[worker] = State::Token { retries };
            }
        }
    }

    fn retry_or_fail(&mut self, world: &mut World, worker: usize, retries: u32, rtt: Ms) {
        if retries >= MAX_RETRIES {
            self.workers[worker] = State::Idle;
            world.finish_job(worker, false, rtt);
        } else {
            self.attempt(world, worker, retries + 1);
        }
    }
}

impl Fleet for Naive {
    fn on_wake(&mut self, world: &mut World, worker: usize) {
        if matches!(self.workers[worker], State::Idle) {
            world.begin_job(worker);
            self.attempt(world, worker, 0);
        }
    }

    fn on_api_reply(&mut self, world: &mut World, worker: usize, reply: Reply, rtt: Ms) {
        let State::Api { retries, token } = self.workers[worker].clone() else {
            return;
        };
        match reply.status {
            200..=299 => {
                self.workers[worker] = State::Idle;
                world.finish_job(worker, true, rtt);
            }
            401 => {
                let pod = world.pod_of(worker);
                if self.tokens[pod].as_deref() == Some(token.as_str()) {
                    self.tokens[pod] = None;
                }
                self.retry_or_fail(world, worker, retries, rtt);
            }
            _ => self.retry_or_fail(world, worker, retries, rtt),
        }
    }

    fn on_token_reply(
        &mut self,
        world: &mut World,
        pod: usize,
        worker: Option<usize>,
        result: TokenResult,
    ) {
        let Some(worker) = worker else { return };
        let State::Token { retries } = self.workers[worker] else {
            return;
        };
        match result {
            Ok((token, _)) => {
                self.tokens[pod] = Some(token);
                self.attempt(world, worker, retries);
            }
            Err(_) => self.retry_or_fail(world, worker, retries, 0),
        }
    }
}
