//! The fleet extension point with an in-memory `SharedStore`, against the emulator: the client's
//! side of the contract (ask the fleet first, publish under the lease, degrade once, rejoin).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credflow_core::Priority;
use credflow_core::ratelimit::RateLimitSnapshot;
use credflow_core::ratelimit::pacer::PaceReason;
use credflow_core::retry::policy::GiveUpReason;
use credflow_core::secret::Fingerprint;
use credflow_core::session::{ApiErrorKind, WaitReason};
use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use credflow_reqwest::config::credentials;
use credflow_reqwest::shared::{
    Admission, BoxFuture, FleetScope, Lease, Refresh, SharedStore, SharedToken, StoreError,
};
use credflow_reqwest::{Client, ClientEvent, Config, FleetStatus, RequestOptions};
use reqwest::Method;

#[derive(Debug, Default)]
struct Memory {
    token: Mutex<Option<SharedToken>>,
    lease: Mutex<Option<[u8; 16]>>,
    next_fence: AtomicU64,
    down: AtomicBool,
    admitted: AtomicU64,
    observed: AtomicU64,
    /// This many admissions answer "wait 200 ms"; the store goes down with the last of them.
    wait_then_fail: AtomicU32,
    /// Admissions answer "wait 3 hours" (a daily quota's 429 held the fleet back).
    hours: AtomicBool,
    /// When set, one admission per this many milliseconds, as the fleet's script spaces them:
    /// the others are told to wait for the next free instant (and are not given it).
    spacing_ms: AtomicU64,
    next_free: Mutex<Option<std::time::Instant>>,
    admit_calls: AtomicU64,
    /// When set, every admission answers "wait this many milliseconds".
    wait_ms: AtomicU64,
    /// When set, admissions reserve a slot this many milliseconds ahead (if within the
    /// caller's horizon; else they answer "wait and ask again").
    after_ms: AtomicU64,
    /// The fleet's 429 hold, as `hold` reports it.
    hold_until: Mutex<Option<std::time::Instant>>,
    /// Admissions never answer (a stalled store).
    stall: AtomicBool,
    /// Reads of the fleet's hold never answer.
    stall_hold: AtomicBool,
    refresh_calls: AtomicU64,
}

impl Memory {
    fn take_lease(&self) -> Option<[u8; 16]> {
        let mut lease = self.lease.lock().unwrap();
        if lease.is_some() {
            return None;
        }
        let fence = u128::from(self.next_fence.fetch_add(1, Ordering::SeqCst)).to_be_bytes();
        *lease = Some(fence);
        Some(fence)
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("down for the test".into()))
        } else {
            Ok(())
        }
    }
}

/// A client of the emulator in a fleet on `memory`, with the default configuration.
fn fleet_client(emu: &credflow_emulator::EmulatorHandle, memory: &Arc<Memory>) -> Client {
    let config = Config::custom(
        emu.token_url(),
        emu.api_base(),
        credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap(),
    )
    .with_shared(memory.clone());
    Client::new(config).unwrap()
}

/// A fleet token with value `token`, expiring an hour from now.
fn good_for_an_hour(token: &str) -> SharedToken {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    SharedToken {
        token: zeroize::Zeroizing::new(token.to_owned()),
        expires_at: credflow_core::UnixTime::from_secs(now.as_secs() + 3600),
    }
}

fn fingerprint(token: &SharedToken) -> Fingerprint {
    Fingerprint::of_token(token.token.as_bytes())
}

