//! A token endpoint that grants useless lifetimes, or fails every request asking for the next
//! at once, cannot make the client storm it.
//!
//! Each case starts a scripted server (`credflow_emulator::hostile`) on 127.0.0.1 whose token
//! endpoint answers every request with the same `expires_in`, runs a client against it for a
//! short real window with a small `min_refresh_interval`, and counts the token requests the
//! server saw. The core's invariant (no two token requests closer than `min_refresh_interval`,
//! but for one 401-driven refresh) bounds them by `window / min_refresh_interval + 2`; before it
//! was enforced, a zero lifetime drove hundreds of requests per second.

use std::time::Duration;

use credflow_core::Duration as CoreDuration;
use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config};

const TOKEN_PATH: &str = "/oauth/token";
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(200);
const WINDOW: Duration = Duration::from_millis(1500);

/// A server granting tokens with `expires_in` written as `expires_in` (raw JSON).
fn granting(expires_in: &'static str) -> Hostile {
    Hostile::start(move |req| {
        if req.path() == TOKEN_PATH {
            Reply::json(
                200,
                &format!(
                    r#"{{"access_token":"hostile-token","token_type":"bearer","expires_in":{expires_in}}}"#
                ),
            )
        } else {
            Reply::status(404)
        }
    })
}

fn client(server: &Hostile) -> Client {
    let mut config = Config::custom(
        server.url(TOKEN_PATH),
        server.url("/api/"),
        credentials("storm-client", "storm-secret").unwrap(),
    );
    config.seed = Some(7);
    config.token_wait = WINDOW;
    config.session.lifecycle.min_refresh_interval =
        CoreDuration::from_millis(MIN_REFRESH_INTERVAL.as_millis() as u64);
    Client::new(config).unwrap()
}

/// The most token requests the spacing allows in `WINDOW`.
fn bound() -> usize {
    (WINDOW.as_millis() / MIN_REFRESH_INTERVAL.as_millis()) as usize + 2
}

