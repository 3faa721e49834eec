//! [`Client::builder`]: a [`Config`] set by name, then built.

use std::sync::Arc;
use std::time::Duration;

use credflow_core::oauth::AuthMethod;
use credflow_core::secret::Credentials;
use credflow_core::session::SessionConfig;

use crate::client::{Client, token_client};
use crate::config::{Config, Target};
use crate::error::Error;
use crate::shared::SharedStore;
use crate::transport::Transport;

impl Client {
    /// A builder for a client of `target` with `credentials`; every setting not named keeps
    /// its [`Config`] default.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use credflow_reqwest::{AuthMethod, Client, Target, config::credentials};
    ///
    /// let env = credflow_reqwest::credflow_core::env::parse_environment("mypurecloud.ie")?;
    /// let client = Client::builder(Target::Genesys(env), credentials("id", "secret")?)
    ///     .auth_method(AuthMethod::ClientSecretPost)
    ///     .request_timeout(Duration::from_secs(10))
    ///     .build()?;
    /// let token = client.token().await?;
    /// # let _ = token; Ok(()) }
    /// ```
    pub fn builder(target: Target, credentials: Credentials) -> ClientBuilder {
        ClientBuilder::from_config(Config::with_target(credentials, target))
    }
}

/// Sets a [`Config`] by name and builds the [`Client`]: see [`Client::builder`]. Each method
/// sets the [`Config`] field of the same name (documented there).
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClientBuilder {
    config: Config,
    /// The caller's API client, paired at `build` with a token client built with the
    /// configured connect timeout and `User-Agent`.
    api_client: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// A builder that starts from `config` (one read with [`Config::from_env`], say).
    pub fn from_config(config: Config) -> ClientBuilder {
        ClientBuilder { config, api_client: None }
    }

    /// Every field of `settings` ([`Config::apply`]): the tuning a service keeps in its own
    /// configuration file (with the `serde` feature, [`Settings`](crate::config::Settings) is
    /// `Deserialize`).
    pub fn settings(mut self, settings: crate::config::Settings) -> Self {
        self.config.apply(settings);
        self
    }

    /// [`Config::auth_method`].
    pub fn auth_method(mut self, auth_method: AuthMethod) -> Self {
        self.config.auth_method = auth_method;
        self
    }

    /// [`Config::scope`].
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.config.scope = Some(scope.into());
        self
    }

    /// Adds one of [`Config::extra_params`] (`audience`, `resource`, …).
    pub fn extra_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.extra_params.push((name.into(), value.into()));
        self
    }

    /// [`Config::session`]: the core's tuning.
    pub fn session(mut self, session: SessionConfig) -> Self {
        self.config.session = session;
        self
    }

    /// [`Config::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// [`Config::request_timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// [`Config::token_timeout`].
    pub fn token_timeout(mut self, timeout: Duration) -> Self {
        self.config.token_timeout = timeout;
        self
    }

    /// [`Config::token_wait`].
    pub fn token_wait(mut self, wait: Duration) -> Self {
        self.config.token_wait = wait;
        self
    }

    /// [`Config::max_response_body`].
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.config.max_response_body = bytes;
        self
    }

    /// [`Config::seed`] (for tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// [`Config::user_agent`].
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.config.user_agent = user_agent.into();
        self
    }

    /// [`Config::shared`]: fleet mode.
    pub fn shared(mut self, store: Arc<dyn SharedStore>) -> Self {
        self.config.shared = Some(store);
        self
    }

    /// [`Config::allow_insecure_http`].
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.config.allow_insecure_http = allow;
        self
    }

    /// [`Config::extra_root_certificates`]: certificate authorities trusted besides the
    /// platform's, by the HTTP clients credflow builds (with [`http_client`](Self::http_client):
    /// by its token client only; with a [`transport`](Self::transport): an error, give them to
    /// [`Transport::with_roots`] instead).
    pub fn extra_root_certificates(
        mut self,
        roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Self {
        self.config.extra_root_certificates = roots;
        self
    }

    /// [`Config::transport`]: HTTP clients shared with other credflow clients. Replaces an
    /// [`http_client`](Self::http_client) set before.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.config.transport = Some(transport);
        self.api_client = None;
        self
    }

    /// API requests through the caller's `client` (see [`crate::transport`] for what credflow
    /// relies on); token requests through a client credflow builds, which follows no
    /// redirect. To share that token client among many credflow clients too, build one
    /// [`Transport::with_api_client`] and pass it to [`transport`](Self::transport). Replaces a
    /// transport set before.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.config.transport = None;
        self.api_client = Some(client);
        self
    }

    /// The configuration as set so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Builds the client and starts its token driver ([`Client::new`]).
    ///
    /// # Errors
    ///
    /// As [`Client::new`]: outside a tokio runtime, for a malformed or refused URL, or an
    /// inconsistent configuration (exit code 2).
    pub fn build(self) -> Result<Client, Error> {
        let ClientBuilder { mut config, api_client } = self;
        if let Some(api) = api_client {
            // The extra roots go to the token client credflow builds here; the caller's API
            // client keeps its own TLS configuration.
            let roots = std::mem::take(&mut config.extra_root_certificates);
            let token = token_client(config.connect_timeout, &config.user_agent, &roots)?;
            config.transport = Some(Transport::from_parts(api, token));
        }
        Client::new(config)
    }
}
