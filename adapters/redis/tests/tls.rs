//! `rediss://` against a real `redis-server` on 127.0.0.1 serving TLS only, with a certificate
//! from a throwaway CA made for the test (the `openssl` command): the fleet works when that CA
//! is trusted with `RedisConfig::with_root_ca_pem`, and a server whose certificate another CA
//! signed is refused at once, with the reason, while requests go on through local sessions.

#![cfg(feature = "tls")]

mod common;

use std::time::{Duration, Instant};

use common::{
    RedisServer, all_get_200, get, make_ca, make_server_cert, pod, scope_of, store_at, temp_dir,
    tls_config,
};
use credflow_core::Priority;
use credflow_emulator::{DEMO_CLIENT_ID, Emulator, EmulatorConfig};
use credflow_redis::{RedisConfig, RedisStore, SetupError};
use credflow_reqwest::shared::{SharedStore, StoreError};
use credflow_reqwest::{Client, FleetStatus};

/// A TLS-only server whose certificate the CA `test-ca` signed, and that CA's PEM.
fn tls_server() -> (RedisServer, Vec<u8>) {
    let dir = temp_dir("tls");
    let ca = make_ca(&dir, "test-ca");
    make_server_cert(&dir, "test-ca");
    let config = tls_config(&dir, "test-ca");
    (RedisServer::start_with(dir, &config, true), ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_works_over_rediss_with_a_private_ca() {
    let (redis, ca) = tls_server();
    let url = redis.url();
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");
    let emu = Emulator::start(
        EmulatorConfig::default().with_api_rate_limit(10_000, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let pods: Vec<Client> = (0..5)
        .map(|i| pod(&emu, store_at(url.clone(), |c| c.root_ca_pem = Some(ca.clone())), i))
        .collect();
    all_get_200(&pods).await;
    assert_eq!(emu.counters().token.requests, 1, "one token request for the fleet, over TLS");
    assert!(pods.iter().all(|p| p.fleet_status() == Some(FleetStatus::Joined)));
    let shared: u64 = pods.iter().map(|p| p.counters().shared_tokens).sum();
    assert_eq!(shared, 4, "the other pods took the token from Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_with_the_reason() {
    let (redis, _) = tls_server();
    let elsewhere = temp_dir("other-ca");
    let other_ca = make_ca(&elsewhere, "other-ca");
    // Trusting another CA, and trusting only the public roots: both refuse the server.
    for trust in [Some(other_ca), None] {
        let store = store_at(redis.url(), |c| c.root_ca_pem = trust.clone());
        let started = Instant::now();
        match store.admit(&scope_of(DEMO_CLIENT_ID), Priority::Normal, Duration::ZERO).await {
            Err(StoreError::Refused(e)) => {
                assert!(e.contains("certificate is not trusted"), "{e}");
                assert!(e.contains("with_root_ca_pem"), "says what to do: {e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3), "no hang: {:?}", started.elapsed());
    }
    // A pod on that store: requests go through its local session, the fleet is left once.
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let store = store_at(redis.url(), |c| c.root_ca_pem = Some(make_ca(&elsewhere, "x")));
    let client = pod(&emu, store, 1);
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(get(&client).await.unwrap(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(client.fleet_status(), Some(FleetStatus::Degraded));
    let _ = std::fs::remove_dir_all(elsewhere);
}

#[test]
fn a_root_ca_is_checked_when_the_store_is_built() {
    let key = [7u8; 16];
    let build = |url: &str, pem: &[u8]| {
        RedisStore::new(RedisConfig::new(url, &key).with_root_ca_pem(pem.to_vec()))
    };
    let dir = temp_dir("ca-check");
    let ca = make_ca(&dir, "ca");
    assert!(build("rediss://127.0.0.1:1/", &ca).is_ok());
    for (url, pem, says) in [
        ("redis://127.0.0.1:1/", &ca[..], "rediss://"),
        ("rediss://127.0.0.1:1/", b"not a certificate", "no CERTIFICATE"),
        (
            "rediss://127.0.0.1:1/",
            b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
            "does not parse",
        ),
        // A PEM block that decodes, but not to a certificate rustls takes as a trust anchor.
        (
            "rediss://127.0.0.1:1/",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "trust anchor",
        ),
    ] {
        match build(url, pem) {
            Err(SetupError::RootCa(e)) => assert!(e.contains(says), "{url}: {e}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
