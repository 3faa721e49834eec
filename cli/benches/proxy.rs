//! What `credflow proxy` costs: the same HTTP client sends the same GETs to a minimal upstream
//! directly, then through the proxy (release build), at 1, 16 and 128 requests in flight; prints
//! throughput, the ratio, and the latency the hop adds (p50, p99). Loopback only; the upstream
//! answers `{}` at once and sends no rate-limit headers, so the proxy never paces: this is the
//! price of the hop itself (parse, queue, token, forward, stream back).
//!
//! `cargo bench -p credflow-cli --bench proxy` (`PROXY_BENCH_SECONDS`, default 3, per run;
//! `PROXY_WORKER_THREADS=N` gives the proxy N tokio workers instead of one per core).
//! Not a test: nothing here asserts a time. BENCHMARKS.md has the numbers of the last run.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

const TOKEN: &str = r#"{"access_token":"bench-token","token_type":"bearer","expires_in":86400}"#;

/// A minimal upstream: `/oauth/token` grants a token, everything else answers `{}`.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: Request<hyper::body::Incoming>| async move {
                        let body =
                            if request.uri().path() == "/oauth/token" { TOKEN } else { "{}" };
                        let mut response =
                            Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                        response
                            .headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(response)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Sends GET `url` from `concurrency` tasks for `seconds`: requests per second and the sorted
/// latencies.
async fn load(
    client: &reqwest::Client,
    url: &str,
    concurrency: usize,
    seconds: Duration,
) -> (f64, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, stop) = (client.clone(), url.to_owned(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let response = client.get(&url).send().await.expect("an answer");
                    assert_eq!(response.status(), 200);
                    let _ = response.bytes().await.expect("a body");
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(seconds).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    (latencies.len() as f64 / elapsed, latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seconds = Duration::from_secs(
        std::env::var("PROXY_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3),
    );
    let upstream = upstream().await;
    let mut proxy = tokio::process::Command::new(env!("CARGO_BIN_EXE_credflow"));
    proxy.env_clear();
    // The proxy's tokio runtime size, if the run sets one (default: one worker per core).
    if let Ok(threads) = std::env::var("PROXY_WORKER_THREADS") {
        proxy.env("TOKIO_WORKER_THREADS", threads);
    }
    let mut proxy = proxy
        .env("GENESYS_CLIENT_ID", "bench")
        .env("GENESYS_CLIENT_SECRET", "bench-secret")
        .env("CREDFLOW_LOG", "off")
        .args(["proxy", "--listen", "127.0.0.1:0"])
        .args(["--token-url", &format!("http://{upstream}/oauth/token")])
        .args(["--api-base", &format!("http://{upstream}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the proxy started");
    let mut lines = BufReader::new(proxy.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let proxy_base =
        first.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let direct = format!("http://{upstream}/api/v2/bench");
    let proxied = format!("{proxy_base}/api/v2/bench");
    // Warm up both paths (connections, the proxy's token).
    for url in [&direct, &proxied] {
        let _ = load(&client, url, 16, Duration::from_millis(500)).await;
    }
    println!(
        "{} s per run, {} cores",
        seconds.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| in flight | direct req/s | proxied req/s | ratio | direct p50 / p99 | proxied p50 / p99 | added p50 / p99 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for concurrency in [1, 16, 128] {
        let (direct_rps, direct_lat) = load(&client, &direct, concurrency, seconds).await;
        let (proxy_rps, proxy_lat) = load(&client, &proxied, concurrency, seconds).await;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let (d50, d99) = (percentile(&direct_lat, 0.5), percentile(&direct_lat, 0.99));
        let (p50, p99) = (percentile(&proxy_lat, 0.5), percentile(&proxy_lat, 0.99));
        println!(
            "| {concurrency} | {direct_rps:.0} | {proxy_rps:.0} | {:.2} | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {:.0} / {:.0} µs |",
            proxy_rps / direct_rps,
            us(d50),
            us(d99),
            us(p50),
            us(p99),
            us(p50) - us(d50),
            us(p99) - us(d99),
        );
    }
    let _ = proxy.kill().await;
}
