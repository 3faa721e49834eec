//! HTTPS from the command line: `credflow emulator --tls` writes its test CA and says where,
//! and `--ca-file` makes the other commands trust it.

use std::process::Stdio;
use std::time::Duration;

use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_credflow");

async fn credflow(args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GENESYS_CLIENT_ID", DEMO_CLIENT_ID)
        .env("GENESYS_CLIENT_SECRET", DEMO_CLIENT_SECRET)
        .args(args);
    tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.unwrap().unwrap()
}

#[tokio::test]
async fn ca_file_trusts_the_emulators_test_ca_and_without_it_the_server_is_refused() {
    let emu = Emulator::start(EmulatorConfig::default().with_tls(true)).await.unwrap();
    let pem = std::env::temp_dir().join(format!("credflow-cli-tls-{}.pem", std::process::id()));
    std::fs::write(&pem, emu.ca_pem().unwrap()).unwrap();
    let (token_url, api_base) = (emu.token_url(), emu.api_base());
    let target = ["--token-url", &token_url, "--api-base", &api_base];

    let ca = ["--ca-file", pem.to_str().unwrap()];
    let out = credflow(&[&target[..], &ca, &["request", "/api/v2/routing/queues"]].concat()).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("entities"));

    let out = credflow(&[&target[..], &["token"]].concat()).await;
    assert_ne!(out.status.code(), Some(0));
    let counters = emu.counters();
    assert_eq!((counters.token.succeeded, counters.api.requests), (1, 1));

    let missing = ["--ca-file", "/nonexistent/credflow-ca.pem"];
    let out = credflow(&[&target[..], &missing, &["token"]].concat()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("credflow-ca.pem"));
    std::fs::remove_file(&pem).unwrap();
}

#[tokio::test]
async fn emulator_tls_prints_where_its_ca_is_and_serves_https() {
    let mut child = tokio::process::Command::new(BIN)
        .args(["emulator", "--tls", "--port", "0", "--quiet"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut base, mut ca) = (None, None);
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("credflow-emulator listening on ") {
                base = rest.split_whitespace().next().map(str::to_owned);
            }
            if let Some(rest) = line.trim().strip_prefix("TLS: trust the test CA in ") {
                ca = rest.split_whitespace().next().map(str::to_owned);
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.unwrap();
    let (base, ca) = (base.unwrap(), ca.unwrap());
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    assert!(std::fs::read_to_string(&ca).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    let token_url = format!("{base}/oauth/token");
    let out = credflow(&["--token-url", &token_url, "--ca-file", &ca, "token"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    child.kill().await.unwrap();
    let _ = std::fs::remove_file(&ca);
}

/// The test CA goes to a new file each time, never to one already there (a predictable name in
/// a shared temporary directory could hold another user's link or CA).
#[tokio::test]
async fn the_test_ca_goes_to_a_new_file_each_time() {
    let emu = Emulator::start(EmulatorConfig::default().with_tls(true)).await.unwrap();
    let first = credflow_emulator::write_ca_pem(&emu).unwrap().unwrap();
    let second = credflow_emulator::write_ca_pem(&emu).unwrap().unwrap();
    assert_ne!(first, second);
    for path in [&first, &second] {
        assert_eq!(std::fs::read_to_string(path).unwrap(), emu.ca_pem().unwrap());
        std::fs::remove_file(path).unwrap();
    }
}
