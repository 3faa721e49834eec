//! The `credflow` binary against scripted servers on 127.0.0.1 (`credflow_emulator::hostile`):
//! bodies streamed to stdout as they arrive, error bodies cut, redirects refused or handed back.

use std::process::{Output, Stdio};
use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Recorded, Reply};
use tokio::io::AsyncReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_credflow");
const TOKEN: &str = r#"{"access_token":"tok-1","token_type":"bearer","expires_in":3600}"#;
const MIB: u64 = 1024 * 1024;

/// `credflow ARGS…` pointed at `server`, with a clean environment and a client id and secret.
fn command(server: &Hostile, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GENESYS_CLIENT_ID", "client-1")
        .env("GENESYS_CLIENT_SECRET", "s3cret-value")
        .args(["--token-url", &server.url("/oauth/token"), "--api-base", &server.url("/api")])
        .args(args)
        .kill_on_drop(true);
    cmd
}

async fn run(server: &Hostile, args: &[&str]) -> Output {
    tokio::time::timeout(Duration::from_secs(60), command(server, args).output())
        .await
        .expect("credflow finished")
        .expect("credflow ran")
}

/// Tokens at `/oauth/token`, the rest scripted by `api`.
fn api_server(api: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Hostile {
    Hostile::start(
        move |req| {
            if req.path() == "/oauth/token" { Reply::json(200, TOKEN) } else { api(req) }
        },
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn get_writes_a_large_body_whole() {
    let server = api_server(|_| Reply::json(200, "").repeat(b"0123456789abcdef", 50 * MIB + 7));
    let out = run(&server, &["get", "/big"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len() as u64, 50 * MIB + 7);
    assert!(out.stdout.chunks(16).all(|c| b"0123456789abcdef".starts_with(c)));
}

#[tokio::test]
async fn get_streams_the_body_as_it_arrives() {
    // The first MiB, then nothing: only a command that writes what it has can show it.
    let server = api_server(|_| Reply::json(200, "").repeat(b"x", 50 * MIB).stall_after(MIB));
    let mut child = command(&server, &["get", "/slow"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        while seen < MIB {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "stdout closed after {seen} bytes");
            seen += n as u64;
        }
    })
    .await;
    assert!(first.is_ok(), "{seen} bytes on stdout while the server held the rest back");
    assert_eq!(seen, MIB);
    assert!(child.try_wait().unwrap().is_none(), "still waiting for the rest");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn an_error_body_is_cut_and_says_so() {
    let server = api_server(|_| Reply::json(404, "").repeat(b"e", MIB));
    let out = run(&server, &["get", "/missing"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(out.stdout.len(), 65_536);
    assert!(stderr.contains("HTTP 404") && stderr.contains("body cut at 65536 bytes"), "{stderr}");
}

/// An error body that echoes the token where the 64 KiB cut falls inside it (after four of its
/// bytes): they are masked too (a search for whole occurrences left them).
#[tokio::test]
async fn an_echoed_token_cut_by_the_error_bodys_limit_is_masked() {
    let server = api_server(|req| {
        let token = req.header("authorization").unwrap_or_default().trim_start_matches("Bearer ");
        let pad = "x".repeat(64 * 1024 - 4);
        Reply::json(400, &format!("{pad}{token} was refused"))
    });
    let out = run(&server, &["get", "/echo"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("tok"), "{}", &stdout[stdout.len().saturating_sub(20)..]);
    assert!(stdout.ends_with("[redacted]"), "{}", &stdout[stdout.len().saturating_sub(20)..]);
}

#[tokio::test]
async fn a_token_redirect_exits_2_naming_the_status_and_origin_only() {
    let thief = Hostile::start(|_| Reply::json(200, TOKEN));
    let location = format!("{}/oauth/token?steal=1", thief.url(""));
    let server = Hostile::start(move |_| Reply::status(307).header("Location", &location));
    for auth in ["basic", "post", "jwt"] {
        let out = run(&server, &["--auth-method", auth, "token"]).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{auth}: {stderr}");
        assert!(out.stdout.is_empty(), "{auth}: a token was printed");
        assert!(stderr.contains("HTTP 307"), "{stderr}");
        assert!(stderr.contains(&format!("redirected to http://{}", thief.addr())), "{stderr}");
        assert!(stderr.contains("never follow redirects"), "{stderr}");
        assert!(!stderr.contains("steal") && !stderr.contains("s3cret"), "{stderr}");
    }
    assert!(thief.requests().is_empty(), "contacted: {:?}", thief.requests());
    assert_eq!(server.requests_to("/oauth/token"), 3);
}

#[tokio::test]
async fn an_api_redirect_elsewhere_is_handed_back_not_followed() {
    let other = Hostile::start(|_| Reply::json(200, r#"{"stolen":true}"#));
    let location = format!("{}/files/1?sig=abc", other.url(""));
    let server = api_server(move |_| Reply::status(303).header("Location", &location));
    let out = run(&server, &["get", "/download"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HTTP 303"), "{stderr}");
    assert!(
        stderr.contains(&format!("redirected to:  http://{} (not followed", other.addr())),
        "{stderr}"
    );
    assert!(!stderr.contains("sig=abc"), "{stderr}");
    assert!(other.requests().is_empty(), "contacted: {:?}", other.requests());
}
