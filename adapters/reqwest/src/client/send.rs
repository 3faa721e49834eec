//! The send path: one API request's attempts, driven by the core's [`RequestDriver`] (the
//! fleet's admission and every wait) and session (authorize, verdicts).

use std::sync::Arc;
use std::time::Duration as StdDuration;

use bytes::Bytes;
use credflow_core::fleet::{
    Admission as CoreAdmission, CallTicket, Failure as FleetFailure, RequestDriver, ResponseReport,
    Step as FleetStep,
};
use credflow_core::http::{Headers, Method as CoreMethod};
use credflow_core::lifecycle::Generation;
use credflow_core::retry::policy::TransportKind;
use credflow_core::secret::{AccessToken, TokenStorage};
use credflow_core::session::{
    Authorize, HostKey, RequestSpec, RequestState, RetryReason, Verdict, WaitReason,
};
use credflow_core::{Duration, Instant, Priority};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use tokio::sync::watch;
use tracing::{Instrument, debug, info, warn};
use zeroize::Zeroizing;

use super::lane::LaneCell;
use super::{
    ClientEvent, Inner, RequestOptions, SessionCell, Shared, before, core_duration,
    deadline_exceeded, std_duration,
};
use crate::error::Error;
use crate::shared::{Admission, FleetLink};

/// Sends `request` until the session's verdict is final: each attempt authorized (after the
/// fleet's admission, in fleet mode), sent through `transport`, judged by the session.
/// `transport` is handed the client's own API client with each attempt (a way of sending of
/// its own ignores it). `http_times_out`: `transport` ends each request at `request_timeout`
/// by itself (credflow's own API client), so only a deadline or the caller's own timeout
/// needs setting per attempt.
///
/// Not an `async fn`: one of those keeps its argument and each rebinding of it in the future
/// (three copies of the 264-byte request, copied whenever the future moves); here the request
/// lives in one place, `original`, across the attempts.
pub(super) fn attempts<F, Fut>(
    client: Arc<Inner>,
    request: reqwest::Request,
    options: RequestOptions,
    http_times_out: bool,
    mut transport: F,
) -> impl Future<Output = Result<reqwest::Response, Error>> + use<F, Fut>
where
    F: FnMut(&reqwest::Client, reqwest::Request) -> Fut,
    Fut: Future<Output = Result<reqwest::Response, (TransportKind, BoxError)>>,
{
    // A request is sent only to the API base's origin (`check_origin`, below): its host is
    // the base's.
    let spec = request_spec(&request, options, client.shared.api_host);
    let mut original = Some(request);
    async move {
        // The client itself, not only its state: its token driver runs while a request the
        // caller kept after dropping the client still needs a token.
        let shared = &client.shared;
        if let Some(request) = &original {
            shared.check_origin(request.url())?;
        }
        // The session's steady-state lane, if it covers the request: its first attempt is
        // sent without asking (see `client::lane`). A request with a deadline never is in it
        // (its spec has the deadline once begun): the lane is not looked at for it.
        let mut lane = match options.deadline {
            None => shared.enter_lane(&spec),
            Some(_) => None,
        };
        let mut guard = match &lane {
            Some((cell, at)) => InFlight::in_lane(shared, cell.lane.request(spec, *at)),
            None => InFlight::begin(shared, spec, options.deadline),
        };
        // "GET /path", for logs, events and errors: formatted only when one needs it.
        let mut label = Label::default();
        // Subscribed to token and breaker changes once a wait needs them (see `authorized`).
        let mut version = None;
        loop {
            // The lane serves the first attempt only.
            let sent_in = lane.take().map(|(cell, _)| cell);
            let Authorized { header, generation, waited_for_token } = match &sent_in {
                Some(cell) => Authorized {
                    header: cell.header.clone(),
                    generation: cell.lane.generation(),
                    waited_for_token: false,
                },
                None => authorized(shared, &mut guard, &mut version).await?,
            };
            let span =
                attempt_span(shared, &guard, original.as_ref(), generation, waited_for_token);
            // Handed to `transport` in this block: the request is not kept beside the response
            // it awaits.
            let sent = {
                // Keep the original while it can be copied, so a retry can resend it.
                let mut attempt = match original.as_ref().and_then(replay) {
                    Some(copy) => copy,
                    None => take_original(&mut original, &mut label)?,
                };
                dress(shared, &guard, &mut attempt, header, http_times_out);
                transport(&shared.http, attempt)
            };
            // Sent itself (a body that cannot be replayed), the original is gone.
            let replayable = original.is_some();
            // The outcome, the verdict and the response live in this block only: none is kept
            // in the future while it sleeps before a retry.
            let (at, reason) = {
                let outcome = match sent.instrument(span.clone()).await {
                    Ok(response) if !read_for_verdict(&response) => Ok((response, None)),
                    // Boxed: an error's read is kept out of every request's future.
                    Ok(response) => {
                        let read = read_error_body(response, shared.max_response_body);
                        Box::pin(read).instrument(span.clone()).await
                    }
                    Err(e) => Err(e),
                };
                record_outcome(&span, &outcome);
                if outcome.is_err()
                    && let Some(request) = &original
                {
                    label.of(request);
                }
                // A plain answer in a lane that still holds: nothing for the session to hear.
                let verdict = match &sent_in {
                    Some(cell) if answered_plainly(cell, &outcome) => Ok(Verdict::Done),
                    _ => judge(shared, &mut guard, &outcome),
                };
                let (at, reason) = match verdict {
                    Ok(Verdict::Done) => return deliver(outcome, label.as_str()),
                    Err(e) => return Err(e),
                    // Taken out by `failed` already; kept total.
                    Ok(Verdict::Fail(e)) => return Err(e.into()),
                    Ok(Verdict::Retry { at, reason, .. }) => (at, reason),
                };
                span.record("credflow.retry.reason", tracing::field::debug(reason));
                if !replayable {
                    debug!(
                        label = label.as_str(),
                        ?reason,
                        "not retried: the request body cannot be replayed"
                    );
                    return deliver(outcome, label.as_str());
                }
                (at, reason)
            };
            if let Some(request) = &original {
                label.of(request);
            }
            let label = label.as_str();
            let wait = shared.clock.until(at);
            span.record("credflow.retry.wait_ms", wait.as_millis() as u64);
            drop(span);
            let attempts = guard.state.attempts();
            info!(%label, ?reason, wait_ms = wait.as_millis() as u64, attempts, "retrying");
            shared.emit(|| ClientEvent::Retry {
                request: label.to_owned(),
                reason,
                wait,
                attempts,
            });
            if reason == RetryReason::Reauthenticate {
                shared.kick.notify_one();
            }
            Box::pin(tokio::time::sleep_until(shared.clock.to_tokio(at))).await;
        }
    }
}

