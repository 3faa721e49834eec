//! The token side: requesting, receiving and sharing tokens, and the errors of callers without one.

use core::fmt;

use heapless::{String, Vec};

use super::{
    ApiError, ApiErrorKind, CONTENT_TYPE_CAPACITY, EXTRA_PARAMS, Event, RestoreError, Session,
    TokenFailureReport, TokenProblem, count,
};
use crate::breaker::{Admission, CircuitBreaker, ProbeTicket};
use crate::classify::correlation_id;
use crate::http::Headers;
use crate::http::redirect::{LocationError, Origin};
use crate::http::url::Url;
use crate::lifecycle::{Generation, Lifecycle, RejectReason, Ticket, TokenFailure, TokenTimes};
use crate::oauth::{
    AuthMethod, EncodeError, JwtInputs, OAuthError, ResponseError, ResponseOptions, ScopeCheck,
    TokenErrorClass, TokenRequest, encode_token_request, parse_token_error,
    parse_token_response_into,
};
use crate::retry::policy::TransportKind;
use crate::secret::{AccessToken, InlineToken, TokenStorage};
use crate::text::push_decimal;
use crate::time::{Duration, Instant, UnixTime, WallClock};

/// The answer to [`Session::check_token`].
#[must_use]
pub enum TokenStatus<'s, const N: usize, S = InlineToken<N>> {
    /// A usable token and its timing.
    Ready(&'s AccessToken<N, S>, TokenTimes),
    /// None yet: ask again at `until`, or on the next token event when `None`.
    Pending {
        /// When the next token request can go out, if known.
        until: Option<Instant>,
    },
    /// None can be had now, and waiting will not help soon.
    Unavailable(ApiError),
}

impl<const N: usize, S> fmt::Debug for TokenStatus<'_, N, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenStatus::Ready(_, times) => f.debug_tuple("Ready").field(times).finish(),
            TokenStatus::Pending { until } => {
                f.debug_struct("Pending").field("until", until).finish()
            }
            TokenStatus::Unavailable(e) => f.debug_tuple("Unavailable").field(e).finish(),
        }
    }
}

impl<const N: usize, const H: usize, const E: usize, S: TokenStorage> Session<N, H, E, S> {
    /// The application reports that the API rejected the token of `generation` (a 401 it got
    /// with a token it sent itself, through another HTTP stack): the token is dropped if it is
    /// still the current one, and a refresh is made due at once, no sooner than
    /// [`LifecycleConfig::min_refresh_interval`](crate::lifecycle::LifecycleConfig::min_refresh_interval)
    /// after the last refresh made for a 401 (see [`Lifecycle::invalidate`]: an application
    /// that reports every token in a loop cannot make the session storm the token endpoint).
    /// Returns whether a token was dropped: `false` for an older generation (the newer token
    /// stays) or a repeated call.
    pub fn invalidate(&mut self, now: Instant, generation: Generation) -> bool {
        let dropped = self.lifecycle.invalidate(now, generation);
        self.drain_lifecycle_events();
        dropped
    }

    /// The usable token at `now` and its timing, if any (for adapters that publish it to a
    /// lock-free cache).
    pub fn token(&self, now: Instant) -> Option<(&AccessToken<N, S>, TokenTimes)> {
        let (token, _) = self.lifecycle.token(now)?;
        self.lifecycle.token_times(now).map(|times| (token, times))
    }

