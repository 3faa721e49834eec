//! The send path beside plain reqwest (issue 15, item 8): in one process, against a minimal
//! hyper server on 127.0.0.1, interleaved rounds of
//!
//! - **plain**: plain reqwest with a fixed `Authorization` header (the baseline);
//! - **send**: `Client::send(request)` (token, pacing, verdicts, retries kept possible);
//! - **token**: `Client::token()`, then plain reqwest with its header;
//!
//! at 16 and 128 concurrent requests, printing each mode's throughput and its ratio to plain.
//! The three modes share one reqwest client (one pool), so only what each adds per request
//! differs: credflow's own API client, which ends each request at `request_timeout` by itself
//! (reqwest's client-wide timeout), for plain requests as for credflow's. The server and the
//! client each run on a tokio runtime of their own (one worker thread each by default), so the
//! client's CPU per request is what limits throughput.
//!
//! ```text
//! cargo bench -p credflow-reqwest --bench hot_path
//! ```
//!
//! Environment: `HOT_PATH_ROUNDS` (default 5, after one warm-up round), `HOT_PATH_REQUESTS`
//! (per mode and round, default 20000), `HOT_PATH_CLIENT_THREADS` (default 1),
//! `HOT_PATH_CONCURRENCY` (comma-separated, default `16,128`), `HOT_PATH_CALLERS_CLIENT` (if
//! set, all three go through a caller's `reqwest::Client` without a timeout of its own, so
//! `send` sets `request_timeout` on each attempt: what that per-request timer costs),
//! `HOT_PATH_GENESYS` (if set, the server's answers carry Genesys Cloud's
//! `inin-correlation-id` and `inin-ratelimit-*` fields, as real ones do).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config, Transport};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::header::{AUTHORIZATION, HeaderValue};

/// The token the server grants and accepts (and the plain mode's fixed header carries).
const TOKEN: &str = "hot-path-bench-token-2f6c1a9e4d7b0c3e8a5f";

/// The client's `request_timeout` (the default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Send,
    Token,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Plain, Mode::Send, Mode::Token];

    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain reqwest",
            Mode::Send => "client.send(req)",
            Mode::Token => "token() + reqwest",
        }
    }
}

/// The server: a token endpoint, and `200 {}` for a request with the bearer token (401
/// without it, so that a mode that forgot the header would show).
async fn handle(
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let authorized = request
        .headers()
        .get(AUTHORIZATION)
        .is_some_and(|v| v.as_bytes().strip_prefix(b"Bearer ") == Some(TOKEN.as_bytes()));
    let _ = request.into_body().collect().await;
    let (status, body) = if path == "/oauth/token" {
        let body =
            format!(r#"{{"access_token":"{TOKEN}","token_type":"bearer","expires_in":86400}}"#);
        (200, Bytes::from(body))
    } else if authorized {
        (200, Bytes::from_static(b"{}"))
    } else {
        (401, Bytes::from_static(b"{}"))
    };
    let mut response = hyper::Response::builder().status(status);
    response = response.header("content-type", "application/json");
    if genesys_fields() {
        // What Genesys Cloud sends with every answer; an allowance nothing here exhausts.
        for (name, value) in [
            ("inin-correlation-id", "5f0e3a4c-3d1b-4c7e-9a43-2b6f1f0c9d11"),
            ("inin-ratelimit-allowed", "1000000000"),
            ("inin-ratelimit-count", "1"),
            ("inin-ratelimit-reset", "60"),
        ] {
            response = response.header(name, value);
        }
    }
    Ok(response.body(Full::new(body)).unwrap_or_default())
}

/// `HOT_PATH_GENESYS` is set: answers carry Genesys Cloud's correlation id and rate-limit
/// fields.
fn genesys_fields() -> bool {
    static SET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SET.get_or_init(|| std::env::var_os("HOT_PATH_GENESYS").is_some())
}

async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}

