//! # credflow-emulator
//!
//! A real HTTP server on 127.0.0.1 that answers like Genesys Cloud's OAuth token endpoint and a
//! few of its API routes, for testing OAuth 2.0 client-credentials clients offline: credflow's
//! own tests, its CLI demo, and anyone checking an integration without a Genesys org.
//!
//! It is deliberately independent of `credflow-core`: it re-implements the protocol from the
//! RFCs and the platform's observed behaviour, so that it catches credflow's bugs instead of
//! sharing them.
//!
//! ## What it emulates
//! - `POST /oauth/token`, client credentials (RFC 6749 §4.4) with HTTP Basic (§2.3.1, including
//!   the form-encoding of id and secret), `client_secret_post`, or `client_secret_jwt`
//!   (RFC 7523). Errors in Genesys's shape: `{"error", "description", "error_description"}`;
//!   the token-endpoint rate limit answers **400** `invalid_request`, `rate limit exceeded; ...`
//!   as Genesys does, not 429. Details below.
//! - Opaque bearer tokens bound to an environment, expiring on time (millisecond precision, so
//!   tests can use lifetimes of a second), revocable (`DELETE /api/v2/tokens/me`).
//! - The API side: RFC 6750 bearer authentication with Genesys 401 codes
//!   (`authentication.required`, `bad.credentials`, `credentials.expired`), 403
//!   `missing.permissions`, fixed-window rate limiting per client id (or per token:
//!   `RateLimitScope`) with `inin-ratelimit-*` headers and 429 `too.many.requests.retry.after`
//!   plus `Retry-After`, an optional daily limit,
//!   `ININ-Correlation-Id` on every response equal to `contextId` in error bodies, and `Date`.
//! - Routes: `/api/v2/tokens/me` (GET, HEAD, DELETE), `GET /api/v2/routing/queues` (paged fake
//!   queues), `POST /api/v2/analytics/conversations/details/query` (fake conversations).
//! - Faults, from config or at run time ([`FaultControl`], `POST /__emulator/faults`):
//!   maintenance (503), latency, dropped connections (next N, or a seeded probability), forced
//!   429s, forced token rate limiting, expiring or revoking every token.
//! - Counters for assertions ([`CountersSnapshot`]), including the most token requests ever in
//!   flight at once and a per-client histogram of admitted API requests.
//! - HTTPS on request ([`EmulatorConfig::tls`]): a throwaway CA and a server certificate for
//!   `localhost`, `login.localhost`, `api.localhost` and `127.0.0.1` (ECDSA P-256, TLS 1.3 and
//!   1.2, ALPN `http/1.1`), made at start; clients trust [`EmulatorHandle::ca_pem`].
//!
//! ## What it does not
//! Any address but loopback, HTTP/2, user logins and every other grant, roles and
//! divisions (permissions are a flat list per client), refresh tokens, the rest of the API, and
//! Genesys's exact wording where it is not documented (noted where it matters, e.g. the
//! `messageParams` of a 403).
//!
//! ## Token endpoint
//! `POST /oauth/token` checks, in this order (first failure answers):
//! 1. maintenance → 503 `temporarily_unavailable` (+ `Retry-After` if configured);
//! 2. forced token rate limit → 400 `invalid_request`, `rate limit exceeded; ...`;
//! 3. `Content-Type` other than `application/x-www-form-urlencoded`, a parameter repeated
//!    (§3.2), no `grant_type` → 400 `invalid_request`; another grant → 400
//!    `unsupported_grant_type` (§5.2). Empty parameters count as absent (§3.1);
//! 4. client authentication, exactly one method (§2.3): HTTP Basic with the id and secret
//!    form-urlencoded before base64 (§2.3.1; the emulator percent-decodes and keeps a literal
//!    `+`), `client_secret_post` (§2.3.1), or `client_secret_jwt` (RFC 7523 §2.2: an HS256
//!    JWT signed with the client secret; `iss` = `sub` = client id, `aud` holds
//!    [`token_url`](EmulatorHandle::token_url), `exp` in the future, `nbf` if any in the past,
//!    `jti` required and never reused). Several methods → 400 `invalid_request`; none → 401
//!    `invalid_client`;
//! 5. the token-endpoint rate limit of the claimed client → 400 `rate limit exceeded; ...`;
//! 6. unknown client, wrong secret, bad assertion, client not active → 401 `invalid_client`,
//!    `authentication failed` (with `WWW-Authenticate: Basic` when Basic was used, §5.2);
//! 7. `scope`: recorded; with [`echo_scope`](EmulatorConfig::echo_scope) the grant is
//!    requested ∩ permissions (none in common → 400 `invalid_scope`);
//! 8. 200 `{"access_token", "token_type": "bearer", "expires_in"}` (§5.1), `no-store`.
//!
//! ## API
//! Every `/api/` request passes these checks, in this order:
//! 1. added latency, then maintenance → 503 `service.unavailable` (+ `Retry-After`);
//! 2. `Authorization: Bearer` (RFC 6750 §2.1): missing or another scheme → 401
//!    `authentication.required` with `WWW-Authenticate: Bearer realm="<env>"` and no error code
//!    (RFC 6750 §3.1: a request without credentials gets none); malformed, unknown, revoked,
//!    other-environment or inactive-client token → 401 `bad.credentials`, expired → 401
//!    `credentials.expired`, both with `error="invalid_token"`;
//! 3. forced 429 → 429 `too.many.requests.retry.after`;
//! 4. the long ("daily") limit, then the per-window limit of the token's client → 429 with
//!    `Retry-After` (whole seconds, rounded up) and the Genesys body;
//! 5. the route; lacking its permission → 403 `missing.permissions` (`messageParams` is a string
//!    map in Genesys's error model; the parameter name Genesys uses here is undocumented, the
//!    emulator says `permissions`).
//!
//! Admitted requests and their 429s carry `inin-ratelimit-count`, `-allowed` and `-reset`.
//!
//! Routes: `GET|HEAD|DELETE /api/v2/tokens/me`, `GET /api/v2/routing/queues` (permission
//! `routing:queue:view`, `pageSize` 1..=500, `pageNumber` ≥ 1, `name` with a leading or
//! trailing `*` as wildcard; `previousUri` from page 2 on), `GET /api/v2/routing/queues/{id}`
//! (a queue's `selfUri`), `GET /api/v2/users` (12 fake users, paged), `GET
//! /api/v2/organizations/me`,
//! `POST /api/v2/analytics/conversations/details/query` (permission
//! `analytics:conversationDetail:view`, a JSON object with an `interval` string). There is no
//! unauthenticated health route: every `/api/` path wants a token, as on Genesys. Unknown paths
//! answer 404 `not.found` once authenticated.
//!
//! ## Control routes
//! Not part of Genesys; never faulted, never counted.
//!
//! | route | does |
//! |---|---|
//! | `GET /__emulator/counters` | [`CountersSnapshot`] as JSON |
//! | `GET /__emulator/faults` | faults in force |
//! | `POST /__emulator/faults` | applies a [`FaultsUpdate`], answers the faults in force |
//! | `POST /__emulator/reset` | counters, limiter windows and faults back to start (204) |
//! | `POST /__emulator/clients/{id}` | `{"state": "active" \| "disabled" \| "inactive"}` (204, 404 if unknown) |
//!
//! ## Use in tests
//! ```no_run
//! use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), credflow_emulator::EmulatorError> {
//! let emulator = Emulator::start(
//!     EmulatorConfig::default()
//!         .with_token_lifetime(Duration::from_secs(2))
//!         .with_api_rate_limit(5, Duration::from_secs(1)),
//! )
//! .await?;
//! let token_url = emulator.token_url(); // POST here with DEMO_CLIENT_ID / DEMO_CLIENT_SECRET
//! // ... drive the client under test ...
//! let counters = emulator.counters();
//! assert!(counters.admitted_for(DEMO_CLIENT_ID).max_in_window(Duration::from_secs(1)) <= 10);
//! emulator.shutdown().await;
//! # let _ = (token_url, DEMO_CLIENT_SECRET);
//! # Ok(()) }
//! ```
//! Synchronous code uses [`Emulator::start_background`]. The `credflow-emulator` binary runs one
//! from the command line ([`EmulatorArgs`]).

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

mod api;
mod cli;
mod config;
mod control;
mod counters;
mod faults;
pub mod hostile;
mod jwt;
mod oauth;
mod ratelimit;
mod respond;
mod server;
mod state;
mod tls;
mod tokens;
mod util;

pub use cli::{EmulatorArgs, banner, print_banner, run_cli, write_ca_pem};
pub use config::RateLimitScope;
pub use config::{
    ClientConfig, ClientState, ConfigError, DEFAULT_ENVIRONMENT, DEFAULT_TOKEN_LIFETIME,
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DISABLED_CLIENT_ID, DISABLED_CLIENT_SECRET, DropFault,
    EmulatorConfig, FaultConfig, FaultTarget, LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET,
    Maintenance, PERMISSION_CONVERSATION_DETAIL_VIEW, PERMISSION_QUEUE_VIEW, RateLimit,
};
pub use counters::{
    AdmissionHistogram, ApiCounters, CountersSnapshot, HISTOGRAM_BUCKET, TokenCounters,
};
pub use faults::{FaultControl, FaultsUpdate, MaintenanceUpdate};
pub use server::{BackgroundEmulator, Emulator, EmulatorError, EmulatorHandle};
