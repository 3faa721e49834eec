//! The proxy's counters and gauges, rendered in the Prometheus text exposition format (0.0.4)
//! for `GET /metrics`. The session's own counters (token requests, retries, 429s, time paced)
//! are read from the client when rendered; the proxy adds what only it sees.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use credflow_core::session::Counters;
use credflow_reqwest::Client;

/// How a local request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Forwarded; the upstream's answer went back (whatever its status).
    Forwarded,
    /// credflow gave up (breaker open, a wait beyond `max_wait`, the quota, no token): 503.
    Unavailable,
    /// The queue of waiting requests was full: 503.
    Overloaded,
    /// Refused by the proxy itself: no or wrong local key, a bad priority header, a body
    /// framing or path it refuses (4xx).
    Refused,
    /// A setup problem or a permission the proxy's credentials lack (502, 403).
    Failed,
    /// The proxy's own `/oauth/token`, `/healthz`, `/metrics`.
    Local,
}

const OUTCOMES: [(Outcome, &str); 6] = [
    (Outcome::Forwarded, "forwarded"),
    (Outcome::Unavailable, "unavailable"),
    (Outcome::Overloaded, "overloaded"),
    (Outcome::Refused, "refused"),
    (Outcome::Failed, "failed"),
    (Outcome::Local, "local"),
];

/// What the proxy counts. Shared by every connection.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    outcomes: [AtomicU64; 6],
    /// Upstream answers by status class (1xx … 5xx).
    classes: [AtomicU64; 5],
    /// Requests waiting in or sent by the client now.
    pending: AtomicUsize,
    /// Request bodies streamed (beyond the buffer limit: not replayable).
    streamed_bodies: AtomicU64,
    /// Open breakers, as last reported by the client's events.
    breakers_open: AtomicU64,
    /// Whether a token is held (as `/healthz` last saw it, or the client's events said).
    token_held: AtomicBool,
}

