//! Classifying an API response for the retry layer.
//!
//! [`classify_response`] is a pure function of what came back: the status, the headers, a prefix
//! of the body and a reference wall-clock time. It says what kind of answer this is
//! ([`ResponseClass`]), how long the server asked the client to wait, the correlation id to log,
//! and the rate-limit state the response reported (from every response, successes included, so
//! that a pacer can learn from all of them). Deciding whether to retry, and when, stays with the
//! retry policy; transport failures (no response at all) are not classified here.
//!
//! | status | class | what the caller does |
//! |---|---|---|
//! | 1xx–3xx | [`ResponseClass::Success`] | use it (a 3xx is returned as is: redirects are the HTTP client's business) |
//! | 401 | [`ResponseClass::Unauthorized`] | drop the token generation that was used, refresh, retry once |
//! | 403 | [`ResponseClass::Forbidden`] | no retry: the client lacks a permission or scope ([`Diagnosis`] says which) |
//! | 429 | [`ResponseClass::RateLimited`] | wait as told, else back off |
//! | 408, 500, 502, 503, 504 | [`ResponseClass::Transient`] | back off and retry if the request may be repeated |
//! | anything else | [`ResponseClass::Permanent`] | no retry |
//!
//! # Where waits come from
//!
//! For a 429, `Retry-After` (RFC 9110 §10.2.3; a delay, or an HTTP-date measured against
//! `reference`) wins; else the wait Genesys Cloud writes into the body (`Retry the request in [42]
//! seconds`); else none, and the caller backs off on its own. An HTTP-date with no reference
//! cannot be turned into a wait and falls through to the body. The `RateLimit` fields are
//! reported in [`Classified::rate_limit`] but never override `Retry-After` (as the IETF draft
//! requires). For a transient status, only `Retry-After` counts; on a 503 it also tells the
//! caller the request was not processed (RFC 9110 §15.6.4), which the retry policy may use.
//!
//! # Why a 403 was refused
//!
//! In order of how actionable the answer is: the Genesys codes `missing.permissions` and
//! `missing.any.permissions` with the permissions they name; a `Bearer` challenge with
//! `error="insufficient_scope"` and its `scope` (RFC 6750 §3.1); the Genesys code
//! `not.authorized`; otherwise "unexplained", with whatever message there was.
//!
//! That layer is the `diagnosis` feature (on by default). Without it, a 403 is still
//! [`ResponseClass::Forbidden`] and a 401 still [`ResponseClass::Unauthorized`], with the Genesys
//! code and correlation id; the [`Diagnosis`] has the kind the Genesys code names and the
//! Genesys message, but no permission list (`messageParams` is not read either), and the
//! `WWW-Authenticate` challenge is not read (no `insufficient_scope`,
//! [`BearerErrorKind::Unspecified`] on a 401).
//!
//! # Correlation
//!
//! [`correlation_id`] takes `ININ-Correlation-Id` (Genesys Cloud), then `X-Request-Id`, then the
//! Genesys body's `contextId`. Values with control characters are rejected (they would let a
//! server forge log lines) and long values are truncated to 64 bytes.

use core::fmt;

use heapless::String;

use crate::http::Headers;
use crate::http::genesys::{CODE_CAPACITY, GenesysError, MESSAGE_CAPACITY, parse_genesys_error};
use crate::http::retry_after::{RetryAfter, genesys_retry_after_from_body};
#[cfg(feature = "diagnosis")]
use crate::http::www_authenticate::unescape;
use crate::http::www_authenticate::{BearerChallenge, BearerError, parse_bearer_challenge};
use crate::ratelimit::RateLimitSnapshot;
use crate::ratelimit::headers::{names_rate_limit, parse_listed};
use crate::text::push_sanitized;
use crate::time::{Duration, UnixTime};

/// Capacity of a [`CorrelationId`] in bytes.
pub const CORRELATION_ID_CAPACITY: usize = 64;
/// Capacity of [`Diagnosis::missing`] in bytes.
pub const MISSING_CAPACITY: usize = 256;

/// Everything the retry layer needs to know about one response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Classified {
    /// What kind of answer it is.
    pub class: ResponseClass,
    /// The id to quote when reporting the request (to logs, to Genesys support).
    pub correlation_id: Option<CorrelationId>,
    /// The rate-limit state the response reported, in any dialect.
    pub rate_limit: Option<RateLimitSnapshot>,
}

