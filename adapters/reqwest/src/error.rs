//! The adapter's error: what happened, the server's codes, the correlation id, the likely cause.

use std::fmt;

use credflow_core::classify::Diagnosis;
use credflow_core::lifecycle::RejectReason;
use credflow_core::retry::policy::GiveUpReason;
use credflow_core::session::{ApiError, ApiErrorKind, ErrorDetail};

/// The broad kind of an [`Error`]; each maps to one exit code of the `credflow` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is incomplete or invalid, or the token endpoint answers in a way no
    /// retry can change (a redirect, an HTML page, no `access_token`, a `token_type` other than
    /// Bearer, a 404): a setup to fix, not an outage (exit code 2).
    Config,
    /// The token endpoint rejected the credentials, or the API rejected a fresh token (exit 3).
    CredentialsRejected,
    /// A scope or permission is missing: `invalid_scope`, or 403 (exit 4).
    Permission,
    /// The service is unavailable: retries exhausted, breaker open, rate-limited beyond the
    /// longest accepted wait, token endpoint down or asking for a longer wait than the caller's,
    /// deadline passed (exit 5).
    Unavailable,
}

impl ErrorKind {
    /// The `credflow` command's exit code for this kind.
    pub const fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Config => 2,
            ErrorKind::CredentialsRejected => 3,
            ErrorKind::Permission => 4,
            ErrorKind::Unavailable => 5,
        }
    }
}

