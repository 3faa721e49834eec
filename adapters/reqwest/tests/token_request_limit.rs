//! A shared `Transport` bounds the token requests its clients send at once
//! (`Transport::with_token_request_limit`): the others wait their turn, each within its own
//! token timeout, and none is lost.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{AuthMethod, Client, Target, Transport};

/// How long the server takes to answer a token request.
const ANSWER_DELAY: Duration = Duration::from_millis(300);

fn token_for(client_id: &str) -> Reply {
    Reply::json(
        200,
        &format!(r#"{{"access_token":"tok-{client_id}","token_type":"bearer","expires_in":3600}}"#),
    )
}

fn target(server: &Hostile) -> Target {
    Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/api/") }
}

fn limit(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("not zero")
}

/// The most requests that arrived within any window shorter than the server's answer delay:
/// with `limit` slots, a request can start only after an earlier one's answer was read, so no
/// `limit + 1` of them arrive closer together than the delay, however the threads are scheduled.
fn most_arrivals_within(arrivals: &mut [Instant], window: Duration) -> usize {
    arrivals.sort();
    (0..arrivals.len())
        .map(|i| arrivals[i..].iter().take_while(|at| **at - arrivals[i] < window).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_shared_transport_sends_at_most_its_limit_of_token_requests_at_once() {
    let server =
        Hostile::start(|req| token_for(&req.form_value("client_id")).delayed(ANSWER_DELAY));
    let transport = Transport::new().unwrap().with_token_request_limit(limit(2));
    let clients: Vec<Client> = (0..6)
        .map(|i| {
            Client::builder(target(&server), credentials(&format!("tenant-{i}"), "s").unwrap())
                .auth_method(AuthMethod::ClientSecretPost)
                .transport(transport.clone())
                .token_timeout(Duration::from_secs(5))
                .token_wait(Duration::from_secs(5))
                .seed(i)
                .build()
                .unwrap()
        })
        .collect();
    for (i, client) in clients.iter().enumerate() {
        let token = client.token().await.expect("every client gets its token");
        assert_eq!(token.as_str(), format!("tok-tenant-{i}"));
    }
    let mut arrivals: Vec<Instant> = server.requests().iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), 6, "one token request per client, none retried");
    let together = most_arrivals_within(&mut arrivals, ANSWER_DELAY);
    assert!(together <= 2, "{together} token requests were in flight at once (limit 2)");
}

#[tokio::test]
async fn a_token_request_waiting_for_a_slot_ends_by_its_timeout_and_is_sent_later() {
    // `slow` holds the only slot for a second; `quick`'s token request waits for it, within its
    // own 300 ms timeout.
    let server = Hostile::start(|req| match req.form_value("client_id").as_str() {
        "slow" => token_for("slow").delayed(Duration::from_secs(1)),
        id => token_for(id),
    });
    let transport = Transport::new().unwrap().with_token_request_limit(limit(1));
    let build = |id: &str, timeout: Duration, wait: Duration| {
        Client::builder(target(&server), credentials(id, "s").unwrap())
            .auth_method(AuthMethod::ClientSecretPost)
            .transport(transport.clone())
            .token_timeout(timeout)
            .token_wait(wait)
            .seed(5)
            .build()
            .unwrap()
    };
    let slow = build("slow", Duration::from_secs(5), Duration::from_secs(5));
    while server.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let quick = build("quick", Duration::from_millis(300), Duration::from_millis(600));
    let error = quick.token().await.expect_err("no slot within the token wait");
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(950), "waited {waited:?}, past its token wait");
    assert!(error.to_string().contains("no answer in time"), "{error}");
    assert_eq!(server.requests().len(), 1, "quick's request was not sent while slow held the slot");
    // Not lost: once slow's answer is in, quick's token request gets the slot.
    assert_eq!(slow.token().await.unwrap().as_str(), "tok-slow");
    let deadline = Instant::now() + Duration::from_secs(3);
    let token = loop {
        match quick.token().await {
            Ok(token) => break token,
            Err(_) if Instant::now() < deadline => {}
            Err(e) => panic!("quick never got its token: {e}"),
        }
    };
    assert_eq!(token.as_str(), "tok-quick");
}

/// `NonZeroUsize::MAX` ("no limit") is more than tokio's semaphore holds: it panicked
/// ("a semaphore may not have more than MAX_PERMITS permits"); it is the most it holds, and
/// tokens are fetched through it.
#[tokio::test]
async fn the_largest_limit_is_no_panic() {
    let server = Hostile::start(|_| token_for("max"));
    let transport = Transport::new().unwrap().with_token_request_limit(NonZeroUsize::MAX);
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/api/") };
    let client = Client::builder(target, credentials("max", "secret").unwrap())
        .transport(transport)
        .build()
        .unwrap();
    assert_eq!(client.token().await.unwrap().as_str(), "tok-max");
}