/// What kind of answer a response is, with the data each kind needs.
///
/// The [`ResponseClass::Forbidden`] variant is large (its diagnosis is stored inline, about
/// 600 bytes); without an allocator it cannot be boxed, and a classification is short-lived.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // no allocator to box into; see above
pub enum ResponseClass {
    /// 1xx–3xx. A 3xx is returned as is: following redirects is the HTTP client's job, and an
    /// API client that sees one has nothing to retry.
    Success,
    /// 401: the token was not accepted (expired, revoked, from another environment). Drop the
    /// token generation that was used, refresh, retry once.
    Unauthorized {
        /// What the `WWW-Authenticate: Bearer` challenge said.
        challenge: BearerErrorKind,
        /// The Genesys body's code (`authentication.required`, `bad.credentials`,
        /// `credentials.expired`), if any.
        genesys_code: Option<String<CODE_CAPACITY>>,
    },
    /// 403: the token is valid but not allowed to do this. Retrying will not help until the
    /// client's roles, permissions or scopes change.
    Forbidden(Diagnosis),
    /// 429: too many requests.
    RateLimited {
        /// How long the server asked the client to wait, if it said.
        retry_after: Option<Duration>,
        /// Where that wait came from.
        source: WaitSource,
    },
    /// 408, 500, 502, 503, 504: a failure that may pass.
    Transient {
        /// The status code.
        status: u16,
        /// The `Retry-After` wait, if the server sent one.
        retry_after: Option<Duration>,
    },
    /// Any other status (other 4xx, 501, 505+, and codes outside 100–599): retrying the same
    /// request will not change the answer.
    Permanent {
        /// The status code.
        status: u16,
    },
}

/// What the `Bearer` challenge of a 401 said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BearerErrorKind {
    /// `error="invalid_token"`: expired, revoked or malformed.
    InvalidToken,
    /// No `Bearer` challenge, or one without an `error` (Genesys Cloud sends none; the body's
    /// code says more).
    Unspecified,
    /// Another error code (`invalid_request`, or a server's own).
    Other,
}

/// Where a [`ResponseClass::RateLimited`] wait came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WaitSource {
    /// The `Retry-After` header.
    Header,
    /// The Genesys Cloud body (`Retry the request in [N] seconds`).
    Body,
    /// Nowhere: the caller chooses its own backoff.
    None,
}

/// Why a 403 was refused, as precisely as the response allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    /// The kind of refusal.
    pub kind: DiagnosisKind,
    /// The missing permissions or scopes, space-separated (whole items only; empty if the
    /// response did not name them).
    pub missing: String<MISSING_CAPACITY>,
    /// The Genesys body's code, if any.
    pub code: Option<String<CODE_CAPACITY>>,
    /// The server's message (the Genesys body's, else the challenge's `error_description`),
    /// control characters replaced by spaces.
    pub message: String<MESSAGE_CAPACITY>,
}

/// The kind of a 403 refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DiagnosisKind {
    /// `WWW-Authenticate: Bearer error="insufficient_scope"`: the token lacks a scope; `missing`
    /// holds the challenge's `scope`.
    InsufficientScope,
    /// Genesys `missing.permissions`: the OAuth client's roles lack every permission in
    /// `missing`.
    MissingPermissions,
    /// Genesys `missing.any.permissions`: the client needs at least one of `missing` (often in
    /// a particular division, in which case Genesys may list no permission at all).
    MissingAnyPermissions,
    /// Genesys `not.authorized`: not allowed, no detail given.
    NotAuthorized,
    /// A 403 with no recognizable reason (a proxy or WAF page, another server's format).
    Unexplained,
}

impl fmt::Display for Diagnosis {
    /// `this client lacks permission routing:queue:view (missing.permissions)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = |default: &'static str| self.code.as_deref().unwrap_or(default);
        let plural = if self.missing.contains(' ') { "s" } else { "" };
        match self.kind {
            DiagnosisKind::MissingPermissions if !self.missing.is_empty() => write!(
                f,
                "this client lacks permission{plural} {} ({})",
                self.missing,
                code("missing.permissions")
            ),
            DiagnosisKind::MissingAnyPermissions if !self.missing.is_empty() => write!(
                f,
                "this client needs at least one of the permission{plural} {} ({})",
                self.missing,
                code("missing.any.permissions")
            ),
            DiagnosisKind::InsufficientScope if !self.missing.is_empty() => {
                write!(
                    f,
                    "the access token lacks scope{plural} {} (insufficient_scope)",
                    self.missing
                )
            }
            DiagnosisKind::MissingPermissions | DiagnosisKind::MissingAnyPermissions => {
                let default = if self.kind == DiagnosisKind::MissingPermissions {
                    "missing.permissions"
                } else {
                    "missing.any.permissions"
                };
                write!(f, "this client lacks a required permission ({})", code(default))?;
                self.write_message(f)
            }
            DiagnosisKind::InsufficientScope => {
                f.write_str("the access token lacks a required scope (insufficient_scope)")?;
                self.write_message(f)
            }
            DiagnosisKind::NotAuthorized => write!(
                f,
                "this client is not authorized to perform the requested action ({})",
                code("not.authorized")
            ),
            DiagnosisKind::Unexplained => {
                f.write_str("forbidden")?;
                if let Some(code) = &self.code {
                    write!(f, " ({code})")?;
                }
                self.write_message(f)
            }
        }
    }
}

impl Diagnosis {
    fn write_message(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() { Ok(()) } else { write!(f, ": {}", self.message) }
    }
}

/// A request's correlation id: non-empty, no control characters, at most 64 bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(String<CORRELATION_ID_CAPACITY>);