    /// Whether a caller that wants only the token (not an API call) can have one at `now`: the
    /// token, or until when to wait for one (`None`: until a token event), or why not. Unlike
    /// [`authorize`](Self::authorize) it neither paces nor counts an attempt.
    ///
    /// A caller that waits at most until some instant uses
    /// [`check_token_before`](Self::check_token_before) instead.
    pub fn check_token(&mut self, now: Instant) -> TokenStatus<'_, N, S> {
        self.check_token_before(now, None)
    }

    /// [`check_token`](Self::check_token) for a caller that waits until `deadline` at most:
    /// [`TokenStatus::Unavailable`] as soon as waiting cannot help, naming the last token
    /// failure ([`TokenFailureReport`]: its status, what was wrong, its correlation id, the wait
    /// the server asked for):
    ///
    /// - the credentials were rejected ([`ApiErrorKind::CredentialsRejected`]), or token
    ///   requests stopped because the answers cannot be used (a `token_type` other than Bearer,
    ///   a token larger than the capacity), until the one request that checks whether the
    ///   cause is gone has an answer (its time is the error's
    ///   [`ErrorDetail::next_probe_at`](super::ErrorDetail::next_probe_at), or the
    ///   `TokenUnavailable`'s `retry_at`);
    /// - the last token request failed in a way retrying does not fix
    ///   ([`TokenFailureReport::is_retryable`] is `false`: an HTML page, invalid JSON, no
    ///   `access_token`, a token with a control character, a 404), until a request in flight
    ///   answers otherwise;
    /// - the token endpoint's breaker is open;
    /// - the next token request is planned after `deadline` (a server's `Retry-After` longer
    ///   than the caller waits, or a backoff);
    /// - `now` is past `deadline`, even with a request in flight.
    ///
    /// A caller that sleeps until the deadline and asks again is answered with the reason it
    /// waited in vain; it never needs an error of its own.
    pub fn check_token_before(
        &mut self,
        now: Instant,
        deadline: Option<Instant>,
    ) -> TokenStatus<'_, N, S> {
        if self.lifecycle.token(now).is_none() {
            let passed = deadline.is_some_and(|d| now > d);
            let error = match self.token_unavailable(now, deadline) {
                Some(error) => error,
                None if passed => self.token_error(None, None),
                None => return TokenStatus::Pending { until: self.token_wait_until(now) },
            };
            return TokenStatus::Unavailable(error);
        }
        match (self.lifecycle.token(now), self.lifecycle.token_times(now)) {
            (Some((token, _)), Some(times)) => TokenStatus::Ready(token, times),
            _ => TokenStatus::Pending { until: None },
        }
    }

    /// The token lifecycle (read-only), for observability.
    pub fn lifecycle(&self) -> &Lifecycle<N, S> {
        &self.lifecycle
    }

    /// If a token request is due at `now` and the token endpoint's breaker lets it through,
    /// encodes it into `buf` and returns it with its ticket. Send it, then report the outcome
    /// with [`handle_token_response`](Self::handle_token_response) or
    /// [`handle_token_error`](Self::handle_token_error).
    ///
    /// `buf` holds the client secret (Basic header or form body): zeroize it once sent.
    #[inline(never)]
    pub fn poll_token_request<'b>(
        &mut self,
        now: Instant,
        buf: &'b mut [u8],
    ) -> Result<Option<(Ticket, TokenRequest<'b>)>, EncodeError> {
        match self.lifecycle.next_request_at() {
            Some(at) if at <= now => {}
            _ => return Ok(None),
        }
        let admission = self.token_breaker.check(now);
        self.drain_breaker_events();
        let probe = match admission {
            Admission::Allowed => None,
            Admission::Probe(ticket) => Some(ticket),
            Admission::Rejected { .. } | Admission::ProbeInFlight => return Ok(None),
        };
        let jwt = self.jwt_inputs(now);
        let extra: Vec<(&str, &str), EXTRA_PARAMS> = self.endpoint.params().collect();
        let cfg = self.endpoint.request_config(&extra);
        let Some(ticket) = self.lifecycle.start_request(now) else {
            give_back(&mut self.token_breaker, now, probe);
            return Ok(None);
        };
        let request = match encode_token_request(&cfg, &self.credentials, jwt.as_ref(), buf) {
            Ok(request) => request,
            Err(e) => {
                give_back(&mut self.token_breaker, now, probe);
                // Nothing was sent, but counted as a failed request: without the backoff the
                // request would stay due, and an adapter that polls again at once (its next
                // wake is now) would encode it in a loop.
                let failure = TokenFailure::Transient { retry_after: None };
                self.lifecycle.on_failure(now, ticket, failure, &mut self.rng);
                return Err(e);
            }
        };
        self.token_probe = probe;
        #[cfg(feature = "jwt")]
        {
            self.last_assertion = jwt;
        }
        count(&mut self.counters.token_requests);
        Ok(Some((ticket, request)))
    }

    /// The token request for `ticket`, sent on a reused kept-alive connection that ended
    /// before the first byte of an answer, encoded again into `buf` with its `client_secret_jwt`
    /// assertion signed anew (a new `jti`, `iat` and `exp`), to send once more on a new
    /// connection: the way [`KeepAlive::token_request_repeat`](crate::http::keep_alive::KeepAlive::token_request_repeat)
    /// says such a request may be repeated ([`Repeat::ReSigned`](crate::http::keep_alive::Repeat::ReSigned)).
    /// The first assertion may have reached the server, which may accept its `jti` once only
    /// (RFC 7523 §3): the new one is another assertion, and at worst gets a second token, as
    /// any token request sent twice. The request stays the one in flight for `ticket`: no
    /// failure, no backoff, not counted twice; report its outcome as usual. It is as long as
    /// the first: only fixed-width parts change (the `jti`, the signature) and the decimal `iat`
    /// and `exp`, which gain a digit in the year 2286 only, so it can be written where the
    /// first was.
    ///
    /// `None`: not to be sent again; report the failure with
    /// [`handle_token_error`](Self::handle_token_error). So for a request signed anew once
    /// already (a server that closes every connection gets each token request twice at most),
    /// a `ticket` not in flight, a request without an assertion (another method, or built
    /// without the `jwt` feature), or one that cannot be encoded again (no wall clock, `buf`
    /// too small).
    ///
    /// `buf` holds the new assertion, a credential until it expires: zeroize it once sent.
    pub fn resign_token_request<'b>(
        &mut self,
        now: Instant,
        ticket: Ticket,
        buf: &'b mut [u8],
    ) -> Option<TokenRequest<'b>> {
        #[cfg(feature = "jwt")]
        {
            if !self.lifecycle.is_in_flight(ticket) || self.resigned == Some(ticket) {
                return None;
            }
            let jwt = self.jwt_inputs(now)?;
            let extra: Vec<(&str, &str), EXTRA_PARAMS> = self.endpoint.params().collect();
            let cfg = self.endpoint.request_config(&extra);
            let request = encode_token_request(&cfg, &self.credentials, Some(&jwt), buf).ok()?;
            self.resigned = Some(ticket);
            self.last_assertion = Some(jwt);
            Some(request)
        }
        #[cfg(not(feature = "jwt"))]
        {
            let _ = (now, ticket, buf);
            None
        }
    }

    fn jwt_inputs(&mut self, now: Instant) -> Option<JwtInputs> {
        if cfg!(not(feature = "jwt")) || self.endpoint.auth != AuthMethod::ClientSecretJwt {
            return None;
        }
        let now = self.wall_at(now)?;
        let mut jti = [0u8; 16];
        // Half random, half a counter: unique within the session even if the seed repeats.
        self.rng.fill_bytes(&mut jti[..8]);
        self.jti_counter = self.jti_counter.wrapping_add(1);
        jti[8..].copy_from_slice(&self.jti_counter.to_be_bytes());
        Some(JwtInputs { now, jti })
    }

    /// Reports the token endpoint's answer to the request for `ticket`.
    ///
    /// A failure is recorded for the errors of callers that wait
    /// ([`last_token_failure`](Self::last_token_failure)), with the server's text masked where
    /// it echoes the client's credentials ([`crate::redact`]).
    #[inline(never)]
    pub fn handle_token_response<Hd: Headers + ?Sized>(
        &mut self,
        now: Instant,
        ticket: Ticket,
        status: u16,
        headers: &Hd,
        body: &[u8],
    ) {
        // A late answer to a request no longer in flight (disowned, timed out) is not this
        // session's news: it must not replace the failure on record, nor be masked with the
        // credentials that replaced the ones it was sent with.
        if !self.lifecycle.is_in_flight(ticket) {
            return;
        }
        if !(200..300).contains(&status) {
            self.token_refused(now, ticket, status, headers, body, body);
        } else if self.token_granted(now, ticket, status, headers, body) == Grant::Expired {
            self.token_refused(now, ticket, status, headers, EXPIRED_GRANT, body);
        }
        self.drain_lifecycle_events();
    }

    /// A success answer to the token request for `ticket`: a token to install, or an answer
    /// that cannot be used as one (recorded here), or a token granted already expired (for the
    /// caller to refuse). Out of line, so that the large token response it reads and the
    /// refusal's error are never on the stack together.
    #[inline(never)]
    fn token_granted<Hd: Headers + ?Sized>(
        &mut self,
        now: Instant,
        ticket: Ticket,
        status: u16,
        headers: &Hd,
        body: &[u8],
    ) -> Grant {
        let opts = ResponseOptions {
            default_expires_in: self.config.default_expires_in,
            max_expires_in: self.config.max_expires_in,
            requested_scope: self.endpoint.scope(),
        };
        match parse_token_response_into::<N, S>(body, &opts) {
            Ok(response) if !response.expires_in.is_zero() => {
                let generation = self.lifecycle.on_success(
                    now,
                    ticket,
                    response.access_token,
                    response.expires_in,
                    &mut self.rng,
                );
                if generation.is_some() {
                    self.token_breaker.on_success(now);
                    self.last_token_failure = None;
                    let granted = response.granted_scope.as_deref().map(whole_scope_tokens);
                    self.granted = (granted, response.scope_check);
                    if matches!(response.scope_check, ScopeCheck::Narrowed | ScopeCheck::Widened) {
                        self.push(Event::ScopeMismatch(response.scope_check));
                    }
                }
                Grant::Taken
            }
            // A token granted already expired (`expires_in` zero, negative or under a second)
            // is of no use: a failed request, with backoff and a diagnosis (as an error without
            // a code: retrying at once cannot help, but the credentials are not known to be
            // bad), rather than a token to replace at once. After the arm that takes the token,
            // so that the large response is moved once.
            Ok(_) => Grant::Expired,
            // Including a success status with an OAuth error body (`ErrorBody`).
            Err(error) => {
                let failure = match error {
                    ResponseError::TokenTooLong { .. }
                    | ResponseError::UnsupportedTokenType { .. } => {
                        TokenFailure::Fatal(RejectReason::UnusableResponse)
                    }
                    _ => TokenFailure::Transient { retry_after: None },
                };
                let problem =
                    TokenProblem::Unusable { status, error, content_type: media_type(headers) };
                self.record_token_failure(now, problem, headers, body, None);
                self.token_failed(now, ticket, failure, false);
                Grant::Unusable
            }
        }
    }

    /// An error answer to the token request for `ticket`: `error_body` read as an OAuth error
    /// (RFC 6749 §5.2), classified, and recorded with `body`'s correlation id.
    fn token_refused<Hd: Headers + ?Sized>(
        &mut self,
        now: Instant,
        ticket: Ticket,
        status: u16,
        headers: &Hd,
        error_body: &[u8],
        body: &[u8],
    ) {
        let mut error = parse_token_error(status, error_body);
        if error.class == TokenErrorClass::Redirected {
            self.describe_redirect(&mut error, headers.get("location"));
        }
        let retry_after = self.retry_after(now, headers);
        let failure = match error.class {
            TokenErrorClass::CredentialsRejected => TokenFailure::Fatal(
                if error.code == Some(crate::oauth::ErrorCode::UnauthorizedClient) {
                    RejectReason::UnauthorizedClient
                } else {
                    RejectReason::InvalidClient
                },
            ),
            TokenErrorClass::ScopeRejected => TokenFailure::Fatal(RejectReason::InvalidScope),
            TokenErrorClass::GrantRejected => TokenFailure::Fatal(RejectReason::GrantRejected),
            TokenErrorClass::Redirected => TokenFailure::Fatal(RejectReason::Redirected),
            TokenErrorClass::RateLimited => TokenFailure::RateLimited { retry_after },
            _ => TokenFailure::Transient { retry_after },
        };
        // A breaker failure is an outage or overload, not a configuration error.
        let outage =
            matches!(error.class, TokenErrorClass::RateLimited | TokenErrorClass::Transient);
        self.push(Event::TokenEndpointError { status, class: error.class });
        let problem = TokenProblem::Refused(error);
        self.record_token_failure(now, problem, headers, body, retry_after);
        self.token_failed(now, ticket, failure, outage);
    }

    /// Reports that the token endpoint's answer to `ticket` had a body larger than `limit`
    /// bytes, which the adapter stopped reading.
    ///
    /// A success is a [`TooLarge`](TokenErrorClass::TooLarge) failure that stops token requests
    /// ([`RejectReason::UnusableResponse`]); any other status is handled as
    /// [`handle_token_response`](Self::handle_token_response) handles it with an empty body (a
    /// redirect is refused, an error classified by its status). The description says "response
    /// larger than `limit` bytes" (a redirect's says where it pointed).
    pub fn handle_token_too_large<Hd: Headers + ?Sized>(
        &mut self,
        now: Instant,
        ticket: Ticket,
        status: u16,
        headers: &Hd,
        limit: u32,
    ) {
        if !self.lifecycle.is_in_flight(ticket) {
            return;
        }
        if !(200..300).contains(&status) {
            self.handle_token_response(now, ticket, status, headers, b"");
            if let Some(TokenFailureReport { problem: TokenProblem::Refused(error), .. }) =
                self.last_token_failure.as_mut()
                && error.class != TokenErrorClass::Redirected
            {
                describe_size(&mut error.description, limit);
            }
            return;
        }
        let mut error = parse_token_error(status, b"");
        error.class = TokenErrorClass::TooLarge;
        describe_size(&mut error.description, limit);
        self.push(Event::TokenEndpointError { status, class: error.class });
        self.record_token_failure(now, TokenProblem::Refused(error), headers, b"", None);
        self.token_failed(now, ticket, TokenFailure::Fatal(RejectReason::UnusableResponse), false);
        self.drain_lifecycle_events();
    }

    /// Replaces a redirect's description with where it pointed: "redirected to
    /// `scheme://host:port`; not followed" (never the path, query or userinfo; a relative
    /// `Location` names the token URL's origin), or why the `Location` names no such place.
    /// Without the `diagnosis` feature, only "redirected; not followed".
    #[inline(never)]
    fn describe_redirect(&self, error: &mut OAuthError, location: Option<&[u8]>) {
        let text = error.description.as_mut_view();
        text.clear();
        if cfg!(not(feature = "diagnosis")) {
            let _ = text.push_str("redirected; not followed");
            return;
        }
        // The token URL was checked when the endpoint was built.
        let base = Url::parse(self.endpoint.token_url()).map(|url| Origin::of(&url));
        let location = match (base, location.map(|v| core::str::from_utf8(v.trim_ascii()))) {
            (_, None) => Err(LocationError::Missing),
            (Ok(base), Some(Ok(value))) => Origin::of_location(value, base),
            _ => Err(LocationError::Malformed),
        };
        let _ = text.push_str("redirected to ");
        let _ = match location {
            Ok(to) if to.push_to(text) => Ok(()),
            Ok(_) => text.push_str("a long host name"),
            Err(LocationError::Missing) => text.push_str("no Location"),
            Err(LocationError::NotHttp) => text.push_str("a non-HTTP URL"),
            Err(_) => text.push_str("an unreadable Location"),
        };
        let _ = text.push_str("; not followed");
    }

    /// Records a failed token request's answer, its correlation id and the wait it asked for,
    /// with the client's credentials masked wherever the server's text echoes them.
    fn record_token_failure<Hd: Headers + ?Sized>(
        &mut self,
        now: Instant,
        problem: TokenProblem,
        headers: &Hd,
        body: &[u8],
        retry_after: Option<Duration>,
    ) {
        let mut report = TokenFailureReport {
            problem,
            correlation_id: correlation_id(headers, body),
            retry_after,
        };
        mask_report(&self.secrets(now), &mut report);
        self.last_token_failure = Some(report);
    }

    /// Reports that the token request for `ticket` failed in transport (connect, reset,
    /// timeout), or was abandoned (`None`: the caller's task was cancelled, or its own limit
    /// came first). An abandoned request is no failure of the token endpoint (no breaker, and
    /// no backoff for the first), but a run of them is held back as failures are
    /// ([`Lifecycle::on_abandoned`](crate::lifecycle::Lifecycle::on_abandoned)).
    #[inline(never)]
    pub fn handle_token_error(
        &mut self,
        now: Instant,
        ticket: Ticket,
        kind: Option<TransportKind>,
    ) {
        if !self.lifecycle.is_in_flight(ticket) {
            return;
        }
        match kind {
            Some(kind) => {
                self.last_token_failure = Some(TokenFailureReport {
                    problem: TokenProblem::Transport(kind),
                    correlation_id: None,
                    retry_after: None,
                });
                self.token_failed(now, ticket, TokenFailure::Transient { retry_after: None }, true)
            }
            None => {
                self.lifecycle.on_abandoned(now, ticket);
                give_back(&mut self.token_breaker, now, self.token_probe.take());
            }
        }
        self.drain_lifecycle_events();
    }

    /// Satisfies the token request for `ticket` with a token obtained elsewhere instead of
    /// sending it: a fleet of processes sharing one token (the request was due here, another
    /// process had already refreshed). `expires_at` is the token's absolute wall-clock expiry, as
    /// the process that fetched it recorded it; it needs the wall clock
    /// ([`set_wall_clock`](Self::set_wall_clock)).
    ///
    /// The ticket is released whatever happens, as an abandoned request is (no failure counted,
    /// the token endpoint's breaker not charged: nothing was learned about it); a breaker probe
    /// it held is returned.
    /// The ticket still counts as a token request for the spacing: the next one starts no
    /// sooner than [`LifecycleConfig::min_refresh_interval`](crate::lifecycle::LifecycleConfig::min_refresh_interval) after it.
    /// The token is then installed as by [`restore`](Self::restore): served until its refresh
    /// point, computed from its remaining life. A stale ticket changes nothing.
    ///
    /// Errors: [`RestoreError::NoWallClock`]; [`RestoreError::NotUsable`] when the ticket is not
    /// the one in flight, the token is too close to expiry or the credentials were rejected (the
    /// next token request is then due at once, or after a backoff if the fleet's tokens were
    /// refused several times in a row: send it, or ask the fleet again).
    #[inline(never)]
    pub fn handle_token_shared(
        &mut self,
        now: Instant,
        ticket: Ticket,
        token: AccessToken<N, S>,
        expires_at: UnixTime,
    ) -> Result<Generation, RestoreError> {
        let wall = self.wall.ok_or(RestoreError::NoWallClock)?;
        if !self.lifecycle.in_flight() {
            return Err(RestoreError::NotUsable);
        }
        self.lifecycle.on_abandoned(now, ticket);
        if self.lifecycle.in_flight() {
            return Err(RestoreError::NotUsable); // another ticket is in flight
        }
        give_back(&mut self.token_breaker, now, self.token_probe.take());
        let generation = self.install_fleet_token(now, wall, token, expires_at);
        self.drain_breaker_events();
        generation
    }

    /// Takes a token another process of the fleet fetched, outside a token request of this
    /// session's: for a process that has no usable token and may not request one yet (after an
    /// outage its breaker or backoff holds it back for up to a minute, while the fleet's lease
    /// holder already has a new token). `expires_at` is as [`handle_token_shared`] takes it.
    ///
    /// Installed as by [`restore`](Self::restore) (the backoff is cleared; the token endpoint's
    /// breaker is left to its own probe, as nothing was learned about the endpoint from here).
    /// Refused with [`RestoreError::NotUsable`] while a token request of this session is in
    /// flight (its answer decides), when the session already holds a usable token, when the
    /// token is too close to expiry, or while token requests are stopped by a rejection (until
    /// the recheck: its request may be answered with the fleet's token by
    /// [`handle_token_shared`], which ends the stop).
    ///
    /// [`handle_token_shared`]: Self::handle_token_shared
    #[inline(never)]
    pub fn adopt_shared(
        &mut self,
        now: Instant,
        token: AccessToken<N, S>,
        expires_at: UnixTime,
    ) -> Result<Generation, RestoreError> {
        let wall = self.wall.ok_or(RestoreError::NoWallClock)?;
        if self.lifecycle.in_flight() || self.lifecycle.token(now).is_some() {
            return Err(RestoreError::NotUsable);
        }
        self.install_fleet_token(now, wall, token, expires_at)
    }

    /// Installs a token another process fetched (absolute expiry `expires_at`), counts it and
    /// clears the last token error when it is taken; drains the lifecycle's events.
    fn install_fleet_token(
        &mut self,
        now: Instant,
        wall: WallClock,
        token: AccessToken<N, S>,
        expires_at: UnixTime,
    ) -> Result<Generation, RestoreError> {
        let generation = self
            .lifecycle
            .install(now, token, wall.instant_at(expires_at), &mut self.rng)
            .ok_or(RestoreError::NotUsable);
        if generation.is_ok() {
            count(&mut self.counters.shared_tokens);
            self.last_token_failure = None;
        }
        self.drain_lifecycle_events();
        generation
    }

    fn token_failed(&mut self, now: Instant, ticket: Ticket, failure: TokenFailure, outage: bool) {
        let was_in_flight = self.lifecycle.in_flight();
        self.lifecycle.on_failure(now, ticket, failure, &mut self.rng);
        if !was_in_flight || self.lifecycle.in_flight() {
            return; // stale ticket
        }
        count(&mut self.counters.token_failures);
        self.token_probe = None;
        if outage {
            self.token_breaker.on_failure(now, &mut self.rng);
        } else {
            self.token_breaker.on_success(now);
        }
        self.drain_breaker_events();
    }

    /// When the next token request can go out (never before `now`), if none is in flight.
    pub(super) fn token_wait_until(&self, now: Instant) -> Option<Instant> {
        if self.lifecycle.in_flight() {
            return None;
        }
        self.lifecycle.next_request_at().map(|at| {
            let at = match self.token_breaker.next_change() {
                Some(change) => at.max(change),
                None => at,
            };
            at.max(now)
        })
    }

    /// Whether a caller without a token, waiting until `deadline` at most, should fail now
    /// rather than wait: the credentials were rejected or the answers cannot be used, the last
    /// token request failed in a way retrying does not fix (an answer that is not a usable
    /// token, a 404), the token endpoint's breaker is open, or the next token request is
    /// planned after the deadline.
    pub(super) fn token_unavailable(
        &mut self,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Option<ApiError> {
        // The lifecycle's state at `now` is Rejected, or (no usable token, a request in flight)
        // Acquiring: asked directly, without building the rest of the state.
        if let Some(reason) = self.lifecycle.rejected() {
            return Some(self.token_error(Some(reason), self.token_wait_until(now)));
        }
        if self.lifecycle.in_flight() && self.lifecycle.token(now).is_none() {
            return None; // acquiring
        }
        let breaker_open =
            matches!(self.token_breaker.state(), crate::breaker::BreakerState::Open { .. });
        let retry_at = self.token_wait_until(now);
        let past_deadline = matches!((retry_at, deadline), (Some(at), Some(d)) if at > d);
        // Requests go on in the background (a proxy's page may go away), but a caller is not
        // held for an answer that will not change by itself.
        let unfixed = self.last_token_failure.as_ref().is_some_and(|r| !r.is_retryable());
        (breaker_open || past_deadline || unfixed).then(|| self.token_error(None, retry_at))
    }

    /// The error of a caller without a token, with the last token failure's status:
    /// [`ApiErrorKind::CredentialsRejected`] when the lifecycle stopped for `rejected`
    /// credentials, scope or grant (its recheck is
    /// [`ErrorDetail::next_probe_at`](super::ErrorDetail::next_probe_at)), else
    /// [`ApiErrorKind::TokenUnavailable`] with the next token request at `retry_at` (token
    /// requests stopped because the answers cannot be used are not a matter of credentials). The failure itself stays in the session
    /// ([`error_detail`](Self::error_detail)).
    pub(super) fn token_error(
        &self,
        rejected: Option<RejectReason>,
        retry_at: Option<Instant>,
    ) -> ApiError {
        let kind = match rejected {
            Some(reason) if reason != RejectReason::UnusableResponse => {
                ApiErrorKind::CredentialsRejected { reason }
            }
            _ => ApiErrorKind::TokenUnavailable { retry_at },
        };
        let status = self.last_token_failure.as_ref().and_then(TokenFailureReport::status);
        ApiError { kind, status }
    }
}

