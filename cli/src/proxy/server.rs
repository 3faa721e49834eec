//! The proxy's HTTP/1.1 server (hyper) and its request handling; the decisions about what a
//! local client sent are `rules`'.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant as StdInstant};

use bytes::{Bytes, BytesMut};
use credflow_core::retry::policy::GiveUpReason;
use credflow_core::session::{ApiErrorKind, BreakerTarget, Event};
use credflow_reqwest::config::DEFAULT_MAX_RESPONSE_BODY;
use credflow_reqwest::{Client, ClientEvent, Error, ErrorKind, RequestOptions};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::metrics::{LogBudget, Metrics, Outcome};
use super::rules::{self, BodyPlan};
use crate::Failure;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// The placeholder `/oauth/token` hands out when no local key is set: not a credential.
const PLACEHOLDER_TOKEN: &str = "credflow-proxy-placeholder";

/// Most bytes of a token request the proxy's `/oauth/token` reads.
const TOKEN_REQUEST_LIMIT: usize = 16 * 1024;

/// `Retry-After` when credflow does not know until when (a transport failure, the queue).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What `credflow proxy`'s flags set.
pub(crate) struct Settings {
    /// Taken just before the client was built: the core's instants count from (about) here.
    pub(crate) started: StdInstant,
    pub(crate) local_key: Option<Zeroizing<Vec<u8>>>,
    pub(crate) max_body: usize,
    pub(crate) max_pending: usize,
    pub(crate) deadline: Duration,
    pub(crate) drain: Duration,
    /// Listening on loopback: requests must name a loopback host ([`rules::loopback_host`]).
    pub(crate) loopback_hosts_only: bool,
    /// Most local connections open at once.
    pub(crate) max_connections: usize,
    /// How long a local connection may go without sending a request head, or taking any of
    /// its answer (`--idle-timeout`).
    pub(crate) idle_timeout: Duration,
}

/// After the last request in service is answered, how long the drain still waits for its
/// connection to send what hyper holds of the answer, before the process exits.
const ANSWER_FLUSH: Duration = Duration::from_millis(250);

/// The requests being served: each from the arrival of its head until hyper drops its answer's
/// body (sent, or its connection gone). The drain waits for these, not for every connection: a
/// connection that has sent part of a head holds no request, and hyper keeps it open until its
/// head timeout (`--idle-timeout`, 30 s), past any `--drain`.
#[derive(Default)]
struct InService {
    count: AtomicUsize,
    none_left: tokio::sync::Notify,
}

/// One request in [`InService`], until dropped.
struct Serving(Arc<InService>);

