//! The discrete-event engine: virtual time, one queue of timed events, the server model, the
//! workload and the recorder. Strategies drive it through [`World`] and react to [`Fleet`]
//! callbacks; nothing reads a real clock, and every random choice comes from one seeded
//! [`Rng`], so a seed replays the same run.

use std::collections::BTreeMap;

use credflow_core::rng::Rng;

use crate::Ms;
use crate::scenario::Scenario;
use crate::server::{Reply, Server};

/// A token answer as a client sees it: `Ok((access_token, expires_in_secs))` or the error reply.
pub(crate) type TokenResult = Result<(String, u64), Reply>;

/// What happens at an instant.
#[derive(Debug)]
enum Ev {
    /// A worker's timer (stale when its epoch moved on).
    Wake { worker: usize, epoch: u64 },
    /// A pod's timer (stale when its epoch moved on).
    PodTimer { pod: usize, epoch: u64 },
    /// An API request reaches the server.
    ApiArrive { worker: usize, token: String, sent: Ms },
    /// The server's answer reaches the worker.
    ApiReply { worker: usize, reply: Reply, rtt: Ms },
    /// A token request reaches the server (`worker` is `None` for a pod's token driver).
    TokenArrive { pod: usize, worker: Option<usize> },
    /// The token endpoint's answer reaches the caller.
    TokenReply { pod: usize, worker: Option<usize>, result: TokenResult },
}

/// A strategy running a whole fleet: it owns every pod's and worker's state.
pub(crate) trait Fleet {
    /// Called once at time zero, after the first job of every worker was scheduled.
    fn start(&mut self, _world: &mut World) {}
    /// A worker's timer fired (its first job is due, a sleep ended, or it was woken).
    fn on_wake(&mut self, world: &mut World, worker: usize);
    /// The answer to an API request of `worker`; `rtt` is that attempt's network time.
    fn on_api_reply(&mut self, world: &mut World, worker: usize, reply: Reply, rtt: Ms);
    /// The answer to a token request of `pod` (and `worker`, if a worker sent it).
    fn on_token_reply(
        &mut self,
        world: &mut World,
        pod: usize,
        worker: Option<usize>,
        result: TokenResult,
    );
    /// A pod's timer fired.
    fn on_pod_timer(&mut self, _world: &mut World, _pod: usize) {}
    /// The run ended: record what only the strategy knows.
    fn finish(&mut self, _world: &mut World) {}
}

/// Per-second counts, for the metrics and the chart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Series {
    /// API requests reaching the server, per second.
    pub sent: Vec<u32>,
    /// API requests admitted (2xx), per second.
    pub admitted: Vec<u32>,
    /// API requests answered 429, per second.
    pub limited: Vec<u32>,
}

impl Series {
    fn bump(v: &mut Vec<u32>, at: Ms) {
        let i = usize::try_from(at / 1000).unwrap_or(usize::MAX);
        if i < 1_000_000 {
            if v.len() <= i {
                v.resize(i + 1, 0);
            }
            v[i] = v[i].saturating_add(1);
        }
    }
}

/// What the engine records about jobs and requests.
#[derive(Clone, Debug, Default)]
pub(crate) struct Recorder {
    pub(crate) jobs_started: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    /// Added latency of each completed job: its duration less its last attempt's network time.
    pub(crate) added_latency: Vec<Ms>,
    pub(crate) series: Series,
    /// First 2xx per pod after the end of the last outage.
    pub(crate) first_success_after_outage: Vec<Option<Ms>>,
    /// Most token requests a single pod had in flight at once.
    pub(crate) max_token_in_flight_per_pod: usize,
    /// Calls to the fleet's shared store (fleet mode only).
    pub(crate) store_calls: u64,
    token_in_flight: Vec<usize>,
}

/// The simulated world: clock, queue, server, workload and recorder.
pub(crate) struct World {
    now: Ms,
    seq: u64,
    queue: BTreeMap<(Ms, u64), Ev>,
    pub(crate) server: Server,
    pub(crate) rng: Rng,
    pub(crate) scenario: Scenario,
    worker_epoch: Vec<u64>,
    pod_epoch: Vec<u64>,
    /// Start of each worker's current job.
    job_start: Vec<Option<Ms>>,
    pub(crate) rec: Recorder,
}

impl World {
    pub(crate) fn new(scenario: Scenario, seed: u64) -> Self {
        let workers = scenario.pods * scenario.workers;
        World {
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            server: Server::new(scenario.server.clone(), scenario.pods),
            rng: Rng::new(seed),
            worker_epoch: vec![0; workers],
            pod_epoch: vec![0; scenario.pods],
            job_start: vec![None; workers],
            rec: Recorder {
                first_success_after_outage: vec![None; scenario.pods],
                token_in_flight: vec![0; scenario.pods],
                ..Recorder::default()
            },
            scenario,
        }
    }

    /// The current virtual time.
    pub(crate) fn now(&self) -> Ms {
        self.now
    }

    /// Number of workers in the fleet.
    pub(crate) fn workers(&self) -> usize {
        self.worker_epoch.len()
    }

    /// The pod `worker` belongs to.
    pub(crate) fn pod_of(&self, worker: usize) -> usize {
        worker / self.scenario.workers.max(1)
    }

