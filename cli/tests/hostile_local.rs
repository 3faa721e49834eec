//! The `credflow` binary against a hostile local setup: secret files that are not files (a FIFO
//! with no writer, `/dev/zero`, a directory, 10 MB), a secret given twice, standard output or
//! error closed before anything is written, and a token URL without an API base. Servers are
//! the emulator on 127.0.0.1. Unix only: FIFOs, `/dev/zero`, `SIGPIPE`'s exit code.
#![cfg(unix)]

use std::process::{Output, Stdio};
use std::time::Duration;

use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use tokio::io::AsyncBufReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_credflow");

/// What becomes of one of the child's output streams.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// Read by the test.
    Captured,
    /// A pipe whose read end is closed before the child starts: every write fails with `EPIPE`.
    Closed,
}

impl Stream {
    fn stdio(self) -> Stdio {
        match self {
            Stream::Captured => Stdio::piped(),
            Stream::Closed => {
                let (reader, writer) = std::io::pipe().unwrap();
                drop(reader);
                writer.into()
            }
        }
    }
}

/// Runs `credflow args` with a clean environment plus `env`; a child that hangs fails the test
/// (and is killed) after 30 s.
async fn credflow(env: &[(&str, &str)], args: &[&str], stdout: Stream, stderr: Stream) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.envs(env.iter().copied()).args(args).stdin(Stdio::null());
    cmd.stdout(stdout.stdio()).stderr(stderr.stdio()).kill_on_drop(true);
    // Not `output()`: it would replace both streams with captured pipes.
    let child = cmd.spawn().expect("credflow ran");
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("credflow finished within 30 s")
        .expect("credflow's output")
}

async fn captured(env: &[(&str, &str)], args: &[&str]) -> Output {
    credflow(env, args, Stream::Captured, Stream::Captured).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const DEMO: [(&str, &str); 2] =
    [("GENESYS_CLIENT_ID", DEMO_CLIENT_ID), ("GENESYS_CLIENT_SECRET", DEMO_CLIENT_SECRET)];

async fn emulator() -> credflow_emulator::EmulatorHandle {
    Emulator::start(EmulatorConfig::default().with_request_log(false)).await.unwrap()
}

/// A scratch directory of this test, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("credflow-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- Secret files ----------------------------------------------------------------------------

#[tokio::test]
async fn secret_files_that_are_not_secrets_are_refused_at_once() {
    let emu = emulator().await;
    let dir = Scratch::new("kinds");
    let fifo = dir.path("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let huge = dir.path("huge");
    std::fs::write(&huge, vec![b'a'; 10 << 20]).unwrap();
    let (token_url, api_base) = (emu.token_url(), emu.api_base());
    for (path, expected) in [
        // Opening it would wait for a writer that never comes.
        (fifo.as_str(), "is a FIFO"),
        // Reading it would never end.
        ("/dev/zero", "is a character device"),
        (dir.0.to_str().unwrap(), "is a directory"),
        // Read in full before, however large.
        (huge.as_str(), "larger than 4096 bytes"),
    ] {
        let env = [("GENESYS_CLIENT_ID", DEMO_CLIENT_ID), ("GENESYS_CLIENT_SECRET_FILE", path)];
        let out =
            captured(&env, &["--token-url", &token_url, "--api-base", &api_base, "token"]).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {err}");
        assert!(
            err.contains(&format!("GENESYS_CLIENT_SECRET_FILE={path}")) && err.contains(expected),
            "{path}: {err}"
        );
        let out = captured(
            &[("GENESYS_CLIENT_ID", DEMO_CLIENT_ID)],
            &[
                "--token-url",
                &token_url,
                "--api-base",
                &api_base,
                "--client-secret-file",
                path,
                "token",
            ],
        )
        .await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {err}");
        assert!(err.contains(&format!("--client-secret-file={path}")), "{path}: {err}");
    }
    assert_eq!(emu.counters().token.requests, 0);
}

#[tokio::test]
async fn a_secret_file_loses_exactly_one_trailing_line_break() {
    let emu = emulator().await;
    let dir = Scratch::new("trim");
    let (token_url, api_base) = (emu.token_url(), emu.api_base());
    for (name, content, code) in [
        ("lf", format!("{DEMO_CLIENT_SECRET}\n"), 0),
        ("crlf", format!("{DEMO_CLIENT_SECRET}\r\n"), 0),
        // A second line break would be part of the secret: refused, before any request.
        ("lflf", format!("{DEMO_CLIENT_SECRET}\n\n"), 2),
    ] {
        let path = dir.path(name);
        std::fs::write(&path, content).unwrap();
        let out = captured(
            &[("GENESYS_CLIENT_ID", DEMO_CLIENT_ID)],
            &[
                "--token-url",
                &token_url,
                "--api-base",
                &api_base,
                "--client-secret-file",
                &path,
                "token",
            ],
        )
        .await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{name}: {err}");
        assert!(!err.contains(DEMO_CLIENT_SECRET), "{err}");
        if code == 2 {
            assert!(err.contains("only one trailing line break"), "{name}: {err}");
        }
    }
    assert_eq!(emu.counters().token.requests, 2);
}

#[tokio::test]
async fn a_secret_given_twice_is_refused_naming_both() {
    let emu = emulator().await;
    let dir = Scratch::new("twice");
    let file = dir.path("secret");
    std::fs::write(&file, "from-the-file\n").unwrap();
    let (token_url, api_base) = (emu.token_url(), emu.api_base());
    let both_variables = [
        ("GENESYS_CLIENT_ID", DEMO_CLIENT_ID),
        ("GENESYS_CLIENT_SECRET", DEMO_CLIENT_SECRET),
        ("GENESYS_CLIENT_SECRET_FILE", file.as_str()),
    ];
    let out =
        captured(&both_variables, &["--token-url", &token_url, "--api-base", &api_base, "token"])
            .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("GENESYS_CLIENT_SECRET and GENESYS_CLIENT_SECRET_FILE"), "{err}");
    assert!(!err.contains(DEMO_CLIENT_SECRET) && !err.contains("from-the-file"), "{err}");

    let out = captured(
        &DEMO,
        &[
            "--token-url",
            &token_url,
            "--api-base",
            &api_base,
            "--client-secret-file",
            &file,
            "token",
        ],
    )
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("GENESYS_CLIENT_SECRET and --client-secret-file"), "{err}");
    assert!(!err.contains(DEMO_CLIENT_SECRET) && !err.contains("from-the-file"), "{err}");
    assert_eq!(emu.counters().token.requests, 0);
}

