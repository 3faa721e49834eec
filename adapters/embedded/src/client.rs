//! The client: one core [`Session`] driven over the application's connections, on embassy-time.

use credflow_core::http::Method;
use credflow_core::http::keep_alive::{KeepAlive, Repeat};
use credflow_core::http::url::PlainHttp;
use credflow_core::lifecycle::{Generation, LifecycleEvent, Ticket};
use credflow_core::oauth::EncodeError;
use credflow_core::retry::policy::TransportKind;
use credflow_core::secret::{AccessToken, wipe};
use credflow_core::session::{
    Authorize, Counters, ENDPOINT_CAPACITY, Event, HostKey, RequestSpec, RequestState,
    RestoreError, Session, TokenStatus, Verdict, WaitReason,
};
use credflow_core::snapshot::SealError;
use credflow_core::{
    Duration as CoreDuration, Instant as CoreInstant, Priority, UnixTime, WallClock,
};
use embassy_time::{Duration, Instant, Timer, with_deadline};
use embedded_io_async::{ErrorKind, Write};

use crate::error::{Error, InvalidUrl, TransportError};
use crate::transport::{Connector, Target};
use crate::wire::{
    ReadError, Received, RequestHead, ResponseHeaders, read_response, validate, write_all,
};

/// Timeouts, the `User-Agent` and connection reuse, with defaults fit for a TLS connection over a
/// slow uplink.
///
/// ```
/// use credflow_embedded::ClientConfig;
/// use embassy_time::Duration;
/// let config = ClientConfig { io_timeout: Duration::from_secs(10), ..ClientConfig::default() };
/// # let _ = config;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Longest wait for [`Connector::connect`] (DNS, TCP, TLS handshake); default 15 s. A
    /// connection opened for an exchange is also within that exchange's own limit (below).
    pub connect_timeout: Duration,
    /// Longest wait for one API exchange, connecting included when it needs a connection, to
    /// the last byte read; default 30 s. A slower server counts as a transport timeout (retried
    /// if idempotent). The request's [`deadline`](Request::deadline) ends it sooner.
    pub io_timeout: Duration,
    /// Longest wait for one token exchange, connecting included; default 20 s. Keep it under
    /// the core's `LifecycleConfig::request_timeout` (30 s). The calling call's own limit
    /// ([`token_wait`](Self::token_wait), a request's deadline; half of what is left of that
    /// deadline for a refresh ahead of expiry while the call holds a usable token, unless the
    /// last refresh was cut so: `Session::refresh_limit`) ends it
    /// sooner: the token request is then abandoned (the next one still waits for the spacing
    /// of token requests), not counted as a failure of the token endpoint; from the second
    /// abandoned in a row, the next one waits as after failures (the core's
    /// `Lifecycle::on_abandoned`).
    pub token_timeout: Duration,
    /// Longest a call waits for a token (across token requests, the one in flight included,
    /// and their backoff), from when it first has none, before failing with
    /// [`Error::TokenWait`]; default 60 s. No token
    /// request is started once it has passed (zero: a call only takes a token already held).
    pub token_wait: Duration,
    /// The `User-Agent` of API requests; default `credflow-embedded/<version>`.
    pub user_agent: &'static str,
    /// Where a plain `http` API base is allowed; default [`PlainHttp::LoopbackOnly`]
    /// (`127.0.0.0/8`, `[::1]`, `localhost`), since bearer tokens go there.
    /// [`PlainHttp::Anywhere`] is the explicit opt-in to send them in clear text to another
    /// host, for a test network without TLS; the client logs a warning when it is used. The
    /// token URL has its own opt-in, where the session's endpoint is built
    /// (`TokenEndpoint::new_with_plain_http`).
    ///
    /// ```
    /// use credflow_core::http::url::PlainHttp;
    /// use credflow_embedded::ClientConfig;
    /// // A bench network without TLS: tokens cross it in clear text.
    /// let config = ClientConfig { plain_http: PlainHttp::Anywhere, ..ClientConfig::default() };
    /// # let _ = config;
    /// ```
    pub plain_http: PlainHttp,
    /// How long the kept-alive connection may have been idle and still carry a request that is
    /// not safe to repeat (a `POST` or `PATCH` not marked [`idempotent`](Request::idempotent));
    /// default 4 s ([`KeepAlive::DEFAULT_IDLE_LIMIT`]: below the 5 s after which Apache httpd
    /// and Node.js close an idle connection). Such a request goes on a new connection once the
    /// kept one has idled this long, because the server may be closing it just then and the
    /// request is not sent twice (see the crate docs, "A connection the server closed while
    /// idle"). Raise it to the server's own keep-alive time (less a margin) where that is
    /// known to be longer (nginx 75 s, an AWS load balancer 60 s) to save a new connection (a TLS
    /// handshake) per request after a pause; zero opens a new connection for each such request.
    pub keep_alive_limit: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(15),
            io_timeout: Duration::from_secs(30),
            token_timeout: Duration::from_secs(20),
            token_wait: Duration::from_secs(60),
            user_agent: concat!("credflow-embedded/", env!("CARGO_PKG_VERSION")),
            plain_http: PlainHttp::LoopbackOnly,
            keep_alive_limit: to_embassy(KeepAlive::DEFAULT_IDLE_LIMIT),
        }
    }
}

