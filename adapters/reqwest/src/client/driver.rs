//! The token driver: sends token requests when the session says so, in fleet mode after asking
//! the fleet (as the core's [`TokenDriver`] decides), sleeps until the next deadline, and
//! publishes tokens.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration as StdDuration;

use bytes::Bytes;
use credflow_core::Instant;
use credflow_core::fleet::{LeaseEnd, Peek, TokenDriver};
use credflow_core::lifecycle::{Generation, Ticket};
use credflow_core::oauth::TokenRequest;
use credflow_core::retry::policy::TransportKind;
use credflow_core::secret::Fingerprint;
use credflow_core::session::RestoreError;
use reqwest::header::{HeaderMap, HeaderValue};
use tracing::{Instrument, debug, warn};
use zeroize::Zeroizing;

use super::send::{HeaderMapRef, header_over, transport_kind};
use super::{ClientEvent, CoreSession, SessionToken, Shared, locked};
use crate::shared::{FleetLink, Lease, Refresh, SharedToken};

/// An owned copy of the core's token request, so the session lock is not held across I/O.
struct OwnedTokenRequest {
    url: String,
    headers: Vec<(&'static str, Zeroizing<String>)>,
    body: Zeroizing<String>,
}

impl OwnedTokenRequest {
    fn from(request: &TokenRequest<'_>) -> Self {
        let url = format!("{}://{}{}", request.scheme.as_str(), request.host, request.path);
        let headers = request
            .headers()
            .filter(|(name, _)| !matches!(*name, "Host" | "Content-Length"))
            .map(|(name, value)| (name, Zeroizing::new(value.to_owned())))
            .collect();
        OwnedTokenRequest { url, headers, body: Zeroizing::new(request.body.to_owned()) }
    }
}

/// The token driver: sends token requests when the session says so, sleeps until the next
/// deadline, and publishes tokens. Runs until the last [`Client`](crate::Client) is dropped, or
/// [`Client::shutdown`](crate::Client::shutdown).
pub(super) async fn drive(shared: Arc<Shared>) {
    let mut fleet = TokenDriver::new(&shared.driver);
    // When to let the last token request's span close (see `FETCH_SPAN_LINGER`).
    let mut close_fetch_span = None;
    loop {
        if close_fetch_span.is_some_and(|at| at <= tokio::time::Instant::now()) {
            locked(&shared.last_fetch).take();
            close_fetch_span = None;
        }
        match poll_request(&shared, &mut fleet) {
            Some((ticket, request)) => {
                refresh(&shared, &mut fleet, ticket, request).await;
                close_fetch_span = Some(tokio::time::Instant::now() + FETCH_SPAN_LINGER);
            }
            None => idle(&shared, &mut fleet, close_fetch_span).await,
        }
    }
}

/// How long a token request's span stays open after its answer, for the requests that waited
/// for it to link to (they wake as the token is published, within milliseconds). A span is
/// exported when it closes: it must not wait for the next token request, an hour later.
const FETCH_SPAN_LINGER: StdDuration = StdDuration::from_secs(1);

/// The token request the session wants sent now, if any (an owned copy: the lock is not held
/// across I/O); tells `fleet` which token the session holds.
fn poll_request(shared: &Shared, fleet: &mut TokenDriver) -> Option<(Ticket, OwnedTokenRequest)> {
    let now = shared.clock.now();
    let mut session = shared.lock();
    session.set_wall_clock(shared.clock.wall(now));
    fleet.handle_held(session.token(now).map(|(token, _)| token.fingerprint()));
    // The encoding buffer exists only while a request is encoded (once per token), not for the
    // client's life: a process holding a client per tenant would keep one each.
    let due = session.lifecycle().next_request_at().is_some_and(|at| at <= now);
    let outgoing =
        due.then(|| Zeroizing::new(vec![0u8; TOKEN_REQUEST_BUFFER])).and_then(|mut buf| {
            // `buf` holds the credentials; it is wiped when dropped, at the end of this closure.
            match session.poll_token_request(now, &mut buf) {
                Ok(Some((ticket, request))) => Some((ticket, OwnedTokenRequest::from(&request))),
                Ok(None) => None,
                Err(e) => {
                    warn!(error = %e, "cannot encode the token request; check the configuration");
                    None
                }
            }
        });
    shared.drain(&mut session);
    outgoing
}

/// Room to encode a token request (its head and body, a `client_secret_jwt` assertion).
const TOKEN_REQUEST_BUFFER: usize = 16 * 1024;

/// Gets a token for `ticket`: in fleet mode the fleet's (another process's), else by sending
/// `request`, under the fleet's lease if it granted one.
async fn refresh(
    shared: &Arc<Shared>,
    tokens: &mut TokenDriver,
    ticket: Ticket,
    request: OwnedTokenRequest,
) {
    let mut lease = None;
    if let Some(fleet) = shared.fleet.as_ref().filter(|f| f.usable()) {
        let refresh = fleet.store.refresh(&fleet.scope, tokens.exclude());
        let (result, transition) = fleet.call(shared.token_wait, refresh).await;
        shared.fleet_transition(transition, result.as_ref().err());
        match result {
            Ok(Refresh::Token(token)) if tokens.handle_offer(fingerprint(&token)) => {
                // Refused (too close to expiry, unusable): ask for another, or take the lease
                // and refresh.
                match install_shared(shared, ticket, &token) {
                    Some(refused) => tokens.handle_refused(refused),
                    None => tokens.handle_taken(fingerprint(&token)),
                }
                return;
            }
            Ok(Refresh::Token(_)) => {
                debug!("the fleet handed back the token it was told not to: fetching locally")
            }
            Ok(Refresh::Lease(granted)) => lease = Some(HeldLease::new(shared, granted)),
            Err(error) => debug!(%error, "fleet refresh failed: fetching locally"),
        }
    }
    shared.emit(|| ClientEvent::TokenRequest);
    let span = fetch_span(&request.url, lease.is_some());
    // Requests that wait for this token link to this span (`follows_from`).
    *locked(&shared.last_fetch) = Some(span.clone());
    let result = send_token_request(shared, request).instrument(span.clone()).await;
    let failed = record_answer(&span, &result);
    // A connection that never reached the token endpoint taught the fleet nothing: let
    // another pod try at once rather than wait for the lease to expire.
    let reached = !matches!(result, Err(TransportKind::Connect));
    let fresh = handle_token_answer(shared, ticket, result);
    match shared.cached_generation().filter(|_| fresh.is_some()) {
        Some(generation) => {
            span.record("credflow.token.generation", generation.0);
        }
        // A 2xx that is no usable token (the session's events say why).
        None if !failed => {
            span.record("error.type", "invalid_token_response");
        }
        None => {}
    }
    // Waiters also watch for failures (to give up early on a rejection).
    shared.version.send_modify(|v| *v = v.wrapping_add(1));
    let end = tokens.handle_token_answer(fresh.is_some(), reached);
    if let (Some(lease), Some(fleet)) = (lease, shared.fleet.as_ref()) {
        publish(shared, fleet, lease, fresh, end).await;
    }
}

/// The span of one token request, with OpenTelemetry's HTTP client fields (`server.address`
/// and `server.port` of the token URL, never its query) and credflow's: whether it went under
/// the fleet's lease; the status, `error.type` and the token's generation are recorded as they
/// are known. Never the credentials, nor the token.
fn fetch_span(url: &str, under_lease: bool) -> tracing::Span {
    let url = reqwest::Url::parse(url).ok();
    let host = url.as_ref().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let port = url.as_ref().and_then(reqwest::Url::port_or_known_default);
    tracing::info_span!(
        "credflow.token_fetch",
        "http.request.method" = "POST",
        "server.address" = %host,
        "server.port" = port,
        "http.response.status_code" = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        "credflow.token.generation" = tracing::field::Empty,
        "credflow.fleet.lease" = under_lease,
    )
}

/// Records the token endpoint's status, or the transport failure, on the fetch's span;
/// returns whether it recorded an `error.type`.
fn record_answer(span: &tracing::Span, result: &Result<TokenAnswer, TransportKind>) -> bool {
    match result {
        Ok(TokenAnswer::Read { status, .. }) | Ok(TokenAnswer::TooLarge { status, .. }) => {
            span.record("http.response.status_code", status);
            if *status >= 400 {
                span.record("error.type", status.to_string());
            } else if matches!(result, Ok(TokenAnswer::TooLarge { .. })) {
                span.record("error.type", "response_too_large");
            } else {
                return false;
            }
        }
        Err(kind) => {
            span.record("error.type", super::send::error_type(*kind));
        }
    }
    true
}

/// Hands the token endpoint's answer to the session; returns the token it obtained, if any,
/// as the fleet shares it (only a token this request obtained goes to the fleet).
fn handle_token_answer(
    shared: &Shared,
    ticket: Ticket,
    result: Result<TokenAnswer, TransportKind>,
) -> Option<SharedToken> {
    let now = shared.clock.now();
    let mut session = shared.lock();
    let before = session.token(now).map(|(_, times)| times.generation);
    match result {
        Ok(TokenAnswer::Read { status, headers, body }) => {
            session.handle_token_response(now, ticket, status, &HeaderMapRef(&headers), &body)
        }
        Ok(TokenAnswer::TooLarge { status, headers }) => session.handle_token_too_large(
            now,
            ticket,
            status,
            &HeaderMapRef(&headers),
            // A limit past 4 GiB is named as 4 GiB: still true of the body.
            u32::try_from(shared.max_response_body).unwrap_or(u32::MAX),
        ),
        Err(kind) => session.handle_token_error(now, ticket, Some(kind)),
    }
    shared.settle(&mut session, now);
    let (token, times) = session.token(now).filter(|(_, t)| Some(t.generation) != before)?;
    Some(SharedToken {
        token: Zeroizing::new(token.as_str().to_owned()),
        expires_at: shared.clock.wall(now).wall_at(times.expires_at),
    })
}

/// Sleeps until the session's next deadline (and lets it act then), or a kick; with no token
/// and none allowed yet (backoff, or an open breaker after an outage), reads the fleet's
/// token when the driver says, as another process may have one.
///
/// Wakes at `close_fetch_span` too, if set, for the driver to let that span close.
async fn idle(
    shared: &Shared,
    tokens: &mut TokenDriver,
    close_fetch_span: Option<tokio::time::Instant>,
) {
    let now = shared.clock.now();
    let (next, tokenless) = {
        let mut session = shared.lock();
        shared.sync_cache(&mut session, now);
        let tokenless = session.token(now).is_none() && !session.lifecycle().in_flight();
        (session.poll_timeout(), tokenless)
    };
    let due = next.map(|(at, _)| shared.clock.to_tokio(at));
    let mut sleep =
        due.unwrap_or_else(|| tokio::time::Instant::now() + StdDuration::from_secs(3600));
    if let Some(at) = close_fetch_span {
        sleep = sleep.min(at);
    }
    if shared.fleet.is_some() {
        match tokens.poll_peek(now, tokenless) {
            Peek::Due => return adopt_fleet_token(shared, tokens).await,
            Peek::At(at) => sleep = sleep.min(shared.clock.to_tokio(at)),
            Peek::Off => {}
        }
    }
    tokio::select! {
        _ = tokio::time::sleep_until(sleep) => {
            // A deadline of the session's (not only a peek's): let it act, and let waiting
            // requests look again.
            if due.is_some_and(|at| at <= tokio::time::Instant::now()) {
                {
                    let now = shared.clock.now();
                    let mut session = shared.lock();
                    session.handle_timeout(now);
                    shared.settle(&mut session, now);
                }
                shared.version.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
        _ = shared.kick.notified() => {}
    }
}

/// The fingerprint the fleet's token is known by.
fn fingerprint(token: &SharedToken) -> Fingerprint {
    Fingerprint::of_token(token.token.as_bytes())
}

/// Takes the fleet's token (other than the one `tokens` excludes) into a session that has none
/// and may not request one yet; see [`SharedStore::current`](crate::shared::SharedStore::current). A token it cannot take
/// (unusable, or too close to expiry) is not to be offered again.
async fn adopt_fleet_token(shared: &Shared, tokens: &mut TokenDriver) {
    let Some(fleet) = shared.fleet.as_ref().filter(|f| f.usable()) else { return };
    let (result, transition) =
        fleet.call(fleet.call_timeout, fleet.store.current(&fleet.scope, tokens.exclude())).await;
    shared.fleet_transition(transition, result.as_ref().err());
    let Some(token) = result.ok().flatten() else { return };
    if !tokens.handle_offer(fingerprint(&token)) {
        return;
    }
    let refused = offer_fleet_token(
        shared,
        &token,
        |session, now, value| {
            session.adopt_shared(now, value, token.expires_at).inspect(|_| {
                debug!("took the fleet's token while held back from requesting one");
            })
        },
        |_, _| {},
    );
    match refused {
        Some(refused) => tokens.handle_refused(refused),
        None => tokens.handle_taken(fingerprint(&token)),
    }
}

/// Installs a token the fleet shared for `ticket`. Returns the token's fingerprint if the session
/// refused it (too close to expiry, unusable), so that the fleet is asked for another.
fn install_shared(
    shared: &Shared,
    ticket: credflow_core::lifecycle::Ticket,
    token: &SharedToken,
) -> Option<Fingerprint> {
    offer_fleet_token(
        shared,
        token,
        |session, now, value| session.handle_token_shared(now, ticket, value, token.expires_at),
        // Released as abandoned (a backoff only from the second in a row): the next round asks
        // the fleet for a token other than this one, or for the lease (never this one again:
        // no loop on a bad entry).
        |session, now| session.handle_token_error(now, ticket, None),
    )
}

/// Offers the fleet's `token` to the session: `take` installs it; `unusable` runs when it is
/// not a token this process can hold. Returns the fingerprint of a token not taken (refused,
/// or unusable), which is not to be offered again.
fn offer_fleet_token(
    shared: &Shared,
    token: &SharedToken,
    take: impl FnOnce(&mut CoreSession, Instant, SessionToken) -> Result<Generation, RestoreError>,
    unusable: impl FnOnce(&mut CoreSession, Instant),
) -> Option<Fingerprint> {
    let now = shared.clock.now();
    let mut session = shared.lock();
    session.set_wall_clock(shared.clock.wall(now));
    let refused = match SessionToken::new(&token.token) {
        Ok(value) => {
            let fingerprint = value.fingerprint();
            match take(&mut session, now, value) {
                Ok(_) => None,
                Err(error) => {
                    debug!(%error, "fleet token not taken");
                    Some(fingerprint)
                }
            }
        }
        Err(error) => {
            warn!(%error, "fleet token unusable");
            unusable(&mut session, now);
            Some(Fingerprint::of_token(token.token.as_bytes()))
        }
    };
    shared.settle(&mut session, now);
    refused
}

/// Settles the lease the token request went under, as the driver decided (`end`): publishes
/// the token obtained, releases the lease, or keeps it until it expires (the fleet's back-off).
async fn publish(
    shared: &Shared,
    fleet: &FleetLink,
    mut held: HeldLease,
    fresh: Option<SharedToken>,
    end: LeaseEnd,
) {
    let Some(lease) = held.lease.clone() else { return };
    let (result, transition) = match (end, &fresh) {
        (LeaseEnd::Publish, Some(token)) => {
            fleet.call(fleet.call_timeout, fleet.store.publish(&fleet.scope, lease, token)).await
        }
        (LeaseEnd::Release, _) => {
            let (result, transition) =
                fleet.call(fleet.call_timeout, fleet.store.release(&fleet.scope, lease)).await;
            (result.map(|()| false), transition)
        }
        _ => {
            held.keep();
            return;
        }
    };
    // Published or released (or failed, and then not ours to retry): no longer the guard's.
    held.keep();
    shared.fleet_transition(transition, result.as_ref().err());
    match result {
        Ok(true) => debug!("token published to the fleet"),
        Ok(false) => debug!("lease expired before the token came: not published"),
        Err(error) => debug!(%error, "token not published"),
    }
}

/// Fleet mode: the refresh lease this process holds while its token request is out. If the
/// driver stops before it is settled (the last [`Client`](crate::Client) dropped, or [`Client::shutdown`](crate::Client::shutdown)),
/// dropping the guard gives the lease back with the store's fence-checked release, so that the
/// next process's refresh does not wait `lease_ttl` for nobody: on the tokio runtime, bounded
/// by the store call timeout, or, during `shutdown`, by `shutdown` itself (which awaits it).
/// Releasing after a publish, or after the lease expired and another process took it, is
/// harmless: the release deletes the lease only if it still holds this fence.
pub(super) struct HeldLease {
    shared: Arc<Shared>,
    lease: Option<Lease>,
}

impl HeldLease {
    pub(super) fn new(shared: &Arc<Shared>, lease: Lease) -> Self {
        HeldLease { shared: Arc::clone(shared), lease: Some(lease) }
    }

    /// Settled: published, released, or kept on purpose until it expires (the fleet's
    /// back-off after a failed token request).
    fn keep(&mut self) {
        self.lease = None;
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else { return };
        if self.shared.closing.load(Ordering::SeqCst) {
            *locked(&self.shared.left_lease) = Some(lease);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            debug!("no tokio runtime to release the fleet's refresh lease; it expires on its own");
            return;
        };
        let shared = Arc::clone(&self.shared);
        runtime.spawn(async move {
            let Some(fleet) = shared.fleet.as_ref() else { return };
            let release = fleet.store.release(&fleet.scope, lease);
            match tokio::time::timeout(fleet.call_timeout, release).await {
                Ok(Ok(())) => debug!("the stopped client's refresh lease was released"),
                Ok(Err(error)) => {
                    debug!(%error, "the stopped client's refresh lease was not released")
                }
                Err(_) => debug!("the stopped client's refresh lease was not released in time"),
            }
        });
    }
}

/// What the token endpoint answered.
enum TokenAnswer {
    /// The whole answer; the body holds the token, and is wiped when dropped.
    Read { status: u16, headers: HeaderMap, body: Zeroizing<Vec<u8>> },
    /// An answer whose body was larger than the limit: not read further.
    TooLarge { status: u16, headers: HeaderMap },
}

/// Sends a token request through the token client (no redirects), and reads the answer, at
/// most `max_response_body` bytes of it, within `token_timeout` (reqwest's request timeout
/// covers the body: one that trickles forever is a timeout), the wait for one of the
/// transport's token request slots included.
async fn send_token_request(
    shared: &Shared,
    request: OwnedTokenRequest,
) -> Result<TokenAnswer, TransportKind> {
    let now = tokio::time::Instant::now();
    let deadline =
        now.checked_add(shared.token_timeout).unwrap_or(now + StdDuration::from_secs(86_400));
    // Held until the answer is read (dropped on return); the semaphore is never closed.
    let Ok(Ok(_slot)) = tokio::time::timeout_at(deadline, shared.token_slots.acquire()).await
    else {
        warn!(
            timeout = ?shared.token_timeout,
            "token request not sent: the transport's token request slots were all taken until its \
             timeout (many clients refreshing at once; see Transport::with_token_request_limit)"
        );
        return Err(TransportKind::Timeout);
    };
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let builder = token_http_request(&shared.token_http, request, left)?;
    let mut response = builder.send().await.map_err(|e| {
        // Its text would name the token URL (`for url (…)`), query and all.
        let e = e.without_url();
        debug!(error = %e, "token request failed in transport");
        transport_kind(&e)
    })?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let limit = shared.max_response_body;
    let declared = response.content_length().map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if declared.is_some_and(|n| n > limit) {
        return Ok(TokenAnswer::TooLarge { status, headers });
    }
    // What the server declares sizes the first allocation only up to a token response's usual
    // size: a `Content-Length` near `usize::MAX`, under a limit set that high, would otherwise
    // be a "capacity overflow" panic (the driver task gone) or an allocation that aborts.
    let first = declared.unwrap_or(4096).min(limit).min(FIRST_ALLOCATION);
    let mut body = Zeroizing::new(Vec::with_capacity(first));
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        let e = e.without_url();
        debug!(error = %e, "token response failed in transport");
        transport_kind(&e)
    })? {
        if chunk.len() > limit.saturating_sub(body.len()) {
            return Ok(TokenAnswer::TooLarge { status, headers });
        }
        extend_wiped(&mut body, &chunk);
    }
    Ok(TokenAnswer::Read { status, headers, body })
}

/// The token request as `http` sends it, within `timeout`. The credentials it carries (the
/// Basic `Authorization` value; the body of `client_secret_post` or a JWT assertion) stay in
/// the wiping buffers they came in, moved, not copied: the header and the body are views of
/// them, and each is wiped when reqwest drops its last view. (A header made from a string, a
/// body from a copy, would hold them in buffers of their own, freed unwiped. What hyper copies
/// into its write buffer is beyond this.)
fn token_http_request(
    http: &reqwest::Client,
    request: OwnedTokenRequest,
    timeout: StdDuration,
) -> Result<reqwest::RequestBuilder, TransportKind> {
    let OwnedTokenRequest { url, headers, body } = request;
    let mut builder = http.post(url).timeout(timeout);
    for (name, value) in headers {
        let value = if name == "Authorization" {
            // Sensitive; empty if the bytes cannot be a header (the core writes visible ASCII).
            Some(header_over(wiping_bytes(value))).filter(|value| !value.is_empty())
        } else {
            HeaderValue::from_str(&value).ok()
        };
        builder = builder.header(name, value.ok_or(TransportKind::Other)?);
    }
    Ok(builder.body(Bytes::from_owner(wiping_bytes(body))))
}

/// The bytes of `text`, moved (not copied) into a buffer wiped when dropped.
fn wiping_bytes(mut text: Zeroizing<String>) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(std::mem::take(&mut *text).into_bytes())
}

