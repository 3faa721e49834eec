//! The API side: one request across its attempts, from `begin` to its verdict.

use core::fmt;

use super::{ApiError, ApiErrorKind, CallEnd, Event, HostKey, Session, count};
use crate::breaker::{Admission, ProbeTicket};
use crate::classify::{
    CorrelationId, Diagnosis, ResponseClass, classify, needs_reference, plainly_successful,
};
use crate::http::{Headers, Method};
use crate::lifecycle::Generation;
use crate::ratelimit::headers::names_rate_limit;
use crate::ratelimit::pacer::{Pace, PaceReason, Priority, Sender};
use crate::retry::policy::{
    Attempt, Failure, GiveUpReason, RetryDecision, TransportKind, WaitSource,
};
use crate::secret::{AccessToken, InlineToken, TokenStorage};
use crate::time::{Duration, Instant};

/// What a caller says about one API request before it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    /// The HTTP method.
    pub method: Method,
    /// The caller vouches that repeating this request is harmless (for POST/PATCH).
    pub idempotent: bool,
    /// Its priority for pacing.
    pub priority: Priority,
    /// No attempt may start after this instant.
    pub deadline: Option<Instant>,
    /// The breaker it is counted against.
    pub host: HostKey,
}

impl RequestSpec {
    /// A request with `method` to `host`, normal priority, no deadline, not marked idempotent.
    pub fn new(method: Method, host: HostKey) -> Self {
        RequestSpec { method, idempotent: false, priority: Priority::Normal, deadline: None, host }
    }

    /// Whether sending the request twice is harmless: its method is idempotent (RFC 9110
    /// §9.2.2) or the caller marked it [`idempotent`](Self::idempotent). The retry policy
    /// retries such a request after any transient failure, and an adapter may resend it on a
    /// new connection when a kept-alive one turns out closed
    /// ([`KeepAlive`](crate::http::keep_alive::KeepAlive)).
    pub const fn is_repeatable(&self) -> bool {
        self.idempotent || self.method.is_idempotent()
    }
}

/// The state of one API request across its attempts. Created by [`Session::begin`], owned by
/// the caller, handed back to every session call about that request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "pass the request state to authorize and handle_response"]
pub struct RequestState {
    spec: RequestSpec,
    attempts: u32,
    retries: u32,
    /// The one retry after a 401 (with a new token) is spent.
    reauthenticated: bool,
    /// The token generation the last attempt was sent with.
    generation: Option<Generation>,
    /// No attempt before this (a retry's backoff).
    not_before: Instant,
    stage: Stage,
    /// An external pacer admitted the next attempt.
    externally_paced: bool,
    /// Not before this, on an external pacer's word.
    external_hold: Option<Instant>,
    /// The attempt in flight was sent as the probe of a hold longer than `max_wait`
    /// ([`Pacer::take_quota_probe`](crate::ratelimit::pacer::Pacer::take_quota_probe)): an
    /// answer other than a 429 lifts the hold.
    quota_probe: bool,
}

/// Where the request's current attempt stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// None in flight: the next one is to be authorized.
    Ready,
    /// Sent, admitted by a closed breaker; its outcome is not reported yet.
    Sent,
    /// Sent as its host breaker's probe, holding the breaker's ticket; its outcome is not
    /// reported yet.
    Probe(ProbeTicket),
}

impl RequestState {
    /// The state [`Session::begin`] then [`Session::authorize`] leave a request in when they
    /// send its first attempt at `at` with the token of `generation`, admitted by a closed
    /// breaker ([`Lane::request`](super::Lane::request)).
    pub(super) fn sent_in_lane(spec: RequestSpec, at: Instant, generation: Generation) -> Self {
        RequestState {
            spec,
            attempts: 1,
            retries: 0,
            reauthenticated: false,
            generation: Some(generation),
            not_before: at,
            stage: Stage::Sent,
            externally_paced: false,
            external_hold: None,
            quota_probe: false,
        }
    }