impl Metrics {
    pub(crate) fn count(&self, outcome: Outcome) {
        let i = OUTCOMES.iter().position(|(o, _)| *o == outcome).unwrap_or(0);
        if let Some(counter) = self.outcomes.get(i) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn upstream_status(&self, status: u16) {
        let class = usize::from(status / 100).saturating_sub(1);
        if let Some(counter) = self.classes.get(class) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn streamed_body(&self) {
        self.streamed_bodies.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_token_held(&self, held: bool) {
        self.token_held.store(held, Ordering::Relaxed);
    }

    pub(crate) fn set_breakers_open(&self, open: u64) {
        self.breakers_open.store(open, Ordering::Relaxed);
    }

    /// Takes a place in the queue if fewer than `limit` requests wait; the place is given
    /// back when the returned guard drops.
    pub(crate) fn enqueue(&self, limit: usize) -> Option<QueuePlace<'_>> {
        let mut now = self.pending.load(Ordering::Relaxed);
        loop {
            if now >= limit {
                return None;
            }
            match self.pending.compare_exchange_weak(
                now,
                now.saturating_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(QueuePlace(&self.pending)),
                Err(actual) => now = actual,
            }
        }
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// The Prometheus text of these metrics and the client's counters.
    pub(crate) fn render(&self, client: &Client, queue_limit: usize) -> String {
        let mut text = String::with_capacity(4096);
        self.render_outcomes(&mut text);
        self.render_session(&mut text, &client.counters());
        self.render_queue_and_token(&mut text, queue_limit);
        text
    }

    /// The local requests by outcome and the upstream answers by status class.
    fn render_outcomes(&self, text: &mut String) {
        let name = "credflow_proxy_requests_total";
        header(
            text,
            name,
            "counter",
            "Local requests by outcome (forwarded, unavailable, overloaded, refused, failed, local).",
        );
        for ((_, label), counter) in OUTCOMES.iter().zip(&self.outcomes) {
            let _ =
                writeln!(text, "{name}{{outcome=\"{label}\"}} {}", counter.load(Ordering::Relaxed));
        }
        let name = "credflow_proxy_upstream_responses_total";
        header(text, name, "counter", "Upstream answers handed back, by status class.");
        for (class, counter) in (1..).zip(&self.classes) {
            let _ =
                writeln!(text, "{name}{{class=\"{class}xx\"}} {}", counter.load(Ordering::Relaxed));
        }
    }

    /// The session's counters (`c`) and the breakers open now.
    fn render_session(&self, text: &mut String, c: &Counters) {
        single(
            text,
            "credflow_api_requests_total",
            "counter",
            "API requests the session began.",
            &c.requests,
        );
        single(
            text,
            "credflow_api_attempts_total",
            "counter",
            "API attempts sent (first attempts and retries).",
            &c.attempts,
        );
        single(text, "credflow_retries_total", "counter", "Retries scheduled.", &c.retries);
        single(
            text,
            "credflow_rate_limited_total",
            "counter",
            "429 answers from the API (waited out, not handed back).",
            &c.rate_limited,
        );
        single(
            text,
            "credflow_unauthorized_total",
            "counter",
            "401 answers from the API.",
            &c.unauthorized,
        );
        single(
            text,
            "credflow_token_requests_total",
            "counter",
            "Token requests started.",
            &c.token_requests,
        );
        single(
            text,
            "credflow_token_failures_total",
            "counter",
            "Token requests that failed.",
            &c.token_failures,
        );
        single(
            text,
            "credflow_breaker_trips_total",
            "counter",
            "Times a circuit breaker opened.",
            &c.breaker_trips,
        );
        single(
            text,
            "credflow_breakers_open",
            "gauge",
            "Circuit breakers open now (token endpoint and API hosts).",
            &self.breakers_open.load(Ordering::Relaxed),
        );
        single(
            text,
            "credflow_paced_seconds_total",
            "counter",
            "Time requests were held back by the pacer, summed.",
            &format_args!("{:.3}", c.paced_ms as f64 / 1000.0),
        );
        single(
            text,
            "credflow_failed_total",
            "counter",
            "Requests that credflow gave up on.",
            &c.failed,
        );
    }

    /// The queue of local requests, streamed bodies, and whether a token is held.
    fn render_queue_and_token(&self, text: &mut String, queue_limit: usize) {
        single(
            text,
            "credflow_proxy_queue_depth",
            "gauge",
            "Local requests waiting for or in an upstream attempt.",
            &self.pending(),
        );
        single(
            text,
            "credflow_proxy_queue_limit",
            "gauge",
            "Most local requests that may wait at once (--max-pending).",
            &queue_limit,
        );
        single(
            text,
            "credflow_proxy_streamed_bodies_total",
            "counter",
            "Request bodies streamed upstream unbuffered (larger than --max-body): never retried.",
            &self.streamed_bodies.load(Ordering::Relaxed),
        );
        single(
            text,
            "credflow_token_held",
            "gauge",
            "1 while the proxy holds a usable token.",
            &u8::from(self.token_held.load(Ordering::Relaxed)),
        );
    }
}

/// The `# HELP` and `# TYPE` lines of the metric `name`.
fn header(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric `name` without labels: its header and its `value`.
fn single(text: &mut String, name: &str, kind: &str, help: &str, value: &dyn std::fmt::Display) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

/// A place in the queue of waiting requests, given back on drop.
#[derive(Debug)]
pub(crate) struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Lines logged per request, kept to at most [`LogBudget::PER_SECOND`] a second: a local
/// client sending thousands of requests a second into a full queue or an open breaker would
/// otherwise write as many log lines, when the logs matter most. The lines left out are
/// counted and their number goes with the next line written (or is logged when the proxy
/// stops). Asked only for lines the log filter lets through.
#[derive(Debug, Default)]
pub(crate) struct LogBudget(std::sync::Mutex<LogWindow>);

#[derive(Debug, Default)]
struct LogWindow {
    /// The second being counted (whole seconds since the proxy started).
    second: u64,
    /// Lines written in it.
    written: u32,
    /// Lines left out since the last one written.
    left_out: u64,
}

impl LogBudget {
    /// Lines written per second at most.
    pub(crate) const PER_SECOND: u32 = 10;

    /// Whether a line may be written `elapsed` after the proxy started: `Some(n)`, the lines
    /// left out since the last one (to log with it), or `None` to leave this one out.
    pub(crate) fn take(&self, elapsed: std::time::Duration) -> Option<u64> {
        let mut window = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let second = elapsed.as_secs();
        if second != window.second {
            window.second = second;
            window.written = 0;
        }
        if window.written >= Self::PER_SECOND {
            window.left_out = window.left_out.saturating_add(1);
            return None;
        }
        window.written += 1;
        Some(std::mem::take(&mut window.left_out))
    }

    /// The lines left out since the last one written (to say so when stopping).
    pub(crate) fn left_out(&self) -> u64 {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).left_out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::LogBudget;

    #[test]
    fn at_most_ten_lines_a_second_and_the_next_says_how_many_were_left_out() {
        let budget = LogBudget::default();
        let at = |ms| Duration::from_millis(ms);
        let written: Vec<_> = (0..25).map(|i| budget.take(at(i * 10))).collect();
        assert!(written[..10].iter().all(|w| *w == Some(0)), "{written:?}");
        assert!(written[10..].iter().all(Option::is_none), "{written:?}");
        assert_eq!(budget.left_out(), 15, "to say when stopping");
        assert_eq!(budget.take(at(1_000)), Some(15), "the next second's first line");
        assert_eq!(budget.left_out(), 0);
        assert_eq!(budget.take(at(1_001)), Some(0));
        assert_eq!(budget.take(at(60_000)), Some(0), "after a quiet minute");
    }
}
