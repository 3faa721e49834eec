//! `POST /oauth/token`: the client-credentials grant (RFC 6749 §4.4) as Genesys answers it.
//! The order of checks and their answers are listed in the crate docs ("Token endpoint").

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use subtle::ConstantTimeEq as _;

use crate::config::{ClientConfig, ClientState};
use crate::counters::bump;
use crate::faults::Route;
use crate::jwt::{self, Assertion};
use crate::respond::{json_response, no_store, oauth_error};
use crate::state::AppState;
use crate::util;

/// Why a token request failed (internal; the wire is terser).
#[derive(Debug)]
enum Failure {
    Unavailable(Option<u64>),
    RateLimited,
    InvalidRequest(String),
    UnsupportedGrantType(String),
    InvalidClient { reason: String, basic: bool },
    InvalidScope(String),
}

impl Failure {
    fn invalid_client(reason: impl Into<String>, basic: bool) -> Self {
        Self::InvalidClient { reason: reason.into(), basic }
    }

    fn respond(self, state: &AppState) -> Response {
        let c = &state.counters;
        let (counter, reason) = match &self {
            Self::Unavailable(_) => (&c.token.unavailable, "maintenance".to_owned()),
            Self::RateLimited => {
                (&c.token.rate_limited, "token endpoint rate limit exceeded".to_owned())
            }
            Self::InvalidRequest(r) => (&c.token.invalid_request, r.clone()),
            Self::UnsupportedGrantType(g) => {
                (&c.token.unsupported_grant_type, format!("grant_type {g:?}"))
            }
            Self::InvalidClient { reason, .. } => (&c.token.invalid_client, reason.clone()),
            Self::InvalidScope(r) => (&c.token.invalid_scope, r.clone()),
        };
        bump(counter);
        c.set_last_token_error(reason);
        match self {
            Self::Unavailable(retry_after) => {
                let mut r = oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the service is down for maintenance",
                );
                if let Some(secs) = retry_after {
                    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                r
            }
            Self::RateLimited => oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "rate limit exceeded; too many token requests for this client, try again later",
            ),
            Self::InvalidRequest(reason) => {
                oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &reason)
            }
            Self::UnsupportedGrantType(_) => oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            ),
            Self::InvalidClient { basic, .. } => {
                let mut r = oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "authentication failed",
                );
                if basic {
                    let challenge = format!("Basic realm=\"{}\"", state.config.environment);
                    if let Ok(v) = HeaderValue::from_str(&challenge) {
                        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                    }
                }
                r
            }
            Self::InvalidScope(reason) => {
                oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &reason)
            }
        }
    }
}

/// The handler.
pub(crate) async fn token_endpoint(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bump(&state.counters.token.requests);
    let _in_flight = state.counters.token_in_flight();
    let latency = crate::counters::lock(&state.faults).token_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match issue(&state, &headers, &body) {
        Ok(response) => {
            bump(&state.counters.token.succeeded);
            response
        }
        Err(failure) => failure.respond(&state),
    }
}

