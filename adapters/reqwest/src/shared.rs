//! Fleet mode: the extension point through which several processes share one token and one rate
//! budget (an implementation on Redis is the `credflow-redis` crate).
//!
//! A [`SharedStore`] is handed to the client with
//! [`Config::with_shared`](crate::Config::with_shared); the application code does not change
//! between one process and a fleet. The client then:
//!
//! - **asks the fleet before the token endpoint.** When the core session says a token request is
//!   due, the driver calls [`SharedStore::refresh`]: the store answers with a token another
//!   process obtained (installed with
//!   [`Session::handle_token_shared`](credflow_core::Session::handle_token_shared)), possibly after
//!   waiting for the process that holds the refresh lease, or with a [`Lease`]: this process
//!   sends the token request and hands the token to [`SharedStore::publish`]. Client secrets
//!   never leave the process; only tokens and their expiry do.
//! - **asks the fleet before each API attempt.** [`SharedStore::admit`] decides, for the whole
//!   fleet, whether a request of a given priority may go now, from the rate-limit observations
//!   every process reports with [`SharedStore::observe`] and [`SharedStore::rate_limited`]; it
//!   may reserve a later slot within the request's horizon ([`Admission::After`]: the request
//!   sleeps to it and is sent without asking again, after reading [`SharedStore::hold`] if it
//!   slept a second or more). A wait longer than the retry policy's `max_wait` is handed to the
//!   session as the attempt's hold, so it fails fast naming it (with the session's one probe
//!   per `max_wait`). The local session still enforces 429 back-offs and exhausted windows, and
//!   after such a local wait the fleet is asked again. The request's deadline bounds every
//!   wait for the fleet, the admission call included.
//! - **relays 429s, bounded and named.** A 429 one process is answered holds the whole fleet
//!   ([`Admission::Held`], [`SharedStore::hold`]) for its `Retry-After`, but never longer than
//!   [`FleetScope::max_hold`] (the retry policy's `max_wait`): a hold is another process's word,
//!   which this one cannot check, so it weighs no more than a server's own answer would. The
//!   client says such waits come from the fleet ([`ClientEvent::FleetHold`](crate::ClientEvent),
//!   its log lines and errors), never that the server asked.
//! - **degrades, once.** A [`StoreError`] switches the client to its local session (what a
//!   single process does), logged once; the store is probed again at most every
//!   [`PROBE_INTERVAL`], and the client rejoins the fleet when a call succeeds. No request waits
//!   on an unreachable store.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use credflow_core::fleet::{CallOutcome, CallTicket, LinkChange, StoreLink};
use credflow_core::ratelimit::RateLimitSnapshot;
use credflow_core::ratelimit::pacer::PacerConfig;
use credflow_core::secret::Fingerprint;
use credflow_core::{Priority, UnixTime};
use zeroize::Zeroizing;

use crate::client::{Clock, core_duration};

/// A boxed, `Send` future: what [`SharedStore`] methods return (the trait stays object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// While degraded, the store is tried again at most this often.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Who shares: the client id and the token endpoint (the environment) the fleet's state is keyed
/// by, the credential the token is bound to, and the pacing rules of the shared budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetScope {
    /// The OAuth client id (not secret).
    pub client_id: String,
    /// The token endpoint URL: one token per client id *and* environment.
    pub token_url: String,
    /// Fingerprint of the client id and secret: a token fetched with another secret (during a
    /// rotation) is not taken.
    pub credential: Fingerprint,
    /// Priority classes and critical reserve of the shared budget (the session's own).
    pub pacer: PacerConfig,
    /// The longest fleet-wide 429 hold this process honours: the session's retry policy's
    /// `max_wait`, the longest it waits on a server's `Retry-After`. The fleet relays another
    /// process's 429 for at most this long (the server told that process, not this one; beyond
    /// it, each process learns of a long limit from the server itself), and a store cuts a
    /// longer hold it finds (which no process with this configuration wrote) to it, and says so.
    pub max_hold: Duration,
}

/// A token as the fleet shares it: the value and its absolute expiry.
#[derive(Clone)]
pub struct SharedToken {
    /// The access token (wiped on drop).
    pub token: Zeroizing<String>,
    /// When the server stops accepting it, wall clock.
    pub expires_at: UnixTime,
}