/// An API request: borrowed parts, nothing copied until it is written to the transmit buffer.
///
/// ```
/// use credflow_embedded::Request;
/// let body = br#"{"interval":"2024-01-01T00:00:00Z/2024-01-02T00:00:00Z"}"#;
/// let request = Request::post("/api/v2/analytics/conversations/details/query", body)
///     .with_headers(&[("Content-Type", "application/json")]);
/// # let _ = request;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// Path and query (`/api/v2/...`), on the client's API host. It must start with `/`: a URL
    /// (`https://other.example/x`) is refused as
    /// [`HttpError::InvalidPath`](crate::HttpError::InvalidPath), and a request goes only
    /// to the API host, on its connection and under its `Host`, so the bearer token never
    /// reaches another origin.
    pub path: &'a str,
    /// Extra header fields (`Content-Type`, …). `Host`, `Authorization`, `Content-Length`,
    /// `Transfer-Encoding` and `Connection` are the adapter's and refused here.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body (sent with `Content-Length`; may be empty).
    pub body: &'a [u8],
    /// Pacing priority: under a tight rate limit, lower priorities wait first.
    pub priority: Priority,
    /// The caller vouches that repeating this POST/PATCH is harmless, so it may be retried.
    pub idempotent: bool,
    /// No attempt starts later than this after the call, and every exchange made for it (its
    /// attempts, a token request it waits for) ends by then.
    pub deadline: Option<Duration>,
}

impl<'a> Request<'a> {
    /// A request with `method` on `path`: no body, no extra headers, normal priority.
    pub const fn new(method: Method, path: &'a str) -> Self {
        Request {
            method,
            path,
            headers: &[],
            body: &[],
            priority: Priority::Normal,
            idempotent: false,
            deadline: None,
        }
    }

    /// `GET path`.
    pub const fn get(path: &'a str) -> Self {
        Request::new(Method::Get, path)
    }

    /// `POST path` with `body`.
    pub const fn post(path: &'a str, body: &'a [u8]) -> Self {
        let mut request = Request::new(Method::Post, path);
        request.body = body;
        request
    }

    /// The same request with these extra header fields.
    pub const fn with_headers(mut self, headers: &'a [(&'a str, &'a str)]) -> Self {
        self.headers = headers;
        self
    }
}

/// The answer to a [`Request`], borrowed from the caller's receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'b> {
    /// The HTTP status: 2xx, or a permanent answer (404, 400, …) the session does not retry.
    pub status: u16,
    /// The header fields.
    pub headers: ResponseHeaders<'b>,
    /// The body, decoded from the chunked coding if it was chunked.
    pub body: &'b [u8],
    /// The body was cut to fit the receive buffer (only ever for non-2xx answers, whose body
    /// is informational).
    pub truncated: bool,
}

/// What the request loop does after one API attempt.
enum AfterAttempt {
    /// Return this response (in the receive buffer).
    Done(Received),
    /// Send again, not before this instant.
    RetryAt(Instant),
    /// Ask the session again at once.
    Reauthorize,
}

/// Why one exchange failed.
enum Failure {
    Transport(TransportError),
    /// The connection ran out of memory for what the server sent (a TLS record larger than
    /// its record buffer): a new connection would fail the same way.
    ConnectionBuffer,
    /// The response (`status`, head at `rx[..head_len]`) does not fit the buffer.
    TooLarge {
        status: Option<u16>,
        head_len: usize,
        needed: Option<usize>,
    },
}

fn transport_kind(e: TransportError) -> TransportKind {
    match e {
        TransportError::Connect => TransportKind::Connect,
        TransportError::Timeout => TransportKind::Timeout,
        TransportError::Io(_) | TransportError::Closed => TransportKind::Reset,
        TransportError::Http(_) => TransportKind::Other,
    }
}

