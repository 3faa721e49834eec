//! The session's deadlines and the events it queues for the caller.

use heapless::Deque;

use super::{HostKey, SESSION_EVENT_CAPACITY, Session, TokenFailureReport, TokenProblem, count};
use crate::breaker::{BreakerEvent, CircuitBreaker};
use crate::classify::CorrelationId;
use crate::lifecycle::{LifecycleEvent, Wake};
use crate::oauth::{ScopeCheck, TokenErrorClass};
use crate::secret::TokenStorage;
use crate::time::Instant;

/// Which breaker an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum BreakerTarget {
    /// The token endpoint.
    TokenEndpoint,
    /// An API host.
    Host(HostKey),
}

/// Something worth logging or counting. Drained with [`Session::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Event {
    /// A token lifecycle event (acquired, refresh failed, expired, invalidated, rejected).
    Token(LifecycleEvent),
    /// The token endpoint answered with an error, or granted a token that had already expired
    /// (`expires_in` zero or less); [`Session::last_token_error`] has the details.
    TokenEndpointError {
        /// The HTTP status.
        status: u16,
        /// How the error was classified.
        class: TokenErrorClass,
    },
    /// A token was granted with less (or other) scope than requested.
    ScopeMismatch(ScopeCheck),
    /// A circuit breaker changed state.
    Breaker {
        /// Which breaker.
        target: BreakerTarget,
        /// What happened.
        event: BreakerEvent,
    },
    /// A 429 arrived: nothing but critical calls goes out before `until`.
    RateLimited {
        /// Until when.
        until: Instant,
        /// The correlation id, if any.
        correlation_id: Option<CorrelationId>,
    },
}

/// Why [`Session::poll_timeout`] wants attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reason {
    /// A token request becomes due: call [`Session::poll_token_request`].
    TokenRequestDue,
    /// The in-flight token request is overdue.
    TokenRequestTimeout,
    /// The usable token expires; waiters may need to be told.
    TokenExpiry,
    /// A breaker becomes half-open.
    BreakerHalfOpen,
}

impl<const N: usize, const H: usize, const E: usize, S: TokenStorage> Session<N, H, E, S> {
    /// The next instant at which the session has work, and why. `None`: nothing scheduled
    /// (waiters are woken by events).
    pub fn poll_timeout(&self) -> Option<(Instant, Reason)> {
        let lifecycle = self.lifecycle.poll_timeout().map(|(at, wake)| match wake {
            Wake::RequestDue => (
                self.token_breaker.next_change().map_or(at, |c| at.max(c)),
                Reason::TokenRequestDue,
            ),
            Wake::RequestTimeout => (at, Reason::TokenRequestTimeout),
            Wake::TokenExpiry => (at, Reason::TokenExpiry),
        });
        // The earliest breaker change, if earlier than the lifecycle's (which wins a tie).
        let mut next = lifecycle;
        let changes = self.hosts.iter().map(|(_, b, _)| b).chain([&self.token_breaker]);
        for at in changes.filter_map(CircuitBreaker::next_change) {
            if next.is_none_or(|(earliest, _)| at < earliest) {
                next = Some((at, Reason::BreakerHalfOpen));
            }
        }
        next
    }

    /// Processes deadlines that have passed at `now`. Safe to call at any time.
    #[inline(never)]
    pub fn handle_timeout(&mut self, now: Instant) {
        let was_in_flight = self.lifecycle.in_flight();
        self.lifecycle.handle_timeout(now, &mut self.rng);
        if was_in_flight && !self.lifecycle.in_flight() {
            // The token request timed out: an outage as far as the breaker is concerned.
            self.last_token_failure = Some(TokenFailureReport {
                problem: TokenProblem::TimedOut,
                correlation_id: None,
                retry_after: None,
            });
            count(&mut self.counters.token_failures);
            self.token_probe = None;
            self.token_breaker.on_failure(now, &mut self.rng);
        }
        self.token_breaker.handle_timeout(now);
        for (_, breaker, _) in self.hosts.iter_mut() {
            breaker.handle_timeout(now);
        }
        self.drain_breaker_events();
        self.drain_lifecycle_events();
    }

    /// Whether [`poll_event`](Self::poll_event) has an event to give: a look at the queues
    /// without taking from them, cheaper than asking when none is queued (after most calls).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
            || self.lifecycle.has_events()
            || self.token_breaker.has_events()
            || self.hosts.iter().any(|(_, breaker, _)| breaker.has_events())
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.drain_lifecycle_events();
        self.drain_breaker_events();
        self.events.pop_front()
    }

    pub(super) fn push(&mut self, event: Event) {
        push_dropping_oldest(&mut self.events, event);
    }

    pub(super) fn drain_lifecycle_events(&mut self) {
        while let Some(e) = self.lifecycle.poll_event() {
            self.push(Event::Token(e));
        }
    }

    /// Takes the events of the token endpoint's breaker, then of each host's, counting trips.
    pub(super) fn drain_breaker_events(&mut self) {
        let Session { token_breaker, hosts, events, counters, .. } = self;
        let mut drain = |target, breaker: &mut CircuitBreaker| {
            while let Some(event) = breaker.poll_event() {
                if matches!(event, BreakerEvent::Opened { .. }) {
                    count(&mut counters.breaker_trips);
                }
                push_dropping_oldest(events, Event::Breaker { target, event });
            }
        };
        drain(BreakerTarget::TokenEndpoint, token_breaker);
        for (key, breaker, _) in hosts.iter_mut() {
            drain(BreakerTarget::Host(*key), breaker);
        }
    }
}

/// Queues `event`, dropping the oldest when the queue is full.
fn push_dropping_oldest(events: &mut Deque<Event, SESSION_EVENT_CAPACITY>, event: Event) {
    if events.is_full() {
        let _ = events.pop_front();
    }
    let _ = events.push_back(event);
}