impl InService {
    fn enter(self: &Arc<Self>) -> Serving {
        self.count.fetch_add(1, Ordering::SeqCst);
        Serving(Arc::clone(self))
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Returns once no request is in service.
    async fn none_left(&self) {
        loop {
            let notified = self.none_left.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so a drop in between is not missed.
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

/// The longest request head (its request line, fields and the empty line that ends it) a local
/// connection may send: past it the head is refused, 431, whether it is complete or not. It is
/// hyper's `max_header_size`, checked at every parse; its `max_buf_size` alone (the read
/// buffer's limit, about 400 KiB by default) is checked only after a parse that needs more, so
/// a head that arrived in one burst was taken up to the read buffer's size (112 KiB for a
/// limit of 64 KiB: the buffer grows by doubling). The read buffer gets the same limit.
const MAX_HEAD: usize = 64 * 1024;

struct Proxy {
    client: Client,
    settings: Settings,
    metrics: Metrics,
    /// [`Settings::started`].
    started: StdInstant,
    /// Turns `true` when the drain deadline passes: a request still waiting then (for its
    /// body, a token, its turn, the upstream's answer) is answered 503 instead of having its
    /// connection reset.
    drain_over: tokio::sync::watch::Receiver<bool>,
    /// The per-request log lines' budget.
    log_budget: LogBudget,
}

/// Binds `addr`, prints where it listens, and serves until SIGTERM or Ctrl-C; then stops
/// accepting, drains in-flight requests within `settings.drain`, and shuts the client down.
pub(crate) async fn serve(
    client: Client,
    addr: SocketAddr,
    settings: Settings,
) -> Result<(), Failure> {
    let started = settings.started;
    let listener = TcpListener::bind(addr).await.map_err(|e| Failure {
        code: 5,
        message: format!("--listen {addr}: cannot listen: {e}"),
    })?;
    let local = listener.local_addr().map_err(|e| Failure {
        code: 5,
        message: format!("--listen {addr}: cannot read the bound address: {e}"),
    })?;
    let api_base = client.api_base().map(|u| u.as_str().to_owned()).unwrap_or_default();
    crate::output::outln!("credflow proxy: listening on http://{local} (forwarding to {api_base})");
    info!(%local, %api_base, "listening");
    let (end_drain, drain_over) = tokio::sync::watch::channel(false);
    let proxy = Arc::new(Proxy {
        client,
        settings,
        metrics: Metrics::default(),
        started,
        drain_over,
        log_budget: LogBudget::default(),
    });
    let watcher = tokio::spawn(watch_events(Arc::clone(&proxy)));
    let graceful = GracefulShutdown::new();
    let in_service = Arc::new(InService::default());
    // Each connection may hold up to `MAX_HEAD` of a head as it arrives, in a read buffer of up
    // to twice that (it grows by doubling), beside its own state (about 19 KiB): bounded in
    // number too, memory is (README: 256 MiB for the default 2048).
    let slots = Arc::new(tokio::sync::Semaphore::new(
        proxy.settings.max_connections.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        debug!(limit = proxy.settings.max_connections, "too many connections: closed");
                        drop(stream);
                        continue;
                    };
                    // Nagle would hold small answers back for the next segment's ACK.
                    let _ = stream.set_nodelay(true);
                    let idle_timeout = proxy.settings.idle_timeout;
                    let proxy = Arc::clone(&proxy);
                    let in_service = Arc::clone(&in_service);
                    let service = hyper::service::service_fn(move |request| {
                        let proxy = Arc::clone(&proxy);
                        let serving = in_service.enter();
                        async move {
                            let response = tokio::select! {
                                response = proxy.handle(request) => response,
                                () = proxy.drain_passed() => proxy.shutting_down(),
                            };
                            // In service until hyper drops the body: it has gone out then.
                            let response = response.map(|body| {
                                body.map_frame(move |frame| {
                                    let _serving = &serving;
                                    frame
                                })
                                .boxed()
                            });
                            Ok::<_, Infallible>(response)
                        }
                    });
                    // A client that never reads its answers would hold its connection, and
                    // its place, for ever: hyper has no write timeout. A write that makes no
                    // progress for `--idle-timeout` fails, and ends the connection (the
                    // countdown starts when a write would block, and starts over at each
                    // write that goes through: a slow reader is not cut off).
                    let mut stream = tokio_io_timeout::TimeoutWriter::new(stream);
                    stream.set_timeout(Some(idle_timeout));
                    // hyper's head timeout runs whenever it waits for a head: from the
                    // connection's start and after each answer, so it closes an idle
                    // kept-alive connection too.
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(idle_timeout)
                        .max_header_size(MAX_HEAD)
                        .max_buf_size(MAX_HEAD)
                        .serve_connection(TokioIo::new(Box::pin(stream)), service);
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        let _slot = slot;
                        if let Err(e) = connection.await {
                            debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    drop(listener);
    let in_flight = in_service.count();
    info!(in_flight, drain_s = proxy.settings.drain.as_secs_f64(), "stopping: draining");
    // Every connection closed (idle ones at once, the others after their answers), or else no
    // request left in service and a moment for the last answers to go out: a connection still
    // in the middle of a head is then closed unanswered (it sent no request yet).
    let shutdown = graceful.shutdown();
    tokio::pin!(shutdown);
    let drain = async {
        tokio::select! {
            () = &mut shutdown => {}
            () = in_service.none_left() => {
                let _ = tokio::time::timeout(ANSWER_FLUSH, &mut shutdown).await;
            }
        }
    };
    let drained = tokio::time::timeout(proxy.settings.drain, drain).await.is_ok();
    let cut = if drained {
        0
    } else {
        // Those still waiting are answered 503 now, and given a moment to go out.
        let cut = in_service.count();
        end_drain.send_replace(true);
        let answered = async {
            in_service.none_left().await;
            let _ = tokio::time::timeout(ANSWER_FLUSH, &mut shutdown).await;
        };
        let _ = tokio::time::timeout(ANSWER_FLUSH, answered).await;
        cut
    };
    watcher.abort();
    proxy.client.shutdown().await;
    let left_out = proxy.log_budget.left_out();
    if left_out > 0 {
        info!(left_out, "per-request log lines left out since the last one");
    }
    let left = in_service.count();
    if cut == 0 {
        info!("stopped");
        Ok(())
    } else {
        Err(Failure {
            code: 1,
            message: format!(
                "stopped with {cut} request(s) still in flight at the drain deadline ({:?}): \
                 those waiting were answered 503, {left} cut off while their answers were going \
                 out",
                proxy.settings.drain
            ),
        })
    }
}

/// SIGTERM (what Kubernetes and systemd send) or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Keeps the breaker and token gauges current from the client's events.
async fn watch_events(proxy: Arc<Proxy>) {
    let mut events = proxy.client.events();
    let mut open: Vec<BreakerTarget> = Vec::new();
    loop {
        match events.recv().await {
            Ok(ClientEvent::Session(Event::Breaker { target, event })) => {
                use credflow_core::breaker::BreakerEvent;
                open.retain(|t| *t != target);
                if matches!(event, BreakerEvent::Opened { .. } | BreakerEvent::HalfOpened { .. }) {
                    open.push(target);
                }
                proxy.metrics.set_breakers_open(u64::try_from(open.len()).unwrap_or(u64::MAX));
            }
            Ok(ClientEvent::Session(Event::Token(_))) => {
                let held = proxy.token_held();
                proxy.metrics.set_token_held(held);
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

impl Proxy {
    /// Whether the client holds a usable token now (without waiting for one).
    fn token_held(&self) -> bool {
        let token = self.client.token();
        // `token` answers from its cache on its first poll when a token is held.
        futures_now(token).is_some_and(|t| t.is_ok())
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        // RFC 9112 §3.2: a request with more than one `Host` field is answered 400, and so is
        // an HTTP/1.1 request without one. The checks below read one of them; the other could
        // name any host.
        let mut hosts = request.headers().get_all(header::HOST).iter();
        let host = hosts.next().map(HeaderValue::as_bytes);
        if hosts.next().is_some() {
            return self.refuse(Refusal::bad_request(
                "credflow proxy: the request has more than one Host field (RFC 9112 §3.2)",
            ));
        }
        if host.is_none() && request.version() == hyper::Version::HTTP_11 {
            return self.refuse(Refusal::bad_request(
                "credflow proxy: an HTTP/1.1 request must have a Host field (RFC 9112 §3.2)",
            ));
        }
        // On loopback, a request that names another host came through a name that resolves
        // here (DNS rebinding: a web page the browser lets talk to 127.0.0.1 under its own
        // name), not from a program of this machine that means the proxy: refused before
        // anything, the token endpoint and metrics included. (Off loopback, the local key,
        // which is then required, stands guard.)
        // An absolute-form target names a host too (RFC 9112 §3.2.2): both must be loopback.
        let authority = request.uri().authority().map(|a| a.as_str().as_bytes());
        if self.settings.loopback_hosts_only
            && [host, authority].into_iter().flatten().any(|h| !rules::loopback_host(h))
        {
            return self.refuse(Refusal {
                status: StatusCode::MISDIRECTED_REQUEST,
                code: "credflow.host.refused",
                message: "credflow proxy: the request names a host that is not this machine's \
                          loopback (localhost, 127.0.0.1, [::1]); a proxy on loopback answers \
                          only those"
                    .into(),
            });
        }
        // A web page reaches 127.0.0.1 directly too (a fetch, a form's POST: no preflight for
        // those), and would use the API as the service; where the API's CORS lets its origin,
        // it reads the answers. Its browser says so (`Origin`, `Sec-Fetch-Site`); programs
        // do not. Refused on loopback like a foreign host.
        let origin = request.headers().get(header::ORIGIN).map(HeaderValue::as_bytes);
        let fetch_site = request.headers().get("sec-fetch-site").map(HeaderValue::as_bytes);
        if self.settings.loopback_hosts_only && rules::from_a_web_page(origin, fetch_site) {
            return self.refuse(Refusal {
                status: StatusCode::FORBIDDEN,
                code: "credflow.browser.refused",
                message: "credflow proxy: a request a browser sent for a web page (it carries \
                          Origin or Sec-Fetch-Site) is refused on loopback: the proxy serves \
                          this machine's programs"
                    .into(),
            });
        }
        let path = request.uri().path();
        match path {
            "/healthz" => {
                self.metrics.count(Outcome::Local);
                self.healthz()
            }
            "/metrics" => {
                self.metrics.count(Outcome::Local);
                let text = self.metrics.render(&self.client, self.settings.max_pending);
                let mut response = full(StatusCode::OK, text);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/oauth/token" => {
                let answer = self.token_endpoint(request).await;
                self.metrics.count(Outcome::Local);
                answer
            }
            _ => self.forward(request).await,
        }
    }

    /// Returns once the drain deadline has passed.
    async fn drain_passed(&self) {
        let mut over = self.drain_over.clone();
        if over.wait_for(|&over| over).await.is_err() {
            // The sender is gone only when `serve` has returned: nothing left to wait for.
            std::future::pending::<()>().await;
        }
    }

    /// The answer to a request still waiting when the drain deadline passes.
    fn shutting_down(&self) -> Response<ProxyBody> {
        self.metrics.count(Outcome::Unavailable);
        let mut response = unavailable(
            "credflow.shutting.down",
            "credflow proxy: stopping, and the drain deadline (--drain) passed before this \
             request's answer came; if it had gone upstream, it may have been carried out there",
            DEFAULT_RETRY_AFTER,
            None,
        );
        close_connection(&mut response);
        response
    }

    fn healthz(&self) -> Response<ProxyBody> {
        let held = self.token_held();
        self.metrics.set_token_held(held);
        if held {
            full(StatusCode::OK, "ok\n")
        } else {
            full(StatusCode::SERVICE_UNAVAILABLE, "no token yet\n")
        }
    }

    /// The local `/oauth/token`: a placeholder for SDKs that insist on fetching a token; the
    /// real token never leaves the proxy. With a local key, the client must present it as its
    /// client secret (HTTP Basic or `client_secret`), and gets it back as its token.
    async fn token_endpoint(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        if request.method() != Method::POST {
            return oauth_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "use POST");
        }
        let authorization = request.headers().get(header::AUTHORIZATION).cloned();
        let give_up = self.give_up_at();
        let reading = Limited::new(request.into_body(), TOKEN_REQUEST_LIMIT).collect();
        let form = match within(give_up, reading).await {
            Some(Ok(body)) => Zeroizing::new(body.to_bytes().to_vec()),
            Some(Err(_)) => {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "body too large");
            }
            None => {
                let mut response = oauth_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request",
                    "the request body did not arrive within the proxy's --deadline",
                );
                close_connection(&mut response);
                return response;
            }
        };
        let body = match &self.settings.local_key {
            None => token_answer(PLACEHOLDER_TOKEN.as_bytes()),
            Some(key) => {
                // Decoded in a buffer wiped when dropped (see `rules`), whatever it holds.
                let mut secret = Zeroizing::new(Vec::new());
                let authorization = authorization.as_ref().map(HeaderValue::as_bytes);
                let found = rules::decode_token_request_secret(authorization, &form, &mut secret);
                if !(found && rules::key_matches(&secret, key)) {
                    let mut response = oauth_error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        "present the proxy's local key as the client secret",
                    );
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"credflow-proxy\""),
                    );
                    return response;
                }
                token_answer(key)
            }
        };
        let mut response = full(StatusCode::OK, body);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// An API request: checked, queued, sent through the client, answered.
    ///
    /// Its `--deadline` runs from its head: the body's arrival counts against it, so a client
    /// that stalls or trickles its body cannot keep its place in the queue beyond it (it is
    /// answered 408 then), and what is left of it bounds the upstream's waits and retries.
    async fn forward(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        // TRACE would carry the bearer token to a server that echoes the request back (RFC 9110
        // §9.3.8: a client must not send credentials with it), and CONNECT would open a tunnel
        // to the API host with it: neither goes upstream.
        if matches!(*request.method(), Method::TRACE | Method::CONNECT) {
            let mut response = self.refuse(Refusal {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "credflow.method.refused",
                message: "credflow proxy: TRACE and CONNECT are not forwarded".into(),
            });
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            return response;
        }
        let give_up = self.give_up_at();
        let (mut parts, body) = request.into_parts();
        let (priority, plan) = match self.admit(&parts.headers) {
            Ok(admitted) => admitted,
            Err(refusal) => return self.refuse(refusal),
        };
        let Some(_place) = self.metrics.enqueue(self.settings.max_pending) else {
            self.metrics.count(Outcome::Overloaded);
            if tracing::enabled!(tracing::Level::WARN)
                && let Some(left_out) = self.log_budget.take(self.started.elapsed())
            {
                warn!(limit = self.settings.max_pending, left_out, "queue full: 503");
            }
            return unavailable(
                "credflow.queue.full",
                "credflow proxy: too many requests are waiting already (--max-pending); retry \
                 after the time Retry-After says",
                DEFAULT_RETRY_AFTER,
                None,
            );
        };
        let request = match within(give_up, self.upstream_request(&mut parts, body, plan)).await {
            Some(Ok(request)) => request,
            Some(Err(refusal)) => return self.refuse(refusal),
            None => {
                let mut response = self.refuse(Refusal {
                    status: StatusCode::REQUEST_TIMEOUT,
                    code: "request.timeout",
                    message: "credflow proxy: the request body did not arrive within --deadline"
                        .into(),
                });
                close_connection(&mut response);
                return response;
            }
        };
        let left = give_up.map(|at| at.saturating_duration_since(tokio::time::Instant::now()));
        self.send_upstream(&parts, request, priority, left.unwrap_or(self.settings.deadline)).await
    }

    /// When a request that arrives now must be answered by: `--deadline` from now (`None` if
    /// that is too far to represent: no bound).
    fn give_up_at(&self) -> Option<tokio::time::Instant> {
        tokio::time::Instant::now().checked_add(self.settings.deadline)
    }

    /// The proxy's own checks of a request's `headers` (see `rules`): the local key, the
    /// priority header, the body's framing.
    fn admit(
        &self,
        headers: &HeaderMap,
    ) -> Result<(credflow_reqwest::Priority, BodyPlan), Refusal> {
        if let Some(key) = &self.settings.local_key {
            let presented = rules::presented_key(
                headers.get(rules::KEY_HEADER).map(HeaderValue::as_bytes),
                headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes),
            );
            if !presented.is_some_and(|p| rules::key_matches(p, key)) {
                return Err(Refusal {
                    status: StatusCode::UNAUTHORIZED,
                    code: "bad.credentials",
                    message: "credflow proxy: this proxy wants its local key (Authorization: \
                              Bearer KEY, the token its /oauth/token gave, or X-Credflow-Key)"
                        .into(),
                });
            }
        }
        let priority = match rules::parse_priority(values(headers, rules::PRIORITY_HEADER)) {
            Ok(p) => core_priority(p),
            Err(rules::BadPriority) => {
                return Err(Refusal::bad_request(
                    "credflow proxy: X-Credflow-Priority must be one of critical, normal, \
                     background (once)",
                ));
            }
        };
        let chunked = match rules::transfer_coding(values(headers, "transfer-encoding")) {
            rules::TransferCoding::None => false,
            rules::TransferCoding::Chunked => true,
            // RFC 9112 §6.1: a server that receives a transfer coding it does not understand
            // should answer 501. Forwarded, the body would reach the upstream still coded and
            // without the header that says so.
            rules::TransferCoding::Other => {
                return Err(Refusal {
                    status: StatusCode::NOT_IMPLEMENTED,
                    code: "credflow.transfer.coding",
                    message: "credflow proxy: only the chunked transfer coding is understood; \
                              send a compressed body with Content-Encoding instead"
                        .into(),
                });
            }
        };
        let content_length = values(headers, "content-length");
        match rules::body_plan(content_length, chunked, self.settings.max_body) {
            Ok(plan) => Ok((priority, plan)),
            Err(rules::BadBody::ContentLength) => {
                Err(Refusal::bad_request("credflow proxy: invalid Content-Length"))
            }
        }
    }

    /// The request to send upstream: the API URL of the local request's target, its headers
    /// (taken from `parts`) less the hop-by-hop and the proxy's own, its body as `plan` says.
    async fn upstream_request(
        &self,
        parts: &mut http::request::Parts,
        body: Incoming,
        plan: BodyPlan,
    ) -> Result<reqwest::Request, Refusal> {
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let url = self.client.url(target).map_err(|e| Refusal::bad_request(self.mask(&e)))?;
        let body =
            self.request_body(plan, body, &parts.method).await.map_err(Refusal::bad_request)?;
        let mut request = reqwest::Request::new(parts.method.clone(), url);
        *request.headers_mut() = forwarded_headers(std::mem::take(&mut parts.headers));
        // The local client's `Accept-Encoding` is not forwarded (an error body is read, and
        // masked, as it comes); without one, the upstream may choose any coding (RFC 9110,
        // 12.5.3), so none is asked for.
        request.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        *request.body_mut() = body;
        Ok(request)
    }

    /// Sends `request` through the client with `priority` and what is left of its deadline,
    /// and answers with the upstream response or, when credflow gave up, the proxy's own.
    async fn send_upstream(
        &self,
        parts: &http::request::Parts,
        request: reqwest::Request,
        priority: credflow_reqwest::Priority,
        deadline: Duration,
    ) -> Response<ProxyBody> {
        let options = RequestOptions { priority, deadline: Some(deadline), ..Default::default() };
        let path = parts.uri.path();
        match self.client.send_with(request, options).await {
            Ok(response) => {
                let status = response.status().as_u16();
                debug!(method = %parts.method, %path, status, "forwarded");
                let answer = self.upstream_response(response).await;
                // Counted once its answer is ready: one cut at the drain deadline while its
                // error body was read counts as answered 503 only.
                self.metrics.count(Outcome::Forwarded);
                self.metrics.upstream_status(status);
                answer
            }
            Err(e) => {
                let response = self.give_up(&e);
                let outcome = if e.kind() == ErrorKind::Unavailable {
                    Outcome::Unavailable
                } else {
                    Outcome::Failed
                };
                self.metrics.count(outcome);
                if tracing::enabled!(tracing::Level::INFO)
                    && let Some(left_out) = self.log_budget.take(self.started.elapsed())
                {
                    info!(method = %parts.method, %path, status = response.status().as_u16(), error = %self.mask(&e), left_out, "answered by the proxy");
                }
                response
            }
        }
    }

    /// Counts a refused request and answers it with a Genesys-style error.
    fn refuse(&self, refusal: Refusal) -> Response<ProxyBody> {
        self.metrics.count(Outcome::Refused);
        genesys_error(refusal.status, refusal.code, &refusal.message, None)
    }

    /// The body to send upstream as `plan` says: `Err` names what is wrong with it.
    async fn request_body(
        &self,
        plan: BodyPlan,
        body: Incoming,
        method: &Method,
    ) -> Result<Option<reqwest::Body>, &'static str> {
        let buffered = |bytes: Bytes| Some(reqwest::Body::from(bytes));
        match plan {
            // An empty body for the methods that carry one, so that `Content-Length: 0` goes.
            BodyPlan::Empty => Ok(matches!(*method, Method::POST | Method::PUT | Method::PATCH)
                .then(|| reqwest::Body::from(Bytes::new()))),
            BodyPlan::Buffer(length) => match Limited::new(body, length).collect().await {
                Ok(collected) => Ok(buffered(collected.to_bytes())),
                Err(_) => Err("credflow proxy: the request body ended early or was too long"),
            },
            BodyPlan::ReadUpTo(limit) => {
                let mut body = body;
                let mut read = BytesMut::new();
                loop {
                    match body.frame().await {
                        None => return Ok(buffered(read.freeze())),
                        Some(Err(_)) => return Err("credflow proxy: the request body failed"),
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                read.extend_from_slice(&data);
                            }
                            if read.len() > limit {
                                self.metrics.streamed_body();
                                let rest = Prefixed { first: Some(read.freeze()), rest: body };
                                return Ok(Some(reqwest::Body::wrap(rest)));
                            }
                        }
                    }
                }
            }
            BodyPlan::Stream => {
                self.metrics.streamed_body();
                Ok(Some(reqwest::Body::wrap(body)))
            }
        }
    }

    /// The upstream's answer for the local client: hop-by-hop headers removed, header values
    /// masked should they echo a credential; a success body (or a 304's, which has none)
    /// streamed as it arrives, an error or redirect body masked and cut at the client's error
    /// body size.
    async fn upstream_response(&self, response: reqwest::Response) -> Response<ProxyBody> {
        let status = response.status();
        // A 3xx the client hands back goes elsewhere, and its body is the server's text about
        // it, often repeating the `Location` (which may carry the token, as a signed URL's
        // `access_token=`): read and masked as an error body is. A 304 has no body (RFC 9110
        // §15.4.5) and its headers describe the cached representation: passed as it came.
        let streamed = status.is_success() || status == StatusCode::NOT_MODIFIED;
        // One look for the credentials in all the values, as bytes (a value may hold bytes
        // beyond ASCII; none holds a line break, so no credential is found across two), then
        // value by value only if one is there.
        // Wiped when dropped (an echo is the credential in clear), and sized for all the values
        // at once: it never regrows, which would free a copy unwiped.
        let room = response.headers().values().map(|v| v.len().saturating_add(1)).sum();
        let mut all = Zeroizing::new(Vec::with_capacity(room));
        for value in response.headers().values() {
            all.extend_from_slice(value.as_bytes());
            all.push(b'\n');
        }
        let echoed = matches!(self.client.redact_bytes(&all), std::borrow::Cow::Owned(_));
        let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        let mut headers = parts.headers;
        // hyper took `chunked` off the body, and only that: one in another transfer coding
        // would go back still coded, and without the header (hop-by-hop) that says so.
        let coded = rules::transfer_coding(values(&headers, "transfer-encoding"))
            == rules::TransferCoding::Other;
        if coded && streamed {
            warn!(status = status.as_u16(), "upstream body in a transfer coding: 502");
            return genesys_error(
                StatusCode::BAD_GATEWAY,
                "credflow.upstream.coding",
                &format!(
                    "credflow proxy: the upstream answered {} with a body in a transfer coding \
                     other than chunked, which the proxy does not decode",
                    status.as_u16()
                ),
                None,
            );
        }
        remove_named_in_connection(&mut headers);
        remove_where(&mut headers, |name| {
            rules::strip_outbound(name.as_str()) || (!streamed && *name == header::CONTENT_LENGTH)
        });
        if streamed {
            one_content_length(&mut headers);
        }
        if echoed {
            for value in headers.values_mut() {
                *value = self.mask_header(value);
            }
        }
        let body: ProxyBody = if streamed {
            body.map_err(|e| Box::new(e) as BoxError).boxed()
        } else if coded
            || values(&headers, "content-encoding")
                .any(|v| !v.trim_ascii().eq_ignore_ascii_case(b"identity"))
        {
            // An error (or redirect) body in a content coding (the upstream was asked for
            // `identity`) or a transfer coding hyper does not remove cannot be searched for an
            // echoed credential: it is withheld, the status and headers kept.
            warn!(status = status.as_u16(), "content-coded upstream error body withheld");
            headers.remove(header::CONTENT_ENCODING);
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let message = "credflow proxy: the upstream's error body came content-coded \
                           although identity was asked for; it is withheld, since it could not \
                           be searched for echoed credentials";
            full_body(genesys_body(status, "credflow.body.withheld", message, None).to_string())
        } else {
            let mut body = body;
            // The body as it came, any echo unmasked: wiped when dropped, and as it grows.
            let mut read = Zeroizing::new(Vec::new());
            let mut cut = false;
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        let Ok(chunk) = frame.into_data() else { continue };
                        let room = DEFAULT_MAX_RESPONSE_BODY.saturating_sub(read.len());
                        let kept = chunk.get(..chunk.len().min(room)).unwrap_or_default();
                        crate::wipe::extend_wiped(&mut read, kept);
                        if chunk.len() > room {
                            cut = true;
                            break;
                        }
                    }
                    None => break,
                    Some(Err(e)) => {
                        debug!(error = %e, "upstream error body ended early");
                        break;
                    }
                }
            }
            // A cut may end inside an echoed credential: its first bytes are masked too.
            let masked = if cut {
                debug!(limit = DEFAULT_MAX_RESPONSE_BODY, "upstream error body cut");
                self.client.redact_cut_bytes(&read).into_owned()
            } else {
                self.client.redact_bytes(&read).into_owned()
            };
            full_body(masked)
        };
        let mut out = Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        out
    }

    /// The answer when credflow gave up: 503 + `Retry-After` for an outage or a limit (the
    /// code names the cause), 403 for a missing permission, 502 for the proxy's own
    /// credentials or configuration. Genesys's error shape; the message is masked.
    fn give_up(&self, e: &Error) -> Response<ProxyBody> {
        let message = format!("credflow: {}", self.mask(e));
        // The session masked what it kept of the answer with the token it held then; the
        // tokens replaced since (one the request carried, echoed back) are masked here.
        let correlation = e.correlation_id().map(|c| self.client.redact(c).into_owned());
        let correlation = correlation.as_deref();
        match e.kind() {
            ErrorKind::Unavailable => {
                let (code, wait) = self.cause(e);
                unavailable(code, &message, wait, correlation)
            }
            ErrorKind::Permission => {
                let code = e.code().map(|c| self.client.redact(c).into_owned());
                genesys_error(
                    StatusCode::FORBIDDEN,
                    code.as_deref().unwrap_or("missing.permissions"),
                    &message,
                    correlation,
                )
            }
            ErrorKind::CredentialsRejected => genesys_error(
                StatusCode::BAD_GATEWAY,
                "credflow.credentials.rejected",
                &message,
                correlation,
            ),
            _ => genesys_error(
                StatusCode::BAD_GATEWAY,
                "credflow.configuration",
                &message,
                correlation,
            ),
        }
    }

    /// Why credflow gave up on an unavailable service, as an error code, and how long until
    /// trying again may help.
    fn cause(&self, e: &Error) -> (&'static str, Duration) {
        let until = |at: credflow_core::Instant| {
            self.client.since_start(at).saturating_sub(self.started.elapsed())
        };
        match e.api_error().map(|a| &a.kind) {
            Some(ApiErrorKind::CircuitOpen { until: at }) => ("credflow.circuit.open", until(*at)),
            Some(ApiErrorKind::TokenUnavailable { retry_at, .. }) => {
                ("credflow.token.unavailable", retry_at.map_or(DEFAULT_RETRY_AFTER, until))
            }
            // The server's wait past `max_wait` (a daily quota's hours, a bogus Retry-After's
            // years): not relayed whole, which a client would honour to the letter and not come
            // back once the limit is lifted, but until credflow's next probe of the limit (the
            // first request then goes out and finds out), at most `max_wait`.
            Some(ApiErrorKind::GaveUp {
                reason: GiveUpReason::WaitTooLong { wait, max }, ..
            }) => {
                let cap = Duration::from_millis(wait.as_millis().min(max.as_millis()));
                ("credflow.rate.limited", e.next_probe_at().map_or(cap, |at| cap.min(until(at))))
            }
            // credflow's pacing holding what is left of the window for others (never probed:
            // its wait is when the request may go), or retries that ran out.
            Some(ApiErrorKind::GaveUp { reason, .. }) => match reason.rate_limit_wait() {
                Some(wait) => ("credflow.rate.limited", Duration::from_millis(wait.as_millis())),
                None => ("credflow.retries.exhausted", DEFAULT_RETRY_AFTER),
            },
            Some(ApiErrorKind::DeadlineExceeded { sendable_at }) => {
                ("credflow.deadline.exceeded", sendable_at.map_or(DEFAULT_RETRY_AFTER, until))
            }
            _ => ("credflow.unavailable", DEFAULT_RETRY_AFTER),
        }
    }

    /// An error's text with the client's credentials masked (it masks them already; this also
    /// covers what a future error may quote).
    fn mask(&self, e: &Error) -> String {
        self.client.redact(&e.to_string()).into_owned()
    }

    /// `value` with the client's credentials masked, its other bytes (ASCII or not) kept.
    fn mask_header(&self, value: &HeaderValue) -> HeaderValue {
        match self.client.redact_bytes(value.as_bytes()) {
            std::borrow::Cow::Borrowed(_) => value.clone(),
            std::borrow::Cow::Owned(masked) => {
                HeaderValue::from_bytes(&masked).unwrap_or_else(|_| HeaderValue::from_static(""))
            }
        }
    }
}

