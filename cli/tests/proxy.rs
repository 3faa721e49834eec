//! `credflow proxy` against the emulator and the scripted hostile server, all on 127.0.0.1:
//! the token it attaches and the headers it strips, replayable and streamed bodies, the fast
//! 503 when credflow gives up, the local key, the bounded queue, health and metrics, masking,
//! graceful shutdown and the loopback-only default.
#![cfg(unix)]

mod proxy_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use proxy_support::{Proxy, credflow, http, http_no_redirects};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REAL_TOKEN: &str = "real-token-0123456789abcdef";

/// A hostile upstream whose token endpoint grants [`REAL_TOKEN`] and whose API routes answer
/// with `api`.
fn upstream(
    api: impl Fn(&credflow_emulator::hostile::Recorded) -> Reply + Send + Sync + 'static,
) -> Hostile {
    Hostile::start(move |req| {
        if req.path() == "/oauth/token" {
            Reply::json(
                200,
                &format!(
                    r#"{{"access_token":"{REAL_TOKEN}","token_type":"bearer","expires_in":3600}}"#
                ),
            )
        } else {
            api(req)
        }
    })
}

/// Returns once `server` has received a request for `path` (at most 2 s).
async fn forwarded(server: &Hostile, path: &str) {
    for _ in 0..100 {
        if server.requests_to(path) >= 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn proxy_to(server: &Hostile, args: &[&str]) -> Proxy {
    Proxy::start(&server.url("/oauth/token"), &server.url("/"), "id", "secret-value-1", args).await
}

async fn emulator(config: EmulatorConfig) -> credflow_emulator::EmulatorHandle {
    Emulator::start(config.with_request_log(false)).await.unwrap()
}

async fn proxy_to_emulator(emu: &credflow_emulator::EmulatorHandle, args: &[&str]) -> Proxy {
    Proxy::start(&emu.token_url(), &emu.api_base(), DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, args).await
}

#[tokio::test]
async fn forwards_with_its_own_token_and_strips_what_is_not_the_upstreams() {
    let server = upstream(|_| {
        Reply::json(200, r#"{"ok":true}"#)
            .header("ININ-Correlation-Id", "corr-42")
            .header("Keep-Alive", "timeout=5")
    });
    let proxy = proxy_to(&server, &[]).await;
    let http = http();
    // The SDK's own token request gets a placeholder, not the proxy's token.
    let token = http
        .post(proxy.url("/oauth/token"))
        .basic_auth("sdk-id", Some("sdk-secret"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    let token = json(token).await;
    let placeholder = token["access_token"].as_str().unwrap().to_owned();
    assert_ne!(placeholder, REAL_TOKEN);
    let response = http
        .get(proxy.url("/api/v2/routing/queues?pageSize=3"))
        .bearer_auth(&placeholder)
        .header("X-Credflow-Priority", "background")
        .header("Proxy-Authorization", "Basic c3B5OnNweQ==")
        .header("Connection", "x-drop-me")
        .header("X-Drop-Me", "1")
        .header("X-Keep", "1")
        .header("Accept-Encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["inin-correlation-id"], "corr-42");
    assert!(response.headers().get("keep-alive").is_none(), "hop-by-hop header passed back");
    assert_eq!(response.text().await.unwrap(), r#"{"ok":true}"#);

    let requests = server.requests();
    let api: Vec<_> = requests.iter().filter(|r| r.path() == "/api/v2/routing/queues").collect();
    assert_eq!(api.len(), 1);
    let seen = api[0];
    assert_eq!(seen.target, "/api/v2/routing/queues?pageSize=3");
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {REAL_TOKEN}").as_str()));
    for gone in ["x-credflow-priority", "proxy-authorization", "x-drop-me", "x-credflow-key"] {
        assert_eq!(seen.header(gone), None, "{gone} was forwarded");
    }
    // The client's codings are not forwarded: the upstream is asked for none.
    assert_eq!(seen.header("accept-encoding"), Some("identity"));
    assert_eq!(seen.header("x-keep"), Some("1"));
    assert_eq!(server.requests_to("/oauth/token"), 1, "one token request, the proxy's");
}

#[tokio::test]
async fn replays_a_buffered_body_after_a_429_but_sends_a_larger_one_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    // Every other request to the API is a 429 that the server did not process: a retry is
    // safe for a POST too, if its body can be sent again.
    let server = upstream(move |_| {
        if counted.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            Reply::json(429, r#"{"status":429,"code":"too.many.requests"}"#)
                .header("Retry-After", "1")
        } else {
            Reply::json(200, r#"{"done":true}"#)
        }
    });
    let proxy = proxy_to(&server, &["--max-body", "64"]).await;
    let http = http();
    let small = "x".repeat(64);
    let response = http.post(proxy.url("/api/v2/small")).body(small.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200, "the 429 was waited out and the body replayed");
    let sent: Vec<_> =
        server.requests().into_iter().filter(|r| r.path() == "/api/v2/small").collect();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|r| r.body_text() == small), "the replay carried the same body");

    let large = "y".repeat(65);
    let response = http.post(proxy.url("/api/v2/large")).body(large.clone()).send().await.unwrap();
    assert_eq!(response.status(), 429, "a streamed body is sent once; its answer goes back");
    let sent: Vec<_> =
        server.requests().into_iter().filter(|r| r.path() == "/api/v2/large").collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body_text(), large);

    // Chunked, no length: read up to the limit; beyond it, streamed (and sent once).
    calls.store(0, Ordering::SeqCst);
    let status =
        raw_chunked_post(&proxy, "/api/v2/chunked", &["a".repeat(40), "b".repeat(40)]).await;
    assert!(status.starts_with("HTTP/1.1 429"), "{status}");
    assert_eq!(server.requests().iter().filter(|r| r.path() == "/api/v2/chunked").count(), 1);
    calls.store(0, Ordering::SeqCst);
    let status = raw_chunked_post(&proxy, "/api/v2/chunked-small", &["c".repeat(20)]).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let metrics = http.get(proxy.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("credflow_proxy_streamed_bodies_total 2"), "{metrics}");
}

async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// A POST with a chunked body in `chunks`, written by hand: the status line of the answer.
async fn raw_chunked_post(proxy: &Proxy, path: &str, chunks: &[String]) -> String {
    let addr = proxy.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for chunk in chunks {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn gives_up_at_once_with_503_retry_after_and_a_genesys_body() {
    // A 429 asking for an hour: beyond the retry policy's longest wait.
    let server = upstream(|_| {
        Reply::json(429, r#"{"status":429,"code":"too.many.requests"}"#)
            .header("Retry-After", "3600")
            .header("ININ-Correlation-Id", "corr-429")
    });
    let proxy = proxy_to(&server, &[]).await;
    let http = http();
    let started = Instant::now();
    let response = http.get(proxy.url("/api/v2/routing/queues")).send().await.unwrap();
    // A hang guard, not a performance bound: waiting an hour would fail here.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(response.status(), 503);
    // Not the hour: credflow's next probe of the limit, max_wait (60 s) after the 429.
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((50..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(response.headers()["inin-correlation-id"], "corr-429");
    let body: serde_json::Value = json(response).await;
    assert_eq!(body["status"], 503);
    assert_eq!(body["code"], "credflow.rate.limited");
    assert_eq!(body["contextId"], "corr-429");
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("credflow: "), "{message}");
    // The message names the server's wait.
    assert!(message.contains("server asked to retry in 1h"), "{message}");
    assert_eq!(server.requests_to("/api/v2/routing/queues"), 1, "no retry against an hour's wait");
}

/// One 429 with an absurd `Retry-After` (999 999 999 s, some 31 years) stopped all forwarding
/// until the proxy restarted: every later request, which has the proxy's `--deadline`, failed
/// as "deadline exceeded" without being sent, so the probe that finds out whether the limit
/// was lifted never went; and the 31 years were relayed as `Retry-After`, which SDKs honour to
/// the letter. Now the proxy relays at most the time until its next probe (`--max-wait`, here
/// 3 s, after the 429), the requests before it are refused without being sent, and a client
/// that comes back when told is sent as the probe; once it succeeds, requests flow again.
#[tokio::test]
async fn an_absurd_retry_after_is_probed_and_not_relayed() {
    let limited = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let server = upstream({
        let limited = Arc::clone(&limited);
        move |_| {
            if limited.load(Ordering::SeqCst) {
                Reply::json(429, r#"{"status":429,"code":"too.many.requests"}"#)
                    .header("Retry-After", "999999999")
            } else {
                Reply::json(200, r#"{"ok":true}"#)
            }
        }
    });
    // The default --deadline (60 s) is far shorter than the hold, as any would be.
    let proxy = proxy_to(&server, &["--max-wait", "3s"]).await;
    let http = http();
    proxy.ready(&http).await;
    let path = "/api/v2/routing/queues";
    // Status, code and Retry-After of one request, within a hang guard.
    let get = || async {
        let send = http.get(proxy.url(path)).send();
        let response = tokio::time::timeout(Duration::from_secs(20), send)
            .await
            .expect("an answer within 20 s")
            .unwrap();
        let status = response.status().as_u16();
        let retry_after: Option<u64> =
            response.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
        let code = match status {
            503 => json(response).await["code"].as_str().unwrap_or_default().to_owned(),
            _ => String::new(),
        };
        (status, code, retry_after)
    };

    let (status, code, retry_after) = get().await;
    assert_eq!((status, code.as_str()), (503, "credflow.rate.limited"));
    let retry_after = retry_after.expect("Retry-After");
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}, not the server's 31 years");
    assert_eq!(server.requests_to(path), 1);
    // Before the probe is due: refused at once, not sent, told to come back when it is due.
    let (status, code, again) = get().await;
    assert_eq!((status, code.as_str()), (503, "credflow.rate.limited"));
    let again = again.expect("Retry-After");
    assert!((1..=retry_after).contains(&again), "Retry-After {again}");
    assert_eq!(server.requests_to(path), 1, "a request went out before the probe was due");

    // The limit is lifted upstream; a client that honours Retry-After comes back then.
    limited.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(again)).await;
    assert_eq!(get().await.0, 200, "the probe");
    assert_eq!(server.requests_to(path), 2);
    // Its success lifted the hold: requests flow again, at once.
    for sent in 3..=5 {
        assert_eq!(get().await.0, 200);
        assert_eq!(server.requests_to(path), sent);
    }
}

/// A line is logged for each request the proxy answers itself, but at most ten a second: a
/// local client sending a burst into a limit credflow gives up on wrote a line per request.
/// The next line written says how many were left out.
#[tokio::test]
async fn the_lines_logged_per_answered_request_are_bounded() {
    let server = upstream(|_| Reply::json(429, "{}").header("Retry-After", "3600"));
    let proxy = proxy_to(&server, &[]).await;
    let http = http();
    proxy.ready(&http).await;
    let burst: Vec<_> =
        (0..60).map(|_| tokio::spawn(http.get(proxy.url("/api/v2/limited")).send())).collect();
    for response in burst {
        assert_eq!(response.await.unwrap().unwrap().status(), 503);
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(http.get(proxy.url("/api/v2/limited")).send().await.unwrap().status(), 503);
    proxy.sigterm();
    let (_, logs) = proxy.exit().await;
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("answered by the proxy")).collect();
    // The burst may straddle a second: twenty lines at most, then the one after the pause.
    assert!(lines.len() <= 21, "{} lines:\n{logs}", lines.len());
    let left_out: u64 = lines
        .iter()
        .filter_map(|l| l.split("left_out=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(left_out + lines.len() as u64, 61, "{logs}");
}

/// Lines the log filter hides do not spend the budget: with the proxy's log at `warn`, a run of
/// requests it answers itself (logged at `info`, so not at all) leaves the next warning its
/// place, with nothing said to be left out.
#[tokio::test]
async fn lines_the_log_filter_hides_leave_the_budget_to_the_ones_it_shows() {
    let server = upstream(|req| match req.path() {
        "/api/v2/forbidden" => Reply::json(403, "{}"),
        _ => Reply::json(200, "{}").delayed(Duration::from_secs(2)),
    });
    let proxy = Proxy::start_logging(
        &server.url("/oauth/token"),
        &server.url("/"),
        "id",
        "secret-value-1",
        &["--max-pending", "1"],
        "credflow::proxy=warn",
    )
    .await;
    let http = http();
    proxy.ready(&http).await;
    // One at a time (the queue holds one): each answered by the proxy, each line hidden;
    // three times what the budget lets through in a second.
    for _ in 0..30 {
        let forbidden = http.get(proxy.url("/api/v2/forbidden")).send().await.unwrap();
        assert_eq!(forbidden.status(), 403);
    }
    let first = tokio::spawn(http.get(proxy.url("/api/v2/slow")).send());
    forwarded(&server, "/api/v2/slow").await;
    let second = http.get(proxy.url("/api/v2/slow")).send().await.unwrap();
    assert_eq!(second.status(), 503, "the queue is full");
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    proxy.sigterm();
    let (_, logs) = proxy.exit().await;
    assert!(!logs.contains("answered by the proxy"), "hidden at warn:\n{logs}");
    let full: Vec<&str> = logs.lines().filter(|l| l.contains("queue full")).collect();
    // Had the hidden lines spent the budget, the warning would be left out in their second,
    // or say they were in the next.
    assert_eq!(full.len(), 1, "{logs}");
    assert!(full[0].contains("left_out=0"), "{logs}");
}

#[tokio::test]
async fn a_token_endpoint_down_is_a_fast_503_then_recovery() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.faults().apply(
        &serde_json::from_value(serde_json::json!({
            "maintenance": { "target": "token", "retry_after_secs": 1 }
        }))
        .unwrap(),
    );
    let proxy = proxy_to_emulator(&emu, &["--token-wait", "200ms"]).await;
    let http = http();
    let health = http.get(proxy.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 503, "no token yet: not ready");
    let response = http.get(proxy.url("/api/v2/tokens/me")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = json(response).await;
    assert_eq!(body["code"], "credflow.token.unavailable");
    // Recovery by itself once the window ends.
    emu.faults()
        .apply(&serde_json::from_value(serde_json::json!({ "end_maintenance": true })).unwrap());
    proxy.ready(&http).await;
    let response = http.get(proxy.url("/api/v2/tokens/me")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_local_key_is_required_when_set() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = std::env::temp_dir().join(format!("credflow-proxy-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    let key = "local-key-0123456789abcdef";
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let proxy = proxy_to_emulator(&emu, &["--local-key-file", key_file.to_str().unwrap()]).await;
    let http = http();
    proxy.ready(&http).await;
    let token = |secret: &'static str| {
        http.post(proxy.url("/oauth/token"))
            .basic_auth("any", Some(secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
    };
    assert_eq!(token("wrong").await.unwrap().status(), 401);
    let granted = json(token("local-key-0123456789abcdef").await.unwrap()).await;
    assert_eq!(granted["access_token"], key);
    let without = http.get(proxy.url("/api/v2/tokens/me")).send().await.unwrap();
    assert_eq!(without.status(), 401);
    let wrong = http
        .get(proxy.url("/api/v2/tokens/me"))
        .bearer_auth("local-key-0123456789abcdeF")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(emu.counters().api.requests, 0, "refused requests never went upstream");
    let bearer = http.get(proxy.url("/api/v2/tokens/me")).bearer_auth(key).send().await.unwrap();
    assert_eq!(bearer.status(), 200);
    let header = http
        .get(proxy.url("/api/v2/tokens/me"))
        .header("X-Credflow-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), 200);
    assert_eq!(emu.counters().api.unauthorized, 0, "the key never reached the API as a token");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn past_the_queue_limit_the_answer_is_503_at_once() {
    let server = upstream(|_| Reply::json(200, "{}").delayed(Duration::from_secs(2)));
    let proxy = proxy_to(&server, &["--max-pending", "1"]).await;
    let http = http();
    proxy.ready(&http).await;
    let first = tokio::spawn(http.get(proxy.url("/api/v2/slow")).send());
    // The first request waits upstream...
    forwarded(&server, "/api/v2/slow").await;
    // ...so a second finds the queue full.
    let second = http.get(proxy.url("/api/v2/slow")).send().await.unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    let body: serde_json::Value = json(second).await;
    assert_eq!(body["code"], "credflow.queue.full");
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(server.requests_to("/api/v2/slow"), 1);
}

/// Opens a connection to the proxy and sends `head` and the first `sent` bytes of a body the
/// head says is longer; the rest never comes (the test drops the stream).
async fn body_left_unfinished(proxy: &Proxy, head: &str, sent: &str) -> tokio::net::TcpStream {
    let addr = proxy.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("{head}Host: {addr}\r\n\r\n{sent}").as_bytes()).await.unwrap();
    stream
}

/// The status line of the answer read from `stream`, which must come within `within`.
async fn status_line(stream: &mut (impl tokio::io::AsyncRead + Unpin), within: Duration) -> String {
    let mut answer = Vec::new();
    let mut buf = [0; 1024];
    let read = async {
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.expect("an answer before the deadline passed");
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_body_that_stalls_or_trickles_is_answered_408_at_the_deadline_and_frees_its_place() {
    let server = upstream(|_| Reply::json(200, "{}"));
    let proxy = proxy_to(&server, &["--max-pending", "2", "--deadline", "1s"]).await;
    let http = http();
    proxy.ready(&http).await;
    let head = "POST /api/v2/things HTTP/1.1\r\nContent-Type: application/json\r\n\
                Content-Length: 64\r\n";
    let started = Instant::now();
    // One client stops after 11 of its 64 bytes; the other sends a byte every 100 ms, which
    // would take 6.4 s: each read comes well within any idle timeout, the whole does not.
    let mut stalled = body_left_unfinished(&proxy, head, r#"{"partial":"#).await;
    let (mut trickling, mut trickle) = body_left_unfinished(&proxy, head, "{").await.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..63 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    // A token request whose form never ends holds no place, but must not hold its connection.
    let mut token_stalled = body_left_unfinished(
        &proxy,
        "POST /oauth/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 40\r\n",
        "grant_type=",
    )
    .await;
    // Both places are taken by the two unfinished bodies...
    for _ in 0..100 {
        let metrics = http.get(proxy.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metrics.contains("credflow_proxy_queue_depth 2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let third = http.get(proxy.url("/api/v2/things")).send().await.unwrap();
    assert_eq!(third.status(), 503, "the two unfinished bodies hold both places");
    // ...until the deadline: each is answered 408 then, not left waiting for the rest.
    let within = Duration::from_secs(5);
    assert!(status_line(&mut stalled, within).await.starts_with("HTTP/1.1 408"));
    assert!(status_line(&mut trickling, within).await.starts_with("HTTP/1.1 408"));
    assert!(status_line(&mut token_stalled, within).await.starts_with("HTTP/1.1 408"));
    let answered = started.elapsed();
    assert!(answered >= Duration::from_millis(900), "not before the deadline: {answered:?}");
    trickle.abort();
    // The places are free again, and nothing unfinished went upstream.
    let after = http.get(proxy.url("/api/v2/things")).send().await.unwrap();
    assert_eq!(after.status(), 200);
    assert_eq!(server.requests_to("/api/v2/things"), 1, "only the finished request went upstream");
}

#[tokio::test]
async fn health_and_metrics_and_a_revoked_token_replaced_unseen() {
    let emu = emulator(EmulatorConfig::default()).await;
    let proxy = proxy_to_emulator(&emu, &[]).await;
    let http = http();
    proxy.ready(&http).await;
    assert_eq!(http.get(proxy.url("/api/v2/routing/queues")).send().await.unwrap().status(), 200);
    emu.revoke_all_tokens();
    let response = http.get(proxy.url("/api/v2/routing/queues")).send().await.unwrap();
    assert_eq!(response.status(), 200, "the 401 of the revoked token stayed in the proxy");
    let counters = emu.counters();
    assert_eq!(counters.api.unauthorized, 1);
    assert_eq!(counters.token.requests, 2);
    let metrics = http.get(proxy.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.text().await.unwrap();
    for line in [
        "credflow_proxy_requests_total{outcome=\"forwarded\"} 2",
        "credflow_unauthorized_total 1",
        "credflow_token_requests_total 2",
        "credflow_retries_total 1",
        "credflow_token_held 1",
        "credflow_proxy_queue_depth 0",
        "credflow_breakers_open 0",
        "# TYPE credflow_paced_seconds_total counter",
        "# TYPE credflow_rate_limited_total counter",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[tokio::test]
async fn credentials_echoed_upstream_are_masked_on_the_way_back() {
    let server = upstream(|req| {
        let echoed = req.header("authorization").unwrap_or_default().to_owned();
        Reply::json(
            400,
            &format!(r#"{{"message":"you sent {echoed}","code":"bad.request","status":400}}"#),
        )
        .header("X-Echo", &echoed)
    });
    let proxy = proxy_to(&server, &[]).await;
    let http = http();
    let response = http.get(proxy.url("/api/v2/echo")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let echo = response.headers()["x-echo"].to_str().unwrap().to_owned();
    let body = response.text().await.unwrap();
    assert!(!echo.contains(REAL_TOKEN) && !body.contains(REAL_TOKEN), "{echo} / {body}");
    assert!(body.contains("[redacted]"), "{body}");
    let (_, logs) = {
        proxy.sigterm();
        proxy.exit().await
    };
    assert!(!logs.contains(REAL_TOKEN), "{logs}");
}

/// An upstream that makes masking costly: its token endpoint issues a token of 8 000 `A`s and
/// `B0001`, its API answers 404 with 64 KiB of `A`s and headers of 4 000 `A`s, each position of
/// which starts most of the token. Masking one such answer held the client's lock for seconds
/// (4.7 s for the body, 7.5 s for 90 such headers), and every other request waited. Its work is
/// bounded now (`credflow_core::redact::work_limit`): the answers come back at once, the token
/// never in them (what the search could not afford is masked whole), and `/healthz` answers
/// meanwhile. Only a generous bound on time is asserted.
#[tokio::test]
async fn an_answer_made_to_be_costly_to_mask_comes_back_masked_at_once() {
    let token = format!("{}B0001", "A".repeat(8000));
    let issued = token.clone();
    let server = Hostile::start(move |req| {
        if req.path() == "/oauth/token" {
            return Reply::json(
                200,
                &format!(
                    r#"{{"access_token":"{issued}","token_type":"bearer","expires_in":3600}}"#
                ),
            );
        }
        let mut reply = Reply::status(404).body(&[b'A'; 65536]);
        for i in 0..8 {
            reply = reply.header(&format!("x-filler-{i}"), &"A".repeat(4000));
        }
        reply
    });
    let proxy = proxy_to(&server, &[]).await;
    let http = http();
    let started = Instant::now();
    let answers: Vec<_> = (0..4)
        .map(|i| {
            let http = http.clone();
            let url = proxy.url(&format!("/api/v2/costly/{i}"));
            tokio::spawn(async move { http.get(url).send().await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let health = http.get(proxy.url("/healthz")).send().await.unwrap().status();
    assert!(health.is_success(), "{health}");
    for response in answers {
        let response = response.await.unwrap();
        assert_eq!(response.status(), 404);
        for (name, value) in response.headers() {
            let value = value.as_bytes();
            assert!(!value.windows(token.len()).any(|w| w == token.as_bytes()), "{name}");
            if name.as_str().starts_with("x-filler-") {
                assert!(value.ends_with(b"[redacted]"), "{name}");
            }
        }
        let body = response.bytes().await.unwrap();
        assert!(body.ends_with(b"[redacted]") && body.len() < 65536, "{} bytes", body.len());
        assert!(body[..body.len() - 10].iter().all(|&b| b == b'A'));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "the answers took {took:?}");
}

/// Echoes a search for whole occurrences in text missed: a header value with bytes beyond
/// ASCII (not text to `HeaderValue::to_str`), and an error body that the proxy's 64 KiB cut
/// ends just inside the token. And the upstream is asked for no content coding: a compressed
/// error body could not be searched at all.
#[tokio::test]
async fn echoes_in_non_ascii_headers_and_at_an_error_bodys_cut_are_masked() {
    let server = upstream(|req| {
        let token = req.header("authorization").unwrap_or_default().trim_start_matches("Bearer ");
        // The token starts 10 bytes before the end of what the proxy keeps of an error body.
        let pad = "x".repeat(64 * 1024 - 10);
        Reply::json(400, &format!("{pad}{token} was refused"))
            .header(
                "WWW-Authenticate",
                &format!(r#"Bearer error_description="{token} abgelehnt für""#),
            )
            .header("X-Accept-Encoding-Seen", req.header("accept-encoding").unwrap_or("none"))
    });
    let proxy = proxy_to(&server, &[]).await;
    let http = http();
    let response = http
        .get(proxy.url("/api/v2/echo"))
        .header("Accept-Encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-accept-encoding-seen"], "identity");
    let challenge = response.headers()["www-authenticate"].as_bytes().to_vec();
    let has = |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    assert!(!has(&challenge, REAL_TOKEN.as_bytes()), "{}", String::from_utf8_lossy(&challenge));
    assert!(has(&challenge, b"[redacted]") && has(&challenge, "für".as_bytes()));
    let body = response.bytes().await.unwrap();
    let tail = String::from_utf8_lossy(&body[body.len().saturating_sub(40)..]).into_owned();
    assert!(!has(&body, &REAL_TOKEN.as_bytes()[..4]), "the token's first bytes at the cut: {tail}");
    assert!(tail.ends_with("[redacted]"), "{tail}");
}

/// An upstream that content-codes an error body although the proxy asked for `identity`: the
/// body could not be searched for an echoed credential (a compressed echo is not the echo), so
/// it is withheld and replaced by the proxy's own error; the status and the other headers stay.
#[tokio::test]
async fn a_content_coded_error_body_is_withheld() {
    let server = upstream(|_| {
        Reply::json(400, "\u{1f}\u{8b} compressed bytes")
            .header("Content-Encoding", "gzip")
            .header("ININ-Correlation-Id", "corr-coded")
    });
    let proxy = proxy_to(&server, &[]).await;
    let http = http();
    let response = http.get(proxy.url("/api/v2/coded")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("content-encoding").is_none(), "the coding went with it");
    assert_eq!(response.headers()["inin-correlation-id"], "corr-coded");
    let body = json(response).await;
    assert_eq!(body["code"], "credflow.body.withheld", "{body}");
    assert_eq!(body["status"], 400);
}

/// A redirect elsewhere is handed back, not followed; its body is the server's text, like an
/// error body, and may repeat the `Location` it carries: an upstream that puts the request's
/// token in a signed URL (`https://cdn/x?access_token=T`) and echoes that URL in the body had
/// the header masked but the body streamed back with the real token. A 3xx body is now read
/// (bounded) and masked; a 304 (no body) still passes as it came.
#[tokio::test]
async fn a_redirect_body_echoing_the_token_is_masked() {
    let server = upstream(|req| {
        if req.path() == "/api/v2/unchanged" {
            return Reply::status(304).header("ETag", "\"v1\"");
        }
        let token = req.header("authorization").unwrap_or_default().trim_start_matches("Bearer ");
        let location = format!("https://cdn.example/x?access_token={token}");
        Reply::status(302)
            .header("Location", &location)
            .header("Content-Type", "text/html")
            .body(format!("<a href=\"{location}\">moved</a>").as_bytes())
    });
    let proxy = proxy_to(&server, &[]).await;
    let http = http_no_redirects();
    let response = http.get(proxy.url("/api/v2/download")).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(!location.contains(REAL_TOKEN), "{location}");
    let body = response.text().await.unwrap();
    assert!(!body.contains(REAL_TOKEN), "the token in the redirect's body: {body}");
    assert!(body.contains("access_token=[redacted]") && body.ends_with("moved</a>"), "{body}");

    let response = http
        .get(proxy.url("/api/v2/unchanged"))
        .header("If-None-Match", "\"v1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(response.headers()["etag"], "\"v1\"");
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn large_responses_stream_through() {
    const SIZE: u64 = 8 << 20;
    let server = upstream(|_| Reply::status(200).repeat(b"0123456789abcdef", SIZE));
    let proxy = proxy_to(&server, &[]).await;
    let http = http();
    let mut response = http.get(proxy.url("/api/v2/big")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut total = 0_u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        total += chunk.len() as u64;
    }
    assert_eq!(total, SIZE);
}

#[tokio::test]
async fn sigterm_drains_requests_in_flight_then_exits_0() {
    let server =
        upstream(|_| Reply::json(200, r#"{"late":true}"#).delayed(Duration::from_millis(800)));
    let proxy = proxy_to(&server, &["--drain", "10s"]).await;
    let http = http();
    proxy.ready(&http).await;
    let in_flight = tokio::spawn(http.get(proxy.url("/api/v2/slow")).send());
    forwarded(&server, "/api/v2/slow").await;
    proxy.sigterm();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"late":true}"#);
    let base = proxy.base.clone();
    let (code, logs) = proxy.exit().await;
    assert_eq!(code, Some(0), "{logs}");
    assert!(http.get(format!("{base}/healthz")).send().await.is_err(), "still accepting");
}

/// A request still waiting when the drain deadline passes (here for an upstream that answers
/// after 5 s, with `--drain 1s`) is answered 503 with `Retry-After`, its connection closed:
/// it was reset, and its client saw a connection error with no hint of what happened. The
/// proxy exits 1, saying so.
#[tokio::test]
async fn requests_still_waiting_at_the_drain_deadline_are_answered_503() {
    let server = upstream(|_| Reply::json(200, "{}").delayed(Duration::from_secs(5)));
    let proxy = proxy_to(&server, &["--drain", "1s"]).await;
    let http = http();
    proxy.ready(&http).await;
    let in_flight = tokio::spawn(http.get(proxy.url("/api/v2/slow")).send());
    forwarded(&server, "/api/v2/slow").await;
    let stopping = Instant::now();
    proxy.sigterm();
    let response = in_flight.await.unwrap().expect("an answer, not a reset connection");
    assert!(stopping.elapsed() < Duration::from_secs(4), "{:?}", stopping.elapsed());
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["connection"], "close");
    let body = json(response).await;
    assert_eq!(body["code"], "credflow.shutting.down", "{body}");
    let (code, logs) = proxy.exit().await;
    assert_eq!(code, Some(1), "{logs}");
    assert!(logs.contains("answered 503"), "{logs}");
}

#[tokio::test]
async fn listens_on_loopback_unless_told_otherwise() {
    let env = [("GENESYS_CLIENT_ID", "id"), ("GENESYS_CLIENT_SECRET", "secret")];
    let target =
        ["--token-url", "http://127.0.0.1:9/oauth/token", "--api-base", "http://127.0.0.1:9"];
    let run = |extra: &'static [&'static str]| {
        let mut args = vec!["proxy", "--listen", "0.0.0.0:0"];
        args.extend(target);
        args.extend(extra);
        async move { credflow(&args, &env).await }
    };
    let out = run(&[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-non-loopback"));
    let out = run(&["--allow-non-loopback"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--local-key-file"));
}

#[tokio::test]
async fn several_threads_serve_as_one_does() {
    let emu = emulator(EmulatorConfig::default()).await;
    let proxy = proxy_to_emulator(&emu, &["--threads", "2"]).await;
    let http = http();
    proxy.ready(&http).await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..32 {
        requests.spawn(http.get(proxy.url("/api/v2/routing/queues")).send());
    }
    while let Some(response) = requests.join_next().await {
        assert_eq!(response.unwrap().unwrap().status(), 200);
    }
    assert_eq!(emu.counters().token.requests, 1, "one token for every thread's requests");
    assert_eq!(runtime_workers(&proxy), 2);
    let default = proxy_to_emulator(&emu, &[]).await;
    assert_eq!(runtime_workers(&default), 0, "one thread by default: no worker pool");
    proxy.sigterm();
    let (code, _) = proxy.exit().await;
    assert_eq!(code, Some(0));
}

/// The proxy's tokio worker threads (named by tokio), read from /proc.
fn runtime_workers(proxy: &Proxy) -> usize {
    let pid = proxy.child.id().expect("running");
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
        .filter(|name| name.trim_end() == "tokio-rt-worker")
        .count()
}

#[tokio::test]
async fn zero_threads_is_a_usage_error() {
    let env = [("GENESYS_CLIENT_ID", "id"), ("GENESYS_CLIENT_SECRET", "secret")];
    let out = credflow(
        &["proxy", "--threads", "0", "--token-url", "http://127.0.0.1:9/oauth/token"],
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
}

/// An idle timeout of 0 would close every connection at once: refused.
#[tokio::test]
async fn a_zero_idle_timeout_is_a_usage_error() {
    let env = [("GENESYS_CLIENT_ID", "id"), ("GENESYS_CLIENT_SECRET", "secret")];
    let token_url = "http://127.0.0.1:9/oauth/token";
    let args = ["proxy", "--idle-timeout", "0ms", "--token-url", token_url, "--api-base", "x"];
    let out = credflow(&args, &env).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--idle-timeout"));
}

#[tokio::test]
async fn a_zero_max_wait_is_a_usage_error() {
    let env = [("GENESYS_CLIENT_ID", "id"), ("GENESYS_CLIENT_SECRET", "secret")];
    let token_url = "http://127.0.0.1:9/oauth/token";
    let out = credflow(&["proxy", "--max-wait", "0s", "--token-url", token_url], &env).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-wait 0"));
}

/// Sends `request` (a whole head, no body) on a new connection and returns the status line.
async fn raw(proxy: &Proxy, request: &str) -> String {
    let addr = proxy.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    status_line(&mut stream, Duration::from_secs(10)).await
}

/// DNS rebinding: a web page whose name resolves to 127.0.0.1 reaches a proxy on loopback with
/// its own name in `Host`. Such a request is refused (421) before anything is forwarded, the
/// token endpoint and metrics included; loopback names pass.
#[tokio::test]
async fn a_request_naming_another_host_is_refused_on_loopback() {
    let server = upstream(|_| Reply::json(200, r#"{"id":"me"}"#));
    let proxy = proxy_to(&server, &[]).await;
    let port = proxy.base.rsplit(':').next().unwrap().to_owned();
    for host in ["evil.example:8080", "evil.example", "10.0.0.1", "localhost.evil.example"] {
        for path in ["/api/v2/users/me", "/oauth/token", "/metrics"] {
            let status = raw(&proxy, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
            assert!(status.starts_with("HTTP/1.1 421"), "{host} {path}: {status}");
        }
        let absolute =
            format!("GET http://{host}/api/v2/users/me HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert!(raw(&proxy, &absolute).await.starts_with("HTTP/1.1 421"), "{host} (absolute)");
    }
    assert_eq!(server.requests_to("/api/v2/users/me"), 0, "nothing was forwarded");
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "localhost".to_owned()] {
        let status =
            raw(&proxy, &format!("GET /api/v2/users/me HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{host}: {status}");
    }
}

/// A request with two `Host` fields is answered 400 (RFC 9112 §3.2), whichever comes first and
/// even when both name loopback: only the first was checked, so `Host: 127.0.0.1` then `Host:
/// evil.example` was forwarded (a server or cache behind that reads the last one would see
/// evil.example). So is an HTTP/1.1 request with none (it was forwarded).
#[tokio::test]
async fn a_request_with_two_host_fields_or_none_is_refused() {
    let server = upstream(|_| Reply::json(200, r#"{"id":"me"}"#));
    let proxy = proxy_to(&server, &[]).await;
    let addr = proxy.base.trim_start_matches("http://").to_owned();
    for (first, second) in
        [(addr.as_str(), "evil.example"), ("evil.example", addr.as_str()), (&addr, "localhost")]
    {
        for path in ["/api/v2/users/me", "/oauth/token", "/metrics"] {
            let request = format!("GET {path} HTTP/1.1\r\nHost: {first}\r\nHost: {second}\r\n\r\n");
            let status = raw(&proxy, &request).await;
            assert!(status.starts_with("HTTP/1.1 400"), "{first}, {second} {path}: {status}");
        }
    }
    // Apart, with other fields between them, and in an absolute-form request.
    let apart =
        format!("GET /api/v2/users/me HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nhost: x\r\n\r\n");
    assert!(raw(&proxy, &apart).await.starts_with("HTTP/1.1 400"));
    let absolute = format!(
        "GET http://{addr}/api/v2/users/me HTTP/1.1\r\nHost: {addr}\r\nHost: evil.example\r\n\r\n"
    );
    assert!(raw(&proxy, &absolute).await.starts_with("HTTP/1.1 400"));
    assert_eq!(server.requests_to("/api/v2/users/me"), 0, "nothing was forwarded");
    // An HTTP/1.1 request without one, in origin and absolute form (HTTP/1.0 needs none).
    for path in ["/api/v2/users/me", "/oauth/token", "/metrics"] {
        let status = raw(&proxy, &format!("GET {path} HTTP/1.1\r\n\r\n")).await;
        assert!(status.starts_with("HTTP/1.1 400"), "no Host, {path}: {status}");
    }
    let absolute = format!("GET http://{addr}/api/v2/users/me HTTP/1.1\r\n\r\n");
    assert!(raw(&proxy, &absolute).await.starts_with("HTTP/1.1 400"));
    assert_eq!(server.requests_to("/api/v2/users/me"), 0, "nothing was forwarded");
    let old = "GET /api/v2/users/me HTTP/1.0\r\n\r\n";
    let status = raw(&proxy, old).await;
    assert!(status.starts_with("HTTP/1.") && status[8..].starts_with(" 200"), "1.0: {status}");
    let one = format!("GET /api/v2/users/me HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    assert!(raw(&proxy, &one).await.starts_with("HTTP/1.1 200"));
}

/// TRACE (a server echoing the request would send the bearer token back) and CONNECT (a
/// tunnel to the API host with it) are refused, 405, and never reach the upstream.
#[tokio::test]
async fn trace_and_connect_are_not_forwarded() {
    let server = upstream(|req| {
        Reply::json(200, &format!("{{\"echo\":{:?}}}", req.header("authorization")))
    });
    let proxy = proxy_to(&server, &[]).await;
    let addr = proxy.base.trim_start_matches("http://").to_owned();
    let trace = format!("TRACE /api/v2/users/me HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    assert!(raw(&proxy, &trace).await.starts_with("HTTP/1.1 405"));
    let connect = format!("CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    assert!(raw(&proxy, &connect).await.starts_with("HTTP/1.1 405"));
    assert!(server.requests().iter().all(|r| r.path() == "/oauth/token"), "forwarded");
}

/// Local connections are bounded in number (`--max-connections`: one past it is closed at
/// once) and each in what it buffers of a request head (64 KiB, then 431): a local client
/// opening thousands of connections, each trickling a head of hundreds of KiB, held memory
/// without a bound (hyper buffers about 400 KiB per connection by default).
#[tokio::test]
async fn local_connections_and_their_heads_are_bounded() {
    let server = upstream(|_| Reply::json(200, "{}"));
    let proxy = proxy_to(&server, &["--max-connections", "2"]).await;
    let addr = proxy.base.trim_start_matches("http://").to_owned();
    let first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Let the proxy accept both before the third.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the third connection was served: {read:?}");
    // A place freed, a connection is served again.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = raw(&proxy, &format!("GET /api/v2/x HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    drop(_second);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A head past 64 KiB is refused, whatever comes after.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head =
        format!("GET /api/v2/x HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}", "a".repeat(100 * 1024));
    let _ = stream.write_all(head.as_bytes()).await;
    let status = status_line(&mut stream, Duration::from_secs(10)).await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
}

/// The 64 KiB cap is on the head, however it arrives: a head sent in one burst was parsed from
/// whatever hyper had read (its buffer limit is checked only after a parse that needs more),
/// so heads up to 112 KiB went through, a 114 618-byte header value forwarded upstream. At
/// 65 536 bytes a head passes, at 65 537 it is 431.
#[tokio::test]
async fn a_head_past_64_kib_is_refused_even_in_one_burst() {
    let server = upstream(|_| Reply::json(200, "{}"));
    let proxy = proxy_to(&server, &[]).await;
    let addr = proxy.base.trim_start_matches("http://").to_owned();
    // A whole head of `size` bytes, its end included, in one write.
    let head = |size: usize| {
        let start = format!("GET /api/v2/x HTTP/1.1\r\nHost: {addr}\r\nX-Big: ");
        let pad = size - start.len() - "\r\n\r\n".len();
        format!("{start}{}\r\n\r\n", "a".repeat(pad))
    };
    for size in [65_537, 65_600, 100_000, 114_618 + 50] {
        let status = raw(&proxy, &head(size)).await;
        assert!(status.starts_with("HTTP/1.1 431"), "{size}: {status}");
    }
    assert_eq!(server.requests_to("/api/v2/x"), 0, "a head past the cap was forwarded");
    let status = raw(&proxy, &head(65_536)).await;
    assert!(status.starts_with("HTTP/1.1 200"), "65536: {status}");
    assert_eq!(server.requests_to("/api/v2/x"), 1);
}

/// Reads `stream` until the proxy closes it (at most `within`): what came, and when it closed.
async fn until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.expect("the proxy closed the connection in time");
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

/// A local connection that sends no head for `--idle-timeout` is closed: one kept alive after
/// its answer, one that never sends anything, one that stops in the middle of a head. Each
/// holds one of `--max-connections` while open.
#[tokio::test]
async fn connections_that_send_no_head_are_closed_after_the_idle_timeout() {
    let server = upstream(|_| Reply::json(200, "{}"));
    let proxy = proxy_to(&server, &["--idle-timeout", "1s"]).await;
    let addr = proxy.base.trim_start_matches("http://").to_owned();
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut halfway = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let opened = Instant::now();
    kept.write_all(format!("GET /api/v2/x HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    halfway
        .write_all(format!("GET /api/v2/x HTTP/1.1\r\nHost: {addr}\r\nX-").as_bytes())
        .await
        .unwrap();
    let within = Duration::from_secs(10);
    let (answers, kept_closed) = until_closed(&mut kept, within).await;
    assert!(answers.starts_with("HTTP/1.1 200"), "{answers}");
    assert_eq!(answers.matches("HTTP/1.1").count(), 1, "{answers}");
    let (nothing, silent_closed) = until_closed(&mut silent, within).await;
    assert_eq!(nothing, "");
    let (timed_out, halfway_closed) = until_closed(&mut halfway, within).await;
    assert_eq!(timed_out, "", "hyper closes it unanswered");
    for closed in [kept_closed, silent_closed, halfway_closed] {
        let after = closed - opened;
        assert!(after >= Duration::from_millis(900), "closed before the idle timeout: {after:?}");
    }
}

/// A local client that sends requests and never reads the answers is closed once the proxy's
/// writes to it have made no progress for `--idle-timeout`: it held its connection, one of
/// `--max-connections`, for as long as it liked (100 000 pipelined `GET /metrics`, nothing read:
/// still open after 100 s). Here the one place is taken until then, and free after.
#[tokio::test]
async fn a_client_that_reads_no_answer_is_closed_after_the_idle_timeout() {
    let server = upstream(|_| Reply::json(200, "{}"));
    let args = ["--max-connections", "1", "--idle-timeout", "2s"];
    let proxy = proxy_to(&server, &args).await;
    let addr = proxy.base.trim_start_matches("http://").to_owned();
    let stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (_unread, mut requests) = stalled.into_split();
    let batch = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").repeat(1000);
    // Writes until the proxy is gone (its reads stop once its writes are stuck).
    let writer = tokio::spawn(async move {
        for _ in 0..1000 {
            if requests.write_all(batch.as_bytes()).await.is_err() {
                return true;
            }
        }
        false
    });
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut turned_away = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (nothing, _) = until_closed(&mut turned_away, Duration::from_secs(1)).await;
    assert_eq!(nothing, "", "the place was free while the stalled client held it");
    let served = loop {
        let status = raw(&proxy, &format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
        if status.starts_with("HTTP/1.1 200") {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the place is still held");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(served >= Duration::from_millis(1500), "freed before the idle timeout: {served:?}");
    let cut = tokio::time::timeout(Duration::from_secs(5), writer).await.expect("writer ended");
    assert!(cut.unwrap(), "the stalled client's connection was closed under it");
}

/// Every header a `Connection` header names is removed (RFC 9110 §7.6.1), in both directions,
/// however many it names: only the first 32 were, and the others went on.
#[tokio::test]
async fn every_header_named_in_connection_is_dropped_both_ways() {
    let names: Vec<String> = (0..40).map(|i| format!("x-hop-{i}")).collect();
    let list = names.join(", ");
    let server = {
        let (names, list) = (names.clone(), list.clone());
        upstream(move |_| {
            let reply = Reply::json(200, "{}").header("Connection", &list).header("X-Kept", "1");
            names.iter().fold(reply, |reply, name| reply.header(name, "1"))
        })
    };
    let proxy = proxy_to(&server, &[]).await;
    let request =
        http().get(proxy.url("/api/v2/hops")).header("Connection", &list).header("X-Kept", "1");
    let request = names.iter().fold(request, |request, name| request.header(name, "1"));
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    for name in &names {
        assert!(response.headers().get(name).is_none(), "{name} came back");
    }
    assert_eq!(response.headers()["x-kept"], "1");
    let requests = server.requests();
    let seen = requests.iter().find(|r| r.path() == "/api/v2/hops").expect("forwarded");
    for name in &names {
        assert_eq!(seen.header(name), None, "{name} was forwarded");
    }
    assert_eq!(seen.header("x-kept"), Some("1"));
}

/// hyper takes only `chunked` off a body: one in another transfer coding (`gzip, chunked`)
/// would pass the proxy still coded, with nothing left to say so (`Transfer-Encoding` is
/// hop-by-hop), and an error body in one could not be searched for an echoed credential. A
/// local request in one is refused (501, RFC 9112 §6.1) and not forwarded; an upstream error
/// body in one is withheld as a content-coded one is; an upstream success in one is a 502.
#[tokio::test]
async fn bodies_in_a_transfer_coding_other_than_chunked_are_not_passed_on() {
    let server = upstream(|req| {
        let status = if req.path() == "/api/v2/fails" { 400 } else { 200 };
        let token = req.header("authorization").unwrap_or_default().to_owned();
        // Close-delimited (hyper ignores the Content-Length the server adds beside it).
        Reply::json(status, &format!("coded bytes standing for {token}"))
            .header("Transfer-Encoding", "gzip")
            .header("ININ-Correlation-Id", "corr-coded")
    });
    let proxy = proxy_to(&server, &[]).await;
    let http = http();

    let response = http.get(proxy.url("/api/v2/fails")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["inin-correlation-id"], "corr-coded");
    let body = json(response).await;
    assert_eq!(body["code"], "credflow.body.withheld", "{body}");

    let response = http.get(proxy.url("/api/v2/works")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let body = json(response).await;
    assert_eq!(body["code"], "credflow.upstream.coding", "{body}");
    assert!(!body.to_string().contains(REAL_TOKEN));

    let addr = proxy.base.trim_start_matches("http://").to_owned();
    let post = format!(
        "POST /api/v2/in HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n"
    );
    let status = raw(&proxy, &post).await;
    assert!(status.starts_with("HTTP/1.1 501"), "{status}");
    assert_eq!(server.requests_to("/api/v2/in"), 0, "forwarded");
    // Chunked alone is forwarded as before (the answer, in gzip, is a 502 again).
    let post = format!(
        "POST /api/v2/in HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n"
    );
    let status = raw(&proxy, &post).await;
    assert!(status.starts_with("HTTP/1.1 502"), "{status}");
    assert_eq!(server.requests_to("/api/v2/in"), 1);
}

/// An upstream's `Content-Length` as a list of one value (`2, 2`, or the field twice) is one
/// length (RFC 9110 §8.6): reqwest accepted it, the proxy passed the list on, and hyper refused
/// to write that head, so the local client saw its connection closed without an answer. It is
/// now passed on as one value.
#[tokio::test]
async fn a_content_length_listed_twice_upstream_is_passed_on_as_one() {
    let server = upstream(|req| {
        let status = if req.path() == "/api/v2/fails" { 404 } else { 200 };
        Reply::json(status, "{}").header("Content-Length", "2, 2")
    });
    let proxy = proxy_to(&server, &[]).await;
    let addr = proxy.base.trim_start_matches("http://").to_owned();
    for path in ["/api/v2/works", "/api/v2/fails"] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        tokio::time::timeout(Duration::from_secs(10), read).await.unwrap().unwrap();
        let response = String::from_utf8_lossy(&answer).into_owned();
        let expected = if path.ends_with("works") { "HTTP/1.1 200" } else { "HTTP/1.1 404" };
        assert!(response.starts_with(expected), "{path}: {response:?}");
        let lengths: Vec<&str> = response
            .lines()
            .filter(|line| line.to_ascii_lowercase().starts_with("content-length:"))
            .collect();
        // A success keeps its length; an error body, read and masked, is sent in chunks.
        let one: &[&str] = if path.ends_with("works") { &["content-length: 2"] } else { &[] };
        assert_eq!(lengths, one, "{path}: {response:?}");
        assert!(response.ends_with("{}") || response.ends_with("{}\r\n0\r\n\r\n"), "{response:?}");
    }
}

/// A connection that has sent part of a head holds no request: SIGTERM does not wait for it.
/// hyper keeps such a connection open until its head timeout (30 s), and the drain waited for
/// every connection: past `--drain`, the proxy exited 1 saying 0 requests were in flight.
#[tokio::test]
async fn a_half_sent_head_does_not_hold_the_drain() {
    let server = upstream(|_| Reply::json(200, "{}"));
    let proxy = proxy_to(&server, &["--drain", "5s"]).await;
    let http = http();
    proxy.ready(&http).await;
    let addr = proxy.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(b"G").await.unwrap();
    // Let the proxy read the byte.
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.sigterm();
    let (code, logs) = proxy.exit().await;
    assert_eq!(code, Some(0), "{logs}");
    drop(stream);
}

/// A web page reaches 127.0.0.1 directly too, no rebinding needed: `fetch` or a form's POST to
/// `http://127.0.0.1:PORT/api/...` (no preflight for those) used the API as the service. Its
/// browser sends `Origin` or `Sec-Fetch-Site`, programs do not: such requests are refused on
/// loopback (403) and nothing goes upstream; one the user typed (`Sec-Fetch-Site: none`)
/// passes. And a request line naming a foreign host is refused whatever `Host` says.
#[tokio::test]
async fn requests_a_browser_sends_for_a_web_page_are_refused_on_loopback() {
    let server = upstream(|_| Reply::json(200, r#"{"id":"me"}"#));
    let proxy = proxy_to(&server, &[]).await;
    let addr = proxy.base.trim_start_matches("http://").to_owned();
    for (name, value) in [
        ("Origin", "https://evil.example"),
        ("Origin", "null"),
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Site", "same-site"),
    ] {
        let post = format!(
            "POST /api/v2/users/me HTTP/1.1\r\nHost: {addr}\r\n{name}: {value}\r\n\
             Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        let status = raw(&proxy, &post).await;
        assert!(status.starts_with("HTTP/1.1 403"), "{name}: {value}: {status}");
    }
    let absolute =
        format!("GET http://evil.example/api/v2/users/me HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    assert!(raw(&proxy, &absolute).await.starts_with("HTTP/1.1 421"), "absolute form");
    assert_eq!(server.requests_to("/api/v2/users/me"), 0, "nothing was forwarded");
    let typed =
        format!("GET /api/v2/users/me HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: none\r\n\r\n");
    assert!(raw(&proxy, &typed).await.starts_with("HTTP/1.1 200"));
    let program = format!("GET http://{addr}/api/v2/users/me HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    assert!(raw(&proxy, &program).await.starts_with("HTTP/1.1 200"));
}

/// A request sent with a token that was replaced before its answer came (here: revoked, 401,
/// a new token, the retry refused 403) and an answer echoing the old token in its correlation
/// id: the session masked what it kept with the token it held then, the new one, and the
/// proxy passed the old token back to its local client in `ININ-Correlation-Id` and
/// `contextId`. The tokens the client replaced last are masked there too.
#[tokio::test]
async fn an_echo_of_a_replaced_token_in_a_refusal_is_masked() {
    const FIRST: &str = "first-token-0123456789abcdef";
    const SECOND: &str = "second-token-0123456789abcdef";
    let granted = Arc::new(AtomicUsize::new(0));
    let server = Hostile::start(move |req| {
        if req.path() == "/oauth/token" {
            let token = if granted.fetch_add(1, Ordering::SeqCst) == 0 { FIRST } else { SECOND };
            return Reply::json(
                200,
                &format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#),
            );
        }
        if req.header("authorization") == Some(format!("Bearer {FIRST}").as_str()) {
            return Reply::json(401, r#"{"message":"revoked","code":"bad.credentials"}"#);
        }
        Reply::json(403, r#"{"message":"no","code":"missing.permissions","status":403}"#)
            .header("ININ-Correlation-Id", FIRST)
    });
    let proxy = proxy_to(&server, &[]).await;
    let response = http().get(proxy.url("/api/v2/users/me")).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let headers = format!("{:?}", response.headers());
    let body = response.text().await.unwrap();
    assert_eq!(server.requests_to("/oauth/token"), 2, "{body}");
    assert!(!headers.contains(FIRST) && !body.contains(FIRST), "{headers} {body}");
}
