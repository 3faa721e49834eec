//! The API side (`/api/v2/...`): bearer authentication, per-client rate limits, permissions,
//! and a few routes with fake data. The order of checks is listed in the crate docs ("API").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router, routing};
use serde_json::{Map, Value, json};

use crate::config::{PERMISSION_CONVERSATION_DETAIL_VIEW, PERMISSION_QUEUE_VIEW};
use crate::counters::{bump, lock};
use crate::faults::Route;
use crate::respond::{
    CorrelationId, GenesysError, json_response, service_unavailable, set_ratelimit_headers,
    too_many_requests,
};
use crate::state::{ApiAdmission, AppState};
use crate::tokens::{Principal, Rejection, permission_covers};
use crate::util::{self, retry_after_secs};

/// The `/api` router (to be nested), gate included: every `/api/` path is authenticated.
pub(crate) fn router(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v2/tokens/me", routing::get(tokens_me).delete(revoke_me))
        .route("/v2/routing/queues", routing::get(queues))
        .route("/v2/routing/queues/{id}", routing::get(queue))
        .route("/v2/users", routing::get(users))
        .route("/v2/organizations/me", routing::get(organization_me))
        .route("/v2/analytics/conversations/details/query", routing::post(conversation_details))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(state), gate))
}

/// Authentication, limits and faults in front of every API route.
pub(crate) async fn gate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    bump(&state.counters.api.requests);
    let response = admit_and_run(&state, request, next).await;
    let c = &state.counters.api;
    match response.status().as_u16() {
        200..=299 => bump(&c.status_2xx),
        400..=499 => bump(&c.status_4xx),
        500..=599 => bump(&c.status_5xx),
        _ => {}
    }
    response
}

async fn admit_and_run(state: &AppState, mut request: Request, next: Next) -> Response {
    let ctx = request
        .extensions()
        .get::<CorrelationId>()
        .cloned()
        .unwrap_or(CorrelationId(String::new()));
    let c = &state.counters.api;
    let latency = lock(&state.faults).api_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let now = Instant::now();
    let maintenance = lock(&state.faults).maintenance(Route::Api, now);
    if let Some(retry_after) = maintenance {
        bump(&c.unavailable);
        return service_unavailable(&ctx, retry_after.map(retry_after_secs));
    }
    let principal = match authenticate(state, request.headers(), now) {
        Ok(p) => p,
        Err(rejection) => return unauthorized(state, &ctx, rejection),
    };
    let forced = lock(&state.faults).forced_429(now);
    if let Some(left) = forced {
        bump(&c.forced_429);
        // The headers describe the forced window: spent (`inin-ratelimit-count` at the limit,
        // not the 0 of a fresh window, which would tell a client that reads them the opposite
        // of the 429) until the fault ends, as `Retry-After` says.
        let mut window = state.peek_api_window(&principal, now);
        window.count = window.count.max(window.allowed);
        window.reset_after = left;
        let mut response = too_many_requests(&ctx, retry_after_secs(left));
        set_ratelimit_headers(response.headers_mut(), window);
        return response;
    }
    let window = match state.admit_api_request(&principal, now) {
        ApiAdmission::Admitted(window) => window,
        ApiAdmission::Limited(window) => {
            bump(&c.rate_limited);
            let mut response = too_many_requests(&ctx, retry_after_secs(window.reset_after));
            set_ratelimit_headers(response.headers_mut(), window);
            return response;
        }
        ApiAdmission::DailyLimited(window) => {
            bump(&c.daily_limited);
            let mut response = too_many_requests(&ctx, retry_after_secs(window.reset_after));
            set_ratelimit_headers(response.headers_mut(), window);
            return response;
        }
    };
    bump(&c.admitted);
    state.counters.admit(&principal.client_id, now.saturating_duration_since(state.started));
    request.extensions_mut().insert(principal);
    let mut response = next.run(request).await;
    set_ratelimit_headers(response.headers_mut(), window);
    response
}

fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    now: Instant,
) -> Result<Principal, Rejection> {
    let value = headers.get(header::AUTHORIZATION).ok_or(Rejection::Missing)?;
    let value = value.to_str().map_err(|_| Rejection::Malformed)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(Rejection::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::Missing);
    }
    state.check_token(token.trim(), now)
}

fn unauthorized(state: &AppState, ctx: &CorrelationId, rejection: Rejection) -> Response {
    let c = &state.counters.api;
    bump(&c.unauthorized);
    bump(match rejection {
        Rejection::Missing => &c.unauthorized_missing,
        Rejection::Expired => &c.unauthorized_expired,
        Rejection::Revoked => &c.unauthorized_revoked,
        Rejection::OtherEnvironment => &c.unauthorized_other_environment,
        Rejection::Malformed | Rejection::Unknown | Rejection::ClientInactive => {
            &c.unauthorized_unknown
        }
    });
    let (code, message) = rejection.genesys();
    let mut response = GenesysError::new(StatusCode::UNAUTHORIZED, code, message).respond(ctx);
    let env = &state.config.environment;
    let challenge = match rejection {
        Rejection::Missing => format!("Bearer realm=\"{env}\""),
        other => format!(
            "Bearer realm=\"{env}\", error=\"invalid_token\", error_description=\"{}\"",
            other.describe()
        ),
    };
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

/// `None` if the token carries `permission`, else a 403 `missing.permissions`.
///
/// `messageWithParams` / `messageParams` follow the Genesys error model (`messageParams` is a
/// string map); the exact parameter name Genesys uses here is not documented, the emulator uses
/// `permissions`.
fn missing_permission(
    principal: &Principal,
    permission: &str,
    state: &AppState,
    ctx: &CorrelationId,
) -> Option<Response> {
    if principal.permissions.iter().any(|p| permission_covers(p, permission)) {
        return None;
    }
    bump(&state.counters.api.forbidden);
    let listed = format!("[{permission}]");
    let message = format!(
        "Unable to perform the requested action. You are missing the following permission(s): {listed}"
    );
    let template = "Unable to perform the requested action. You are missing the following permission(s): {permissions}";
    let mut params = Map::new();
    params.insert("permissions".into(), Value::String(listed));
    Some(
        GenesysError::new(StatusCode::FORBIDDEN, "missing.permissions", message)
            .with_params(template, params)
            .respond(ctx),
    )
}

/// Deterministic fake UUID for entity `n` of `kind`.
fn fake_id(kind: u8, n: u64) -> String {
    let mut b = [0_u8; 16];
    b[0] = kind;
    for (slot, byte) in b.iter_mut().skip(8).zip(n.to_be_bytes()) {
        *slot = byte;
    }
    b[6] = 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    util::format_uuid(b)
}

fn organization(state: &AppState) -> Value {
    json!({ "id": fake_id(0x01, 1), "name": format!("Emulated organization ({})", state.config.environment) })
}

/// `GET|HEAD /api/v2/tokens/me`: what the token is (Genesys `TokenInfo`, plus `environment`).
async fn tokens_me(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> Response {
    let remaining = principal.expires_at.saturating_duration_since(Instant::now());
    let body = json!({
        "organization": organization(&state),
        "homeOrganization": organization(&state),
        "OAuthClient": {
            "id": principal.client_id,
            "name": principal.client_id,
            "organization": { "id": fake_id(0x01, 1) },
        },
        "authorizedScope": principal.permissions,
        "tokenExpirationDate": util::iso8601(principal.expires_unix),
        "expiresInMs": u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX),
        "environment": state.config.environment,
    });
    json_response(StatusCode::OK, &body)
}

/// `DELETE /api/v2/tokens/me`: revokes the presenting token; 204.
async fn revoke_me(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> Response {
    state.revoke_token(&principal.token);
    StatusCode::NO_CONTENT.into_response()
}

fn bad_request(ctx: &CorrelationId, message: impl Into<String>) -> Response {
    GenesysError::new(StatusCode::BAD_REQUEST, "bad.request", message).respond(ctx)
}

/// Fake users listed by `GET /api/v2/users`.
const USER_COUNT: u64 = 12;

/// `pageSize` (1..=500, default 25) and `pageNumber` (at least 1, default 1) of a paged list.
fn paging(query: &HashMap<String, String>) -> Option<(u64, u64)> {
    let number = |key: &str, default: u64| query.get(key).map_or(Ok(default), |v| v.parse::<u64>());
    match (number("pageSize", 25), number("pageNumber", 1)) {
        (Ok(size @ 1..=500), Ok(page @ 1..)) => Some((size, page)),
        _ => None,
    }
}

/// A Genesys entity listing: `entities` (already cut to the page), the paging fields, and the
/// page URIs (`previousUri` from page 2 on, `nextUri` before the last page), each of them
/// `path?{filter}pageSize=..&pageNumber=..`.
fn listing(
    entities: Vec<Value>,
    total: u64,
    size: u64,
    page: u64,
    path: &str,
    filter: &str,
) -> Value {
    let page_count = total.div_ceil(size).max(1);
    let uri = |n: u64| format!("{path}?{filter}pageSize={size}&pageNumber={n}");
    let mut body = json!({
        "entities": entities,
        "pageSize": size,
        "pageNumber": page,
        "total": total,
        "pageCount": page_count,
        "firstUri": uri(1),
        "selfUri": uri(page),
        "lastUri": uri(page_count),
    });
    if let Value::Object(map) = &mut body {
        if page > 1 {
            // The page before, or the last one for a page past the end.
            map.insert(
                "previousUri".into(),
                Value::String(uri(page.saturating_sub(1).min(page_count))),
            );
        }
        if page < page_count {
            map.insert("nextUri".into(), Value::String(uri(page.saturating_add(1))));
        }
    }
    body
}

/// Queue `i` as the API shows it.
fn fake_queue(i: u64) -> Value {
    json!({
        "id": fake_id(0x02, i),
        "name": format!("Emulated queue {}", i.saturating_add(1)),
        "memberCount": i % 7,
        "selfUri": format!("/api/v2/routing/queues/{}", fake_id(0x02, i)),
    })
}

/// Whether `name` passes a `name=` filter: case-insensitive, a leading or trailing `*` a
/// wildcard (as Genesys's queue search takes it), otherwise the whole name.
fn name_matches(filter: &str, name: &str) -> bool {
    let (name, filter) = (name.to_lowercase(), filter.to_lowercase());
    let (starts, rest) = match filter.strip_prefix('*') {
        Some(rest) => (false, rest),
        None => (true, filter.as_str()),
    };
    let (ends, core) = match rest.strip_suffix('*') {
        Some(core) => (false, core),
        None => (true, rest),
    };
    match (starts, ends) {
        (true, true) => name == core,
        (true, false) => name.starts_with(core),
        (false, true) => name.ends_with(core),
        (false, false) => name.contains(core),
    }
}

/// `GET /api/v2/routing/queues?pageSize=&pageNumber=&name=`: a page of fake queues, those
/// whose name passes `name` if given.
async fn queues(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Extension(ctx): Extension<CorrelationId>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = missing_permission(&principal, PERMISSION_QUEUE_VIEW, &state, &ctx) {
        return r;
    }
    let Some((page_size, page_number)) = paging(&query) else {
        return bad_request(&ctx, "pageSize must be 1 to 500 and pageNumber at least 1");
    };
    let name = query.get("name").filter(|n| !n.is_empty());
    let matching: Vec<Value> = (0..u64::from(state.config.queue_count))
        .map(fake_queue)
        .filter(|q| name.is_none_or(|n| name_matches(n, q["name"].as_str().unwrap_or_default())))
        .collect();
    let total = u64::try_from(matching.len()).unwrap_or(u64::MAX);
    let first = usize::try_from(page_size.saturating_mul(page_number - 1)).unwrap_or(usize::MAX);
    let size = usize::try_from(page_size).unwrap_or(usize::MAX);
    let entities = matching.into_iter().skip(first).take(size).collect();
    let filter = name.map_or(String::new(), |n| {
        format!("name={}&", form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>())
    });
    let body = listing(entities, total, page_size, page_number, "/api/v2/routing/queues", &filter);
    json_response(StatusCode::OK, &body)
}

/// `GET /api/v2/routing/queues/{id}`: one queue (its `selfUri`), or 404 `not.found`.
async fn queue(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Extension(ctx): Extension<CorrelationId>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if let Some(r) = missing_permission(&principal, PERMISSION_QUEUE_VIEW, &state, &ctx) {
        return r;
    }
    match (0..u64::from(state.config.queue_count)).find(|&i| fake_id(0x02, i) == id) {
        Some(i) => json_response(StatusCode::OK, &fake_queue(i)),
        None => not_found(Extension(ctx)).await,
    }
}

/// `GET /api/v2/users?pageSize=&pageNumber=`: a page of fake users (no permission needed,
/// as on Genesys for the directory's basic fields).
async fn users(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<CorrelationId>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some((page_size, page_number)) = paging(&query) else {
        return bad_request(&ctx, "pageSize must be 1 to 500 and pageNumber at least 1");
    };
    let first = page_size.saturating_mul(page_number - 1);
    let domain = state.config.environment.clone();
    let entities = (first..USER_COUNT.min(first.saturating_add(page_size)))
        .map(|i| {
            let n = i.saturating_add(1);
            json!({
                "id": fake_id(0x04, i),
                "name": format!("Emulated user {n}"),
                "email": format!("user{n}@example.{domain}"),
                "username": format!("user{n}@example.{domain}"),
                "state": "active",
                "version": 1,
                "selfUri": format!("/api/v2/users/{}", fake_id(0x04, i)),
            })
        })
        .collect();
    let body = listing(entities, USER_COUNT, page_size, page_number, "/api/v2/users", "");
    json_response(StatusCode::OK, &body)
}

/// `GET /api/v2/organizations/me`: the token's organization (Genesys `Organization`).
async fn organization_me(State(state): State<Arc<AppState>>) -> Response {
    let mut org = organization(&state);
    if let Value::Object(map) = &mut org {
        map.insert("state".into(), json!("active"));
        map.insert("version".into(), json!(1));
        map.insert("thirdPartyOrgName".into(), json!("emulated"));
        map.insert("domain".into(), json!("emulated"));
        map.insert("selfUri".into(), json!("/api/v2/organizations/me"));
    }
    json_response(StatusCode::OK, &org)
}

/// `POST /api/v2/analytics/conversations/details/query`: two fake conversations in `interval`.
async fn conversation_details(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Extension(ctx): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) =
        missing_permission(&principal, PERMISSION_CONVERSATION_DETAIL_VIEW, &state, &ctx)
    {
        return r;
    }
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return bad_request(&ctx, "Content-Type must be application/json");
    }
    let query: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return bad_request(&ctx, "the body must be a JSON object"),
        Err(e) => return bad_request(&ctx, format!("the body is not valid JSON: {e}")),
    };
    let Some(interval) = query.get("interval").and_then(Value::as_str) else {
        return bad_request(
            &ctx,
            "interval is required (ISO-8601, e.g. 2024-01-01T00:00:00Z/2024-01-02T00:00:00Z)",
        );
    };
    let start = interval.split('/').next().unwrap_or_default();
    let conversations: Vec<Value> = (0..2_u64)
        .map(|i| {
            json!({
                "conversationId": fake_id(0x03, i),
                "conversationStart": start,
                "originatingDirection": if i == 0 { "inbound" } else { "outbound" },
                "participants": [],
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "conversations": conversations, "totalHits": 2 }))
}

/// Unknown path under `/api` (after authentication): 404 `not.found`.
async fn not_found(Extension(ctx): Extension<CorrelationId>) -> Response {
    GenesysError::new(StatusCode::NOT_FOUND, "not.found", "The requested resource was not found.")
        .respond(&ctx)
}