/// Polls `future` once: its output if it is ready at once.
fn futures_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// Why the proxy refuses a local request itself, without sending it upstream.
struct Refusal {
    status: StatusCode,
    /// The Genesys-style error code.
    code: &'static str,
    message: Cow<'static, str>,
}

impl Refusal {
    /// A 400 `bad.request` saying `message`.
    fn bad_request(message: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal { status: StatusCode::BAD_REQUEST, code: "bad.request", message: message.into() }
    }
}

/// The headers of a local request that go upstream: all but those `rules::strip_inbound`
/// names and those its `Connection` header names.
fn forwarded_headers(mut headers: HeaderMap) -> HeaderMap {
    remove_named_in_connection(&mut headers);
    remove_where(&mut headers, |name| rules::strip_inbound(name.as_str()));
    headers
}

/// Removes from `headers` those its `Connection` header names (all of them, however many), not
/// `Connection` itself.
fn remove_named_in_connection(headers: &mut HeaderMap) {
    // Cheap copies (shared bytes), so that the map can change while the names are read.
    let listed: Vec<HeaderValue> = headers.get_all(header::CONNECTION).iter().cloned().collect();
    for name in rules::connection_names(listed.iter().map(HeaderValue::as_bytes)) {
        if let Ok(name) = HeaderName::from_bytes(name) {
            headers.remove(name);
        }
    }
}

