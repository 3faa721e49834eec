//! The `credflow` command against a misbehaving server on 127.0.0.1: it names what was wrong
//! with the last token response (status, failure, correlation id) with the exit code of that
//! failure's class instead of a timeout, fails fast on a long `Retry-After`, and never prints the
//! client's secret, Basic value, assertion or token that a server echoes back, at any verbosity.

use std::process::Output;
use std::time::{Duration, Instant};

use credflow_emulator::hostile::{Hostile, Reply, UNUSABLE_TOKEN_ANSWERS};

const BIN: &str = env!("CARGO_BIN_EXE_credflow");
const ID: &str = "c";
const SECRET: &str = "s3cr3t-Value-0123456789";
const TOKEN: &str = "tok-XYZ-0123456789abcdef";

/// Runs `credflow` with a clean environment, the test credentials and `server` as target.
async fn credflow(server: &Hostile, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GENESYS_CLIENT_ID", ID)
        .env("GENESYS_CLIENT_SECRET", SECRET)
        .args(["--token-url", &server.url("/oauth/token"), "--api-base", &server.url("")])
        .args(args);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("credflow finished")
        .expect("credflow ran")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What the client sent the server that it must never print: the Basic value and the
/// assertion of every token request, and the secret and token.
fn sent_credentials(server: &Hostile) -> Vec<String> {
    let mut values = vec![SECRET.to_owned(), TOKEN.to_owned()];
    for req in server.requests().iter().filter(|r| r.path() == "/oauth/token") {
        if let Some(basic) = req.header("authorization") {
            values.push(basic.trim_start_matches("Basic ").to_owned());
        }
        values.push(req.form_value("client_assertion"));
    }
    values.retain(|v| !v.is_empty());
    values
}

/// Neither output of `out` holds any of `values`.
fn assert_masked(what: &str, out: &Output, values: &[String]) {
    let shown = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    for value in values {
        assert!(!shown.contains(value.as_str()), "{what}: {value:?} printed in:\n{shown}");
    }
}

/// Each answer that is not a usable token: `credflow token` names it with its status and
/// correlation id and exits 2 (a setup to fix), not 5 after its 20 s wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_response_is_named_and_exits_2() {
    // What the diagnosis of each of UNUSABLE_TOKEN_ANSWERS names.
    let names =
        ["malformed", "text/html", "no access_token", r#""mac""#, "not allowed in an HTTP header"];
    let cases = UNUSABLE_TOKEN_ANSWERS.into_iter().zip(names).map(|((c, b), n)| (c, b, n));
    let runs: Vec<_> = cases
        .into_iter()
        .enumerate()
        .map(|(i, (content_type, body, names))| {
            tokio::spawn(async move {
                let correlation = format!("corr-{i}");
                let reply_id = correlation.clone();
                let server = Hostile::start(move |_| {
                    Reply::status(200)
                        .header("Content-Type", content_type)
                        .header("ININ-Correlation-Id", &reply_id)
                        .body(body.as_bytes())
                });
                let out = credflow(&server, &["token"]).await;
                (body, names, correlation, out)
            })
        })
        .collect();
    for run in runs {
        let (body, names, correlation, out) = run.await.unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {err}");
        assert!(err.contains(names), "{body}: {err}");
        assert!(err.contains("status:         HTTP 200"), "{body}: {err}");
        assert!(err.contains(&format!("correlation id: {correlation}")), "{body}: {err}");
        assert!(!err.contains("within") && !err.contains("did not answer"), "{body}: {err}");
        assert!(out.stdout.is_empty(), "{body}: no token printed");
    }
}

/// 429 and 503 with `Retry-After: 3600` from the token endpoint: exit 5 at once, naming the
/// server's wait, not after the 20 s token wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_retry_after_from_the_token_endpoint_exits_5_at_once() {
    // `get` too: it sent its request without a deadline and slept out the wait (cut to ten
    // minutes), then again, until the breaker tripped some twenty minutes later.
    for args in [&["token"][..], &["get", "/api/v2/users/me"]] {
        for status in [429u16, 503] {
            let server = Hostile::start(move |_| {
                Reply::status(status)
                    .header("Retry-After", "3600")
                    .header("ININ-Correlation-Id", "c-ra")
            });
            let started = Instant::now();
            let out = credflow(&server, args).await;
            // A generous bound, well below what the commands wait for a token.
            assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(5), "{args:?}: {err}");
            assert!(err.contains("3600 s") && err.contains(&format!("HTTP {status}")), "{err}");
            assert!(err.contains("correlation id: c-ra"), "{err}");
            assert_eq!(server.requests_to("/oauth/token"), 1);
        }
    }
}