    /// The request's description.
    pub fn spec(&self) -> &RequestSpec {
        &self.spec
    }

    /// Attempts sent so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Retries made so far (not counting the single re-authentication retry after a 401).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Marks the next attempt as admitted by an external pacer (`true`), or clears the mark:
    /// a fleet's shared rate budget that counted the attempt against the limit every process
    /// shares, applying the spacing, burst and priority reserves with every process's sends in
    /// view (the std adapter's fleet mode).
    ///
    /// While the mark is set, [`Session::authorize`] holds the attempt back only for what the
    /// server enforces, a 429's `Retry-After` and an exhausted window
    /// ([`Pacer::check_admitted`](crate::ratelimit::pacer::Pacer::check_admitted)), not for
    /// this session's spacing, reserves and estimate of other clients, which know only this
    /// process's sends. The mark survives waits (for a token, a backoff) and is cleared when the
    /// attempt is sent: the next attempt needs its own admission. An attempt without the mark,
    /// because the external pacer could not be asked, is paced here at the request's own
    /// [`priority`](RequestSpec::priority), which the mark never changes.
    pub fn set_externally_paced(&mut self, admitted: bool) {
        self.externally_paced = admitted;
    }

    /// Whether the next attempt was admitted by an external pacer
    /// ([`set_externally_paced`](Self::set_externally_paced)).
    pub fn externally_paced(&self) -> bool {
        self.externally_paced
    }

    /// Holds the next attempt back until `until` on an external pacer's word: a fleet's shared
    /// budget that cannot admit it sooner (another process's 429 held the fleet back, or the
    /// shared window is spent), for longer than the caller would sleep on the pacer's behalf.
    ///
    /// [`Session::authorize`] treats the hold as its own pacer's answer: a hold within
    /// [`RetryPolicy::max_wait`](crate::retry::policy::RetryPolicy) is waited for, and a longer
    /// one (a daily quota's hours) fails fast naming the wait, except for the session's one
    /// probe per `max_wait`, exactly as for a wait this session learned itself. The hold never
    /// shortens a wait of the session's own, and is cleared when the attempt is sent.
    pub fn set_external_hold(&mut self, until: Instant) {
        self.external_hold = Some(until);
    }
}

/// Why an [`Authorize::Wait`] waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum WaitReason {
    /// No usable token yet; one is being requested. Wait for a token event (or `until`).
    Token,
    /// The pacer spreads requests over the rate-limit window.
    Paced(PaceReason),
    /// A retry scheduled by the verdict is not due yet.
    Backoff,
    /// The breaker is half-open and its probe is in flight.
    BreakerProbe,
}

/// The answer to [`Session::authorize`].
#[must_use]
pub enum Authorize<'s, const N: usize, S = InlineToken<N>> {
    /// Send now with `Authorization: Bearer <token>`; report the outcome with the same state.
    Send {
        /// The token to attach.
        token: &'s AccessToken<N, S>,
        /// Its generation (kept in the request state for 401 handling).
        generation: Generation,
    },
    /// Not yet. Call again at `until`, or when a token event arrives if `until` is `None`.
    Wait {
        /// When to ask again, if known.
        until: Option<Instant>,
        /// Why.
        reason: WaitReason,
    },
    /// The request cannot be sent; return this error to the caller.
    Fail(ApiError),
}

impl<const N: usize, S> fmt::Debug for Authorize<'_, N, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authorize::Send { generation, .. } => {
                f.debug_struct("Send").field("generation", generation).finish_non_exhaustive()
            }
            Authorize::Wait { until, reason } => {
                f.debug_struct("Wait").field("until", until).field("reason", reason).finish()
            }
            Authorize::Fail(e) => f.debug_tuple("Fail").field(e).finish(),
        }
    }
}

