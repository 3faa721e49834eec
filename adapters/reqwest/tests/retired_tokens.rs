//! A token the client replaced (a refresh, a 401) is still masked for a while: a request sent
//! with it may be answered after the session moved on, and what the server echoes of it goes
//! to callers, the CLI's output and `credflow proxy`'s local clients through `Client::redact`.
//! The session itself masks only the token it holds. Against a token server on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Target};

#[tokio::test]
async fn the_tokens_replaced_last_are_masked_too() {
    let issued = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&issued);
    let server = Hostile::start(move |_| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(
            200,
            &format!(
                r#"{{"access_token":"token-number-{n}-abcdef","token_type":"bearer","expires_in":3600}}"#
            ),
        )
    });
    let target =
        Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/api/") };
    let client = Client::builder(target, credentials("id", "secret").unwrap())
        .session({
            let mut session = credflow_reqwest::credflow_core::SessionConfig::default();
            session.lifecycle.min_refresh_interval =
                credflow_reqwest::credflow_core::Duration::ZERO;
            session
        })
        .build()
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let token = client.token().await.unwrap();
        seen.push(token.as_str().to_owned());
        assert!(client.invalidate(&token));
    }
    let current = client.token().await.unwrap().as_str().to_owned();
    assert_eq!(current, "token-number-4-abcdef");
    let echo = format!("401: {} {} {} {current}", seen[0], seen[1], seen[2]);
    let shown = client.redact(&echo).into_owned();
    // The current token and the two it replaced last are masked; an older one is not kept.
    for masked in [&seen[1], &seen[2], &current] {
        assert!(!shown.contains(masked.as_str()), "{masked} in {shown}");
    }
    assert!(shown.contains(&seen[0]), "only the last two are kept: {shown}");
    // A cut echo of a replaced token at the end of a cut body, too.
    let cut = format!("error: {}", &seen[2][..10]);
    let shown = client.redact_cut_bytes(cut.as_bytes()).into_owned();
    assert_eq!(String::from_utf8(shown).unwrap(), "error: [redacted]");
}
