//! credflow's target and tuning read from the service's own configuration file (feature
//! `serde`), the secret from elsewhere (here the emulator's demo secret; in production a
//! mounted secret file). Against the emulator, started in this process on 127.0.0.1.
//!
//! ```text
//! cargo run -p credflow-reqwest --features serde --example settings_file
//! ```

use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use credflow_reqwest::config::{Settings, credentials};
use credflow_reqwest::{Client, Target};

/// The service's configuration file, with credflow's part in it.
#[derive(serde::Deserialize)]
struct ServiceConfig {
    target: Target,
    credflow: Settings,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::start(EmulatorConfig::default().with_request_log(false)).await?;
    let file = format!(
        r#"{{
            "target": {{ "custom": {{ "token_url": "{}", "api_base": "{}" }} }},
            "credflow": {{
                "auth_method": "client_secret_post",
                "request_timeout": "10s",
                "session": {{ "retry": {{ "max_retries": 2 }}, "lifecycle": {{ "refresh_margin": "90s" }} }}
            }}
        }}"#,
        emulator.token_url(),
        emulator.api_base()
    );
    let config: ServiceConfig = serde_json::from_str(&file)?;
    let client = Client::builder(config.target, credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)?)
        .settings(config.credflow)
        .build()?;
    let request = client.request(reqwest::Method::GET, "/api/v2/routing/queues")?.build()?;
    println!("GET /api/v2/routing/queues: {}", client.send(request).await?.status());
    // Written back, without the secret.
    let mut written = credflow_reqwest::Config::token_only(
        client.token_url(),
        credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)?,
    );
    written.request_timeout = std::time::Duration::from_secs(10);
    println!("{}", serde_json::to_string_pretty(&written)?);
    Ok(())
}