impl SharedStore for Memory {
    fn refresh<'a>(
        &'a self,
        _scope: &'a FleetScope,
        stale: Option<Fingerprint>,
    ) -> BoxFuture<'a, Result<Refresh, StoreError>> {
        Box::pin(async move {
            self.refresh_calls.fetch_add(1, Ordering::SeqCst);
            loop {
                self.check()?;
                if let Some(token) = self.token.lock().unwrap().clone()
                    && Some(fingerprint(&token)) != stale
                {
                    return Ok(Refresh::Token(token));
                }
                if let Some(fence) = self.take_lease() {
                    return Ok(Refresh::Lease(Lease::new(fence)));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    }

    fn publish<'a>(
        &'a self,
        _scope: &'a FleetScope,
        lease: Lease,
        token: &'a SharedToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.check()?;
            let mut held = self.lease.lock().unwrap();
            if *held != Some(lease.fence()) {
                return Ok(false);
            }
            *held = None;
            *self.token.lock().unwrap() = Some(token.clone());
            Ok(true)
        })
    }

    fn release<'a>(
        &'a self,
        _scope: &'a FleetScope,
        lease: Lease,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut held = self.lease.lock().unwrap();
            if *held == Some(lease.fence()) {
                *held = None;
            }
            Ok(())
        })
    }

    fn admit<'a>(
        &'a self,
        _scope: &'a FleetScope,
        _priority: Priority,
        within: Duration,
    ) -> BoxFuture<'a, Result<Admission, StoreError>> {
        Box::pin(async move {
            self.check()?;
            if self.stall.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            self.admit_calls.fetch_add(1, Ordering::SeqCst);
            let after = Duration::from_millis(self.after_ms.load(Ordering::SeqCst));
            if !after.is_zero() {
                if after > within {
                    return Ok(Admission::Wait(after));
                }
                self.admitted.fetch_add(1, Ordering::SeqCst);
                return Ok(Admission::After(after));
            }
            let spacing = self.spacing_ms.load(Ordering::SeqCst);
            if spacing > 0 {
                let now = std::time::Instant::now();
                let mut next_free = self.next_free.lock().unwrap();
                if let Some(at) = *next_free
                    && at > now
                {
                    return Ok(Admission::Wait(at - now));
                }
                *next_free = Some(now + Duration::from_millis(spacing));
            }
            let wait = self.wait_ms.load(Ordering::SeqCst);
            if wait > 0 {
                return Ok(Admission::Wait(Duration::from_millis(wait)));
            }
            if self.hours.load(Ordering::SeqCst) {
                return Ok(Admission::Wait(Duration::from_secs(3 * 3600)));
            }
            let waits = self.wait_then_fail.load(Ordering::SeqCst);
            if waits > 0 {
                if self.wait_then_fail.fetch_sub(1, Ordering::SeqCst) == 1 {
                    self.down.store(true, Ordering::SeqCst);
                }
                return Ok(Admission::Wait(Duration::from_millis(200)));
            }
            self.admitted.fetch_add(1, Ordering::SeqCst);
            Ok(Admission::Now)
        })
    }

    fn hold<'a>(
        &'a self,
        _scope: &'a FleetScope,
    ) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            if self.stall_hold.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let until = *self.hold_until.lock().unwrap();
            Ok(until.and_then(|at| at.checked_duration_since(std::time::Instant::now())))
        })
    }

    fn current<'a>(
        &'a self,
        _scope: &'a FleetScope,
        stale: Option<Fingerprint>,
    ) -> BoxFuture<'a, Result<Option<SharedToken>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            let token = self.token.lock().unwrap().clone();
            Ok(token.filter(|t| Some(fingerprint(t)) != stale))
        })
    }

    fn observe<'a>(
        &'a self,
        _scope: &'a FleetScope,
        _snapshot: RateLimitSnapshot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.observed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }

    fn rate_limited<'a>(
        &'a self,
        _scope: &'a FleetScope,
        _retry_after: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.check() })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_sharing_a_store_make_one_token_request_and_survive_its_loss() {
    let emu = Emulator::start(
        EmulatorConfig::default().with_api_rate_limit(10_000, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let memory = Arc::new(Memory::default());
    let pods: Vec<Client> = (0..4)
        .map(|seed| {
            let mut config = Config::custom(
                emu.token_url(),
                emu.api_base(),
                credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap(),
            )
            .with_shared(memory.clone());
            config.seed = Some(seed);
            Client::new(config).unwrap()
        })
        .collect();
    let mut events: Vec<_> = pods.iter().map(Client::events).collect();
    let get = |client: &Client| {
        let request = client.request(Method::GET, "/api/v2/routing/queues").unwrap().build();
        let client = client.clone();
        async move { client.send(request.unwrap()).await.map(|r| r.status().as_u16()) }
    };
    for pod in &pods {
        assert_eq!(get(pod).await.unwrap(), 200);
    }
    assert_eq!(emu.counters().token.requests, 1, "one token request for four pods");
    assert!(memory.token.lock().unwrap().is_some(), "the holder published");
    assert!(memory.lease.lock().unwrap().is_none(), "and released its lease");
    assert_eq!(memory.admitted.load(Ordering::SeqCst), 4, "each attempt asked the fleet");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(memory.observed.load(Ordering::SeqCst), 4, "each rate-limit header was reported");

    memory.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        for pod in &pods {
            assert_eq!(get(pod).await.unwrap(), 200, "no request lost while the store is down");
        }
    }
    assert!(pods.iter().all(|p| p.fleet_status() == Some(FleetStatus::Degraded)));
    memory.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(credflow_reqwest::shared::PROBE_INTERVAL).await;
    for pod in &pods {
        assert_eq!(get(pod).await.unwrap(), 200);
        assert_eq!(pod.fleet_status(), Some(FleetStatus::Joined), "rejoined on the next probe");
    }
    for receiver in &mut events {
        let changes: Vec<_> = std::iter::from_fn(|| receiver.try_recv().ok())
            .filter_map(|e| match e {
                ClientEvent::Fleet(status) => Some(status),
                _ => None,
            })
            .collect();
        assert_eq!(changes, [FleetStatus::Degraded, FleetStatus::Joined], "said once each");
    }
}

/// In a fleet the shared budget admits each attempt and the local session skips its own pacing
/// for it; a request begun there whose fleet then fails is paced locally at its own priority
/// (it used to stay `Critical` locally, so a Background request took the critical reserve).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_begun_in_the_fleet_is_paced_at_its_own_priority_once_the_fleet_fails() {
    let emu =
        Emulator::start(EmulatorConfig::default().with_api_rate_limit(10, Duration::from_secs(60)))
            .await
            .unwrap();
    let memory = Arc::new(Memory::default());
    let mut config = Config::custom(
        emu.token_url(),
        emu.api_base(),
        credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap(),
    )
    .with_shared(memory.clone());
    config.seed = Some(7);
    let client = Client::new(config).unwrap();
    let send = |priority| {
        let client = client.clone();
        let request = client.request(Method::GET, "/api/v2/routing/queues").unwrap().build();
        async move {
            let options = RequestOptions { priority, ..RequestOptions::default() };
            client.send_with(request.unwrap(), options).await.map(|r| r.status().as_u16())
        }
    };
    // Admitted by the fleet, Background requests are not held by the local reserve: the 8th
    // goes with 3 of 10 left, which a Background request leaves to the others on its own.
    let started = std::time::Instant::now();
    for _ in 0..8 {
        assert_eq!(send(Priority::Background).await.unwrap(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(memory.admitted.load(Ordering::SeqCst), 8);

    // Two requests begin in the fleet, which answers "wait", then fails.
    let mut events = client.events();
    memory.wait_then_fail.store(2, Ordering::SeqCst);
    let background = tokio::spawn(send(Priority::Background));
    let critical = tokio::spawn(send(Priority::Critical));
    // Critical may use what is left (2 of 10): it goes once the fleet has failed.
    let status = tokio::time::timeout(Duration::from_secs(3), critical).await;
    assert_eq!(status.expect("critical is not held").unwrap().unwrap(), 200);
    assert_eq!(client.fleet_status(), Some(FleetStatus::Degraded));
    // Background leaves the reserve to higher priorities: held back locally, not sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if background.is_finished() {
        let outcome = background.await;
        panic!("a Background request must not take the critical reserve: {outcome:?}");
    }
    background.abort();
    let reserve_wait = std::iter::from_fn(|| events.try_recv().ok()).any(|e| {
        matches!(e, ClientEvent::Wait { reason: WaitReason::Paced(PaceReason::Reserve), .. })
    });
    assert!(reserve_wait, "the local session held it for the reserve");
    assert_eq!(emu.counters().api.requests, 9, "8, then the critical one");
}

/// A fleet wait longer than the retry policy accepts (a daily quota's hours, after another
/// process's 429) is not slept through, nor ignored: the local session paces with it as with a
/// wait of its own, so the first request is its one probe per `max_wait` and the next fails
/// fast, naming the wait (before, it was sent: the fleet's hold was dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_wait_of_hours_fails_fast_after_one_probe() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let memory = Arc::new(Memory::default());
    let client = fleet_client(&emu, &memory);
    let get = || client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    assert_eq!(client.send(get()).await.unwrap().status(), 200);
    memory.hours.store(true, Ordering::SeqCst);
    let probe = tokio::time::timeout(Duration::from_secs(5), client.send(get())).await;
    assert_eq!(probe.expect("not held for hours").unwrap().status(), 200, "the probe");
    let held = tokio::time::timeout(Duration::from_secs(5), client.send(get())).await;
    let error = held.expect("not held for hours").unwrap_err();
    match error.api_error().map(|e| &e.kind) {
        Some(ApiErrorKind::GaveUp { reason: GiveUpReason::WaitTooLong { wait, .. }, .. }) => {
            assert!(wait.as_secs() > 3 * 3600 - 60, "names the fleet's wait: {wait}")
        }
        other => panic!("fails fast naming the wait, got {other:?}"),
    }
    assert_eq!(emu.counters().api.requests, 2, "the held request was not sent");
    assert_eq!(client.fleet_status(), Some(FleetStatus::Joined), "the fleet answered");
}

/// A request's deadline bounds its waits for the fleet: at the admission gate (another request
/// of its class holds it, waiting for its own admission) and for the fleet's wait. Both fail
/// with the session's `DeadlineExceeded` at the deadline, not after the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_bounds_the_waits_for_the_fleet() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let memory = Arc::new(Memory::default());
    let client = fleet_client(&emu, &memory);
    let get = || client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    assert_eq!(client.send(get()).await.unwrap().status(), 200);
    memory.wait_ms.store(30_000, Ordering::SeqCst);
    let options =
        RequestOptions { deadline: Some(Duration::from_millis(300)), ..Default::default() };
    let is_deadline = |e: &credflow_reqwest::Error| {
        matches!(e.api_error().map(|e| &e.kind), Some(ApiErrorKind::DeadlineExceeded { .. }))
    };
    // The first request holds the gate while it sleeps the fleet's 30 s.
    let holder = {
        let (client, request) = (client.clone(), get());
        tokio::spawn(async move { client.send(request).await })
    };
    while memory.admit_calls.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let queued = tokio::time::timeout(Duration::from_secs(10), client.send_with(get(), options))
        .await
        .expect("not held past its deadline at the gate");
    assert!(is_deadline(&queued.unwrap_err()));
    holder.abort();
    let _ = holder.await;
    let asked = tokio::time::timeout(Duration::from_secs(10), client.send_with(get(), options))
        .await
        .expect("not held past its deadline for the fleet's wait");
    assert!(is_deadline(&asked.unwrap_err()));
    assert_eq!(emu.counters().api.requests, 1);
}