/// One request in `mode`, its body read.
async fn one(
    mode: Mode,
    client: &Client,
    http: &reqwest::Client,
    url: &reqwest::Url,
    fixed: &HeaderValue,
) {
    let mut request = reqwest::Request::new(reqwest::Method::GET, url.clone());
    let response = match mode {
        Mode::Plain => {
            request.headers_mut().insert(AUTHORIZATION, fixed.clone());
            http.execute(request).await.expect("plain request")
        }
        Mode::Send => client.send(request).await.expect("send"),
        Mode::Token => {
            let token = client.token().await.expect("token");
            request.headers_mut().insert(AUTHORIZATION, token.header_value().clone());
            http.execute(request).await.expect("token request")
        }
    };
    assert_eq!(response.status(), 200, "{}: the server refused the request", mode.name());
    let _ = response.bytes().await.expect("body");
}

/// One measurement: requests per second, and the client's CPU time per request (µs).
#[derive(Clone, Copy, Default)]
struct Measured {
    rate: f64,
    cpu_us: f64,
}

/// `requests` requests in `mode`, `concurrency` at a time.
async fn run(
    mode: Mode,
    client: &Client,
    url: &reqwest::Url,
    concurrency: usize,
    requests: usize,
) -> Measured {
    let http = client.http().clone();
    let mut fixed = HeaderValue::from_str(&format!("Bearer {TOKEN}")).expect("header");
    fixed.set_sensitive(true);
    let counter = Arc::new(AtomicUsize::new(0));
    let cpu = client_cpu_ns();
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, http, url, fixed) =
                (client.clone(), http.clone(), url.clone(), fixed.clone());
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                while counter.fetch_add(1, Ordering::Relaxed) < requests {
                    one(mode, &client, &http, &url, &fixed).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let rate = requests as f64 / start.elapsed().as_secs_f64();
    let cpu = client_cpu_ns().zip(cpu).map(|(end, start)| end.saturating_sub(start));
    Measured { rate, cpu_us: cpu.map_or(f64::NAN, |ns| ns as f64 / 1e3 / requests as f64) }
}

/// CPU time (ns) the client runtime's threads have run so far (`/proc/self/task/*/schedstat`,
/// the threads named "client"); `None` where the kernel does not say.
fn client_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).ok()?;
        if comm.trim_end() != "client" {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The first and third quartiles of `values` (the middle half of the rounds lies between):
/// how far one run's median can be trusted on a machine shared with other work.
fn quartiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let last = values.len().saturating_sub(1);
    (values[last / 4], values[last - last / 4])
}

/// The server's and the client's runtimes, a client with its first token, the API URL.
fn setup(
    threads: usize,
) -> (tokio::runtime::Runtime, tokio::runtime::Runtime, Client, reqwest::Url) {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("server")
        .enable_all()
        .build()
        .expect("server runtime");
    let listener =
        server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("address");
    server_rt.spawn(serve(listener));

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("client")
        .enable_all()
        .build()
        .expect("client runtime");
    let base = format!("http://{addr}");
    let client = client_rt.block_on(async {
        let mut config = Config::custom(
            format!("{base}/oauth/token"),
            format!("{base}/api/v2/"),
            credentials("bench-client", "bench-secret").expect("credentials"),
        );
        assert_eq!(config.request_timeout, REQUEST_TIMEOUT);
        if std::env::var_os("HOT_PATH_CALLERS_CLIENT").is_some() {
            // This bench is the application: it chooses the TLS provider of its own client.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let http = reqwest::Client::builder().build().expect("a caller's client");
            config.transport = Some(Transport::with_api_client(http).expect("transport"));
        }
        let client = Client::new(config).expect("client");
        client.token().await.expect("a first token");
        client
    });
    let url = client.url("users/me").expect("url");
    (server_rt, client_rt, client, url)
}

