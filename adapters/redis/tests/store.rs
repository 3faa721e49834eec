//! The store's own failure modes against a real `redis-server` on 127.0.0.1, through the
//! [`SharedStore`] trait as the client calls it: a lease taken by an acquire whose answer never
//! came back (a lost reply, or the call dropped by the client's timeout) is released at once,
//! a long fleet-wide 429 hold outlives the rate key's window, and admission reserves the slot it
//! names.
//!
//! Lost replies come from a small TCP proxy between the store and `redis-server`: it forwards
//! both ways until the store sends a command naming the lease key (the acquire script does),
//! then drops every reply from the server while still forwarding the store's commands, so a
//! release the store sends afterwards reaches Redis.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{RedisServer, scope_of, store, store_at};
use credflow_core::Priority;
use credflow_core::ratelimit::{Dialect, RateLimitSnapshot};
use credflow_emulator::DEMO_CLIENT_ID;
use credflow_redis::RedisStore;
use credflow_reqwest::shared::{Admission, FleetScope, Refresh, SharedStore, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Far longer than any test here: a lease still there after a few seconds was not released.
const LONG_LEASE: Duration = Duration::from_secs(60);

/// Starts the proxy to `redis-server` on `upstream`; returns its port. Once a command naming
/// `trigger` passes, no reply from the server reaches the store again, on any connection.
async fn reply_dropping_proxy(upstream: u16, trigger: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holding = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            let (trigger, seen_by_client, seen_by_server) =
                (trigger.clone().into_bytes(), holding.clone(), holding.clone());
            tokio::spawn(async move {
                // The tail of what came before, so a name split across two reads is found.
                let mut window: Vec<u8> = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = match from_client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    window.extend_from_slice(&buf[..n]);
                    if window.windows(trigger.len()).any(|w| w == trigger) {
                        // Before forwarding: the server's answer to it is already held.
                        seen_by_client.store(true, Ordering::SeqCst);
                    }
                    window.drain(..window.len().saturating_sub(trigger.len()));
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    let n = match from_server.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if !seen_by_server.load(Ordering::SeqCst)
                        && to_client.write_all(&buf[..n]).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A raw subscription to the keyspace events of `key` (`set`, `del`, `expired`, ...).
struct KeyEvents {
    stream: TcpStream,
    seen: String,
}

impl KeyEvents {
    async fn subscribe(redis: &RedisServer, key: &str) -> Self {
        let mut con = direct(redis).await;
        let _: () = redis::cmd("CONFIG")
            .arg(&["SET", "notify-keyspace-events", "Kg$x"])
            .query_async(&mut con)
            .await
            .unwrap();
        let mut stream = TcpStream::connect(("127.0.0.1", redis.port)).await.unwrap();
        let channel = format!("__keyspace@0__:{key}");
        let command = format!("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n", channel.len());
        stream.write_all(command.as_bytes()).await.unwrap();
        let mut events = KeyEvents { stream, seen: String::new() };
        events.until("subscribe", Duration::from_secs(2)).await;
        events
    }

    /// Waits (at most `limit`) for the bulk string `word` among the messages.
    async fn until(&mut self, word: &str, limit: Duration) -> bool {
        let needle = format!("\r\n${}\r\n{word}\r\n", word.len());
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = [0u8; 1024];
        while !self.seen.contains(&needle) {
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut buf));
            match read.await {
                Ok(Ok(n)) if n > 0 => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => return false,
            }
        }
        // Consumed: the next wait looks for a later event.
        let at = self.seen.find(&needle).unwrap() + needle.len();
        self.seen.drain(..at);
        true
    }
}

async fn direct(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// A store that reaches `redis` through the reply-dropping proxy, armed on the lease key of
/// `scope`, with the scripts already loaded in Redis (by a refresh and a release on another
/// client id, answered normally): a script unknown to Redis could not run once replies are
/// held, since its `NOSCRIPT` answer would be lost.
async fn store_behind_proxy(
    redis: &RedisServer,
    scope: &FleetScope,
    response_timeout: Duration,
) -> Arc<RedisStore> {
    let lease_key = store(redis, |_| {}).key_names(scope)[1].clone();
    let port = reply_dropping_proxy(redis.port, lease_key).await;
    let store = store_at(format!("redis://127.0.0.1:{port}/"), |c| {
        c.lease_ttl = LONG_LEASE;
        c.response_timeout = response_timeout;
    });
    let warm = scope_of("warm-up");
    let Refresh::Lease(lease) = store.refresh(&warm, None).await.unwrap() else {
        panic!("an empty fleet: the lease is taken")
    };
    store.release(&warm, lease).await.unwrap();
    store
}

/// Waits (at most `limit`) for `key` to be gone.
async fn gone_within(redis: &RedisServer, key: &str, limit: Duration) -> bool {
    let mut con = direct(redis).await;
    let deadline = Instant::now() + limit;
    loop {
        let exists: bool = redis::cmd("EXISTS").arg(key).query_async(&mut con).await.unwrap();
        if !exists {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_by_an_unanswered_acquire_is_released_on_the_error() {
    let redis = RedisServer::start();
    let scope = scope_of(DEMO_CLIENT_ID);
    let store = store_behind_proxy(&redis, &scope, Duration::from_millis(300)).await;
    let lease_key = store.key_names(&scope)[1].clone();
    let mut events = KeyEvents::subscribe(&redis, &lease_key).await;

    // The acquire script runs in Redis, its answer is lost: the call times out.
    match store.refresh(&scope, None).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("the reply is lost, the call must fail: {other:?}"),
    }
    assert!(events.until("set", Duration::from_secs(2)).await, "the lease was taken in Redis");
    assert!(
        gone_within(&redis, &lease_key, Duration::from_secs(2)).await,
        "the unanswered lease is released, not left for lease_ttl ({LONG_LEASE:?})"
    );
    assert!(events.until("del", Duration::from_secs(1)).await, "deleted by the release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_by_a_dropped_refresh_is_released() {
    let redis = RedisServer::start();
    let scope = scope_of(DEMO_CLIENT_ID);
    // The response timeout outlasts the test: only dropping the call ends it.
    let store = store_behind_proxy(&redis, &scope, Duration::from_secs(30)).await;
    let lease_key = store.key_names(&scope)[1].clone();
    let mut events = KeyEvents::subscribe(&redis, &lease_key).await;

    // The client's timeout on the call, made deterministic: the refresh is dropped once the
    // lease is in Redis and its answer is held by the proxy.
    tokio::select! {
        answer = store.refresh(&scope, None) => panic!("the reply is held: {answer:?}"),
        taken = events.until("set", Duration::from_secs(5)) => assert!(taken, "lease taken"),
    }
    assert!(
        gone_within(&redis, &lease_key, Duration::from_secs(2)).await,
        "the dropped call's lease is released, not left for lease_ttl ({LONG_LEASE:?})"
    );
    assert!(events.until("del", Duration::from_secs(1)).await, "deleted by the release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_429_hold_outlives_a_short_window_on_the_rate_key() {
    let redis = RedisServer::start();
    let store = store(&redis, |_| {});
    let con = direct(&redis).await;
    let pttl = |key: String| {
        let mut con = con.clone();
        async move { redis::cmd("PTTL").arg(key).query_async::<i64>(&mut con).await.unwrap() }
    };
    let second = credflow_core::Duration::from_secs(1);
    let short = |remaining, reset_after| RateLimitSnapshot {
        limit: Some(10),
        remaining: Some(remaining),
        reset_after: Some(reset_after),
        window: Some(second),
        dialect: Dialect::Genesys,
    };
    let hold = Duration::from_secs(600);

    // A 429 after a short window (the 429 script), then a short window again (its save). The
    // pods honour a Retry-After that long (their retry policy's max_wait).
    let mut scope = scope_of(DEMO_CLIENT_ID);
    scope.max_hold = hold;
    let rate_key = store.key_names(&scope)[2].clone();
    store.observe(&scope, short(5, second)).await.unwrap();
    let reported = Instant::now();
    store.rate_limited(&scope, Some(hold)).await.unwrap();
    let left = |at: Instant| hold.saturating_sub(at.elapsed()).as_millis() as i64;
    let ttl = pttl(rate_key.clone()).await;
    assert!(ttl >= left(reported) + 55_000, "after the 429: key ttl {ttl} ms");
    store.observe(&scope, short(4, second)).await.unwrap();
    let ttl = pttl(rate_key.clone()).await;
    assert!(ttl >= left(reported) + 55_000, "after a 1 s window was saved: key ttl {ttl} ms");
    match store.admit(&scope, Priority::Critical, Duration::from_secs(20)).await.unwrap() {
        Admission::Held(wait) => {
            assert!(wait > hold - Duration::from_secs(10) && wait <= hold, "{wait:?}")
        }
        other => panic!("the fleet is held back for the Retry-After, not {other:?}"),
    }

    // A window whose reset lies beyond twice its length keeps the key to the reset.
    let other = scope_of("reset-beyond-window");
    store.observe(&other, short(5, credflow_core::Duration::from_secs(600))).await.unwrap();
    let ttl = pttl(store.key_names(&other)[2].clone()).await;
    assert!(ttl >= 600_000, "the window's state lasts to its reset: key ttl {ttl} ms");
}

/// Admission reserves the slot it names when the wait is the fleet's spacing inside the current
/// window and within the caller's horizon: the caller sends then without asking again (one
/// store call per request instead of one per wake-up). A wait beyond the horizon, or for a
/// 429's hold, is not counted: the caller asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_reserves_the_slot_it_names_within_the_horizon() {
    let redis = RedisServer::start();
    let store = store(&redis, |_| {});
    let mut scope = scope_of("reserve");
    scope.pacer.burst = 1;
    scope.pacer.burst_permille = 0;
    let ten = credflow_core::Duration::from_secs(10);
    let window = RateLimitSnapshot {
        limit: Some(10),
        remaining: Some(10),
        reset_after: Some(ten),
        window: Some(ten),
        dialect: Dialect::Genesys,
    };
    store.observe(&scope, window).await.unwrap();
    let horizon = Duration::from_secs(20);
    let admit = |within| store.admit(&scope, Priority::Normal, within);
    assert_eq!(admit(horizon).await.unwrap(), Admission::Now);
    // The next is spaced by about a second (10 left over 10 s). Beyond the horizon: not counted.
    let Admission::Wait(asked) = admit(Duration::ZERO).await.unwrap() else {
        panic!("a wait beyond the horizon is not reserved")
    };
    assert!(asked > Duration::from_millis(500) && asked <= Duration::from_secs(1), "{asked:?}");
    // Within it: reserved, at the instant the uncounted answer named (it took nothing)...
    let Admission::After(first) = admit(horizon).await.unwrap() else { panic!("reserved") };
    assert!(first.abs_diff(asked) < Duration::from_millis(100), "{first:?} vs {asked:?}");
    // ...so the next reservation is one interval later.
    let Admission::After(second) = admit(horizon).await.unwrap() else { panic!("reserved") };
    assert!(second > first + Duration::from_millis(500), "{second:?} after {first:?}");
    // A 429's hold is not reserved through: what the server allows after it is not known.
    // A request that slept to its slot reads the hold before it is sent.
    assert_eq!(store.hold(&scope).await.unwrap(), None);
    store.rate_limited(&scope, Some(Duration::from_secs(5))).await.unwrap();
    let hold = store.hold(&scope).await.unwrap().expect("the fleet is held");
    assert!(hold > Duration::from_secs(4) && hold <= Duration::from_secs(5), "{hold:?}");
    match admit(horizon).await.unwrap() {
        Admission::Held(wait) => assert!(wait > Duration::from_secs(4), "{wait:?}"),
        other => panic!("the hold is waited out and asked again, not {other:?}"),
    }
}

/// Slots reserved before a reset that a later response brings forward land in the next window:
/// the rollover counts them there (else the server would see them on top of a full window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_beyond_a_reset_brought_forward_count_in_the_next_window() {
    let redis = RedisServer::start();
    let store = store(&redis, |_| {});
    let mut scope = scope_of("brought-forward");
    scope.pacer.burst = 1;
    scope.pacer.burst_permille = 0;
    let snapshot = |remaining, reset_ms| RateLimitSnapshot {
        limit: Some(10),
        remaining: Some(remaining),
        reset_after: Some(credflow_core::Duration::from_millis(reset_ms)),
        window: None,
        dialect: Dialect::Genesys,
    };
    store.observe(&scope, snapshot(10, 10_000)).await.unwrap();
    let horizon = Duration::from_secs(60);
    assert_eq!(store.admit(&scope, Priority::Normal, horizon).await.unwrap(), Admission::Now);
    let mut slots = Vec::new();
    for _ in 0..3 {
        let Admission::After(wait) = store.admit(&scope, Priority::Normal, horizon).await.unwrap()
        else {
            panic!("reserved")
        };
        slots.push(wait);
    }
    // A response brings the reset forward to 1.5 s from now (the same window).
    store.observe(&scope, snapshot(6, 1_500)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let beyond = slots.iter().filter(|&&wait| wait > Duration::from_millis(1_800)).count();
    assert!(beyond >= 1, "{slots:?}");
    let mut admitted = 0;
    while store.admit(&scope, Priority::Critical, Duration::ZERO).await.unwrap() == Admission::Now {
        admitted += 1;
        assert!(admitted <= 10, "more than the window");
    }
    assert_eq!(admitted, 10 - beyond, "{slots:?}");
}

/// A `max_wait` too long to add to the clock (`Duration::MAX`, "wait for the others as long as
/// it takes") is no bound, not a panic: the refresh added it to the clock unchecked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_wait_past_the_clocks_range_is_no_bound_not_a_panic() {
    let redis = RedisServer::start();
    let scope = scope_of("endless-max-wait");
    let store = store(&redis, |c| c.max_wait = Duration::MAX);
    match store.refresh(&scope, None).await {
        Ok(Refresh::Lease(_)) => {}
        other => panic!("an empty fleet hands out the lease: {other:?}"),
    }
}

/// A snapshot claiming a reset and a window decades away (999 999 999 s) with a few requests
/// left: the fleet read it, clamped to a week, and held every Normal request back that long
/// for the share kept for critical ones. Like the pacer, the store now reads a reset or window
/// beyond a day as unknown: one default window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_decades_away_does_not_hold_the_fleet_back() {
    let redis = RedisServer::start();
    let store = store(&redis, |_| {});
    let scope = scope_of("decades");
    let decades = credflow_core::Duration::from_secs(999_999_999);
    let snapshot = RateLimitSnapshot {
        limit: Some(300),
        remaining: Some(5),
        reset_after: Some(decades),
        window: Some(decades),
        dialect: Dialect::IetfCombined,
    };
    store.observe(&scope, snapshot).await.unwrap();
    let default_window = scope.pacer.default_window.as_millis();
    match store.admit(&scope, Priority::Normal, Duration::from_secs(20)).await.unwrap() {
        Admission::Now => {}
        Admission::After(wait) | Admission::Wait(wait) | Admission::Held(wait) => assert!(
            wait.as_millis() <= u128::from(default_window),
            "held back {wait:?} (the default window is {default_window} ms)"
        ),
    }
}

/// A `redis+unix://` URL: the store opens its connections itself (to read them through the
/// reply bound), over a Unix socket as over TCP.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_url_is_connected_to() {
    let dir = common::temp_dir("unix");
    let socket = dir.join("redis.sock");
    let extra = format!("unixsocket {}\nunixsocketperm 700", socket.display());
    let _redis = RedisServer::start_with(dir, &extra, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "redis-server made no socket");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let store = store_at(format!("redis+unix://{}", socket.display()), |_| {});
    let scope = scope_of("unix-socket");
    assert_eq!(store.rate_limited(&scope, Some(Duration::from_secs(5))).await, Ok(()));
    let hold = store.hold(&scope).await.unwrap().expect("the hold written over the socket");
    assert!(hold > Duration::from_secs(4) && hold <= Duration::from_secs(5), "{hold:?}");
}