/// The fleet's admission is for an attempt now. A request admitted while this process holds
/// back for a 429 it saw (and the fleet has not heard of) waits out the hold, then asks the
/// fleet again, so that the requests held together are spaced by the fleet's budget instead of
/// all sent when the hold ends on admissions counted seconds before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_does_not_outlive_a_local_hold() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let memory = Arc::new(Memory::default());
    let client = fleet_client(&emu, &memory);
    let get = || client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    assert_eq!(client.send(get()).await.unwrap().status(), 200);
    let mut events = client.events();
    emu.faults().force_429_for(Duration::from_millis(900));
    let first = {
        let (client, request) = (client.clone(), get());
        tokio::spawn(async move { client.send(request).await.map(|r| r.status().as_u16()) })
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        while !matches!(events.recv().await.unwrap(), ClientEvent::Retry { .. }) {}
    })
    .await
    .expect("the first request met the 429");
    let before = memory.admitted.load(Ordering::SeqCst);
    let status = tokio::time::timeout(Duration::from_secs(10), client.send(get())).await;
    assert_eq!(status.expect("sent after the hold").unwrap().status(), 200);
    assert_eq!(first.await.unwrap().unwrap(), 200);
    let held = std::iter::from_fn(|| events.try_recv().ok()).any(|e| {
        matches!(e, ClientEvent::Wait { reason: WaitReason::Paced(PaceReason::Backoff429), .. })
    });
    assert!(held, "the second request waited for the 429's hold");
    // The second request: admitted, held, admitted again; the first's retry: admitted once.
    assert_eq!(memory.admitted.load(Ordering::SeqCst) - before, 3);
}