impl CorrelationId {
    /// Validates an id: surrounding ASCII whitespace is trimmed; an empty value, or one with a
    /// control character, is refused; a longer value is truncated to 64 bytes at a character
    /// boundary.
    #[must_use]
    pub fn new(value: &str) -> Option<CorrelationId> {
        let value = value.trim_ascii();
        if value.is_empty() || value.chars().any(char::is_control) {
            return None;
        }
        let mut id = String::new();
        // No control character to replace: this copies until the id is full.
        let _ = push_sanitized(id.as_mut_view(), &mut value.chars());
        Some(CorrelationId(id))
    }

    /// Masks the client's credentials where the id echoes them (see [`crate::redact`]); the id
    /// stays non-empty and free of control characters.
    pub(crate) fn mask(&mut self, secrets: &crate::redact::Secrets<'_>) {
        secrets.mask(self.0.as_mut_view());
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CorrelationId({:?})", self.as_str())
    }
}

/// The correlation id of a response: `ININ-Correlation-Id`, then `X-Request-Id`, then the
/// Genesys body's `contextId` (the first one that is valid, see [`CorrelationId::new`]).
#[must_use]
pub fn correlation_id<H: Headers + ?Sized>(headers: &H, body: &[u8]) -> Option<CorrelationId> {
    correlation_from_headers(headers)
        .or_else(|| correlation_from_body(parse_genesys_error(body).as_ref()))
}

fn correlation_from_headers<H: Headers + ?Sized>(headers: &H) -> Option<CorrelationId> {
    ["inin-correlation-id", "x-request-id"].into_iter().find_map(|name| {
        let value = headers.get(name)?;
        CorrelationId::new(core::str::from_utf8(value).ok()?)
    })
}

fn correlation_from_body(genesys: Option<&GenesysError>) -> Option<CorrelationId> {
    CorrelationId::new(genesys?.context_id.as_deref()?)
}

/// Classifies a response (see the module docs for the table and the rules).
///
/// `body` may be a prefix of the body (the first few KiB are enough); `reference` is the
/// response's `Date` header if present (see [`server_date`]), else the local wall clock, and is
/// used to turn HTTP-dates and epoch resets into waits.
///
/// ```
/// use credflow_core::classify::{classify_response, ResponseClass, WaitSource};
/// use credflow_core::Duration;
///
/// let headers = [("Retry-After", "42"), ("ININ-Correlation-Id", "c0ffee00-1111-2222-3333-444455556666")];
/// let body = br#"{"message":"Rate limit exceeded the maximum. Retry the request in [42] seconds","code":"too.many.requests.retry.after","status":429}"#;
/// let c = classify_response(429, &headers, body, None);
/// assert_eq!(c.class, ResponseClass::RateLimited { retry_after: Some(Duration::from_secs(42)), source: WaitSource::Header });
/// assert_eq!(c.correlation_id.unwrap().as_str(), "c0ffee00-1111-2222-3333-444455556666");
/// ```
///
/// [`server_date`]: crate::http::date::server_date
pub fn classify_response<H: Headers + ?Sized>(
    status: u16,
    headers: &H,
    body: &[u8],
    reference: Option<UnixTime>,
) -> Classified {
    classify(status, headers, body, reference, true, headers.any_name(names_rate_limit))
}

/// [`classify_response`], looking for the correlation id of a success or a permanent answer
/// only if `every_id`: the session keeps none of those (nothing to report), and judges an
/// ordinary success without asking for the id's fields. `listed`: whether the headers hold a
/// rate-limit field, as their pass over the names said (see [`needs_reference`]).
pub(crate) fn classify<H: Headers + ?Sized>(
    status: u16,
    headers: &H,
    body: &[u8],
    reference: Option<UnixTime>,
    every_id: bool,
    listed: Option<bool>,
) -> Classified {
    let rate_limit = parse_listed(headers, reference, listed);
    let genesys = if status >= 400 { parse_genesys_error(body) } else { None };
    let class = match status {
        100..=399 => ResponseClass::Success,
        401 => unauthorized(headers, genesys.as_ref()),
        403 => ResponseClass::Forbidden(diagnose(headers, genesys.as_ref())),
        429 => rate_limited(headers, body, reference),
        _ if transient(status) => {
            ResponseClass::Transient { status, retry_after: header_wait(headers, reference) }
        }
        _ => ResponseClass::Permanent { status },
    };
    let kept =
        every_id || !matches!(class, ResponseClass::Success | ResponseClass::Permanent { .. });
    let correlation_id = if kept {
        correlation_from_headers(headers).or_else(|| correlation_from_body(genesys.as_ref()))
    } else {
        None
    };
    Classified { class, correlation_id, rate_limit }
}

/// Whether [`classify_response`] reads `reference` for this response: only to turn a
/// `Retry-After` HTTP-date (on a 429, a 408 or a 5xx that may be retried) or a rate-limit
/// reset epoch into a wait. Any other response (an ordinary success, a 404) is classified the
/// same whatever the reference, and a caller may skip finding it (parsing `Date`). Telling
/// needs the fields' names: `listed` is whether they hold one of the rate-limit fields
/// ([`Headers::any_name`] with [`names_rate_limit`]), `None` for headers that cannot list them
/// (which need it).
pub(crate) const fn needs_reference(status: u16, listed: Option<bool>) -> bool {
    status == 429 || transient(status) || !matches!(listed, Some(false))
}

