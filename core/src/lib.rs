//! # credflow-core
//!
//! The sans-IO heart of credflow: everything about keeping an OAuth 2.0 client-credentials token
//! valid and using it well, and nothing about sockets, clocks or threads. `#![no_std]`, no
//! `alloc`, no `unsafe`. It runs the same on a Cortex-M appliance, in a tokio service and in a
//! discrete-event simulator, because it only ever does what it is told, when it is told.
//!
//! ## Architecture
//!
//! Pure state machines, each fed with `now` ([`Instant`], monotonic milliseconds) and with what
//! the network answered, each answering *what* to do and *until when*:
//!
//! | module | decides |
//! |---|---|
//! | [`lifecycle`] | which token to use, when to refresh it (ahead of expiry, jittered), single flight, token requests spaced by `min_refresh_interval` whatever the server sends, generation-aware invalidation after a 401, stop on `invalid_client` |
//! | [`oauth`] | the token request bytes (RFC 6749 §4.4, `client_secret_basic`/`post`/`jwt`), the token and error responses (§5.1, §5.2) |
//! | [`classify`] | what an API response means: success, 401 → refresh and retry once, 403 diagnosis, 429 wait, transient, permanent |
//! | [`retry`] | whether to retry (idempotency), when (backoff, `Retry-After`), how much overall (budget) |
//! | [`breaker`] | circuit breakers for the token endpoint and each API host |
//! | [`ratelimit`] | rate-limit headers of every dialect, and a pacer that spreads the remaining budget |
//! | [`session`] | one value that ties them together, for an adapter to drive |
//! | [`fleet`] | a process's protocol with its fleet (one token, one rate budget): when to ask the shared store, what its answers mean, how long a request sleeps |
//! | [`redact`] | masking the client's credentials where a server's text echoes them |
//! | [`snapshot`] | sealing a token into bytes that survive a reboot |
//! | [`env`](mod@env) | the Genesys Cloud environments and their hosts |
//!
//! Time and randomness are arguments: [`Instant`] and [`UnixTime`] are the core's own types,
//! [`rng::Rng`] is seeded by the caller. Same seed, same inputs, same decisions.
//!
//! ## The run loop an adapter writes
//!
//! An adapter owns the clock, the HTTP client and the sleeping. Drain outputs after every input:
//!
//! ```
//! use credflow_core::http::Method;
//! use credflow_core::secret::Credentials;
//! use credflow_core::session::{Authorize, HostKey, RequestSpec, Session, SessionConfig, TokenEndpoint, Verdict};
//! use credflow_core::Instant;
//!
//! let credentials = Credentials::from_strs("my-client-id", "my-secret").unwrap();
//! let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
//! let mut session: Session = Session::new(credentials, endpoint, SessionConfig::default(), 42).unwrap();
//! let mut buf = [0u8; 1024];
//! let mut now = Instant::ZERO; // the adapter reads its clock here, every time
//!
//! // 1. Token side: send what the session asks for, report what came back.
//! if let Some((ticket, request)) = session.poll_token_request(now, &mut buf).unwrap() {
//!     assert_eq!(request.path, "/oauth/token"); // POST it (request.headers(), request.body)
//!     let body = br#"{"access_token":"abc","token_type":"bearer","expires_in":86400}"#;
//!     now = Instant::from_millis(120); // the answer arrived
//!     session.handle_token_response(now, ticket, 200, &[("Content-Type", "application/json")], body);
//! }
//!
//! // 2. API side: authorize each attempt, report its outcome, act on the verdict.
//! let api = HostKey::from_host("api.mypurecloud.com");
//! let mut req = session.begin(now, RequestSpec::new(Method::Get, api));
//! loop {
//!     match session.authorize(now, &mut req) {
//!         Authorize::Send { token, .. } => {
//!             assert_eq!(token.as_str(), "abc"); // send with `Authorization: Bearer abc`
//!             match session.handle_response(now, &mut req, 200, &[("inin-ratelimit-count", "1")], b"") {
//!                 Verdict::Done => break,                        // hand the response over
//!                 Verdict::Retry { at, .. } => now = at,         // sleep until `at`, loop
//!                 Verdict::Fail(error) => panic!("{error}"),     // return the typed error
//!             }
//!         }
//!         Authorize::Wait { until: Some(at), .. } => now = at,   // sleep until `at`
//!         Authorize::Wait { until: None, .. } => unreachable!(), // wait for a token event
//!         Authorize::Fail(error) => panic!("{error}"),
//!     }
//! }
//!
//! // 3. Timers and events: sleep until the next deadline, then let the session act.
//! if let Some((at, _why)) = session.poll_timeout() {
//!     session.handle_timeout(at);
//! }
//! while let Some(event) = session.poll_event() {
//!     let _ = event; // log it: token acquired, refresh failed, breaker opened, rate limited…
//! }
//! ```
//!
//! ## Features
//!
//! All on by default; a firmware image that needs none of them turns them off
//! (`default-features = false`) to save flash (sizes for a Cortex-M4F, `opt-level = "z"`, LTO).
//! Off, each removes a behaviour, never changes another one:
//!
//! | feature | what it adds | off |
//! |---|---|---|
//! | `jwt` | `client_secret_jwt` (RFC 7523 HS256 assertions) | that method fails with [`oauth::EncodeError::JwtDisabled`]; 2.7 KiB |
//! | `ietf-ratelimit` | the IETF rate-limit dialects: `RateLimit` / `RateLimit-Policy` (an RFC 8941 structured-field parser) and the early drafts' `RateLimit-Limit`… | ignored; 4.4 KiB |
//! | `x-ratelimit` | the `X-` rate-limit dialects of other servers: `X-RateLimit-*` (GitHub style), `X-Rate-Limit-*` (the reference guide's) | ignored (Genesys Cloud's `inin-ratelimit-*` are always read); 0.2 KiB |
//! | `diagnosis` | what went wrong, in detail: why a 403 or 401 was refused ([`classify::Diagnosis`]: the permissions a Genesys body lists, the `WWW-Authenticate: Bearer` challenge, RFC 6750 §3), where a refused token redirect pointed, an unusable token response's media type | 401 and 403 classify the same, with the Genesys code, the [`classify::DiagnosisKind`] that code names and the Genesys message, but no permission list and no challenge (`BearerErrorKind::Unspecified`, never `InsufficientScope`), and a Genesys body's `messageParams` is not read; a token endpoint's redirect is refused without saying where it pointed; the media type of an unusable token response is not recorded ([`session::TokenProblem::Unusable`]); 5.8 KiB (2.5 KiB for a device that only keeps a token) |
//! | `obsolete-dates` | HTTP-dates (`Retry-After`, `Date`) in the obsolete RFC 850 and `asctime` formats, which RFC 9110 §5.6.7 says a recipient MUST accept | only IMF-fixdate is read, which breaks that MUST (safe against servers that send IMF-fixdate, as all current ones do); a date in another format reads as no date; 0.4 KiB |
//! | `recheck` | a client the token endpoint rejected ([`lifecycle::RejectReason`]) checks again: one token request [`lifecycle::LifecycleConfig::recheck_after`] (5 min) after the rejection, the hold doubling per rejection in a row up to `recheck_cap` (1 h) | a rejection stops token requests until the credentials change (or the device restarts); `recheck_after` and `recheck_cap` do not exist, and the `recheck_at` of [`lifecycle::LifecycleState::Rejected`] and of the event is always `None`; 0.3 KiB |
//! | `defmt` (off by default) | `defmt::Format` for public types | |
//!
//! ## Discipline
//!
//! - No panics on any input; arithmetic on anything a server sent is checked or saturating
//!   (enforced by clippy lints in this crate root). Parsers are fuzzed and property-tested.
//! - Secrets ([`secret::ClientSecret`], [`secret::AccessToken`]) never reach `Debug`, `Display` or
//!   errors, and are zeroized on drop; a server's text that echoes them is masked before it is
//!   kept ([`redact`]).
//! - Every buffer is the caller's, or a fixed capacity chosen by a const generic; a full buffer is
//!   a typed error that says how much room was needed.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// docs.rs (nightly, `--cfg docsrs`): mark each item a feature gates with that feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    warn(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::cast_possible_truncation
    )
)]

pub mod breaker;
pub mod classify;
pub mod env;
pub mod fleet;
pub mod http;
// Public only to the fuzz targets (feature `__fuzzing`, not part of the API), for the
// differential one.
#[cfg(feature = "__fuzzing")]
#[doc(hidden)]
pub mod json;
#[cfg(not(feature = "__fuzzing"))]
mod json;
pub mod lifecycle;
pub mod oauth;
pub mod ratelimit;
pub mod redact;
pub mod retry;
pub mod rng;
pub mod secret;
#[cfg(feature = "serde")]
mod serde_impls;
pub mod session;
pub mod snapshot;
mod text;
pub mod time;

pub use ratelimit::pacer::Priority;
pub use secret::{AccessToken, ClientId, ClientSecret, Credentials};
pub use session::{Authorize, Session, SessionConfig, TokenEndpoint, Verdict};
pub use time::{Duration, Instant, UnixTime, WallClock};

// The README is the crates.io page: its example runs as a doctest, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