/// The credflow client for one client id, on one core: a [`Session`] driven over the
/// application's [`Connector`], timed with embassy-time.
///
/// - [`token`](Self::token) returns a valid token, requesting one when needed.
/// - [`request`](Self::request) sends an API request with the token, paced to the server's
///   rate limit, retried as the session's verdicts say (401 → new token and one retry, 429 and
///   5xx after `Retry-After` or backoff, transport failures of idempotent requests), and
///   refused while the host's circuit breaker is open.
/// - [`maintain`](Self::maintain) sleeps until the session's next deadline and refreshes the
///   token ahead of expiry, for an application that wants the token fresh between requests.
///
/// Every call takes the caller's buffers: `tx` for the request head (and the token request),
/// `rx` for the response (the API response is returned borrowed from it). `N` is the token
/// capacity in bytes, `H` the number of API hosts with a breaker (one API host per client
/// here, so 1 suffices), `E` the token endpoint's capacity (URL, scope and extra parameters
/// together; 64 holds a Genesys Cloud login URL).
///
/// Calls take `&mut self`: one call at a time. To share a client between tasks, put it in an
/// `embassy_sync::mutex::Mutex`. A call cancelled mid-way (dropped future, `select`) is safe:
/// its connection is dropped, and the session is told on the next call.
pub struct Client<
    C: Connector,
    const N: usize = 2048,
    const H: usize = 1,
    const E: usize = ENDPOINT_CAPACITY,
> {
    session: Session<N, H, E>,
    connector: C,
    /// The kept-alive connection, whether it goes to the token endpoint's target, and when its
    /// last exchange ended (for [`ClientConfig::keep_alive_limit`]).
    conn: Option<(bool, CoreInstant, C::Connection)>,
    token_target: Target,
    api_target: Target,
    /// Token endpoint and API on the same origin: one connection serves both.
    same_origin: bool,
    api_host: HostKey,
    config: ClientConfig,
    /// The embassy instant the core's millisecond clock counts from.
    origin: Instant,
    /// A request whose attempt was in flight when its call was cancelled.
    in_flight: Option<credflow_core::session::RequestState>,
    /// The token request in flight: set while its exchange runs, so that one whose call was
    /// cancelled is told to the session, and one to sign anew is named to it.
    pending_ticket: Option<Ticket>,
    last_token_failure: Option<TransportError>,
}

