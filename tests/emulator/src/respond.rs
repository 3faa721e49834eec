//! Response builders: Genesys error bodies, OAuth error bodies, rate-limit headers.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::ratelimit::WindowState;
use crate::util::ceil_secs;

/// `ININ-Correlation-Id` (sent on every response; equals `contextId` in error bodies).
pub(crate) const CORRELATION_ID: HeaderName = HeaderName::from_static("inin-correlation-id");
/// Requests admitted in the current window, this one included.
pub(crate) const RATELIMIT_COUNT: HeaderName = HeaderName::from_static("inin-ratelimit-count");
/// The window's limit.
pub(crate) const RATELIMIT_ALLOWED: HeaderName = HeaderName::from_static("inin-ratelimit-allowed");
/// Whole seconds until the window closes, rounded up.
pub(crate) const RATELIMIT_RESET: HeaderName = HeaderName::from_static("inin-ratelimit-reset");

/// The correlation id of the request being answered (a request extension).
#[derive(Clone, Debug)]
pub(crate) struct CorrelationId(pub(crate) String);

/// A JSON answer.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response()
}

/// A Genesys API error (`models/error_body.py`).
#[derive(Clone, Debug)]
pub(crate) struct GenesysError {
    status: StatusCode,
    code: &'static str,
    message: String,
    params: Option<(String, Map<String, Value>)>,
}

impl GenesysError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), params: None }
    }

    /// Adds `messageWithParams` (a template with `{name}` holes) and `messageParams`.
    pub(crate) fn with_params(
        mut self,
        template: impl Into<String>,
        params: Map<String, Value>,
    ) -> Self {
        self.params = Some((template.into(), params));
        self
    }

    pub(crate) fn respond(self, ctx: &CorrelationId) -> Response {
        let mut body = json!({
            "message": self.message,
            "code": self.code,
            "status": self.status.as_u16(),
            "contextId": ctx.0,
            "details": [],
            "errors": [],
        });
        if let (Some((template, params)), Value::Object(map)) = (self.params, &mut body) {
            map.insert("messageWithParams".into(), Value::String(template));
            map.insert("messageParams".into(), Value::Object(params));
        }
        json_response(self.status, &body)
    }
}

/// An RFC 6749 §5.2 error in Genesys's form: `error`, `description` and `error_description`
/// (the latter two equal), with `Cache-Control: no-store` (§5.1).
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let description = description_charset(description);
    let body =
        json!({ "error": error, "description": description, "error_description": description });
    no_store(json_response(status, &body))
}

/// `text` in the character set RFC 6749 §5.2 allows in `error_description` (`%x20-21 /
/// %x23-5B / %x5D-7E`: visible ASCII and space, without `"` and `\`): `"` becomes `'`, `\`
/// becomes `/`, `§` becomes `section `, anything else outside it `?`. A strict client may
/// refuse the whole error otherwise.
pub(crate) fn description_charset(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push('\''),
            '\\' => out.push('/'),
            '§' => out.push_str("section "),
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// Adds `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub(crate) fn no_store(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Sets the `inin-ratelimit-*` headers.
pub(crate) fn set_ratelimit_headers(headers: &mut HeaderMap, window: WindowState) {
    headers.insert(RATELIMIT_COUNT, HeaderValue::from(window.count));
    headers.insert(RATELIMIT_ALLOWED, HeaderValue::from(window.allowed));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(ceil_secs(window.reset_after)));
}

/// A 429 `too.many.requests.retry.after` with `Retry-After: secs`.
pub(crate) fn too_many_requests(ctx: &CorrelationId, retry_after_secs: u64) -> Response {
    let message = format!(
        "Rate limit exceeded the maximum. Retry the request in [{retry_after_secs}] seconds"
    );
    let mut response =
        GenesysError::new(StatusCode::TOO_MANY_REQUESTS, "too.many.requests.retry.after", message)
            .respond(ctx);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// A 503 `service.unavailable`, with `Retry-After` if given.
pub(crate) fn service_unavailable(ctx: &CorrelationId, retry_after_secs: Option<u64>) -> Response {
    let message = "Service Unavailable - The server is currently unavailable (because it is overloaded or down for maintenance).";
    let mut response =
        GenesysError::new(StatusCode::SERVICE_UNAVAILABLE, "service.unavailable", message)
            .respond(ctx);
    if let Some(secs) = retry_after_secs {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
