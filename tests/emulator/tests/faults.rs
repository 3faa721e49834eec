//! Faults (maintenance, drops, forced 429s, latency), the control routes, and the synchronous
//! background emulator over a raw socket.

mod common;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use common::{assert_genesys_error, basic, start};
use credflow_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DropFault, Emulator, EmulatorConfig, EmulatorError,
    FaultConfig, FaultTarget, Maintenance,
};

const GRANT: &str = "grant_type=client_credentials";
const QUEUES: &str = "/api/v2/routing/queues";

#[tokio::test]
async fn maintenance_answers_503_on_its_target_until_it_ends() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    let auth = basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET);
    f.emu.faults().maintenance_for(
        Duration::from_millis(250),
        FaultTarget::Token,
        Some(Duration::from_secs(30)),
    );
    let a = f.token_request(Some(&auth), GRANT).await;
    assert_eq!((a.status, a.header("retry-after")), (503, Some("30")), "{}", a.text);
    assert_eq!(a.body["error"], "temporarily_unavailable");
    assert_eq!(f.get(QUEUES, Some(&token)).await.status, 200, "API not targeted");
    tokio::time::sleep(Duration::from_millis(260)).await;
    assert_eq!(f.token_request(Some(&auth), GRANT).await.status, 200);

    f.emu.faults().maintenance(Maintenance {
        duration: None,
        target: FaultTarget::Api,
        retry_after: None,
    });
    let a = f.get(QUEUES, Some(&token)).await;
    assert_genesys_error(&a, 503, "service.unavailable");
    assert_eq!(a.header("retry-after"), None);
    f.emu.faults().end_maintenance();
    assert_eq!(f.get(QUEUES, Some(&token)).await.status, 200);
    let c = f.emu.counters();
    assert_eq!((c.token.unavailable, c.api.unavailable, c.api.status_5xx), (1, 1, 1));
}

#[tokio::test]
async fn dropped_connections_are_connection_errors() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    f.emu.faults().drop_next(1, FaultTarget::Token);
    let dropped = f
        .http
        .post(f.emu.token_url())
        .header("authorization", basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))
        .header("content-type", common::FORM)
        .body(GRANT)
        .send()
        .await;
    let err = dropped.expect_err("the connection must close without an answer");
    assert!(err.is_request() || err.is_connect() || err.is_body(), "{err:?}");
    // Only the next one; the API was not targeted.
    assert_eq!(f.get(QUEUES, Some(&token)).await.status, 200);
    assert_eq!(
        f.token_request(Some(&basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)), GRANT).await.status,
        200
    );
    let c = f.emu.counters();
    assert_eq!(
        (c.dropped_connections, c.token.dropped, c.token.requests, c.token.succeeded),
        (1, 1, 3, 2)
    );
}

#[tokio::test]
async fn seeded_drop_probability_is_reproducible() {
    async fn pattern(seed: u64) -> Vec<bool> {
        let faults = FaultConfig {
            drop: DropFault { next: 0, probability: 0.5, target: FaultTarget::Api },
            seed,
            ..FaultConfig::default()
        };
        let f = start(EmulatorConfig::default().with_faults(faults)).await;
        let mut out = Vec::new();
        for _ in 0..12 {
            out.push(f.http.get(f.url(QUEUES)).send().await.is_err());
        }
        assert_eq!(f.emu.counters().api.dropped, out.iter().filter(|&&d| d).count() as u64);
        out
    }
    let a = pattern(42).await;
    assert_eq!(a, pattern(42).await);
    assert!(a.contains(&true) && a.contains(&false), "{a:?}");
}

#[tokio::test]
async fn forced_429_and_forced_token_rate_limit() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    f.emu.faults().force_429_for(Duration::from_millis(1500));
    let a = f.get(QUEUES, Some(&token)).await;
    assert_genesys_error(&a, 429, "too.many.requests.retry.after");
    assert_eq!(a.header("retry-after"), Some("2"));
    assert_eq!(a.header_u64("inin-ratelimit-allowed"), Some(300));
    assert_eq!(f.emu.counters().api.forced_429, 1);

    f.emu.faults().clear();
    assert_eq!(f.get(QUEUES, Some(&token)).await.status, 200);
    f.emu.faults().force_token_rate_limit_for(Duration::from_secs(5));
    let a = f.token_request(Some(&basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)), GRANT).await;
    assert_eq!(a.status, 400);
    assert!(a.body["error_description"].as_str().unwrap().starts_with("rate limit exceeded;"));
}

