//! A scripted, misbehaving HTTP/1.1 server for hardening tests.
//!
//! The emulator behaves like Genesys Cloud; this server behaves like whatever a test scripts:
//! redirects to another origin, endless or oversized bodies, nonsense token responses, echoed
//! secrets, a head and then silence. It speaks just enough HTTP/1.1 to be a peer (one request per
//! connection, `Connection: close`), records every request it received, and only ever binds
//! 127.0.0.1 on an ephemeral port. It runs on a thread of its own with its own runtime, so sync
//! tests (the CLI's) and async tests (the adapters') use it alike, and it stops when dropped.
//!
//! ```no_run
//! use credflow_emulator::hostile::{Hostile, Reply};
//!
//! let server = Hostile::start(|req| {
//!     if req.path() == "/oauth/token" {
//!         Reply::json(200, r#"{"access_token":"t","token_type":"bearer","expires_in":0}"#)
//!     } else {
//!         Reply::status(404)
//!     }
//! });
//! let token_url = server.url("/oauth/token");
//! // ... drive the client at `token_url`, then:
//! assert!(server.requests_to("/oauth/token") < 10);
//! ```

// Test support: a machine that cannot bind loopback or start a thread fails the test loudly, and
// slices are cut at positions found in the same buffer.
#![allow(clippy::expect_used, clippy::indexing_slicing)]

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Requests larger than this (head plus body) are cut off: this server is for clients under
/// test, not a sink.
const MAX_REQUEST: usize = 1 << 20;

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The method, as sent.
    pub method: String,
    /// The request target (path and query), as sent.
    pub target: String,
    /// The header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (by `Content-Length`).
    pub body: Vec<u8>,
    /// When the head was complete.
    pub at: Instant,
}