impl<C: Connector, const N: usize, const H: usize, const E: usize> core::fmt::Debug
    for Client<C, N, H, E>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.session)
            .field("token_target", &self.token_target)
            .field("api_target", &self.api_target)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl<C: Connector, const N: usize, const H: usize, const E: usize> Client<C, N, H, E> {
    /// A client that requests tokens as `session` says and sends API requests to `api_base`
    /// (`https://api.mypurecloud.com`; its path is ignored, requests carry full paths).
    /// Build the session with the core's API: credentials, endpoint, configuration and a seed
    /// from the device's random source (the adapter reads none itself).
    ///
    /// # Errors
    ///
    /// [`InvalidUrl`] for an API base the core refuses (malformed, userinfo, plain `http` to a
    /// host that is not loopback without [`ClientConfig::plain_http`]), or a host longer than
    /// [`HOST_CAPACITY`](crate::HOST_CAPACITY). Nothing is connected before.
    // Out of line, as the core's `Session::new` is: called once, at start-up, where inlined it
    // made the caller's code larger than its own (the moves of the session and the targets).
    #[inline(never)]
    pub fn new(
        connector: C,
        session: Session<N, H, E>,
        api_base: &str,
        config: ClientConfig,
    ) -> Result<Self, InvalidUrl> {
        // The endpoint checked its URL when it was built; checked again here with the same
        // opt-in, as every URL the adapter connects to is.
        let endpoint = session.endpoint();
        let token_target = Target::from_url_with(endpoint.token_url(), endpoint.plain_http())?;
        let api_target = Target::from_url_with(api_base, config.plain_http)?;

        Ok(Client {
            same_origin: token_target == api_target,
            api_host: HostKey::from_host(api_target.host()),
            session,
            connector,
            conn: None,
            token_target,
            api_target,
            config,
            origin: Instant::now(),
            in_flight: None,
            pending_ticket: None,
            last_token_failure: None,
        })
    }

    /// The session, to read its counters, token times and last token error.
    pub fn session(&self) -> &Session<N, H, E> {
        &self.session
    }

    /// The session, to change credentials or drain nothing: the client logs and drops events.
    pub fn session_mut(&mut self) -> &mut Session<N, H, E> {
        &mut self.session
    }

    /// The session's counters (requests, retries, token requests, 429s, breaker trips, …).
    pub fn counters(&self) -> Counters {
        self.session.counters()
    }

    /// The connector, e.g. to reconfigure the network stack.
    pub fn connector_mut(&mut self) -> &mut C {
        &mut self.connector
    }

    /// Tells the client the wall-clock time now (from SNTP or an RTC). Needed for
    /// [`seal`](Self::seal), [`restore`](Self::restore) and `client_secret_jwt`; a device that
    /// never knows it still works otherwise.
    pub fn set_wall_clock(&mut self, now: UnixTime) {
        let at = self.now();
        self.session.set_wall_clock(WallClock::new(at, now));
    }

    /// Seals the current token into `out` under `key`, to write to flash and
    /// [`restore`](Self::restore) after a reboot (saves a token request per boot). Returns the
    /// bytes written, `Ok(0)` without a usable token or wall clock.
    pub fn seal(&self, key: &[u8], out: &mut [u8]) -> Result<usize, SealError> {
        self.session.seal(self.now(), key, out)
    }

    /// Restores a token sealed by [`seal`](Self::seal), checked against `key`, the
    /// credentials and its expiry; it is then served until its refresh point.
    pub fn restore(&mut self, sealed: &[u8], key: &[u8]) -> Result<Generation, RestoreError> {
        let result = self.session.restore(self.now(), sealed, key);
        self.drain();
        result
    }

    /// When the session next has work (a token refresh due, a breaker half-opening):
    /// `Instant::MAX` when nothing is scheduled.
    pub fn next_wake(&self) -> Instant {
        self.session.poll_timeout().map_or(Instant::MAX, |(at, _)| self.to_embassy(at))
    }

    /// Does what is due now: deadlines, and a token request if one is due (refresh ahead of
    /// expiry). Returns at once when nothing is due.
    pub async fn drive(&mut self, tx: &mut [u8], rx: &mut [u8]) -> Result<(), Error> {
        self.recover();
        self.session.handle_timeout(self.now());
        self.token_round(tx, rx, Instant::MAX).await?;
        self.drain();
        Ok(())
    }

    /// Sleeps until [`next_wake`](Self::next_wake), then [`drive`](Self::drive)s. Loop on it in
    /// a task (or `select` it against the application's work) to keep the token fresh between
    /// requests.
    pub async fn maintain(&mut self, tx: &mut [u8], rx: &mut [u8]) -> Result<(), Error> {
        Timer::at(self.next_wake()).await;
        // `drive`'s body, not a call to it: an awaited `drive` would be one more state machine.
        self.recover();
        self.session.handle_timeout(self.now());
        self.token_round(tx, rx, Instant::MAX).await?;
        self.drain();
        Ok(())
    }

    /// A valid token: the cached one, or a new one requested now (waiting out backoff after
    /// failures, up to [`ClientConfig::token_wait`]). Fails at once when the credentials were
    /// rejected.
    pub async fn token(&mut self, tx: &mut [u8], rx: &mut [u8]) -> Result<&AccessToken<N>, Error> {
        self.recover();
        let give_up = after(self.config.token_wait);
        loop {
            self.session.handle_timeout(self.now());
            if self.token_round(tx, rx, give_up).await? {
                continue;
            }
            let now = self.now();
            let until = match self.session.check_token(now) {
                TokenStatus::Ready(..) => break,
                TokenStatus::Unavailable(e) => return Err(Error::Api(e)),
                TokenStatus::Pending { until } => until,
            };
            self.drain();
            let at = self.token_wake(until, give_up).map_err(|last| Error::TokenWait { last })?;
            Timer::at(at).await;
        }
        let now = self.now();
        self.session.token(now).map(|(token, _)| token).ok_or(Error::TokenWait { last: None })
    }

    /// Sends `request` to the API host with a token, pacing, retries and the breaker, and
    /// returns the response in `rx`.
    ///
    /// Returns successes and permanent answers (404, 400, …) as a [`Response`]; the session's
    /// refusals as [`Error::Api`] (403, 401 twice, retries exhausted, breaker open, deadline).
    /// `tx` must hold the request head with the token; `rx` the whole response.
    pub async fn request<'b>(
        &mut self,
        request: &Request<'_>,
        tx: &mut [u8],
        rx: &'b mut [u8],
    ) -> Result<Response<'b>, Error> {
        self.recover();
        validate(request.path, request.headers).map_err(Error::InvalidRequest)?;
        let mut state = self.begin_request(request);
        // Every exchange for this call (its attempts, a token request) ends by its deadline
        // (`Instant::MAX`: none).
        let deadline = request.deadline.map_or(Instant::MAX, after);
        let mut token_give_up = None;
        let received = loop {
            let now = self.now();
            self.session.handle_timeout(now);
            // The call's wait for a token starts when it first has none: the token request it
            // sends then is part of that wait.
            if token_give_up.is_none() && self.session.token(now).is_none() {
                token_give_up = Some(after(self.config.token_wait));
            }
            // A refresh that is due goes first, so it never blocks later; it waits no longer
            // than the call (its wait for a token; its deadline, or half the time left to it
            // when the call holds a usable token: see `Session::refresh_limit`).
            let limit = self
                .session
                .refresh_limit(now, &state)
                .map_or(Instant::MAX, |d| after(to_embassy(d)));
            if self.token_round(tx, rx, limit.min(token_give_up.unwrap_or(Instant::MAX))).await? {
                continue;
            }
            let now = self.now();
            // One sleep for every wait (pacing, backoff, a token): each `.await` costs the
            // request's state machine code.
            let at = match self.session.authorize(now, &mut state) {
                Authorize::Fail(e) => {
                    self.drain();
                    return Err(Error::Api(e));
                }
                Authorize::Wait { until, reason } => {
                    self.drain();
                    self.request_wake(until, reason, &mut token_give_up)?
                }
                Authorize::Send { token, .. } => {
                    let head =
                        api_head(&self.api_target, self.config.user_agent, request, token.as_str());
                    let len = match head.write(tx) {
                        Ok(len) => len,
                        Err(needed) => {
                            wipe(tx);
                            self.session.abandon(now, &mut state);
                            return Err(Error::RequestTooLarge { needed });
                        }
                    };
                    self.in_flight = Some(state.clone());
                    let by = deadline.min(after(self.config.io_timeout));
                    let outcome = self
                        .exchange(
                            Some(state.spec()),
                            tx.get_mut(..len).unwrap_or_default(),
                            request.body,
                            rx,
                            by,
                        )
                        .await;
                    // The head holds the bearer token.
                    if let Some(sent) = tx.get_mut(..len) {
                        wipe(sent);
                    }
                    self.in_flight = None;
                    match self.settle_attempt(&mut state, outcome, rx)? {
                        AfterAttempt::Done(received) => break received,
                        AfterAttempt::RetryAt(at) => at,
                        AfterAttempt::Reauthorize => continue,
                    }
                }
            };
            Timer::at(at).await;
        };
        let (headers, body) = received.parts(rx);
        Ok(Response { status: received.status, headers, body, truncated: received.truncated })
    }

    /// Starts tracking `request` in the session.
    fn begin_request(&mut self, request: &Request<'_>) -> RequestState {
        let now = self.now();
        let spec = RequestSpec {
            method: request.method,
            idempotent: request.idempotent,
            priority: request.priority,
            deadline: request.deadline.map(|d| now.saturating_add(to_core(d))),
            host: self.api_host,
        };
        self.session.begin(now, spec)
    }

    /// When a request that the session told to wait (for `reason`, until `until`) looks again.
    /// A wait for a token gives up [`ClientConfig::token_wait`] after the first one
    /// (`token_give_up`, set then).
    fn request_wake(
        &self,
        until: Option<CoreInstant>,
        reason: WaitReason,
        token_give_up: &mut Option<Instant>,
    ) -> Result<Instant, Error> {
        if reason == WaitReason::Token {
            let give_up = *token_give_up.get_or_insert_with(|| after(self.config.token_wait));
            return self.token_wake(until, give_up).map_err(|last| Error::TokenWait { last });
        }
        // `None` here is a breaker probe of a cancelled call: released by `recover`, so look
        // again soon.
        let at = until.map_or_else(|| after(Duration::from_millis(100)), |at| self.to_embassy(at));
        debug!("request waits {} ms", self.wait_ms(at));
        Ok(at)
    }

    /// Tells the session what came of one API attempt (`outcome`, its response in `rx`) and
    /// turns the session's verdict into the request loop's next step.
    fn settle_attempt(
        &mut self,
        state: &mut RequestState,
        outcome: Result<Received, Failure>,
        rx: &[u8],
    ) -> Result<AfterAttempt, Error> {
        let now = self.now();
        let verdict = match outcome {
            Ok(received) => {
                let (headers, body) = received.parts(rx);
                let verdict =
                    self.session.handle_response(now, state, received.status, &headers, body);
                if matches!(verdict, Verdict::Done) {
                    self.drain();
                    return Ok(AfterAttempt::Done(received));
                }
                debug!("status {}: not done", received.status);
                verdict
            }
            Err(Failure::Transport(e)) => {
                debug!("API exchange failed in transport");
                self.session.handle_transport_error(now, state, transport_kind(e))
            }
            Err(Failure::ConnectionBuffer) => {
                self.session.abandon(now, state);
                self.drain();
                warn!("a TLS record does not fit the connection's record buffer");
                return Err(Error::ConnectionBufferTooSmall);
            }
            Err(Failure::TooLarge { status, head_len, needed }) => {
                return Err(self.response_too_large(now, state, status, head_len, needed, rx));
            }
        };
        self.drain();
        let at = match verdict {
            Verdict::Done => return Ok(AfterAttempt::Reauthorize), // handled above
            Verdict::Retry { at, .. } => self.to_embassy(at),
            Verdict::Fail(e) => return Err(Error::Api(e)),
        };
        info!("retrying in {} ms (attempt {})", self.wait_ms(at), state.attempts());
        Ok(AfterAttempt::RetryAt(at))
    }

    /// Ends a request whose response (`status`, head at `rx[..head_len]`) does not fit `rx`.
    fn response_too_large(
        &mut self,
        now: CoreInstant,
        state: &mut RequestState,
        status: Option<u16>,
        head_len: usize,
        needed: Option<usize>,
        rx: &[u8],
    ) -> Error {
        match status {
            Some(status) => {
                let headers = ResponseHeaders::new(rx.get(..head_len).unwrap_or_default());
                // Rate-limit headers and the outcome still count; the verdict is moot, the
                // caller must enlarge the buffer.
                let _ = self.session.handle_response(now, state, status, &headers, b"");
            }
            None => self.session.abandon(now, state),
        }
        self.drain();
        warn!("response does not fit the {}-byte receive buffer", rx.len());
        Error::ResponseTooLarge { status, needed, capacity: rx.len() }
    }

    // ----- internals ---------------------------------------------------------------------

    /// The core's clock: milliseconds since the client was created. Out of line: it is called
    /// on most paths, and inlined (embassy's 64-bit tick arithmetic) it would be copied into
    /// each.
    #[inline(never)]
    fn now(&self) -> CoreInstant {
        CoreInstant::from_millis(Instant::now().saturating_duration_since(self.origin).as_millis())
    }

    fn to_embassy(&self, at: CoreInstant) -> Instant {
        if at.is_never() {
            return Instant::MAX;
        }
        self.origin.checked_add(Duration::from_millis(at.as_millis())).unwrap_or(Instant::MAX)
    }

    fn wait_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(Instant::now()).as_millis()
    }

    /// Tells the session about work a cancelled call left behind.
    fn recover(&mut self) {
        let now = self.now();
        if let Some(ticket) = self.pending_ticket.take() {
            self.session.handle_token_error(now, ticket, None);
        }
        if let Some(state) = &mut self.in_flight {
            self.session.abandon(now, state);
            self.in_flight = None;
        }
    }

    /// When to look again for a token: at `until`, else the session's next deadline, at the
    /// latest at `give_up`; once `give_up` has passed, the last transport failure of a token
    /// request (for [`Error::TokenWait`]).
    fn token_wake(
        &self,
        until: Option<CoreInstant>,
        give_up: Instant,
    ) -> Result<Instant, Option<TransportError>> {
        if Instant::now() >= give_up {
            warn!("no token within the token wait");
            return Err(self.last_token_failure);
        }
        let until = until.or_else(|| self.session.poll_timeout().map(|(at, _)| at));
        let wake = until.map_or(give_up, |at| self.to_embassy(at).min(give_up));
        debug!("waiting {} ms for a token", self.wait_ms(wake));
        Ok(wake)
    }

    /// Sends the token request if one is due. `Ok(true)`: one was sent (whatever came of it).
    /// It ends by `bound`, the calling caller's own limit (`Instant::MAX`: none), if that comes
    /// before [`ClientConfig::token_timeout`]; cut off there, the request is abandoned (not a
    /// failure of the token endpoint: no breaker; a backoff only from the second abandoned in a
    /// row).
    async fn token_round(
        &mut self,
        tx: &mut [u8],
        rx: &mut [u8],
        bound: Instant,
    ) -> Result<bool, Error> {
        // Past the caller's limit, a request would be cut at once, its secret perhaps written.
        if bound <= Instant::now() {
            return Ok(false);
        }
        let now = self.now();
        // The session encodes into `rx` (scratch until the response arrives), the HTTP/1.1
        // request goes into `tx`; both hold the secret and are wiped once it is sent.
        let (ticket, written) = match self.session.poll_token_request(now, rx) {
            Ok(None) => return Ok(false),
            Ok(Some((ticket, request))) => (ticket, request.write_http1(tx)),
            Err(e) => {
                wipe(rx);
                self.drain();
                return Err(Error::TokenRequest(e));
            }
        };
        wipe(rx);
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                wipe(tx);
                self.session.handle_token_error(now, ticket, None);
                self.drain();
                return Err(match e {
                    EncodeError::BufferTooSmall { needed } => Error::RequestTooLarge { needed },
                    other => Error::TokenRequest(other),
                });
            }
        };
        info!("requesting a token");
        self.pending_ticket = Some(ticket);
        let timeout = after(self.config.token_timeout);
        let by = bound.min(timeout);
        let outcome = self.exchange(None, tx.get_mut(..len).unwrap_or_default(), b"", rx, by).await;
        wipe(tx);
        self.pending_ticket = None;
        let now = self.now();
        let result = match outcome {
            Ok(received) => {
                let (headers, body) = received.parts(rx);
                self.session.handle_token_response(now, ticket, received.status, &headers, body);
                self.last_token_failure = None;
                Ok(true)
            }
            Err(failure) => {
                // Told to the session as a transport failure of this kind (`None`: abandoned).
                let (kind, result) = match failure {
                    Failure::Transport(TransportError::Timeout) if by < timeout => {
                        warn!("token request cut off by the caller's limit");
                        (None, Ok(true))
                    }
                    Failure::Transport(e) => {
                        warn!("token request failed in transport");
                        self.last_token_failure = Some(e);
                        (Some(transport_kind(e)), Ok(true))
                    }
                    Failure::TooLarge { status, needed, .. } => (
                        Some(TransportKind::Other),
                        Err(Error::ResponseTooLarge { status, needed, capacity: rx.len() }),
                    ),
                    Failure::ConnectionBuffer => {
                        (Some(TransportKind::Other), Err(Error::ConnectionBufferTooSmall))
                    }
                };
                self.session.handle_token_error(now, ticket, kind);
                result
            }
        };
        // The token response is in `rx`: the caller's buffer must not keep it.
        wipe(rx);
        self.drain();
        result
    }

    /// One request/response exchange on the kept-alive connection (or a new one), ended by
    /// `deadline`, connecting included: the API request described by `api` (its `head`, then
    /// its `body`), or (`None`) the token request in `head`. The core's [`KeepAlive`] rule
    /// decides, from whether the request is safe to repeat and how long the connection has
    /// idled, whether it goes on the kept-alive connection, and whether (and how) it is sent
    /// once more on a new one when the server turns out to have closed that: a token request
    /// with a `client_secret_jwt` assertion only as the session signs it anew, written over
    /// `head` (with `rx` as the session's scratch).
    async fn exchange(
        &mut self,
        api: Option<&RequestSpec>,
        head: &mut [u8],
        body: &[u8],
        rx: &mut [u8],
        deadline: Instant,
    ) -> Result<Received, Failure> {
        let to_token = api.is_none();
        // A token request is safe to repeat, at worst a second token; signed anew if it
        // carries an assertion.
        let repeat = match api {
            Some(spec) => Repeat::from_repeatable(spec.is_repeatable()),
            None => KeepAlive::token_request_repeat(self.session.endpoint().auth()),
        };
        let head_request = api.is_some_and(|spec| spec.method == Method::Head);
        loop {
            // Taken, not borrowed: a cancelled exchange drops (closes) its connection.
            let (reused, mut conn) = match self.kept_connection(to_token, repeat.is_repeatable()) {
                Some(conn) => (true, conn),
                None => {
                    let target = if to_token { &self.token_target } else { &self.api_target };
                    let by = after(self.config.connect_timeout).min(deadline);
                    match with_deadline(by, self.connector.connect(target)).await {
                        Ok(Ok(conn)) => (false, conn),
                        Ok(Err(_e)) => {
                            warn!("connect failed");
                            return Err(Failure::Transport(TransportError::Connect));
                        }
                        // Cut by the exchange's deadline (the caller's limit, when it comes
                        // first), not the connect timeout: the exchange timed out.
                        Err(_) if by == deadline => {
                            return Err(Failure::Transport(TransportError::Timeout));
                        }
                        Err(_) => return Err(Failure::Transport(TransportError::Connect)),
                    }
                }
            };
            // The connection's last use, for the keep-alive rule, is when this request starts
            // out, not when its answer has been read: the server's idle time starts once it
            // has sent the answer, which the client finishes reading later (much later on a
            // slow uplink), so the client's count of idle time never falls short of the server's.
            let started = self.now();
            let attempt = async {
                // One await point for both parts: each one costs the state machine code.
                for part in [&*head, body] {
                    write_all(&mut conn, part)
                        .await
                        .map_err(|_| ReadError::Closed { idle: true })?;
                }
                conn.flush().await.map_err(|_| ReadError::Closed { idle: true })?;
                read_response(&mut conn, rx, head_request).await
            };
            match with_deadline(deadline, attempt).await {
                Err(_) => return Err(Failure::Transport(TransportError::Timeout)),
                Ok(Ok(received)) => {
                    if received.reusable {
                        self.conn = Some((to_token, started, conn));
                    }
                    return Ok(received);
                }
                // Not resent otherwise: a transport failure after sending, as any other.
                Ok(Err(ReadError::Closed { idle: true }))
                    if reused && KeepAlive::may_resend(repeat.is_repeatable()) =>
                {
                    debug!("kept-alive connection was closed by the server; reconnecting");
                    if repeat == Repeat::ReSigned {
                        self.resign(head, rx)?;
                    }
                }
                Ok(Err(e)) => {
                    return Err(match e {
                        ReadError::Io(ErrorKind::OutOfMemory) => Failure::ConnectionBuffer,
                        ReadError::Io(kind) => Failure::Transport(TransportError::Io(kind)),
                        ReadError::Closed { .. } => Failure::Transport(TransportError::Closed),
                        ReadError::Http(e) => Failure::Transport(TransportError::Http(e)),
                        ReadError::HeadTooLarge => {
                            Failure::TooLarge { status: None, head_len: 0, needed: None }
                        }
                        ReadError::BodyTooLarge { status, head_len, needed } => {
                            Failure::TooLarge { status: Some(status), head_len, needed }
                        }
                    });
                }
            }
        }
    }

    /// Writes over `head`, the token request in flight (`pending_ticket`), that request as the
    /// session signs it anew for its resend: a new `jti`, which the server has not seen, and
    /// new `iat` and `exp` (encoded in `rx`, then wiped). It is as long as the first: only
    /// fixed-width parts of the assertion change, and the decimal `iat` and `exp` gain a digit
    /// in the year 2286 only. Without it (the session signed the request anew once already, or
    /// cannot; one of another length), the request fails as closed in transport, as one not
    /// safe to repeat.
    fn resign(&mut self, head: &mut [u8], rx: &mut [u8]) -> Result<(), Failure> {
        let now = self.now();
        let request =
            self.pending_ticket.and_then(|t| self.session.resign_token_request(now, t, rx));
        let written = request.and_then(|request| request.write_http1(head).ok());
        // The assertion is a credential until it expires; `head` is wiped once the exchange ends.
        wipe(rx);
        match written {
            Some(len) if len == head.len() => Ok(()),
            _ => Err(Failure::Transport(TransportError::Closed)),
        }
    }

    /// The kept-alive connection, if it goes to the request's target (`to_token`) and the core's
    /// [`KeepAlive`] rule lets it carry the request (`repeatable` or not, after its idle time).
    /// One that may not is closed here, before the next one is opened: a connector may have
    /// room for one connection only (a socket pool of one, one set of TLS record buffers).
    fn kept_connection(&mut self, to_token: bool, repeatable: bool) -> Option<C::Connection> {
        let (for_token, last_used, conn) = self.conn.take()?;
        let rule = KeepAlive { idle_limit: to_core(self.config.keep_alive_limit) };
        let same_target = for_token == to_token || self.same_origin;
        (same_target && rule.may_carry(last_used, self.now(), repeatable)).then_some(conn)
    }

    /// Logs the session's events (when a logging feature is on) and drops them.
    fn drain(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Token(LifecycleEvent::TokenAcquired { generation, life, .. }) => {
                    info!(
                        "token acquired (generation {}, life {} s)",
                        generation.0,
                        life.as_secs()
                    );
                }
                Event::Token(_) => debug!("token lifecycle event"),
                Event::TokenEndpointError { status, .. } => {
                    warn!("token endpoint answered {}", status);
                }
                Event::Breaker { .. } => warn!("circuit breaker changed state"),
                Event::RateLimited { until, .. } => {
                    info!("rate limited until {} ms", until.as_millis());
                }
                _ => debug!("session event"),
            }
        }
    }
}

/// The head of `request` to `target`, with `bearer` as the token.
fn api_head<'a>(
    target: &'a Target,
    user_agent: &'a str,
    request: &'a Request<'a>,
    bearer: &'a str,
) -> RequestHead<'a> {
    RequestHead {
        method: request.method.as_str(),
        path: request.path,
        host: target.host(),
        bracket: target.is_ipv6(),
        port: target.host_port(),
        bearer,
        user_agent,
        headers: request.headers,
        body_len: (!request.body.is_empty()
            || matches!(request.method, Method::Post | Method::Put | Method::Patch))
        .then_some(request.body.len()),
    }
}

/// The instant `d` from now. Out of line: embassy's instants are 64-bit.
#[inline(never)]
fn after(d: Duration) -> Instant {
    Instant::now().saturating_add(d)
}

fn to_embassy(d: CoreDuration) -> Duration {
    Duration::from_millis(d.as_millis())
}

fn to_core(d: Duration) -> CoreDuration {
    CoreDuration::from_millis(d.as_millis())
}