/// `check`'s API call under the same bound: a token held, the API refusing it (401), and the
/// token endpoint then answering `Retry-After: 3600`. It slept the wait out (cut to ten
/// minutes) and retried until the breaker tripped; it now fails at once, naming the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_gives_up_at_once_on_a_long_retry_after_after_a_401() {
    let granted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = Hostile::start(move |req| {
        if req.path() != "/oauth/token" {
            return Reply::json(401, r#"{"message":"revoked","code":"bad.credentials"}"#);
        }
        if granted.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Reply::status(503).header("Retry-After", "3600");
        }
        let body =
            format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3600}}"#);
        Reply::json(200, &body)
    });
    let started = Instant::now();
    let out = credflow(&server, &["check"]).await;
    // A generous bound, far below the ten minutes it slept before.
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    let err = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("3600 s"), "{err}");
}

/// A token endpoint echoing what it was sent (the secret, the Basic value, the assertion) in its
/// `error_description`, a Genesys `message`, `ININ-Correlation-Id` and `WWW-Authenticate`:
/// `token` and `check` never print them, at the default verbosity and at `-vv`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_credentials_are_never_printed_by_token_or_check() {
    for auth in ["basic", "post", "jwt"] {
        for field in ["error_description", "message"] {
            let server = Hostile::start(move |req| Reply::echoing_credentials(req, field, SECRET));
            for args in [&["token"][..], &["-vv", "token"], &["check"], &["-vv", "check"]] {
                let args = [&["--auth-method", auth][..], args].concat();
                let out = credflow(&server, &args).await;
                assert_eq!(out.status.code(), Some(3), "{args:?}: {}", text(&out.stderr));
                assert_masked(&format!("{args:?} {field}"), &out, &sent_credentials(&server));
            }
            if auth == "jwt" {
                let assertion = server.requests()[0].form_value("client_assertion");
                assert!(assertion.len() > 100 && assertion.len() < 256, "{assertion}");
            }
        }
    }
}

/// An API that echoes the token (and the secret, the Basic value, the assertion) in its 401
/// challenge and correlation id, a 403's challenge, and a 400's headers and body: `get` never
/// prints them, at the default verbosity and at `-vv` (which prints the headers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_echoing_credentials_never_gets_them_printed() {
    for (status, exit) in [(401u16, 3), (403, 4), (400, 1)] {
        let server = Hostile::start(move |req| {
            if req.path() == "/oauth/token" {
                let body = format!(
                    r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3600}}"#
                );
                return Reply::json(200, &body);
            }
            let sent = req.header("authorization").unwrap_or("").trim_start_matches("Bearer ");
            let challenge = match status {
                401 => format!(r#"Bearer error="invalid_token", error_description="{sent}""#),
                _ => format!(
                    r#"Bearer error="insufficient_scope", scope="{sent}", error_description="{SECRET}""#
                ),
            };
            let body =
                format!(r#"{{"message":"{sent} {SECRET}","code":"bad.token","status":{status}}}"#);
            Reply::json(status, &body)
                .header("ININ-Correlation-Id", sent)
                .header("WWW-Authenticate", &challenge)
                .header("X-Echo", &format!("{sent} {SECRET}"))
        });
        for auth in ["basic", "jwt"] {
            for verbosity in [&[][..], &["-vv"]] {
                let args =
                    [&["--auth-method", auth], verbosity, &["get", "/api/v2/users/me"]].concat();
                let out = credflow(&server, &args).await;
                assert_eq!(out.status.code(), Some(exit), "{args:?}: {}", text(&out.stderr));
                assert_masked(&format!("{status} {args:?}"), &out, &sent_credentials(&server));
                if verbosity.is_empty() && status == 400 {
                    assert!(
                        text(&out.stdout).contains("[redacted] [redacted]"),
                        "{}",
                        text(&out.stdout)
                    );
                }
            }
        }
    }
}

