//! Sending with another HTTP stack: take the token with `TokenSource::token`, and when the API
//! answers 401, report it with `invalidate` and retry once with the next token. Against the
//! emulator, started in this process on 127.0.0.1, which revokes every token midway.
//!
//! ```text
//! cargo run -p credflow-reqwest --example token_source
//! ```

use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Error, Target, TokenSource};

/// The application's call, written against the trait (a mock stands in for it in tests).
async fn get(source: &dyn TokenSource, http: &reqwest::Client, url: &str) -> Result<u16, Error> {
    let token = source.token().await?;
    let send = |token: &credflow_reqwest::Token| {
        http.get(url).header(reqwest::header::AUTHORIZATION, token.header_value()).send()
    };
    let mut status = send(&token).await.map_err(|e| Error::from_reqwest("GET", e))?.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        println!("  401: reporting token {} and retrying once", token.generation());
        source.invalidate(&token);
        let token = source.token().await?;
        status = send(&token).await.map_err(|e| Error::from_reqwest("GET", e))?.status();
    }
    Ok(status.as_u16())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::start(EmulatorConfig::default().with_request_log(false)).await?;
    let target = Target::Custom { token_url: emulator.token_url(), api_base: emulator.api_base() };
    let client =
        Client::builder(target, credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)?).build()?;

    // The application's own HTTP stack, with the TLS provider it chooses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let url = client.url("/api/v2/routing/queues")?.to_string();

    println!("first call: {}", get(&client, &http, &url).await?);
    emulator.revoke_all_tokens();
    println!("after the server revoked every token: {}", get(&client, &http, &url).await?);
    println!("token requests: {}", emulator.counters().token.requests);
    Ok(())
}