// ---- A token URL alone -----------------------------------------------------------------------

#[tokio::test]
async fn token_needs_only_a_token_url() {
    let emu = emulator().await;
    let token_url = emu.token_url();
    let out = captured(&DEMO, &["--token-url", &token_url, "token"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let token = text(&out.stdout);
    assert!(!token.trim().is_empty() && !token.trim().contains(' '), "{token}");

    let out = captured(&DEMO, &["--token-url", &token_url, "token", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["token_url"], token_url.as_str());

    // The same from the environment.
    let mut env = DEMO.to_vec();
    env.push(("CREDFLOW_TOKEN_URL", &token_url));
    let out = captured(&env, &["token"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(emu.counters().token.requests, 3);
}

#[tokio::test]
async fn api_commands_name_the_missing_url() {
    let emu = emulator().await;
    let token_url = emu.token_url();
    let api_base = emu.api_base();
    for args in [
        vec!["--token-url", &token_url, "get", "/api/v2/routing/queues"],
        vec!["--token-url", &token_url, "request", "GET", "/api/v2/routing/queues"],
        vec!["--token-url", &token_url, "check"],
    ] {
        let out = captured(&DEMO, &args).await;
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {all}");
        assert!(all.contains("--token-url without --api-base"), "{args:?}: {all}");
    }
    for args in [vec!["--api-base", &api_base, "token"], vec!["--api-base", &api_base, "get", "/x"]]
    {
        let out = captured(&DEMO, &args).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--api-base without --token-url"), "{args:?}: {err}");
    }
    assert_eq!(emu.counters().token.requests, 0);
}

// ---- Closed standard output or error -----------------------------------------------------------

/// Exit code after a write to a closed pipe (a shell's code for a process `SIGPIPE` ended).
const BROKEN_PIPE: i32 = 141;

#[tokio::test]
async fn a_closed_stdout_ends_output_quietly_with_141() {
    let emu = emulator().await;
    let (token_url, api_base) = (emu.token_url(), emu.api_base());
    let target = ["--token-url", token_url.as_str(), "--api-base", api_base.as_str()];
    for command in [
        &["get", "/api/v2/routing/queues"][..],
        &["token"],
        &["token", "--json"],
        &["check", "--probe", "/api/v2/routing/queues"],
    ] {
        let args = [&target[..], command].concat();
        let out = credflow(&DEMO, &args, Stream::Closed, Stream::Captured).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(BROKEN_PIPE), "{command:?}: {err}");
        assert!(err.is_empty(), "{command:?}: not quiet: {err}");
    }
    // Help that never arrived is not a success either.
    let out = credflow(&[], &["--help"], Stream::Closed, Stream::Captured).await;
    assert_eq!(out.status.code(), Some(BROKEN_PIPE), "{}", text(&out.stderr));
}

/// `/dev/full`: every write fails with "no space left on device".
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_full_stdout_is_an_error_not_a_success() {
    let emu = emulator().await;
    let (token_url, api_base) = (emu.token_url(), emu.api_base());
    let target = ["--token-url", token_url.as_str(), "--api-base", api_base.as_str()];
    for command in [&["get", "/api/v2/routing/queues"][..], &["token"]] {
        let args = [&target[..], command].concat();
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.env_clear().envs(DEMO).args(&args).stdin(Stdio::null()).kill_on_drop(true);
        cmd.stdout(std::fs::File::create("/dev/full").unwrap()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("credflow finished within 30 s")
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {err}");
        assert!(err.contains("cannot write to standard output"), "{command:?}: {err}");
        assert!(!err.contains("panicked"), "{command:?}: {err}");
    }
}

#[tokio::test]
async fn a_closed_stderr_ends_diagnostics_with_141() {
    let emu = emulator().await;
    let (token_url, api_base) = (emu.token_url(), emu.api_base());
    let target = ["--token-url", token_url.as_str(), "--api-base", api_base.as_str()];
    // -v: response headers and the timeline; CREDFLOW_LOG: the library's log lines.
    let verbose = [&target[..], &["-v", "get", "/api/v2/routing/queues"]].concat();
    let out = credflow(&DEMO, &verbose, Stream::Captured, Stream::Closed).await;
    assert_eq!(out.status.code(), Some(BROKEN_PIPE));
    let mut logging = DEMO.to_vec();
    logging.push(("CREDFLOW_LOG", "debug"));
    let token = [&target[..], &["token"]].concat();
    let out = credflow(&logging, &token, Stream::Captured, Stream::Closed).await;
    assert_eq!(out.status.code(), Some(BROKEN_PIPE));
}

#[tokio::test]
async fn an_error_on_a_closed_stderr_keeps_its_exit_code() {
    // No client id: a configuration error, exit 2, whose message cannot be written.
    let out = credflow(&[], &["token"], Stream::Captured, Stream::Closed).await;
    assert_eq!(out.status.code(), Some(2));
    let emu = emulator().await;
    let (token_url, api_base) = (emu.token_url(), emu.api_base());
    let env = [("GENESYS_CLIENT_ID", DEMO_CLIENT_ID), ("GENESYS_CLIENT_SECRET", "wrong")];
    let args = ["--token-url", &token_url, "--api-base", &api_base, "token"];
    let out = credflow(&env, &args, Stream::Captured, Stream::Closed).await;
    assert_eq!(out.status.code(), Some(3));
}

#[tokio::test]
async fn the_emulator_keeps_serving_with_a_closed_stderr() {
    // `credflow emulator` logs every request on stderr.
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .args(["emulator", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stream::Closed.stdio())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut banner = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), banner.next_line())
        .await
        .expect("banner within 30 s")
        .unwrap()
        .expect("a banner line");
    let base = first
        .split_whitespace()
        .find(|word| word.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    let (token_url, api_base) = (format!("{base}/oauth/token"), base);
    for _ in 0..3 {
        let out =
            captured(&DEMO, &["--token-url", &token_url, "--api-base", &api_base, "token"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    assert!(child.try_wait().unwrap().is_none(), "the emulator stopped");
}