/// Removes from `headers` every header whose name `doomed` picks, all its values.
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    // Usually none: nothing is allocated then.
    let names: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// A `Content-Length` listed (`5, 5`, or the field twice) as one value: a list of one length is
/// that length (RFC 9110 §8.6), which reqwest accepted, but hyper writes no head holding a
/// list (the local client saw its connection closed). Items that disagree (which reqwest does
/// not accept) are removed, and hyper frames the body itself.
fn one_content_length(headers: &mut HeaderMap) {
    let one = {
        let mut items = values(headers, "content-length")
            .flat_map(|value| value.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii);
        let Some(first) = items.next() else { return };
        items.all(|item| item == first).then(|| HeaderValue::from_bytes(first).ok()).flatten()
    };
    match one {
        Some(value) => {
            headers.insert(header::CONTENT_LENGTH, value);
        }
        None => {
            headers.remove(header::CONTENT_LENGTH);
        }
    }
}

/// The values of the header `name` (lowercase) in `headers`.
fn values<'a>(headers: &'a HeaderMap, name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers.get_all(name).iter().map(HeaderValue::as_bytes)
}

fn core_priority(p: rules::Priority) -> credflow_reqwest::Priority {
    match p {
        rules::Priority::Critical => credflow_reqwest::Priority::Critical,
        rules::Priority::Normal => credflow_reqwest::Priority::Normal,
        rules::Priority::Background => credflow_reqwest::Priority::Background,
    }
}