/// A copy of `request` for one attempt; `None` if its body cannot be replayed (a stream).
///
/// reqwest's `try_clone` gives its copy an empty timeout extension, then replaces the
/// extensions with the original's: a map allocated and freed for every request. A request
/// without a body was built with `Request::new` or a `RequestBuilder` (one converted from an
/// `http::Request` always has a body), so its only extension is the timeout `timeout()` shows:
/// it is copied field by field. The test `replay_copies_what_try_clone_copies` holds this to
/// reqwest's own copy (of 0.13.5: should a later reqwest keep another setting in a request's
/// extensions, it has to be copied here too).
fn replay(request: &reqwest::Request) -> Option<reqwest::Request> {
    if request.body().is_some() {
        return request.try_clone();
    }
    let mut copy = reqwest::Request::new(request.method().clone(), request.url().clone());
    // A new request's map is empty already (and cloning an empty one still costs a pass
    // through its three vectors).
    if !request.headers().is_empty() {
        *copy.headers_mut() = request.headers().clone();
    }
    *copy.version_mut() = request.version();
    if let Some(timeout) = request.timeout() {
        *copy.timeout_mut() = Some(*timeout);
    }
    Some(copy)
}

/// `original` itself, for an attempt no retry can resend (its body cannot be copied); its
/// label formatted first, for what is said about it later.
fn take_original(
    original: &mut Option<reqwest::Request>,
    label: &mut Label,
) -> Result<reqwest::Request, Error> {
    let request = original
        .take()
        .ok_or_else(|| Error::config("request body cannot be replayed for a retry"))?;
    label.of(&request);
    Ok(request)
}

/// Gives `attempt` its `Authorization` header and its timeout: the caller's, else
/// `request_timeout` where the HTTP client does not end it there by itself, cut at the
/// request's deadline (it bounds the response and the body the caller reads after it).
fn dress(
    shared: &Shared,
    guard: &InFlight<'_>,
    attempt: &mut reqwest::Request,
    header: HeaderValue,
    http_times_out: bool,
) {
    attempt.headers_mut().insert(AUTHORIZATION, header);
    let give_up = guard.driver.give_up();
    if give_up.is_some() || (attempt.timeout().is_none() && !http_times_out) {
        let timeout = attempt.timeout().copied().unwrap_or(shared.request_timeout);
        *attempt.timeout_mut() = Some(until_give_up(shared, give_up, timeout));
    }
}

/// `timeout`, or less if `give_up` (the request's deadline) comes before it ends.
fn until_give_up(shared: &Shared, give_up: Option<Instant>, timeout: StdDuration) -> StdDuration {
    match give_up {
        Some(at) => timeout.min(shared.clock.until(at)),
        None => timeout,
    }
}