    fn push(&mut self, at: Ms, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    /// Wakes `worker` at `at`, replacing any earlier timer of it.
    pub(crate) fn wake(&mut self, worker: usize, at: Ms) {
        if let Some(e) = self.worker_epoch.get_mut(worker) {
            *e += 1;
            let epoch = *e;
            self.push(at, Ev::Wake { worker, epoch });
        }
    }

    /// Fires `pod`'s timer at `at`, replacing any earlier one.
    pub(crate) fn pod_timer(&mut self, pod: usize, at: Ms) {
        if let Some(e) = self.pod_epoch.get_mut(pod) {
            *e += 1;
            let epoch = *e;
            self.push(at, Ev::PodTimer { pod, epoch });
        }
    }

    fn api_rtt(&mut self) -> Ms {
        let (lo, hi) = self.scenario.api_rtt;
        lo + self.rng.below(hi.saturating_sub(lo).max(1))
    }

    /// Sends an API request with `token` for `worker`.
    pub(crate) fn send_api(&mut self, worker: usize, token: &str) {
        let rtt = self.api_rtt();
        let sent = self.now;
        self.push(sent + rtt / 2, Ev::ApiArrive { worker, token: token.to_owned(), sent });
    }

    /// Sends a token request for `pod` (and `worker`, if a worker sends it itself).
    pub(crate) fn send_token(&mut self, pod: usize, worker: Option<usize>) {
        if let Some(n) = self.rec.token_in_flight.get_mut(pod) {
            *n += 1;
            self.rec.max_token_in_flight_per_pod = self.rec.max_token_in_flight_per_pod.max(*n);
        }
        let half = self.scenario.token_rtt / 2;
        self.push(self.now + half, Ev::TokenArrive { pod, worker });
    }

    /// Starts a job for `worker` now.
    pub(crate) fn begin_job(&mut self, worker: usize) {
        if let Some(slot) = self.job_start.get_mut(worker) {
            *slot = Some(self.now);
            self.rec.jobs_started += 1;
        }
    }

    /// Ends `worker`'s job (`last_rtt`: the network time of its last attempt) and schedules the
    /// next one after a think time.
    pub(crate) fn finish_job(&mut self, worker: usize, ok: bool, last_rtt: Ms) {
        let Some(start) = self.job_start.get_mut(worker).and_then(Option::take) else {
            return;
        };
        if ok {
            self.rec.completed += 1;
            self.rec.added_latency.push(self.now.saturating_sub(start).saturating_sub(last_rtt));
        } else {
            self.rec.failed += 1;
        }
        let think = self.think();
        self.wake(worker, self.now + think);
    }

    fn think(&mut self) -> Ms {
        let t = self.scenario.think;
        // Uniform in [t/2, 3t/2): the fleet does not march in lockstep.
        t / 2 + self.rng.below(t.max(1))
    }

    /// Runs `fleet` until the scenario's end; returns the world for the metrics.
    pub(crate) fn run(mut self, fleet: &mut dyn Fleet) -> World {
        for worker in 0..self.workers() {
            let at = if self.scenario.start_together {
                0
            } else {
                self.rng.below(self.scenario.think.max(1))
            };
            self.wake(worker, at);
        }
        fleet.start(&mut self);
        let end = self.scenario.duration;
        let outage_end = self.scenario.server.token_outages.iter().map(|&(_, e)| e).max();
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            if at >= end {
                break;
            }
            self.now = at;
            match ev {
                Ev::Wake { worker, epoch } => {
                    if self.worker_epoch.get(worker) == Some(&epoch) {
                        fleet.on_wake(&mut self, worker);
                    }
                }
                Ev::PodTimer { pod, epoch } => {
                    if self.pod_epoch.get(pod) == Some(&epoch) {
                        fleet.on_pod_timer(&mut self, pod);
                    }
                }
                Ev::ApiArrive { worker, token, sent } => {
                    let reply = self.server.api_request(at, &token);
                    Series::bump(&mut self.rec.series.sent, at);
                    match reply.status {
                        200..=299 => Series::bump(&mut self.rec.series.admitted, at),
                        429 => Series::bump(&mut self.rec.series.limited, at),
                        _ => {}
                    }
                    let half = at - sent;
                    self.push(at + half, Ev::ApiReply { worker, reply, rtt: half * 2 });
                }
                Ev::ApiReply { worker, reply, rtt } => {
                    if (200..300).contains(&reply.status)
                        && let Some(end) = outage_end
                        && at >= end
                    {
                        let pod = self.pod_of(worker);
                        if let Some(slot @ None) = self.rec.first_success_after_outage.get_mut(pod)
                        {
                            *slot = Some(at);
                        }
                    }
                    fleet.on_api_reply(&mut self, worker, reply, rtt);
                }
                Ev::TokenArrive { pod, worker } => {
                    let result = self.server.token_request(at, pod);
                    let half = self.scenario.token_rtt / 2;
                    self.push(at + half, Ev::TokenReply { pod, worker, result });
                }
                Ev::TokenReply { pod, worker, result } => {
                    if let Some(n) = self.rec.token_in_flight.get_mut(pod) {
                        *n = n.saturating_sub(1);
                    }
                    fleet.on_token_reply(&mut self, pod, worker, result);
                }
            }
        }
        self.now = end;
        fleet.finish(&mut self);
        self
    }
}
