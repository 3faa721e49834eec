//! `credflow demo`: a narrated scenario against the built-in emulator. No credentials, no
//! network: the emulator listens on 127.0.0.1 in this process.

use std::time::{Duration, Instant};

use credflow_core::Duration as CoreDuration;
use credflow_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig, EmulatorHandle, FaultTarget,
};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, ClientEvent, Config};
use tokio::sync::broadcast::error::RecvError;

use crate::Failure;
use crate::output::outln;
use crate::progress::describe;

const QUEUES: &str = "/api/v2/routing/queues";

/// Prints narration lines with the time since the demo started.
#[derive(Clone, Copy)]
struct Narrator {
    start: Instant,
}

impl Narrator {
    fn say(&self, text: impl AsRef<str>) {
        outln!("[{:>6.2}s] {}", self.start.elapsed().as_secs_f64(), text.as_ref());
    }

    fn scene(&self, n: u32, title: &str) {
        outln!();
        outln!("── {n}. {title}");
    }
}

fn failure(context: &str, e: impl std::fmt::Display) -> Failure {
    Failure { code: 1, message: format!("demo: {context}: {e}") }
}

pub(crate) async fn run(show_requests: bool) -> Result<(), Failure> {
    let emulator = Emulator::start(
        EmulatorConfig::default()
            .with_token_lifetime(Duration::from_secs(300))
            .with_api_rate_limit(1000, Duration::from_secs(60))
            .with_request_log(show_requests),
    )
    .await
    .map_err(|e| failure("starting the emulator", e))?;
    let n = Narrator { start: Instant::now() };
    outln!("credflow demo: a Genesys Cloud emulator is listening on {}", emulator.base_url());
    outln!("(in this process, on 127.0.0.1: no credentials, no network)");

    let mut config = Config::custom(
        emulator.token_url(),
        emulator.api_base(),
        credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)?,
    );
    // Short backoffs and cooldowns so the outage scene fits in a few seconds.
    config.session.lifecycle.retry_base = CoreDuration::from_millis(200);
    config.session.lifecycle.retry_cap = CoreDuration::from_millis(800);
    config.session.token_breaker.cooldown = CoreDuration::from_millis(1000);
    config.session.token_breaker.max_cooldown = CoreDuration::from_millis(1500);
    config.seed = Some(2026);
    let client = Client::new(config)?;
    let timeline = spawn_timeline(&client, n);

    scene_burst(&client, &emulator, n).await?;
    scene_expiry(&client, &emulator, n).await?;
    scene_rate_limit(&client, &emulator, n).await?;
    scene_outage(&client, &emulator, n).await?;

    tokio::time::sleep(Duration::from_millis(50)).await;
    timeline.abort();
    summary(&client, &emulator);
    emulator.shutdown().await;
    Ok(())
}

/// Prints the client's own events, indented under the narration; a run of identical lines is
/// shown once with its count.
fn spawn_timeline(client: &Client, n: Narrator) -> tokio::task::JoinHandle<()> {
    let mut events = client.events();
    tokio::spawn(async move {
        let mut last = String::new();
        let mut repeats = 0u32;
        loop {
            let line = match events.recv().await {
                Ok(ClientEvent::Wait { .. }) => continue, // too chatty for a timeline
                Ok(event) => describe(&event),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            if line == last {
                repeats += 1;
                continue;
            }
            if repeats > 0 {
                n.say(format!("    · (and {repeats} more like it)"));
            }
            repeats = 0;
            n.say(format!("    · {line}"));
            last = line;
        }
    })
}

async fn get(client: &Client) -> Result<reqwest::StatusCode, credflow_reqwest::Error> {
    let request = client
        .request(reqwest::Method::GET, QUEUES)?
        .build()
        .map_err(|e| credflow_reqwest::Error::from_reqwest("building the request", e))?;
    client.send(request).await.map(|r| r.status())
}

async fn burst(client: &Client, count: usize) -> (usize, Vec<String>) {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { get(&client).await })
        })
        .collect();
    let mut ok = 0;
    let mut errors = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(status)) if status.is_success() => ok += 1,
            Ok(Ok(status)) => errors.push(format!("HTTP {status}")),
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    (ok, errors)
}