/// A fleet token this process cannot use (here not a valid bearer token) is named as stale on
/// the next round, so the fleet hands out the lease and this process fetches its own, instead
/// of being handed the same token in a loop (which, with a store that answers at once, never
/// yielded: the driver spun on a worker thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_fleet_token_is_not_taken_again() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let memory = Arc::new(Memory::default());
    *memory.token.lock().unwrap() = Some(good_for_an_hour("not a bearer token"));
    let client = fleet_client(&emu, &memory);
    let token = tokio::time::timeout(Duration::from_secs(10), client.token())
        .await
        .expect("not stuck on the unusable token")
        .unwrap();
    assert_ne!(token.as_str(), "not a bearer token");
    assert_eq!(emu.counters().token.requests, 1);
    let calls = memory.refresh_calls.load(Ordering::SeqCst);
    assert!(calls <= 3, "{calls} refresh calls");
}

/// Requests waiting for the fleet's admission take turns (one per priority class per process
/// asks; the rest queue locally) instead of all re-asking at the instant the fleet named, when
/// one of them wins and the others ask again: a herd of store calls that grows with the square
/// of the waiters. 24 requests spaced 20 ms apart: each asks about twice (once told to wait,
/// once admitted), where the herd took about 24 × 24 / 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_requests_take_turns_at_the_fleets_admission() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let memory = Arc::new(Memory::default());
    let client = fleet_client(&emu, &memory);
    let get = || client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    assert_eq!(client.send(get()).await.unwrap().status(), 200);
    memory.spacing_ms.store(20, Ordering::SeqCst);
    memory.admit_calls.store(0, Ordering::SeqCst);
    let before = memory.admitted.load(Ordering::SeqCst);
    let sends: Vec<_> = (0..24)
        .map(|_| {
            let (client, request) = (client.clone(), get());
            tokio::spawn(async move { client.send(request).await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for send in sends {
        assert_eq!(send.await.unwrap().unwrap(), 200);
    }
    assert_eq!(memory.admitted.load(Ordering::SeqCst) - before, 24);
    let calls = memory.admit_calls.load(Ordering::SeqCst);
    assert!(calls <= 2 * 24 + 4, "{calls} admission calls for 24 requests");
}

/// After a token-endpoint outage, a process whose breaker still holds its own token requests
/// back (here for 60 s) takes the token another process of the fleet fetched within about a
/// second, instead of waiting out the cooldown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_held_back_by_its_breaker_takes_the_fleets_token() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let creds = || credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap();
    // Another process of the fleet, which reaches the token endpoint.
    let other = Client::new(Config::custom(emu.token_url(), emu.api_base(), creds())).unwrap();
    let fetched = other.token().await.unwrap();
    // This one cannot reach it: nothing listens on port 1 (servers started by tests bind
    // ephemeral ports, so none ever will); one refused connection opens its breaker.
    let memory = Arc::new(Memory::default());
    let mut config = Config::custom("http://127.0.0.1:1/oauth/token", emu.api_base(), creds())
        .with_shared(memory.clone());
    config.session.token_breaker.consecutive_failures = 1;
    config.session.token_breaker.cooldown = credflow_core::Duration::from_secs(60);
    let client = Client::new(config).unwrap();
    let mut events = client.events();
    // A request fails fast once the token request failed and the breaker opened (it does not
    // hang for the minute): from then on this process may not request a token.
    let request = client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    assert!(client.send(request).await.is_err());
    // The other process publishes its token to the fleet.
    *memory.token.lock().unwrap() = Some(good_for_an_hour(fetched.as_str()));
    let acquired = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let ClientEvent::Session(credflow_core::session::Event::Token(
                credflow_core::lifecycle::LifecycleEvent::TokenAcquired { .. },
            )) = events.recv().await.unwrap()
            {
                break;
            }
        }
    })
    .await;
    assert!(acquired.is_ok(), "not held for the breaker's 60 s");
    let request = client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    assert_eq!(client.send(request).await.unwrap().status(), 200);
    let c = client.counters();
    assert_eq!((c.token_requests, c.shared_tokens), (1, 1), "{c:?}");
}

