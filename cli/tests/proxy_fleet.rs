//! `credflow proxy --redis`: two proxies of one client id share one token through a
//! `redis-server` child process on 127.0.0.1 (installed in CI; the test fails without it), and
//! the proxy refuses a fleet without its key.
#![cfg(unix)]

mod proxy_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use credflow_emulator::{Emulator, EmulatorConfig};
use proxy_support::{credflow, two_proxies_share_one_token};

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