/// One mode alone, `requests` requests: for a profiler (`perf record`).
fn profile(only: &str, requests: usize, concurrency: usize, threads: usize) {
    let mode = match only {
        "plain" => Mode::Plain,
        "send" => Mode::Send,
        "token" => Mode::Token,
        other => panic!("HOT_PATH_ONLY={other}: plain, send or token"),
    };
    let (server_rt, client_rt, client, url) = setup(threads);
    let measured = client_rt.block_on(run(mode, &client, &url, concurrency, requests));
    println!(
        "{}: {:.0}/s, {:.2} us of client CPU per request",
        mode.name(),
        measured.rate,
        measured.cpu_us
    );
    drop(client);
    client_rt.shutdown_timeout(Duration::from_secs(1));
    server_rt.shutdown_timeout(Duration::from_secs(1));
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run briefly then.
    let benching = std::env::args().any(|a| a == "--bench");
    let rounds: usize = env_or("HOT_PATH_ROUNDS", if benching { 5 } else { 1 });
    let requests: usize = env_or("HOT_PATH_REQUESTS", if benching { 20_000 } else { 200 });
    let threads: usize = env_or("HOT_PATH_CLIENT_THREADS", 1);
    let concurrency: Vec<usize> = std::env::var("HOT_PATH_CONCURRENCY")
        .unwrap_or_else(|_| "16,128".to_owned())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();

    // `HOT_PATH_ONLY=send` (or plain, token): that mode alone, for a profiler.
    if let Ok(only) = std::env::var("HOT_PATH_ONLY") {
        return profile(&only, requests, concurrency.first().copied().unwrap_or(16), threads);
    }
    let (server_rt, client_rt, client, url) = setup(threads);

    println!(
        "hot path: {requests} requests per mode and round, {rounds} rounds (+1 warm-up), \
         client runtime {threads} thread(s), server runtime 1 thread"
    );
    for &c in &concurrency {
        // Per mode: throughputs, CPU per request; per round: send and token against plain.
        let mut rates = [Vec::new(), Vec::new(), Vec::new()];
        let mut cpu = [Vec::new(), Vec::new(), Vec::new()];
        let mut ratios = [Vec::new(), Vec::new()];
        for round in 0..=rounds {
            // Interleaved, the order rotated each round so no mode always runs first.
            let mut measured = [Measured::default(); 3];
            for k in 0..3 {
                let i = (round + k) % 3;
                let mode = Mode::ALL[i];
                measured[i] = client_rt.block_on(run(mode, &client, &url, c, requests));
            }
            if round == 0 {
                continue;
            }
            for i in 0..3 {
                rates[i].push(measured[i].rate);
                cpu[i].push(measured[i].cpu_us);
            }
            let [plain, send, token] = measured;
            ratios[0].push(send.rate / plain.rate);
            ratios[1].push(token.rate / plain.rate);
            println!(
                "  c={c:<4} round {round:>2}: plain {:>6.0}/s {:>5.1} us  send {:>6.0}/s {:>5.1} us ({:.3}x)  token {:>6.0}/s {:>5.1} us ({:.3}x)",
                plain.rate,
                plain.cpu_us,
                send.rate,
                send.cpu_us,
                send.rate / plain.rate,
                token.rate,
                token.cpu_us,
                token.rate / plain.rate,
            );
        }
        let [plain_cpu, send_cpu, token_cpu] = cpu.each_mut().map(|v| median(v));
        let [(send_q1, send_q3), (token_q1, token_q3)] = ratios.each_mut().map(|v| quartiles(v));
        println!(
            "c={c}: throughput (median of rounds) plain {:.0}/s; send/plain {:.3} \
             (middle half of rounds {send_q1:.3}-{send_q3:.3}); token/plain {:.3} \
             ({token_q1:.3}-{token_q3:.3})",
            median(&mut rates[0]),
            median(&mut ratios[0]),
            median(&mut ratios[1]),
        );
        println!(
            "c={c}: client CPU per request (median) plain {plain_cpu:.2} us, send {send_cpu:.2} us, \
             token {token_cpu:.2} us; plain/send {:.3}, plain/token {:.3}",
            plain_cpu / send_cpu,
            plain_cpu / token_cpu,
        );
    }
    let counters = client.counters();
    println!("client counters: {counters:?}");
    drop(client);
    client_rt.shutdown_timeout(Duration::from_secs(1));
    server_rt.shutdown_timeout(Duration::from_secs(1));
}