/// An error from the credflow client. Never contains a secret or a token.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    status: Option<u16>,
    code: Option<String>,
    correlation_id: Option<String>,
    likely_cause: Option<&'static str>,
    api: Option<Box<SessionFailure>>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Config,
            message: message.into(),
            status: None,
            code: None,
            correlation_id: None,
            likely_cause: None,
            api: None,
            source: None,
        }
    }

    pub(crate) fn transport(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            kind: ErrorKind::Unavailable,
            message: message.into(),
            likely_cause: Some("the server could not be reached, or the connection failed"),
            source: Some(Box::new(source)),
            ..Error::config("")
        }
    }

    pub(crate) fn transport_boxed(
        message: impl Into<String>,
        source: Box<dyn std::error::Error + Send + Sync>,
    ) -> Self {
        Error {
            kind: ErrorKind::Unavailable,
            message: message.into(),
            likely_cause: Some("the server could not be reached, or the connection failed"),
            source: Some(source),
            ..Error::config("")
        }
    }

    /// Fleet mode: the request's deadline comes before the end of the fleet's 429 hold. The
    /// session's `DeadlineExceeded` (as [`api_error`](Self::api_error) says), with a message
    /// that names the fleet as the cause: a process of the fleet was answered 429, not this
    /// request.
    pub(crate) fn held_by_fleet(hold: std::time::Duration) -> Self {
        let kind = ApiErrorKind::DeadlineExceeded { sendable_at: None };
        let error = Error::from(ApiError { kind, status: None });
        Error {
            message: format!(
                "deadline exceeded: held by the fleet's shared rate state for another {hold:?} \
                 (set by a pod of the fleet after a 429; this request was not sent)"
            ),
            likely_cause: Some(
                "another process of the fleet was rate-limited (429), and the whole fleet holds \
                 back for its Retry-After, at most the retry policy's max_wait",
            ),
            ..error
        }
    }

    /// Fleet mode: the fleet kept answering "ask again" for longer than `max` in all since the
    /// attempt's first question (`waited`). The session's `GaveUp` with `WaitTooLong`, as for a
    /// spent window, with a message that names the fleet's budget.
    pub(crate) fn no_fleet_slot(
        waited: credflow_core::Duration,
        max: credflow_core::Duration,
    ) -> Self {
        let kind = ApiErrorKind::GaveUp {
            reason: GiveUpReason::WaitTooLong { wait: waited, max },
            last: credflow_core::session::RetryReason::RateLimited,
        };
        let error = Error::from(ApiError { kind, status: None });
        Error {
            message: format!(
                "gave up: the fleet's shared rate state had no slot for this request within the \
                 {max} accepted (it said to ask again for {waited}); the request was not sent"
            ),
            likely_cause: Some(
                "the fleet's shared rate window is spent and stays so, or the shared store's \
                 rate state was written by something other than credflow",
            ),
            ..error
        }
    }

    /// The session's failure, with the fleet named as the source of the wait when the wait it
    /// names is the one the fleet's window asked for (ending at `fleet_wait_until`, handed to
    /// the session as the attempt's hold at `now`): a spent shared window, as a process of the
    /// fleet was told (or as something else wrote it), not this server's answer to this process.
    pub(crate) fn naming_the_fleet(
        e: ErrorDetail<'_>,
        now: credflow_core::Instant,
        fleet_wait_until: Option<credflow_core::Instant>,
    ) -> Self {
        let from_fleet =
            match e.error().kind {
                ApiErrorKind::GaveUp {
                    reason: GiveUpReason::WaitTooLong { wait, max }, ..
                } if fleet_wait_until == Some(now.saturating_add(wait)) => Some((wait, max)),
                _ => None,
            };
        let error = Error::from(e);
        let Some((wait, max)) = from_fleet else { return error };
        Error {
            message: format!(
                "gave up: the fleet's shared rate state allows no request for another {wait}, \
                 more than the {max} accepted (set by a pod of the fleet after the server's \
                 answer to it)"
            ),
            likely_cause: Some(
                "the fleet's shared rate window is spent: likely an hourly or daily quota of the \
                 client id is used up, as another process of the fleet was told",
            ),
            ..error
        }
    }

    /// A request for another origin than the API base's: refused before anything was sent,
    /// as the bearer token goes to no other (a configuration error: exit code 2).
    pub(crate) fn other_origin(message: String) -> Self {
        Error {
            likely_cause: Some(
                "the request's URL names another scheme, host or port than the API base (an \
                 absolute URL taken from a response, or built by hand): send API requests under \
                 the API base, and fetch other URLs with a client of your own, without the token",
            ),
            ..Error::config(message)
        }
    }

    /// Work asked of a client after [`Client::shutdown`](crate::Client::shutdown).
    pub(crate) fn shut_down() -> Self {
        Error {
            kind: ErrorKind::Unavailable,
            message: "the client was shut down".to_owned(),
            likely_cause: Some(
                "Client::shutdown was called: its token driver stopped; build a new client",
            ),
            ..Error::config("")
        }
    }

    /// An error of the HTTP library outside a request attempt (building a request, say). The
    /// URL it names is left out (`context` says what failed): its query may carry a secret.
    pub fn from_reqwest(context: &str, error: reqwest::Error) -> Self {
        Error::transport(context.to_owned(), error.without_url())
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The `credflow` command's exit code for this error.
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }

    /// The HTTP status of the last response, if there was one.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The OAuth (`invalid_client`) or Genesys (`missing.permissions`) error code, if any.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The platform's correlation id (`ININ-Correlation-Id`), to quote to support.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// The likely cause, in one line.
    pub fn likely_cause(&self) -> Option<&'static str> {
        self.likely_cause
    }

    /// The core's typed error, when the failure was a decision of the session.
    pub fn api_error(&self) -> Option<&ApiError> {
        self.api.as_ref().map(|failure| &failure.error)
    }

    /// For a 403: what the server said was missing (the permission or scope, its message).
    pub fn forbidden(&self) -> Option<&Diagnosis> {
        self.api.as_ref()?.forbidden.as_ref()
    }

    /// For rejected credentials ([`ErrorKind::CredentialsRejected`], and the other kinds of a
    /// rejection: a redirect, a token the client cannot use): when one token request checks
    /// whether the cause is gone (`recheck_after` after the rejection, doubling per rejection
    /// in a row; `None` with rechecks off, or while the check is in flight).
    ///
    /// For a request given up on a rate limit's wait longer than the retry policy's `max_wait`
    /// (a 429's `Retry-After` of hours, or a bogus one of years; a spent daily window): when
    /// the client lets its next request out as the probe that finds out whether the limit was
    /// lifted, `max_wait` after the last 429 or probe at the latest
    /// ([`ErrorDetail::next_probe_at`]; [`Client::since_start`](crate::Client::since_start)
    /// turns it into a time). Sooner than the wait the error names: what to tell a caller that
    /// retries by itself (`credflow proxy` caps the `Retry-After` it relays with it).
    pub fn next_probe_at(&self) -> Option<credflow_core::Instant> {
        self.api.as_ref()?.next_probe_at
    }
}

