//! # credflow-reqwest
//!
//! The tokio + reqwest adapter for [credflow-core](credflow_core): a [`Client`] you create once
//! per process and share, which keeps an OAuth 2.0 client-credentials token fresh, attaches it
//! to your requests, paces them to the server's rate limit, retries what is worth retrying and
//! explains what it cannot fix.
//!
//! The adapter owns the clock, the sleeps, the randomness and the HTTP; every decision is the
//! core's: its session's and, in fleet mode, its fleet drivers' ([`credflow_core::fleet`]).
//! Tokens are refreshed ahead of expiry by a background task (single flight:
//! one token request however many callers), and served to callers from a lock-free cache.
//!
//! ```no_run
//! # async fn demo() -> Result<(), credflow_reqwest::Error> {
//! // GENESYS_CLIENT_ID, GENESYS_CLIENT_SECRET (or _FILE), GENESYS_ENV_NAME
//! let client = credflow_reqwest::Client::from_env()?;
//! let request = client.request(reqwest::Method::GET, "/api/v2/routing/queues")?.build()
//!     .map_err(|e| credflow_reqwest::Error::from_reqwest("building the request", e))?;
//! let response = client.send(request).await?;
//! println!("{}", response.status());
//! // Or just the token, for another HTTP stack:
//! let token = client.token().await?;
//! # let _ = token;
//! # Ok(()) }
//! ```
//!
//! ## Building, sharing, reporting back
//!
//! [`Client::builder`] sets a [`Config`] by name ([`Config`] is `#[non_exhaustive]`).
//! [`Transport`] holds the HTTP clients: share one among many credflow clients (one per tenant),
//! or bring your own `reqwest::Client` for API requests ([`ClientBuilder::http_client`]); token
//! requests always go through credflow's own client, which follows no redirect (see
//! [`transport`]). [`Client::new`] outside a tokio runtime is an error, not a panic.
//!
//! A caller of [`Client::token`] that sends with another HTTP stack reports a 401 with
//! [`Client::invalidate`] (only that token is dropped) or forces a new token with
//! [`Client::refresh`]; code written against [`TokenSource`] takes a mock in tests.
//!
//! Features: `middleware` (reqwest-middleware), `tower` (a tower `Layer` for `http::Request`
//! stacks: `tower` module), `serde` ([`config::Settings`] and [`Target`] from a configuration
//! file, [`ClientEvent`] as structured records).
//!
//! ## Errors
//!
//! [`Error`] carries the HTTP status, the OAuth or Genesys error code, the correlation id
//! (`ININ-Correlation-Id`) and the likely cause; [`Error::exit_code`] maps it to the `credflow`
//! command's exit codes (2 configuration, or a token URL that answers with no usable token,
//! 3 credentials rejected, 4 scope or permission, 5 unavailable). A caller that gets no token is
//! told what went wrong with the last token response. Secrets and tokens never appear in
//! errors, `Debug` output or logs, even when a server echoes them: [`Client::redact`] masks them
//! in what an application prints of a response itself.
//!
//! ## As a reqwest-middleware layer
//!
//! With the `middleware` feature, [`Client`] implements `reqwest_middleware::Middleware`: add it
//! to an existing stack with `.with(client.clone())` (see the `middleware` module). Per-request
//! [`RequestOptions`] go in the request's extensions.
//!
//! ## Fleet mode
//!
//! Processes that share a client id can share one token and one rate budget through a
//! [`shared::SharedStore`] (Redis: the `credflow-redis` crate), set with [`Config::with_shared`].
//! If the store becomes unreachable, each process carries on with its local session and rejoins
//! when it answers again; [`Client::fleet_status`] says which.
//!
//! ## Origins, redirects and response sizes
//!
//! The bearer token goes only to the API base's origin (scheme, host and port): [`Client::send`]
//! and the middleware refuse a request for any other before anything is sent, with a
//! configuration error naming both origins (the core's
//! [`credflow_core::http::redirect::check_token_origin`]), and [`Client::url`] never joins a
//! path into another origin.
//!
//! Token requests go through an HTTP client the adapter builds for them alone, with
//! `reqwest::redirect::Policy::none()`: a token endpoint's 3xx is refused by the session (token
//! requests stop, the error names the `Location`'s origin), never followed with the secret.
//! The client behind [`Client::http`] follows a redirect only within the request's origin (the
//! core's [`credflow_core::http::redirect::decide`]) and hands any other 3xx back untouched; a
//! middleware stack's or a caller's own `reqwest::Client` applies its own policy (build it with
//! [`transport::redirect_policy`], or `Policy::none()`, for the same). Token responses and API error bodies are read up to
//! [`Config::max_response_body`] bytes; the request timeouts cover the body.
//!
//! ## Logging
//!
//! `tracing` events for token refreshes, token endpoint errors, retries, waits and breaker
//! changes, with correlation ids. Subscribe to [`Client::events`] for a structured feed.

// docs.rs (nightly, `--cfg docsrs`): mark each item a feature gates with that feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod client;
pub mod config;
mod error;
#[cfg(feature = "middleware")]
pub mod middleware;
mod settings;
pub mod shared;
mod source;
#[cfg(feature = "tower")]
pub mod tower;
pub mod transport;

pub use builder::ClientBuilder;
pub use client::{Client, ClientEvent, HOSTS, RequestOptions, TOKEN_CAPACITY, Token};
pub use config::{Config, Target};
pub use credflow_core;
pub use credflow_core::Priority;
pub use credflow_core::oauth::AuthMethod;
pub use error::{Error, ErrorKind};
pub use shared::{FleetStatus, SharedStore};
pub use source::{TokenFuture, TokenSource};
pub use transport::Transport;

// The README is the crates.io page: its example compiles as a doctest, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