/// The span of one attempt, a child of the request's `credflow.send`: OpenTelemetry's HTTP
/// client fields (`http.request.method`, `server.address`, `server.port`,
/// `http.request.resend_count` for a retry; `http.response.status_code` and `error.type` once
/// known) and credflow's (the token's generation, and the retry reason and wait the verdict
/// named). Never the token, the URL's query or a header. An attempt that waited for a token
/// follows from the span of the token request it waited for.
fn attempt_span(
    shared: &Shared,
    guard: &InFlight<'_>,
    request: Option<&reqwest::Request>,
    generation: Generation,
    waited_for_token: bool,
) -> tracing::Span {
    let resends = guard.state.attempts().saturating_sub(1);
    let span = tracing::info_span!(
        "credflow.attempt",
        "http.request.method" = request.map(|r| r.method().as_str()),
        "server.address" = request.and_then(|r| r.url().host_str()),
        "server.port" = request.and_then(|r| r.url().port_or_known_default()),
        "http.request.resend_count" = (resends > 0).then_some(resends),
        "http.response.status_code" = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        "credflow.token.generation" = generation.0,
        "credflow.retry.reason" = tracing::field::Empty,
        "credflow.retry.wait_ms" = tracing::field::Empty,
    );
    if waited_for_token
        && !span.is_disabled()
        && let Some(fetch) = shared.last_fetch()
    {
        span.follows_from(&fetch);
    }
    span
}

/// Records an attempt's status, or its transport failure, on its span.
fn record_outcome<T>(
    span: &tracing::Span,
    outcome: &Result<(reqwest::Response, T), (TransportKind, BoxError)>,
) {
    if span.is_disabled() {
        return;
    }
    match outcome {
        Ok((response, _)) => {
            let status = response.status().as_u16();
            span.record("http.response.status_code", status);
            if status >= 400 {
                span.record("error.type", status.to_string());
            }
        }
        Err((kind, _)) => {
            span.record("error.type", error_type(*kind));
        }
    }
}

/// A transport failure as OpenTelemetry's `error.type`: a low-cardinality name.
pub(super) fn error_type(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Connect => "connect",
        TransportKind::Reset => "reset",
        TransportKind::Timeout => "timeout",
        TransportKind::Other => "transport",
    }
}

/// A request's method and path ("GET /api/v2/users/me"), formatted the first time it is
/// needed (a retry, a failure), not for every request.
#[derive(Default)]
struct Label(Option<String>);

impl Label {
    /// Formats the label from `request`, unless it was already.
    fn of(&mut self, request: &reqwest::Request) {
        self.0.get_or_insert_with(|| format!("{} {}", request.method(), request.url().path()));
    }

    fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }
}

/// Waits until the session authorizes the next attempt, and returns its `Authorization`
/// header: the fleet's admission and every wait as the core's [`RequestDriver`] says.
///
/// The waits' futures are boxed: most requests are authorized at once, and keeping those
/// futures (timers, the store's calls) inline made every request's future kilobytes larger,
/// copied each time it moves.
///
/// `version` is subscribed to token and breaker changes the first time the session says to
/// wait (a request authorized at once never subscribes, nor reads the version); a change
/// after the session's answer sends the request back to ask again.
async fn authorized(
    shared: &Shared,
    guard: &mut InFlight<'_>,
    version: &mut Option<watch::Receiver<u64>>,
) -> Result<Authorized, Error> {
    let mut waited_for_token = false;
    loop {
        shared.open()?;
        let now = guard.begun.take().unwrap_or_else(|| shared.clock.now());
        // Whether a token is cached matters only to a request the fleet admits.
        let step = guard.driver.poll(now, shared.fleet.is_some() && shared.has_cached());
        if !guard.driver.holds_gate() {
            guard.gate = None;
        }
        match step {
            FleetStep::AskFleet { within, probe_claimed } => {
                Box::pin(ask_fleet(shared, guard, within, probe_claimed)).await?
            }
            // A question whose answer was lost (never the case here: each is awaited where
            // it is asked) counts as a store that did not answer.
            FleetStep::AwaitFleet => {
                let _ = guard.driver.handle_admission(now, None, &mut guard.state);
            }
            FleetStep::ReadHold => {
                // Bounded by the request's deadline, as every wait for the fleet is.
                let give_up = guard.driver.give_up().map(|at| shared.clock.to_tokio(at));
                let hold = before(give_up, Box::pin(shared.fleet_hold())).await?.map(core_duration);
                let now = shared.clock.now();
                if let Some(hold) = guard.driver.handle_hold(now, hold, &mut guard.state) {
                    shared.announce_fleet_hold(hold);
                }
            }
            FleetStep::Sleep { until, wait } => Box::pin(shared.sleep_for_fleet(until, wait)).await,
            FleetStep::Fail(FleetFailure::DeadlineExceeded) => return Err(deadline_exceeded()),
            FleetStep::Fail(FleetFailure::HeldByFleet(hold)) => {
                return Err(Error::held_by_fleet(std_duration(hold)));
            }
            FleetStep::Fail(FleetFailure::NoSlot { waited }) => {
                return Err(Error::no_fleet_slot(waited, shared.driver.max_wait));
            }
            FleetStep::Authorize => match authorize(shared, guard, now) {
                Decision::Send(header, generation) => {
                    guard.driver.handle_sent();
                    return Ok(Authorized { header, generation, waited_for_token });
                }
                Decision::Fail(e) => return Err(e),
                Decision::Wait { until, reason, seen } => {
                    waited_for_token |= reason == WaitReason::Token;
                    // A token or breaker change since the answer: ask again. Later ones wake
                    // the wait.
                    let version = version.get_or_insert_with(|| shared.version.subscribe());
                    if *version.borrow_and_update() != seen {
                        continue;
                    }
                    // `Client::shutdown` sets its flag, then bumps the version: if the bump
                    // came before `seen` was read, the flag is set by now.
                    shared.open()?;
                    Box::pin(wait_locally(shared, guard, version, until, reason)).await
                }
            },
        }
    }
}

