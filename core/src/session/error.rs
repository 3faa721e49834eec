//! What a caller is told when a request fails, and what the session records of a failed token request.

use core::fmt;

use heapless::String;

use super::RetryReason;
use crate::classify::{CorrelationId, Diagnosis};
use crate::lifecycle::RejectReason;
use crate::oauth::{OAuthError, ResponseError};
use crate::retry::policy::{GiveUpReason, TransportKind};
use crate::time::{Duration, Instant};

/// What went wrong, in terms a caller can act on: small and `Copy`, to return and keep by value.
///
/// What the server said about it (its error text and codes, a 403's diagnosis, the correlation
/// id) stays in the session that returned the error, read on request with
/// [`Session::error_detail`](super::Session::error_detail), as the last token failure is read
/// with [`Session::last_token_failure`](super::Session::last_token_failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ApiError {
    /// What happened.
    pub kind: ApiErrorKind,
    /// The HTTP status of the last response, if there was one.
    pub status: Option<u16>,
}

/// The kinds of [`ApiError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// The token endpoint refused the credentials, or answered in a way no retry soon can
    /// change (a redirect: see `reason`); no token request goes out until the recheck
    /// ([`ErrorDetail::next_probe_at`], after
    /// [`LifecycleConfig::recheck_after`](crate::lifecycle::LifecycleConfig::recheck_after)) or
    /// until the credentials change. The server's error, when it sent one, is the session's
    /// [`last_token_error`](super::Session::last_token_error).
    CredentialsRejected {
        /// Why, in OAuth terms.
        reason: RejectReason,
    },
    /// No token could be obtained in time: the token endpoint is down or rate-limited, its
    /// breaker is open, the next token request would come after the caller's deadline, or its
    /// answers cannot be used as tokens. `retry_at` says when the next token request is planned
    /// (`None`: none is, until the configuration changes, or one is in flight). What went
    /// wrong with the last token request is the session's
    /// [`last_token_failure`](super::Session::last_token_failure) (the error's `status` is its
    /// status).
    TokenUnavailable {
        /// When the next token request may go out.
        retry_at: Option<Instant>,
    },
    /// The API rejected a fresh token too (401 twice).
    Unauthorized,
    /// 403: the client lacks a permission or scope. Not retried. The server's diagnosis is in
    /// the session's [`error_detail`](super::Session::error_detail).
    Forbidden,
    /// The circuit breaker for this host is open until `until`.
    CircuitOpen {
        /// When it lets a probe through.
        until: Instant,
    },
    /// The retry policy gave up.
    GaveUp {
        /// Why it gave up.
        reason: GiveUpReason,
        /// What the last attempt hit.
        last: RetryReason,
    },
    /// The request's deadline passed before it could be sent.
    DeadlineExceeded {
        /// When it could have been sent, where the session knew: the end of the rate-limit
        /// wait (the server's, or the share kept for higher priorities) that reaches past the
        /// deadline, within the retry policy's `max_wait` (a longer wait fails
        /// [`GaveUp`](ApiErrorKind::GaveUp) naming it, whatever the deadline). `None` when the
        /// deadline passed while waiting for something else.
        sendable_at: Option<Instant>,
    },
}

impl ApiError {
    pub(super) const fn new(kind: ApiErrorKind) -> Self {
        ApiError { kind, status: None }
    }

