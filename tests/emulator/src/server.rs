//! The server: binds 127.0.0.1, accepts HTTP/1.1 connections, and hands requests to the router;
//! plus the handles that control a running emulator.

use std::fmt;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::config::{ClientState, ConfigError, EmulatorConfig};
use crate::counters::{CountersSnapshot, bump};
use crate::faults::{FaultControl, Route};
use crate::respond::{CORRELATION_ID, CorrelationId, GenesysError};
use crate::state::AppState;
use crate::tls::TestPki;

/// Longest a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an emulator did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The configuration was refused (see [`ConfigError`]).
    Config(ConfigError),
    /// Binding 127.0.0.1 failed: the port is taken, or not allowed.
    Bind(std::io::Error),
    /// The background runtime could not be built (out of threads or file descriptors).
    Runtime(std::io::Error),
    /// [`Emulator::start_background`] was called from inside a Tokio runtime: use
    /// [`Emulator::start`] there.
    InsideRuntime,
    /// The test CA or the server's TLS configuration could not be made (with
    /// [`EmulatorConfig::tls`]).
    Tls(String),
}

impl fmt::Display for EmulatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "invalid emulator configuration: {e}"),
            Self::Bind(e) => write!(f, "cannot bind 127.0.0.1: {e}"),
            Self::Runtime(e) => write!(f, "cannot build the emulator's runtime: {e}"),
            Self::InsideRuntime => {
                f.write_str("start_background called inside a Tokio runtime; use Emulator::start")
            }
            Self::Tls(e) => write!(f, "cannot set up TLS: {e}"),
        }
    }
}

impl std::error::Error for EmulatorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Bind(e) | Self::Runtime(e) => Some(e),
            Self::InsideRuntime | Self::Tls(_) => None,
        }
    }
}

impl From<ConfigError> for EmulatorError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

/// Entry points. The emulator itself lives in the task that [`Emulator::start`] spawns; its
/// [`EmulatorHandle`] controls it.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Binds `127.0.0.1:config.port` and serves on the current Tokio runtime until the handle is
    /// shut down or dropped.
    ///
    /// # Errors
    /// [`EmulatorError::Config`] for a refused configuration, [`EmulatorError::Bind`] if the port
    /// cannot be bound.
    pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        config.validate()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port))
            .await
            .map_err(EmulatorError::Bind)?;
        let addr = listener.local_addr().map_err(EmulatorError::Bind)?;
        let pki = if config.tls {
            Some(Arc::new(TestPki::generate().map_err(EmulatorError::Tls)?))
        } else {
            None
        };
        let scheme = if pki.is_some() { "https" } else { "http" };
        let token_url = format!("{scheme}://{addr}/oauth/token");
        let state = Arc::new(AppState::new(config, token_url));
        let (stop, stopped) = oneshot::channel();
        let acceptor = pki.as_ref().map(|pki| pki.acceptor.clone());
        let task = tokio::spawn(serve(listener, Arc::clone(&state), acceptor, stopped));
        Ok(EmulatorHandle { state, addr, pki, stop: Some(stop), task: Some(task) })
    }

    /// Starts an emulator on a runtime of its own (one worker thread), for synchronous tests
    /// and programs. Dropping the result stops it.
    ///
    /// # Errors
    /// As [`Emulator::start`]; [`EmulatorError::InsideRuntime`] when called from async code.
    pub fn start_background(config: EmulatorConfig) -> Result<BackgroundEmulator, EmulatorError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(EmulatorError::InsideRuntime);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("credflow-emulator")
            .enable_all()
            .build()
            .map_err(EmulatorError::Runtime)?;
        let handle = runtime.block_on(Self::start(config))?;
        Ok(BackgroundEmulator { handle, runtime: Some(runtime) })
    }

    /// Runs until Ctrl-C on a runtime of its own, calling `on_start` once listening (the binary
    /// prints its banner there).
    ///
    /// # Errors
    /// As [`Emulator::start_background`].
    pub fn run_until_ctrl_c(
        config: EmulatorConfig,
        on_start: impl FnOnce(&EmulatorHandle),
    ) -> Result<(), EmulatorError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(EmulatorError::InsideRuntime);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(EmulatorError::Runtime)?;
        runtime.block_on(async {
            Self::start(config).await?.serve_until_ctrl_c(on_start).await;
            Ok(())
        })
    }
}