/// Whether [`classify`], not asked for every correlation id, says nothing of this response but
/// that it succeeded: a status of 100 to 399 whose headers hold no rate-limit field (`listed`
/// as for [`needs_reference`]). Its class is [`ResponseClass::Success`], with no rate-limit
/// snapshot and no correlation id: the session judges it without classifying it.
pub(crate) const fn plainly_successful(status: u16, listed: Option<bool>) -> bool {
    matches!(status, 100..=399) && matches!(listed, Some(false))
}

/// 408, 500, 502, 503, 504: the failures that may pass ([`ResponseClass::Transient`]).
const fn transient(status: u16) -> bool {
    matches!(status, 408 | 500 | 502 | 503 | 504)
}

fn header_wait<H: Headers + ?Sized>(headers: &H, reference: Option<UnixTime>) -> Option<Duration> {
    RetryAfter::from_headers(headers)?.delay(reference)
}

fn bearer_challenge<H: Headers + ?Sized>(headers: &H) -> Option<BearerChallenge<'_>> {
    headers.get("www-authenticate").and_then(parse_bearer_challenge)
}

fn genesys_code(genesys: Option<&GenesysError>) -> Option<String<CODE_CAPACITY>> {
    genesys.map(|g| g.code.clone()).filter(|code| !code.is_empty())
}

fn unauthorized<H: Headers + ?Sized>(headers: &H, genesys: Option<&GenesysError>) -> ResponseClass {
    let challenge = if cfg!(feature = "diagnosis") {
        match bearer_challenge(headers).and_then(|c| c.error) {
            Some(BearerError::InvalidToken) => BearerErrorKind::InvalidToken,
            Some(_) => BearerErrorKind::Other,
            None => BearerErrorKind::Unspecified,
        }
    } else {
        // Without the diagnosis layer the challenge is not read (see the crate's features).
        BearerErrorKind::Unspecified
    };
    ResponseClass::Unauthorized { challenge, genesys_code: genesys_code(genesys) }
}

fn rate_limited<H: Headers + ?Sized>(
    headers: &H,
    body: &[u8],
    reference: Option<UnixTime>,
) -> ResponseClass {
    let (retry_after, source) = if let Some(wait) = header_wait(headers, reference) {
        (Some(wait), WaitSource::Header)
    } else if let Some(wait) = genesys_retry_after_from_body(body) {
        (Some(wait), WaitSource::Body)
    } else {
        (None, WaitSource::None)
    };
    ResponseClass::RateLimited { retry_after, source }
}

/// The kind a Genesys body's code names, if it names one.
fn code_kind(genesys: Option<&GenesysError>) -> Option<DiagnosisKind> {
    genesys.and_then(|g| match g.code.as_str() {
        "missing.permissions" => Some(DiagnosisKind::MissingPermissions),
        "missing.any.permissions" => Some(DiagnosisKind::MissingAnyPermissions),
        "not.authorized" => Some(DiagnosisKind::NotAuthorized),
        _ => None,
    })
}

/// Without the `diagnosis` feature: the kind the Genesys code names (else
/// [`DiagnosisKind::Unexplained`]), the code and the Genesys message; no permission list, no
/// `WWW-Authenticate` challenge.
#[cfg(not(feature = "diagnosis"))]
fn diagnose<H: Headers + ?Sized>(_headers: &H, genesys: Option<&GenesysError>) -> Diagnosis {
    let mut message = String::new();
    if let Some(g) = genesys {
        let _ = push_sanitized(message.as_mut_view(), &mut g.message.chars());
    }
    Diagnosis {
        kind: code_kind(genesys).unwrap_or(DiagnosisKind::Unexplained),
        missing: String::new(),
        code: genesys_code(genesys),
        message,
    }
}

#[cfg(feature = "diagnosis")]
fn diagnose<H: Headers + ?Sized>(headers: &H, genesys: Option<&GenesysError>) -> Diagnosis {
    let challenge = bearer_challenge(headers);
    let scope_refusal = challenge.filter(|c| c.error == Some(BearerError::InsufficientScope));
    let code_kind = code_kind(genesys);

    let mut missing = String::new();
    let kind = match (code_kind, scope_refusal, genesys) {
        (
            Some(kind @ (DiagnosisKind::MissingPermissions | DiagnosisKind::MissingAnyPermissions)),
            _,
            Some(g),
        ) => {
            push_words(&mut missing, g.missing_permissions());
            kind
        }
        (_, Some(c), _) => {
            let mut scope = String::<MISSING_CAPACITY>::new();
            if let Some(raw) = c.scope {
                let _ = push_sanitized(scope.as_mut_view(), &mut unescape(raw));
            }
            push_words(&mut missing, scope.split_whitespace());
            DiagnosisKind::InsufficientScope
        }
        (Some(kind), None, _) => kind,
        (None, None, _) => DiagnosisKind::Unexplained,
    };

    let mut message = String::new();
    match genesys.filter(|g| !g.message.is_empty()) {
        Some(g) => {
            let _ = push_sanitized(message.as_mut_view(), &mut g.message.chars());
        }
        None => {
            if let Some(mut description) = challenge.and_then(|c| c.error_description()) {
                let _ = push_sanitized(message.as_mut_view(), &mut description);
            }
        }
    }
    Diagnosis { kind, missing, code: genesys_code(genesys), message }
}