fn full_body(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response
}

/// The body of the local `/oauth/token`'s answer handing out `token` (the placeholder, or the
/// local key: visible ASCII, checked when it was read), `{"access_token":…,"expires_in":86400,
/// "token_type":"bearer"}`. Written into one buffer with room for all of it (it never grows,
/// which would free a copy unwiped), which is wiped when hyper drops the last of it: the key is
/// a credential, and a `String`, a `serde_json::Value` and a `Vec` copied from them were freed
/// unwiped after each answer.
fn token_answer(token: &[u8]) -> Bytes {
    const HEAD: &[u8] = br#"{"access_token":""#;
    const TAIL: &[u8] = br#"","expires_in":86400,"token_type":"bearer"}"#;
    // JSON's longest escape of one byte is `\u00XX`.
    let room = HEAD.len().saturating_add(token.len().saturating_mul(6)).saturating_add(TAIL.len());
    let mut body = Zeroizing::new(Vec::with_capacity(room));
    body.extend_from_slice(HEAD);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in token {
        match b {
            b'"' | b'\\' => body.extend_from_slice(&[b'\\', b]),
            // Not in a key (visible ASCII only); escaped all the same.
            0x00..=0x1f | 0x7f => body.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
            _ => body.push(b),
        }
    }
    body.extend_from_slice(TAIL);
    Bytes::from_owner(body)
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = full(status, value.to_string());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An OAuth error (RFC 6749 §5.2) from the local `/oauth/token`.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<ProxyBody> {
    json_response(status, &json!({ "error": error, "error_description": description }))
}

/// An error in Genesys's shape (`message`, `code`, `status`, `contextId`, …), so that SDKs
/// parse it as they parse the platform's.
fn genesys_error(
    status: StatusCode,
    code: &str,
    message: &str,
    correlation: Option<&str>,
) -> Response<ProxyBody> {
    let mut response = json_response(status, &genesys_body(status, code, message, correlation));
    if let Some(id) = correlation.and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().insert("inin-correlation-id", id);
    }
    response
}

