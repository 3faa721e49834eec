//! The rate-limit scope in the simulator (issue 19): the server counting per client id or per
//! token, and what each fleet arrangement gets under each.

use credflow_core::ratelimit::pacer::RateLimitScope;
use credflow_sim::scopes::{self, ScopeRow};
use credflow_sim::server::ApiScope;

fn row<'a>(rows: &'a [ScopeRow], scenario: &str, scope: ApiScope, strategy: &str) -> &'a ScopeRow {
    rows.iter()
        .find(|r| r.scenario == scenario && r.scope == scope && r.report.strategy == strategy)
        .expect("row exists")
}

#[test]
fn per_token_independent_pods_get_a_budget_each_a_shared_token_gets_one() {
    let rows = scopes::compare(true, 7).expect("runs");
    for scenario in scopes::SCENARIOS {
        let limit = row(&rows, scenario, ApiScope::Client, "credflow").limit_per_min;
        // Per client id nobody gets more than the one budget (the server enforces it).
        for strategy in ["credflow", "credflow-shared", "guide"] {
            let r = row(&rows, scenario, ApiScope::Client, strategy);
            assert!(r.admitted_per_min() <= limit * 1.01, "{scenario} {strategy}: {r:?}");
        }
        // Per token, pods with their own tokens get more than two budgets' worth...
        for strategy in ["credflow", "guide"] {
            let r = row(&rows, scenario, ApiScope::Token, strategy);
            assert!(r.admitted_per_min() > 2.0 * limit, "{scenario} {strategy}: {r:?}");
        }
        // ...while a fleet sharing one token still shares one.
        let shared = row(&rows, scenario, ApiScope::Token, "credflow-shared");
        assert!(shared.admitted_per_min() <= limit * 1.01, "{scenario}: {shared:?}");
        assert_eq!(shared.report.token_requests, 1, "{scenario}: one token for the fleet");
        // credflow paces within whichever budget it has: a few 429s at most.
        for scope in [ApiScope::Client, ApiScope::Token] {
            let r = row(&rows, scenario, scope, "credflow");
            assert!(r.report.rate_limited_share() < 0.02, "{scenario} {scope:?}: {r:?}");
            let pods = if scenario == "startup-burst" { 8 } else { 4 };
            assert_eq!(r.report.token_requests, pods, "one token per pod, none for headroom");
        }
    }
    let table = scopes::markdown(&rows);
    assert_eq!(table.lines().count(), 2 + rows.len());
}

#[test]
fn token_changes_under_a_spent_window_cost_no_429_storm_under_either_scope() {
    let rows = scopes::compare_pacing(true, 7).expect("runs");
    assert_eq!(rows.len(), 6);
    for r in &rows {
        // Auto and the right setting stay within the budget; so does the wrong one, because
        // the first answer of a new token corrects the window. Bounds, not timings.
        assert!(r.report.rate_limited <= r.report.token_requests, "{r:?}");
        assert!(r.admitted_per_min() <= r.limit_per_min * 1.01, "{r:?}");
        assert!(r.admitted_per_min() >= r.limit_per_min * 0.9, "{r:?}");
    }
    let auto = |scope| {
        rows.iter()
            .find(|r| r.scope == scope && r.pacer_scope == RateLimitScope::Auto)
            .expect("row")
    };
    for scope in [ApiScope::Client, ApiScope::Token] {
        assert!(auto(scope).report.token_requests >= 2, "the quick run changes tokens");
    }
}