/// Asks the fleet's admission for the next attempt, in the request's turn at its priority
/// class's gate (see `Shared::admission_gates`), and hands the answer to the driver. The gate
/// and the store call are bounded by the request's deadline.
async fn ask_fleet(
    shared: &Shared,
    guard: &mut InFlight<'_>,
    within: Duration,
    claimed: bool,
) -> Result<(), Error> {
    let give_up = guard.driver.give_up().map(|at| shared.clock.to_tokio(at));
    let priority = guard.state.spec().priority;
    if guard.gate.is_none() {
        let class = Arc::clone(&shared.admission_gates[gate_index(priority)]);
        guard.gate = Some(before(give_up, class.lock_owned()).await?);
    }
    let admit = shared.fleet_admit(priority, guard.claim.filter(|_| claimed), std_duration(within));
    let answer = before(give_up, admit).await?.map(core_admission);
    let now = shared.clock.now();
    if let Some(hold) = guard.driver.handle_admission(now, answer, &mut guard.state) {
        shared.announce_fleet_hold(hold);
    }
    Ok(())
}

/// The session's answer for the next attempt, its events forwarded.
fn authorize(shared: &Shared, guard: &mut InFlight<'_>, now: Instant) -> Decision {
    let mut session = shared.lock();
    shared.refresh_wall_clock(&mut session, now);
    let SessionCell { core, header: cached, .. } = &mut *session;
    let decision = match core.authorize(now, &mut guard.state) {
        Authorize::Send { token, generation } => {
            guard.outstanding = true;
            // The token's header (built once per token), not a new one per request.
            let header = match cached {
                Some((cached, header)) if *cached == generation => header.clone(),
                _ => bearer(token),
            };
            Decision::Send(header, generation)
        }
        // Read under the lock that answered: every token or breaker change is made under it
        // and followed by a bump of the version (under it, in `Shared::sync_cache` and
        // `Shared::drain_with`; after it, where the token driver bumps it), so a change this
        // answer did not see bumps the version after this read. (`Client::shutdown`'s flag is
        // no session change: `authorized` looks at it again after comparing.)
        Authorize::Wait { until, reason } => {
            Decision::Wait { until, reason, seen: *shared.version.borrow() }
        }
        Authorize::Fail(e) => Decision::Fail(Error::naming_the_fleet(
            session.detail(e),
            now,
            guard.driver.fleet_wait_until(),
        )),
    };
    shared.drain(&mut session);
    decision
}

/// Sleeps as the driver says after the session's `Wait`, or until a token or breaker change.
async fn wait_locally(
    shared: &Shared,
    guard: &mut InFlight<'_>,
    version: &mut watch::Receiver<u64>,
    until: Option<Instant>,
    reason: WaitReason,
) {
    let now = shared.clock.now();
    let wake = guard.driver.handle_wait(now, until, reason, &mut guard.state);
    let wait = until.map(|at| shared.clock.until(at));
    shared.emit(|| ClientEvent::Wait { reason, wait });
    if wake.kick_token_driver {
        shared.kick.notify_one();
    }
    tokio::select! {
        _ = tokio::time::sleep_until(shared.clock.to_tokio(wake.at)) => {}
        _ = version.changed() => {}
    }
}

/// An attempt's outcome: the response (with the first bytes of an error body, read to
/// classify it), or the transport's failure.
type Outcome = Result<(reqwest::Response, Option<ReadBody>), (TransportKind, BoxError)>;

/// The session's verdict on one attempt's `outcome` (its events forwarded, its rate-limit
/// facts reported to the fleet); the outcome stays where it is, for [`deliver`].
fn judge(
    shared: &Arc<Shared>,
    guard: &mut InFlight<'_>,
    outcome: &Outcome,
) -> Result<Verdict, Error> {
    let now = shared.clock.now();
    let mut session = shared.lock();
    // The requests sent in the lane count before the verdict (the retry budget's deposits).
    shared.settle_lane(&mut session);
    // The session hears this attempt's outcome now: nothing is left to abandon on drop.
    guard.outstanding = false;
    let state = &mut guard.state;
    match outcome {
        Ok((response, body)) => {
            let status = response.status().as_u16();
            let headers = HeaderMapRef(response.headers());
            let read = body.as_ref().map_or(&b""[..], |b| &b.read[..]);
            let verdict = session.handle_response(now, state, status, &headers, read);
            let mut report = ResponseReport::default();
            report.handle_verdict(&verdict);
            let verdict = failed(&mut session, verdict);
            // Only a token event (a 401 invalidated the token) changes what the cache holds.
            if shared.drain_with(&mut session, |event| report.handle_event(now, event)) {
                shared.sync_cache(&mut session, now);
            } else {
                shared.sync_lane(&mut session, now);
            }
            drop(session);
            Shared::fleet_report(shared, now, response.headers(), report.rate_limited());
            verdict
        }
        Err((kind, _)) => {
            let verdict = session.handle_transport_error(now, state, *kind);
            let verdict = failed(&mut session, verdict);
            shared.drain(&mut session);
            shared.sync_lane(&mut session, now);
            verdict
        }
    }
}

