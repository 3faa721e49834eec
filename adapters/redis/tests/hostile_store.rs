//! Values in Redis that the scripts never write, as anyone with write access to Redis could
//! leave them, against a real `redis-server` on 127.0.0.1: the store must not turn them into
//! a storm of calls to Redis, nor into answers outside their contracts. (The answers' decoding
//! is fuzzed: `fuzz/fuzz_targets/redis_replies.rs`.)

mod common;

use std::time::Duration;

use common::{RedisServer, scope_of, store};
use credflow_core::Priority;
use credflow_core::ratelimit::{Dialect, RateLimitSnapshot};
use credflow_reqwest::shared::{Admission, Refresh, SharedStore, StoreError};

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

/// The rate hash's fields are read by the Lua scripts (`tonumber`, inside Redis, where the
/// fuzz targets do not reach; they fuzz the answers). Each field set to each of these values,
/// every call still answers within its contract: an error (the client then paces locally), or
/// an answer the client bounds itself (an admission reserved within the caller's horizon, a
/// wait or a hold it caps at its own deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rate_hash_fields_give_errors_or_answers_within_their_contracts() {
    const FIELDS: [&str; 8] =
        ["limit", "remaining", "reset_at", "length", "tat", "interval", "blocked_until", "seen"];
    const VALUES: [&str; 11] = [
        "abc",
        "",
        "nan",
        "inf",
        "-inf",
        "1e308",
        "-1e308",
        "-5",
        "0x10",
        "9007199254740993",
        "18446744073709551616",
    ];
    let redis = RedisServer::start();
    let store = store(&redis, |_| {});
    let scope = scope_of("hostile-rate-hash");
    let [_, _, rate_key, slots_key] = store.key_names(&scope);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let ten = credflow_core::Duration::from_secs(10);
    let window = RateLimitSnapshot {
        limit: Some(10),
        remaining: Some(10),
        reset_after: Some(ten),
        window: Some(ten),
        dialect: Dialect::Genesys,
    };
    let within = Duration::from_secs(2);
    let mut refused = 0;
    for field in FIELDS {
        for value in VALUES {
            let case = format!("{field} = {value:?}");
            let _: () = redis::cmd("DEL")
                .arg(&rate_key)
                .arg(&slots_key)
                .query_async(&mut con)
                .await
                .unwrap();
            store.observe(&scope, window).await.unwrap();
            let _: () = redis::cmd("HSET")
                .arg(&rate_key)
                .arg(field)
                .arg(value)
                .query_async(&mut con)
                .await
                .unwrap();
            let mut answered = |result: Result<(), StoreError>| match result {
                Ok(()) => {}
                Err(StoreError::Refused(_)) => refused += 1,
                Err(e) => panic!("{case}: {e}"),
            };
            let admitted = store.admit(&scope, Priority::Normal, within).await;
            if let Ok(Admission::After(wait)) = admitted {
                assert!(wait <= within, "{case}: reserved {wait:?} ahead, beyond {within:?}");
            }
            answered(admitted.map(drop));
            answered(store.hold(&scope).await.map(drop));
            answered(store.rate_limited(&scope, None).await);
            answered(store.observe(&scope, window).await);
        }
    }
    // Most values stop the scripts (an error, not a guess); the count shows they ran.
    assert!(refused > 0, "no hostile value was refused");
}

/// Bytes Redis has received from and sent to all its clients so far (`INFO stats`).
async fn traffic(con: &mut redis::aio::MultiplexedConnection) -> (u64, u64) {
    let info: String = redis::cmd("INFO").arg("stats").query_async(con).await.unwrap();
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    (field("total_net_input_bytes"), field("total_net_output_bytes"))
}

