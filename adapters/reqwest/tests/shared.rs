//! The fleet extension point with an in-memory `SharedStore`, against the emulator: the client's
//! side of the contract (ask the fleet first, publish under the lease, degrade once, rejoin).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credflow_core::Priority;
use credflow_core::ratelimit::RateLimitSnapshot;
use credflow_core::secret::{AccessToken, Fingerprint};
use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use credflow_reqwest::config::credentials;
use credflow_reqwest::shared::{
    Admission, BoxFuture, FleetScope, Lease, Refresh, SharedStore, SharedToken, StoreError,
};
use credflow_reqwest::{Client, ClientEvent, Config, FleetStatus};
use reqwest::Method;

#[derive(Debug, Default)]
struct Memory {
    token: Mutex<Option<SharedToken>>,
    lease: Mutex<Option<[u8; 16]>>,
    next_fence: AtomicU64,
    down: AtomicBool,
    admitted: AtomicU64,
    observed: AtomicU64,
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

fn fingerprint(token: &SharedToken) -> Fingerprint {
    AccessToken::<4096>::new(&token.token).unwrap().fingerprint()
}

impl SharedStore for Memory {
    fn refresh<'a>(
        &'a self,
        _scope: &'a FleetScope,
        stale: Option<Fingerprint>,
    ) -> BoxFuture<'a, Result<Refresh, StoreError>> {
        Box::pin(async move {
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
    ) -> BoxFuture<'a, Result<Admission, StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.admitted.fetch_add(1, Ordering::SeqCst);
            Ok(Admission::Now)
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