/// Gives a probe ticket back to `breaker`, if there is one: its probe ended (or never started)
/// without an outcome.
fn give_back(breaker: &mut CircuitBreaker, now: Instant, probe: Option<ProbeTicket>) {
    if let Some(ticket) = probe {
        breaker.on_abandoned(now, ticket);
    }
}

/// The diagnosis of a token granted already expired, as an OAuth error body without a code: it
/// is read by the same code as the server's errors, and a 2xx status without a code classifies
/// as [`TokenErrorClass::Permanent`] (retried with backoff, the breaker not charged). Without
/// the `diagnosis` feature, only the fact.
const EXPIRED_GRANT: &[u8] = if cfg!(feature = "diagnosis") {
    br#"{"error_description":"token granted already expired (expires_in below 1 s)"}"#
} else {
    br#"{"error_description":"expires_in<1s"}"#
};

/// What [`Session::token_granted`] made of a success answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// A token, installed.
    Taken,
    /// A token granted already expired: to be refused.
    Expired,
    /// No usable token (recorded as such).
    Unusable,
}

/// Writes "response larger than `limit` bytes" over `description`.
fn describe_size(description: &mut String<256>, limit: u32) {
    description.clear();
    let text = description.as_mut_view();
    let _ = text.push_str("response larger than ");
    let _ = push_decimal(text, limit) && text.push_str(" bytes").is_ok();
}

