//! Shared by the `credflow proxy` tests: the proxy as a child process on 127.0.0.1 (an
//! ephemeral port, read from its first line of output), and a plain HTTP client for it.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_credflow");

/// A running `credflow proxy`, killed when dropped.
pub(crate) struct Proxy {
    pub(crate) child: Child,
    /// `http://127.0.0.1:PORT`
    pub(crate) base: String,
    pub(crate) stderr: tokio::task::JoinHandle<String>,
}

impl Proxy {
    /// Starts `credflow proxy --listen 127.0.0.1:0 ARGS` for the token URL and API base, with
    /// the client's credentials in its environment (and nothing else of the test's).
    pub(crate) async fn start(
        token_url: &str,
        api_base: &str,
        id: &str,
        secret: &str,
        args: &[&str],
    ) -> Proxy {
        let log = "credflow::proxy=debug,credflow_reqwest=info";
        Proxy::start_logging(token_url, api_base, id, secret, args, log).await
    }

    /// [`Proxy::start`] with `log` as its log filter (`CREDFLOW_LOG`).
    pub(crate) async fn start_logging(
        token_url: &str,
        api_base: &str,
        id: &str,
        secret: &str,
        args: &[&str],
        log: &str,
    ) -> Proxy {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GENESYS_CLIENT_ID", id)
            .env("GENESYS_CLIENT_SECRET", secret)
            .env("CREDFLOW_LOG", log)
            .args([
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--token-url",
                token_url,
                "--api-base",
                api_base,
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("credflow proxy started");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the proxy printed its address within 20 s")
            .unwrap()
            .expect("a first line");
        let base = first
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        let stderr = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        Proxy { child, base, stderr }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits (at most 10 s) until `/healthz` says a token is held.
    pub(crate) async fn ready(&self, http: &reqwest::Client) {
        for _ in 0..200 {
            if let Ok(r) = http.get(self.url("/healthz")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the proxy held no token after 10 s");
    }

    pub(crate) fn sigterm(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the exit (at most 30 s): the exit code and everything it logged.
    pub(crate) async fn exit(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the proxy exited within 30 s")
            .unwrap();
        let logs = self.stderr.await.unwrap_or_default();
        (status.code(), logs)
    }
}

/// An HTTP client for the proxy (plain HTTP to loopback; no proxy from the environment).
pub(crate) fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// [`http`] that follows no redirect: the proxy's 3xx as it answered it.
pub(crate) fn http_no_redirects() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Runs `credflow ARGS` with the demo credentials, for commands that exit (usage errors).
pub(crate) async fn credflow(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.envs(env.iter().copied()).args(args).stdin(Stdio::null()).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("credflow finished within 30 s")
        .unwrap()
}

/// Fleet mode: starts two proxies with `args` (their `--redis` and key) against the emulator,
/// one after the other, and checks that both forward a request with the one token the fleet
/// fetched (the second took the first's from the store). Returns them, still running.
pub(crate) async fn two_proxies_share_one_token(
    emu: &credflow_emulator::EmulatorHandle,
    args: &[&str],
) -> (Proxy, Proxy) {
    use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET};
    let (token_url, api_base) = (emu.token_url(), emu.api_base());
    let start = || Proxy::start(&token_url, &api_base, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, args);
    let http = http();
    let first = start().await;
    first.ready(&http).await;
    let second = start().await;
    second.ready(&http).await;
    for proxy in [&first, &second] {
        let response = http.get(proxy.url("/api/v2/routing/queues")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(emu.counters().token.requests, 1, "the second proxy took the fleet's token");
    assert_eq!(emu.counters().api.unauthorized, 0);
    (first, second)
}
