//! What `credflow proxy` costs: the same HTTP client sends the same GETs to a minimal upstream
//! directly and through the proxy (release build), at 1, 16 and 128 requests in flight; prints
//! throughput, the ratio, the latency the hop adds (p50, p99), and the CPU time each process
//! spent per request. Loopback only; the upstream answers `{}` at once and sends no rate-limit
//! headers, so the proxy never paces: this is the price of the hop itself (parse, queue, token,
//! forward, stream back).
//!
//! Three processes: this one (the client), the upstream (this binary again, started with
//! `PROXY_BENCH_UPSTREAM=1`) and the proxy, so that the CPU each spends is measured apart (from
//! `/proc/PID/stat`). Direct and proxied runs alternate, `PROXY_BENCH_ROUNDS` rounds (default
//! 5) of `PROXY_BENCH_SECONDS` each (default 1), the order swapped every round, so that a
//! slice of a busy machine falls on both; the table has the medians of the rounds, and the
//! latencies of all rounds pooled.
//!
//! The CPU columns make the ceiling concrete: the client, the upstream and the proxy share the
//! cores, so when the cores are the limit the ratio cannot pass (client + upstream) per direct
//! request over (client + upstream + proxy) per proxied request.
//!
//! `cargo bench -p credflow-cli --bench proxy` (`PROXY_BENCH_IN_FLIGHT=16,128` picks the
//! concurrencies; `PROXY_BENCH_ALSO=before:bin=/tmp/credflow-before` measures another build or setting of the
//! proxy in the same rounds; `PROXY_BENCH_BARE=1` adds the bare forwarder). Not a test: nothing here asserts a time. BENCHMARKS.md has the
//! numbers of the last run.

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

/// A minimal upstream: `/oauth/token` grants a token, everything else answers `{}`. Serves
/// until its stdin closes (the bench ended or died).
async fn upstream() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("upstream listening on http://{}", listener.local_addr().unwrap());
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
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = stdin.next_line().await {}
}

/// A bare forwarder for reference (`PROXY_BENCH_BARE=1`): hyper's server and a reqwest
/// client on one thread, as the proxy has them, and nothing of credflow's (no token, pacing,
/// retries, header hygiene or masking): what any proxy built on these two costs at least.
/// Serves until its stdin closes.
async fn bare(upstream: String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("bare forwarder listening on http://{}", listener.local_addr().unwrap());
    let client = reqwest::Client::builder().no_proxy().tcp_nodelay(true).build().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let (client, upstream) = (client.clone(), upstream.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (client, upstream) = (client.clone(), upstream.clone());
                        async move {
                            let url = format!("http://{upstream}{}", request.uri());
                            let (parts, body) = request.into_parts();
                            let mut headers = parts.headers;
                            headers.remove("host");
                            let response = client
                                .request(parts.method, url)
                                .headers(headers)
                                .body(reqwest::Body::wrap(body))
                                .send()
                                .await
                                .expect("an upstream answer");
                            Ok::<_, Infallible>(http::Response::<reqwest::Body>::from(response))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = stdin.next_line().await {}
}

/// Sends GET `url` from `concurrency` tasks for `seconds`: requests per second and the
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
    (latencies.len() as f64 / elapsed, latencies)
}

/// CPU time (user + system) process `pid` has used so far, all its threads, in µs.
fn cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name, which may hold spaces, in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Fields 14 and 15 (utime, stime) of proc(5), in clock ticks (USER_HZ, 100 on Linux).
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    ticks as f64 * 10_000.0
}

/// One timed run: requests per second, latencies, and CPU µs per request of the client, the
/// upstream and the proxy.
struct Run {
    rps: f64,
    latencies: Vec<Duration>,
    cpu: [f64; 3],
}

