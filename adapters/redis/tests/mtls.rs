//! Mutual TLS against a real `redis-server` on 127.0.0.1 that serves TLS only and requires a
//! client certificate (`tls-auth-clients yes`), with a throwaway CA made for the test (the
//! `openssl` command): a store without a client certificate, or with one another CA signed, is
//! refused at once with the reason (its pods degrade to their local sessions); a store with a
//! certificate the server's CA signed, given with `RedisConfig::with_client_cert_pem`, does
//! every operation of the fleet. A client certificate that cannot work is refused when the
//! store is built.

#![cfg(feature = "tls")]

mod common;

use std::time::{Duration, Instant};

use common::{
    RedisServer, all_get_200, get, make_ca, make_client_cert, make_server_cert, mtls_config, pod,
    scope_of, store_at, temp_dir, wall_now,
};
use credflow_core::Priority;
use credflow_core::UnixTime;
use credflow_core::ratelimit::{Dialect, RateLimitSnapshot};
use credflow_emulator::{DEMO_CLIENT_ID, Emulator, EmulatorConfig};
use credflow_redis::{RedisConfig, RedisStore, SetupError};
use credflow_reqwest::shared::{Admission, Refresh, SharedStore, SharedToken, StoreError};
use credflow_reqwest::{Client, FleetStatus};
use zeroize::Zeroizing;

/// A TLS-only server that requires client certificates, both its own and its clients' signed
/// by the CA `test-ca`, and that CA's PEM. The CA's files stay in the server's directory.
fn mtls_server() -> (RedisServer, Vec<u8>) {
    let dir = temp_dir("mtls");
    let ca = make_ca(&dir, "test-ca");
    make_server_cert(&dir, "test-ca");
    let config = mtls_config(&dir, "test-ca");
    (RedisServer::start_with(dir, &config, true), ca)
}

/// A `tune` for `store_at`: trusts `ca` and presents `cert` with `key`, through the builders.
fn mutual<'a>(
    ca: &'a [u8],
    cert: &'a [u8],
    key: &'a [u8],
) -> impl Fn(&mut RedisConfig) + Copy + 'a {
    move |c| *c = c.clone().with_root_ca_pem(ca).with_client_cert_pem(cert, key)
}

