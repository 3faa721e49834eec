//! The adapter's error: what happened, the server's codes, the correlation id, the likely cause.

use std::fmt;

use credflow_core::lifecycle::RejectReason;
use credflow_core::retry::policy::GiveUpReason;
use credflow_core::session::{ApiError, ApiErrorKind, TokenProblem};

/// The broad kind of an [`Error`]; each maps to one exit code of the `credflow` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is incomplete or invalid, or the token URL answers with something
    /// that is not a usable token (an HTML page, no `access_token`, a `token_type` other than
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
    api: Option<Box<ApiError>>,
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

    /// An error of the HTTP library outside a request attempt (building a request, say).
    pub fn from_reqwest(context: &str, error: reqwest::Error) -> Self {
        Error::transport(context.to_owned(), error)
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
        self.api.as_deref()
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        let (kind, code) = match &e.kind {
            ApiErrorKind::CredentialsRejected { reason, oauth } => {
                let kind = match reason {
                    RejectReason::InvalidScope => ErrorKind::Permission,
                    RejectReason::UnusableResponse => ErrorKind::Config,
                    _ => ErrorKind::CredentialsRejected,
                };
                (kind, oauth.as_ref().and_then(|o| o.code.as_ref()).map(|c| c.as_str().to_owned()))
            }
            ApiErrorKind::TokenUnavailable { last, .. } => {
                // The last token failure's class: an answer that is not a usable token (an
                // HTML page, no access_token, a token_type other than Bearer, a 404 from the
                // wrong URL) is a configuration to fix, not an outage to wait out.
                let kind = match last {
                    Some(report) if !report.is_retryable() => ErrorKind::Config,
                    _ => ErrorKind::Unavailable,
                };
                let code = last.as_ref().and_then(|r| match &r.problem {
                    TokenProblem::Refused(o) => o.code.as_ref().map(|c| c.as_str().to_owned()),
                    _ => None,
                });
                (kind, code)
            }
            ApiErrorKind::Unauthorized => (ErrorKind::CredentialsRejected, None),
            ApiErrorKind::Forbidden(d) => {
                (ErrorKind::Permission, d.code.as_ref().map(|c| c.as_str().to_owned()))
            }
            ApiErrorKind::GaveUp { reason: GiveUpReason::WaitTooLong { .. }, .. } => {
                (ErrorKind::Unavailable, Some("too.many.requests".to_owned()))
            }
            _ => (ErrorKind::Unavailable, None),
        };
        Error {
            kind,
            message: e.to_string(),
            status: e.status,
            code,
            correlation_id: e.correlation_id.as_ref().map(|c| c.as_str().to_owned()),
            likely_cause: Some(e.likely_cause()),
            api: Some(Box::new(e)),
            source: None,
        }
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