impl fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedToken").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// The right to refresh for the fleet, until it expires. The fencing value is the store's: only
/// the holder of a lease can publish under it or release it.
#[derive(Clone, PartialEq, Eq)]
pub struct Lease {
    fence: [u8; 16],
}

impl Lease {
    /// A lease identified by `fence` (random, unique per acquisition).
    pub fn new(fence: [u8; 16]) -> Self {
        Lease { fence }
    }

    /// The fencing value.
    pub fn fence(&self) -> [u8; 16] {
        self.fence
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Lease(..)")
    }
}

/// The answer to [`SharedStore::refresh`].
#[derive(Debug)]
pub enum Refresh {
    /// Another process refreshed: use this token.
    Token(SharedToken),
    /// This process refreshes: send the token request, then [`SharedStore::publish`].
    Lease(Lease),
}

/// The answer to [`SharedStore::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Admission {
    /// Send now; the request was counted against the fleet's budget.
    Now,
    /// Send once this much time has passed, without asking again: the request was counted
    /// against the fleet's budget for that instant (its slot is reserved). Never longer than
    /// the `within` the caller gave.
    After(Duration),
    /// Not before this much time has passed, and ask again then: the request was not counted.
    /// The fleet's window decides (spent, or spaced and not reserved).
    Wait(Duration),
    /// The whole fleet is held back this much longer by a 429 a process of the fleet was
    /// answered (its `Retry-After`, at most [`FleetScope::max_hold`]): ask again then. The
    /// request was not counted. Apart from [`Wait`](Self::Wait) so that the client says the
    /// fleet holds it, not the server.
    Held(Duration),
}

/// Why a [`SharedStore`] call failed. Every variant puts the client in degraded mode (local
/// session only) until a later call succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time (down, network, failover).
    Unavailable(String),
    /// The store answered with an error (permissions of the ACL user, a script refused, …).
    Refused(String),
    /// Another process held the refresh lease for longer than the store waits: fetch locally.
    Busy,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "shared store unreachable: {e}"),
            StoreError::Refused(e) => write!(f, "shared store refused the call: {e}"),
            StoreError::Busy => f.write_str("the fleet's refresh lease stayed taken too long"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Shared state for a fleet of clients with the same client id; see the [module docs](self).
///
/// Implementations must return within a bounded time (the client also bounds every call).
pub trait SharedStore: Send + Sync + fmt::Debug {
    /// A usable fleet token other than the one with fingerprint `stale` (the token this process
    /// holds or just found unusable), waiting while another process holds the refresh lease;
    /// or the lease, when this process should refresh.
    fn refresh<'a>(
        &'a self,
        scope: &'a FleetScope,
        stale: Option<Fingerprint>,
    ) -> BoxFuture<'a, Result<Refresh, StoreError>>;

    /// Publishes the token obtained under `lease` and releases the lease, if it is still held
    /// (a holder whose lease expired publishes nothing). Returns whether it was published.
    fn publish<'a>(
        &'a self,
        scope: &'a FleetScope,
        lease: Lease,
        token: &'a SharedToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Releases `lease` without a token, if it is still held: the request could not be sent,
    /// or the client stopped while it was out (its last clone dropped, or
    /// [`Client::shutdown`](crate::Client::shutdown)).
    fn release<'a>(
        &'a self,
        scope: &'a FleetScope,
        lease: Lease,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Whether a request of `priority` may be sent now by any process of the fleet; counts it
    /// when it may ([`Admission::Now`]). When it may be sent at a known later instant within
    /// `within` (the longest the caller will wait), a store may count it for that instant
    /// instead ([`Admission::After`]), so that the caller sleeps and sends without asking again;
    /// otherwise it answers how long to wait before asking again ([`Admission::Wait`]).
    fn admit<'a>(
        &'a self,
        scope: &'a FleetScope,
        priority: Priority,
        within: Duration,
    ) -> BoxFuture<'a, Result<Admission, StoreError>>;

    /// Reports what a response said about the rate limit.
    fn observe<'a>(
        &'a self,
        scope: &'a FleetScope,
        snapshot: RateLimitSnapshot,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Reports a 429, with its `Retry-After` if any: the whole fleet holds back, for at most
    /// [`FleetScope::max_hold`].
    fn rate_limited<'a>(
        &'a self,
        scope: &'a FleetScope,
        retry_after: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// How long the whole fleet is held back from now on (a 429's `Retry-After` that any
    /// process reported with [`rate_limited`](Self::rate_limited), at most
    /// [`FleetScope::max_hold`]), read at once, counting nothing. A request that slept to a slot [`Admission::After`] reserved a while ago reads
    /// it before it is sent: a 429 reported meanwhile holds it back too. The default, for stores
    /// that cannot read cheaply, is `Ok(None)` (no hold known).
    fn hold<'a>(
        &'a self,
        scope: &'a FleetScope,
    ) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        let _ = scope;
        Box::pin(async { Ok(None) })
    }

    /// The fleet's usable token other than `stale`, if there is one, read at once: no lease,
    /// no waiting. A process without a token that may not request one yet (its breaker or
    /// backoff holds it back after an outage) reads it about once a second, so that it is back
    /// as soon as another process has a token. The default, for stores that cannot read
    /// cheaply, is `Ok(None)`: such a process then waits for its own next request.
    fn current<'a>(
        &'a self,
        scope: &'a FleetScope,
        stale: Option<Fingerprint>,
    ) -> BoxFuture<'a, Result<Option<SharedToken>, StoreError>> {
        let _ = (scope, stale);
        Box::pin(async { Ok(None) })
    }
}