/// Asserts that `store` is refused at once (no hang) with a reason containing each of `says`.
async fn refused(store: &RedisStore, says: &[&str]) {
    let started = Instant::now();
    match store.admit(&scope_of(DEMO_CLIENT_ID), Priority::Normal, Duration::ZERO).await {
        Err(StoreError::Refused(e)) => {
            for part in says {
                assert!(e.contains(part), "says {part:?}: {e}");
            }
        }
        other => panic!("the server must refuse the store: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3), "no hang: {:?}", started.elapsed());
}

/// A pod on `store` serves its requests through its local session and leaves the fleet.
async fn pod_degrades(store: std::sync::Arc<RedisStore>) {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = pod(&emu, store, 1);
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(get(&client).await.unwrap(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(client.fleet_status(), Some(FleetStatus::Degraded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_requiring_client_certificates_refuses_a_store_without_one() {
    let (redis, ca) = mtls_server();
    let store = store_at(redis.url(), |c| c.root_ca_pem = Some(ca.clone()));
    refused(&store, &["client certificate", "with_client_cert_pem"]).await;
    pod_degrades(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_another_ca_is_refused() {
    let (redis, ca) = mtls_server();
    let elsewhere = temp_dir("mtls-other-ca");
    make_ca(&elsewhere, "other-ca");
    let (cert, key) = make_client_cert(&elsewhere, "other-ca", "intruder");
    let with_cert = mutual(&ca, &cert, &key);
    refused(&store_at(redis.url(), with_cert), &["client certificate", "refused"]).await;
    pod_degrades(store_at(redis.url(), with_cert)).await;
    let _ = std::fs::remove_dir_all(elsewhere);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_match_the_client_certificate_is_refused() {
    let (redis, ca) = mtls_server();
    let (cert, _) = make_client_cert(&redis.dir, "test-ca", "pod");
    let (_, other_key) = make_client_cert(&redis.dir, "test-ca", "other-pod");
    let store = store_at(redis.url(), mutual(&ca, &cert, &other_key));
    refused(&store, &["key", "with_client_cert_pem"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_the_servers_ca_does_every_operation() {
    let (redis, ca) = mtls_server();
    let (cert, key) = make_client_cert(&redis.dir, "test-ca", "pod");
    let with_cert = mutual(&ca, &cert, &key);

    // Every operation of the store, in the order a fleet uses them.
    let store = store_at(redis.url(), with_cert);
    let scope = scope_of(DEMO_CLIENT_ID);
    let Refresh::Lease(lease) = store.refresh(&scope, None).await.unwrap() else {
        panic!("an empty fleet: the lease is taken")
    };
    let token = SharedToken {
        token: Zeroizing::new("mtls-token-0123456789".to_owned()),
        expires_at: UnixTime::from_secs(wall_now().as_secs() + 3600),
    };
    assert!(store.publish(&scope, lease, &token).await.unwrap(), "published under the lease");
    let shared = store.current(&scope, None).await.unwrap().expect("the published token");
    assert_eq!(&*shared.token, "mtls-token-0123456789");
    match store.refresh(&scope, None).await.unwrap() {
        Refresh::Token(t) => assert_eq!(&*t.token, "mtls-token-0123456789"),
        Refresh::Lease(_) => panic!("a usable fleet token is taken, not refreshed again"),
    }
    assert!(matches!(
        store.admit(&scope, Priority::Normal, Duration::ZERO).await.unwrap(),
        Admission::Now
    ));
    let snapshot = RateLimitSnapshot {
        limit: Some(300),
        remaining: Some(299),
        reset_after: Some(credflow_core::Duration::from_secs(60)),
        window: Some(credflow_core::Duration::from_secs(60)),
        dialect: Dialect::Genesys,
    };
    store.observe(&scope, snapshot).await.unwrap();
    assert_eq!(store.hold(&scope).await.unwrap(), None);
    store.rate_limited(&scope, Some(Duration::from_secs(5))).await.unwrap();
    let held = store.hold(&scope).await.unwrap().expect("the 429 holds the fleet");
    assert!(held > Duration::from_secs(3) && held <= Duration::from_secs(5), "{held:?}");

    // And a fleet of pods over mutual TLS: one token request, every pod joined (under another
    // prefix: the token published above is not one the emulator issued).
    let emu = Emulator::start(
        EmulatorConfig::default().with_api_rate_limit(10_000, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let pods: Vec<Client> = (0..3)
        .map(|i| {
            pod(
                &emu,
                store_at(redis.url(), |c| {
                    with_cert(c);
                    c.prefix = "fleet".to_owned()
                }),
                i,
            )
        })
        .collect();
    all_get_200(&pods).await;
    assert_eq!(emu.counters().token.requests, 1, "one token request for the fleet, over mTLS");
    assert!(pods.iter().all(|p| p.fleet_status() == Some(FleetStatus::Joined)));
}

#[test]
fn a_client_certificate_is_checked_when_the_store_is_built() {
    let dir = temp_dir("client-cert-check");
    make_ca(&dir, "ca");
    let (cert, key) = make_client_cert(&dir, "ca", "pod");
    let build = |url: &str, cert: &[u8], key: &[u8]| {
        RedisStore::new(
            RedisConfig::new(url, &[7u8; 16]).with_client_cert_pem(cert.to_vec(), key.to_vec()),
        )
    };
    assert!(build("rediss://127.0.0.1:1/", &cert, &key).is_ok(), "public roots and a client cert");
    let garbled = b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n";
    let garbled_key = b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n";
    for (url, cert_pem, key_pem, says) in [
        ("redis://127.0.0.1:1/", &cert[..], &key[..], "rediss://"),
        ("rediss://127.0.0.1:1/", b"not a certificate", &key[..], "no CERTIFICATE"),
        ("rediss://127.0.0.1:1/", &key[..], &cert[..], "no CERTIFICATE"),
        ("rediss://127.0.0.1:1/", garbled, &key[..], "certificate PEM does not parse"),
        ("rediss://127.0.0.1:1/", &cert[..], &cert[..], "no PRIVATE KEY"),
        ("rediss://127.0.0.1:1/", &cert[..], b"", "no PRIVATE KEY"),
        ("rediss://127.0.0.1:1/", &cert[..], garbled_key, "key PEM does not parse"),
    ] {
        match build(url, cert_pem, key_pem) {
            Err(SetupError::ClientCert(e)) => assert!(e.contains(says), "{url}: {e}"),
            other => panic!("{url} {says}: {other:?}"),
        }
    }
    // Only one half set by hand.
    let mut half = RedisConfig::new("rediss://127.0.0.1:1/", &[7u8; 16]);
    half.client_cert_pem = Some(cert.clone());
    match RedisStore::new(half) {
        Err(SetupError::ClientCert(e)) => assert!(e.contains("without its private key"), "{e}"),
        other => panic!("{other:?}"),
    }
    let mut half = RedisConfig::new("rediss://127.0.0.1:1/", &[7u8; 16]);
    half.client_key_pem = Some(Zeroizing::new(key.clone()));
    match RedisStore::new(half) {
        Err(SetupError::ClientCert(e)) => assert!(e.contains("without its certificate"), "{e}"),
        other => panic!("{other:?}"),
    }
    // The key never shows in Debug, of the config or of the store.
    let store = build("rediss://127.0.0.1:1/", &cert, &key).unwrap();
    let key_body = key_line(&key);
    let shown = format!("{store:?}");
    assert!(shown.contains("client_cert: true"), "{shown}");
    assert!(!shown.contains(&key_body) && !shown.contains("PRIVATE KEY"), "{shown}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The first base64 line of the key PEM, to look for in a `Debug` output.
fn key_line(pem: &[u8]) -> String {
    let text = String::from_utf8(pem.to_vec()).unwrap();
    text.lines().find(|l| !l.starts_with("-----")).unwrap().to_owned()
}
