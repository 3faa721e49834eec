//! Many tenants in one process: the memory of N credflow clients (one OAuth client each, a
//! token held), each with HTTP clients of its own, or all sharing one `Transport`. Prints the
//! resident set size each configuration adds, per client. Not timed.
//!
//! ```text
//! cargo bench -p credflow-reqwest --bench tenants            # 1000 clients
//! cargo bench -p credflow-reqwest --bench tenants -- 200     # another count
//! ```
//!
//! The emulator runs in this process; each configuration is measured in a child process of
//! its own (this program, re-run), so that neither the emulator nor the other configuration
//! counts in its resident set.

use std::alloc::System;
use std::process::Command;
use std::time::Duration;

use cap::Cap;
use credflow_emulator::{ClientConfig, Emulator, EmulatorConfig};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Target, Transport};

/// The system allocator, counting the bytes live on the heap and their peak: what the clients
/// hold (live) is told apart from what the allocator keeps of a past peak (RSS beyond it).
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The resident set size of this process, in bytes (Linux: `/proc/self/statm`).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn tenant(i: usize) -> (String, String) {
    (format!("tenant-{i}"), format!("tenant-secret-{i}"))
}

/// The child: builds `count` clients (`shared`: one transport), waits for each one's token,
/// and prints the resident set size they added.
fn measure(count: usize, shared: bool, token_url: String, api_base: String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        // A first client warms up what every configuration pays once (TLS roots, the runtime).
        let transport = Transport::new().expect("a transport");
        let before = rss().unwrap_or(0);
        let live_before = ALLOCATOR.allocated();
        let mut clients = Vec::with_capacity(count);
        for i in 0..count {
            let (id, secret) = tenant(i);
            let target =
                Target::Custom { token_url: token_url.clone(), api_base: api_base.clone() };
            let mut builder =
                Client::builder(target, credentials(&id, &secret).expect("credentials"))
                    .token_wait(Duration::from_secs(60));
            if shared {
                builder = builder.transport(transport.clone());
            }
            clients.push(builder.build().expect("a client"));
        }
        for client in &clients {
            client.token().await.expect("a token");
        }
        let after = rss().unwrap_or(0);
        let added = after.saturating_sub(before);
        let live = ALLOCATOR.allocated().saturating_sub(live_before);
        let peak = ALLOCATOR.max_allocated().saturating_sub(live_before);
        println!(
            "{:<26} {count:>5} clients: +{:>6.1} MB RSS, {:>6.1} KiB per client; \
             heap live +{:>6.1} MB ({:>5.1} KiB per client), peak +{:>6.1} MB",
            if shared { "one shared Transport" } else { "HTTP clients of their own" },
            added as f64 / 1e6,
            added as f64 / 1024.0 / count as f64,
            live as f64 / 1e6,
            live as f64 / 1024.0 / count as f64,
            peak as f64 / 1e6,
        );
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if let [mode, count, token_url, api_base] = args.as_slice()
        && (mode == "shared" || mode == "own")
    {
        let count = count.parse().expect("a count");
        return measure(count, mode == "shared", token_url.clone(), api_base.clone());
    }
    let count: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let clients = (0..count)
        .map(|i| {
            let (id, secret) = tenant(i);
            ClientConfig::new(id, secret)
        })
        .collect();
    let config = EmulatorConfig::default()
        .with_request_log(false)
        .with_clients(clients)
        .with_token_rate_limit(1_000_000, Duration::from_secs(1))
        .with_api_rate_limit(1_000_000, Duration::from_secs(1));
    let emulator = Emulator::start_background(config).expect("the emulator");
    let exe = std::env::current_exe().expect("this program");
    for mode in ["shared", "own"] {
        let status = Command::new(&exe)
            .args([mode, &count.to_string(), &emulator.token_url(), &emulator.api_base()])
            .status()
            .expect("the measuring child");
        assert!(status.success(), "{mode}: {status}");
    }
}
