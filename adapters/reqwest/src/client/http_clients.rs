//! The HTTP clients (API requests follow redirects within their origin only; token requests
//! never follow one) and the check that keeps the bearer token on the API base's origin.

use std::time::Duration as StdDuration;

use credflow_core::http::redirect;
use credflow_core::http::redirect::{Origin, Redirect};
use credflow_core::http::url::Scheme;
use rustls::pki_types::CertificateDer;
use tracing::debug;

use super::{Shared, tls_config};
use crate::error::Error;

/// Idle connections the token client keeps per host.
const TOKEN_IDLE_CONNECTIONS: usize = 4;

/// What both clients share: the connect timeout, the `User-Agent`, the TLS configuration
/// (the platform's verifier and `extra_roots`, no process-wide provider) and the proxies
/// ([`proxies`]).
fn builder(
    connect_timeout: StdDuration,
    user_agent: &str,
    extra_roots: &[CertificateDer<'static>],
) -> Result<reqwest::ClientBuilder, Error> {
    let builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .user_agent(user_agent)
        .tls_backend_preconfigured(tls_config(extra_roots)?);
    proxies(builder, |name| std::env::var(name).ok())
}

/// The proxies of credflow's own clients: for `https` the one the environment names
/// (`HTTPS_PROXY`, else `ALL_PROXY`, either case; `NO_PROXY` honoured), which sees only a
/// `CONNECT` to the host, the request itself encrypted; for plain `http` none, ever. reqwest's
/// default would send a plain-`http` request to `HTTP_PROXY` (or `ALL_PROXY`), even one to a
/// loopback token URL, and the proxy would read the client secret or the bearer token: plain
/// `http` is allowed only to loopback, where no proxy is needed, or by an opt-in to one named
/// host. (Proxy settings of the platform's own, macOS's or Windows', are not read: give a
/// reqwest client of your own for API requests, `Transport::with_api_client`, to use them.)
fn proxies(
    builder: reqwest::ClientBuilder,
    env: impl Fn(&str) -> Option<String>,
) -> Result<reqwest::ClientBuilder, Error> {
    let named = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .find_map(|name| env(name).filter(|v| !v.trim().is_empty()).map(|v| (name, v)));
    let Some((name, url)) = named else { return Ok(builder.no_proxy()) };
    let proxy = reqwest::Proxy::https(url.trim())
        .map_err(|e| Error::config(format!("{name} is not a proxy URL: {}", without_url(&e))))?
        .no_proxy(reqwest::NoProxy::from_env());
    Ok(builder.proxy(proxy))
}

/// A reqwest error's text without the URL it names (a proxy URL may hold a password).
fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(at) = e.find(" for url (") {
        e.truncate(at);
    }
    e
}

/// The client token requests go through: credflow's own, whatever the caller does with API
/// requests, and it never follows a redirect. A 3xx comes back to the session, which refuses
/// it (see [`credflow_core::http::redirect`]): had it been followed, a `client_secret_post`
/// form body or a `client_secret_jwt` assertion would be sent again on 307 and 308, wherever
/// `Location` pointed (HTTP libraries drop only `Authorization` across origins).
pub(crate) fn token_client(
    connect_timeout: StdDuration,
    user_agent: &str,
    extra_roots: &[CertificateDer<'static>],
) -> Result<reqwest::Client, Error> {
    builder(connect_timeout, user_agent, extra_roots)?
        .redirect(reqwest::redirect::Policy::none())
        // A token request comes once per token life per client: a few idle connections
        // serve many clients sharing this one (a Transport), where keeping one per past
        // request (a thousand tenants starting at once) would hold their buffers for nothing.
        .pool_max_idle_per_host(TOKEN_IDLE_CONNECTIONS)
        .build()
        .map_err(|e| Error::transport("cannot build the HTTP client for token requests", e))
}

/// The client API requests go through: it follows a redirect only as the core decides
/// ([`redirect::decide`]: within the request's origin, so the bearer token stays where it is
/// meant to go, at most `MAX_REDIRECTS` in a row), and hands any other 3xx back as it is.
/// Each request ends within `request_timeout`, the body read after the response included
/// (reqwest's client-wide timeout: an attempt without a deadline of its own needs no timer
/// set per request, nor the extension map that setting one allocates).
pub(crate) fn api_client(
    connect_timeout: StdDuration,
    request_timeout: StdDuration,
    user_agent: &str,
    extra_roots: &[CertificateDer<'static>],
) -> Result<reqwest::Client, Error> {
    builder(connect_timeout, user_agent, extra_roots)?
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::custom(follow_within_origin))
        .build()
        .map_err(|e| Error::transport("cannot build the HTTP client", e))
}

/// The API client's redirect policy: the core's decision. reqwest applies the method rules of
/// RFC 9110 (303 becomes a `GET` without body, 301 and 302 turn a `POST` into a `GET`, 307 and
/// 308 resend the body if it can be replayed, else return the 3xx).
pub(crate) fn follow_within_origin(
    attempt: reqwest::redirect::Attempt<'_>,
) -> reqwest::redirect::Action {
    let previous = attempt.previous();
    let from = previous.first().and_then(origin);
    let to = origin(attempt.url());
    let status = attempt.status().as_u16();
    let decision = match &from {
        Some(from) => redirect::decide(status, from, to.as_ref(), previous.len().saturating_sub(1)),
        None => Redirect::Return(redirect::NotFollowed::NoLocation),
    };
    match decision {
        Redirect::Follow => attempt.follow(),
        Redirect::Return(why) => {
            let to = to.map(|o| o.to_string()).unwrap_or_default();
            debug!(status, ?why, %to, "redirect not followed: the 3xx goes to the caller");
            attempt.stop()
        }
    }
}

/// The origin of a URL, if it is an `http` or `https` one.
pub(super) fn origin(url: &reqwest::Url) -> Option<Origin<'_>> {
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return None,
    };
    Some(Origin { scheme, host: url.host_str()?, port: url.port_or_known_default()? })
}

impl Shared {
    /// Refuses a URL the bearer token may not go to (the core's [`redirect::check_token_origin`]):
    /// another origin than the API base's, or any URL for a client of tokens only. The error
    /// names origins only, never a path, query or userinfo.
    pub(super) fn check_origin(&self, url: &reqwest::Url) -> Result<(), Error> {
        // The API base's own origin, where every request but a mistaken one goes: the core's
        // answer for it was found when the client was built. Both URLs are parsed (scheme and
        // host lowercase, a default port left out), so the same text before the path is the
        // same scheme, host and port; any other text (userinfo, say) takes the full check.
        if let Some(api) = &self.api_origin_text
            && url[..url::Position::BeforePath] == **api
        {
            return Ok(());
        }
        let to = origin(url);
        // Formatted only for an error: this runs for every request.
        let shown = || to.map_or_else(|| format!("a {}: URL", url.scheme()), |to| to.to_string());
        let Some(api) = self.api_base.as_ref().and_then(origin) else {
            let shown = shown();
            return Err(Error::config(format!(
                "request to {shown} not sent: this client has no API base (it was built for \
                 tokens only), so no request carries its token; give it one with Config::custom"
            )));
        };
        let checked = match &to {
            Some(to) => redirect::check_token_origin(to, &api, self.plain_http),
            None => Err(redirect::TokenOriginError::OtherOrigin),
        };
        checked.map_err(|e| {
            let shown = shown();
            Error::other_origin(format!("request to {shown} not sent: {e}; the API base is {api}"))
        })
    }
}
