//! What a process tells its fleet about a 429: the wait the session read from the response,
//! wherever the server wrote it. Genesys Cloud writes it into the body (`Retry the request in
//! [N] seconds`) and may send no `Retry-After`; the session honours the body's wait, and the
//! fleet must hold every process for it too, not for a bare 429's default.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use credflow_core::Priority;
use credflow_core::ratelimit::RateLimitSnapshot;
use credflow_core::secret::Fingerprint;
use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::shared::{
    Admission, BoxFuture, FleetScope, Lease, Refresh, SharedStore, SharedToken, StoreError,
};
use credflow_reqwest::{Client, Config};
use reqwest::Method;

const TOKEN_PATH: &str = "/oauth/token";

/// A fleet of one: grants the lease, admits everything, and records the 429s reported.
#[derive(Debug, Default)]
struct Recording {
    rate_limited: Mutex<Vec<Option<Duration>>>,
}

impl SharedStore for Recording {
    fn refresh<'a>(
        &'a self,
        _: &'a FleetScope,
        _: Option<Fingerprint>,
    ) -> BoxFuture<'a, Result<Refresh, StoreError>> {
        Box::pin(async { Ok(Refresh::Lease(Lease::new([1; 16]))) })
    }
    fn publish<'a>(
        &'a self,
        _: &'a FleetScope,
        _: Lease,
        _: &'a SharedToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async { Ok(true) })
    }
    fn release<'a>(&'a self, _: &'a FleetScope, _: Lease) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn admit<'a>(
        &'a self,
        _: &'a FleetScope,
        _: Priority,
        _: Duration,
    ) -> BoxFuture<'a, Result<Admission, StoreError>> {
        Box::pin(async { Ok(Admission::Now) })
    }
    fn observe<'a>(
        &'a self,
        _: &'a FleetScope,
        _: RateLimitSnapshot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn rate_limited<'a>(
        &'a self,
        _: &'a FleetScope,
        retry_after: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.rate_limited.lock().unwrap().push(retry_after);
        Box::pin(async { Ok(()) })
    }
}

/// A server whose API answers every request 429 with `reply`'s headers and body.
fn limiting(reply: fn() -> Reply) -> Hostile {
    Hostile::start(move |req| {
        if req.path() == TOKEN_PATH {
            Reply::json(200, r#"{"access_token":"t","token_type":"bearer","expires_in":3600}"#)
        } else {
            reply()
        }
    })
}

/// Sends one request (not retried) to `server` from a fleet process; returns what it reported
/// to the fleet about 429s.
async fn reported(server: &Hostile) -> Vec<Option<Duration>> {
    let store = Arc::new(Recording::default());
    let mut config = Config::custom(
        server.url(TOKEN_PATH),
        server.url("/api/"),
        credentials("fleet-client", "fleet-secret").unwrap(),
    )
    .with_shared(store.clone());
    config.seed = Some(7);
    config.session.retry.max_retries = 0;
    let client = Client::new(config).unwrap();
    let request = client.request(Method::GET, "v2/users/me").unwrap().build().unwrap();
    let answer = client.send(request).await;
    assert_eq!(answer.unwrap_err().status(), Some(429));
    // The report goes in the background.
    for _ in 0..100 {
        if !store.rate_limited.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.requests_to("/api/v2/users/me"), 1);
    store.rate_limited.lock().unwrap().clone()
}

/// A Genesys 429 without `Retry-After`: the fleet is told the body's wait (before, a bare 429).
#[tokio::test]
async fn the_fleet_hears_the_wait_genesys_writes_into_a_429s_body() {
    let server = limiting(|| {
        Reply::json(
            429,
            r#"{"message":"Rate limit exceeded the maximum. Retry the request in [7] seconds","code":"too.many.requests.retry.after","status":429}"#,
        )
    });
    assert_eq!(reported(&server).await, [Some(Duration::from_secs(7))]);
}

/// A `Retry-After` is reported as before, and a 429 that names no wait as a bare one.
#[tokio::test]
async fn the_fleet_hears_a_retry_after_and_a_bare_429_as_before() {
    let server = limiting(|| Reply::status(429).header("Retry-After", "5"));
    assert_eq!(reported(&server).await, [Some(Duration::from_secs(5))]);
    let server = limiting(|| Reply::status(429));
    assert_eq!(reported(&server).await, [None]);
}