/// Why a request is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum RetryReason {
    /// The token was rejected (401); a new one is being fetched, the request is retried once.
    Reauthenticate,
    /// Rate-limited (429).
    RateLimited,
    /// A transient server error (408, 5xx).
    ServerError(u16),
    /// A transport failure.
    Transport(TransportKind),
}

/// The session's verdict on one attempt's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Hand the response to the caller as it is (success, or a permanent answer such as 404).
    Done,
    /// Send again, not before `at` (call [`Session::authorize`] then).
    Retry {
        /// Earliest instant for the next attempt.
        at: Instant,
        /// Why.
        reason: RetryReason,
        /// Where the wait came from (the server's `Retry-After`, or backoff).
        source: WaitSource,
    },
    /// Give up and return this error.
    Fail(ApiError),
}

impl<const N: usize, const H: usize, const E: usize, S: TokenStorage> Session<N, H, E, S> {
    /// Starts tracking one API request.
    pub fn begin(&mut self, now: Instant, spec: RequestSpec) -> RequestState {
        count(&mut self.counters.requests);
        self.budget.deposit(now);
        RequestState {
            spec,
            attempts: 0,
            retries: 0,
            reauthenticated: false,
            generation: None,
            not_before: now,
            stage: Stage::Ready,
            externally_paced: false,
            external_hold: None,
            quota_probe: false,
        }
    }

    /// How long a token request sent for `req`, in its own task and before its attempt, may
    /// run from `now` (an adapter that refreshes inline, not from a task of its own); `None`
    /// when the request has no deadline.
    ///
    /// A request that holds a usable token, one that outlasts half of its time left, gives a
    /// refresh ahead of expiry at most that half and keeps the rest for its own attempt: a
    /// token endpoint slower than that does not fail a call that its token could serve. Once
    /// such a refresh was cut short (the last token request was abandoned), the next request
    /// gives it all its time, so that an endpoint slower than half a call's time but faster
    /// than all of it is still refreshed ahead of expiry. A request that needs a token, or
    /// whose token ends within that half, may spend all its time waiting for one.
    pub fn refresh_limit(&self, now: Instant, req: &RequestState) -> Option<Duration> {
        let left = req.spec.deadline?.saturating_duration_since(now);
        let half = Duration::from_millis(left.as_millis() / 2);
        match self.lifecycle.token_times(now) {
            Some(times)
                if times.usable_until > now.saturating_add(half)
                    && !self.lifecycle.last_abandoned() =>
            {
                Some(half)
            }
            _ => Some(left),
        }
    }

