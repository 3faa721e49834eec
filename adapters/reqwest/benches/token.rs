//! The cached-token hot path: `Client::token()` with a token already cached (an `arc-swap`
//! load), on one task and contended across threads, beside a plain `Mutex<Option<Token>>`.

use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config, Token};
use criterion::{Criterion, criterion_group, criterion_main};

const THREADS: usize = 4;

/// Runs `call` `iters` times on each of `THREADS` threads at once; returns the wall time, so
/// criterion reports the time per call while every thread competes.
fn contended(iters: u64, call: Arc<dyn Fn() -> Token + Send + Sync>) -> Duration {
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (barrier, call) = (Arc::clone(&barrier), Arc::clone(&call));
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    black_box(call());
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("bench thread");
    }
    start.elapsed()
}

fn cached_token(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (client, _emulator) = rt.block_on(async {
        let emulator = Emulator::start(EmulatorConfig::default()).await.expect("emulator");
        let config = Config::custom(
            emulator.token_url(),
            emulator.api_base(),
            credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).expect("credentials"),
        );
        let client = Client::new(config).expect("client");
        client.token().await.expect("a first token from the emulator");
        (client, emulator)
    });
    let token = rt.block_on(client.token()).expect("cached");
    let baseline = Arc::new(Mutex::new(Some(token)));

    let mut group = c.benchmark_group("cached token, one task");
    group.bench_function("Client::token()", |b| {
        b.to_async(&rt).iter(|| async { client.token().await.expect("cached") })
    });
    group.bench_function("Mutex<Option<Token>> baseline", |b| {
        b.to_async(&rt).iter(|| async { baseline.lock().expect("lock").clone().expect("token") })
    });
    group.finish();

    let mut group = c.benchmark_group(format!("cached token, {THREADS} threads"));
    let shared = client.clone();
    let call: Arc<dyn Fn() -> Token + Send + Sync> =
        Arc::new(move || futures_now(shared.token()).expect("cached"));
    group.bench_function("Client::token()", |b| {
        b.iter_custom(|iters| contended(iters, Arc::clone(&call)))
    });
    let lock = Arc::clone(&baseline);
    let call: Arc<dyn Fn() -> Token + Send + Sync> =
        Arc::new(move || lock.lock().expect("lock").clone().expect("token"));
    group.bench_function("Mutex<Option<Token>> baseline", |b| {
        b.iter_custom(|iters| contended(iters, Arc::clone(&call)))
    });
    group.finish();
}

/// Polls a future that completes without waiting (the cached path) once, with a no-op waker.
fn futures_now<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the cached path must not wait"),
    }
}

criterion_group!(benches, cached_token);
criterion_main!(benches);