    /// A one-line explanation of the likely cause. [`ErrorDetail::likely_cause`] is more
    /// specific about a failed token request.
    pub fn likely_cause(&self) -> &'static str {
        match &self.kind {
            ApiErrorKind::CredentialsRejected { reason } => reason.likely_cause(),
            ApiErrorKind::TokenUnavailable { .. } if self.status.is_some() => {
                "the token endpoint's answer was not a token: the session's last token failure says why"
            }
            ApiErrorKind::TokenUnavailable { .. } => {
                "the token endpoint did not answer in time: unreachable, overloaded or in maintenance"
            }
            ApiErrorKind::Unauthorized => {
                "a fresh token was rejected too: the token belongs to another environment, or the OAuth client was disabled"
            }
            ApiErrorKind::Forbidden => {
                "the OAuth client's roles lack a permission this request needs"
            }
            ApiErrorKind::CircuitOpen { .. } => {
                "the API host failed repeatedly; requests are held back until it recovers"
            }
            ApiErrorKind::GaveUp { reason, .. } => reason.likely_cause(),
            ApiErrorKind::DeadlineExceeded { .. } => "the request's deadline passed while waiting",
        }
    }

    /// What happened, without the server's details ([`ErrorDetail`] adds them).
    fn write_summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ApiErrorKind::CredentialsRejected { reason } => f.write_str(match reason {
                // A redirect or an unusable answer stops token requests too, but says nothing
                // about the credentials.
                RejectReason::Redirected | RejectReason::UnusableResponse => {
                    "token requests stopped"
                }
                _ => "credentials rejected",
            }),
            ApiErrorKind::TokenUnavailable { .. } => f.write_str("no token available"),
            ApiErrorKind::Unauthorized => f.write_str("unauthorized (401) even with a fresh token"),
            ApiErrorKind::Forbidden => f.write_str("forbidden (403)"),
            ApiErrorKind::CircuitOpen { until } => write!(f, "circuit open until {until}"),
            // credflow's pacing held the request: no attempt hit anything.
            ApiErrorKind::GaveUp {
                reason:
                    reason @ (GiveUpReason::ReservedForOthers { .. }
                    | GiveUpReason::SpacingTooLong { .. }),
                ..
            } => write!(f, "gave up: {reason}"),
            ApiErrorKind::GaveUp { reason, last } => write!(f, "gave up after {last:?}: {reason}"),
            ApiErrorKind::DeadlineExceeded { .. } => f.write_str("deadline exceeded"),
        }
    }
}

impl fmt::Display for ApiError {
    /// `credentials rejected (InvalidClient)`, `no token available: the token endpoint answered
    /// HTTP 503`, `forbidden (403)`: what happened and the status, without the server's text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_summary(f)?;
        match (&self.kind, self.status) {
            (ApiErrorKind::CredentialsRejected { reason }, _) => write!(f, " ({reason:?})"),
            (ApiErrorKind::TokenUnavailable { .. }, Some(status)) => {
                write!(f, ": the token endpoint answered HTTP {status}")
            }
            (ApiErrorKind::TokenUnavailable { .. }, None) => {
                f.write_str(": the token endpoint did not answer")
            }
            _ => Ok(()),
        }
    }
}

impl core::error::Error for ApiError {}

/// An [`ApiError`] with what the server said about it, borrowed from the session that returned
/// it ([`Session::error_detail`](super::Session::error_detail)): the last failed token
/// request for the token kinds, the answer's correlation id and a 403's diagnosis for the
/// others. Every text in it that came from the server is bounded and has the client's
/// credentials masked ([`crate::redact`]).
#[derive(Clone, Copy, Debug)]
pub struct ErrorDetail<'s> {
    pub(super) error: ApiError,
    pub(super) token_failure: Option<&'s TokenFailureReport>,
    pub(super) correlation_id: Option<&'s CorrelationId>,
    pub(super) forbidden: Option<&'s Diagnosis>,
    pub(super) next_probe_at: Option<Instant>,
}

impl<'s> ErrorDetail<'s> {
    /// The error.
    pub fn error(&self) -> ApiError {
        self.error
    }

