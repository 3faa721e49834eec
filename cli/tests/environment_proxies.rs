//! The proxies the environment names, against a recording proxy on 127.0.0.1: plain `http`
//! never goes through one (it would read the client secret or the bearer token), `https`
//! goes through `HTTPS_PROXY` (a `CONNECT`: the proxy sees the host only), and `NO_PROXY` is
//! honoured. Each case runs the `credflow` binary with its own environment.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};

const BIN: &str = env!("CARGO_BIN_EXE_credflow");

/// A proxy on 127.0.0.1 that records the first line of each request: a `CONNECT` to a port of
/// 127.0.0.1 (the only host it ever connects to) is tunnelled, anything else refused (403).
struct RecordingProxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl RecordingProxy {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(stream, &log));
            }
        });
        RecordingProxy { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// One client of the proxy: its request line recorded, then a tunnel or a refusal.
fn serve(mut client: TcpStream, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut first = String::new();
    let _ = reader.read_line(&mut first);
    log.lock().unwrap().push(first.trim_end().to_owned());
    // The rest of the head.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let port = first
        .strip_prefix("CONNECT 127.0.0.1:")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|port| port.parse::<u16>().ok());
    let Some(port) = port else {
        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else { return };
    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let (mut up_read, mut up_write) = (upstream.try_clone().unwrap(), upstream);
    let mut client_write = client;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut up_write);
        let _ = up_write.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_read, &mut client_write);
}

/// A token endpoint on 127.0.0.1 (plain HTTP).
fn token_server() -> Hostile {
    Hostile::start(|req| match req.path() {
        "/oauth/token" => {
            Reply::json(200, r#"{"access_token":"t0ken","token_type":"bearer","expires_in":3600}"#)
        }
        _ => Reply::status(404),
    })
}

/// Runs `credflow args…` with the emulator's demo credentials and `env`.
fn credflow(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GENESYS_CLIENT_ID", DEMO_CLIENT_ID)
        .env("GENESYS_CLIENT_SECRET", DEMO_CLIENT_SECRET)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("credflow ran")
}

/// `credflow --token-url URL token` with `env`.
fn token(token_url: &str, env: &[(&str, &str)]) -> Output {
    credflow(&["--token-url", token_url, "token"], env)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `HTTP_PROXY` and `ALL_PROXY` set, a plain-`http` token URL on loopback: the request goes
/// straight to the token endpoint (reqwest's default sent it, with the Basic credentials, to
/// the proxy).
#[test]
fn plain_http_never_goes_through_a_proxy() {
    let proxy = RecordingProxy::start();
    let server = token_server();
    let url = format!("http://localhost:{}/oauth/token", server.addr().port());
    let out = token(&url, &[("HTTP_PROXY", &proxy.url()), ("ALL_PROXY", &proxy.url())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(proxy.seen(), Vec::<String>::new(), "the proxy saw the request");
    assert_eq!(server.requests_to("/oauth/token"), 1);
}

/// `HTTPS_PROXY` set: an `https` token URL is reached through it (a `CONNECT`, the request
/// itself inside TLS); with the host in `NO_PROXY`, directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_goes_through_the_proxy_the_environment_names_unless_no_proxy_says_otherwise() {
    let emu = Emulator::start(EmulatorConfig::default().with_tls(true)).await.unwrap();
    let pem = std::env::temp_dir().join(format!("credflow-proxy-env-{}.pem", std::process::id()));
    std::fs::write(&pem, emu.ca_pem().unwrap()).unwrap();
    let token_url = emu.token_url();
    let port = token_url.trim_start_matches("https://127.0.0.1:");
    let port = port.split('/').next().unwrap().to_owned();
    let run = |env: Vec<(&'static str, String)>| {
        let (token_url, pem) = (token_url.clone(), pem.clone());
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            credflow(
                &["--ca-file", pem.to_str().unwrap(), "--token-url", &token_url, "token"],
                &env,
            )
        })
    };

    let proxy = RecordingProxy::start();
    let out = run(vec![("HTTPS_PROXY", proxy.url())]).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(proxy.seen(), [format!("CONNECT 127.0.0.1:{port} HTTP/1.1")]);

    let proxy = RecordingProxy::start();
    let env = vec![("https_proxy", proxy.url()), ("NO_PROXY", "127.0.0.1".to_owned())];
    let out = run(env).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(proxy.seen(), Vec::<String>::new(), "NO_PROXY was not honoured");
    assert_eq!(emu.counters().token.succeeded, 2);
    let _ = std::fs::remove_file(&pem);
}

/// A proxy variable that is not a URL is a configuration error naming the variable (it was
/// ignored in silence), without repeating its value (which may hold a password).
#[test]
fn a_proxy_variable_that_is_not_a_url_exits_2() {
    let server = token_server();
    let url = format!("https://localhost:{}/oauth/token", server.addr().port());
    let out = token(&url, &[("HTTPS_PROXY", "http://user:pa ss@[")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTPS_PROXY"), "{stderr}");
    assert!(!stderr.contains("pa ss"), "{stderr}");
}