/// The once-a-second read of the fleet's token is not postponed by wake-ups: here the token
/// endpoint is unreachable and this process backs off for at least 30 s, while the application
/// asks for the token every 100 ms (each call wakes the token driver). The fleet's token is
/// taken within seconds (before, each wake-up restarted the peek's one-second timer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_ups_do_not_starve_the_read_of_the_fleets_token() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let creds = || credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap();
    let other = Client::new(Config::custom(emu.token_url(), emu.api_base(), creds())).unwrap();
    let fetched = other.token().await.unwrap();
    let memory = Arc::new(Memory::default());
    // Nothing listens on port 1; the breaker stays closed, the backoff is 30 to 60 s.
    let mut config = Config::custom("http://127.0.0.1:1/oauth/token", emu.api_base(), creds())
        .with_shared(memory.clone());
    config.session.token_breaker.consecutive_failures = 100;
    config.session.lifecycle.retry_base = credflow_core::Duration::from_secs(60);
    let client = Client::new(config).unwrap();
    let mut events = client.events();
    // The first token request fails at once (then the token waits for the backoff).
    let _ = tokio::time::timeout(Duration::from_millis(500), client.token()).await;
    let impatient = {
        let client = client.clone();
        tokio::spawn(async move {
            while !matches!(
                tokio::time::timeout(Duration::from_millis(100), client.token()).await,
                Ok(Ok(_))
            ) {}
        })
    };
    *memory.token.lock().unwrap() = Some(good_for_an_hour(fetched.as_str()));
    let acquired = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let ClientEvent::Session(credflow_core::session::Event::Token(
                credflow_core::lifecycle::LifecycleEvent::TokenAcquired { .. },
            )) = events.recv().await.unwrap()
            {
                break;
            }
        }
    })
    .await;
    assert!(acquired.is_ok(), "the fleet's token was read despite the wake-ups");
    impatient.await.unwrap();
    assert_eq!(client.token().await.unwrap().as_str(), fetched.as_str());
}

