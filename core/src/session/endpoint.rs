//! What the session asks the token endpoint for.

use core::fmt;

use heapless::{String, Vec};

use super::{ENDPOINT_CAPACITY, EXTRA_PARAMS};
use crate::breaker::BreakerConfigError;
use crate::http::url::{PlainHttp, Url, UrlError};
use crate::lifecycle::ConfigError;
use crate::oauth::AuthMethod;
use crate::ratelimit::pacer::PacerConfigError;
use crate::retry::backoff::BackoffError;
use crate::time::Duration;

/// What the session asks the token endpoint for, owned (no allocation).
///
/// The token URL, the scope and the extra parameters share one buffer of `E` bytes (default
/// [`ENDPOINT_CAPACITY`]); a firmware image sizes it to what it sends (`TokenEndpoint<64>` holds
/// a Genesys Cloud login URL), and its session takes the same `E`.
///
/// The token URL receives the client credentials, so it must be `https`, or `http` to a
/// loopback host (`127.0.0.0/8`, `[::1]`, `localhost`; see
/// [`url`](crate::http::url#plain-http-only-to-loopback)). Plain `http` to any other host
/// needs the explicit opt-in [`TokenEndpoint::new_with_plain_http`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEndpoint<const E: usize = ENDPOINT_CAPACITY> {
    /// The token URL, then the scope and the parameters in the order they were given.
    text: String<E>,
    url_end: usize,
    scope: Option<(usize, usize)>,
    /// `(name start, name end = value start, value end)` in `text`.
    extra: Vec<(usize, usize, usize), EXTRA_PARAMS>,
    pub(super) auth: AuthMethod,
    pub(super) jwt_lifetime: Duration,
    pub(super) plain_http: PlainHttp,
}

/// Why a [`TokenEndpoint`] or [`Session`](super::Session) could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupError {
    /// The token URL does not fit the endpoint's capacity (the const generic `E`).
    TokenUrlTooLong,
    /// The token URL is refused: not an absolute `http`/`https` URL, with userinfo, or `http`
    /// to a host that is not loopback without the opt-in (the inner error says which).
    InvalidTokenUrl(UrlError),
    /// The scope does not fit what is left of the endpoint's capacity.
    ScopeTooLong,
    /// More than [`EXTRA_PARAMS`] extra parameters, or one that does not fit what is left of
    /// the endpoint's capacity.
    TooManyExtraParams,
    /// An extra parameter without a name, or with one the grant sets itself (`grant_type`,
    /// `scope`, `client_id`, `client_secret`, `client_assertion…`): no token request could be
    /// encoded with it.
    InvalidParamName,
    /// A setting of [`SessionConfig::lifecycle`](super::SessionConfig::lifecycle) is
    /// inconsistent.
    Lifecycle(ConfigError),
    /// [`SessionConfig::retry`](super::SessionConfig::retry)'s backoff is almost certainly a
    /// mistake (a zero base or multiplier, a base above the cap).
    RetryBackoff(BackoffError),
    /// [`SessionConfig::token_breaker`](super::SessionConfig::token_breaker) is almost
    /// certainly a mistake.
    TokenBreaker(BreakerConfigError),
    /// [`SessionConfig::api_breaker`](super::SessionConfig::api_breaker) is almost certainly a
    /// mistake.
    ApiBreaker(BreakerConfigError),
    /// [`SessionConfig::pacer`](super::SessionConfig::pacer) is almost certainly a mistake.
    Pacer(PacerConfigError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HINT: &str = "raise the endpoint capacity (TokenEndpoint's const generic E, shared \
                            by the URL, the scope and the extra parameters)";
        match self {
            SetupError::TokenUrlTooLong => write!(f, "token URL too long: {HINT}"),
            SetupError::InvalidTokenUrl(e) => write!(f, "invalid token URL: {e}"),
            SetupError::ScopeTooLong => write!(f, "scope too long: {HINT}"),
            SetupError::TooManyExtraParams => {
                write!(f, "more than {EXTRA_PARAMS} extra parameters, or one too long: {HINT}")
            }
            SetupError::InvalidParamName => f.write_str(
                "an extra parameter has no name, or one the grant sets itself (grant_type, \
                 scope, client_id, client_secret, client_assertion…)",
            ),
            SetupError::Lifecycle(e) => write!(f, "lifecycle configuration: {e}"),
            SetupError::RetryBackoff(e) => write!(f, "retry configuration: {e}"),
            SetupError::TokenBreaker(e) => write!(f, "token_breaker configuration: {e}"),
            SetupError::ApiBreaker(e) => write!(f, "api_breaker configuration: {e}"),
            SetupError::Pacer(e) => write!(f, "pacer configuration: {e}"),
        }
    }
}

impl core::error::Error for SetupError {}

impl<const E: usize> TokenEndpoint<E> {
    /// A client-credentials request to `token_url` with `client_secret_basic` authentication.
    ///
    /// # Errors
    ///
    /// [`SetupError::InvalidTokenUrl`] for a malformed URL, userinfo in it, or `http` to a host
    /// that is not loopback ([`UrlError::InsecureHttp`]); [`SetupError::TokenUrlTooLong`].
    pub fn new(token_url: &str) -> Result<Self, SetupError> {
        TokenEndpoint::new_with_plain_http(token_url, PlainHttp::LoopbackOnly)
    }

