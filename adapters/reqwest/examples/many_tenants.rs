//! One process, many OAuth clients (one per customer org, say), sharing one `Transport`: one
//! connection pool and one TLS setup instead of one per client. Against the emulator, started
//! in this process on 127.0.0.1.
//!
//! ```text
//! cargo run -p credflow-reqwest --example many_tenants
//! ```

use credflow_emulator::{ClientConfig, Emulator, EmulatorConfig, PERMISSION_QUEUE_VIEW};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Target, Transport};

const TENANTS: usize = 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tenants: Vec<(String, String)> =
        (0..TENANTS).map(|i| (format!("tenant-{i}"), format!("secret-{i}"))).collect();
    let config = EmulatorConfig::default().with_request_log(false).with_clients(
        tenants
            .iter()
            .map(|(id, secret)| {
                ClientConfig::new(id, secret).with_permission(PERMISSION_QUEUE_VIEW)
            })
            .collect(),
    );
    let emulator = Emulator::start(config).await?;

    let transport = Transport::new()?;
    let mut clients = Vec::new();
    for (id, secret) in &tenants {
        let target =
            Target::Custom { token_url: emulator.token_url(), api_base: emulator.api_base() };
        clients.push(
            Client::builder(target, credentials(id, secret)?)
                .transport(transport.clone())
                .build()?,
        );
    }
    for (client, (id, _)) in clients.iter().zip(&tenants) {
        let request = client.request(reqwest::Method::GET, "/api/v2/routing/queues")?.build()?;
        println!("{id}: {}", client.send(request).await?.status());
    }
    let seen = emulator.counters();
    println!(
        "{} clients, {} token requests, {} API requests",
        clients.len(),
        seen.token.requests,
        seen.api.requests
    );
    Ok(())
}