/// Whether `outcome`, the answer to an attempt sent in the lane `cell`, needs no verdict: an
/// answer the lane calls plain (its body unread: a 1xx–3xx status), while the lane still
/// holds.
fn answered_plainly(cell: &LaneCell, outcome: &Outcome) -> bool {
    match outcome {
        Ok((response, None)) => {
            let headers = HeaderMapRef(response.headers());
            cell.lane.answered_plainly(response.status().as_u16(), &headers) && cell.holds()
        }
        _ => false,
    }
}

/// What the caller gets of `outcome` if the verdict on it is final: the response whole (the
/// error body's first bytes put back), or the transport's failure named by `label`.
#[inline]
fn deliver(outcome: Outcome, label: &str) -> Result<reqwest::Response, Error> {
    match outcome {
        Ok((response, None)) => Ok(response),
        Ok((response, Some(body))) => Ok(rebuild(response, body)),
        Err((_, error)) => Err(transport_failed(label, error)),
    }
}

/// A transport failure of the request `label` names.
#[cold]
fn transport_failed(label: &str, error: BoxError) -> Error {
    Error::transport_boxed(format!("{label} failed"), without_url(error))
}

/// `error` without the request's URL where it is reqwest's: its text ends `for url (…)`, the
/// query included (which may carry a key or a signature), and the label names the request.
pub(crate) fn without_url(error: BoxError) -> BoxError {
    match error.downcast::<reqwest::Error>() {
        Ok(error) => Box::new(error.without_url()),
        Err(other) => other,
    }
}

/// A failing `verdict` as the adapter's error, with what the server said about it (read from
/// the session under the lock that decided it, before another request's failure replaces it).
fn failed(session: &mut SessionCell, verdict: Verdict) -> Result<Verdict, Error> {
    match verdict {
        Verdict::Fail(e) => Err(session.detail(e).into()),
        other => Ok(other),
    }
}

/// An attempt the session authorized: its `Authorization` header, the token's generation,
/// and whether the request waited for that token (a refresh) first.
struct Authorized {
    header: HeaderValue,
    generation: Generation,
    waited_for_token: bool,
}

/// The session's answer for the next attempt.
enum Decision {
    Send(HeaderValue, Generation),
    /// Wait until `until` (or a change) for `reason`; `seen` is the version of token and
    /// breaker changes the answer saw.
    Wait {
        until: Option<Instant>,
        reason: WaitReason,
        seen: u64,
    },
    Fail(Error),
}

/// The fleet's answer in the core's terms: its waits rounded up to the millisecond, so that
/// a request does not wake before the instant the fleet named (and ask again in vain).
fn core_admission(answer: Admission) -> CoreAdmission {
    let ceil = |wait: StdDuration| {
        let ms = core_duration(wait);
        if wait.subsec_nanos().is_multiple_of(1_000_000) {
            ms
        } else {
            ms.saturating_add(Duration::from_millis(1))
        }
    };
    match answer {
        Admission::Now => CoreAdmission::Now,
        Admission::After(wait) => CoreAdmission::After(ceil(wait)),
        Admission::Wait(wait) => CoreAdmission::Wait(ceil(wait)),
        Admission::Held(hold) => CoreAdmission::Held(ceil(hold)),
    }
}

/// Holds a request's core state and its fleet driver; if the caller drops the future
/// mid-attempt, the session is told (so a breaker probe is released).
struct InFlight<'a> {
    shared: &'a Shared,
    state: RequestState,
    driver: RequestDriver,
    /// The fleet link's ticket when the request began and found the store usable: its first
    /// question is asked on it if the link has not changed since.
    claim: Option<CallTicket>,
    /// This request's turn at the fleet's admission (see `Shared::admission_gates`), held
    /// while the driver says so.
    gate: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// An attempt was authorized and the session has not heard its outcome: dropping the
    /// request now abandons it (releasing a breaker probe). Without one, dropping needs
    /// neither the clock nor the session's lock.
    outstanding: bool,
    /// When the request began, until its first authorization takes it as its `now` (nothing
    /// happened in between: one read of the clock for both).
    begun: Option<Instant>,
}