/// Appends `words` separated by single spaces, whole words only, while they fit.
#[cfg(feature = "diagnosis")]
fn push_words<'a, const N: usize>(out: &mut String<N>, words: impl Iterator<Item = &'a str>) {
    for word in words {
        let needed = word.len().saturating_add(usize::from(!out.is_empty()));
        if out.len().saturating_add(needed) > out.capacity() {
            break;
        }
        if !out.is_empty() {
            let _ = out.push(' ');
        }
        let _ = out.push_str(word);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::ratelimit::Dialect;
    use proptest::prelude::*;
    use std::format;
    use std::vec::Vec as StdVec;

    const CORRELATION: &str = "5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c";
    const NOW: UnixTime = UnixTime::from_secs(1_792_152_841);

    fn classify(status: u16, headers: &[(&str, &str)], body: &str) -> Classified {
        classify_response(status, headers, body.as_bytes(), Some(NOW))
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    fn code(s: &str) -> Option<String<CODE_CAPACITY>> {
        Some(String::try_from(s).unwrap())
    }

    fn diagnosis(c: Classified) -> Diagnosis {
        match c.class {
            ResponseClass::Forbidden(d) => d,
            other => panic!("expected a 403 diagnosis, got {other:?}"),
        }
    }

    #[test]
    fn success_carries_rate_limit_and_correlation() {
        let h = [
            ("Content-Type", "application/json"),
            ("ININ-Correlation-Id", CORRELATION),
            ("inin-ratelimit-count", "1"),
            ("inin-ratelimit-allowed", "180"),
            ("inin-ratelimit-reset", "61"),
        ];
        let c = classify(200, &h, r#"{"entities":[],"pageSize":25}"#);
        assert_eq!(c.class, ResponseClass::Success);
        assert_eq!(c.correlation_id.as_ref().map(CorrelationId::as_str), Some(CORRELATION));
        let rl = c.rate_limit.unwrap();
        assert_eq!(
            (rl.remaining, rl.reset_after, rl.dialect),
            (Some(179), secs(61), Dialect::Genesys)
        );
        for status in [100, 101, 201, 204, 301, 304, 399] {
            assert_eq!(classify(status, &[], "").class, ResponseClass::Success, "{status}");
        }
    }

    #[test]
    fn unauthorized_genesys() {
        let body = format!(
            r#"{{"message":"No authentication bearer token specified in authorization header.","code":"authentication.required","status":401,"contextId":"{CORRELATION}","details":[],"errors":[]}}"#
        );
        let c = classify(401, &[], &body);
        assert_eq!(
            c.class,
            ResponseClass::Unauthorized {
                challenge: BearerErrorKind::Unspecified,
                genesys_code: code("authentication.required")
            }
        );
        assert_eq!(c.correlation_id.unwrap().as_str(), CORRELATION);

        let c = classify(
            401,
            &[],
            r#"{"message":"The supplied credentials are expired and cannot be used.","code":"credentials.expired","status":401}"#,
        );
        assert_eq!(
            c.class,
            ResponseClass::Unauthorized {
                challenge: BearerErrorKind::Unspecified,
                genesys_code: code("credentials.expired")
            }
        );
    }

    /// Without the `diagnosis` feature a 401 and a 403 classify exactly as with it (same class,
    /// same Genesys code, same correlation id), only the explanation is left out: no challenge,
    /// no permission list; the kind comes from the Genesys code alone.
    #[test]
    #[cfg(not(feature = "diagnosis"))]
    fn without_diagnosis_the_class_stays_and_the_explanation_goes() {
        let challenge = [(
            "WWW-Authenticate",
            r#"Bearer realm="api", error="invalid_token", error_description="The access token expired""#,
        )];
        assert_eq!(
            classify(401, &challenge, r#"{"code":"credentials.expired","status":401}"#).class,
            ResponseClass::Unauthorized {
                challenge: BearerErrorKind::Unspecified,
                genesys_code: code("credentials.expired")
            }
        );

        let body = format!(
            r#"{{"message":"Unable to perform the requested action. You are missing the following permission(s): [routing:queue:view]","code":"missing.permissions","status":403,"contextId":"{CORRELATION}"}}"#
        );
        let c = classify(403, &[], &body);
        assert_eq!(c.correlation_id.as_ref().unwrap().as_str(), CORRELATION);
        let d = diagnosis(c);
        assert_eq!(d.kind, DiagnosisKind::MissingPermissions);
        assert_eq!(d.missing.as_str(), "", "no permission list without the feature");
        assert_eq!(d.code, code("missing.permissions"));
        assert!(d.message.starts_with("Unable to perform the requested action."));
        assert!(format!("{d}").starts_with(
            "this client lacks a required permission (missing.permissions): Unable to perform"
        ));

        let scope = [(
            "WWW-Authenticate",
            r#"Bearer error="insufficient_scope", scope="routing:queue:view""#,
        )];
        let d = diagnosis(classify(403, &scope, ""));
        assert_eq!((d.kind, d.missing.as_str(), &d.code), (DiagnosisKind::Unexplained, "", &None));
        assert_eq!(format!("{d}"), "forbidden");
        let d = diagnosis(classify(403, &[], r#"{"code":"not.authorized","message":"No."}"#));
        assert_eq!(d.kind, DiagnosisKind::NotAuthorized);
    }

    #[test]
    #[cfg(feature = "diagnosis")]
    fn unauthorized_rfc6750() {
        let h = [(
            "WWW-Authenticate",
            r#"Bearer realm="api", error="invalid_token", error_description="The access token expired""#,
        )];
        assert_eq!(
            classify(401, &h, "").class,
            ResponseClass::Unauthorized {
                challenge: BearerErrorKind::InvalidToken,
                genesys_code: None
            }
        );
        let h = [("WWW-Authenticate", r#"Bearer error="invalid_request""#)];
        assert_eq!(
            classify(401, &h, "").class,
            ResponseClass::Unauthorized { challenge: BearerErrorKind::Other, genesys_code: None }
        );
        let h = [("WWW-Authenticate", r#"Basic realm="x""#)];
        assert_eq!(
            classify(401, &h, "<html>401</html>").class,
            ResponseClass::Unauthorized {
                challenge: BearerErrorKind::Unspecified,
                genesys_code: None
            }
        );
    }

    #[test]
    #[cfg(feature = "diagnosis")]
    fn forbidden_missing_permissions() {
        let body = format!(
            r#"{{"message":"Unable to perform the requested action. You are missing the following permission(s): [routing:queue:view]","code":"missing.permissions","status":403,"messageWithParams":"Unable to perform the requested action. You are missing the following permission(s): {{permissions}}","messageParams":{{}},"contextId":"{CORRELATION}","details":[],"errors":[]}}"#
        );
        let c = classify(403, &[("ININ-Correlation-Id", CORRELATION)], &body);
        assert_eq!(c.correlation_id.as_ref().unwrap().as_str(), CORRELATION);
        let d = diagnosis(c);
        assert_eq!(d.kind, DiagnosisKind::MissingPermissions);
        assert_eq!(d.missing.as_str(), "routing:queue:view");
        assert_eq!(d.code, code("missing.permissions"));
        assert!(d.message.starts_with("Unable to perform the requested action."));
        assert_eq!(
            format!("{d}"),
            "this client lacks permission routing:queue:view (missing.permissions)"
        );

        let d = diagnosis(classify(
            403,
            &[],
            r#"{"message":"You are missing the following permission(s): [analytics:conversationDetail:view, analytics:conversationAggregate:view]","code":"missing.permissions","status":403}"#,
        ));
        assert_eq!(
            d.missing.as_str(),
            "analytics:conversationDetail:view analytics:conversationAggregate:view"
        );
        assert_eq!(
            format!("{d}"),
            "this client lacks permissions analytics:conversationDetail:view analytics:conversationAggregate:view (missing.permissions)"
        );
    }

    #[test]
    #[cfg(feature = "diagnosis")]
    fn forbidden_missing_any_permissions_in_a_division() {
        let d = diagnosis(classify(
            403,
            &[],
            r#"{"message":"Unable to perform the requested action. You must have at least one of the following permissions assigned: [] in at least one of the following division(s): [dbdb51ee-1c2a-4f3e-8a90-7b6c5d4e3f21]","code":"missing.any.permissions","status":403}"#,
        ));
        assert_eq!(d.kind, DiagnosisKind::MissingAnyPermissions);
        assert_eq!(d.missing.as_str(), "");
        assert!(format!("{d}").starts_with(
            "this client lacks a required permission (missing.any.permissions): Unable to perform"
        ));
        let d = diagnosis(classify(
            403,
            &[],
            r#"{"message":"You must have at least one of the following permissions assigned: [architect:flow:view, architect:flow:edit]","code":"missing.any.permissions","status":403}"#,
        ));
        assert_eq!(
            format!("{d}"),
            "this client needs at least one of the permissions architect:flow:view architect:flow:edit (missing.any.permissions)"
        );
    }

    #[test]
    #[cfg(feature = "diagnosis")]
    fn forbidden_insufficient_scope() {
        let h = [(
            "WWW-Authenticate",
            r#"Bearer realm="api", error="insufficient_scope", error_description="needs \"routing\"", scope="routing:queue:view  routing:queue:edit""#,
        )];
        let d = diagnosis(classify(403, &h, ""));
        assert_eq!(d.kind, DiagnosisKind::InsufficientScope);
        assert_eq!(d.missing.as_str(), "routing:queue:view routing:queue:edit");
        assert_eq!(d.message.as_str(), r#"needs "routing""#);
        assert_eq!(d.code, None);
        assert_eq!(
            format!("{d}"),
            "the access token lacks scopes routing:queue:view routing:queue:edit (insufficient_scope)"
        );

        // The scope challenge beats a vague Genesys code, but not a precise one.
        let vague = r#"{"message":"You are not authorized to perform the requested action.","code":"not.authorized","status":403}"#;
        assert_eq!(diagnosis(classify(403, &h, vague)).kind, DiagnosisKind::InsufficientScope);
        let precise = r#"{"message":"You are missing the following permission(s): [a:b:c]","code":"missing.permissions"}"#;
        assert_eq!(diagnosis(classify(403, &h, precise)).missing.as_str(), "a:b:c");

        let bare = [("WWW-Authenticate", r#"Bearer error="insufficient_scope""#)];
        assert_eq!(
            format!("{}", diagnosis(classify(403, &bare, ""))),
            "the access token lacks a required scope (insufficient_scope)"
        );
    }

    #[test]
    fn forbidden_not_authorized_and_unexplained() {
        let d = diagnosis(classify(
            403,
            &[],
            r#"{"message":"You are not authorized to perform the requested action.","code":"not.authorized","status":403}"#,
        ));
        assert_eq!(d.kind, DiagnosisKind::NotAuthorized);
        assert_eq!(
            format!("{d}"),
            "this client is not authorized to perform the requested action (not.authorized)"
        );

        let d = diagnosis(classify(403, &[], "<html><body>Request blocked by WAF</body></html>"));
        assert_eq!(
            d,
            Diagnosis {
                kind: DiagnosisKind::Unexplained,
                missing: String::new(),
                code: None,
                message: String::new()
            }
        );
        assert_eq!(format!("{d}"), "forbidden");

        let d = diagnosis(classify(
            403,
            &[],
            r#"{"message":"Feature disabled\nfor org","code":"feature.disabled"}"#,
        ));
        assert_eq!(format!("{d}"), "forbidden (feature.disabled): Feature disabled for org");
    }

    #[test]
    fn rate_limited_wait_sources() {
        let body = r#"{"message":"Rate limit exceeded the maximum. Retry the request in [17] seconds","code":"too.many.requests.retry.after","status":429}"#;
        let limited = |retry_after, source| ResponseClass::RateLimited { retry_after, source };

        assert_eq!(
            classify(429, &[("Retry-After", "42")], body).class,
            limited(secs(42), WaitSource::Header)
        );
        assert_eq!(classify(429, &[], body).class, limited(secs(17), WaitSource::Body));
        assert_eq!(
            classify(429, &[("Retry-After", "soon")], body).class,
            limited(secs(17), WaitSource::Body)
        );
        assert_eq!(classify(429, &[], "").class, limited(None, WaitSource::None));

        // An HTTP-date is measured against the reference (the server's Date, ideally).
        let date = [("Retry-After", "Fri, 16 Oct 2026 02:16:41 GMT")];
        let at = crate::http::date::parse_http_date(date[0].1.as_bytes()).unwrap();
        let c = classify_response(429, &date, b"", Some(UnixTime::from_secs(at.as_secs() - 30)));
        assert_eq!(c.class, limited(secs(30), WaitSource::Header));
        let c = classify_response(429, &date, b"", Some(UnixTime::from_secs(at.as_secs() + 5)));
        assert_eq!(c.class, limited(secs(0), WaitSource::Header));
        // Without a reference the date cannot be used: fall through to the body.
        let c = classify_response(429, &date, body.as_bytes(), None);
        assert_eq!(c.class, limited(secs(17), WaitSource::Body));

        // A daily limit: hours, reported as is for the caller to surface.
        let c = classify(
            429,
            &[
                ("Retry-After", "40000"),
                ("inin-ratelimit-allowed", "1000"),
                ("inin-ratelimit-count", "1000"),
            ],
            body,
        );
        assert_eq!(c.class, limited(secs(40_000), WaitSource::Header));
        assert_eq!(c.rate_limit.unwrap().remaining, Some(0));
    }

    #[test]
    fn transient_and_permanent() {
        for status in [408, 500, 502, 504] {
            assert_eq!(
                classify(status, &[], "").class,
                ResponseClass::Transient { status, retry_after: None }
            );
        }
        assert_eq!(
            classify(503, &[("Retry-After", "120")], "").class,
            ResponseClass::Transient { status: 503, retry_after: secs(120) }
        );
        for status in [0, 99, 400, 402, 404, 405, 409, 410, 413, 422, 501, 505, 599, 600, u16::MAX]
        {
            assert_eq!(
                classify(status, &[], "").class,
                ResponseClass::Permanent { status },
                "{status}"
            );
        }
    }

    #[test]
    fn correlation_sources_in_order() {
        let body = format!(r#"{{"code":"x","contextId":"{CORRELATION}"}}"#);
        let id = |h: &[(&str, &str)], body: &str| {
            correlation_id(h, body.as_bytes()).map(|c| std::string::String::from(c.as_str()))
        };

        assert_eq!(
            id(&[("ININ-Correlation-Id", "a"), ("X-Request-Id", "b")], &body).as_deref(),
            Some("a")
        );
        assert_eq!(id(&[("X-Request-Id", " b ")], &body).as_deref(), Some("b"));
        assert_eq!(id(&[], &body).as_deref(), Some(CORRELATION));
        // Control characters: rejected, the next source is used.
        assert_eq!(
            id(&[("ININ-Correlation-Id", "a\r\nX-Forged: 1"), ("X-Request-Id", "b")], "")
                .as_deref(),
            Some("b")
        );
        assert_eq!(id(&[("ININ-Correlation-Id", "")], "{}").as_deref(), None);
        assert_eq!(id(&[], r#"{"code":"x","contextId":"bad\u0007id"}"#), None);
        // Truncated at 64 bytes, on a character boundary.
        let long = "\u{e9}".repeat(40);
        assert_eq!(id(&[("X-Request-Id", &long)], "").unwrap().len(), 64);
        // The copy stops at the first character that does not fit (none after it is taken).
        let straddling = format!("{}\u{e9}b", "a".repeat(63));
        assert_eq!(CorrelationId::new(&straddling).unwrap().as_str(), "a".repeat(63));
        assert_eq!(CorrelationId::new(&"a".repeat(64)).unwrap().as_str(), "a".repeat(64));
        let h: [(&str, &[u8]); 1] = [("ININ-Correlation-Id", b"\xff\xfe")];
        assert_eq!(correlation_id(&h[..], b""), None);
        assert_eq!(format!("{:?}", CorrelationId::new("x").unwrap()), r#"CorrelationId("x")"#);
        // ASCII whitespace is trimmed (a header's OWS); other characters are the id's own.
        assert_eq!(CorrelationId::new(" \tabc \r\n").unwrap().as_str(), "abc");
        assert_eq!(CorrelationId::new("\u{a0}abc").unwrap().as_str(), "\u{a0}abc");
        assert_eq!(CorrelationId::new(" \t "), None);
    }

    #[test]
    #[cfg(feature = "diagnosis")]
    fn push_words_keeps_whole_words() {
        let mut s = String::<10>::new();
        push_words(&mut s, ["abcd", "efgh", "ij"].into_iter());
        assert_eq!(s.as_str(), "abcd efgh");
        let mut s = String::<10>::new();
        push_words(&mut s, ["abcdefghijk", "a"].into_iter());
        assert_eq!(s.as_str(), "");
    }

    proptest! {
        /// Where `needs_reference` says no, the reference changes nothing: a response is
        /// classified the same with any reference as with none. Where `plainly_successful`
        /// says yes, the session's classification is a bare success.
        #[test]
        fn a_response_that_needs_no_reference_is_classified_the_same_without(
            status in prop_oneof![
                Just(200u16), Just(404), Just(401), Just(408), Just(429), Just(503), 100u16..600,
            ],
            fields in proptest::collection::vec(
                (
                    proptest::sample::select(StdVec::from([
                        "Retry-After", "X-RateLimit-Reset", "inin-ratelimit-reset", "Date",
                        "ININ-Correlation-Id",
                    ])),
                    proptest::sample::select(StdVec::from([
                        "Sun, 06 Dec 2026 09:00:00 GMT", "1792152901", "30",
                    ])),
                ),
                0..4,
            ),
            // Before the dates above: they turn into waits.
            reference in 1_790_000_000u64..1_792_152_900,
        ) {
            let headers = fields.as_slice();
            let body = br#"{"message":"Retry the request in [3] seconds","code":"x"}"#;
            let listed = headers.any_name(crate::ratelimit::headers::names_rate_limit);
            if !needs_reference(status, listed) {
                prop_assert_eq!(
                    classify_response(status, headers, body, Some(UnixTime::from_secs(reference))),
                    classify_response(status, headers, body, None)
                );
            }
            if plainly_successful(status, listed) {
                let bare =
                    Classified { class: ResponseClass::Success, correlation_id: None, rate_limit: None };
                let reference = Some(UnixTime::from_secs(reference));
                prop_assert_eq!(super::classify(status, headers, body, reference, false, listed), bare);
            }
            // Headers that cannot list their names are never taken for a plain success.
            prop_assert!(!plainly_successful(status, None) && needs_reference(status, None));
        }

        #[test]
        fn never_panics(
            status in any::<u16>(),
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 6),
            body in proptest::collection::vec(any::<u8>(), 0..256),
            reference in proptest::option::of(any::<u64>()),
        ) {
            let names = ["www-authenticate", "retry-after", "inin-correlation-id", "x-request-id", "ratelimit", "x-ratelimit-reset"];
            let headers: StdVec<(&str, &[u8])> = names.iter().copied().zip(values.iter().map(StdVec::as_slice)).collect();
            let c = classify_response(status, headers.as_slice(), &body, reference.map(UnixTime::from_secs));
            if let ResponseClass::Forbidden(d) = &c.class {
                let _ = format!("{d}");
            }
        }

        #[test]
        fn never_panics_on_genesys_like_bodies(
            status in prop_oneof![Just(401u16), Just(403), Just(429), Just(503)],
            body in r#"\{"(message|code|contextId|messageParams|status)":("[a-z. \[\]:,\\"]{0,40}"|[0-9]{1,4}|\{"permissions":"[a-z:\[\], ]{0,30}"\})(,"code":"(missing\.permissions|missing\.any\.permissions|not\.authorized)")?\}"#,
        ) {
            let c = classify_response(status, &[("Retry-After", "1")], body.as_bytes(), None);
            if let ResponseClass::Forbidden(d) = &c.class {
                prop_assert!(d.missing.len() <= MISSING_CAPACITY);
                let _ = format!("{d}");
            }
        }
    }
}