/// The request's parameters, each at most once, empty ones dropped.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Result<Self, Failure> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(body) {
            if v.is_empty() {
                continue;
            }
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(Failure::InvalidRequest(format!(
                    "parameter {k} repeated (RFC 6749 §3.2)"
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Client authentication as presented, before checking it.
enum Presented<'a> {
    Basic { id: String, secret: String },
    Post { id: &'a str, secret: &'a str },
    Jwt(Assertion<'a>),
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

fn issue(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, Failure> {
    let now = Instant::now();
    {
        let faults = crate::counters::lock(&state.faults);
        if let Some(retry_after) = faults.maintenance(Route::Token, now) {
            return Err(Failure::Unavailable(retry_after.map(util::retry_after_secs)));
        }
        if faults.forced_token_rate_limit(now) {
            return Err(Failure::RateLimited);
        }
    }
    if !is_form(headers) {
        return Err(Failure::InvalidRequest(
            "Content-Type must be application/x-www-form-urlencoded".into(),
        ));
    }
    let form = Form::parse(body)?;
    match form.get("grant_type") {
        None => return Err(Failure::InvalidRequest("grant_type is required".into())),
        Some("client_credentials") => {}
        Some(other) => return Err(Failure::UnsupportedGrantType(other.to_owned())),
    }
    if form.get("scope").is_some() {
        bump(&state.counters.token.with_scope);
    }

    let presented = present(headers, &form)?;
    let c = &state.counters.token;
    let (claimed, basic) = match &presented {
        Presented::Basic { id, .. } => {
            bump(&c.auth_basic);
            (id.as_str(), true)
        }
        Presented::Post { id, .. } => {
            bump(&c.auth_post);
            (*id, false)
        }
        Presented::Jwt(a) => {
            bump(&c.auth_jwt);
            (form.get("client_id").or(a.claimed_client()).unwrap_or_default(), false)
        }
    };
    if let Some(body_id) = form.get("client_id")
        && body_id != claimed
    {
        return Err(Failure::InvalidRequest(
            "client_id does not match the authenticated client".into(),
        ));
    }
    if !state.admit_token_request(claimed, now) {
        return Err(Failure::RateLimited);
    }

    let client = state
        .client(claimed)
        .ok_or_else(|| Failure::invalid_client(format!("unknown client {claimed:?}"), basic))?;
    authenticate(state, &client, &presented)?;
    if client.state != ClientState::Active {
        return Err(Failure::invalid_client(
            format!("client {claimed:?} is {:?}", client.state),
            basic,
        ));
    }

    let (permissions, granted_scope) = grant(state, &client, form.get("scope"))?;
    let issued = state.issue_token(&client, permissions);
    let mut body = json!({
        "access_token": issued.access_token,
        "token_type": "bearer",
        "expires_in": issued.expires_in,
    });
    if let (Some(scope), serde_json::Value::Object(map)) = (granted_scope, &mut body) {
        map.insert("scope".into(), scope.into());
    }
    Ok(no_store(json_response(StatusCode::OK, &body)))
}

/// Finds the one client authentication method of the request.
fn present<'a>(headers: &HeaderMap, form: &'a Form) -> Result<Presented<'a>, Failure> {
    let authorization = headers.get(header::AUTHORIZATION);
    let post = form.get("client_secret").is_some();
    let jwt = form.get("client_assertion").is_some() || form.get("client_assertion_type").is_some();
    let methods = usize::from(authorization.is_some()) + usize::from(post) + usize::from(jwt);
    if methods > 1 {
        return Err(Failure::InvalidRequest(
            "more than one client authentication method in the request (RFC 6749 §2.3)".into(),
        ));
    }
    if let Some(value) = authorization {
        let (id, secret) =
            decode_basic(value.as_bytes()).map_err(|r| Failure::invalid_client(r, true))?;
        return Ok(Presented::Basic { id, secret });
    }
    if post {
        let id = form
            .get("client_id")
            .ok_or_else(|| Failure::InvalidRequest("client_secret without client_id".into()))?;
        return Ok(Presented::Post { id, secret: form.get("client_secret").unwrap_or_default() });
    }
    if jwt {
        if form.get("client_assertion_type") != Some(jwt::ASSERTION_TYPE) {
            return Err(Failure::InvalidRequest(format!(
                "client_assertion_type must be {}",
                jwt::ASSERTION_TYPE
            )));
        }
        let assertion = form
            .get("client_assertion")
            .ok_or_else(|| Failure::InvalidRequest("client_assertion is required".into()))?;
        return Assertion::parse(assertion)
            .map(Presented::Jwt)
            .map_err(|r| Failure::invalid_client(r, false));
    }
    Err(Failure::invalid_client("no client authentication in the request", false))
}

/// Checks the presented secret or assertion against the client.
fn authenticate(
    state: &AppState,
    client: &ClientConfig,
    presented: &Presented<'_>,
) -> Result<(), Failure> {
    let secret_ok = |given: &str| bool::from(given.as_bytes().ct_eq(client.secret.as_bytes()));
    match presented {
        Presented::Basic { secret, .. } if secret_ok(secret) => Ok(()),
        Presented::Basic { .. } => {
            Err(Failure::invalid_client("wrong client secret (Basic)", true))
        }
        Presented::Post { secret, .. } if secret_ok(secret) => Ok(()),
        Presented::Post { .. } => {
            Err(Failure::invalid_client("wrong client secret (client_secret_post)", false))
        }
        Presented::Jwt(assertion) => {
            let now = util::unix_now().as_secs();
            let (jti, exp) = assertion
                .verify(&client.secret, &client.id, &state.token_url, now)
                .map_err(|r| Failure::invalid_client(r, false))?;
            if state.use_jti(&client.id, &jti, exp) {
                Ok(())
            } else {
                Err(Failure::invalid_client(format!("assertion jti {jti:?} replayed"), false))
            }
        }
    }
}

/// The token's permissions and the `scope` to answer, if any.
fn grant(
    state: &AppState,
    client: &ClientConfig,
    requested: Option<&str>,
) -> Result<(Vec<String>, Option<String>), Failure> {
    let (true, Some(requested)) = (state.config.echo_scope, requested) else {
        return Ok((client.permissions.clone(), None));
    };
    let granted: Vec<String> = requested
        .split(' ')
        .filter(|s| !s.is_empty())
        .filter(|s| client.permissions.iter().any(|p| crate::tokens::permission_covers(p, s)))
        .map(str::to_owned)
        .collect();
    if granted.is_empty() {
        return Err(Failure::InvalidScope(format!(
            "none of the requested scopes {requested:?} is granted"
        )));
    }
    let scope = granted.join(" ");
    Ok((granted, Some(scope)))
}

/// Decodes `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 7617 §2, RFC 6749 §2.3.1).
fn decode_basic(value: &[u8]) -> Result<(String, String), String> {
    let value = std::str::from_utf8(value).map_err(|_| "Authorization header is not ASCII")?;
    let (scheme, credentials) =
        value.trim().split_once(' ').ok_or("Authorization header has no credentials")?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(format!("Authorization scheme {scheme:?} is not Basic"));
    }
    let raw = STANDARD
        .decode(credentials.trim())
        .map_err(|e| format!("Basic credentials are not base64: {e}"))?;
    let colon = raw.iter().position(|&b| b == b':').ok_or("Basic credentials have no ':'")?;
    let (id, secret) = raw.split_at(colon);
    let secret = secret.get(1..).unwrap_or_default();
    Ok((percent_decode(id)?, percent_decode(secret)?))
}

/// Decodes `%XX` escapes; `+` stays `+`. A `%` not followed by two hex digits is an error.
fn percent_decode(input: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
            match (hex(bytes.next()), hex(bytes.next())) {
                (Some(hi), Some(lo)) => out.push(u8::try_from(hi * 16 + lo).unwrap_or(0)),
                _ => return Err("Basic credentials hold a bad %-escape".into()),
            }
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| "Basic credentials are not UTF-8 once decoded".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    #[test]
    fn basic_decoding_per_rfc6749_2_3_1() {
        assert_eq!(decode_basic(basic("id:secret").as_bytes()), Ok(("id".into(), "secret".into())));
        assert_eq!(
            decode_basic(basic("a%3Ab:s%25%3A%20x+y:z").as_bytes()),
            Ok(("a:b".into(), "s%: x+y:z".into()))
        );
        assert_eq!(decode_basic(basic("%C3%BC:").as_bytes()), Ok(("ü".into(), String::new())));
        assert!(decode_basic(basic("id:%zz").as_bytes()).is_err());
        assert!(decode_basic(basic("id:%4").as_bytes()).is_err());
        assert!(decode_basic(basic("%FF:x").as_bytes()).is_err());
        assert!(decode_basic(basic("nocolon").as_bytes()).is_err());
        assert!(decode_basic(b"Bearer abc").is_err());
        assert!(decode_basic(b"Basic !!!").is_err());
        assert_eq!(
            decode_basic(format!("basic  {}", STANDARD.encode("a:b")).as_bytes()).ok(),
            Some(("a".into(), "b".into()))
        );
    }

    #[test]
    fn form_rules() {
        assert!(Form::parse(b"a=1&a=2").is_err());
        let f = Form::parse(b"a=&a=2&b=x+y%21").ok();
        assert_eq!(f.as_ref().and_then(|f| f.get("a")), Some("2"));
        assert_eq!(f.as_ref().and_then(|f| f.get("b")), Some("x y!"));
    }
}
