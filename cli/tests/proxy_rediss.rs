//! `credflow proxy --redis rediss://…`: fleet mode over TLS, against a `redis-server` child
//! process on 127.0.0.1 that serves TLS only (its plain port off), with a certificate from a
//! throwaway CA made here (rcgen). With that CA in `--ca-file`, two proxies share one token
//! through Redis; without it, the server is refused at the handshake with the reason in the
//! log (naming `--ca-file`), at once, and the proxy works alone: no hang, no plain-text
//! fallback. Skipped, with the reason printed, only when redis-server was built without TLS;
//! it fails without redis-server (installed in CI).
#![cfg(unix)]

mod proxy_support;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use proxy_support::{Proxy, http, two_proxies_share_one_token};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A TLS-only `redis-server` on 127.0.0.1 (an ephemeral port), killed on drop, with the files
/// of its throwaway CA in `dir`.
struct TlsRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl TlsRedis {
    /// `None` (after printing why) when this redis-server has no TLS.
    fn start() -> Option<TlsRedis> {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir()
            .join(format!("credflow-proxy-rediss-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_pki(&dir);
        let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", &file("server.pem"), "--tls-key-file", &file("server.key")])
            .args(["--tls-ca-cert-file", &file("ca.pem"), "--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no", "--logfile", &file("redis.log")])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("redis.err")).unwrap())
            .spawn()
            .expect("redis-server is installed (apt-get install -y redis-server)");
        let mut redis = TlsRedis { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = redis.child.try_wait() {
                // A configuration error goes to stderr, a failure at start to the log file.
                let read = |name| std::fs::read_to_string(redis.dir.join(name)).unwrap_or_default();
                let log = read("redis.err") + &read("redis.log");
                // Built without TLS: its tls-* options are unknown, or TLS is said to be
                // unsupported. Any other failure (a certificate it cannot load, say) fails the
                // test.
                let lower = log.to_ascii_lowercase();
                let unknown = lower.contains("bad directive") && lower.contains("tls-");
                if unknown || (lower.contains("tls") && lower.contains("not supported")) {
                    eprintln!("skipped: this redis-server has no TLS ({status}): {log}");
                    return None;
                }
                panic!("redis-server exited ({status}): {log}");
            }
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes a fresh CA (`ca.pem`), a server certificate for 127.0.0.1 and localhost that it
/// signed (`server.pem`, `server.key`) and the fleet key (`fleet-key`) into `dir`.
fn write_pki(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "credflow proxy rediss test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), leaf_cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), leaf_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("fleet-key"), "fleet-key-0123456789abcdef\n").unwrap();
}

#[tokio::test]
async fn two_proxies_share_one_token_over_rediss_with_the_ca_file() {
    let Some(redis) = TlsRedis::start() else { return };
    let emu = Emulator::start(EmulatorConfig::default().with_request_log(false)).await.unwrap();
    let (url, key, ca) = (redis.url(), redis.path("fleet-key"), redis.path("ca.pem"));
    let args = ["--redis", url.as_str(), "--fleet-key-file", key.as_str(), "--ca-file", &ca];
    let (first, _second) = two_proxies_share_one_token(&emu, &args).await;
    first.sigterm();
    let (_, logs) = first.exit().await;
    assert!(!logs.contains("shared store unreachable"), "the fleet degraded: {logs}");
}

#[tokio::test]
async fn without_the_ca_file_the_redis_server_is_refused_with_the_reason_at_once() {
    let Some(redis) = TlsRedis::start() else { return };
    let emu = Emulator::start(EmulatorConfig::default().with_request_log(false)).await.unwrap();
    let (url, key) = (redis.url(), redis.path("fleet-key"));
    let args = ["--redis", url.as_str(), "--fleet-key-file", key.as_str()];
    let http = http();
    let started = Instant::now();
    let proxy =
        Proxy::start(&emu.token_url(), &emu.api_base(), DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, &args)
            .await;
    proxy.ready(&http).await;
    let response = http.get(proxy.url("/api/v2/routing/queues")).send().await.unwrap();
    assert_eq!(response.status(), 200, "the proxy works alone");
    assert!(started.elapsed() < Duration::from_secs(8), "hung: {:?}", started.elapsed());
    proxy.sigterm();
    let (code, logs) = proxy.exit().await;
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("certificate is not trusted"), "no reason given: {logs}");
    assert!(logs.contains("--ca-file"), "does not say what to do: {logs}");
    assert!(logs.contains("working alone"), "{logs}");
    assert_eq!(emu.counters().token.requests, 1, "its own token: it found no fleet");
}