/// A slot the fleet reserved is slept to and used without asking again (one store call per
/// request); a request whose deadline comes before any slot is not given one (the horizon it
/// passes is its deadline), and fails at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_slot_is_used_without_asking_again() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let memory = Arc::new(Memory::default());
    let client = fleet_client(&emu, &memory);
    let get = || client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    assert_eq!(client.send(get()).await.unwrap().status(), 200);
    memory.after_ms.store(300, Ordering::SeqCst);
    memory.admit_calls.store(0, Ordering::SeqCst);
    let mut events = client.events();
    assert_eq!(client.send(get()).await.unwrap().status(), 200);
    assert_eq!(memory.admit_calls.load(Ordering::SeqCst), 1, "one call for the request");
    let slept = std::iter::from_fn(|| events.try_recv().ok()).any(
        |e| matches!(e, ClientEvent::Wait { wait: Some(w), .. } if w == Duration::from_millis(300)),
    );
    assert!(slept, "it slept to its slot");
    let options =
        RequestOptions { deadline: Some(Duration::from_millis(100)), ..Default::default() };
    let late = tokio::time::timeout(Duration::from_secs(10), client.send_with(get(), options))
        .await
        .expect("not held past its deadline");
    let error = late.unwrap_err();
    assert!(
        matches!(error.api_error().map(|e| &e.kind), Some(ApiErrorKind::DeadlineExceeded { .. })),
        "{error}"
    );
    assert_eq!(emu.counters().api.requests, 2);
}

/// A request that slept to a reserved slot reads the fleet's hold before it is sent: a 429 that
/// another process reported while it slept holds it back too, and it asks the fleet again
/// once the hold is over (before, it was sent into the hold).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_slot_respects_a_hold_reported_while_it_slept() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let memory = Arc::new(Memory::default());
    let client = fleet_client(&emu, &memory);
    let get = || client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    assert_eq!(client.send(get()).await.unwrap().status(), 200);
    memory.after_ms.store(1_200, Ordering::SeqCst);
    memory.admit_calls.store(0, Ordering::SeqCst);
    let mut events = client.events();
    let request = {
        let (client, request) = (client.clone(), get());
        tokio::spawn(async move { client.send(request).await.map(|r| r.status().as_u16()) })
    };
    // Another process's 429 holds the fleet for 1.5 s while this request sleeps to its slot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hold_end = std::time::Instant::now() + Duration::from_millis(1_500);
    *memory.hold_until.lock().unwrap() = Some(hold_end);
    memory.after_ms.store(0, Ordering::SeqCst);
    let status = tokio::time::timeout(Duration::from_secs(10), request).await;
    assert_eq!(status.expect("sent after the hold").unwrap().unwrap(), 200);
    assert!(std::time::Instant::now() >= hold_end, "not sent into the hold");
    assert_eq!(memory.admit_calls.load(Ordering::SeqCst), 2, "asked again after the hold");
    let held = std::iter::from_fn(|| events.try_recv().ok()).any(|e| {
        matches!(e, ClientEvent::Wait { reason: WaitReason::Paced(PaceReason::Exhausted), .. })
    });
    assert!(held, "held back for the fleet's hold");
    assert_eq!(emu.counters().api.requests, 2);
}

