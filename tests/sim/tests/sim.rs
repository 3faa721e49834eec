//! Properties of the simulator: determinism, the server's limit, and invariants of every run.

use credflow_sim::scenario::{self, Scenario};
use credflow_sim::server::{Server, ServerConfig};
use credflow_sim::{Strategy, run};

const ALL: [Strategy; 5] = Strategy::ALL;

fn quick(name: &str) -> Scenario {
    scenario::all(true).into_iter().find(|s| s.name == name).expect("scenario exists")
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    for s in scenario::all(true) {
        for strategy in ALL {
            let a = run(&s, strategy, 7).expect("runs");
            let b = run(&s, strategy, 7).expect("runs");
            assert_eq!(a, b, "{} / {}", s.name, strategy.name());
        }
    }
    let s = quick("steady-overload");
    let a = run(&s, Strategy::Credflow, 7).expect("runs");
    let c = run(&s, Strategy::Credflow, 8).expect("runs");
    assert_ne!(a.series, c.series, "the seed must matter");
}

#[test]
fn server_never_admits_more_than_the_limit_per_window() {
    // Arrivals from a cheap LCG: bursts and gaps, against a 7-per-second window.
    let config = ServerConfig { api_limit: 7, api_window: 1_000, ..ServerConfig::default() };
    let mut server = Server::new(config, 1);
    let (token, _) = server.token_request(0, 0).expect("token");
    let mut x: u64 = 12345;
    let mut now = 0;
    let mut admitted: Vec<u64> = Vec::new();
    for _ in 0..20_000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        now += (x >> 33) % 40;
        let reply = server.api_request(now, &token);
        match reply.status {
            200 => admitted.push(now),
            429 => {
                let wait: u64 =
                    reply.header("retry-after").and_then(|v| v.parse().ok()).expect("retry-after");
                assert!((1..=1).contains(&wait));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // Fixed windows: any 7 + 1 consecutive admissions span at least one window.
    for w in admitted.windows(8) {
        assert!(w[7] - w[0] >= 1, "8 admissions within one window");
    }
    assert!(server.counters().max_window_count <= 7);
    assert!(server.counters().rate_limited > 0, "the arrivals must exceed the limit");
}

#[test]
fn every_run_respects_the_limit_and_accounts_for_every_job() {
    for s in scenario::all(true) {
        for strategy in ALL {
            let r = run(&s, strategy, 3).expect("runs");
            let label = format!("{} / {}", s.name, strategy.name());
            assert!(r.utilization <= 1.0 + 1e-9, "{label}: utilisation {}", r.utilization);
            let admitted: u64 = r.series.admitted.iter().map(|&n| u64::from(n)).sum();
            let limited: u64 = r.series.limited.iter().map(|&n| u64::from(n)).sum();
            assert_eq!(admitted + limited + r.unauthorized, r.api_requests, "{label}");
            assert_eq!(limited, r.rate_limited, "{label}");
            assert!(r.completed <= admitted, "{label}: a job completes on a 2xx");
            assert!(r.latency_p50_ms <= r.latency_p99_ms, "{label}");
        }
    }
}

#[test]
fn credflow_never_has_two_token_requests_in_flight_per_pod() {
    for s in scenario::all(true) {
        for strategy in [Strategy::Credflow, Strategy::CredflowShared] {
            let r = run(&s, strategy, 11).expect("runs");
            let label = format!("{} / {}", s.name, strategy.name());
            assert!(r.max_token_in_flight_per_pod <= 1, "{label}: {r:?}");
            assert_eq!(r.token_rate_limited, 0, "{label}: token endpoint limit hit");
        }
    }
    // The guide's threads each fetch: the simulator can see several at once.
    let r = run(&quick("startup-burst"), Strategy::Guide, 11).expect("runs");
    assert!(r.max_token_in_flight_per_pod > 1);
}

#[test]
fn credflow_outage_goal_one_token_request_per_cooldown_per_pod() {
    let r = run(&quick("token-outage"), Strategy::Credflow, 5).expect("runs");
    let bound = r.outage_bound_per_pod.expect("an outage scenario");
    assert!(r.token_requests_outage_max_per_pod <= bound, "{r:?}");
    let fleet = run(&quick("token-outage"), Strategy::CredflowShared, 5).expect("runs");
    assert!(fleet.token_requests_outage_max_per_pod <= bound, "{fleet:?}");
    assert!(fleet.recovery_ms.is_some(), "every pod of the fleet recovers too");
    let naive = run(&quick("token-outage"), Strategy::Naive, 5).expect("runs");
    assert!(naive.token_requests_outage_max_per_pod > bound, "the bound must be able to fail");
    assert!(r.recovery_ms.is_some(), "every pod recovers after the outage");
}

#[test]
fn credflow_sends_fewer_429s_than_the_guide_in_steady_overload() {
    let s = quick("steady-overload");
    let credflow = run(&s, Strategy::Credflow, 42).expect("runs");
    let guide = run(&s, Strategy::Guide, 42).expect("runs");
    assert!(credflow.utilization >= 0.95, "{credflow:?}");
    assert!(credflow.rate_limited_share() < guide.rate_limited_share() / 10.0);
    // One pod alone knows every send against the quota: no 429 at all.
    let alone = Scenario { pods: 1, workers: 32, ..s };
    let r = run(&alone, Strategy::Credflow, 42).expect("runs");
    assert_eq!(r.rate_limited, 0, "{r:?}");
    assert!(r.utilization >= 0.95, "{r:?}");
}

/// The fleet's token is fetched once and taken by every pod: single flight across the fleet.
#[test]
fn the_fleet_makes_no_more_token_requests_than_independent_pods() {
    for name in ["startup-burst", "token-expiry", "token-outage"] {
        let s = quick(name);
        let alone = run(&s, Strategy::Credflow, 42).expect("runs");
        let fleet = run(&s, Strategy::CredflowShared, 42).expect("runs");
        assert!(fleet.token_requests <= alone.token_requests, "{name}: {fleet:?} / {alone:?}");
    }
    // Starting together: one pod takes the lease and fetches, the others wait for its token.
    let s = quick("startup-burst");
    let alone = run(&s, Strategy::Credflow, 42).expect("runs");
    let fleet = run(&s, Strategy::CredflowShared, 42).expect("runs");
    assert_eq!(alone.token_requests, s.pods as u64, "one per pod when they do not share");
    assert_eq!(fleet.token_requests, 1, "{fleet:?}");
    assert_eq!(alone.store_calls, 0);
    assert!(fleet.store_calls > fleet.api_requests, "an admission per attempt at least");
    // A pod never refreshes before half its token's remaining life, and a pod that takes the
    // fleet's token takes it with less life left: so the fleet as a whole sends at most one
    // token request per half token life, where independent pods send one each.
    let s = quick("token-expiry");
    let bound = 1 + s.duration / (s.server.token_life / 2);
    let alone = run(&s, Strategy::Credflow, 42).expect("runs");
    let fleet = run(&s, Strategy::CredflowShared, 42).expect("runs");
    assert!(fleet.token_requests <= bound, "{} > {bound}", fleet.token_requests);
    assert!(alone.token_requests > bound, "the bound must be able to fail");
}

/// One admission script counts every pod's sends against the shared window, as one pod alone
/// counts its own: no 429 where independent pods, each seeing only its own sends, spend the
/// window's last requests twice.
#[test]
fn the_shared_budget_sends_no_429_where_independent_pods_do() {
    for name in ["steady-overload", "startup-burst", "token-expiry"] {
        let s = quick(name);
        let alone = run(&s, Strategy::Credflow, 42).expect("runs");
        let fleet = run(&s, Strategy::CredflowShared, 42).expect("runs");
        assert_eq!(fleet.rate_limited, 0, "{name}: {fleet:?}");
        assert!(alone.rate_limited > 0, "{name}: the assertion must be able to fail");
        assert!(fleet.utilization >= 0.95, "{name}: {fleet:?}");
        assert_eq!(fleet.failed, 0, "{name}: {fleet:?}");
    }
    // The fleet behaves as one pod alone: the same admission rule over every send.
    let s = quick("steady-overload");
    let fleet = run(&s, Strategy::CredflowShared, 42).expect("runs");
    let one = run(&Scenario { pods: 1, workers: 32, ..s }, Strategy::Credflow, 42).expect("runs");
    assert!((fleet.utilization - one.utilization).abs() < 0.02, "{fleet:?} / {one:?}");
}

/// After a daily quota's 429 the shared window holds the fleet back for hours: a wait longer
/// than the retry policy accepts is left to each pod's session, which fails fast (naming the
/// wait) and probes once per `max_wait`, as a pod alone does, instead of sleeping for hours.
#[test]
fn a_daily_limit_fails_fast_in_the_fleet_too() {
    let s = quick("daily-limit");
    let alone = run(&s, Strategy::Credflow, 42).expect("runs");
    let fleet = run(&s, Strategy::CredflowShared, 42).expect("runs");
    assert!(fleet.failed > 1000, "{fleet:?}");
    assert!(fleet.unfinished <= alone.unfinished + 1, "none held for hours: {fleet:?}");
}

#[test]
fn json_has_the_required_fields() {
    let r = run(&quick("daily-limit"), Strategy::Credflow, 1).expect("runs");
    let v = r.to_json();
    for key in
        ["scenario", "strategy", "completed", "rate_limited", "utilization", "token_requests"]
    {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert!(r.failed > 0, "a daily-limit 429 fails fast instead of sleeping for hours");
}

#[test]
fn chart_is_an_svg_with_one_line_per_strategy() {
    let s = quick("steady-overload");
    let reports: Vec<_> = [Strategy::Naive, Strategy::Credflow, Strategy::CredflowShared]
        .into_iter()
        .map(|st| run(&s, st, 1).expect("runs"))
        .collect();
    let refs: Vec<_> = reports.iter().collect();
    let svg = credflow_sim::chart::svg(&s, &refs).expect("renders");
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains("credflow") && svg.contains("naive") && svg.contains("limit"));
    assert!(svg.contains("credflow-shared"));
}