impl Recorded {
    /// The target's path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of form field `name` in the body, as sent (still percent-encoded); empty if
    /// absent.
    pub fn form_value(&self, name: &str) -> String {
        self.body_text()
            .split('&')
            .find_map(|pair| pair.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .unwrap_or_default()
            .to_owned()
    }

    /// The credentials of a Basic `Authorization` header (the base64 value); empty if none.
    pub fn basic_credentials(&self) -> &str {
        self.header("authorization").unwrap_or("").trim_start_matches("Basic ")
    }
}

/// Token endpoint answers (HTTP 200) that are not a usable token, as a captive portal, a broken
/// proxy or a wrong URL give them: content type and body. In order: truncated JSON, an HTML
/// page, no `access_token`, a `token_type` other than Bearer, a token with CR/LF in it.
pub const UNUSABLE_TOKEN_ANSWERS: [(&str, &str); 5] = [
    ("application/json", r#"{"access_token":"abc","token_type""#),
    ("text/html", "<html><body>Sign in to the Wi-Fi</body></html>"),
    ("application/json", r#"{"token_type":"Bearer","expires_in":3600}"#),
    ("application/json", r#"{"access_token":"abc","token_type":"mac"}"#),
    ("application/json", r#"{"access_token":"abc\r\nX-Evil: 1","token_type":"Bearer"}"#),
];

/// What the server sends after a reply's head.
#[derive(Clone, Debug)]
pub enum Body {
    /// These bytes, with `Content-Length`.
    Bytes(Vec<u8>),
    /// `Transfer-Encoding: chunked`, this chunk over and over until the peer goes away or
    /// `limit` bytes were sent (then the connection closes without the last chunk).
    Endless {
        /// The chunk repeated.
        chunk: Vec<u8>,
        /// Bytes after which the server gives up.
        limit: u64,
    },
    /// Nothing more after the head, ever: the connection stays open until the peer closes it
    /// or the server is dropped.
    Stall,
    /// `total` bytes with `Content-Length`, this chunk over and over (the last one cut), without
    /// holding them all in memory. With `stall_after`, only that many are sent, then nothing
    /// more, ever (as [`Body::Stall`]).
    Repeat {
        /// The chunk repeated.
        chunk: Vec<u8>,
        /// The body's length, as declared.
        total: u64,
        /// Stop sending (and keep the connection open) after this many bytes.
        stall_after: Option<u64>,
    },
}

/// A reply: status line, header fields and body. `Connection: close` and the framing header
/// (`Content-Length` or `Transfer-Encoding`) are added.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header fields, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// An empty reply with `status`.
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: Body::Bytes(Vec::new()), delay: Duration::ZERO }
    }

    /// A JSON body with `status`.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::status(status).header("Content-Type", "application/json").body(body.as_bytes())
    }

    /// Adds a header field.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replaces the body with `bytes`.
    #[must_use]
    pub fn body(mut self, bytes: &[u8]) -> Reply {
        self.body = Body::Bytes(bytes.to_vec());
        self
    }

    /// Replaces the body with an endless chunked one (see [`Body::Endless`]).
    #[must_use]
    pub fn endless(mut self, chunk: &[u8], limit: u64) -> Reply {
        self.body = Body::Endless { chunk: chunk.to_vec(), limit };
        self
    }

    /// Sends the head and then nothing (see [`Body::Stall`]).
    #[must_use]
    pub fn stall(mut self) -> Reply {
        self.body = Body::Stall;
        self
    }

    /// Replaces the body with `total` bytes of `chunk` repeated (see [`Body::Repeat`]).
    #[must_use]
    pub fn repeat(mut self, chunk: &[u8], total: u64) -> Reply {
        self.body = Body::Repeat { chunk: chunk.to_vec(), total, stall_after: None };
        self
    }

    /// With a [`Reply::repeat`] body: sends `bytes` of it, then stalls.
    #[must_use]
    pub fn stall_after(mut self, bytes: u64) -> Reply {
        if let Body::Repeat { stall_after, .. } = &mut self.body {
            *stall_after = Some(bytes);
        }
        self
    }

    /// Answers after `delay`.
    #[must_use]
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// A token endpoint's 401 that echoes what `req` sent it (the assertion, the Basic value)
    /// and `secret`, in `field` (`error_description` in an OAuth body, or `message` in a
    /// Genesys one), in `ININ-Correlation-Id` (the secret) and in `WWW-Authenticate`. The
    /// assertion comes first, so that it fits what a client keeps of such a text.
    pub fn echoing_credentials(req: &Recorded, field: &str, secret: &str) -> Reply {
        let echo =
            format!("{} {} {secret}", req.form_value("client_assertion"), req.basic_credentials());
        let body = if field == "message" {
            format!(r#"{{"message":"{echo}","code":"bad.credentials","status":401}}"#)
        } else {
            format!(r#"{{"error":"invalid_client","error_description":"{echo}"}}"#)
        };
        Reply::json(401, &body)
            .header("ININ-Correlation-Id", secret)
            .header("WWW-Authenticate", &format!(r#"Basic realm="{echo}""#))
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A running scripted server; stops when dropped.
pub struct Hostile {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hostile").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Hostile {
    /// Starts a server on 127.0.0.1 (an ephemeral port) answering every request with `handler`.
    ///
    /// # Panics
    /// If the thread, runtime or socket cannot be set up (a broken test machine).
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Hostile {
        let handler: Arc<Handler> = Arc::new(handler);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, bound) = std::sync::mpsc::channel();
        let thread_log = Arc::clone(&log);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the hostile server");
            runtime.block_on(async move {
                let listener =
                    TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1 for hostile");
                ready.send(listener.local_addr().expect("local address")).expect("report address");
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { continue };
                        let handler = Arc::clone(&handler);
                        let log = Arc::clone(&thread_log);
                        tokio::spawn(async move {
                            let _ = serve(stream, &*handler, &log).await;
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime here ends every connection task (stalled ones included).
        });
        let addr = bound.recv().expect("the hostile server's address");
        Hostile { addr, log, stop: Some(stop), thread: Some(thread) }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.log).clone()
    }

    /// How many requests had path `path`.
    pub fn requests_to(&self, path: &str) -> usize {
        lock(&self.log).iter().filter(|r| r.path() == path).count()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(log: &Mutex<Vec<Recorded>>) -> MutexGuard<'_, Vec<Recorded>> {
    log.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn serve(
    mut stream: TcpStream,
    handler: &Handler,
    log: &Mutex<Vec<Recorded>>,
) -> io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
        return Ok(());
    };
    lock(log).push(request.clone());
    let reply = handler(&request);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n");
    match &reply.body {
        Body::Bytes(bytes) => head.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len())),
        Body::Endless { .. } => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
        Body::Stall => head.push_str("Content-Length: 1000\r\n\r\n"),
        Body::Repeat { total, .. } => head.push_str(&format!("Content-Length: {total}\r\n\r\n")),
    }
    stream.write_all(head.as_bytes()).await?;
    match reply.body {
        Body::Bytes(bytes) => stream.write_all(&bytes).await?,
        Body::Endless { chunk, limit } => {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            let mut sent = 0u64;
            while sent < limit && !chunk.is_empty() {
                stream.write_all(&framed).await?;
                sent = sent.saturating_add(chunk.len() as u64);
            }
        }
        Body::Stall => std::future::pending::<()>().await,
        Body::Repeat { chunk, total, stall_after } => {
            let end = stall_after.map_or(total, |at| at.min(total));
            // Written 64 KiB or so at a time, whatever the chunk's size.
            let block = chunk.repeat((64 * 1024 / chunk.len().max(1)).max(1));
            let mut sent = 0u64;
            while sent < end && !block.is_empty() {
                let n = usize::try_from(end - sent).unwrap_or(usize::MAX).min(block.len());
                stream.write_all(&block[..n]).await?;
                sent += n as u64;
            }
            if stall_after.is_some_and(|at| at < total) {
                stream.flush().await?;
                std::future::pending::<()>().await;
            }
        }
    }
    stream.shutdown().await
}

/// Reads one request head and its `Content-Length` body; `None` if the peer sent nothing.
async fn read_request(stream: &mut TcpStream) -> io::Result<Option<Recorded>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > MAX_REQUEST {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or("").split(' ');
    let method = start.next().unwrap_or("").to_owned();
    let target = start.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    let mut body = buf.split_off(head_end + 4);
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Some(Recorded { method, target, headers, body, at }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn exchange(server: &Hostile, request: &str) -> String {
        let mut stream = std::net::TcpStream::connect(server.addr()).expect("connect");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    #[test]
    fn answers_as_scripted_and_records_the_request() {
        let server = Hostile::start(|req| {
            Reply::json(201, &format!("{{\"got\":\"{}\"}}", req.body_text())).header("X-A", "1")
        });
        let answer = exchange(
            &server,
            "POST /oauth/token?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(answer.starts_with("HTTP/1.1 201 "), "{answer}");
        assert!(answer.contains("X-A: 1\r\n"), "{answer}");
        assert!(answer.ends_with("{\"got\":\"hello\"}"), "{answer}");
        let seen = server.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].method.as_str(), seen[0].path()), ("POST", "/oauth/token"));
        assert_eq!(seen[0].header("HOST"), Some("x"));
        assert_eq!(server.requests_to("/oauth/token"), 1);
    }

    #[test]
    fn an_endless_body_stops_at_its_limit() {
        let server = Hostile::start(|_| Reply::status(200).endless(b"0123456789", 100));
        let answer = exchange(&server, "GET / HTTP/1.1\r\n\r\n");
        assert!(answer.contains("Transfer-Encoding: chunked"), "{answer}");
        assert_eq!(answer.matches("0123456789").count(), 10, "{answer}");
    }

    #[test]
    fn a_repeated_body_has_its_declared_length_and_can_stall_part_way() {
        let server = Hostile::start(|req| {
            let reply = Reply::status(200).repeat(b"abc", 10);
            if req.path() == "/stall" { reply.stall_after(4) } else { reply }
        });
        let answer = exchange(&server, "GET / HTTP/1.1\r\n\r\n");
        assert!(answer.contains("Content-Length: 10\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nabcabcabca"), "{answer}");
        let mut stream = std::net::TcpStream::connect(server.addr()).expect("connect");
        stream.write_all(b"GET /stall HTTP/1.1\r\n\r\n").expect("send");
        let mut answer = Vec::new();
        let mut buf = [0u8; 256];
        while !answer.ends_with(b"\r\n\r\nabca") {
            let n = stream.read(&mut buf).expect("the first bytes come");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        drop(server);
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "nothing after the stall: {rest:?}");
    }

    #[test]
    fn a_stalled_reply_ends_when_the_server_is_dropped() {
        let server = Hostile::start(|_| Reply::status(200).stall());
        let mut stream = std::net::TcpStream::connect(server.addr()).expect("connect");
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("send");
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).expect("the head comes");
        assert_eq!(&head, b"HTTP/1.1 200");
        drop(server);
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.len() < 1000, "no body was ever sent: {} bytes after the status", rest.len());
    }
}