/// Anyone with write access to Redis can leave a token value of up to 512 MB, far longer than
/// any token credflow writes. It was read whole by every process that looked for the fleet's
/// token (32 MiB here), and sent back whole with the acquire script's arguments: memory and
/// traffic without a bound of credflow's. Now only as much is read as the longest token
/// credflow can store, the value is judged unusable without opening it, and the lease to
/// replace it is taken as for any unusable token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_token_value_is_not_read_whole_and_is_replaced() {
    let redis = RedisServer::start();
    let scope = scope_of("oversized-token");
    let store = store(&redis, |_| {});
    let token_key = store.key_names(&scope)[0].clone();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let huge = vec![b'x'; 32 << 20];
    let _: () = redis::cmd("SET").arg(&token_key).arg(&huge).query_async(&mut con).await.unwrap();
    let (received, sent) = traffic(&mut con).await;
    assert!(store.current(&scope, None).await.unwrap().is_none(), "not a usable token");
    let refresh = store.refresh(&scope, None).await.unwrap();
    assert!(matches!(refresh, Refresh::Lease(_)), "the lease to replace it is taken");
    let (received_after, sent_after) = traffic(&mut con).await;
    let (read, echoed) = (sent_after - sent, received_after - received);
    assert!(read < 256 << 10, "{read} bytes sent by Redis for a 32 MiB value");
    assert!(echoed < 256 << 10, "{echoed} bytes sent to Redis for a 32 MiB value");
}

/// A rate state that makes every admission answer "ask again" almost at once (a reserved slot
/// far in the future keeps the window spent, and a one-millisecond window resets it at every
/// call), as anyone with write access to Redis can leave it: a request asked Redis again about
/// once a millisecond, and without a deadline never ended. Its questions are now spaced (10 ms,
/// doubling to 1 s), and it fails naming the fleet's budget once it has waited `max_wait` (2 s
/// here) for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_always_saying_ask_again_is_not_asked_in_a_loop() {
    let redis = RedisServer::start();
    let emu = credflow_emulator::Emulator::start(credflow_emulator::EmulatorConfig::default())
        .await
        .unwrap();
    let store = store(&redis, |_| {});
    let max_wait = Duration::from_secs(2);
    let mut config = credflow_reqwest::Config::custom(
        emu.token_url(),
        emu.api_base(),
        credflow_reqwest::config::credentials(
            credflow_emulator::DEMO_CLIENT_ID,
            credflow_emulator::DEMO_CLIENT_SECRET,
        )
        .unwrap(),
    )
    .with_shared(store.clone());
    config.seed = Some(5);
    config.session.retry.max_wait = credflow_core::Duration::from_millis(2_000);
    // The pod's scope, as the client names it, to find its rate keys.
    let scope = credflow_reqwest::shared::FleetScope {
        client_id: credflow_emulator::DEMO_CLIENT_ID.to_owned(),
        token_url: emu.token_url(),
        credential: config.credentials.fingerprint(),
        pacer: config.session.pacer,
        max_hold: max_wait,
    };
    let [_, _, rate_key, slots_key] = store.key_names(&scope);
    let pod = credflow_reqwest::Client::new(config).unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&rate_key)
        .arg(&["limit", "1", "remaining", "1", "reset_at", "0", "length", "1", "seen", "0"])
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(&slots_key)
        .arg(1e15)
        .arg("far")
        .query_async(&mut con)
        .await
        .unwrap();
    let before = calls(&mut con, "evalsha").await;
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), common::get(&pod))
        .await
        .expect("the request ends without a deadline of its own");
    let took = started.elapsed();
    let questions = calls(&mut con, "evalsha").await - before;
    let error = result.expect_err("no slot was ever given");
    assert!(error.to_string().contains("fleet's shared rate state had no slot"), "{error}");
    assert!(!error.to_string().contains("  "), "a run of spaces in the message: {error}");
    assert!(took >= Duration::from_millis(1_200) && took < Duration::from_secs(5), "{took:?}");
    // 10 + 20 + ... + 640 ms, then one a second: 8 questions in 2 s, with the token's and the
    // pod's other script calls beside them (thousands before).
    assert!(questions <= 30, "{questions} script calls in {took:?}");
}