async fn measured(
    client: &reqwest::Client,
    url: &str,
    concurrency: usize,
    seconds: Duration,
    pids: [u32; 3],
) -> Run {
    // Pid 0: no such process, no CPU.
    let before = pids.map(cpu_us);
    let (rps, latencies) = load(client, url, concurrency, seconds).await;
    let after = pids.map(cpu_us);
    let requests = latencies.len().max(1) as f64;
    let cpu = [0, 1, 2].map(|i| (after[i] - before[i]) / requests);
    Run { rps, latencies, cpu }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Starts `credflow proxy` (the binary at `bin`, with `env` besides the bench's settings) in
/// front of `upstream`: the child and the address it listens on.
async fn start_proxy(
    bin: &str,
    upstream: SocketAddr,
    env: &[(String, String)],
) -> (tokio::process::Child, String) {
    let mut proxy = tokio::process::Command::new(bin)
        .env_clear()
        .env("GENESYS_CLIENT_ID", "bench")
        .env("GENESYS_CLIENT_SECRET", "bench-secret")
        .env("CREDFLOW_LOG", "off")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["proxy", "--listen", "127.0.0.1:0"])
        .args(["--token-url", &format!("http://{upstream}/oauth/token")])
        .args(["--api-base", &format!("http://{upstream}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the proxy started");
    let mut lines = BufReader::new(proxy.stdout.take().unwrap()).lines();
    let addr = address(&lines.next_line().await.unwrap().unwrap());
    (proxy, addr)
}

/// The first `http://` address process output `line` names.
fn address(line: &str) -> String {
    let word = line.split_whitespace().find(|w| w.starts_with("http://")).expect("an address");
    word.trim_start_matches("http://").to_owned()
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = |builder: &mut tokio::runtime::Builder| builder.enable_all().build().unwrap();
    if std::env::var_os("PROXY_BENCH_UPSTREAM").is_some() {
        runtime(&mut tokio::runtime::Builder::new_multi_thread()).block_on(upstream());
    } else if let Ok(upstream) = std::env::var("PROXY_BENCH_BARE_TO") {
        // One thread, as the proxy.
        runtime(&mut tokio::runtime::Builder::new_current_thread()).block_on(bare(upstream));
    } else {
        runtime(&mut tokio::runtime::Builder::new_multi_thread()).block_on(bench());
    }
}

/// The client's side: starts the upstream and the proxies, measures, prints.
async fn bench() {
    let env_number = |name: &str, default: u64| {
        std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
    };
    let seconds = Duration::from_secs(env_number("PROXY_BENCH_SECONDS", 1));
    let rounds = env_number("PROXY_BENCH_ROUNDS", 5).max(1);

    let mut upstream = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env("PROXY_BENCH_UPSTREAM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the upstream started");
    let mut upstream_lines = BufReader::new(upstream.stdout.take().unwrap()).lines();
    let upstream_addr: SocketAddr =
        address(&upstream_lines.next_line().await.unwrap().unwrap()).parse().unwrap();

    let (mut proxy, proxy_addr) =
        start_proxy(env!("CARGO_BIN_EXE_credflow"), upstream_addr, &[]).await;
    // Other proxies to measure in the same rounds: `name:KEY=VALUE,...;name2:...`, where the
    // key `bin` names another build of credflow (a copy of the binary before a change).
    let mut others = Vec::new();
    for spec in std::env::var("PROXY_BENCH_ALSO").unwrap_or_default().split(';') {
        let Some((name, settings)) = spec.split_once(':') else { continue };
        let mut bin = env!("CARGO_BIN_EXE_credflow").to_owned();
        let mut env = Vec::new();
        for (key, value) in settings.split(',').filter_map(|kv| kv.split_once('=')) {
            if key == "bin" {
                bin = value.to_owned();
            } else {
                env.push((key.to_owned(), value.to_owned()));
            }
        }
        let (child, addr) = start_proxy(&bin, upstream_addr, &env).await;
        others.push((name.to_owned(), child, addr));
    }
    // The reference forwarder, when asked for: this binary again.
    let mut bare = None;
    if std::env::var_os("PROXY_BENCH_BARE").is_some() {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env("PROXY_BENCH_BARE_TO", upstream_addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the bare forwarder started");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = address(&lines.next_line().await.unwrap().unwrap());
        bare = Some((child, addr));
    }

    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    // The paths, each with the process in the middle (none for direct).
    let mut paths = vec![
        ("direct", format!("http://{upstream_addr}/api/v2/bench"), None),
        ("proxied", format!("http://{proxy_addr}/api/v2/bench"), proxy.id()),
    ];
    for (name, child, addr) in &others {
        paths.push((name.as_str(), format!("http://{addr}/api/v2/bench"), child.id()));
    }
    if let Some((child, addr)) = &bare {
        paths.push(("bare", format!("http://{addr}/api/v2/bench"), child.id()));
    }
    // Warm up every path (connections, the proxy's token).
    for (_, url, _) in &paths {
        let _ = load(&client, url, 128, Duration::from_millis(500)).await;
    }
    println!(
        "{rounds} rounds of {} s per path, the paths' order rotating, {} cores",
        seconds.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| path | in flight | req/s | ratio | added p50 / p99 | CPU µs/req: client + upstream + proxy | ceiling |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let in_flight: Vec<usize> = std::env::var("PROXY_BENCH_IN_FLIGHT")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 16, 128]);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for concurrency in in_flight {
        let mut runs: Vec<Vec<Run>> = paths.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds as usize {
            for k in 0..paths.len() {
                let i = (round + k) % paths.len();
                let (_, url, middle) = &paths[i];
                let pids = [std::process::id(), upstream.id().unwrap(), middle.unwrap_or(0)];
                runs[i].push(measured(&client, url, concurrency, seconds, pids).await);
            }
        }
        let pooled = |runs: &[Run]| {
            let mut all: Vec<Duration> =
                runs.iter().flat_map(|r| r.latencies.iter().copied()).collect();
            all.sort_unstable();
            all
        };
        let cpu = |runs: &[Run], i: usize| median(runs.iter().map(|r| r.cpu[i]).collect());
        let direct_lat = pooled(&runs[0]);
        let direct_cpu = cpu(&runs[0], 0) + cpu(&runs[0], 1);
        for (i, (name, _, _)) in paths.iter().enumerate() {
            let rps = median(runs[i].iter().map(|r| r.rps).collect());
            let ratio = median(runs[0].iter().zip(&runs[i]).map(|(d, p)| p.rps / d.rps).collect());
            let lat = pooled(&runs[i]);
            let added = |p: f64| us(percentile(&lat, p)) - us(percentile(&direct_lat, p));
            let (c, u, m) = (cpu(&runs[i], 0), cpu(&runs[i], 1), cpu(&runs[i], 2));
            println!(
                "| {name} | {concurrency} | {rps:.0} | {ratio:.2} | {:.0} / {:.0} µs | {c:.1} + {u:.1} + {m:.1} | {:.2} |",
                added(0.5),
                added(0.99),
                direct_cpu / (c + u + m),
            );
        }
    }
    let _ = proxy.kill().await;
    let _ = upstream.kill().await;
    for (_, mut child, _) in others {
        let _ = child.kill().await;
    }
    if let Some((mut child, _)) = bare {
        let _ = child.kill().await;
    }
}