/// Runs a client against a server granting `expires_in` for `WINDOW`, with a caller asking for
/// a token the whole time; returns the token requests seen and the caller's last answer.
async fn run(expires_in: &'static str) -> (usize, Result<credflow_reqwest::Token, String>) {
    let server = granting(expires_in);
    let client = client(&server);
    let start = tokio::time::Instant::now();
    let mut last = Err("never asked".to_owned());
    while start.elapsed() < WINDOW {
        last = client.token().await.map_err(|e| e.to_string());
        if last.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(client);
    (server.requests_to(TOKEN_PATH), last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetimes_at_or_below_zero_do_not_storm_the_token_endpoint() {
    // Concurrently: the windows overlap, so the test takes one window, not four.
    let cases = ["0", "-5", r#""0.9""#, "-1e30"];
    let runs = futures_join(cases.map(run)).await;
    let seen: Vec<_> = cases.iter().zip(&runs).map(|(e, (n, _))| format!("{e}: {n}")).collect();
    let seen = seen.join(", ");
    eprintln!("token requests in {WINDOW:?} by expires_in: {seen}");
    for (expires_in, (requests, last)) in cases.iter().zip(runs) {
        assert!(requests >= 1, "expires_in {expires_in}: the client asked for a token");
        assert!(
            requests <= bound(),
            "token requests in {WINDOW:?} by expires_in ({seen}): at most {} allowed with \
             min_refresh_interval {MIN_REFRESH_INTERVAL:?}",
            bound()
        );
        // A token dead on arrival is never handed out, and the caller is told why.
        let error = last.expect_err("a token granted already expired was handed out");
        assert!(error.contains("no token"), "expires_in {expires_in}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_lifetime_is_clamped_to_the_maximum_not_defaulted() {
    let server = granting("1e30");
    let client = client(&server);
    let token = client.token().await.expect("a token with a huge lifetime is usable");
    // Clamped to the documented maximum (7 days), not the 1-hour default for unreadable values.
    let max = Duration::from_secs(7 * 24 * 3600);
    assert!(token.expires_in() > max - Duration::from_secs(60), "{:?}", token.expires_in());
    assert!(token.expires_in() <= max);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.requests_to(TOKEN_PATH), 1, "one token, kept");
}

/// The one exception to the spacing, bounded too: an API that refuses every token (401) gets
/// one early refresh per interval, so at most twice the spaced count, where a client that
/// refreshed at once after every 401 would fetch a token per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_refusing_every_token_gets_one_early_refresh_per_interval() {
    let server = Hostile::start(|req| {
        if req.path() == TOKEN_PATH {
            Reply::json(
                200,
                r#"{"access_token":"refused","token_type":"bearer","expires_in":3600}"#,
            )
        } else {
            Reply::json(
                401,
                r#"{"message":"Authentication failed","code":"bad.credentials","status":401}"#,
            )
        }
    });
    let client = client(&server);
    let start = tokio::time::Instant::now();
    let mut calls = 0;
    while start.elapsed() < WINDOW {
        let request = client.request(reqwest::Method::GET, "/api/v2/users/me").unwrap();
        let result = client.send(request.build().unwrap()).await;
        assert!(result.is_err(), "a 401 twice is an error");
        calls += 1;
    }
    drop(client);
    let requests = server.requests_to(TOKEN_PATH);
    let bound = 2 * (WINDOW.as_millis() / MIN_REFRESH_INTERVAL.as_millis()) as usize + 2;
    eprintln!("{requests} token requests for {calls} refused calls in {WINDOW:?}");
    assert!(
        requests <= bound,
        "{requests} token requests for {calls} refused calls in {WINDOW:?} (at most {bound})"
    );
}

/// A token endpoint that fails every request and asks for the next at once (`Retry-After: 0`)
/// gets the backoff's doubling waits all the same, not a request per `min_refresh_interval`:
/// with a 100 ms first wait, at most six requests in 1.5 s (waits of at least 50, 100, 200, 400
/// and 800 ms), where honouring the zero made one per 20 ms (64 before the breaker tripped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_asking_for_no_wait_gets_the_backoff() {
    // An outage, and an error the breaker does not count (retried, but no outage).
    let answers = [(503, "temporarily_unavailable"), (400, "invalid_request")];
    for (status, error) in answers {
        let server = Hostile::start(move |req| {
            if req.path() == TOKEN_PATH {
                Reply::json(status, &format!(r#"{{"error":"{error}"}}"#)).header("Retry-After", "0")
            } else {
                Reply::status(404)
            }
        });
        let mut config = Config::custom(
            server.url(TOKEN_PATH),
            server.url("/api/"),
            credentials("storm-client", "storm-secret").unwrap(),
        );
        config.seed = Some(7);
        config.token_wait = Duration::from_millis(50);
        config.session.lifecycle.min_refresh_interval = CoreDuration::from_millis(20);
        config.session.lifecycle.retry_base = CoreDuration::from_millis(100);
        // The breaker trips only after 64 calls: the backoff alone bounds these.
        let breaker = &mut config.session.token_breaker;
        (breaker.consecutive_failures, breaker.window, breaker.min_calls) = (0, 64, 64);
        let client = Client::new(config).unwrap();
        let start = tokio::time::Instant::now();
        while start.elapsed() < WINDOW {
            assert!(client.token().await.is_err());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(client);
        let requests = server.requests_to(TOKEN_PATH);
        eprintln!("{status} with Retry-After: 0: {requests} token requests in {WINDOW:?}");
        assert!(requests >= 2, "the endpoint was tried again");
        assert!(requests <= 6, "{status}: {requests} token requests in {WINDOW:?} (at most 6)");
    }
}

/// Awaits every future, concurrently.
async fn futures_join<F: std::future::Future + Send + 'static>(futures: [F; 4]) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("a case panicked"));
    }
    out
}
