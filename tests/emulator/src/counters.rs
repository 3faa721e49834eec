//! What the emulator saw and answered, for tests to assert on.
//!
//! Counters are atomics updated as requests are answered; [`CountersSnapshot`] is a plain copy
//! (also served as JSON by `GET /__emulator/counters`). Each request is counted once under
//! `token` or `api` by its route, and once more by its outcome.
//!
//! The admission histogram records, per client id, how many API requests were *admitted* (passed
//! authentication and rate limiting) in each [`HISTOGRAM_BUCKET`] since start. It lets a test check
//! that a client never exceeded a budget over any window, not only over the emulator's own fixed
//! windows: see [`AdmissionHistogram::max_in_window`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Width of one bucket of the admission histogram.
pub const HISTOGRAM_BUCKET: Duration = Duration::from_millis(100);

/// Defines a snapshot struct of `u64` fields and its atomic twin with `snapshot` and `reset`.
macro_rules! counter_set {
    (
        $(#[$meta:meta])*
        $snap:ident / $atomic:ident {
            $( $(#[$doc:meta])* $field:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct $snap {
            $( $(#[$doc])* pub $field: u64, )*
        }

        #[derive(Debug, Default)]
        pub(crate) struct $atomic {
            $( pub(crate) $field: AtomicU64, )*
        }

        impl $atomic {
            fn snapshot(&self) -> $snap {
                $snap { $( $field: self.$field.load(Relaxed), )* }
            }

            fn reset(&self) {
                $( self.$field.store(0, Relaxed); )*
            }
        }
    };
}

counter_set! {
    /// Token endpoint (`POST /oauth/token`) counts.
    TokenCounters / TokenAtomics {
        /// Every request that reached the token endpoint (dropped ones included).
        requests,
        /// Tokens issued.
        succeeded,
        /// 400 `invalid_request` (malformed form, repeated parameter, several auth methods...),
        /// rate-limit refusals excluded.
        invalid_request,
        /// 401 `invalid_client` (unknown client, wrong secret, bad assertion, not active).
        invalid_client,
        /// 400 `unsupported_grant_type`.
        unsupported_grant_type,
        /// 400 `invalid_scope` (only with the scope echo on).
        invalid_scope,
        /// 400 `rate limit exceeded; ...` (the token-endpoint rate limit, real or forced).
        rate_limited,
        /// 503 during maintenance.
        unavailable,
        /// Connections closed without an answer.
        dropped,
        /// Requests authenticated with HTTP Basic.
        auth_basic,
        /// Requests authenticated with `client_secret_post`.
        auth_post,
        /// Requests authenticated with `client_secret_jwt`.
        auth_jwt,
        /// Requests that sent a `scope` parameter.
        with_scope,
        /// Token requests in flight right now.
        in_flight,
        /// Most token requests ever in flight at once (a single-flight client keeps this at 1).
        max_in_flight,
    }
}

counter_set! {
    /// API (`/api/...`) counts.
    ApiCounters / ApiAtomics {
        /// Every request under `/api/` (dropped ones included).
        requests,
        /// Requests that passed authentication and rate limiting.
        admitted,
        /// Answers with a 2xx status.
        status_2xx,
        /// Answers with a 4xx status.
        status_4xx,
        /// Answers with a 5xx status.
        status_5xx,
        /// 401: no usable bearer token.
        unauthorized,
        /// 401 because no `Authorization: Bearer` header was sent (or another scheme was).
        unauthorized_missing,
        /// 401 because the token had expired.
        unauthorized_expired,
        /// 401 because the token was revoked (`DELETE /api/v2/tokens/me`, revoke all).
        unauthorized_revoked,
        /// 401 because the token was minted for another environment.
        unauthorized_other_environment,
        /// 401 because the token is unknown, malformed, or its client is no longer active.
        unauthorized_unknown,
        /// 403 `missing.permissions`.
        forbidden,
        /// 429 from the per-window rate limit.
        rate_limited,
        /// 429 from the long ("daily") limit.
        daily_limited,
        /// 429 forced by a fault.
        forced_429,
        /// 503 during maintenance.
        unavailable,
        /// Connections closed without an answer.
        dropped,
    }
}

/// Admissions of one client, bucketed by [`HISTOGRAM_BUCKET`] since the emulator started.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AdmissionHistogram {
    /// Bucket width in milliseconds.
    pub bucket_ms: u64,
    /// `(bucket index, admitted requests)`, ascending, empty buckets left out.
    pub buckets: Vec<(u64, u64)>,
}

impl AdmissionHistogram {
    /// All admissions.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.buckets.iter().map(|&(_, n)| n).sum()
    }

    /// An upper bound on the requests admitted within any interval of length `window`.
    ///
    /// An interval of length `w` touches at most `floor(w / bucket) + 1` consecutive buckets, so
    /// this sums the busiest such run. It is exact when `window` is a multiple of the bucket and
    /// the interval is aligned, and never lower than the truth otherwise: a test asserting
    /// `max_in_window(w) <= limit` cannot pass wrongly.
    #[must_use]
    pub fn max_in_window(&self, window: Duration) -> u64 {
        let bucket = self.bucket_ms.max(1);
        let span = u64::try_from(window.as_millis()).unwrap_or(u64::MAX) / bucket;
        let mut best = 0_u64;
        let mut sum = 0_u64;
        let mut start = 0_usize;
        for (end, &(index, count)) in self.buckets.iter().enumerate() {
            sum = sum.saturating_add(count);
            while let Some(&(first, first_count)) = self.buckets.get(start) {
                if index.saturating_sub(first) <= span || start >= end {
                    break;
                }
                sum = sum.saturating_sub(first_count);
                start = start.saturating_add(1);
            }
            best = best.max(sum);
        }
        best
    }
}

/// A copy of every counter at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CountersSnapshot {
    /// Token endpoint counts.
    pub token: TokenCounters,
    /// API counts.
    pub api: ApiCounters,
    /// 401 answers on any route.
    pub responses_401: u64,
    /// 429 answers on any route.
    pub responses_429: u64,
    /// Connections closed without an answer, on any route.
    pub dropped_connections: u64,
    /// Why the last token request was refused, in more words than the wire says (the wire keeps
    /// Genesys's terse `authentication failed`). `None` until one is refused.
    pub last_token_error: Option<String>,
    /// API admissions per client id.
    pub admitted: BTreeMap<String, AdmissionHistogram>,
}

impl CountersSnapshot {
    /// The admission histogram of `client_id` (empty if it never got through).
    #[must_use]
    pub fn admitted_for(&self, client_id: &str) -> AdmissionHistogram {
        self.admitted
            .get(client_id)
            .cloned()
            .unwrap_or_else(|| AdmissionHistogram { bucket_ms: bucket_ms(), buckets: Vec::new() })
    }
}

fn bucket_ms() -> u64 {
    u64::try_from(HISTOGRAM_BUCKET.as_millis()).unwrap_or(100)
}

/// The live counters (one per emulator, inside its shared state).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) token: TokenAtomics,
    pub(crate) api: ApiAtomics,
    pub(crate) responses_401: AtomicU64,
    pub(crate) responses_429: AtomicU64,
    pub(crate) dropped_connections: AtomicU64,
    last_token_error: std::sync::Mutex<Option<String>>,
    histogram: std::sync::Mutex<BTreeMap<String, BTreeMap<u64, u64>>>,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CountersSnapshot {
        let admitted = lock(&self.histogram)
            .iter()
            .map(|(client, buckets)| {
                let histogram = AdmissionHistogram {
                    bucket_ms: bucket_ms(),
                    buckets: buckets.iter().map(|(&i, &n)| (i, n)).collect(),
                };
                (client.clone(), histogram)
            })
            .collect();
        CountersSnapshot {
            token: self.token.snapshot(),
            api: self.api.snapshot(),
            responses_401: self.responses_401.load(Relaxed),
            responses_429: self.responses_429.load(Relaxed),
            dropped_connections: self.dropped_connections.load(Relaxed),
            last_token_error: lock(&self.last_token_error).clone(),
            admitted,
        }
    }

    /// Zeroes everything but the token requests in flight right now.
    pub(crate) fn reset(&self) {
        let in_flight = self.token.in_flight.load(Relaxed);
        self.token.reset();
        self.token.in_flight.store(in_flight, Relaxed);
        self.token.max_in_flight.store(in_flight, Relaxed);
        self.api.reset();
        self.responses_401.store(0, Relaxed);
        self.responses_429.store(0, Relaxed);
        self.dropped_connections.store(0, Relaxed);
        *lock(&self.last_token_error) = None;
        lock(&self.histogram).clear();
    }

    pub(crate) fn set_last_token_error(&self, reason: String) {
        *lock(&self.last_token_error) = Some(reason);
    }

    /// Records one admission of `client_id` at `since_start`.
    pub(crate) fn admit(&self, client_id: &str, since_start: Duration) {
        let index = u64::try_from(since_start.as_millis()).unwrap_or(u64::MAX) / bucket_ms();
        let mut histogram = lock(&self.histogram);
        let buckets = match histogram.get_mut(client_id) {
            Some(b) => b,
            None => histogram.entry(client_id.to_owned()).or_default(),
        };
        let slot = buckets.entry(index).or_insert(0);
        *slot = slot.saturating_add(1);
    }

    /// Marks a token request in flight until the guard drops.
    pub(crate) fn token_in_flight(&self) -> InFlight<'_> {
        let now = self.token.in_flight.fetch_add(1, Relaxed).saturating_add(1);
        self.token.max_in_flight.fetch_max(now, Relaxed);
        InFlight(&self.token.in_flight)
    }
}