/// Whether the client works with its fleet or alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum FleetStatus {
    /// The shared store answers: one token and one budget for the fleet.
    Joined,
    /// The shared store failed: the local session decides until it answers again.
    Degraded,
}

/// The client's link to its store: its calls, bounded, and the core's [`StoreLink`] (joined
/// or degraded, the probe, which outcome counts) fed with their outcomes.
pub(crate) struct FleetLink {
    pub(crate) store: std::sync::Arc<dyn SharedStore>,
    pub(crate) scope: FleetScope,
    state: Mutex<StoreLink>,
    clock: Clock,
    /// Upper bound on any call (a store that hangs must not hold requests).
    pub(crate) call_timeout: Duration,
}

impl fmt::Debug for FleetLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetLink").field("status", &self.status()).finish_non_exhaustive()
    }
}

impl FleetLink {
    pub(crate) fn new(
        store: std::sync::Arc<dyn SharedStore>,
        scope: FleetScope,
        call_timeout: Duration,
        clock: Clock,
    ) -> Self {
        let state = Mutex::new(StoreLink::new(core_duration(PROBE_INTERVAL)));
        FleetLink { store, scope, state, clock, call_timeout }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreLink> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn status(&self) -> FleetStatus {
        if self.lock().is_joined() { FleetStatus::Joined } else { FleetStatus::Degraded }
    }

    /// Whether a call should be made now (joined, or degraded with a probe due). While
    /// degraded, a `true` claims the probe: other callers are told `false` until the next
    /// interval, so call it once per store call.
    pub(crate) fn usable(&self) -> bool {
        self.lock().usable(self.clock.now())
    }

    /// [`usable`](Self::usable), with the link's ticket when it says yes: a later call on that
    /// claim goes through [`still_usable`](Self::still_usable).
    pub(crate) fn claim(&self) -> Option<CallTicket> {
        let mut link = self.lock();
        link.usable(self.clock.now()).then(|| link.call_started())
    }

    /// Whether a call claimed with `claim` may still be made: the link has not changed since,
    /// else it is usable now (see [`StoreLink::still_usable`]).
    pub(crate) fn still_usable(&self, claim: CallTicket) -> bool {
        self.lock().still_usable(self.clock.now(), claim)
    }

    /// Runs one store call bounded by `limit`, and records its outcome.
    pub(crate) async fn call<T>(
        &self,
        limit: Duration,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> (Result<T, StoreError>, LinkChange) {
        let ticket = self.lock().call_started();
        let result = match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {limit:?}"))),
        };
        let outcome = match &result {
            Ok(_) => CallOutcome::Answered,
            Err(StoreError::Busy) => CallOutcome::Busy,
            Err(_) => CallOutcome::Failed,
        };
        let change = self.lock().record(self.clock.now(), ticket, outcome);
        (result, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Never;

    impl SharedStore for Never {
        fn refresh<'a>(
            &'a self,
            _: &'a FleetScope,
            _: Option<Fingerprint>,
        ) -> BoxFuture<'a, Result<Refresh, StoreError>> {
            Box::pin(std::future::pending())
        }
        fn publish<'a>(
            &'a self,
            _: &'a FleetScope,
            _: Lease,
            _: &'a SharedToken,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            Box::pin(std::future::pending())
        }
        fn release<'a>(
            &'a self,
            _: &'a FleetScope,
            _: Lease,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(std::future::pending())
        }
        fn admit<'a>(
            &'a self,
            _: &'a FleetScope,
            _: Priority,
            _: Duration,
        ) -> BoxFuture<'a, Result<Admission, StoreError>> {
            Box::pin(std::future::pending())
        }
        fn observe<'a>(
            &'a self,
            _: &'a FleetScope,
            _: RateLimitSnapshot,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(std::future::pending())
        }
        fn rate_limited<'a>(
            &'a self,
            _: &'a FleetScope,
            _: Option<Duration>,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(std::future::pending())
        }
    }

    fn link() -> FleetLink {
        let scope = FleetScope {
            client_id: "id".into(),
            token_url: "https://login.example/oauth/token".into(),
            credential: credflow_core::secret::Credentials::from_strs("id", "secret")
                .unwrap()
                .fingerprint(),
            pacer: PacerConfig::default(),
            max_hold: Duration::from_secs(60),
        };
        FleetLink::new(std::sync::Arc::new(Never), scope, Duration::from_secs(1), Clock::start())
    }

    fn down() -> StoreError {
        StoreError::Unavailable("test".into())
    }

    /// A slow call that started before the store failed, and succeeded after, does not rejoin
    /// the fleet: only a call made while degraded (the probe) can. (The core's `StoreLink`
    /// decides; this holds the adapter's calls to it: the ticket taken as the call starts, the
    /// outcome recorded as it ends, the probe claimed by `usable`.)
    #[tokio::test(start_paused = true)]
    async fn a_success_that_started_before_the_failure_does_not_rejoin() {
        let link = link();
        let slow = link.call(Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(())
        });
        let fast = link.call(Duration::from_secs(5), async { Err::<(), _>(down()) });
        let ((slow, slow_change), (_, fast_change)) = tokio::join!(slow, fast);
        assert_eq!(fast_change, LinkChange::Degraded);
        assert!(slow.is_ok());
        assert_eq!(slow_change, LinkChange::None, "stale success");
        assert_eq!(link.status(), FleetStatus::Degraded);
        assert!(!link.usable(), "the probe is not due yet");
        // The probe, made while degraded, rejoins.
        tokio::time::advance(PROBE_INTERVAL).await;
        assert!(link.usable(), "the probe is due");
        assert!(!link.usable(), "claimed once");
        // A failure that started before the rejoin is not news either.
        let stale = link.call(Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Err::<(), _>(down())
        });
        let probe = link.call(Duration::from_secs(1), async { Ok(()) });
        let ((_, stale_change), (_, probe_change)) = tokio::join!(stale, probe);
        assert_eq!(probe_change, LinkChange::Rejoined);
        assert_eq!(stale_change, LinkChange::None, "stale failure");
        assert_eq!(link.status(), FleetStatus::Joined);
        // A busy lease says nothing about the store's health: a failure that started with it
        // and ends after it still degrades the link.
        let busy = link.call(Duration::from_secs(1), async { Err::<(), _>(StoreError::Busy) });
        let failing = link.call(Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err::<(), _>(down())
        });
        let ((_, busy_change), (_, failing_change)) = tokio::join!(busy, failing);
        assert_eq!(busy_change, LinkChange::None);
        assert_eq!(failing_change, LinkChange::Degraded);
    }

    /// `call` bounds a store that never answers, and degrades the link.
    #[tokio::test(start_paused = true)]
    async fn a_store_that_never_answers_is_bounded_and_degrades() {
        let link = link();
        let (result, transition) = link
            .call(
                Duration::from_secs(2),
                link.store.admit(&link.scope, Priority::Normal, Duration::ZERO),
            )
            .await;
        assert!(matches!(result, Err(StoreError::Unavailable(_))));
        assert_eq!(transition, LinkChange::Degraded);
    }
}
