//! The official Genesys Cloud Python SDK (`PureCloudPlatformClientV2`, a client nobody here
//! wrote) against `credflow proxy`, and the proxy against the emulator, all on 127.0.0.1.
//!
//! The SDK is installed from PyPI into a throwaway virtualenv under the target directory
//! (once; later runs reuse it). Without python3, venv or PyPI these tests FAIL, saying why;
//! `CREDFLOW_SKIP_PYTHON=1` skips them instead, for machines that cannot have them. The
//! scenarios are the Python scripts in `tests/python/`; each prints its findings as a JSON line.
#![cfg(unix)]

mod proxy_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use credflow_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig, EmulatorHandle, FaultConfig,
    FaultTarget, HISTOGRAM_BUCKET, Maintenance,
};
use proxy_support::Proxy;
use serde_json::Value;

/// The SDK version the scenarios were written against.
const SDK: &str = "PureCloudPlatformClientV2==269.0.0";

/// One scenario at a time: the guide's scenario measures a rate, and they share the venv.
static SERIAL: tokio::sync::Mutex<Option<PathBuf>> = tokio::sync::Mutex::const_new(None);

fn skipped() -> bool {
    let skip = std::env::var("CREDFLOW_SKIP_PYTHON").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("CREDFLOW_SKIP_PYTHON=1: the Python SDK scenario is skipped");
    }
    skip
}

/// The virtualenv's python, with the SDK installed (created on first use).
fn venv_python() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("credflow-python-sdk-269.0.0");
    let python = dir.join("bin").join("python");
    let marker = dir.join(".installed");
    if marker.exists() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let run = |program: &Path, args: &[&str], what: &str| {
        let output = std::process::Command::new(program).args(args).output().unwrap_or_else(|e| {
            panic!(
                "{what}: cannot run {}: {e}\n(the Python SDK tests need python3 with venv and \
                 PyPI; set CREDFLOW_SKIP_PYTHON=1 to skip them)",
                program.display()
            )
        });
        assert!(
            output.status.success(),
            "{what} failed:\n{}\n{}\n(the Python SDK tests need python3 with venv and PyPI; set \
             CREDFLOW_SKIP_PYTHON=1 to skip them)",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(Path::new("python3"), &["-m", "venv", dir.to_str().unwrap()], "python3 -m venv");
    let pip = dir.join("bin").join("pip");
    run(
        &pip,
        &["install", "--disable-pip-version-check", "--quiet", "--no-input", SDK],
        &format!("pip install {SDK}"),
    );
    std::fs::write(&marker, SDK).unwrap();
    python
}

/// Runs `tests/python/<script>` with the SDK pointed at the proxy: the JSON of its last line.
async fn scenario(
    python: &Path,
    script: &str,
    proxy: &Proxy,
    emu: &EmulatorHandle,
    env: &[(&str, String)],
) -> Value {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("python");
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(scripts.join(script))
        .current_dir(&scripts)
        .env("CREDFLOW_PROXY", &proxy.base)
        .env("CREDFLOW_EMULATOR", emu.base_url())
        .env("PYTHONPATH", &scripts)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().map(|(k, v)| (k, v.as_str())))
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} ran past 120 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script}: {e}: {stdout}"))
}

async fn start(config: EmulatorConfig, args: &[&str]) -> (EmulatorHandle, Proxy) {
    let emu = Emulator::start(config.with_request_log(false)).await.unwrap();
    let proxy =
        Proxy::start(&emu.token_url(), &emu.api_base(), DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, args)
            .await;
    (emu, proxy)
}

/// The venv, created by the first scenario; `None` when skipped.
async fn python() -> Option<tokio::sync::MutexGuard<'static, Option<PathBuf>>> {
    if skipped() {
        return None;
    }
    let mut guard = SERIAL.lock().await;
    if guard.is_none() {
        *guard = Some(tokio::task::spawn_blocking(venv_python).await.unwrap());
    }
    Some(guard)
}

#[tokio::test]
async fn the_sdk_logs_in_pages_queues_and_checks_its_token_through_the_proxy() {
    let Some(venv) = python().await else { return };
    let (emu, proxy) = start(EmulatorConfig::default(), &[]).await;
    let found = scenario(venv.as_ref().unwrap(), "basics.py", &proxy, &emu, &[]).await;
    let queues: Vec<String> = (1..=5).map(|i| format!("Emulated queue {i}")).collect();
    assert_eq!(found["queues"], serde_json::json!(queues));
    assert_eq!(found["pages"], 3);
    assert_eq!(
        found["previous_uris"],
        serde_json::json!([
            null,
            "/api/v2/routing/queues?pageSize=2&pageNumber=1",
            "/api/v2/routing/queues?pageSize=2&pageNumber=2"
        ])
    );
    assert_eq!(found["queue_by_id"], "Emulated queue 5");
    assert_eq!(found["filtered"], serde_json::json!(["Emulated queue 2"]));
    let users: Vec<String> = (6..=10).map(|i| format!("Emulated user {i}")).collect();
    assert_eq!(found["users"], serde_json::json!(users));
    assert!(found["organization"].as_str().is_some_and(|o| !o.is_empty()));
    assert_eq!(found["token_client"], DEMO_CLIENT_ID, "the proxy's identity, not the SDK's");
    let counters = emu.counters();
    assert_eq!(counters.token.requests, 1, "the SDK's logins stayed in the proxy");
    assert_eq!(counters.api.unauthorized, 0);
}

