//! Metrics of one run, and their markdown and JSON forms.

use serde_json::{Value, json};

use crate::engine::World;
use crate::scenario::Scenario;
use crate::{Ms, Series, Strategy};

/// What one strategy achieved in one scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Scenario name.
    pub scenario: &'static str,
    /// Strategy name.
    pub strategy: &'static str,
    /// Jobs completed with a 2xx answer.
    pub completed: u64,
    /// Jobs that ended in an error.
    pub failed: u64,
    /// Jobs still running when the run ended (waiting, sleeping or in flight).
    pub unfinished: u64,
    /// API requests that reached the server (every attempt).
    pub api_requests: u64,
    /// API requests answered 429.
    pub rate_limited: u64,
    /// API requests answered 401.
    pub unauthorized: u64,
    /// Admitted requests over what the limit allowed in the run's duration.
    pub utilization: f64,
    /// Token requests that reached the token endpoint.
    pub token_requests: u64,
    /// Token requests answered 400 `rate limit exceeded;`.
    pub token_rate_limited: u64,
    /// Token requests during the outage.
    pub token_requests_outage: u64,
    /// The most token requests any one pod sent during the outage.
    pub token_requests_outage_max_per_pod: u64,
    /// The goal for that: one per breaker cooldown per pod, `ceil(outage / cooldown)`.
    pub outage_bound_per_pod: Option<u64>,
    /// Most token requests one pod had in flight at once.
    pub max_token_in_flight_per_pod: u64,
    /// Added latency (job time less its last attempt's network time), median, in ms.
    pub latency_p50_ms: Ms,
    /// Added latency, 99th percentile, in ms.
    pub latency_p99_ms: Ms,
    /// Time from the end of the outage until every pod had a 2xx again (`None`: no outage, or
    /// some pod never recovered).
    pub recovery_ms: Option<Ms>,
    /// Calls to the fleet's shared store (Redis round trips; 0 without one).
    pub store_calls: u64,
    /// Per-second counts for the chart.
    pub series: Series,
}

fn percentile(sorted: &[Ms], p: usize) -> Ms {
    if sorted.is_empty() {
        return 0;
    }
    let i = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[i.min(sorted.len() - 1)]
}

impl Report {
    pub(crate) fn new(
        scenario: &Scenario,
        strategy: Strategy,
        world: &World,
        config: &credflow_core::SessionConfig,
    ) -> Report {
        let server = world.server.counters();
        let rec = &world.rec;
        let capacity = scenario.server.api_limit as f64 * scenario.duration as f64
            / scenario.server.api_window as f64;
        let mut latency = rec.added_latency.clone();
        latency.sort_unstable();
        let outage_end = scenario.server.token_outages.iter().map(|&(_, e)| e).max();
        let recovery = outage_end.and_then(|end| {
            rec.first_success_after_outage
                .iter()
                .map(|t| t.map(|t| t.saturating_sub(end)))
                .collect::<Option<Vec<_>>>()
                .and_then(|v| v.into_iter().max())
        });
        let cooldown = config.token_breaker.cooldown.as_millis().max(1);
        Report {
            scenario: scenario.name,
            strategy: strategy.name(),
            completed: rec.completed,
            failed: rec.failed,
            unfinished: rec.jobs_started - rec.completed - rec.failed,
            api_requests: server.admitted + server.rate_limited + server.unauthorized,
            rate_limited: server.rate_limited,
            unauthorized: server.unauthorized,
            utilization: if capacity > 0.0 { server.admitted as f64 / capacity } else { 0.0 },
            token_requests: server.token_requests,
            token_rate_limited: server.token_rate_limited,
            token_requests_outage: server.token_requests_in_outage,
            token_requests_outage_max_per_pod: server
                .token_requests_in_outage_by_pod
                .iter()
                .copied()
                .max()
                .unwrap_or(0),
            outage_bound_per_pod: outage_end.map(|_| scenario.outage_len().div_ceil(cooldown)),
            max_token_in_flight_per_pod: rec.max_token_in_flight_per_pod as u64,
            latency_p50_ms: percentile(&latency, 50),
            latency_p99_ms: percentile(&latency, 99),
            recovery_ms: recovery,
            store_calls: rec.store_calls,
            series: rec.series.clone(),
        }
    }

    /// Share of API requests answered 429 (0 to 1).
    pub fn rate_limited_share(&self) -> f64 {
        if self.api_requests == 0 {
            0.0
        } else {
            self.rate_limited as f64 / self.api_requests as f64
        }
    }

    /// The report as a JSON object (without the series).
    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "strategy": self.strategy,
            "completed": self.completed,
            "failed": self.failed,
            "unfinished": self.unfinished,
            "api_requests": self.api_requests,
            "rate_limited": self.rate_limited_share(),
            "rate_limited_count": self.rate_limited,
            "unauthorized": self.unauthorized,
            "utilization": self.utilization,
            "token_requests": self.token_requests,
            "token_rate_limited": self.token_rate_limited,
            "token_requests_outage": self.token_requests_outage,
            "token_requests_outage_max_per_pod": self.token_requests_outage_max_per_pod,
            "outage_bound_per_pod": self.outage_bound_per_pod,
            "max_token_in_flight_per_pod": self.max_token_in_flight_per_pod,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "recovery_ms": self.recovery_ms,
            "store_calls": self.store_calls,
        })
    }
}

fn secs(ms: Ms) -> String {
    if ms >= 10_000 {
        format!("{:.0} s", ms as f64 / 1000.0)
    } else {
        format!("{:.2} s", ms as f64 / 1000.0)
    }
}

/// The reports as one markdown table per scenario.
pub fn markdown(scenarios: &[Scenario], reports: &[Report]) -> String {
    let mut out = String::new();
    for scenario in scenarios {
        let rows: Vec<&Report> = reports.iter().filter(|r| r.scenario == scenario.name).collect();
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "### {}\n\n{} ({:.0} s simulated, demand {:.1}/s against a limit of {:.1}/s).\n\n",
            scenario.name,
            scenario.description,
            scenario.duration as f64 / 1000.0,
            scenario.demand_per_sec(),
            scenario.limit_per_sec(),
        ));
        out.push_str(
            "| strategy | completed | failed | unfinished | API requests | 429 share | utilisation | token requests (400) | in outage (max/pod) | added p50 | added p99 | recovery |\n",
        );
        out.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for r in rows {
            let outage = match r.outage_bound_per_pod {
                Some(bound) => format!(
                    "{} ({}/{bound})",
                    r.token_requests_outage, r.token_requests_outage_max_per_pod
                ),
                None => "–".to_owned(),
            };
            let recovery = match (r.outage_bound_per_pod, r.recovery_ms) {
                (None, _) => "–".to_owned(),
                (Some(_), Some(ms)) => secs(ms),
                (Some(_), None) => "never".to_owned(),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.2} % | {:.1} % | {} ({}) | {} | {} | {} | {} |\n",
                r.strategy,
                r.completed,
                r.failed,
                r.unfinished,
                r.api_requests,
                r.rate_limited_share() * 100.0,
                r.utilization * 100.0,
                r.token_requests,
                r.token_rate_limited,
                outage,
                secs(r.latency_p50_ms),
                secs(r.latency_p99_ms),
                recovery,
            ));
        }
        out.push('\n');
    }
    out
}
