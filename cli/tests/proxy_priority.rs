//! `X-Credflow-Priority` changes what the proxy sends: the core's pacer holds back, per
//! priority, a share of the window's limit for the priorities above (Normal leaves the critical
//! reserve, `--critical-reserve`, 10 %; Background also the background floor, 30 %). The
//! scripted upstream reports a window with few requests left and a reset an hour away, so a
//! held request would wait far past the retry policy's `max_wait` (60 s) and the proxy's
//! `--deadline` (60 s): the core fails it at once, naming the wait, and the proxy answers 503
//! itself, without sending it. What goes and what does not is then a matter of which requests
//! the upstream received, in which order, and of the statuses the client got; no timing is
//! measured (timeouts are only guards against a hang). A hold past `max_wait` but within the
//! deadline is refused the same way, and never sent as the quota's probe.
#![cfg(unix)]

mod proxy_support;

use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Reply};
use proxy_support::{Proxy, http};

/// The request id each test request carries, for the upstream's record.
const ID: &str = "x-test-id";

/// An upstream whose every API answer says `used` of 100 requests are spent in a window that
/// resets in `reset` seconds (Genesys's `inin-ratelimit-*` headers).
fn upstream(used: u32, reset: u32) -> Hostile {
    Hostile::start(move |req| {
        if req.path() == "/oauth/token" {
            return Reply::json(
                200,
                r#"{"access_token":"real-token-0123456789abcdef","token_type":"bearer","expires_in":86400}"#,
            );
        }
        Reply::json(200, r#"{"ok":true}"#)
            .header("inin-ratelimit-allowed", "100")
            .header("inin-ratelimit-count", &used.to_string())
            .header("inin-ratelimit-reset", &reset.to_string())
    })
}

/// A ready proxy in front of `server`, after one request without a priority (`warm-up`) that
/// tells its pacer about the window (before any rate-limit header, nothing is held back).
async fn proxy_with_known_window(
    server: &Hostile,
    client: &reqwest::Client,
    args: &[&str],
) -> Proxy {
    let proxy =
        Proxy::start(&server.url("/oauth/token"), &server.url("/"), "id", "secret-value-1", args)
            .await;
    proxy.ready(client).await;
    assert_eq!(send(&proxy, client, "warm-up", None).await.0, 200);
    proxy
}

/// Sends `GET /api/v2/things` with the request id `id` and the priority header `priority` (none
/// for `None`): the status, `Retry-After` and, for a 503, the code of the JSON body.
async fn send(
    proxy: &Proxy,
    client: &reqwest::Client,
    id: &str,
    priority: Option<&str>,
) -> (u16, Option<u64>, String, String) {
    let mut request = client.get(proxy.url("/api/v2/things")).header(ID, id);
    if let Some(priority) = priority {
        request = request.header("X-Credflow-Priority", priority);
    }
    let response = tokio::time::timeout(Duration::from_secs(30), request.send())
        .await
        .unwrap_or_else(|_| panic!("{id}: no answer within 30 s (held instead of refused)"))
        .unwrap();
    let retry_after =
        response.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    let status = response.status().as_u16();
    let (mut code, mut message) = (String::new(), String::new());
    if status == 503 {
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        code = body["code"].as_str().unwrap_or_default().to_owned();
        message = body["message"].as_str().unwrap_or_default().to_owned();
    }
    (status, retry_after, code, message)
}

/// The request ids the upstream's API received, in order.
fn received(server: &Hostile) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.path() != "/oauth/token")
        .map(|r| r.header(ID).unwrap_or("(no id)").to_owned())
        .collect()
}

#[tokio::test]
async fn background_leaves_the_floor_that_normal_and_critical_may_use() {
    // 20 of 100 left: at or below the background floor (30), above the critical reserve (10).
    let server = upstream(80, 3600);
    let client = http();
    let proxy = proxy_with_known_window(&server, &client, &[]).await;

    let (status, retry_after, code, _) =
        send(&proxy, &client, "background", Some("background")).await;
    assert_eq!(status, 503, "a background request went into the floor it must leave");
    // Held for most of an hour, past max_wait (and the request's --deadline, both 60 s): the
    // wait is named (a deadline would not have helped).
    assert_eq!(code, "credflow.rate.limited");
    // Retry-After is the hold's end, the window's reset, not a guess (credflow's own pacing:
    // no probe comes sooner).
    let retry_after = retry_after.expect("503 without Retry-After");
    assert!((3000..=3600).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(send(&proxy, &client, "no-header", None).await.0, 200);
    assert_eq!(send(&proxy, &client, "normal", Some("normal")).await.0, 200);
    assert_eq!(send(&proxy, &client, "critical", Some("Critical")).await.0, 200);
    // The refused one is refused again: it is the priority, not the moment.
    assert_eq!(send(&proxy, &client, "background-2", Some(" background ")).await.0, 503);

    assert_eq!(received(&server), ["warm-up", "no-header", "normal", "critical"]);
    assert!(
        server.requests().iter().all(|r| r.header("x-credflow-priority").is_none()),
        "the priority header went upstream"
    );
}

#[tokio::test]
async fn only_critical_may_use_the_critical_reserve() {
    // 5 of 100 left: within the critical reserve (10).
    let server = upstream(95, 3600);
    let client = http();
    let proxy = proxy_with_known_window(&server, &client, &[]).await;

    assert_eq!(send(&proxy, &client, "no-header", None).await.0, 503);
    assert_eq!(send(&proxy, &client, "normal", Some("normal")).await.0, 503);
    assert_eq!(send(&proxy, &client, "background", Some("background")).await.0, 503);
    assert_eq!(send(&proxy, &client, "critical", Some("critical")).await.0, 200);
    assert_eq!(send(&proxy, &client, "critical-2", Some("critical")).await.0, 200);

    assert_eq!(received(&server), ["warm-up", "critical", "critical-2"]);
}

#[tokio::test]
async fn a_background_request_is_not_sent_as_a_quota_probe() {
    // 11 of 100 left, the reset in 100 s: background is held until 20 s before the reset
    // (10 × 60 s / 30), 80 s, longer than the retry policy's max_wait (60 s) but within this
    // --deadline. The core then fails it at once, naming the wait, as it does a daily quota;
    // it once let one such request per max_wait go out as the quota's probe, into the floor.
    let server = upstream(89, 100);
    let client = http();
    let proxy = proxy_with_known_window(&server, &client, &["--deadline", "120s"]).await;

    for id in ["background", "background-2"] {
        let (status, retry_after, code, message) =
            send(&proxy, &client, id, Some("background")).await;
        assert_eq!((status, code.as_str()), (503, "credflow.rate.limited"), "{id}");
        // Said as it is: credflow's pacing holds it, the server refused nothing.
        assert!(message.contains("credflow's pacing"), "{id}: {message}");
        assert!(!message.contains("server asked"), "{id}: {message}");
        // The hold (80 s less the time since the warm-up), as Retry-After.
        let retry_after = retry_after.expect("Retry-After");
        assert!((61..=81).contains(&retry_after), "{id}: Retry-After {retry_after}");
    }
    assert_eq!(send(&proxy, &client, "normal", Some("normal")).await.0, 200);
    assert_eq!(send(&proxy, &client, "critical", Some("critical")).await.0, 200);

    assert_eq!(received(&server), ["warm-up", "normal", "critical"]);
}
