//! The basics against the Genesys Cloud emulator, started in this process on 127.0.0.1 (no
//! credentials, no network): a client built with `Client::builder`, an API call through
//! `send`, and the token for another HTTP stack.
//!
//! ```text
//! cargo run -p credflow-reqwest --example send
//! ```

use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Target};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::start(EmulatorConfig::default().with_request_log(false)).await?;
    // In production: `Target::Genesys(env)`, or `Client::from_env()`.
    let target = Target::Custom { token_url: emulator.token_url(), api_base: emulator.api_base() };
    let client =
        Client::builder(target, credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)?).build()?;

    let request = client.request(reqwest::Method::GET, "/api/v2/routing/queues")?.build()?;
    let response = client.send(request).await?;
    println!("GET /api/v2/routing/queues: {}", response.status());

    let token = client.token().await?;
    println!("token {:?}, expires in {:?}", token.fingerprint(), token.expires_in());
    client.shutdown().await;
    Ok(())
}