/// Decrements the in-flight gauge when the request ends (answered or cancelled).
pub(crate) struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (counters stay usable).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(buckets: &[(u64, u64)]) -> AdmissionHistogram {
        AdmissionHistogram { bucket_ms: 100, buckets: buckets.to_vec() }
    }

    #[test]
    fn max_in_window_sums_touching_buckets() {
        let h = hist(&[(0, 3), (5, 2), (10, 4), (11, 1), (30, 7)]);
        assert_eq!(h.total(), 17);
        // 0 ms: one bucket at a time.
        assert_eq!(h.max_in_window(Duration::ZERO), 7);
        // 100 ms touches two buckets: 10 and 11.
        assert_eq!(h.max_in_window(Duration::from_millis(100)), 7);
        // 500 ms touches six buckets: 5..=10 → 6, or 0..=5 → 5, or 10..=15 → 5.
        assert_eq!(h.max_in_window(Duration::from_millis(500)), 7);
        // 1 s touches eleven buckets: 0..=10 → 9.
        assert_eq!(h.max_in_window(Duration::from_millis(1000)), 9);
        assert_eq!(h.max_in_window(Duration::from_secs(10)), 17);
        assert_eq!(hist(&[]).max_in_window(Duration::from_secs(1)), 0);
    }

    #[test]
    fn in_flight_tracks_max() {
        let c = Counters::default();
        let a = c.token_in_flight();
        let b = c.token_in_flight();
        drop(a);
        let _c = c.token_in_flight();
        drop(b);
        let s = c.snapshot();
        assert_eq!((s.token.in_flight, s.token.max_in_flight), (1, 2));
    }

    #[test]
    fn admit_buckets_by_100ms() {
        let c = Counters::default();
        c.admit("a", Duration::from_millis(99));
        c.admit("a", Duration::from_millis(0));
        c.admit("a", Duration::from_millis(100));
        let s = c.snapshot();
        assert_eq!(s.admitted_for("a").buckets, vec![(0, 2), (1, 1)]);
        assert_eq!(s.admitted_for("b").total(), 0);
        c.reset();
        assert!(c.snapshot().admitted.is_empty());
    }
}
