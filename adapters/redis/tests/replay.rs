//! An older token record written back into Redis over a newer one (a replay by anyone who can
//! write Redis, or a backup restored), against a real `redis-server` on 127.0.0.1: the record
//! is authentic and unexpired, so only its stamp tells it is older. A process that took the
//! newer record refuses it and the fleet gets a new token; a process that took none (just
//! started) cannot tell, and takes it: the limit of what a reader without memory can know.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, get, pod, scope_of, store, wall_now};
use credflow_core::secret::Fingerprint;
use credflow_emulator::{DEMO_CLIENT_ID, Emulator, EmulatorConfig};
use credflow_redis::RedisStore;
use credflow_reqwest::shared::{FleetScope, Refresh, SharedStore, SharedToken};
use zeroize::Zeroizing;

async fn connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// The value of `key` (the record as it is stored: sealed, encrypted).
async fn read(redis: &RedisServer, key: &str) -> Vec<u8> {
    stored(redis, key).await.expect("a record is stored")
}

async fn stored(redis: &RedisServer, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query_async(&mut connection(redis).await).await.unwrap()
}

/// The value of `key` once it is not `before`: a pod publishes its new token to Redis after
/// handing it to its own requests (they do not wait for the store), so a request that
/// succeeded may come back before the record is written.
async fn published(redis: &RedisServer, key: &str, before: Option<&[u8]>) -> Vec<u8> {
    let wait = async {
        loop {
            match stored(redis, key).await {
                Some(value) if Some(value.as_slice()) != before => return value,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait).await.expect("a record is published")
}

/// Writes `value` back under `key`, for an hour, as a writer of Redis without the fleet key can.
async fn write_back(redis: &RedisServer, key: &str, value: &[u8]) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("PX")
        .arg(3_600_000)
        .query_async(&mut connection(redis).await)
        .await
        .unwrap();
}

fn token(value: &str) -> SharedToken {
    SharedToken {
        token: Zeroizing::new(value.to_owned()),
        expires_at: wall_now().saturating_add(credflow_core::Duration::from_secs(3600)),
    }
}

fn fingerprint(token: &SharedToken) -> Fingerprint {
    Fingerprint::of_token(token.token.as_bytes())
}

/// Publishes `token` through `store` under a fresh lease (the fleet's token named `stale` is
/// the one being replaced).
async fn publish(store: &RedisStore, scope: &FleetScope, stale: Option<Fingerprint>, token: &str) {
    let Refresh::Lease(lease) = store.refresh(scope, stale).await.unwrap() else {
        panic!("the lease is taken to replace the fleet's token")
    };
    assert!(store.publish(scope, lease, &self::token(token)).await.unwrap());
}

/// Before, a record copied back over a newer one was taken by every process that read it: the
/// older token (perhaps revoked since, perhaps with less life left) came back into use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_record_written_back_is_refused_by_a_process_that_took_a_newer_one() {
    let redis = RedisServer::start();
    let scope = scope_of(DEMO_CLIENT_ID);
    let writer = store(&redis, |_| {});
    let key = writer.key_names(&scope)[0].clone();
    publish(&writer, &scope, None, "first-token").await;
    let older = read(&redis, &key).await;
    let first = fingerprint(&token("first-token"));
    publish(&writer, &scope, Some(first), "second-token").await;

    // A reader takes the newer record; then the older one is written back.
    let reader = store(&redis, |_| {});
    let taken = reader.current(&scope, None).await.unwrap().expect("the newer record");
    assert_eq!(&*taken.token, "second-token");
    write_back(&redis, &key, &older).await;

    for process in [&reader, &writer] {
        assert!(process.current(&scope, None).await.unwrap().is_none(), "refused at once");
        // Asked for a token other than the one it holds, it takes the lease to replace the
        // replayed record, instead of taking the older token.
        let second = Some(fingerprint(&taken));
        match process.refresh(&scope, second).await.unwrap() {
            Refresh::Lease(lease) => process.release(&scope, lease).await.unwrap(),
            Refresh::Token(t) => panic!("the older token was taken: {}", &*t.token),
        }
    }
    // A process that took no record cannot tell: the record is authentic and unexpired.
    let newcomer = store(&redis, |_| {});
    let replayed = newcomer.current(&scope, None).await.unwrap().expect("taken without memory");
    assert_eq!(&*replayed.token, "first-token");

    // The next record published is newer than everything any process took.
    publish(&reader, &scope, Some(first), "third-token").await;
    for process in [&reader, &writer, &newcomer] {
        let current = process.current(&scope, None).await.unwrap().expect("the new record");
        assert_eq!(&*current.token, "third-token");
    }
}

/// The same with pods and the emulator: a pod whose token was revoked asks the fleet for
/// another, and must not be handed the older token written back into Redis (revoked too: it
/// would fail the request with a second 401, "even with a fresh token").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_keep_to_newer_tokens_when_an_older_record_is_written_back() {
    let redis = RedisServer::start();
    let emu = Emulator::start(
        EmulatorConfig::default().with_api_rate_limit(10_000, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let mut scope = scope_of(DEMO_CLIENT_ID);
    scope.token_url = emu.token_url();
    let key = store(&redis, |_| {}).key_names(&scope)[0].clone();
    let a = pod(&emu, store(&redis, |_| {}), 1);
    assert_eq!(get(&a).await.unwrap(), 200);
    let older = published(&redis, &key, None).await;
    // The first token is revoked: pod A fetches a second one for the fleet, pod B takes it.
    emu.revoke_all_tokens();
    assert_eq!(get(&a).await.unwrap(), 200);
    published(&redis, &key, Some(&older)).await;
    let b_store: Arc<RedisStore> = store(&redis, |_| {});
    let b = pod(&emu, b_store, 2);
    assert_eq!(get(&b).await.unwrap(), 200);
    assert_eq!(emu.counters().token.requests, 2);

    write_back(&redis, &key, &older).await;
    emu.revoke_all_tokens();
    for pod in [&b, &a] {
        let status = tokio::time::timeout(Duration::from_secs(10), get(pod)).await;
        assert_eq!(status.expect("bounded").unwrap(), 200, "a new token, not the replayed one");
    }
    let seen = emu.counters();
    assert_eq!(seen.token.requests, 3, "one more token for the fleet");
    assert_eq!(seen.api.unauthorized, 3, "each revoked token once; the replayed one never");
}