/// The media type of a response's `Content-Type` (before any parameter), bounded, control
/// characters replaced by spaces; `None` without the `diagnosis` feature.
fn media_type<Hd: Headers + ?Sized>(headers: &Hd) -> Option<String<CONTENT_TYPE_CAPACITY>> {
    if cfg!(not(feature = "diagnosis")) {
        return None;
    }
    let value = core::str::from_utf8(headers.get("content-type")?).ok()?;
    let media = value.split(';').next().unwrap_or_default().trim_ascii();
    let mut out = String::new();
    let _ = crate::text::push_sanitized(out.as_mut_view(), &mut media.chars());
    (!out.is_empty()).then_some(out)
}

/// The whole space-separated tokens of `scope` that fit `E` bytes, one space apart.
fn whole_scope_tokens<const E: usize>(scope: &str) -> String<E> {
    let mut out = String::new();
    for token in scope.split_ascii_whitespace() {
        let mark = out.len();
        let separated = out.is_empty() || out.push(' ').is_ok();
        if !separated || out.push_str(token).is_err() {
            out.truncate(mark);
            break;
        }
    }
    out
}

/// Masks `secrets` in the server's text a token failure's `report` keeps: the OAuth error's
/// description, URI and code, an unusable answer's token type and media type, the correlation
/// id.
pub(super) fn mask_report(secrets: &crate::redact::Secrets<'_>, report: &mut TokenFailureReport) {
    match &mut report.problem {
        TokenProblem::Refused(e) => {
            secrets.mask(e.description.as_mut_view());
            if let Some(uri) = e.uri.as_mut() {
                secrets.mask(uri.as_mut_view());
            }
            if let Some(crate::oauth::ErrorCode::Other(code)) = e.code.as_mut() {
                secrets.mask(code.as_mut_view());
            }
        }
        TokenProblem::Unusable { error, content_type, .. } => {
            if let ResponseError::UnsupportedTokenType(t) = error {
                secrets.mask(t.as_mut_view());
            }
            if let Some(media) = content_type.as_mut() {
                secrets.mask(media.as_mut_view());
            }
        }
        TokenProblem::Transport(_) | TokenProblem::TimedOut => {}
    }
    if let Some(id) = report.correlation_id.as_mut() {
        id.mask(secrets);
    }
}
