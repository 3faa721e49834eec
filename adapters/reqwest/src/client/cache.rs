//! The token cache: the session's usable token published for lock-free reads, the version
//! waiters watch, the session's events forwarded, and the wait for a token.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use credflow_core::classify::CorrelationId;
use credflow_core::lifecycle::{Generation, LifecycleEvent};
use credflow_core::session::{Event, TokenProblem, TokenStatus};
use credflow_core::{Duration, Instant};
use tracing::{Instrument, debug, info, warn};
use zeroize::Zeroizing;

use super::send::bearer;
use super::{
    Cached, ClientEvent, CoreSession, RETIRED_TOKENS, SessionCell, Shared, Token, TokenInner,
    core_duration,
};
use crate::error::Error;

impl Shared {
    pub(super) fn cached(&self) -> Option<Token> {
        let guard = self.cache.load();
        let cached = guard.as_ref()?;
        (tokio::time::Instant::now() < cached.usable_until).then(|| cached.token.clone())
    }

    /// Whether a usable token is cached (as [`cached`](Self::cached), without a clone).
    pub(super) fn has_cached(&self) -> bool {
        let guard = self.cache.load();
        guard.as_ref().is_some_and(|cached| tokio::time::Instant::now() < cached.usable_until)
    }

    /// The generation of the cached token, if any (usable or not).
    pub(super) fn cached_generation(&self) -> Option<Generation> {
        self.cache.load().as_ref().map(|cached| cached.token.0.generation)
    }

    /// The span of the latest token request (see `driver::fetch_span`), for a request that
    /// waited for a token to link to.
    pub(super) fn last_fetch(&self) -> Option<tracing::Span> {
        super::locked(&self.last_fetch).clone()
    }

    /// Tells the session the wall-clock time when it has not been told for a second (it
    /// extrapolates in between on the monotonic clock): the reference for epoch resets in
    /// responses without a `Date`. One read of the system clock per second, not per request.
    pub(super) fn refresh_wall_clock(&self, session: &mut CoreSession, now: Instant) {
        const EVERY_MS: u64 = 1000;
        let set = self.wall_set_at.load(Ordering::Relaxed);
        // `u64::MAX` until the first time.
        if set == u64::MAX || now.as_millis().saturating_sub(set) >= EVERY_MS {
            session.set_wall_clock(self.clock.wall(now));
            self.wall_set_at.store(now.as_millis(), Ordering::Relaxed);
        }
    }

    /// Publishes the session's usable token to the lock-free cache (or withdraws it), its
    /// header beside the session, and wakes waiters when it changed.
    pub(super) fn sync_cache(&self, session: &mut SessionCell, now: Instant) {
        let previous = self.cache.load_full();
        let current = previous.as_ref().map(|c| c.token.0.generation);
        // A token replaced or dropped is kept a while for masking (`SessionCell::retired`).
        let retire = |session: &mut SessionCell| {
            let Some(previous) = previous.as_ref() else { return };
            let retired = &mut session.retired;
            let now = tokio::time::Instant::now();
            retired.retain(|(token, expires_at)| {
                *expires_at > now && token.0.generation != previous.token.0.generation
            });
            retired.push((previous.token.clone(), previous.token.0.expires_at));
            if retired.len() > RETIRED_TOKENS {
                retired.remove(0);
            }
        };
        match session.token(now) {
            Some((token, times)) if current != Some(times.generation) => {
                let inner = TokenInner {
                    value: Zeroizing::new(token.as_str().to_owned()),
                    header: bearer(token),
                    generation: times.generation,
                    fingerprint: token.fingerprint(),
                    expires_at: self.clock.to_tokio(times.expires_at),
                };
                retire(session);
                session.header = Some((inner.generation, inner.header.clone()));
                self.cache.store(Some(Arc::new(Cached {
                    token: Token(Arc::new(inner)),
                    usable_until: self.clock.to_tokio(times.usable_until),
                })));
                self.version.send_modify(|v| *v = v.wrapping_add(1));
            }
            Some(_) => {}
            None if current.is_some() => {
                retire(session);
                session.header = None;
                self.cache.store(None);
                self.version.send_modify(|v| *v = v.wrapping_add(1));
            }
            None => {}
        }
        // The lane's token is the published one: a change of token changes the lane.
        self.sync_lane(session, now);
    }

    /// After a change to the session: its events forwarded, its token published (both wake
    /// waiters when something they wait for changed).
    pub(super) fn settle(&self, session: &mut SessionCell, now: Instant) {
        self.drain(session);
        self.sync_cache(session, now);
    }

    /// Forwards the session's events to `tracing` and to subscribers; wakes waiters when a
    /// breaker changed (a request waiting for a probe's outcome).
    pub(super) fn drain(&self, session: &mut SessionCell) {
        let _ = self.drain_with(session, |_| {});
    }