impl From<ErrorDetail<'_>> for Error {
    /// The session's failure with what the server said about it, read from the session that
    /// returned it ([`Session::error_detail`](credflow_core::session::Session::error_detail)).
    fn from(detail: ErrorDetail<'_>) -> Self {
        let e = detail.error();
        let kind = match e.kind {
            // The last token failure's class: an answer that is not a usable token (an HTML
            // page, no access_token, a token_type other than Bearer, a 404 from the wrong URL)
            // is a configuration to fix, not an outage to wait out.
            ApiErrorKind::TokenUnavailable { .. }
                if detail.token_failure().is_some_and(|report| !report.is_retryable()) =>
            {
                ErrorKind::Config
            }
            _ => kind_of(e),
        };
        Error {
            kind,
            message: detail.to_string(),
            code: detail.code().map(str::to_owned).or_else(|| code_of(e)),
            correlation_id: detail.correlation_id().map(|c| c.as_str().to_owned()),
            likely_cause: Some(detail.likely_cause()),
            api: Some(Box::new(SessionFailure {
                error: e,
                forbidden: detail.forbidden().cloned(),
                next_probe_at: detail.next_probe_at(),
            })),
            ..Error::from(e)
        }
    }
}

impl From<ApiError> for Error {
    /// A failure without the server's detail: one the session decided without an answer (a
    /// deadline, an open breaker), or the adapter's own deadline.
    fn from(e: ApiError) -> Self {
        Error {
            kind: kind_of(e),
            message: e.to_string(),
            status: e.status,
            code: code_of(e),
            correlation_id: None,
            likely_cause: Some(e.likely_cause()),
            api: Some(Box::new(SessionFailure { error: e, forbidden: None, next_probe_at: None })),
            source: None,
        }
    }
}

/// The session's failure and, for a 403, what the server said was missing; for a rate limit's
/// wait past `max_wait`, when the next probe of it may go.
#[derive(Debug)]
struct SessionFailure {
    error: ApiError,
    forbidden: Option<Diagnosis>,
    next_probe_at: Option<credflow_core::Instant>,
}

/// The broad kind of the session's failure `e`.
fn kind_of(e: ApiError) -> ErrorKind {
    match e.kind {
        ApiErrorKind::CredentialsRejected { reason: RejectReason::InvalidScope }
        | ApiErrorKind::Forbidden => ErrorKind::Permission,
        ApiErrorKind::CredentialsRejected {
            reason: RejectReason::UnusableResponse | RejectReason::Redirected,
        } => ErrorKind::Config,
        ApiErrorKind::CredentialsRejected { .. } | ApiErrorKind::Unauthorized => {
            ErrorKind::CredentialsRejected
        }
        _ => ErrorKind::Unavailable,
    }
}

/// The code the session's failure `e` implies where the server sent none.
fn code_of(e: ApiError) -> Option<String> {
    match e.kind {
        ApiErrorKind::GaveUp { reason: GiveUpReason::WaitTooLong { .. }, .. } => {
            Some("too.many.requests".to_owned())
        }
        _ => None,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}
