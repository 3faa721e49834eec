//! A request's future does not borrow its client: the caller may drop the last `Client` while
//! a request runs. The request still gets what it needs to end: the client's token driver runs
//! as long as a request holds the client (here a 401 asks for a new token after the drop).

use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Target};
use reqwest::Method;

const TOKEN: &str = r#"{"access_token":"tok-1","token_type":"bearer","expires_in":3600}"#;

/// A client of `server`'s token endpoint and API.
fn client(server: &Hostile) -> Client {
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/api/") };
    Client::builder(target, credentials("client-1", "secret-1").unwrap()).seed(7).build().unwrap()
}

#[tokio::test]
async fn a_request_kept_after_its_client_is_dropped_gets_a_new_token_and_ends() {
    // Every API answer is a 401: the request takes a new token, retries once, and fails.
    let server = Hostile::start(|req| {
        if req.path() == "/oauth/token" { Reply::json(200, TOKEN) } else { Reply::status(401) }
    });
    let client = client(&server);
    let request = client.request(Method::GET, "me").unwrap().build().unwrap();
    let sent = client.send(request);
    drop(client);
    let ended = tokio::time::timeout(Duration::from_secs(10), sent).await;
    let e = ended.expect("the request was left waiting for a token").expect_err("401 twice");
    assert!(e.to_string().contains("401"), "{e}");
    assert_eq!(server.requests_to("/api/me"), 2, "the first attempt and the retry");
    assert_eq!(server.requests_to("/oauth/token"), 2, "a new token for the retry");
}

/// A 401 seen through `send` withdraws the token from what `Client::token` hands out at once,
/// not when the next token comes: a caller of `token()` meanwhile waits for the new one.
#[tokio::test]
async fn a_token_refused_through_send_is_not_handed_out_by_token() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let grants = AtomicUsize::new(0);
    let server = Hostile::start(move |req| match req.path() {
        "/oauth/token" if grants.fetch_add(1, Ordering::SeqCst) == 0 => Reply::json(200, TOKEN),
        // The second token takes its time: the window where only the withdrawal protects.
        "/oauth/token" => {
            Reply::json(200, &TOKEN.replace("tok-1", "tok-2")).delayed(Duration::from_millis(1500))
        }
        _ if req.header("authorization") == Some("Bearer tok-1") => Reply::status(401),
        _ => Reply::json(200, "{}"),
    });
    let client = client(&server);
    assert_eq!(client.token().await.unwrap().as_str(), "tok-1");
    let request = client.request(Method::GET, "me").unwrap().build().unwrap();
    let sent = tokio::spawn(client.send(request));
    while server.requests_to("/oauth/token") < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The 401 came and the new token is on its way: tok-1 must not be handed out.
    if let Ok(token) = tokio::time::timeout(Duration::from_millis(300), client.token()).await {
        assert_eq!(token.unwrap().as_str(), "tok-2", "the refused token was handed out");
    }
    let response = sent.await.unwrap().expect("retried with the new token");
    assert_eq!(response.status(), 200);
    assert_eq!(client.token().await.unwrap().as_str(), "tok-2");
}