/// A running emulator. Dropping it stops the server (in-flight requests are cut); prefer
/// [`EmulatorHandle::shutdown`] in async code to wait until it has stopped.
pub struct EmulatorHandle {
    state: Arc<AppState>,
    addr: SocketAddr,
    pki: Option<Arc<TestPki>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("addr", &self.addr)
            .field("environment", &self.state.config.environment)
            .field("tls", &self.pki.is_some())
            .finish_non_exhaustive()
    }
}

impl EmulatorHandle {
    /// The bound address (always 127.0.0.1).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` with TLS (no trailing slash).
    #[must_use]
    pub fn base_url(&self) -> String {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The test CA's certificate (PEM) to trust, when serving HTTPS
    /// ([`EmulatorConfig::tls`]); `None` for plain HTTP. The server's certificate, signed
    /// by it, names `localhost` and `127.0.0.1`.
    #[must_use]
    pub fn ca_pem(&self) -> Option<&str> {
        self.pki.as_ref().map(|pki| pki.ca_pem.as_str())
    }

    /// [`ca_pem`](Self::ca_pem) in DER.
    #[must_use]
    pub fn ca_der(&self) -> Option<&[u8]> {
        self.pki.as_ref().map(|pki| pki.ca_der.as_ref())
    }

    /// `http://127.0.0.1:PORT/oauth/token` (`https` with TLS; Genesys:
    /// `https://login.<env>/oauth/token`). Also the `aud` a `client_secret_jwt` assertion
    /// must carry.
    #[must_use]
    pub fn token_url(&self) -> String {
        self.state.token_url.clone()
    }

    /// Base of the API (Genesys: `https://api.<env>`); paths are `/api/v2/...`. Same server as
    /// the token endpoint.
    #[must_use]
    pub fn api_base(&self) -> String {
        self.base_url()
    }

    /// The environment tokens are bound to.
    #[must_use]
    pub fn environment(&self) -> &str {
        &self.state.config.environment
    }

    /// A copy of the counters now.
    #[must_use]
    pub fn counters(&self) -> CountersSnapshot {
        self.state.counters.snapshot()
    }

    /// Switches faults at run time.
    #[must_use]
    pub fn faults(&self) -> FaultControl {
        FaultControl { state: Arc::clone(&self.state) }
    }

    /// Revokes every token issued so far (401 `bad.credentials` from now on).
    pub fn revoke_all_tokens(&self) {
        self.state.revoke_all_tokens();
    }

    /// Makes every token issued so far expired (401 `credentials.expired` from now on).
    pub fn expire_all_tokens(&self) {
        self.state.expire_all_tokens();
    }

    /// Changes a client's state; `false` if no client has that id.
    pub fn set_client_state(&self, client_id: &str, state: ClientState) -> bool {
        self.state.set_client_state(client_id, state)
    }

    /// Counters, limiter windows and faults back to their start values (clients and tokens are
    /// kept).
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Serves until Ctrl-C, then shuts down. The signal handler is installed *before*
    /// `on_start` runs, so a parent process that reads what `on_start` prints and then sends
    /// SIGINT is never ignored. If no handler can be installed, it shuts down at once.
    pub async fn serve_until_ctrl_c(self, on_start: impl FnOnce(&Self)) {
        let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
        // `ctrl_c` registers its handler when first polled: poll it once now.
        let early = std::future::poll_fn(|cx| Poll::Ready(ctrl_c.as_mut().poll(cx))).await;
        if early.is_pending() {
            on_start(&self);
            let _ = ctrl_c.await;
        }
        self.shutdown().await;
    }

    /// Stops accepting, cuts open connections, and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop_now(&mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// An emulator on its own runtime, from [`Emulator::start_background`]. Derefs to its
/// [`EmulatorHandle`]; dropping it stops the server and the runtime.
pub struct BackgroundEmulator {
    handle: EmulatorHandle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for BackgroundEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BackgroundEmulator").field(&self.handle).finish()
    }
}

impl std::ops::Deref for BackgroundEmulator {
    type Target = EmulatorHandle;

