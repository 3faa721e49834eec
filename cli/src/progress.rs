//! Progress on stderr while a request waits: "rate limited, retrying in 42 s", with a countdown
//! spinner when stderr is a terminal; with `-v`, every event of the client as a timeline.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use credflow_core::session::{Event, RetryReason, WaitReason};
use credflow_reqwest::{Client, ClientEvent};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::output::{err, errln};

/// Waits shorter than this pass silently (unless verbose).
const NOTICEABLE: Duration = Duration::from_secs(1);

/// Starts printing the client's progress; abort the handle when the request is done.
pub(crate) fn spawn(client: &Client, verbose: bool) -> JoinHandle<()> {
    let mut events = client.events();
    let started = Instant::now();
    let interactive = std::io::stderr().is_terminal();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            if verbose {
                errln!("[{:>8.3}s] {}", started.elapsed().as_secs_f64(), describe(&event));
            }
            let wait = match &event {
                ClientEvent::Retry { wait, reason, .. } if *wait >= NOTICEABLE => {
                    Some((*wait, retry_text(*reason)))
                }
                ClientEvent::Wait { wait: Some(wait), reason } if *wait >= NOTICEABLE => {
                    Some((*wait, wait_text(*reason)))
                }
                _ => None,
            };
            if let Some((wait, text)) = wait {
                if interactive && !verbose {
                    countdown(text, wait).await;
                } else if !verbose {
                    errln!("credflow: {text}, retrying in {} s", wait.as_secs_f64().ceil());
                }
            }
        }
    })
}

async fn countdown(text: &str, wait: Duration) {
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
    let end = Instant::now() + wait;
    let mut frame = 0;
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now()).as_secs_f64().ceil();
        err!("\r{} {text}, retrying in {left} s   ", FRAMES[frame % FRAMES.len()]);
        frame += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    err!("\r{:60}\r", "");
}

fn retry_text(reason: RetryReason) -> &'static str {
    match reason {
        RetryReason::RateLimited => "rate limited",
        RetryReason::Reauthenticate => "token rejected, refreshing",
        RetryReason::ServerError(_) => "server error",
        RetryReason::Transport(_) => "connection failed",
    }
}

fn wait_text(reason: WaitReason) -> &'static str {
    match reason {
        WaitReason::Token => "waiting for a token",
        WaitReason::Paced(_) => "pacing to the rate limit",
        WaitReason::Backoff => "backing off",
        WaitReason::BreakerProbe => "waiting for the service to recover",
    }
}

/// One line for a client event, for timelines. Never includes a token or secret (events carry
/// none).
pub(crate) fn describe(event: &ClientEvent) -> String {
    match event {
        ClientEvent::TokenRequest => "token request sent".to_owned(),
        ClientEvent::Retry { request, reason, wait, attempts } => format!(
            "{request}: {} (attempt {attempts}), retry in {}",
            retry_text(*reason),
            human(*wait)
        ),
        ClientEvent::Wait { reason, wait } => match wait {
            Some(wait) => format!("{} for {}", wait_text(*reason), human(*wait)),
            None => wait_text(*reason).to_owned(),
        },
        ClientEvent::Session(event) => describe_session(event),
        other => format!("{other:?}"),
    }
}

fn describe_session(event: &Event) -> String {
    use credflow_core::lifecycle::LifecycleEvent as L;
    match event {
        Event::Token(L::TokenAcquired { generation, life, .. }) => {
            format!("token #{} acquired, valid for {life}", generation.0)
        }
        Event::Token(L::RequestFailed { failures, serving_stale, .. }) => format!(
            "token request failed ({failures} in a row){}",
            if *serving_stale { ", still serving the current token" } else { "" }
        ),
        Event::Token(L::Invalidated(g)) => format!("token #{} rejected by the API, dropped", g.0),
        Event::Token(L::Expired(g)) => format!("token #{} expired", g.0),
        Event::Token(L::CredentialsRejected { reason, recheck_at }) => {
            use credflow_core::lifecycle::RejectReason as R;
            let what = match reason {
                R::Redirected | R::UnusableResponse => "token endpoint unusable",
                _ => "credentials rejected",
            };
            match recheck_at {
                // The client's clock counts from its start, as the timeline's does.
                Some(at) => format!(
                    "{what} ({reason:?}): no token request until one checks again at {:.3}s",
                    Duration::from_millis(at.as_millis()).as_secs_f64()
                ),
                None => format!("{what} ({reason:?}): no more token requests"),
            }
        }
        Event::Token(L::RequestTimedOut) => "token request timed out".to_owned(),
        Event::TokenEndpointError { status, class } => {
            format!("token endpoint answered HTTP {status} ({class:?})")
        }
        Event::Breaker { target, event } => {
            use credflow_core::breaker::BreakerEvent as B;
            let what = match target {
                credflow_core::session::BreakerTarget::TokenEndpoint => "token endpoint",
                credflow_core::session::BreakerTarget::Host(_) => "API host",
            };
            match event {
                B::Opened { cooldown, trips, .. } => {
                    format!("circuit breaker for the {what} OPEN for {cooldown} (trip {trips})")
                }
                B::HalfOpened { .. } => {
                    format!("circuit breaker for the {what} half-open: probing")
                }
                B::Closed { .. } => format!("circuit breaker for the {what} closed: recovered"),
            }
        }
        Event::RateLimited { correlation_id, .. } => format!(
            "rate limited (429){}",
            correlation_id.as_ref().map(|c| format!(", correlation id {c}")).unwrap_or_default()
        ),
        Event::ScopeMismatch(check) => format!("granted scope differs from requested: {check:?}"),
        other => format!("{other:?}"),
    }
}

fn human(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}
