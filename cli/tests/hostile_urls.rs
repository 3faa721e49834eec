//! The `credflow` binary with URLs that must not receive secrets: plain `http` to a host that is
//! not loopback (exit 2, at once, naming the URL and `--allow-insecure-http`), and userinfo
//! (exit 2, never repeated, by `check` either).
//!
//! Nothing here contacts a host that is not loopback: refused hosts are under `.invalid`
//! (RFC 6761), and the opt-in is exercised with `127.1`, a spelling of 127.0.0.1 that the core
//! does not vouch for but reqwest reaches, where a scripted server listens.

use std::process::{Command, Output};

use credflow_emulator::hostile::{Hostile, Reply};

const BIN: &str = env!("CARGO_BIN_EXE_credflow");

/// Runs `credflow args…` with a clean environment and demo credentials.
fn credflow(args: &[&str]) -> Output {
    Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GENESYS_CLIENT_ID", "client")
        .env("GENESYS_CLIENT_SECRET", "s3cret")
        .args(args)
        .output()
        .expect("credflow ran")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A token endpoint, and a `HEAD /api/v2/tokens/me` that accepts the token.
fn server() -> Hostile {
    Hostile::start(|req| match req.path() {
        "/oauth/token" => {
            Reply::json(200, r#"{"access_token":"t0ken","token_type":"bearer","expires_in":3600}"#)
        }
        "/api/v2/tokens/me" => Reply::status(200),
        _ => Reply::status(404),
    })
}

#[test]
fn a_plain_http_token_url_off_the_machine_exits_2_with_a_clear_message() {
    let out = credflow(&[
        "--token-url",
        "http://auth.example.invalid/oauth/token",
        "--api-base",
        "https://api.example.invalid",
        "token",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--token-url \"http://auth.example.invalid/oauth/token\"")
            && stderr.contains("clear text")
            && stderr.contains("--allow-insecure-http"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_plain_http_api_base_off_the_machine_exits_2_before_any_token_request() {
    let server = server();
    let out = credflow(&[
        "--token-url",
        &server.url("/oauth/token"),
        "--api-base",
        "http://api.example.invalid",
        "get",
        "/api/v2/routing/queues",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--api-base \"http://api.example.invalid\""), "{}", text(&out));
    assert!(server.requests().is_empty(), "the client credentials were not sent");
}

#[test]
fn userinfo_exits_2_and_is_never_repeated() {
    for (token_url, api_base) in [
        ("http://alice:pw@127.0.0.1:1/oauth/token", "http://127.0.0.1:1"),
        ("http://127.0.0.1:1/oauth/token", "http://alice:pw@127.0.0.1:1"),
        // A `/` in the password ends the authority early: refused as a bad port, still masked.
        ("http://alice:p/w@127.0.0.1:1/oauth/token", "http://127.0.0.1:1"),
        // So do a `#` and a `?`: the URL was shown whole.
        ("http://alice:p#w@127.0.0.1:1/oauth/token", "http://127.0.0.1:1"),
        ("http://alice:p?w@127.0.0.1:1/oauth/token", "http://127.0.0.1:1"),
    ] {
        for command in ["token", "check"] {
            let out = credflow(&["--token-url", token_url, "--api-base", api_base, command]);
            let all = text(&out);
            assert_eq!(out.status.code(), Some(2), "{command}: {all}");
            assert!(all.contains("***@127.0.0.1:1"), "{command}: {all}");
            assert!(!all.contains("pw") && !all.contains("alice"), "{command}: {all}");
            assert!(!all.contains("p#w") && !all.contains("p?w"), "{command}: {all}");
            if !token_url.contains("p/w")
                && !token_url.contains("p#w")
                && !token_url.contains("p?w")
            {
                assert!(all.contains("user info") && all.contains("not allowed"), "{all}");
            }
        }
    }
}

#[test]
fn check_names_the_custom_server_only_once_its_urls_are_vetted() {
    let server = server();
    let out = credflow(&[
        "--token-url",
        &server.url("/oauth/token"),
        "--api-base",
        &server.url(""),
        "check",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("token {}", server.url("/oauth/token"))), "{stdout}");
    assert!(!stdout.contains("clear text"), "loopback is not flagged: {stdout}");
}

#[test]
fn allow_insecure_http_sends_and_warns_and_check_flags_it() {
    let server = server();
    let port = server.addr().port();
    let token_url = format!("http://127.1:{port}/oauth/token");
    let api_base = format!("http://127.1:{port}");
    let args = ["--token-url", token_url.as_str(), "--api-base", api_base.as_str()];

    let refused = credflow(&[&args[..], &["token"]].concat());
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(server.requests().is_empty(), "refused before connecting");

    let out = credflow(&[&args[..], &["--allow-insecure-http", "token"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t0ken");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains(&token_url) && stderr.contains("clear text"),
        "{stderr}"
    );
    assert_eq!(server.requests_to("/oauth/token"), 1);

    let out = credflow(&[&args[..], &["--allow-insecure-http", "check"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("clear text"), "{}", text(&out));
}
