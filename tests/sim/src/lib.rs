//! # credflow-sim
//!
//! A discrete-event fleet simulator: `P` pods × `W` workers sharing one OAuth client id, and so
//! one rate limit and one token endpoint, against a [server model](server) with the platform's
//! behaviour (Genesys Cloud: a shared fixed-window limit with `inin-ratelimit-*` headers and a
//! 429 with `Retry-After` beyond it, a token endpoint whose own limit answers 400
//! `rate limit exceeded;`, token lifetimes, outage windows, a daily limit).
//!
//! Time is virtual (milliseconds) and every random choice comes from one seed, so a run is
//! exactly repeatable. Each [scenario] runs every [`Strategy`] with the same seed and
//! workload:
//!
//! - [`Strategy::Naive`]: no pacing, immediate retries;
//! - [`Strategy::Guide`] / [`Strategy::GuideTrap`]: the reference guide's code as written
//!   (concurrency multiplier 0.3/0.7/1.0, 250 ms sleep on 401, `Retry-After` sleep on 429, SDK
//!   retries 3 × 0.5 s), with one SDK client per pod, or per worker (its "trap");
//! - [`Strategy::Credflow`]: one real `credflow_core::Session` per pod, driven like the std
//!   adapter drives it;
//! - [`Strategy::CredflowShared`]: the same pods in fleet mode, coordinated as `credflow-redis`
//!   coordinates them: one token for the fleet (single flight under a lease) and one rate
//!   budget (the Lua admission script), on a [simulated Redis](redis) with a 1 ms round trip.
//!
//! ```
//! use credflow_sim::{Strategy, run, scenario};
//!
//! let steady = scenario::all(true).into_iter().next().unwrap();
//! let report = run(&steady, Strategy::Credflow, 7).unwrap();
//! assert!(report.utilization > 0.9);
//! ```

pub mod chart;
mod credflow;
mod engine;
mod guide;
mod naive;
pub mod redis;
pub mod report;
pub mod scenario;
pub mod scopes;
pub mod server;

pub use engine::Series;
pub use report::Report;
use scenario::Scenario;

/// Virtual time in milliseconds since the start of a run.
pub type Ms = u64;

/// The client strategies compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// No pacing; every failure retried at once (3 times); token fetched by whoever needs it.
    Naive,
    /// The reference guide's code, one SDK client per pod.
    Guide,
    /// The reference guide's code, one SDK client per worker (the guide's "trap").
    GuideTrap,
    /// One credflow core session per pod, driven like the std adapter.
    Credflow,
    /// The same pods sharing one token and one rate budget through (simulated) Redis, as
    /// `credflow-redis` does.
    CredflowShared,
}

impl Strategy {
    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Naive => "naive",
            Strategy::Guide => "guide",
            Strategy::GuideTrap => "guide-trap",
            Strategy::Credflow => "credflow",
            Strategy::CredflowShared => "credflow-shared",
        }
    }

    /// Every strategy, in the order of the tables.
    pub const ALL: [Strategy; 5] = [
        Strategy::Naive,
        Strategy::Guide,
        Strategy::GuideTrap,
        Strategy::Credflow,
        Strategy::CredflowShared,
    ];

    /// Parses a [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Why a run could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot set up the credflow session: {}", self.0)
    }
}

impl std::error::Error for SetupError {}

/// Runs `strategy` through `scenario` with `seed`, using the session's default configuration.
pub fn run(scenario: &Scenario, strategy: Strategy, seed: u64) -> Result<Report, SetupError> {
    run_with(scenario, strategy, seed, &credflow_core::SessionConfig::default())
}

/// Runs `strategy` through `scenario` with `seed`; `config` configures credflow's sessions.
pub fn run_with(
    scenario: &Scenario,
    strategy: Strategy,
    seed: u64,
    config: &credflow_core::SessionConfig,
) -> Result<Report, SetupError> {
    let world = engine::World::new(scenario.clone(), seed);
    let world = match strategy {
        Strategy::Naive => {
            let mut fleet = naive::Naive::new(&world);
            world.run(&mut fleet)
        }
        Strategy::Guide | Strategy::GuideTrap => {
            let mut fleet = guide::Guide::new(&world, strategy == Strategy::GuideTrap);
            world.run(&mut fleet)
        }
        Strategy::Credflow | Strategy::CredflowShared => {
            let shared = strategy == Strategy::CredflowShared;
            let mut fleet =
                credflow::Credflow::new(&world, seed, config, shared).map_err(SetupError)?;
            world.run(&mut fleet)
        }
    };
    Ok(Report::new(scenario, strategy, &world, config))
}