#[tokio::test]
async fn api_latency_delays_answers() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    f.emu.faults().api_latency(Duration::from_millis(120));
    let t0 = Instant::now();
    assert_eq!(f.get(QUEUES, Some(&token)).await.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(120));
}

#[tokio::test]
async fn control_routes_switch_faults_and_show_counters() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    let set = |body: &'static str| {
        f.http
            .post(f.url("/__emulator/faults"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let view = common::answer(
        set(r#"{"maintenance":{"target":"api","retry_after_secs":7},"drop_next":0}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(view.status, 200, "{}", view.text);
    assert_eq!(view.body["maintenance"]["retry_after_secs"], 7);
    let a = f.get(QUEUES, Some(&token)).await;
    assert_eq!((a.status, a.header("retry-after")), (503, Some("7")));
    let bad = set(r#"{"no_such_fault":true}"#).await.unwrap();
    assert!(bad.status().is_client_error());

    set(r#"{"clear":true,"expire_all_tokens":true}"#).await.unwrap();
    assert_genesys_error(&f.get(QUEUES, Some(&token)).await, 401, "credentials.expired");

    let counters =
        common::answer(f.http.get(f.url("/__emulator/counters")).send().await.unwrap()).await;
    assert_eq!(counters.body["token"]["succeeded"], 1);
    assert_eq!(counters.body["api"]["unavailable"], 1);
    assert_eq!(counters.body["responses_401"], 1);
    assert!(counters.header("inin-correlation-id").is_some());

    let disable = f
        .http
        .post(f.url("/__emulator/clients/demo-client"))
        .header("content-type", "application/json")
        .body(r#"{"state":"disabled"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(disable.status().as_u16(), 204);
    assert_eq!(
        f.token_request(Some(&basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)), GRANT).await.status,
        401
    );

    let reset = f.http.post(f.url("/__emulator/reset")).send().await.unwrap();
    assert_eq!(reset.status().as_u16(), 204);
    let c = f.emu.counters();
    assert_eq!((c.token.requests, c.api.requests, c.responses_401), (0, 0, 0));
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let f = start(EmulatorConfig::default()).await;
    let url = f.url("/__emulator/counters");
    assert!(f.http.get(&url).send().await.is_ok());
    f.emu.shutdown().await;
    assert!(f.http.get(&url).send().await.is_err());
}

/// Synchronous use, and the exact wire: a raw HTTP/1.1 exchange over a socket.
#[test]
fn background_emulator_serves_plain_http() {
    let emu = Emulator::start_background(EmulatorConfig::default()).unwrap();
    assert_eq!(emu.addr().ip().to_string(), "127.0.0.1");
    let body = GRANT;
    let request = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        emu.addr(),
        basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
        body.len()
    );
    let mut socket = std::net::TcpStream::connect(emu.addr()).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    let lower = response.to_ascii_lowercase();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    for header in [
        "\r\ndate: ",
        "\r\ninin-correlation-id: ",
        "\r\ncache-control: no-store",
        "\r\ncontent-type: application/json",
    ] {
        assert!(lower.contains(header), "{header:?} missing in {response}");
    }
    assert!(response.contains("\"token_type\":\"bearer\""));
    assert_eq!(emu.counters().token.succeeded, 1);

    let addr = emu.addr();
    drop(emu);
    assert!(std::net::TcpStream::connect(addr).is_err(), "stopped on drop");
}

#[tokio::test]
async fn start_background_inside_a_runtime_is_refused() {
    let err = Emulator::start_background(EmulatorConfig::default()).unwrap_err();
    assert!(matches!(err, EmulatorError::InsideRuntime));
    let bad = Emulator::start(EmulatorConfig::default().with_environment("")).await.unwrap_err();
    assert!(matches!(bad, EmulatorError::Config(_)), "{bad}");
}