    /// For [`CredentialsRejected`](ApiErrorKind::CredentialsRejected) and
    /// [`TokenUnavailable`](ApiErrorKind::TokenUnavailable): the last failed token request.
    pub fn token_failure(&self) -> Option<&'s TokenFailureReport> {
        self.token_failure
    }

    /// The server's error for a refused token request (RFC 6749 §5.2), if it sent one.
    pub fn oauth(&self) -> Option<&'s OAuthError> {
        match &self.token_failure?.problem {
            TokenProblem::Refused(e) => Some(e),
            _ => None,
        }
    }

    /// For [`Forbidden`](ApiErrorKind::Forbidden): what the server said was missing.
    pub fn forbidden(&self) -> Option<&'s Diagnosis> {
        self.forbidden
    }

    /// For [`CredentialsRejected`](ApiErrorKind::CredentialsRejected), and
    /// [`TokenUnavailable`](ApiErrorKind::TokenUnavailable) after an answer the client cannot
    /// use stopped token requests: when one token request checks whether the cause is gone
    /// ([`LifecycleConfig::recheck_after`](crate::lifecycle::LifecycleConfig::recheck_after)
    /// after the rejection, doubling per rejection in a row); callers fail fast until then.
    /// `None` when rechecks are off (stopped until the credentials change) or the recheck is
    /// in flight.
    ///
    /// For a request given up on a rate limit's wait longer than the retry policy's
    /// `max_wait` ([`GiveUpReason::WaitTooLong`] after a 429, or while the server's limit
    /// holds the requests back): when the session lets its next request out as the probe of
    /// that limit ([`Pacer::take_quota_probe`](crate::ratelimit::pacer::Pacer::take_quota_probe)),
    /// `max_wait` after the last 429 or probe at the latest. Sooner than the wait the error
    /// names, which may be hours, or years from a bogus `Retry-After`, and the earliest a
    /// request can find out that the limit was lifted: what to tell a caller that retries on
    /// its own (`credflow proxy` caps the `Retry-After` it relays with it). The probe is one
    /// request, the first to ask then; the others still fail until it is answered.
    ///
    /// `None` for the other errors, and, for a rate limit, without the core's `diagnosis`
    /// feature, where a long hold of credflow's own pacing, which is never probed, is a
    /// `WaitTooLong` too.
    pub fn next_probe_at(&self) -> Option<Instant> {
        self.next_probe_at
    }

    /// The platform's correlation id (`ININ-Correlation-Id`, `X-Request-Id` or `contextId`)
    /// of the answer the error is about.
    pub fn correlation_id(&self) -> Option<&'s CorrelationId> {
        self.correlation_id
    }

    /// The server's code: the OAuth error code (`invalid_client`) or the Genesys body's
    /// (`missing.permissions`).
    pub fn code(&self) -> Option<&'s str> {
        match self.forbidden {
            Some(diagnosis) => diagnosis.code.as_deref(),
            None => self.oauth().and_then(|e| e.code.as_ref()).map(|code| code.as_str()),
        }
    }

    /// A one-line explanation of the likely cause: the last token failure's, else the error's.
    pub fn likely_cause(&self) -> &'static str {
        match (self.error.kind, self.token_failure) {
            (ApiErrorKind::TokenUnavailable { .. }, Some(report)) => report.likely_cause(),
            _ => self.error.likely_cause(),
        }
    }
}

impl fmt::Display for ErrorDetail<'_> {
    /// `credentials rejected: invalid_client (HTTP 401): …`, `no token available: HTTP 200:
    /// token response is not a JSON object (…)`, `forbidden (403): missing permission …`, each
    /// followed by ` [correlation id …]` where there was one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.error.kind, self.token_failure, self.forbidden) {
            (ApiErrorKind::CredentialsRejected { .. }, _, _) if self.oauth().is_some() => {
                self.error.write_summary(f)?;
                if let Some(e) = self.oauth() {
                    write!(f, ": {e}")?;
                }
            }
            (ApiErrorKind::TokenUnavailable { .. }, Some(report), _) => {
                self.error.write_summary(f)?;
                write!(f, ": {report}")?;
            }
            (ApiErrorKind::Forbidden, _, Some(diagnosis)) => {
                self.error.write_summary(f)?;
                write!(f, ": {diagnosis}")?;
            }
            _ => write!(f, "{}", self.error)?,
        }
        if let Some(id) = self.correlation_id {
            write!(f, " [correlation id {id}]")?;
        }
        Ok(())
    }
}

/// Capacity of [`TokenProblem::Unusable`]'s media type, in bytes.
pub const CONTENT_TYPE_CAPACITY: usize = 48;

/// What went wrong with a token request.
// Kept in the session by value; boxing is not available without an allocator.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenProblem {
    /// The token endpoint answered with an error status (RFC 6749 §5.2).
    Refused(OAuthError),
    /// A success status whose body is not a usable token response (RFC 6749 §5.1): an HTML page
    /// from a proxy or captive portal, invalid JSON, no `access_token`, a `token_type` other
    /// than `Bearer`, a token with a character an HTTP header cannot carry, an OAuth error body
    /// with a success status.
    Unusable {
        /// The HTTP status.
        status: u16,
        /// What was wrong with the body.
        error: ResponseError,
        /// The media type of `Content-Type` (`text/html`), if there was one (cut to
        /// [`CONTENT_TYPE_CAPACITY`] bytes, control characters replaced by spaces). Recorded
        /// with the `diagnosis` feature only.
        content_type: Option<String<CONTENT_TYPE_CAPACITY>>,
    },
    /// No answer: the request failed in transport.
    Transport(TransportKind),
    /// No answer within the lifecycle's request timeout.
    TimedOut,
}