    /// [`TokenEndpoint::new`], with `http` token URLs allowed where `plain_http` says.
    /// [`PlainHttp::Anywhere`] is the explicit opt-in to send the client credentials in clear
    /// text to a host that is not loopback: for a test network without TLS, never in
    /// production.
    ///
    /// ```
    /// use credflow_core::http::url::{PlainHttp, UrlError};
    /// use credflow_core::session::{SetupError, TokenEndpoint};
    /// const URL: &str = "http://auth.example.invalid/oauth/token";
    /// assert_eq!(TokenEndpoint::<64>::new(URL), Err(SetupError::InvalidTokenUrl(UrlError::InsecureHttp)));
    /// let endpoint = TokenEndpoint::<64>::new_with_plain_http(URL, PlainHttp::Anywhere)?;
    /// assert_eq!(endpoint.plain_http(), PlainHttp::Anywhere);
    /// # Ok::<(), SetupError>(())
    /// ```
    // Out of line, as `Session::new` is: called once, at start-up, where inlined it made the
    // caller's code larger than its own.
    #[inline(never)]
    pub fn new_with_plain_http(token_url: &str, plain_http: PlainHttp) -> Result<Self, SetupError> {
        Url::parse_with(token_url, plain_http).map_err(SetupError::InvalidTokenUrl)?;
        let text = String::try_from(token_url).map_err(|_| SetupError::TokenUrlTooLong)?;
        Ok(TokenEndpoint {
            url_end: text.len(),
            text,
            auth: AuthMethod::default(),
            scope: None,
            extra: Vec::new(),
            jwt_lifetime: Duration::from_secs(60),
            plain_http,
        })
    }

    /// The token endpoint of a Genesys Cloud environment.
    ///
    /// # Errors
    ///
    /// [`SetupError::TokenUrlTooLong`] if `E` is below the URL's length (under 60 bytes).
    pub fn genesys(env: &crate::env::Environment) -> Result<Self, SetupError> {
        TokenEndpoint::new(env.token_url)
    }

    /// Chooses the client authentication method.
    pub fn with_auth(mut self, auth: AuthMethod) -> Self {
        self.auth = auth;
        self
    }

    /// Requests `scope` (space-separated). Genesys Cloud ignores scope for client credentials
    /// (rights come from the OAuth client's roles); generic OAuth2 servers use it.
    pub fn with_scope(mut self, scope: &str) -> Result<Self, SetupError> {
        let range = self.append(scope).ok_or(SetupError::ScopeTooLong)?;
        self.scope = Some(range);
        Ok(self)
    }

    /// Adds an extra form parameter such as `audience` or `resource`. A name that is empty or
    /// one the grant sets itself is refused ([`SetupError::InvalidParamName`]).
    pub fn with_param(mut self, name: &str, value: &str) -> Result<Self, SetupError> {
        if name.is_empty() || crate::oauth::request::is_reserved(name) {
            return Err(SetupError::InvalidParamName);
        }
        if self.extra.is_full() {
            return Err(SetupError::TooManyExtraParams);
        }
        let mark = self.text.len();
        let (Some((start, middle)), Some((_, end))) = (self.append(name), self.append(value))
        else {
            self.text.truncate(mark);
            return Err(SetupError::TooManyExtraParams);
        };
        // Cannot fail: fullness was checked above.
        let _ = self.extra.push((start, middle, end));
        Ok(self)
    }

    /// Lifetime of `client_secret_jwt` assertions (default 60 s).
    pub fn with_jwt_lifetime(mut self, lifetime: Duration) -> Self {
        self.jwt_lifetime = lifetime;
        self
    }

    /// The token URL.
    pub fn token_url(&self) -> &str {
        self.text.get(..self.url_end).unwrap_or_default()
    }

    /// The authentication method.
    pub fn auth(&self) -> AuthMethod {
        self.auth
    }

    /// Where `http` token URLs are allowed: [`PlainHttp::LoopbackOnly`] unless built with
    /// [`new_with_plain_http`](Self::new_with_plain_http).
    pub fn plain_http(&self) -> PlainHttp {
        self.plain_http
    }

    /// The requested scope, if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.map(|(start, end)| self.text.get(start..end).unwrap_or_default())
    }

    /// The extra parameters, in the order they were added.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.extra.iter().map(|&(start, middle, end)| {
            (
                self.text.get(start..middle).unwrap_or_default(),
                self.text.get(middle..end).unwrap_or_default(),
            )
        })
    }

    /// What a token request to this endpoint is made of, with its `extra` parameters (collected
    /// from [`params`](Self::params) by the caller, which holds them).
    pub(super) fn request_config<'a>(
        &'a self,
        extra: &'a [(&'a str, &'a str)],
    ) -> crate::oauth::TokenRequestConfig<'a> {
        crate::oauth::TokenRequestConfig {
            token_url: self.token_url(),
            auth: self.auth,
            scope: self.scope(),
            extra,
            jwt_lifetime: self.jwt_lifetime,
            plain_http: self.plain_http,
        }
    }

    /// Appends `s` to the text and returns its range, or `None` if it does not fit.
    fn append(&mut self, s: &str) -> Option<(usize, usize)> {
        let start = self.text.len();
        self.text.push_str(s).ok()?;
        Some((start, self.text.len()))
    }
}
