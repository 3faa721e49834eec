//! The rate-limit scope comparison (issue 19): the steady-overload and start-up burst
//! scenarios with the server counting its API limit per client id and per access token, for
//! the strategies whose fleets differ in tokens: `credflow` (each pod its own token),
//! `credflow-shared` (one token and one budget for the fleet) and the guide (one SDK client,
//! so one token, per pod).
//!
//! Per client id every token draws on one budget, so sharing a token costs nothing. Per token a
//! pod with its own token has a budget of its own: independent pods get one budget each (and
//! one token request per pod per token life, and no shared pacing), a fleet sharing one token
//! gets one. None of the strategies takes extra tokens for headroom; the table shows what each
//! token arrangement gets under each scope.
//!
//! [`compare_pacing`] drives the pacer's own handling of the scope: one pod whose demand is
//! three times one budget, with five-minute tokens, so that every token change meets a spent
//! window; `credflow` with its pacer set to each [`RateLimitScope`], under both server scopes.
//!
//! ```
//! let rows = credflow_sim::scopes::compare(true, 7).unwrap();
//! assert_eq!(rows.len(), 2 * 2 * 3);
//! ```

use credflow_core::SessionConfig;
use credflow_core::ratelimit::pacer::RateLimitScope;

use crate::report::Report;
use crate::scenario::{self, Scenario};
use crate::server::ApiScope;
use crate::server::ServerConfig;
use crate::{SetupError, Strategy, run, run_with};

/// The scenarios compared.
pub const SCENARIOS: [&str; 2] = ["steady-overload", "startup-burst"];

/// The strategies compared, in table order.
pub const STRATEGIES: [Strategy; 3] =
    [Strategy::Credflow, Strategy::CredflowShared, Strategy::Guide];

/// One run: a scenario under a scope with a strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeRow {
    /// Scenario name.
    pub scenario: &'static str,
    /// What the server counted its API limit per.
    pub scope: ApiScope,
    /// The run's report.
    pub report: Report,
    /// Simulated minutes.
    pub minutes: f64,
    /// The limit of one budget, per minute.
    pub limit_per_min: f64,
    /// The pacer's scope setting (`credflow` strategies).
    pub pacer_scope: RateLimitScope,
}

impl ScopeRow {
    /// API requests the server admitted.
    pub fn admitted(&self) -> u64 {
        let r = &self.report;
        r.api_requests.saturating_sub(r.rate_limited).saturating_sub(r.unauthorized)
    }

    /// Admitted requests per simulated minute.
    pub fn admitted_per_min(&self) -> f64 {
        self.admitted() as f64 / self.minutes.max(f64::MIN_POSITIVE)
    }
}

/// `scenario` with its server counting per `scope`.
pub fn with_scope(scenario: &Scenario, scope: ApiScope) -> Scenario {
    let mut s = scenario.clone();
    s.server.api_scope = scope;
    s
}

/// Runs every compared scenario under both scopes with every compared strategy.
///
/// # Errors
/// When a credflow session cannot be set up.
pub fn compare(quick: bool, seed: u64) -> Result<Vec<ScopeRow>, SetupError> {
    let mut rows = Vec::new();
    for base in scenario::all(quick).iter().filter(|s| SCENARIOS.contains(&s.name)) {
        for scope in [ApiScope::Client, ApiScope::Token] {
            let s = with_scope(base, scope);
            for strategy in STRATEGIES {
                rows.push(ScopeRow {
                    scenario: s.name,
                    scope,
                    report: run(&s, strategy, seed)?,
                    minutes: s.duration as f64 / 60_000.0,
                    limit_per_min: s.limit_per_sec() * 60.0,
                    pacer_scope: RateLimitScope::default(),
                });
            }
        }
    }
    Ok(rows)
}

/// One pod, 32 workers (about three budgets of demand), tokens of five minutes, 20 minutes
/// (6 in `quick`): every token change finds the pod's window spent.
pub fn token_change_overload(quick: bool) -> Scenario {
    let base = scenario::all(quick).into_iter().find(|s| s.name == "steady-overload");
    let base = base.unwrap_or_else(|| scenario::all(quick).swap_remove(0));
    Scenario {
        name: "token-change-overload",
        description: "1 pod x 32 workers wanting ~3x one budget, with 300 s tokens",
        pods: 1,
        workers: 32,
        duration: if quick { 6 * 60_000 } else { 20 * 60_000 },
        server: ServerConfig { token_life: 5 * 60_000, ..base.server.clone() },
        ..base
    }
}

/// `credflow` through [`token_change_overload`] with its pacer set to each scope, under both
/// server scopes.
///
/// # Errors
/// When a credflow session cannot be set up.
pub fn compare_pacing(quick: bool, seed: u64) -> Result<Vec<ScopeRow>, SetupError> {
    let base = token_change_overload(quick);
    let mut rows = Vec::new();
    for scope in [ApiScope::Client, ApiScope::Token] {
        let s = with_scope(&base, scope);
        for pacer_scope in [RateLimitScope::Auto, RateLimitScope::Client, RateLimitScope::Token] {
            let mut config = SessionConfig::default();
            config.pacer.scope = pacer_scope;
            rows.push(ScopeRow {
                scenario: s.name,
                scope,
                report: run_with(&s, Strategy::Credflow, seed, &config)?,
                minutes: s.duration as f64 / 60_000.0,
                limit_per_min: s.limit_per_sec() * 60.0,
                pacer_scope,
            });
        }
    }
    Ok(rows)
}

/// The pacing rows as one markdown table.
pub fn pacing_markdown(rows: &[ScopeRow]) -> String {
    let mut out = String::from(
        "| limit counted per | pacer scope | admitted/min | 429s | token requests | completed | added p99 |\n\
         |---|---|--:|--:|--:|--:|--:|\n",
    );
    for row in rows {
        let r = &row.report;
        out.push_str(&format!(
            "| {} | {:?} | {:.0} | {} | {} | {} | {:.2} s |\n",
            row.scope.name(),
            row.pacer_scope,
            row.admitted_per_min(),
            r.rate_limited,
            r.token_requests,
            r.completed,
            r.latency_p99_ms as f64 / 1000.0,
        ));
    }
    out
}

/// The rows as one markdown table.
pub fn markdown(rows: &[ScopeRow]) -> String {
    let mut out = String::from(
        "| scenario | limit counted per | strategy | admitted/min | 429 share | token requests (400) | completed | failed | added p99 |\n\
         |---|---|---|--:|--:|--:|--:|--:|--:|\n",
    );
    for row in rows {
        let r = &row.report;
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2} % | {} ({}) | {} | {} | {:.2} s |\n",
            row.scenario,
            row.scope.name(),
            r.strategy,
            row.admitted_per_min(),
            r.rate_limited_share() * 100.0,
            r.token_requests,
            r.token_rate_limited,
            r.completed,
            r.failed,
            r.latency_p99_ms as f64 / 1000.0,
        ));
    }
    out
}
