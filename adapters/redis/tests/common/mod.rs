//! What the Redis tests share: a `redis-server` child process on 127.0.0.1 with the
//! configuration a test needs (plain, TLS, ACL users), pods, and a throwaway CA for TLS.

#![allow(dead_code, unreachable_pub)] // each test file uses its own part; `pub` for them

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use credflow_core::UnixTime;
use credflow_core::ratelimit::pacer::PacerConfig;
use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, EmulatorHandle};
use credflow_redis::{RedisConfig, RedisStore};
use credflow_reqwest::config::credentials;
use credflow_reqwest::shared::FleetScope;
use credflow_reqwest::{Client, Config};
use reqwest::Method;

pub const FLEET_KEY: &[u8] = b"test-fleet-key-0123456789";

/// A `redis-server` child process on 127.0.0.1, stopped on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    /// Configuration lines after the port, bind and persistence settings.
    extra: String,
    tls: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "credflow-redis-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl RedisServer {
    /// Plain TCP, default user without a password.
    pub fn start() -> Self {
        Self::start_with(temp_dir("plain"), "", false)
    }

    /// A server in `dir` with `extra` configuration lines; `tls`: `extra` sets up `tls-port`
    /// (the placeholder `{port}` is replaced) and the plain port is off.
    pub fn start_with(dir: PathBuf, extra: &str, tls: bool) -> Self {
        let port = free_port();
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            extra: extra.replace("{port}", &port.to_string()),
            tls,
        };
        server.restart();
        server
    }

    /// Starts (again) on the same port, empty.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let ports = if self.tls { "port 0\n".to_owned() } else { format!("port {}\n", self.port) };
        let config = format!(
            "{ports}bind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\n{}\n",
            self.dir.display(),
            self.extra
        );
        let path = self.dir.join("redis.conf");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("redis-server")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install -y redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.listening() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Accepting connections: a PONG on plain TCP; for TLS or ACL servers, an open port.
    fn listening(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        if self.tls || !self.extra.is_empty() {
            return true;
        }
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `redis://` (or `rediss://`) URL, with `userinfo` (`user:pass@`) if not empty.
    pub fn url_as(&self, userinfo: &str) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{userinfo}127.0.0.1:{}/", self.port)
    }

    pub fn url(&self) -> String {
        self.url_as("")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A store on `url` with short lease timings, adjusted by `tune`.
pub fn store_at(url: String, tune: impl FnOnce(&mut RedisConfig)) -> Arc<RedisStore> {
    let mut config = RedisConfig::new(url, FLEET_KEY).with_encryption_key([9; 32]);
    config.lease_ttl = Duration::from_secs(2);
    config.poll_interval = Duration::from_millis(20);
    tune(&mut config);
    Arc::new(RedisStore::new(config).unwrap())
}

pub fn store(redis: &RedisServer, tune: impl FnOnce(&mut RedisConfig)) -> Arc<RedisStore> {
    store_at(redis.url(), tune)
}

pub fn pod(emu: &EmulatorHandle, store: Arc<RedisStore>, seed: u64) -> Client {
    let mut config = Config::custom(
        emu.token_url(),
        emu.api_base(),
        credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap(),
    )
    .with_shared(store);
    config.seed = Some(seed);
    Client::new(config).unwrap()
}

pub async fn get(client: &Client) -> Result<u16, credflow_reqwest::Error> {
    let request = client.request(Method::GET, "/api/v2/routing/queues")?.build().unwrap();
    Ok(client.send(request).await?.status().as_u16())
}

/// Every pod sends one API request at the same time; each must answer 200.
pub async fn all_get_200(pods: &[Client]) {
    let calls: Vec<_> = pods
        .iter()
        .map(|client| {
            let client = client.clone();
            tokio::spawn(async move { get(&client).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 200);
    }
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .output()
        .expect("the openssl command is installed (apt-get install -y openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A throwaway CA in `dir`: `<name>.pem` and `<name>.key` (P-256, valid for a day). Returns
/// the certificate's PEM.
pub fn make_ca(dir: &Path, name: &str) -> Vec<u8> {
    let (pem, key, subject) = (format!("{name}.pem"), format!("{name}.key"), format!("/CN={name}"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "1",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    std::fs::read(dir.join(pem)).unwrap()
}

/// A server certificate for 127.0.0.1 and localhost signed by the CA `ca` (made by
/// [`make_ca`] in `dir`): `server.pem` and `server.key`.
pub fn make_server_cert(dir: &Path, ca: &str) {
    make_leaf_cert(
        dir,
        ca,
        "server",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
}

/// A client certificate for mutual TLS signed by the CA `ca` (made by [`make_ca`] in `dir`):
/// `<name>.pem` and `<name>.key` in `dir`. Returns the certificate's PEM and the key's PEM.
pub fn make_client_cert(dir: &Path, ca: &str, name: &str) -> (Vec<u8>, Vec<u8>) {
    make_leaf_cert(
        dir,
        ca,
        name,
        &format!("/CN={name}"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=clientAuth\n",
    )
}

/// A P-256 key and a certificate for `subject` with the X.509 `extensions`, signed by the CA
/// `ca` (made by [`make_ca`] in `dir`): `<name>.pem` and `<name>.key` in `dir`. Returns the
/// certificate's PEM and the key's PEM.
fn make_leaf_cert(
    dir: &Path,
    ca: &str,
    name: &str,
    subject: &str,
    extensions: &str,
) -> (Vec<u8>, Vec<u8>) {
    let (pem, key, csr, ext) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ],
    );
    std::fs::write(dir.join(&ext), extensions).unwrap();
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
            "-extfile",
            &ext,
        ],
    );
    (std::fs::read(dir.join(pem)).unwrap(), std::fs::read(dir.join(key)).unwrap())
}

/// The fleet scope of the demo client (the emulator's credentials) under `client_id`.
pub fn scope_of(client_id: &str) -> FleetScope {
    FleetScope {
        client_id: client_id.to_owned(),
        token_url: "http://127.0.0.1/oauth/token".to_owned(),
        credential: credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap().fingerprint(),
        pacer: PacerConfig::default(),
        max_hold: Duration::from_secs(60),
    }
}

/// The wall clock now, in whole seconds.
pub fn wall_now() -> UnixTime {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    UnixTime::from_secs(secs.as_secs())
}

/// The configuration lines of a TLS-only server with the certificate of [`make_server_cert`].
pub fn tls_config(dir: &Path, ca: &str) -> String {
    format!(
        "tls-port {{port}}\ntls-cert-file {d}/server.pem\ntls-key-file {d}/server.key\n\
         tls-ca-cert-file {d}/{ca}.pem\ntls-auth-clients no\n",
        d = dir.display()
    )
}

/// [`tls_config`] for a server that requires a client certificate the CA `ca` signed
/// (`tls-auth-clients yes`: mutual TLS).
pub fn mtls_config(dir: &Path, ca: &str) -> String {
    tls_config(dir, ca).replace("tls-auth-clients no", "tls-auth-clients yes")
}