impl<'a> InFlight<'a> {
    /// Begins the request `spec` describes in the session, its deadline `deadline` from now.
    ///
    /// In a fleet the shared budget admits each attempt with the request's priority, and the
    /// session is told so (`set_externally_paced`): it then holds the attempt back only for
    /// 429 waits and exhausted windows, not for its own spacing and reserves, which know only
    /// this process's sends. An attempt the fleet cannot admit (the store failed, or its wait
    /// is longer than the retry policy accepts) is paced locally at the request's priority,
    /// which the session always keeps. While degraded, a request whose probe is due asks the
    /// fleet (and rejoins it).
    fn begin(shared: &'a Shared, mut spec: RequestSpec, deadline: Option<StdDuration>) -> Self {
        let now = shared.clock.now();
        spec.deadline = deadline.map(|d| now.saturating_add(core_duration(d)));
        let claim = shared.fleet.as_ref().and_then(FleetLink::claim);
        let driver = RequestDriver::new(shared.driver, spec.deadline, claim.is_some());
        // (The lane's requests are reported before the session judges an answer, in `judge`:
        // beginning and authorizing a request to the API host, the only host this client
        // sends to, read nothing they count.)
        let state = shared.lock().begin(now, spec);
        InFlight { shared, state, driver, claim, gate: None, outstanding: false, begun: Some(now) }
    }

    /// A request whose first attempt is sent in the session's lane, in the state `begin` and
    /// `authorize` would have left it (`state`). Not in fleet mode (no lane there), and
    /// without a deadline: its driver asks no fleet and has nothing to give up at.
    fn in_lane(shared: &'a Shared, state: RequestState) -> Self {
        let driver = RequestDriver::new(shared.driver, None, false);
        // Nothing to abandon if dropped: a closed breaker's admission holds no probe.
        InFlight { shared, state, driver, claim: None, gate: None, outstanding: false, begun: None }
    }
}

/// What the session knows of `request`, sent to `host` (its deadline is set when it begins).
fn request_spec(request: &reqwest::Request, options: RequestOptions, host: HostKey) -> RequestSpec {
    RequestSpec {
        method: CoreMethod::from_name(request.method().as_str()),
        idempotent: options.idempotent,
        priority: options.priority,
        deadline: None,
        host,
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.outstanding {
            return;
        }
        let now = self.shared.clock.now();
        let mut session = self.shared.lock();
        session.abandon(now, &mut self.state);
    }
}

/// The `Authorization` header for `token`: `Bearer` and the token in a buffer that is wiped
/// when the last copy of the header is dropped (see [`header_over`]).
pub(super) fn bearer<const N: usize, S: TokenStorage>(token: &AccessToken<N, S>) -> HeaderValue {
    let token = token.as_str().as_bytes();
    // Sized exactly: growing would leave a copy behind in the buffer it moved from.
    let mut value = Zeroizing::new(Vec::with_capacity(b"Bearer ".len() + token.len()));
    value.extend_from_slice(b"Bearer ");
    value.extend_from_slice(token);
    header_over(value)
}

/// A sensitive header value whose bytes are `owner`'s own: every clone of it (the cached
/// header, each request's, a [`Token`](crate::Token)'s) shares them, and `owner` is dropped
/// with the last one, so a wiping owner wipes them then. (A header made from a string would
/// copy them into a buffer of its own, freed unwiped.) What the HTTP stack copies when it
/// writes the request (hyper's write buffer) is beyond this.
pub(super) fn header_over<O: AsRef<[u8]> + Send + 'static>(owner: O) -> HeaderValue {
    // The core only accepts visible ASCII tokens, so this cannot fail; fall back to an empty
    // (rejected) header rather than panicking.
    let mut header = HeaderValue::from_maybe_shared(Bytes::from_owner(owner))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    header.set_sensitive(true);
    header
}

/// A transport failure's cause, boxed (a reqwest error, or a middleware's).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The first bytes of an error body, read to classify it.
struct ReadBody {
    /// At most the limit's worth: what the session classifies.
    read: Bytes,
    /// The part of the last chunk past the limit, if the body went on: the response handed to
    /// the caller carries it, then the rest of the body.
    more: Option<Bytes>,
}

/// Whether the session needs the first bytes of `response`'s body for its verdict: a success's
/// or a redirect's is never read.
fn read_for_verdict(response: &reqwest::Response) -> bool {
    !(response.status().is_success() || response.status().is_redirection())
}

/// Reads the first `limit` bytes of an answer's body, to classify it; the rest stays for the
/// caller (see [`rebuild`]).
async fn read_error_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(reqwest::Response, Option<ReadBody>), (TransportKind, BoxError)> {
    let mut body = Vec::new();
    let more = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(chunk.get(..room).unwrap_or_default());
                    break Some(chunk.slice(room..));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break None,
            Err(e) => return Err((transport_kind(&e), Box::new(e))),
        }
    };
    Ok((response, Some(ReadBody { read: Bytes::from(body), more })))
}

pub(crate) fn transport_kind(e: &reqwest::Error) -> TransportKind {
    if e.is_connect() {
        TransportKind::Connect
    } else if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_request() || e.is_body() || e.is_decode() {
        TransportKind::Reset
    } else {
        TransportKind::Other
    }
}

