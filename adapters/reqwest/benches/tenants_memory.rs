//! Many tenants in one process (issue 15, item 7): `TENANTS` credflow clients (one client id
//! each, as a service with one OAuth client per customer org holds them) sharing one
//! [`Transport`], each with its token, and the resident memory they add, read from
//! `/proc/self/statm`.
//!
//! ```text
//! cargo bench -p credflow-reqwest --bench tenants_memory
//! ```
//!
//! `MANY_TENANTS` sets the number of clients (default 1000). The token server is a child
//! process, so only the clients' memory is counted. Linux only (statm).

use std::convert::Infallible;

use bytes::Bytes;
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Target, Transport};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A token endpoint: every client id gets a token of Genesys Cloud's shape and length.
async fn handle(
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let _ = request.into_body().collect().await;
    let body = r#"{"access_token":"mD3wJ9Bq0zZ7xY5kR2vT8nL4cF6hP1sA-gE0uI3oW5yQ7tK9rM2bN4vC6xZ8aS1dF3gH5jK7lP9o","token_type":"bearer","expires_in":86400}"#;
    let response = hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap_or_default();
    Ok(response)
}

async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}

/// Resident set size in bytes (`/proc/self/statm`: pages; 4 KiB pages assumed).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm");
    pages * 4096
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The token server runs in a child process (this program, with `MANY_TENANTS_SERVE` set),
/// so that its connections are not counted: it prints its address, then serves until killed.
fn serve_in_this_process() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        serve(listener).await;
    });
}

/// Kills the token server's process when the measurement ends (or panics).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if std::env::var_os("MANY_TENANTS_SERVE").is_some() {
        return serve_in_this_process();
    }
    let tenants: usize =
        std::env::var("MANY_TENANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let mut child = std::process::Command::new(std::env::current_exe().expect("this program"))
        .env("MANY_TENANTS_SERVE", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the token server's process");
    let stdout = child.stdout.take().expect("its output");
    let _server = Server(child);
    let mut addr = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut addr).expect("address");
    let token_url = format!("http://{}/oauth/token", addr.trim());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let transport = Transport::new().expect("transport");
        // One client first (and its token): the runtime's and the shared transport's memory
        // are then counted in the baseline, not per tenant.
        let target = || Target::Custom {
            token_url: token_url.clone(),
            api_base: "http://127.0.0.1:9/api/v2/".to_owned(),
        };
        let first = Client::builder(target(), credentials("tenant-0", "secret-0").expect("ids"))
            .transport(transport.clone())
            .build()
            .expect("client");
        first.token().await.expect("a token");
        let before = rss();

        let mut clients = vec![first];
        for i in 1..=tenants {
            let ids = credentials(&format!("tenant-{i}"), &format!("secret-{i}")).expect("ids");
            let client = Client::builder(target(), ids)
                .transport(transport.clone())
                .build()
                .expect("client");
            clients.push(client);
        }
        let created = rss();
        for client in &clients {
            client.token().await.expect("a token");
        }
        let with_tokens = rss();
        println!(
            "{tenants} clients sharing one Transport: +{:.1} MiB created, +{:.1} MiB with a \
             token each ({:.1} KiB per client); process RSS {:.1} MiB",
            mib(created.saturating_sub(before)),
            mib(with_tokens.saturating_sub(before)),
            with_tokens.saturating_sub(before) as f64 / 1024.0 / tenants as f64,
            mib(with_tokens),
        );
        drop(clients);
    });
}
