//! credflow inside a reqwest-middleware stack, against the emulator on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config};
use http::Extensions;
use reqwest_middleware::{ClientBuilder, Middleware, Next};

/// Counts the attempts that reach it, and checks each carries a bearer token.
struct Witness(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl Middleware for Witness {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap_or("").to_owned());
        assert!(auth.is_some_and(|a| a.starts_with("Bearer ")), "credflow attached the token");
        self.0.fetch_add(1, Ordering::SeqCst);
        next.run(req, extensions).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_adoption_with_refresh_and_retry() {
    let emu = Emulator::start(EmulatorConfig::default().with_request_log(false)).await.unwrap();
    let config = Config::custom(
        emu.token_url(),
        emu.api_base(),
        credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap(),
    );
    let credflow = Client::new(config).unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    // The stack's client is the application's, and so is its TLS provider: credflow installs none.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = ClientBuilder::new(reqwest::Client::new())
        .with(credflow.clone())
        .with(Witness(Arc::clone(&attempts)))
        .build();
    let url = credflow.url("/api/v2/routing/queues").unwrap();
    assert_eq!(http.get(url.clone()).send().await.unwrap().status(), 200);
    emu.revoke_all_tokens();
    assert_eq!(http.get(url).send().await.unwrap().status(), 200, "401 handled inside the stack");
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "first call, then the 401 and its retry");
    assert_eq!(emu.counters().token.requests, 2);
}