/// The body of [`genesys_error`].
fn genesys_body(
    status: StatusCode,
    code: &str,
    message: &str,
    correlation: Option<&str>,
) -> serde_json::Value {
    json!({
        "message": message,
        "code": code,
        "status": status.as_u16(),
        "messageWithParams": message,
        "messageParams": {},
        "contextId": correlation.unwrap_or_default(),
        "details": [],
        "errors": [],
    })
}

/// `work`, or `None` if `give_up` comes first (it always finishes without one).
async fn within<T>(
    give_up: Option<tokio::time::Instant>,
    work: impl Future<Output = T>,
) -> Option<T> {
    match give_up {
        Some(at) => tokio::time::timeout_at(at, work).await.ok(),
        None => Some(work.await),
    }
}

/// Says that the connection closes after `response`: the rest of the request's body, which
/// did not come in time, is not read.
fn close_connection(response: &mut Response<ProxyBody>) {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// 503 with `Retry-After` (whole seconds, rounded up, at least 1).
fn unavailable(
    code: &str,
    message: &str,
    wait: Duration,
    correlation: Option<&str>,
) -> Response<ProxyBody> {
    let mut response = genesys_error(StatusCode::SERVICE_UNAVAILABLE, code, message, correlation);
    let seconds = wait.as_millis().div_ceil(1000).max(1);
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A request body whose first bytes were read already: those, then the rest as it comes.
struct Prefixed {
    first: Option<Bytes>,
    rest: Incoming,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return std::task::Poll::Ready(Some(Ok(Frame::data(first))));
        }
        std::pin::Pin::new(&mut this.rest).poll_frame(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_answer_is_the_json_it_was() {
        for token in
            [PLACEHOLDER_TOKEN, "local-key-0123456789", r#"k"e\y\u0041{}"#, "tab\there\u{7f}"]
        {
            let body = token_answer(token.as_bytes());
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let was =
                json!({ "access_token": token, "token_type": "bearer", "expires_in": 86_400 });
            assert_eq!(parsed, was, "{}", String::from_utf8_lossy(&body));
            // A key (visible ASCII): the very bytes `json!` wrote.
            if token.bytes().all(|b| b.is_ascii_graphic()) {
                assert_eq!(&body[..], was.to_string().as_bytes(), "not the bytes of before");
            }
        }
    }
}