async fn scene_burst(client: &Client, emu: &EmulatorHandle, n: Narrator) -> Result<(), Failure> {
    n.scene(1, "A cold client meets a burst: 100 concurrent requests");
    n.say(format!("GET {QUEUES} × 100, at once, before any token exists"));
    let (ok, errors) = burst(client, 100).await;
    let seen = emu.counters();
    n.say(format!(
        "{ok} succeeded; the token endpoint saw {} request (single flight: one token for all)",
        seen.token.requests
    ));
    if let Some(e) = errors.first() {
        return Err(failure("burst", e));
    }
    Ok(())
}

async fn scene_expiry(client: &Client, emu: &EmulatorHandle, n: Narrator) -> Result<(), Failure> {
    n.scene(2, "The token dies early (revoked by the server)");
    let before = emu.counters();
    emu.expire_all_tokens();
    n.say("the emulator expires every token; 20 requests go out");
    let (ok, errors) = burst(client, 20).await;
    let after = emu.counters();
    n.say(format!(
        "{ok} succeeded; {} saw 401 and were retried once after {} token request",
        after.responses_401 - before.responses_401,
        after.token.requests - before.token.requests
    ));
    if let Some(e) = errors.first() {
        return Err(failure("expiry", e));
    }
    Ok(())
}

async fn scene_rate_limit(
    client: &Client,
    emu: &EmulatorHandle,
    n: Narrator,
) -> Result<(), Failure> {
    n.scene(3, "Rate limited: 429 with Retry-After");
    emu.faults().force_429_for(Duration::from_millis(1500));
    n.say("the emulator answers 429 for the next 1.5 s; one request goes out");
    let started = Instant::now();
    let status = get(client).await.map_err(|e| failure("rate limit", e))?;
    n.say(format!(
        "HTTP {status} after {:.1} s: the client waited as Retry-After said, then succeeded",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

async fn scene_outage(client: &Client, emu: &EmulatorHandle, n: Narrator) -> Result<(), Failure> {
    n.scene(4, "Maintenance: the token endpoint answers 503 for 4 s");
    emu.faults().maintenance_for(Duration::from_secs(4), FaultTarget::Token, None);
    emu.revoke_all_tokens();
    n.say("tokens are revoked, so a new one is needed while the endpoint is down");
    let started = Instant::now();
    let mut fast_failures = 0;
    let mut shown = false;
    loop {
        match get(client).await {
            Ok(status) if status.is_success() => {
                n.say(format!(
                    "recovered: HTTP {status}, {:.1} s after the outage began",
                    started.elapsed().as_secs_f64()
                ));
                break;
            }
            Ok(status) => return Err(failure("outage", format!("unexpected HTTP {status}"))),
            Err(e) => {
                fast_failures += 1;
                if !shown {
                    n.say(format!("callers get a typed error at once: {e}"));
                    if let Some(cause) = e.likely_cause() {
                        n.say(format!("  likely cause: {cause}"));
                    }
                    shown = true;
                }
            }
        }
        if started.elapsed() > Duration::from_secs(15) {
            return Err(failure("outage", "no recovery within 15 s"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    n.say(format!(
        "{fast_failures} calls failed fast during the outage, without touching the network"
    ));
    Ok(())
}

fn summary(client: &Client, emu: &EmulatorHandle) {
    let seen = emu.counters();
    let mine = client.counters();
    outln!();
    outln!("── Summary");
    outln!("  {:<34} {:>8}", "API calls seen by the server", seen.api.requests);
    outln!("  {:<34} {:>8}", "token requests seen by the server", seen.token.requests);
    outln!("  {:<34} {:>8}", "429 answers", seen.responses_429);
    outln!("  {:<34} {:>8}", "401 answers", seen.responses_401);
    outln!("  {:<34} {:>8}", "retries by the client", mine.retries);
    outln!("  {:<34} {:>8}", "circuit-breaker trips", mine.breaker_trips);
    outln!("  {:<34} {:>8}", "requests failed fast (typed error)", mine.failed);
}
