//! The scenarios: fleet shape, workload and server behaviour for each question asked.

use crate::Ms;
use crate::server::ServerConfig;

/// One scenario: who sends what, against which server, for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Short name (`steady-overload`, …).
    pub name: &'static str,
    /// What it shows.
    pub description: &'static str,
    /// Pods (processes), each with its own client state.
    pub pods: usize,
    /// Workers (threads or tasks) per pod.
    pub workers: usize,
    /// Mean think time between a worker's jobs (uniform in `[t/2, 3t/2)`).
    pub think: Ms,
    /// API round trip, uniform in `[lo, hi)`.
    pub api_rtt: (Ms, Ms),
    /// Token endpoint round trip.
    pub token_rtt: Ms,
    /// Simulated time.
    pub duration: Ms,
    /// Every worker starts its first job at time zero (else spread over one think time).
    pub start_together: bool,
    /// The server.
    pub server: ServerConfig,
}

impl Scenario {
    /// Demand in requests per second if nothing ever waited (workers over think plus round trip).
    pub fn demand_per_sec(&self) -> f64 {
        let cycle = self.think as f64 + (self.api_rtt.0 + self.api_rtt.1) as f64 / 2.0;
        (self.pods * self.workers) as f64 * 1000.0 / cycle
    }

    /// The allowed API rate in requests per second.
    pub fn limit_per_sec(&self) -> f64 {
        self.server.api_limit as f64 * 1000.0 / self.server.api_window as f64
    }

    /// Total length of the token-endpoint outages.
    pub fn outage_len(&self) -> Ms {
        self.server.token_outages.iter().map(|&(s, e)| e.saturating_sub(s)).sum()
    }
}

const MIN: Ms = 60_000;

fn base(name: &'static str, description: &'static str) -> Scenario {
    Scenario {
        name,
        description,
        pods: 4,
        workers: 8,
        think: 2_000,
        api_rtt: (40, 80),
        token_rtt: 150,
        duration: 10 * MIN,
        start_together: false,
        server: ServerConfig::default(),
    }
}

/// Every scenario; `quick` shortens them to run in a few seconds in all.
pub fn all(quick: bool) -> Vec<Scenario> {
    let cut = |full: Ms, short: Ms| if quick { short } else { full };
    vec![
        Scenario {
            duration: cut(15 * MIN, 4 * MIN),
            ..base(
                "steady-overload",
                "4 pods x 8 workers wanting ~3x the shared limit of 300/min, for the whole run",
            )
        },
        Scenario {
            pods: 8,
            workers: 16,
            think: 1_000,
            start_together: true,
            duration: cut(5 * MIN, 2 * MIN),
            server: ServerConfig { token_limit: 20, ..ServerConfig::default() },
            ..base(
                "startup-burst",
                "8 pods x 16 workers all start at once without a token (token endpoint: 20/min)",
            )
        },
        Scenario {
            pods: 8,
            workers: 8,
            start_together: true,
            think: 4_000,
            duration: cut(35 * MIN, 11 * MIN),
            server: ServerConfig {
                token_life: 5 * MIN,
                token_limit: 20,
                ..ServerConfig::default()
            },
            ..base(
                "token-expiry",
                "8 pods started together with 300 s tokens: every token expires at the same time",
            )
        },
        Scenario {
            duration: cut(25 * MIN, 16 * MIN),
            server: ServerConfig {
                token_life: 10 * MIN,
                token_outages: vec![(2 * MIN, 12 * MIN)],
                ..ServerConfig::default()
            },
            ..base(
                "token-outage",
                "the token endpoint answers 503 for 10 minutes while 600 s tokens expire",
            )
        },
        Scenario {
            duration: cut(10 * MIN, 5 * MIN),
            server: ServerConfig { daily_limit: Some(600), ..ServerConfig::default() },
            ..base(
                "daily-limit",
                "the daily quota (600) runs out after ~2 minutes: 429 with Retry-After of hours",
            )
        },
    ]
}
