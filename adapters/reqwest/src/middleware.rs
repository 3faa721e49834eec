//! credflow as a [`reqwest_middleware`] middleware (feature `middleware`), so an existing
//! middleware stack adopts it in one line:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let credflow = credflow_reqwest::Client::from_env()?;
//! // The application's TLS choice (see below).
//! let _ = rustls::crypto::ring::default_provider().install_default();
//! let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(credflow.clone())
//!     .build();
//! let queues = http.get(credflow.url("/api/v2/routing/queues")?).send().await?;
//! # let _ = queues; Ok(()) }
//! ```
//!
//! The token goes only to the API base's origin, as with [`Client::send`](crate::Client::send):
//! a request the stack hands credflow for another scheme, host or port (build URLs with
//! [`Client::url`](crate::Client::url)) fails with a
//! `reqwest_middleware::Error::Middleware` holding credflow's [`Error`](crate::Error) (a
//! configuration error naming both origins), and goes no further down the stack. Send requests
//! for other hosts through a stack without credflow. A middleware after credflow that rewrites
//! the URL is trusted with the token.
//!
//! The stack's `reqwest::Client` is yours, TLS included: credflow installs no process-wide
//! rustls crypto provider (its own clients are configured explicitly), and it builds reqwest
//! with `rustls-no-provider`, so install the provider of your choice before building one
//! (`rustls::crypto::ring::default_provider().install_default()`), or hand it a configured
//! `rustls::ClientConfig` (`ClientBuilder::tls_backend_preconfigured`).
//!
//! API requests go out through the stack's own `reqwest::Client`, with its redirect policy:
//! reqwest's default follows up to 10 hops, dropping `Authorization` on a hop to another origin
//! but re-sending a replayable body. Build it with `reqwest::redirect::Policy::none()` to have
//! every 3xx handed back as [`Client::send`](crate::Client::send) hands back one to another
//! origin. Token requests never go through the stack: the credflow client sends them with a
//! client of its own that follows no redirect.
//!
//! Each attempt goes down the rest of the stack (`next`), so middlewares after credflow see
//! every attempt with its `Authorization` header. Put retrying middlewares *before* credflow or
//! leave them out: credflow already retries by the core's verdicts, and two retry layers
//! multiply attempts. Extensions are cloned per attempt; changes a later middleware makes to
//! them are not seen by earlier ones.

use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use crate::Client;
use crate::client::{BoxError, RequestOptions, transport_kind};

#[async_trait::async_trait]
impl Middleware for Client {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let options = extensions.get::<RequestOptions>().copied().unwrap_or_default();
        let base = extensions.clone();
        // `false`: the rest of the stack's client may have no timeout; each attempt gets one.
        self.send_through(req, options, false, |_, attempt| {
            let next = next.clone();
            let mut extensions = base.clone();
            async move {
                next.run(attempt, &mut extensions).await.map_err(|e| match e {
                    reqwest_middleware::Error::Reqwest(e) => {
                        (transport_kind(&e), Box::new(e) as BoxError)
                    }
                    other => (
                        credflow_core::retry::policy::TransportKind::Other,
                        Box::new(other) as BoxError,
                    ),
                })
            }
        })
        .await
        .map_err(reqwest_middleware::Error::middleware)
    }
}