#[tokio::test]
async fn a_token_revoked_mid_run_never_reaches_the_sdk_as_a_401() {
    let Some(venv) = python().await else { return };
    let (emu, proxy) = start(EmulatorConfig::default(), &[]).await;
    let found = scenario(venv.as_ref().unwrap(), "revoked.py", &proxy, &emu, &[]).await;
    assert_eq!(found["statuses"], serde_json::json!([200, 200, 200, 200, 200, 200]));
    let counters = emu.counters();
    assert_eq!(counters.api.unauthorized_revoked, 1, "the revoked token was met once");
    assert_eq!(counters.token.requests, 2, "and replaced once");
}

#[tokio::test]
async fn forced_429s_are_waited_out_and_the_sdk_sees_none() {
    let Some(venv) = python().await else { return };
    let (emu, proxy) = start(EmulatorConfig::default(), &[]).await;
    let found = scenario(venv.as_ref().unwrap(), "forced_429.py", &proxy, &emu, &[]).await;
    assert_eq!(found["statuses"], serde_json::json!([200, 200, 200, 200, 200]));
    assert!(emu.counters().api.forced_429 >= 1, "the 429s happened");
}

#[tokio::test]
async fn a_token_endpoint_in_maintenance_fails_fast_with_retry_after_then_recovers() {
    let Some(venv) = python().await else { return };
    let maintenance = Maintenance {
        duration: None,
        target: FaultTarget::Token,
        retry_after: Some(Duration::from_secs(1)),
    };
    let config = EmulatorConfig::default()
        .with_faults(FaultConfig { maintenance: Some(maintenance), ..FaultConfig::default() });
    let (emu, proxy) = start(config, &["--token-wait", "300ms"]).await;
    let found = scenario(venv.as_ref().unwrap(), "maintenance.py", &proxy, &emu, &[]).await;
    let first = &found["first"];
    assert_eq!(first["status"], 503, "{found}");
    assert_eq!(first["code"], "credflow.token.unavailable");
    assert!(first["retry_after"].as_str().unwrap().parse::<u64>().unwrap() >= 1);
    // A hang guard, not a performance bound: the proxy answered instead of waiting.
    assert!(first["seconds"].as_f64().unwrap() < 10.0, "{found}");
    assert_eq!(found["recovered"], 200, "{found}");
    eprintln!(
        "maintenance: first answer after {} s, recovered in {} attempts",
        first["seconds"], found["attempts"]
    );
}

/// The guide's scenario, with a small limit over a few windows of emulator time: 4 processes ×
/// 8 threads wanting 3× the limit get no 429, share one token, and use ≥ 95 % of the limit.
///
/// The share is admissions over wall-clock capacity (`LIMIT` per `WINDOW`) from the first
/// admission. The pacer ends each window a little early (its last send falls before the reset,
/// which the headers give in whole seconds): about a quarter of a second of sends per window,
/// 0.5 % of Genesys's 60 s windows, 2.5 % of these 10 s ones, 13 % of 2 s ones (measured: 85 %).
#[tokio::test]
async fn the_guides_scenario_four_processes_eight_threads_three_times_the_limit() {
    const LIMIT: u64 = 100;
    const WINDOW: Duration = Duration::from_secs(10);
    const MEASURED_WINDOWS: u32 = 2;
    let Some(venv) = python().await else { return };
    let (emu, proxy) =
        start(EmulatorConfig::default().with_api_rate_limit(LIMIT, WINDOW), &[]).await;
    let seconds = WINDOW * MEASURED_WINDOWS + Duration::from_secs(1);
    let env = [
        ("GUIDE_LIMIT", LIMIT.to_string()),
        ("GUIDE_WINDOW", WINDOW.as_secs_f64().to_string()),
        ("GUIDE_SECONDS", seconds.as_secs_f64().to_string()),
    ];
    let found = scenario(venv.as_ref().unwrap(), "guide.py", &proxy, &emu, &env).await;
    let counters = emu.counters();
    // Admissions in the measured windows: from the first admission, MEASURED_WINDOWS windows
    // of the emulator's fixed windows (which open back to back under continuous demand).
    let histogram = counters.admitted_for(DEMO_CLIENT_ID);
    let bucket = HISTOGRAM_BUCKET.as_millis() as u64;
    let first = histogram.buckets.first().map_or(0, |&(index, _)| index);
    let span = (WINDOW * MEASURED_WINDOWS).as_millis() as u64 / bucket;
    let used: u64 = histogram
        .buckets
        .iter()
        .filter(|&&(i, _)| i >= first && i < first + span)
        .map(|&(_, n)| n)
        .sum();
    let capacity = LIMIT * u64::from(MEASURED_WINDOWS);
    let share = used as f64 / capacity as f64;
    eprintln!(
        "guide scenario: SDK calls {found}; {used} admitted in {MEASURED_WINDOWS} windows of \
         {LIMIT} per {WINDOW:?} = {:.1} % of the limit; {} token request(s); {} 429(s) met by \
         the proxy",
        share * 100.0,
        counters.token.requests,
        counters.responses_429,
    );
    assert_eq!(found["429"], 0, "a 429 reached the SDK: {found}");
    assert_eq!(found["other"], 0, "{found}");
    assert!(found["ok"].as_u64().unwrap() > 0);
    assert_eq!(counters.token.requests, 1, "one token request in all");
    assert!(share >= 0.95, "only {:.1} % of the limit used", share * 100.0);
}
