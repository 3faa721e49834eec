//! Redis ACL users against a real `redis-server` on 127.0.0.1: the default user is disabled, the
//! fleet connects as a user with exactly the permissions the crate documents
//! ([`credflow_redis::ACL_COMMANDS`] on `credflow:*`), and each of them is shown to be needed.

mod common;

use std::time::Duration;

use common::{RedisServer, all_get_200, get, pod, scope_of, store_at, temp_dir, wall_now};
use credflow_core::Priority;
use credflow_core::ratelimit::{Dialect, RateLimitSnapshot};
use credflow_core::secret::AccessToken;
use credflow_emulator::{DEMO_CLIENT_ID, Emulator, EmulatorConfig};
use credflow_redis::ACL_COMMANDS;
use credflow_reqwest::shared::{Admission, Refresh, SharedStore, SharedToken, StoreError};
use credflow_reqwest::{Client, FleetStatus};
use zeroize::Zeroizing;

const ADMIN: &str = "admin:admin-pw@";
const APP: &str = "credflow:app-pw@";

/// The ACL rule of the `credflow` user, with `commands`.
fn rule(commands: &[&str]) -> String {
    let allowed: Vec<String> = commands.iter().map(|c| format!("+{}", c.to_lowercase())).collect();
    format!("on >app-pw ~credflow:* resetchannels -@all {}", allowed.join(" "))
}

/// A server whose default user is off: `admin` may do anything, `credflow` only what the crate
/// documents.
fn acl_server() -> RedisServer {
    let config = format!(
        "user default off\nuser admin on >admin-pw ~* &* +@all\nuser credflow {}\n",
        rule(&ACL_COMMANDS)
    );
    RedisServer::start_with(temp_dir("acl"), &config, false)
}

/// Every operation of the store, as two pods of a fleet use them: each script, each direct
/// command, and the lease held by another (`PTTL`). The first error ends it.
async fn every_operation(url: &str) -> Result<(), StoreError> {
    let a = store_at(url.to_owned(), |c| c.max_wait = Duration::from_millis(100));
    let b = store_at(url.to_owned(), |c| c.max_wait = Duration::from_millis(100));
    let scope = scope_of(DEMO_CLIENT_ID);
    let Refresh::Lease(lease) = a.refresh(&scope, None).await? else {
        panic!("the fleet is empty: the first pod takes the lease")
    };
    match b.refresh(&scope, None).await {
        Err(StoreError::Busy) => {}
        Err(e) => return Err(e),
        Ok(r) => panic!("the lease is held: {r:?}"),
    }
    let token = SharedToken {
        token: Zeroizing::new("fleet-token-1".to_owned()),
        expires_at: wall_now().saturating_add(credflow_core::Duration::from_secs(3600)),
    };
    assert!(a.publish(&scope, lease, &token).await?, "published under the lease");
    // Read at once, without the lease (a pod held back by its breaker), unless it is the one
    // the pod already refused.
    let stale = AccessToken::<64>::new(&token.token).unwrap().fingerprint();
    let current = b.current(&scope, None).await?.expect("the published token is readable");
    assert_eq!(*current.token, *token.token);
    assert!(b.current(&scope, Some(stale)).await?.is_none());
    let Refresh::Token(shared) = b.refresh(&scope, None).await? else {
        panic!("the published token is taken")
    };
    assert_eq!(*shared.token, *token.token);
    let Refresh::Lease(lease) = b.refresh(&scope, Some(stale)).await? else {
        panic!("a pod refusing the fleet's token refreshes")
    };
    b.release(&scope, lease).await?;
    let snapshot = RateLimitSnapshot {
        limit: Some(10),
        remaining: Some(5),
        reset_after: Some(credflow_core::Duration::from_secs(30)),
        window: Some(credflow_core::Duration::from_secs(60)),
        dialect: Dialect::Genesys,
    };
    a.observe(&scope, snapshot).await?;
    assert_eq!(a.admit(&scope, Priority::Critical, Duration::ZERO).await?, Admission::Now);
    // Spaced requests are given a reserved slot (the slots key), which the next observation
    // takes off the server's count.
    let roomy = RateLimitSnapshot { limit: Some(100), remaining: Some(90), ..snapshot };
    a.observe(&scope, roomy).await?;
    let mut reserved = false;
    for _ in 0..20 {
        if let Admission::After(_) =
            a.admit(&scope, Priority::Normal, Duration::from_secs(60)).await?
        {
            reserved = true;
            break;
        }
    }
    assert!(reserved, "a spaced request is given a slot");
    a.observe(&scope, snapshot).await?;
    b.rate_limited(&scope, Some(Duration::from_secs(5))).await?;
    assert!(b.hold(&scope).await?.is_some(), "the 429's hold is read");
    assert!(matches!(b.admit(&scope, Priority::Normal, Duration::ZERO).await?, Admission::Held(_)));
    // An absurd Retry-After holds the fleet back (it once overflowed the script into "now"),
    // for at most the longest hold a pod honours.
    b.rate_limited(&scope, Some(Duration::MAX)).await?;
    assert!(matches!(
        b.admit(&scope, Priority::Critical, Duration::ZERO).await?,
        Admission::Held(wait) if wait > Duration::from_secs(5) && wait <= scope.max_hold
    ));
    Ok(())
}