/// A response whose body was read for classification, rebuilt so the caller can still read
/// all of it: what was read, then (a body longer than the limit) the rest as it comes.
fn rebuild(response: reqwest::Response, body: ReadBody) -> reqwest::Response {
    let ReadBody { read, more } = body;
    let url = response.url().clone();
    let (parts, rest) = http::Response::<reqwest::Body>::from(response).into_parts();
    let body = match more {
        None => reqwest::Body::from(read),
        Some(more) => reqwest::Body::wrap(Resumed { read: [Some(read), Some(more)], rest }),
    };
    let mut builder = http::Response::builder().status(parts.status).version(parts.version);
    if let Some(headers) = builder.headers_mut() {
        *headers = parts.headers;
    }
    if let Some(extensions) = builder.extensions_mut() {
        extensions.extend(parts.extensions);
    }
    match reqwest::ResponseBuilderExt::url(builder, url).body(body) {
        Ok(rebuilt) => reqwest::Response::from(rebuilt),
        // Status, version and headers come from a response: the builder cannot refuse them.
        Err(e) => unreachable_response(e),
    }
}

#[cold]
fn unreachable_response(e: http::Error) -> reqwest::Response {
    warn!(error = %e, "could not rebuild a response");
    reqwest::Response::from(http::Response::new(reqwest::Body::from(Bytes::new())))
}

/// A response body whose first bytes were read already: those, then the rest as it comes.
struct Resumed {
    read: [Option<Bytes>; 2],
    rest: reqwest::Body,
}

impl http_body::Body for Resumed {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, reqwest::Error>>> {
        let this = self.get_mut();
        if let Some(bytes) = this.read.iter_mut().find_map(Option::take) {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes))));
        }
        std::pin::Pin::new(&mut this.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.iter().all(Option::is_none) && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let read = self.read.iter().flatten().map(|b| b.len() as u64).sum::<u64>();
        let rest = self.rest.size_hint();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(read));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(read));
        }
        hint
    }
}

/// The core's header access over a reqwest header map.
pub(super) struct HeaderMapRef<'a>(pub(super) &'a HeaderMap);

impl Headers for HeaderMapRef<'_> {
    /// The first value of header `name`. The session asks for up to a dozen names of a
    /// response with rate-limit fields, most of them absent; in a map of a few headers (the
    /// common API response), comparing names in place beats parsing and hashing each asked
    /// name. Names are stored lowercase.
    fn get(&self, name: &str) -> Option<&[u8]> {
        // Values, not names: a name repeated many times must not make each scan long.
        const SCAN: usize = 12;
        if self.0.len() <= SCAN {
            // The first value met with the name is its first (a name's values follow it in
            // order): no second look-up, hashed, for the value of the name that matched.
            let mut fields = self.0.iter();
            let (_, value) = fields.find(|(have, _)| have.as_str().eq_ignore_ascii_case(name))?;
            return Some(value.as_bytes());
        }
        self.0.get(name).map(HeaderValue::as_bytes)
    }

    /// One pass over the names (each once, however often repeated): lets the session judge
    /// an ordinary response without asking for every rate-limit field by name.
    fn any_name(&self, matches: fn(&str) -> bool) -> Option<bool> {
        Some(self.0.keys().any(|name| matches(name.as_str())))
    }
}

