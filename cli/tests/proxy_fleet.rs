//! `credflow proxy --redis`: two proxies of one client id share one token through a
//! `redis-server` child process on 127.0.0.1 (installed in CI; the test fails without it), the
//! token is stored encrypted with `--encryption-key-file`, and the proxy refuses a fleet without
//! its key or with an encryption key that is not one.
#![cfg(unix)]

mod proxy_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_emulator::{Emulator, EmulatorConfig};
use proxy_support::{Proxy, credflow, http, two_proxies_share_one_token};

/// A `redis-server` on 127.0.0.1 (an ephemeral port), killed on drop.
struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir()
            .join(format!("credflow-proxy-fleet-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install -y redis-server)");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pong = TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                let mut reply = [0u8; 7];
                s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
            });
            if pong {
                break;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Redis { child, port, dir }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn two_proxies_share_one_token_through_redis() {
    let redis = Redis::start();
    let emu = Emulator::start(EmulatorConfig::default().with_request_log(false)).await.unwrap();
    let key = redis.dir.join("fleet-key");
    std::fs::write(&key, "fleet-key-0123456789abcdef\n").unwrap();
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let args = ["--redis", url.as_str(), "--fleet-key-file", key.to_str().unwrap()];
    two_proxies_share_one_token(&emu, &args).await;
}

#[tokio::test]
async fn a_fleet_needs_its_key() {
    let env = [("GENESYS_CLIENT_ID", "id"), ("GENESYS_CLIENT_SECRET", "secret")];
    let target =
        ["--token-url", "http://127.0.0.1:9/oauth/token", "--api-base", "http://127.0.0.1:9"];
    let mut args = vec!["proxy", "--listen", "127.0.0.1:0", "--redis", "redis://127.0.0.1:9/0"];
    args.extend(target);
    let out = credflow(&args, &env).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fleet-key-file"));
}

/// The token the test's token endpoint grants: long and distinctive, so that its bytes are in a
/// value read from Redis only if that value holds the token.
const GRANTED: &str = "fleet-token-7d3e9b2c41f05a86e1c7d4b9a2f6e03c";

/// An encryption key file's content: 64 hexadecimal digits and a line break, as `openssl rand
/// -hex 32 > FILE` writes it.
const ENCRYPTION_KEY: &str = "9f1c0e7a5b3d28e46c0a1f9b7d5e3c2a8b6d4f0e1a3c5b7d9e2f4a6c8b0d1e3f\n";

/// A token endpoint granting [`GRANTED`] for an hour, and an API answering 200 to anything.
fn granting_server() -> Hostile {
    Hostile::start(|req| match req.path() {
        "/oauth/token" => Reply::json(
            200,
            &format!(r#"{{"access_token":"{GRANTED}","token_type":"bearer","expires_in":3600}}"#),
        ),
        _ => Reply::json(200, "{}"),
    })
}

/// The value of the token key the fleet wrote in the Redis on `port`, as Redis holds it, read
/// with a Redis client of the test's own; waits (at most 10 s) for it to be written.
fn stored_token(port: u16) -> Vec<u8> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    let mut con = client.get_connection().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys: Vec<String> = redis::cmd("KEYS").arg("credflow:*:token").query(&mut con).unwrap();
        assert!(keys.len() <= 1, "one token key: {keys:?}");
        if let Some(key) = keys.first() {
            return redis::cmd("GET").arg(key).query(&mut con).unwrap();
        }
        assert!(Instant::now() < deadline, "no token key in Redis after 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn holds(value: &[u8], token: &str) -> bool {
    value.windows(token.len()).any(|w| w == token.as_bytes())
}

/// With `--encryption-key-file` the token record in Redis is encrypted: its value, read as it
/// is, does not hold the token's bytes (without the flag it does: sealed, not encrypted, which
/// shows the check can see it). Two proxies with the same key share the token: the second
/// decrypts the first's record rather than fetch its own, and both forward with it.
#[tokio::test]
async fn with_an_encryption_key_the_token_in_redis_is_not_readable() {
    for encrypted in [false, true] {
        let redis = Redis::start();
        let server = granting_server();
        let fleet_key = redis.dir.join("fleet-key");
        std::fs::write(&fleet_key, "fleet-key-0123456789abcdef\n").unwrap();
        let encryption_key = redis.dir.join("encryption-key");
        std::fs::write(&encryption_key, ENCRYPTION_KEY).unwrap();
        let url = format!("redis://127.0.0.1:{}/0", redis.port);
        let mut args =
            vec!["--redis", url.as_str(), "--fleet-key-file", fleet_key.to_str().unwrap()];
        if encrypted {
            args.extend(["--encryption-key-file", encryption_key.to_str().unwrap()]);
        }
        let (token_url, api_base) = (server.url("/oauth/token"), server.url(""));
        let start = || Proxy::start(&token_url, &api_base, "fleet-id", "fleet-secret", &args);
        let http = http();
        let first = start().await;
        first.ready(&http).await;
        let port = redis.port;
        let value = tokio::task::spawn_blocking(move || stored_token(port)).await.unwrap();
        assert_eq!(
            holds(&value, GRANTED),
            !encrypted,
            "encrypted: {encrypted}; the value: {}",
            String::from_utf8_lossy(&value)
        );
        assert_eq!(value.starts_with(b"CFE1"), encrypted, "the encrypted form's magic");
        let second = start().await;
        second.ready(&http).await;
        for proxy in [&first, &second] {
            let response = http.get(proxy.url("/api/v2/routing/queues")).send().await.unwrap();
            assert_eq!(response.status(), 200, "encrypted: {encrypted}");
        }
        assert_eq!(server.requests_to("/oauth/token"), 1, "the second took the fleet's token");
        let bearer = format!("Bearer {GRANTED}");
        let api: Vec<_> =
            server.requests().into_iter().filter(|r| r.path() != "/oauth/token").collect();
        assert!(
            api.len() >= 2
                && api.iter().all(|r| r.header("authorization") == Some(bearer.as_str()))
        );
    }
}

/// An encryption key file that does not hold a key (of the wrong length, or not hexadecimal)
/// stops the proxy at start with exit 2, naming the flag and the format, not the file's
/// content; so does the flag without `--redis`.
#[tokio::test]
async fn a_bad_encryption_key_file_exits_2_without_showing_it() {
    let dir = std::env::temp_dir().join(format!("credflow-proxy-bad-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fleet_key = dir.join("fleet-key");
    std::fs::write(&fleet_key, "fleet-key-0123456789abcdef\n").unwrap();
    let env = [("GENESYS_CLIENT_ID", "id"), ("GENESYS_CLIENT_SECRET", "secret")];
    let target =
        ["--token-url", "http://127.0.0.1:9/oauth/token", "--api-base", "http://127.0.0.1:9"];
    let hex = ENCRYPTION_KEY.trim_end();
    let not_hex = format!("{}zz", &hex[..62]);
    for (content, says) in [
        ("a-passphrase-not-a-key\n", "22 characters, not 64"),
        (&format!("{hex}{hex}\n")[..], "128 characters, not 64"),
        (&format!("{not_hex}\n")[..], "not a hexadecimal digit"),
        ("\n", "empty"),
    ] {
        let key = dir.join("encryption-key");
        std::fs::write(&key, content).unwrap();
        let mut args = vec!["proxy", "--listen", "127.0.0.1:0", "--redis", "redis://127.0.0.1:9/0"];
        args.extend(["--fleet-key-file", fleet_key.to_str().unwrap()]);
        args.extend(["--encryption-key-file", key.to_str().unwrap()]);
        args.extend(target);
        let out = credflow(&args, &env).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{content:?}: {err}");
        assert!(err.contains("--encryption-key-file") && err.contains(says), "{content:?}: {err}");
        let shown = content.trim_end();
        assert!(shown.is_empty() || !err.contains(shown), "the content is shown: {err}");
        assert!(!err.contains(&hex[..16]) && !err.contains("passphrase"), "{err}");
    }
    // The same, given in the environment variable of the flag.
    let key = dir.join("encryption-key");
    std::fs::write(&key, "a-passphrase-not-a-key\n").unwrap();
    let mut args = vec!["proxy", "--listen", "127.0.0.1:0", "--redis", "redis://127.0.0.1:9/0"];
    args.extend(["--fleet-key-file", fleet_key.to_str().unwrap()]);
    args.extend(target);
    let mut env_with_key = env.to_vec();
    env_with_key.push(("CREDFLOW_ENCRYPTION_KEY_FILE", key.to_str().unwrap()));
    let out = credflow(&args, &env_with_key).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("22 characters, not 64") && !err.contains("passphrase"), "{err}");
    // Without a fleet to store the token in.
    let mut args = vec!["proxy", "--listen", "127.0.0.1:0"];
    args.extend(["--encryption-key-file", key.to_str().unwrap()]);
    args.extend(target);
    let out = credflow(&args, &env).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--encryption-key-file without --redis"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