/// The same for the assertion: an API answering with the assertion it saw at the token
/// endpoint (in a header and the body of a 404) does not get it printed at `-vv`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_assertion_is_never_printed() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let remember = std::sync::Arc::clone(&seen);
    let server = Hostile::start(move |req| {
        if req.path() == "/oauth/token" {
            *remember.lock().unwrap() = req.form_value("client_assertion");
            let body =
                format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3600}}"#);
            return Reply::json(200, &body);
        }
        let assertion = remember.lock().unwrap().clone();
        Reply::json(404, &format!(r#"{{"message":"{assertion}"}}"#)).header("X-Echo", &assertion)
    });
    let out = credflow(&server, &["--auth-method", "jwt", "-vv", "get", "/api/v2/nothing"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let assertion = seen.lock().unwrap().clone();
    assert!(assertion.len() > 100, "{assertion}");
    assert_masked("404", &out, &[assertion]);
    assert!(text(&out.stderr).contains("x-echo: [redacted]"), "{}", text(&out.stderr));
}

/// An API error body with terminal control sequences (OSC 52 to set the clipboard, a screen
/// clear, BEL, an 8-bit CSI, a lone carriage return to write over the line): `get` prints the
/// body for a human to read, every such character shown as U+FFFD, the text around kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_body_cannot_drive_the_terminal() {
    let server = Hostile::start(|req| match req.path() {
        "/oauth/token" => {
            Reply::json(200, r#"{"access_token":"t0k","token_type":"bearer","expires_in":3600}"#)
        }
        _ => Reply::json(
            400,
            "bad\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[2J\u{1b}[H\u{9b}31m\rall checks passed\r\nend",
        ),
    });
    let out = credflow(&server, &["get", "/api/v2/things"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let body = &out.stdout;
    for bad in [&b"\x1b"[..], b"\x07", b"\xc2\x9b"] {
        assert!(!body.windows(bad.len()).any(|w| w == bad), "{bad:?} in {:?}", text(body));
    }
    let shown = text(body);
    assert!(!shown.replace("\r\n", "").contains('\r'), "{shown:?}");
    assert!(
        shown.starts_with("bad\u{fffd}]52;c;ZXZpbA==") && shown.contains("\r\nend"),
        "{shown:?}"
    );
}

/// A token refused with a 401 is replaced, and the API's next answer, a 403, echoes the
/// replaced one in its correlation id and its message: `credflow get` masked only the token it
/// held when the 403 came, so the first one was printed in its error text. So did `-v`'s line
/// for a 429 (the session's event, masked with the token it held only).
#[tokio::test]
async fn a_replaced_token_echoed_in_a_refusal_is_masked() {
    const FIRST: &str = "tok-first-0123456789abcdef";
    let runs = [
        (403, &["get", "/api/v2/users/me"][..], 4),
        (403, &["check", "--probe", "/api/v2/users/me"], 4),
        // A 429 asking for an hour: given up at once; `-v` prints the event with its id.
        (429, &["-v", "get", "/api/v2/users/me"], 5),
    ];
    for (status, args, code) in runs {
        let server = first_refused_then_answered_echoing_it(FIRST, status);
        let out = credflow(&server, args).await;
        let mut values = sent_credentials(&server);
        values.push(FIRST.to_owned());
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out.stderr));
        assert_masked(&format!("{args:?} after a 401"), &out, &values);
        let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(shown.contains("[redacted]"), "{args:?}: {shown}");
    }
}

/// Grants `first`, then [`TOKEN`]; the API refuses `first` (401) and answers any other token
/// with `status` (403, or 429 asking for an hour), echoing `first` in its correlation id and
/// message.
fn first_refused_then_answered_echoing_it(first: &'static str, status: u16) -> Hostile {
    let issued = std::sync::atomic::AtomicUsize::new(0);
    Hostile::start(move |req| {
        if req.path() == "/oauth/token" {
            let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let token = if n == 0 { first } else { TOKEN };
            return Reply::json(
                200,
                &format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#),
            );
        }
        if req.header("authorization") == Some(&format!("Bearer {first}")) {
            return Reply::json(401, r#"{"code":"bad.credentials","status":401}"#);
        }
        let body = format!(
            r#"{{"code":"missing.permissions","status":{status},"message":"not with {first}"}}"#
        );
        Reply::json(status, &body)
            .header("ININ-Correlation-Id", first)
            .header("Retry-After", "3600")
    })
}