async fn admin(redis: &RedisServer, command: &[&str]) {
    let client = redis::Client::open(redis.url_as(ADMIN)).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: redis::Value =
        redis::cmd(command[0]).arg(&command[1..]).query_async(&mut con).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_works_as_an_acl_user_with_the_documented_permissions() {
    let redis = acl_server();
    // The default user is off: an anonymous client is refused.
    let anonymous = store_at(redis.url(), |_| {});
    assert!(matches!(
        anonymous.admit(&scope_of(DEMO_CLIENT_ID), Priority::Normal, Duration::ZERO).await,
        Err(StoreError::Refused(_))
    ));

    every_operation(&redis.url_as(APP)).await.expect("every operation is permitted");

    admin(&redis, &["FLUSHALL"]).await;
    let emu = Emulator::start(
        EmulatorConfig::default().with_api_rate_limit(10_000, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let pods: Vec<Client> =
        (0..5).map(|i| pod(&emu, store_at(redis.url_as(APP), |_| {}), i)).collect();
    all_get_200(&pods).await;
    assert_eq!(emu.counters().token.requests, 1, "one token request for the fleet");
    assert!(pods.iter().all(|p| p.fleet_status() == Some(FleetStatus::Joined)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_documented_permission_is_needed() {
    let redis = acl_server();
    for missing in ACL_COMMANDS {
        let fewer: Vec<&str> = ACL_COMMANDS.into_iter().filter(|c| *c != missing).collect();
        let rule = rule(&fewer);
        let mut setuser = vec!["ACL", "SETUSER", "credflow", "reset"];
        setuser.extend(rule.split(' '));
        admin(&redis, &setuser).await;
        // A fresh start: no keys, no cached scripts (so SCRIPT LOAD is needed again).
        admin(&redis, &["FLUSHALL"]).await;
        admin(&redis, &["SCRIPT", "FLUSH"]).await;
        match every_operation(&redis.url_as(APP)).await {
            Err(StoreError::Refused(e)) => {
                // Redis names a command refused directly, not one refused inside a script:
                // the error lists what the user needs.
                assert!(e.contains("lacks a permission"), "without {missing}: {e}");
                assert!(e.contains(&ACL_COMMANDS.join(" ")), "without {missing}: {e}");
            }
            other => panic!("without {missing}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_degrades_with_a_clear_error() {
    let redis = acl_server();
    let wrong = redis.url_as("credflow:not-the-password@");
    match every_operation(&wrong).await {
        Err(StoreError::Refused(e)) => {
            assert!(e.contains("user and password"), "{e}");
            assert!(!e.contains("not-the-password"), "the password is not logged: {e}");
        }
        other => panic!("{other:?}"),
    }
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = pod(&emu, store_at(wrong, |_| {}), 1);
    let started = std::time::Instant::now();
    assert_eq!(get(&client).await.unwrap(), 200, "the request goes through the local session");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(client.fleet_status(), Some(FleetStatus::Degraded));
    assert_eq!(emu.counters().token.requests, 1);
}