/// A request's deadline bounds the admission call itself: a store that does not answer fails
/// the request at its deadline (before, it waited for the store's 1 s call timeout and was then
/// sent on the local session's word, past its deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_bounds_a_stalled_admission() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let memory = Arc::new(Memory::default());
    let client = fleet_client(&emu, &memory);
    let get = || client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    assert_eq!(client.send(get()).await.unwrap().status(), 200);
    memory.stall.store(true, Ordering::SeqCst);
    let options =
        RequestOptions { deadline: Some(Duration::from_millis(200)), ..Default::default() };
    let error = client.send_with(get(), options).await.unwrap_err();
    assert!(
        matches!(error.api_error().map(|e| &e.kind), Some(ApiErrorKind::DeadlineExceeded { .. })),
        "{error}"
    );
    assert_eq!(emu.counters().api.requests, 1, "not sent past its deadline");
    assert_eq!(client.fleet_status(), Some(FleetStatus::Joined), "a deadline is not an outage");
}

/// A fleet token this process refuses while it still holds its own (its refresh is due; the
/// fleet's token is unusable here) is named as refused on the next round, so the fleet hands
/// out the lease, instead of the same token in a loop until this process's token runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fleet_token_is_not_taken_again_while_holding_one() {
    let emu_config =
        EmulatorConfig { default_token_lifetime: Duration::from_secs(4), ..Default::default() };
    let emu = Emulator::start(emu_config).await.unwrap();
    let memory = Arc::new(Memory::default());
    let client = fleet_client(&emu, &memory);
    let first = client.token().await.unwrap();
    // The fleet's entry becomes a token this process cannot use.
    *memory.token.lock().unwrap() = Some(good_for_an_hour("not a bearer token"));
    memory.refresh_calls.store(0, Ordering::SeqCst);
    // Its refresh point comes within the token's 4 s; then it fetches its own.
    let renewed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let token = client.token().await.unwrap();
            if token.as_str() != first.as_str() {
                break token;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a new token within the old one's life");
    assert_ne!(renewed.as_str(), "not a bearer token");
    let calls = memory.refresh_calls.load(Ordering::SeqCst);
    assert!(calls <= 3, "{calls} refresh calls");
    assert_eq!(emu.counters().token.requests, 2);
}

/// The read of the fleet's 429 hold, after a sleep to a slot reserved a second or more ahead,
/// is bounded by the request's deadline as every other wait for the fleet is: a store that did
/// not answer it held the request for the call's own timeout (1 s) past its deadline, then
/// counted as an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_bounds_a_stalled_read_of_the_hold() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let memory = Arc::new(Memory::default());
    let client = fleet_client(&emu, &memory);
    let get = || client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    assert_eq!(client.send(get()).await.unwrap().status(), 200);
    // A slot a second ahead (so the hold is read before sending), and no answer to that read.
    memory.after_ms.store(1_000, Ordering::SeqCst);
    memory.stall_hold.store(true, Ordering::SeqCst);
    let options =
        RequestOptions { deadline: Some(Duration::from_millis(1_300)), ..Default::default() };
    let started = std::time::Instant::now();
    let error = client.send_with(get(), options).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(error.api_error().map(|e| &e.kind), Some(ApiErrorKind::DeadlineExceeded { .. })),
        "{error}"
    );
    // The hold's read would have ended at about 2 s (the slot, then the call's timeout).
    assert!(took < Duration::from_millis(1_700), "failed {took:?} after it began");
    assert_eq!(emu.counters().api.requests, 1, "not sent past its deadline");
    assert_eq!(client.fleet_status(), Some(FleetStatus::Joined), "a deadline is not an outage");
}
