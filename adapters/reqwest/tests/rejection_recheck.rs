//! A client the token endpoint rejects recovers without a restart or new credentials: an OAuth
//! client disabled by mistake and enabled again, a scope granted meanwhile.
//!
//! The server (`credflow_emulator::hostile`, on 127.0.0.1) answers the first token requests
//! with `invalid_client`, then with a token. The client's recheck is short (`recheck_after`
//! 200 ms, doubling to a 400 ms cap), so it checks twice (after 200 ms, then 400 ms) and takes
//! the token the second check gets. Callers asking for a token meanwhile, many at once, fail
//! fast naming the recheck, and add no token request: the server sees exactly three.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use credflow_core::Duration as CoreDuration;
use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config, ErrorKind};

const TOKEN_PATH: &str = "/oauth/token";
/// The token requests rejected before the server grants one.
const REJECTIONS: usize = 2;
/// Callers asking for a token the whole time.
const CALLERS: usize = 8;

/// A server rejecting the client `REJECTIONS` times, then granting an hour-long token.
fn rejecting_then_granting() -> Hostile {
    let answered = AtomicUsize::new(0);
    Hostile::start(move |req| {
        if req.path() != TOKEN_PATH {
            return Reply::status(404);
        }
        if answered.fetch_add(1, Ordering::SeqCst) < REJECTIONS {
            Reply::json(
                401,
                r#"{"error":"invalid_client","description":"authentication failed","error_description":"authentication failed"}"#,
            )
        } else {
            Reply::json(
                200,
                r#"{"access_token":"enabled-again","token_type":"bearer","expires_in":3600}"#,
            )
        }
    })
}

/// Asks for a token until one comes (or `attempts` run out, each after a 10 ms pause), checking
/// every failure on the way: the rejection, named with its recheck. Returns the failures seen.
async fn token_after_rejections(client: &Client, attempts: usize) -> usize {
    let mut failures = 0;
    for _ in 0..attempts {
        match client.token().await {
            Ok(token) => {
                assert_eq!(token.as_str(), "enabled-again");
                return failures;
            }
            Err(e) => {
                failures += 1;
                assert_eq!(e.kind(), ErrorKind::CredentialsRejected, "{e}");
                assert_eq!(e.code(), Some("invalid_client"), "{e}");
                // A recheck in flight has no instant to name; otherwise it is named.
                if let Some(at) = e.next_probe_at() {
                    assert!(client.since_start(at) >= Duration::from_millis(200), "{at}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no token after {attempts} attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_client_recovers_at_the_recheck_without_new_credentials() {
    let server = rejecting_then_granting();
    let mut config = Config::custom(
        server.url(TOKEN_PATH),
        server.url("/api/"),
        credentials("disabled-for-a-while", "the-same-secret").unwrap(),
    );
    config.seed = Some(7);
    config.session.lifecycle.recheck_after = Some(CoreDuration::from_millis(200));
    config.session.lifecycle.recheck_cap = CoreDuration::from_millis(400);
    let client = Arc::new(Client::new(config).unwrap());

    // The first caller gets the rejection, fast, with when the client checks again.
    let first = client.token().await.expect_err("rejected");
    assert_eq!(first.kind(), ErrorKind::CredentialsRejected, "{first}");
    let recheck = first.next_probe_at().expect("the error names the recheck");
    assert!(client.since_start(recheck) >= Duration::from_millis(200), "{recheck}");

    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { token_after_rejections(&client, 500).await })
        })
        .collect();
    let mut failures = 0;
    for caller in callers {
        failures += caller.await.expect("caller");
    }
    assert!(failures > 0, "the callers were held off while the client was rejected");
    // One request, two rechecks: whatever the callers did meanwhile.
    assert_eq!(server.requests_to(TOKEN_PATH), REJECTIONS + 1);
    // And then the token is kept (it lives an hour).
    let token = client.token().await.expect("the token, cached");
    assert_eq!(token.as_str(), "enabled-again");
    assert_eq!(server.requests_to(TOKEN_PATH), REJECTIONS + 1);
}