/// The acquire script's answer that the token changed meanwhile (`{0, 0}`), as a hostile
/// server, or a token key rewritten without end, would give.
const CHANGED: &[u8] = b"*2\r\n:0\r\n:0\r\n";

/// A server on 127.0.0.1 speaking just enough RESP for the store: every token read finds an
/// empty value, and every acquire is answered `eval_reply`. Counts the acquires.
fn always_answering(
    eval_reply: &'static [u8],
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let acquires = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&acquires);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let count = std::sync::Arc::clone(&count);
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    // `*N` then N bulk strings: the command's name is the first.
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let Some(n) = line.trim_end().strip_prefix('*').and_then(|n| n.parse().ok())
                    else {
                        return;
                    };
                    let mut args: Vec<Vec<u8>> = Vec::new();
                    for _ in 0..n {
                        let mut len = String::new();
                        let _ = reader.read_line(&mut len);
                        let len: usize =
                            len.trim_end().trim_start_matches('$').parse().unwrap_or(0);
                        let mut arg = vec![0u8; len + 2];
                        if reader.read_exact(&mut arg).is_err() {
                            return;
                        }
                        arg.truncate(len);
                        args.push(arg);
                    }
                    let name = args.first().map(|a| a.to_ascii_uppercase()).unwrap_or_default();
                    let reply: &[u8] = match &name[..] {
                        b"GETRANGE" | b"GET" => b"$0\r\n\r\n",
                        b"EVALSHA" | b"EVAL" => {
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            eval_reply
                        }
                        b"PING" => b"+PONG\r\n",
                        _ => b"+OK\r\n",
                    };
                    if writer.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, acquires)
}

/// Refreshes against a store whose every acquire answers `eval_reply` (`poll_interval` 50 ms,
/// `max_wait` 300 ms): `refresh` must give up as busy within its `max_wait`. Returns how many
/// acquires it made.
async fn acquires_until_busy(eval_reply: &'static [u8], scope: &str) -> usize {
    let (url, acquires) = always_answering(eval_reply);
    let store = common::store_at(url, |c| {
        c.poll_interval = Duration::from_millis(50);
        c.max_wait = Duration::from_millis(300);
    });
    let scope = scope_of(scope);
    let refresh = tokio::time::timeout(Duration::from_secs(3), store.refresh(&scope, None));
    let answer = refresh.await.expect("refresh gives up within its max_wait");
    assert_eq!(answer.unwrap_err(), StoreError::Busy);
    acquires.load(std::sync::atomic::Ordering::SeqCst)
}

/// A store whose every acquire answers "the token changed" was asked again at once, without
/// a pause and without looking at `max_wait`: a loop of calls until the caller's own timeout.
/// The first such answer is read again at once (another process just published), later ones
/// are waited out as a lease held elsewhere, and `refresh` gives up as busy at `max_wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_always_changed_is_not_acquired_in_a_loop() {
    let acquires = acquires_until_busy(CHANGED, "always-changed").await;
    // The first at once after the first, then one per 50 ms for 300 ms.
    assert!((2..=10).contains(&acquires), "{acquires} acquires");
}

/// A store whose every acquire answers that the lease is held for one more millisecond (`{2,
/// 1}`): a lease re-armed without end by a writer of its key, or a hostile server. The poller
/// napped for what was left of it each time, about a thousand calls a second until
/// `max_wait`. A lease about to end is waited out once; then it is looked at every
/// `poll_interval`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_always_ends_soon_is_not_polled_every_millisecond() {
    let acquires = acquires_until_busy(b"*2\r\n:2\r\n:1\r\n", "always-ending").await;
    // One after a millisecond, then one per 50 ms for 300 ms.
    assert!((2..=10).contains(&acquires), "{acquires} acquires");
}
