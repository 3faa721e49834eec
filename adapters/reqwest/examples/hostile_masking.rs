//! How long masking takes on texts made to be costly to search, as `credflow proxy` masks an
//! upstream's answer: the token endpoint (on 127.0.0.1) issues a token of `n` `A`s and
//! `B0001`, then the client masks a 64 KiB error body of `A`s and 90 header values of 4 000
//! `A`s (all of them joined, as the proxy looks first, then one by one). Each figure is the
//! median of several runs; the session's lock is held for each masking call.
//!
//! ```sh
//! cargo run --release -p credflow-reqwest --example hostile_masking
//! ```

use std::time::{Duration, Instant};

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config};

/// The median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

#[tokio::main]
async fn main() {
    let body = vec![b'A'; 65536];
    let header = vec![b'A'; 4000];
    println!("| token | 64 KiB body of `A`s | 90 headers of 4 000 `A`s |");
    println!("|---|---|---|");
    for (name, token) in [
        ("`A`×8000 + `B0001`", format!("{}B0001", "A".repeat(8000))),
        ("`A`×2000 + `B0001`", format!("{}B0001", "A".repeat(2000))),
        ("29 bytes (`tok-…`)", "tok-0123456789abcdef012345678".to_owned()),
    ] {
        let issued = token.clone();
        let server = Hostile::start(move |_| {
            Reply::json(
                200,
                &format!(
                    r#"{{"access_token":"{issued}","token_type":"bearer","expires_in":3600}}"#
                ),
            )
        });
        let mut config = Config::custom(
            server.url("/oauth/token"),
            server.url("/api"),
            credentials("client-1", "secret-1").unwrap(),
        );
        config.seed = Some(7);
        let client = Client::new(config).unwrap();
        assert_eq!(client.token().await.unwrap().as_str(), token);
        let runs = if token.len() > 100 { 3 } else { 20 };
        let body_time = median(runs, || {
            std::hint::black_box(client.redact_bytes(&body));
        });
        let headers_time = median(runs, || {
            let mut all = Vec::with_capacity(90 * 4001);
            for _ in 0..90 {
                all.extend_from_slice(&header);
                all.push(b'\n');
            }
            if matches!(client.redact_bytes(&all), std::borrow::Cow::Owned(_)) {
                for _ in 0..90 {
                    std::hint::black_box(client.redact_bytes(&header));
                }
            }
        });
        println!("| {name} | {body_time:.2?} | {headers_time:.2?} |");
    }
}