/// The most a token response's buffer starts with, whatever its `Content-Length` says (it
/// grows as bytes arrive, up to `max_response_body`).
const FIRST_ALLOCATION: usize = 16 * 1024;

/// Appends `bytes` to `body`; when it must grow, the old allocation is wiped (it held part of
/// a token response), not left to the allocator as `Vec`'s own growth would.
fn extend_wiped(body: &mut Zeroizing<Vec<u8>>, bytes: &[u8]) {
    let needed = body.len().saturating_add(bytes.len());
    if needed > body.capacity() {
        let doubled = body.capacity().saturating_mul(2);
        let mut grown = Zeroizing::new(Vec::with_capacity(needed.max(doubled)));
        grown.extend_from_slice(body);
        *body = grown;
    }
    body.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token request's credentials are sent from the wiping buffers they came in: the
    /// `Authorization` header's bytes and the body's are those buffers' own (a copy would be
    /// freed unwiped), and the header is sensitive.
    #[test]
    fn the_token_requests_credentials_are_sent_from_their_wiping_buffers() {
        let authorization = Zeroizing::new("Basic Y2xpZW50OnMzY3IzdA==".to_owned());
        let body = Zeroizing::new(
            "grant_type=client_credentials&client_id=client&client_secret=s3cr3t".to_owned(),
        );
        let (header_at, body_at) = (authorization.as_ptr(), body.as_ptr());
        let request = OwnedTokenRequest {
            url: "http://127.0.0.1:9/oauth/token".to_owned(),
            headers: vec![
                ("Authorization", authorization),
                ("Content-Type", Zeroizing::new("application/x-www-form-urlencoded".to_owned())),
            ],
            body,
        };
        let http = crate::Transport::new().expect("transport").api_client().clone();
        let built = token_http_request(&http, request, StdDuration::from_secs(1))
            .expect("a valid request")
            .build()
            .expect("builds");
        let header = &built.headers()[reqwest::header::AUTHORIZATION];
        assert_eq!(header.as_bytes(), b"Basic Y2xpZW50OnMzY3IzdA==");
        assert!(header.is_sensitive());
        assert_eq!(header.as_bytes().as_ptr(), header_at, "the header's bytes were copied");
        let sent = built.body().and_then(reqwest::Body::as_bytes).expect("a body in memory");
        assert!(sent.ends_with(b"client_secret=s3cr3t"));
        assert_eq!(sent.as_ptr(), body_at, "the body's bytes were copied");
        assert_eq!(
            built.headers()[reqwest::header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        // A header value no header can hold is refused, as before.
        let bad = OwnedTokenRequest {
            url: "http://127.0.0.1:9/oauth/token".to_owned(),
            headers: vec![("Authorization", Zeroizing::new("Basic a\nb".to_owned()))],
            body: Zeroizing::new(String::new()),
        };
        assert!(matches!(
            token_http_request(&http, bad, StdDuration::from_secs(1)),
            Err(TransportKind::Other)
        ));
    }
}