    fn deref(&self) -> &EmulatorHandle {
        &self.handle
    }
}

impl Drop for BackgroundEmulator {
    fn drop(&mut self) {
        self.handle.stop_now();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_millis(500));
        }
    }
}

/// The request could not be answered on purpose: hyper closes the connection without a response.
#[derive(Debug)]
struct DroppedConnection;

impl fmt::Display for DroppedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DroppedConnection {}

fn app(state: &Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/oauth/token", axum::routing::post(crate::oauth::token_endpoint))
        .nest("/api", crate::api::router(state));
    if state.config.control_routes {
        router = router.nest("/__emulator", crate::control::router());
    }
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(state), correlate))
        .with_state(Arc::clone(state))
}

/// Outermost layer: a correlation id for every request, echoed in `ININ-Correlation-Id`;
/// global 401/429 counts; the request log.
async fn correlate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let id = state.correlation_id();
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let line = state.config.log_requests.then(|| format!("{} {}", request.method(), request.uri()));
    let mut response = next.run(request).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(CORRELATION_ID, v);
    }
    match response.status() {
        StatusCode::UNAUTHORIZED => bump(&state.counters.responses_401),
        StatusCode::TOO_MANY_REQUESTS => bump(&state.counters.responses_429),
        _ => {}
    }
    if let Some(line) = line {
        // Not `eprintln!`, which panics (and drops the connection) when stderr is a closed pipe.
        let status = response.status().as_u16();
        let _ = writeln!(std::io::stderr().lock(), "credflow-emulator: {line} -> {status} [{id}]");
    }
    response
}

async fn not_found(axum::Extension(ctx): axum::Extension<CorrelationId>) -> Response {
    GenesysError::new(StatusCode::NOT_FOUND, "not.found", "The requested resource was not found.")
        .respond(&ctx)
}

/// Accept loop. Ends when `stopped` fires or its sender is dropped; open connections are then
/// aborted with the `JoinSet`.
async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<TlsAcceptor>,
    mut stopped: oneshot::Receiver<()>,
) {
    let app = app(&state);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let service = connection_service(app.clone(), Arc::clone(&state));
                    let tls = tls.clone();
                    connections.spawn(async move {
                        // Errors here are the client's doing or a dropped connection: nothing to do.
                        let http = hyper::server::conn::http1::Builder::new()
                            // Enables the 30 s header-read timeout.
                            .timer(TokioTimer::new())
                            .clone();
                        match tls {
                            None => {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                            Some(tls) => {
                                // A client that never finishes its handshake is cut off.
                                let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream));
                                if let Ok(Ok(stream)) = handshake.await {
                                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                                }
                            }
                        }
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Per-connection hyper service: the fault that drops connections, then the router.
fn connection_service(
    app: Router,
    state: Arc<AppState>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = Response,
    Error = DroppedConnection,
    Future = impl Future<Output = Result<Response, DroppedConnection>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let app = app.clone();
        let state = Arc::clone(&state);
        async move {
            if state.should_drop(Route::of(request.uri().path())) {
                return Err(DroppedConnection);
            }
            match app.oneshot(request).await {
                Ok(response) => Ok(response),
                Err(never) => match never {},
            }
        }
    })
}