    /// Decides whether the request may be sent at `now`: with which token, or until when to
    /// wait, or why it cannot be sent at all.
    ///
    /// A rate-limit wait within the retry policy's `max_wait` is waited for, or fails
    /// [`DeadlineExceeded`](ApiErrorKind::DeadlineExceeded) with its end as `sendable_at` when
    /// that is past the request's deadline. A longer one (a daily quota's hours, a bogus
    /// `Retry-After`'s years) is not waited for, whatever the deadline: one request per
    /// `max_wait` of a limit the server set is sent at once as its probe, and the others fail
    /// [`GaveUp`](ApiErrorKind::GaveUp) naming the wait
    /// ([`Session::error_detail`] says when the next probe goes).
    #[inline(never)]
    pub fn authorize(&mut self, now: Instant, req: &mut RequestState) -> Authorize<'_, N, S> {
        // A second authorize without an outcome: the earlier attempt is abandoned.
        self.abandon(now, req);
        if let Some(deadline) = req.spec.deadline
            && now > deadline
        {
            // Waiting for a token that did not come: say why it did not.
            if self.lifecycle.token(now).is_none() && self.last_token_failure.is_some() {
                let error = self.token_error(None, self.token_wait_until(now));
                return self.fail_with(error);
            }
            return self.fail(ApiErrorKind::DeadlineExceeded { sendable_at: None });
        }
        if now < req.not_before {
            return Authorize::Wait { until: Some(req.not_before), reason: WaitReason::Backoff };
        }
        let Some((_, generation)) = self.lifecycle.token(now) else {
            if let Some(error) = self.token_unavailable(now, req.spec.deadline) {
                return self.fail_with(error);
            }
            return Authorize::Wait {
                until: self.token_wait_until(now),
                reason: WaitReason::Token,
            };
        };
        self.pacer.use_token(now, generation);
        // An admitted attempt is held back only by what the server enforces.
        let sender =
            if req.externally_paced { Sender::Admitted } else { Sender::Local(req.spec.priority) };
        let mut pace = self.pacer.pace(now, sender);
        if let Some(hold) = req.external_hold
            && hold > now
            && !matches!(pace, Pace::NotBefore { at, .. } if at >= hold)
        {
            // An external pacer's long wait: the shared window spent, or a 429's hold.
            pace = Pace::NotBefore { at: hold, reason: PaceReason::Exhausted };
        }
        if let Pace::NotBefore { at, reason } = pace {
            let wait = at.saturating_duration_since(now);
            let max = self.config.retry.max_wait;
            // A wait the caller would sleep through, but its deadline comes first: fail now,
            // saying when the request could have gone. A longer one is decided below, whatever
            // the deadline (checked first, it failed every request that had one, as all of
            // `credflow proxy`'s have, and sent no probe).
            if req.spec.deadline.is_some_and(|d| at > d) && wait <= max {
                return self.fail(ApiErrorKind::DeadlineExceeded { sendable_at: Some(at) });
            }
            if wait <= max {
                self.counters.paced_ms =
                    crate::time::add_sat(self.counters.paced_ms, wait.as_millis());
                return Authorize::Wait { until: Some(at), reason: WaitReason::Paced(reason) };
            }
            // A quota that frees up only in hours (a daily limit's 429, an exhausted long
            // window), or a bogus wait that saturated to "forever": fail now, naming the wait,
            // rather than holding the caller silently. One request per `max_wait` still goes
            // out as a probe, so the session finds out when the limit is lifted: one the
            // server set, or any that holds Critical requests back (the share the pacer
            // estimates other clients use). A lower priority held by the pacer's own choice
            // (the share kept for higher priorities, the spacing of a long window) has nothing
            // to find out, and a probe would spend what is kept for the others.
            // Whatever the request's deadline: the probe is sent now (within it, checked at
            // the top), and the others fail naming the wait, which says more than the deadline
            // would (no deadline the caller waits for is long enough).
            let limited = matches!(reason, PaceReason::Exhausted | PaceReason::Backoff429)
                || req.spec.priority == Priority::Critical;
            req.quota_probe = limited && self.pacer.take_quota_probe(now, max);
            if !req.quota_probe {
                // Named for what holds the request: the server's limit, or the pacer's own
                // choice (an explanation the `diagnosis` feature keeps; the decision is the same).
                let reason = match reason {
                    PaceReason::Reserve if cfg!(feature = "diagnosis") => {
                        GiveUpReason::ReservedForOthers { wait, max }
                    }
                    PaceReason::Spacing if cfg!(feature = "diagnosis") => {
                        GiveUpReason::SpacingTooLong { wait, max }
                    }
                    _ => GiveUpReason::WaitTooLong { wait, max },
                };
                return self.fail(ApiErrorKind::GaveUp { reason, last: RetryReason::RateLimited });
            }
        }
        let breaker_config = self.config.api_breaker;
        let breaker = self.host_breaker(now, req.spec.host, breaker_config);
        let admission = breaker.check(now);
        self.drain_breaker_events();
        let stage = match admission {
            Admission::Allowed => Stage::Sent,
            Admission::Probe(ticket) => Stage::Probe(ticket),
            refused => {
                // Not sent: a quota probe taken above is the next attempt's to take.
                if core::mem::take(&mut req.quota_probe) {
                    self.pacer.return_quota_probe(now);
                }
                return match refused {
                    Admission::Rejected { until } => self.fail(ApiErrorKind::CircuitOpen { until }),
                    _ => Authorize::Wait { until: None, reason: WaitReason::BreakerProbe },
                };
            }
        };
        // An admitted send did not wait for the local schedule, so it does not move it (as a
        // Critical one does not); the admission covered this attempt only.
        let paced_as = match sender {
            Sender::Admitted => Priority::Critical,
            Sender::Local(priority) => priority,
        };
        self.pacer.on_send(now, paced_as);
        req.externally_paced = false;
        req.external_hold = None;
        req.attempts = req.attempts.saturating_add(1);
        req.stage = stage;
        count(&mut self.counters.attempts);
        match self.lifecycle.token(now) {
            Some((token, generation)) => {
                req.generation = Some(generation);
                Authorize::Send { token, generation }
            }
            // Checked above; kept total rather than panicking.
            None => Authorize::Wait { until: None, reason: WaitReason::Token },
        }
    }

    /// Reports the API's answer to the attempt last authorized for `req`, and returns what to do.
    #[inline(never)]
    pub fn handle_response<Hd: Headers + ?Sized>(
        &mut self,
        now: Instant,
        req: &mut RequestState,
        status: u16,
        headers: &Hd,
        body: &[u8],
    ) -> Verdict {
        let stage = core::mem::replace(&mut req.stage, Stage::Ready);
        // The probe of a long hold was answered, and not with a 429: the hold is over.
        if core::mem::take(&mut req.quota_probe) && status != 429 {
            self.pacer.lift_hold();
        }
        // One pass over the names, where the headers can list them: most answers hold no
        // rate-limit field.
        let listed = headers.any_name(names_rate_limit);
        if plainly_successful(status, listed) {
            // What `classify` says of it: a success, and nothing to keep.
            self.report_to_host_breaker(now, req.spec.host, CallEnd::Success);
            return Verdict::Done;
        }
        // Only waits need the reference: an ordinary answer is judged without its `Date`.
        let reference =
            if needs_reference(status, listed) { self.reference(now, headers) } else { None };
        let mut classified = classify(status, headers, body, reference, false, listed);
        if let Some(snapshot) = &classified.rate_limit {
            self.pacer.observe_for(now, snapshot, req.generation);
        }
        // Masked now, while the token that was sent is still held (a 401 drops it below).
        // A success's or a permanent answer's correlation id is not kept: nothing to mask.
        if !matches!(classified.class, ResponseClass::Success | ResponseClass::Permanent { .. }) {
            self.mask_classified(now, &mut classified);
        }
        // The host answered: a success for its breaker, but for a transient error. A 429 is
        // the pacer's business, not an outage: the breaker is not charged (a probe goes back).
        let end = match classified.class {
            ResponseClass::Transient { .. } => Some(CallEnd::Failure),
            ResponseClass::RateLimited { .. } => match stage {
                Stage::Probe(ticket) => Some(CallEnd::Abandoned(ticket)),
                Stage::Ready | Stage::Sent => None,
            },
            _ => Some(CallEnd::Success),
        };
        if let Some(end) = end {
            self.report_to_host_breaker(now, req.spec.host, end);
        }
        let mut verdict = match classified.class {
            ResponseClass::Success | ResponseClass::Permanent { .. } => Verdict::Done,
            ResponseClass::Forbidden(_) => Verdict::Fail(ApiError::new(ApiErrorKind::Forbidden)),
            ResponseClass::Unauthorized { .. } => {
                count(&mut self.counters.unauthorized);
                if let Some(generation) = req.generation {
                    let _ = self.lifecycle.invalidate(now, generation);
                    self.drain_lifecycle_events();
                }
                if req.reauthenticated {
                    Verdict::Fail(ApiError::new(ApiErrorKind::Unauthorized))
                } else {
                    req.reauthenticated = true;
                    count(&mut self.counters.retries);
                    Verdict::Retry {
                        at: now,
                        reason: RetryReason::Reauthenticate,
                        source: WaitSource::Backoff,
                    }
                }
            }
            ResponseClass::RateLimited { retry_after, .. } => {
                count(&mut self.counters.rate_limited);
                // Everyone waits as the server asked. Waits longer than the retry policy
                // accepts (a daily quota's hours, a bogus "forever") fail fast in `authorize`,
                // with one probe per `max_wait` from now on.
                self.pacer.on_rate_limited_for(now, retry_after, req.generation);
                self.pacer.defer_quota_probe(now, self.config.retry.max_wait);
                let until = now.saturating_add(retry_after.unwrap_or(Duration::ZERO));
                let correlation_id = classified.correlation_id.clone();
                self.push(Event::RateLimited { until, correlation_id });
                self.retry(now, req, Failure::RateLimited, retry_after, RetryReason::RateLimited)
            }
            ResponseClass::Transient { status, retry_after } => {
                let failure = if status == 503 && retry_after.is_some() {
                    Failure::TransientNotProcessed
                } else {
                    Failure::Transient
                };
                self.retry(now, req, failure, retry_after, RetryReason::ServerError(status))
            }
        };
        if let Verdict::Fail(error) = &mut verdict {
            error.status = Some(status);
            let kept = &mut self.last_response_failure;
            kept.correlation_id = classified.correlation_id;
            kept.forbidden = match classified.class {
                ResponseClass::Forbidden(diagnosis) => Some(diagnosis),
                _ => None,
            };
            count(&mut self.counters.failed);
        }
        verdict
    }

    /// Masks the client's credentials in what the session keeps of an API response: its
    /// correlation id and a 403's diagnosis (the Genesys message and code, the challenge's
    /// scope and `error_description`).
    fn mask_classified(&self, now: Instant, classified: &mut crate::classify::Classified) {
        let secrets = self.secrets(now);
        if let Some(id) = classified.correlation_id.as_mut() {
            id.mask(&secrets);
        }
        if let ResponseClass::Forbidden(d) = &mut classified.class {
            mask_diagnosis(&secrets, d);
        }
    }

    /// Masks `token` too wherever the session keeps a server's text of its last failures (what
    /// [`error_detail`](Self::error_detail) names: a failed request's correlation id and
    /// diagnosis, the last token failure's report), by the rules of [`crate::redact`] (an echo
    /// cut at the end of a full text included).
    ///
    /// For an adapter whose requests may be answered after the token they were sent with was
    /// replaced (a refresh while they were in flight, another request's 401) or dropped (past
    /// its usable-until point): the session masks the token it holds only, as an answer
    /// arrives. Call it before reading the detail, with each such token.
    pub fn mask_in_failures(&mut self, token: &str) {
        let secrets = crate::redact::Secrets::new(&self.credentials, Some(token), None);
        let kept = &mut self.last_response_failure;
        if let Some(id) = kept.correlation_id.as_mut() {
            id.mask(&secrets);
        }
        if let Some(d) = kept.forbidden.as_mut() {
            mask_diagnosis(&secrets, d);
        }
        if let Some(report) = self.last_token_failure.as_mut() {
            super::token::mask_report(&secrets, report);
        }
    }

    /// Reports that the attempt last authorized for `req` failed in transport.
    pub fn handle_transport_error(
        &mut self,
        now: Instant,
        req: &mut RequestState,
        kind: TransportKind,
    ) -> Verdict {
        // Failed at or past the request's own deadline: cut there by the adapter (each attempt
        // is bounded by it), the caller's limit rather than a failure of the host's. Its
        // breaker is not told (a probe is released), and the retry policy gives up.
        let past_deadline = req.spec.deadline.is_some_and(|d| now >= d);
        if !past_deadline {
            req.stage = Stage::Ready;
            let host = req.spec.host;
            self.report_to_host_breaker(now, host, CallEnd::Failure);
        }
        // Also: a probe of a long hold that got no answer found nothing out (`abandon`).
        self.abandon(now, req);
        let verdict =
            self.retry(now, req, Failure::Transport(kind), None, RetryReason::Transport(kind));
        if matches!(verdict, Verdict::Fail(_)) {
            count(&mut self.counters.failed);
        }
        verdict
    }

    /// The caller gave up on `req` (cancelled, timed out on its side) while an attempt was in
    /// flight: release what it held (a breaker probe). Harmless otherwise.
    pub fn abandon(&mut self, now: Instant, req: &mut RequestState) {
        // A probe of a long hold that got no answer found nothing out: a later attempt of this
        // request is no probe unless it is made one again, and its answer must not lift a hold
        // set meanwhile.
        req.quota_probe = false;
        if let Stage::Probe(ticket) = core::mem::replace(&mut req.stage, Stage::Ready) {
            let host = req.spec.host;
            self.report_to_host_breaker(now, host, CallEnd::Abandoned(ticket));
        }
    }

    fn retry(
        &mut self,
        now: Instant,
        req: &mut RequestState,
        failure: Failure,
        retry_after: Option<Duration>,
        reason: RetryReason,
    ) -> Verdict {
        let attempt = Attempt {
            method: req.spec.method,
            idempotent: req.spec.idempotent,
            retries_done: req.retries,
            deadline: req.spec.deadline,
        };
        match self.config.retry.decide(
            now,
            &attempt,
            failure,
            retry_after,
            &mut self.budget,
            &mut self.rng,
        ) {
            RetryDecision::RetryAt { at, source, .. } => {
                // A retry into an open breaker would only be refused later: say so now.
                if let Some(until) = self.host_open_until(req.spec.host) {
                    return Verdict::Fail(ApiError::new(ApiErrorKind::CircuitOpen { until }));
                }
                req.retries = req.retries.saturating_add(1);
                req.not_before = at;
                count(&mut self.counters.retries);
                Verdict::Retry { at, reason, source }
            }
            RetryDecision::GiveUp(give_up) => {
                Verdict::Fail(ApiError::new(ApiErrorKind::GaveUp { reason: give_up, last: reason }))
            }
        }
    }

    /// Counts a failed request and answers it with an error of `kind`.
    fn fail(&mut self, kind: ApiErrorKind) -> Authorize<'_, N, S> {
        self.fail_with(ApiError::new(kind))
    }

    /// Counts a failed request and answers it with `error`.
    fn fail_with(&mut self, error: ApiError) -> Authorize<'_, N, S> {
        count(&mut self.counters.failed);
        Authorize::Fail(error)
    }

    pub(super) fn retry_after<Hd: Headers + ?Sized>(
        &self,
        now: Instant,
        headers: &Hd,
    ) -> Option<Duration> {
        let value = headers.get("retry-after")?;
        crate::http::retry_after::parse_retry_after(value)?.delay(self.reference(now, headers))
    }
}

/// What the session keeps of the last API response that failed a request, for
/// [`Session::error_detail`]: its correlation id and a 403's diagnosis, masked.
#[derive(Clone, Debug, Default)]
pub(super) struct ResponseFailure {
    pub(super) correlation_id: Option<CorrelationId>,
    pub(super) forbidden: Option<Diagnosis>,
}

/// Masks `secrets` in a 403's diagnosis: the server's message, the missing items, its code.
fn mask_diagnosis(secrets: &crate::redact::Secrets<'_>, d: &mut Diagnosis) {
    secrets.mask(d.message.as_mut_view());
    secrets.mask(d.missing.as_mut_view());
    if let Some(code) = d.code.as_mut() {
        secrets.mask(code.as_mut_view());
    }
}
