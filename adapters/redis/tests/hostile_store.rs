//! Values in Redis that the scripts never write, as anyone with write access to Redis could
//! leave them, against a real `redis-server` on 127.0.0.1: the store must not turn them into
//! a storm of calls to Redis. (Their decoding is fuzzed: `fuzz/fuzz_targets/redis_replies.rs`.)

mod common;

use std::time::Duration;

use common::{RedisServer, scope_of, store};
use credflow_reqwest::shared::{SharedStore, StoreError};

/// `calls` of `INFO commandstats` for `command` (0 before its first call).
async fn calls(con: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(con).await.unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// A lease key without an expiry (`PTTL` -1) was read as a lease expiring within the next
/// millisecond: a process waiting for the fleet's token asked Redis again every millisecond
/// until its `max_wait` (238 acquire calls in 600 ms here, on the old code). It polls at its
/// `poll_interval` as for any lease held elsewhere, and gives up as busy at `max_wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_without_expiry_is_polled_at_the_poll_interval_not_every_millisecond() {
    let redis = RedisServer::start();
    let scope = scope_of("lease-without-expiry");
    let store = store(&redis, |c| {
        c.poll_interval = Duration::from_millis(100);
        c.max_wait = Duration::from_millis(600);
    });
    let lease_key = store.key_names(&scope)[1].clone();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () =
        redis::cmd("SET").arg(&lease_key).arg("not-a-fence").query_async(&mut con).await.unwrap();
    let before = calls(&mut con, "evalsha").await;
    assert_eq!(store.refresh(&scope, None).await.unwrap_err(), StoreError::Busy);
    let acquires = calls(&mut con, "evalsha").await - before;
    // 600 ms / 100 ms: about 7 (the first, and one after each nap).
    assert!((2..=12).contains(&acquires), "{acquires} acquire calls in 600 ms");
}
