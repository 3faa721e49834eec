//! credflow as a tower layer over a hyper-util client (feature `tower`), against the emulator
//! started in this process on 127.0.0.1.
//!
//! ```text
//! cargo run -p credflow-reqwest --features tower --example tower_hyper
//! ```

use bytes::Bytes;
use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use credflow_reqwest::config::credentials;
use credflow_reqwest::tower::CredflowLayer;
use credflow_reqwest::{Client, Target};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::start(EmulatorConfig::default().with_request_log(false)).await?;
    let target = Target::Custom { token_url: emulator.token_url(), api_base: emulator.api_base() };
    let client =
        Client::builder(target, credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)?).build()?;

    // The inner client sends `reqwest::Body`, credflow's body type.
    let hyper = HyperClient::builder(TokioExecutor::new()).build_http::<reqwest::Body>();
    let service = CredflowLayer::new(client.clone()).layer(hyper);

    let request = http::Request::get(client.url("/api/v2/routing/queues")?.as_str())
        .body(Full::new(Bytes::new()))?;
    let response = service.oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("GET /api/v2/routing/queues through tower: {status}, {} bytes", body.len());
    Ok(())
}