/// The last failed token request, as the session recorded it: what went wrong, the
/// correlation id and the wait the server asked for. Every text in it that came from the server
/// is bounded and has the client's credentials masked ([`crate::redact`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFailureReport {
    /// What went wrong.
    pub problem: TokenProblem,
    /// The platform's correlation id of the answer, if there was one.
    pub correlation_id: Option<CorrelationId>,
    /// The wait the server asked for (`Retry-After`), as it asked. The lifecycle waits at most
    /// [`LifecycleConfig::max_server_wait`](crate::lifecycle::LifecycleConfig::max_server_wait)
    /// for it, and never less than its own backoff after failures.
    pub retry_after: Option<Duration>,
}

impl TokenFailureReport {
    /// The HTTP status of the answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match &self.problem {
            TokenProblem::Refused(e) => Some(e.status),
            TokenProblem::Unusable { status, .. } => Some(*status),
            TokenProblem::Transport(_) | TokenProblem::TimedOut => None,
        }
    }

    /// Whether asking again may get a token without a change of configuration: a rate limit,
    /// a transient server error, a transport failure. `false` for answers that will not change
    /// by themselves: a body that is not a usable token response, or an error that is neither a
    /// rate limit nor transient (a 404 from the wrong URL).
    pub fn is_retryable(&self) -> bool {
        match &self.problem {
            TokenProblem::Refused(e) => e.class.is_retryable(),
            TokenProblem::Unusable { .. } => false,
            TokenProblem::Transport(_) | TokenProblem::TimedOut => true,
        }
    }

    /// A one-line explanation of the likely cause.
    pub fn likely_cause(&self) -> &'static str {
        // `Retry-After: 0` asks for no wait: the wait, if any, was the session's own backoff.
        if self.retry_after.is_some_and(|wait| !wait.is_zero()) {
            return "the token endpoint asked to wait before the next token request (rate-limited or in maintenance)";
        }
        match &self.problem {
            TokenProblem::Refused(e) => e.class.likely_cause(),
            TokenProblem::Unusable { error, .. } => match error {
                ResponseError::Empty | ResponseError::NotJson => {
                    "the token URL answers with something else than a token endpoint: the wrong URL, or a proxy or captive portal in between"
                }
                ResponseError::UnsupportedTokenType(_)
                | ResponseError::InvalidAccessToken(_)
                | ResponseError::TokenTooLong { .. } => {
                    "the server issues tokens credflow cannot use as bearer tokens (token type, characters or size)"
                }
                _ => {
                    "the token URL does not answer like an OAuth 2.0 token endpoint: the wrong URL, or a proxy in between"
                }
            },
            TokenProblem::Transport(_) => {
                "the token endpoint could not be reached, or the connection failed"
            }
            TokenProblem::TimedOut => "the token endpoint did not answer in time",
        }
    }
}

impl fmt::Display for TokenFailureReport {
    /// `HTTP 200: token response is not a JSON object (…) (Content-Type text/html)`;
    /// `HTTP 503, asked to wait 3600 s (Retry-After)`. The correlation id is not included: an
    /// [`ApiError`] shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            TokenProblem::Refused(e) => write!(f, "{e}")?,
            TokenProblem::Unusable { status, error, content_type } => {
                write!(f, "HTTP {status}: {error}")?;
                if let Some(media) = content_type {
                    write!(f, " (Content-Type {media})")?;
                }
            }
            TokenProblem::Transport(kind) => {
                let what = match kind {
                    TransportKind::Connect => "could not connect",
                    TransportKind::Reset => "the connection failed",
                    TransportKind::Timeout => "no answer in time",
                    TransportKind::Other => "the exchange failed",
                };
                write!(f, "the token request failed: {what}")?
            }
            TokenProblem::TimedOut => f.write_str("the token request got no answer in time")?,
        }
        if let Some(wait) = self.retry_after {
            write!(f, ", asked to wait {} s (Retry-After)", wait.as_secs_ceil())?;
        }
        Ok(())
    }
}
