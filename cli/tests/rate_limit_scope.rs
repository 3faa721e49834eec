//! `credflow check --rate-limit-scope` against the emulator counting per client id and per
//! token: it names the scope the emulator counts by, and how sure it is.

use std::process::Output;
use std::time::Duration;

use credflow_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig, EmulatorHandle, RateLimitScope,
};

const BIN: &str = env!("CARGO_BIN_EXE_credflow");

async fn check(emu: &EmulatorHandle, extra: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("GENESYS_CLIENT_ID", DEMO_CLIENT_ID).env("GENESYS_CLIENT_SECRET", DEMO_CLIENT_SECRET);
    cmd.args(["--token-url", &emu.token_url(), "--api-base", &emu.api_base(), "check"]);
    cmd.args(extra);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("credflow finished")
        .expect("credflow ran")
}

async fn emulator(scope: RateLimitScope) -> EmulatorHandle {
    let config = EmulatorConfig::default().with_rate_limit_scope(scope).with_request_log(false);
    Emulator::start(config).await.unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn check_tells_a_per_token_scope() {
    let emu = emulator(RateLimitScope::Token).await;
    let out = check(&emu, &["--rate-limit-scope"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("rate limit counted per access token"), "{text}");
    assert!(text.contains("sure: token B counted from 1"), "{text}");
    assert!(!text.contains(DEMO_CLIENT_SECRET));
    // The check's own token and the probe's two.
    assert_eq!(emu.counters().token.succeeded, 3);
}

#[tokio::test]
async fn check_tells_a_per_client_scope() {
    let emu = emulator(RateLimitScope::Client).await;
    let out = check(&emu, &["--rate-limit-scope"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("rate limit counted per client id"), "{text}");
    assert!(text.contains("sure: token B continued token A's count"), "{text}");
}

#[tokio::test]
async fn check_without_the_flag_does_not_probe() {
    let emu = emulator(RateLimitScope::Token).await;
    let out = check(&emu, &[]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(!stdout(&out).contains("rate-limit scope"));
    assert_eq!(emu.counters().token.succeeded, 1);
}