/// The index of `priority`'s admission gate.
fn gate_index(priority: Priority) -> usize {
    match priority {
        Priority::Critical => 0,
        Priority::Normal => 1,
        Priority::Background => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan over a small map answers as `HeaderMap::get` does: the first value of a
    /// repeated header, any case in the asked name, `None` for an absent one; and so does a
    /// map too large to scan.
    #[test]
    fn header_lookup_matches_header_map_get() {
        for extra in [0, 20] {
            let mut map = HeaderMap::new();
            map.append("date", HeaderValue::from_static("Sun, 06 Dec 2026 09:00:00 GMT"));
            map.append("x-request-id", HeaderValue::from_static("first"));
            map.append("x-request-id", HeaderValue::from_static("second"));
            for i in 0..extra {
                let name =
                    reqwest::header::HeaderName::from_bytes(format!("x-filler-{i}").as_bytes())
                        .expect("name");
                map.append(name, HeaderValue::from_static("1"));
            }
            let headers = HeaderMapRef(&map);
            for name in
                ["date", "Date", "x-request-id", "X-Request-Id", "retry-after", "x-filler-3"]
            {
                assert_eq!(headers.get(name), map.get(name).map(HeaderValue::as_bytes), "{name}");
            }
            assert_eq!(headers.get("x-request-id"), Some(&b"first"[..]));
        }
    }

    /// The bearer header's bytes are its owner's, shared by its clones and a request's copy,
    /// and the owner goes (wiping them, for `bearer`'s) with the last of them, not before.
    #[test]
    fn the_bearer_header_keeps_its_owner_until_its_last_copy_is_dropped() {
        struct Owner(Vec<u8>, Arc<std::sync::atomic::AtomicBool>);
        impl AsRef<[u8]> for Owner {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
        impl Drop for Owner {
            fn drop(&mut self) {
                self.1.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let header = header_over(Owner(b"Bearer abc".to_vec(), Arc::clone(&dropped)));
        assert_eq!(header.as_bytes(), b"Bearer abc");
        assert!(header.is_sensitive());
        let mut request =
            reqwest::Request::new(reqwest::Method::GET, "https://api.invalid/".parse().unwrap());
        request.headers_mut().insert(AUTHORIZATION, header.clone());
        let copy = replay(&request).expect("no body: replayable");
        drop((header, request));
        assert!(!dropped.load(std::sync::atomic::Ordering::SeqCst), "a copy still uses it");
        drop(copy);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));

        let token = AccessToken::<64>::new("abc").expect("token");
        assert_eq!(bearer(&token).as_bytes(), b"Bearer abc");
    }

    /// A request that fails in transport (a 127.0.0.1 port that refuses connections) is named
    /// by its label, not its URL: reqwest's error text ends `for url (…)`, the query included
    /// (which may carry a key). Neither the error's `Display` and `Debug` nor its sources'
    /// show the URL; nor those of an error wrapped with `Error::from_reqwest`.
    #[tokio::test]
    async fn a_transport_failure_does_not_show_the_requests_url() {
        let refused = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
            listener.local_addr().expect("its address").port()
        };
        let url = format!("http://127.0.0.1:{refused}/api/v2/users?secret=x");
        let http = crate::Transport::new().expect("transport").api_client().clone();
        let failure = || async { http.get(&url).send().await.expect_err("refused") };
        let shown = |error: &Error| {
            let mut shown = format!("{error} | {error:?}");
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                shown.push_str(&format!(" | {cause} | {cause:?}"));
                source = cause.source();
            }
            shown
        };
        let error = transport_failed("GET /api/v2/users", Box::new(failure().await));
        let text = shown(&error);
        assert!(text.starts_with("GET /api/v2/users failed: "), "{text}");
        // (hyper's connect error names the peer's address, but no path or query.)
        for hidden in ["secret=x", "/api/v2/users?", "for url"] {
            assert!(!text.contains(hidden), "{hidden} in {text}");
        }
        let error = Error::from_reqwest("sending", failure().await);
        let text = shown(&error);
        assert!(!text.contains("secret=x"), "{text}");
    }

    /// A request without a body is copied as reqwest's `try_clone` copies it: method, URL,
    /// headers (repeated ones in order, sensitive ones still sensitive), version and timeout;
    /// one with a body goes through `try_clone` itself (a stream cannot be copied).
    #[test]
    fn replay_copies_what_try_clone_copies() {
        let http = crate::Transport::new().expect("transport").api_client().clone();
        let url = "http://127.0.0.1:9/api/v2/users?page=2&q=x%20y";
        let requests = [
            http.get(url).build(),
            http.delete(url)
                .timeout(StdDuration::from_millis(1500))
                .version(reqwest::Version::HTTP_2)
                .header("x-a", "1")
                .header("x-a", "2")
                .bearer_auth("not-a-real-token")
                .build(),
            http.post(url).body("{}").timeout(StdDuration::from_secs(3)).build(),
        ];
        for request in requests {
            let request = request.expect("request");
            let ours = replay(&request).expect("replayable");
            let theirs = request.try_clone().expect("replayable");
            assert_eq!(ours.method(), theirs.method());
            assert_eq!(ours.url(), theirs.url());
            assert_eq!(ours.version(), theirs.version());
            assert_eq!(ours.timeout(), theirs.timeout());
            let headers = |r: &reqwest::Request| {
                r.headers()
                    .iter()
                    .map(|(n, v)| (n.clone(), v.clone(), v.is_sensitive()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(headers(&ours), headers(&theirs));
            assert_eq!(
                ours.body().and_then(reqwest::Body::as_bytes),
                theirs.body().and_then(reqwest::Body::as_bytes)
            );
        }
        let stream = reqwest::Body::wrap(http_body_util::Empty::<Bytes>::new());
        let request = http.post(url).body(stream).build().expect("request");
        assert!(replay(&request).is_none(), "a stream is not replayable");
    }

    /// The pass over the names sees every name the map holds, and only those.
    #[test]
    fn any_name_sees_each_name_in_the_map() {
        let mut map = HeaderMap::new();
        map.append("date", HeaderValue::from_static("Sun, 06 Dec 2026 09:00:00 GMT"));
        map.append("x-ratelimit-reset", HeaderValue::from_static("1"));
        map.append("x-ratelimit-reset", HeaderValue::from_static("2"));
        let headers = HeaderMapRef(&map);
        assert_eq!(headers.any_name(|n| n == "x-ratelimit-reset"), Some(true));
        assert_eq!(headers.any_name(|n| n == "date"), Some(true));
        assert_eq!(headers.any_name(|n| n == "retry-after"), Some(false));
        assert_eq!(HeaderMapRef(&HeaderMap::new()).any_name(|_| true), Some(false));
    }
}