    /// [`drain`](Self::drain), showing each event to `observe` too; `true` if one of them was
    /// the token's (acquired, invalidated, …), after which the cache needs syncing.
    pub(super) fn drain_with(
        &self,
        session: &mut SessionCell,
        mut observe: impl FnMut(&Event),
    ) -> bool {
        // Most calls raise no event: a look at the queues, not a pass that takes from each.
        if !session.has_events() {
            return false;
        }
        let mut wake = false;
        let mut token = false;
        while let Some(mut event) = session.poll_event() {
            // A 429 answering a request sent before a refresh may echo the token it was sent
            // with: the session masked its correlation id with the token it holds only.
            if let Event::RateLimited { correlation_id, .. } = &mut event {
                let masked =
                    correlation_id.as_ref().and_then(|id| match session.unretired(id.as_str()) {
                        std::borrow::Cow::Owned(masked) => Some(masked),
                        std::borrow::Cow::Borrowed(_) => None,
                    });
                if let Some(masked) = masked {
                    *correlation_id = CorrelationId::new(&masked);
                }
            }
            observe(&event);
            wake |= matches!(event, Event::Breaker { .. });
            token |= matches!(event, Event::Token(_));
            match &event {
                Event::Token(LifecycleEvent::TokenAcquired { generation, life, .. }) => {
                    info!(generation = generation.0, life = %life, "token acquired")
                }
                Event::Token(e @ LifecycleEvent::RequestFailed { .. }) => {
                    // An error answer was logged with its event; anything else (an unusable
                    // answer, a transport failure) is named here.
                    match session.last_token_failure() {
                        Some(report) if !matches!(report.problem, TokenProblem::Refused(_)) => {
                            let correlation_id = report
                                .correlation_id
                                .as_ref()
                                .map(|c| session.unretired(c.as_str()).into_owned())
                                .unwrap_or_default();
                            let error = session.unretired(&report.to_string()).into_owned();
                            warn!(%error, %correlation_id, "token request failed")
                        }
                        _ => debug!(event = ?e, "token lifecycle"),
                    }
                }
                Event::Token(e) => debug!(event = ?e, "token lifecycle"),
                Event::TokenEndpointError { status, class } => {
                    let detail = session.last_token_error().map(|(e, c)| {
                        let correlation_id = c.map(|c| c.as_str()).unwrap_or_default();
                        (
                            session.unretired(&e.to_string()).into_owned(),
                            session.unretired(correlation_id).into_owned(),
                        )
                    });
                    let (error, correlation_id) = detail.unwrap_or_default();
                    warn!(status, ?class, %error, %correlation_id, "token endpoint error")
                }
                Event::Breaker { target, event } => warn!(?target, ?event, "circuit breaker"),
                Event::RateLimited { until, correlation_id } => {
                    let id =
                        correlation_id.as_ref().map(|c| c.as_str().to_owned()).unwrap_or_default();
                    info!(until = %until, correlation_id = %id, "rate limited")
                }
                other => debug!(event = ?other, "session event"),
            }
            self.emit(|| ClientEvent::Session(event));
        }
        if wake {
            self.version.send_modify(|v| *v = v.wrapping_add(1));
        }
        token
    }

    /// Waits for a token until `token_wait` has passed. The session decides when waiting no
    /// longer helps (a rejection, an open breaker, a next attempt after the deadline, the
    /// deadline itself) and names the last token failure; this only relays its answer.
    ///
    /// In a span, `credflow.token_wait`, that follows from the token request's span (the
    /// refresh it waited for), with the generation of the token it got or the `error.type`.
    pub(super) async fn wait_for_token(&self) -> Result<Token, Error> {
        let span = tracing::info_span!(
            "credflow.token_wait",
            "credflow.token.generation" = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
        );
        let result = self.wait_for_token_unlinked().instrument(span.clone()).await;
        if !span.is_disabled() {
            if let Some(fetch) = self.last_fetch() {
                span.follows_from(&fetch);
            }
            match &result {
                Ok(token) => span.record("credflow.token.generation", token.generation()),
                Err(error) => span.record("error.type", tracing::field::debug(error.kind())),
            };
        }
        result
    }

    async fn wait_for_token_unlinked(&self) -> Result<Token, Error> {
        let mut version = self.version.subscribe();
        let deadline = self.clock.now().saturating_add(core_duration(self.token_wait));
        // The session's check fails once `now` is past the deadline: wake just after it.
        let give_up = self.clock.to_tokio(deadline.saturating_add(Duration::from_millis(1)));
        loop {
            version.borrow_and_update();
            self.open()?;
            if let Some(token) = self.cached() {
                return Ok(token);
            }
            let now = self.clock.now();
            let until = {
                let mut session = self.lock();
                let status = match session.check_token_before(now, Some(deadline)) {
                    TokenStatus::Ready(..) => None,
                    TokenStatus::Pending { until } => Some(until),
                    TokenStatus::Unavailable(e) => return Err(session.detail(e).into()),
                };
                self.sync_cache(&mut session, now);
                self.drain(&mut session);
                status
            };
            let Some(until) = until else { continue };
            self.kick.notify_one();
            let wake = until.map_or(give_up, |at| self.clock.to_tokio(at).min(give_up));
            tokio::select! {
                _ = version.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}
