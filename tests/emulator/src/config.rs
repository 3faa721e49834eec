//! What an emulator serves and how it misbehaves: a plain struct with [`Default`], checked once by
//! [`Emulator::start`](crate::Emulator::start).
//!
//! Every knob has a default that matches Genesys Cloud where the platform's value is known
//! (GENESYS.md): `mypurecloud.com`, 300 API requests per minute per client. Tests shrink the
//! windows and lifetimes to milliseconds so that a whole scenario runs in well under a second:
//!
//! ```
//! use std::time::Duration;
//! use credflow_emulator::{ClientConfig, EmulatorConfig};
//!
//! let config = EmulatorConfig::default()
//!     .with_environment("mypurecloud.ie")
//!     .with_token_lifetime(Duration::from_millis(1500))
//!     .with_api_rate_limit(5, Duration::from_secs(1))
//!     .with_client(ClientConfig::new("ci-client", "ci secret").with_permission("routing:queue:*"));
//! assert!(config.validate().is_ok());
//! ```

use std::fmt;
use std::time::Duration;

/// The demo client that may do everything the emulator serves.
pub const DEMO_CLIENT_ID: &str = "demo-client";
/// Secret of [`DEMO_CLIENT_ID`].
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";
/// A client that may list queues but not query analytics (for 403 `missing.permissions`).
pub const LIMITED_CLIENT_ID: &str = "limited-client";
/// Secret of [`LIMITED_CLIENT_ID`].
pub const LIMITED_CLIENT_SECRET: &str = "limited-secret";
/// A client in state [`ClientState::Disabled`]: its credentials are right, yet the token endpoint
/// answers `invalid_client`, as Genesys does.
pub const DISABLED_CLIENT_ID: &str = "disabled-client";
/// Secret of [`DISABLED_CLIENT_ID`].
pub const DISABLED_CLIENT_SECRET: &str = "disabled-secret";

/// Permission required by `GET /api/v2/routing/queues`.
pub const PERMISSION_QUEUE_VIEW: &str = "routing:queue:view";
/// Permission required by `POST /api/v2/analytics/conversations/details/query`.
pub const PERMISSION_CONVERSATION_DETAIL_VIEW: &str = "analytics:conversationDetail:view";

/// The default environment (Genesys region us-east-1).
pub const DEFAULT_ENVIRONMENT: &str = "mypurecloud.com";

/// Genesys's default token life for an OAuth client (86 400 s).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);

/// State of an OAuth client, as Genesys names them.
///
/// Only [`ClientState::Active`] clients get tokens. When a client leaves that state, the tokens it
/// already holds stop working too (401 `bad.credentials`). Genesys documents what `disabled` means;
/// the emulator treats `inactive` the same way (an assumption: the platform does not say more).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ClientState {
    /// The client may authenticate and its tokens work.
    #[default]
    Active,
    /// Switched off by an administrator: no new tokens, existing ones are rejected.
    Disabled,
    /// Not in use: treated like [`ClientState::Disabled`].
    Inactive,
}

/// One OAuth client the emulator knows.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The client id (`client_id`, the Basic user name).
    pub id: String,
    /// The client secret. Any characters: the Basic scheme decodes it per RFC 6749 §2.3.1.
    pub secret: String,
    /// Permissions granted to the client's tokens, Genesys style `domain:entity:action`; a `*`
    /// segment matches anything (`routing:*:*`, `*:*:*`).
    pub permissions: Vec<String>,
    /// Real server-side token life; `None` takes [`EmulatorConfig::default_token_lifetime`].
    pub token_lifetime: Option<Duration>,
    /// Whether the client may authenticate.
    pub state: ClientState,
}

impl ClientConfig {
    /// An active client with no permissions and the emulator's default token life.
    #[must_use]
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
            permissions: Vec::new(),
            token_lifetime: None,
            state: ClientState::Active,
        }
    }

    /// Adds one permission.
    #[must_use]
    pub fn with_permission(mut self, permission: impl Into<String>) -> Self {
        self.permissions.push(permission.into());
        self
    }

    /// Sets this client's token life (server side, millisecond precision).
    #[must_use]
    pub fn with_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = Some(lifetime);
        self
    }

    /// Sets the client's state.
    #[must_use]
    pub fn with_state(mut self, state: ClientState) -> Self {
        self.state = state;
        self
    }

    /// The three demo clients: [`DEMO_CLIENT_ID`] (both permissions), [`LIMITED_CLIENT_ID`]
    /// (queues only) and [`DISABLED_CLIENT_ID`] (disabled).
    #[must_use]
    pub fn demo_clients() -> Vec<Self> {
        vec![
            Self::new(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
                .with_permission(PERMISSION_QUEUE_VIEW)
                .with_permission(PERMISSION_CONVERSATION_DETAIL_VIEW),
            Self::new(LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET)
                .with_permission(PERMISSION_QUEUE_VIEW),
            Self::new(DISABLED_CLIENT_ID, DISABLED_CLIENT_SECRET)
                .with_permission(PERMISSION_QUEUE_VIEW)
                .with_state(ClientState::Disabled),
        ]
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("permissions", &self.permissions)
            .field("token_lifetime", &self.token_lifetime)
            .field("state", &self.state)
            .finish()
    }
}

/// A fixed-window limit: at most `limit` requests per `window`, per client id.
///
/// The window opens at a client's first request and lasts `window`; the next request after it
/// opens a new one. Every token of a client shares its window, unless the API limit is counted
/// per token ([`RateLimitScope::Token`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RateLimit {
    /// Requests admitted per window (at least 1).
    pub limit: u64,
    /// Window length (at least 1 ms).
    pub window: Duration,
}

impl RateLimit {
    /// `limit` requests per `window`.
    #[must_use]
    pub const fn new(limit: u64, window: Duration) -> Self {
        Self { limit, window }
    }

    /// Genesys's API default: 300 requests per 60 s.
    pub const GENESYS_API: Self = Self::new(300, Duration::from_secs(60));

    /// The emulator's token-endpoint default: 30 token requests per 60 s.
    pub const TOKEN_ENDPOINT: Self = Self::new(30, Duration::from_secs(60));
}

/// What the API rate limit ([`EmulatorConfig::api_rate_limit`]) is counted per.
///
/// Genesys Cloud's scope is disputed (GENESYS.md, "Rate limits on the API"): the limit's name
/// (`client.credentials.token.rate.per.minute`) and a Genesys engineer say per token, other
/// answers and the guide say per client id. The emulator does either, so that clients can be
/// tested under both; the `inin-ratelimit-*` headers always describe the window the request was
/// counted in. The long ("daily") limit stays per client id in both.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[derive(clap::ValueEnum)]
pub enum RateLimitScope {
    /// One window per client id, shared by every token of the client (the default until the
    /// platform's behaviour is known).
    #[default]
    Client,
    /// One window per access token: each token's window opens at its own first request, so a
    /// new token starts with a full budget and two tokens of one client have one budget each.
    Token,
}

/// Which routes a fault applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultTarget {
    /// `POST /oauth/token` only.
    Token,
    /// `/api/...` only.
    Api,
    /// Both the token endpoint and the API.
    #[default]
    Both,
}

impl FaultTarget {
    /// Whether this target covers the token endpoint.
    #[must_use]
    pub const fn token(self) -> bool {
        matches!(self, Self::Token | Self::Both)
    }

    /// Whether this target covers the API.
    #[must_use]
    pub const fn api(self) -> bool {
        matches!(self, Self::Api | Self::Both)
    }
}

/// A maintenance window: the targeted routes answer 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Maintenance {
    /// How long it lasts from when it is switched on; `None`: until switched off.
    pub duration: Option<Duration>,
    /// Routes that answer 503.
    pub target: FaultTarget,
    /// `Retry-After` (whole seconds, rounded up) on the 503; `None`: no header.
    pub retry_after: Option<Duration>,
}

/// Dropped connections: the server closes the TCP connection after reading a request, without
/// answering. Counted in [`CountersSnapshot::dropped_connections`](crate::CountersSnapshot).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropFault {
    /// Drop the next `next` targeted requests.
    pub next: u32,
    /// Afterwards, drop each targeted request with this probability (0.0 to 1.0), drawn from a
    /// generator seeded with [`FaultConfig::seed`]: the same seed drops the same requests.
    pub probability: f64,
    /// Routes whose requests may be dropped.
    pub target: FaultTarget,
}

impl Default for DropFault {
    fn default() -> Self {
        Self { next: 0, probability: 0.0, target: FaultTarget::Both }
    }
}

/// Faults switched on at start. The same faults can be changed at run time with
/// [`FaultControl`](crate::FaultControl) or `POST /__emulator/faults`.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// A maintenance window starting when the emulator starts.
    pub maintenance: Option<Maintenance>,
    /// Added before the token endpoint answers (held while counted as in flight).
    pub token_latency: Duration,
    /// Added before an API route answers.
    pub api_latency: Duration,
    /// Dropped connections.
    pub drop: DropFault,
    /// Every API request answers 429 for this long after start.
    pub force_429: Option<Duration>,
    /// The token endpoint answers its rate-limit error (HTTP 400) for this long after start.
    pub force_token_rate_limit: Option<Duration>,
    /// Seed of the generator behind [`DropFault::probability`].
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            maintenance: None,
            token_latency: Duration::ZERO,
            api_latency: Duration::ZERO,
            drop: DropFault::default(),
            force_429: None,
            force_token_rate_limit: None,
            seed: 0x5eed_c0de_f00d_cafe,
        }
    }
}

/// Everything an emulator needs. Start from [`EmulatorConfig::default`] and adjust.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Environment (host suffix, e.g. `mypurecloud.ie`). Tokens are bound to it: a token minted
    /// by an emulator of another environment is answered 401 `bad.credentials`.
    pub environment: String,
    /// Port on 127.0.0.1; 0 picks a free one. The emulator never binds another address.
    pub port: u16,
    /// OAuth clients. The default holds [`ClientConfig::demo_clients`].
    pub clients: Vec<ClientConfig>,
    /// Token life for clients that do not set their own. `expires_in` on the wire is this in
    /// whole seconds, rounded down but at least 1; the server enforces the exact value.
    pub default_token_lifetime: Duration,
    /// API rate limit per client id (Genesys: 300 per 60 s), or per token: see
    /// [`EmulatorConfig::rate_limit_scope`].
    pub api_rate_limit: RateLimit,
    /// Whether [`EmulatorConfig::api_rate_limit`] counts per client id (default) or per token.
    pub rate_limit_scope: RateLimitScope,
    /// Token-endpoint rate limit per client id; exceeded → HTTP 400 `invalid_request`,
    /// `rate limit exceeded; ...` (the Genesys answer, not a 429).
    pub token_rate_limit: RateLimit,
    /// A second, long limit per client (e.g. per day); exceeded → 429 with a `Retry-After` of
    /// up to the window (hours for a daily limit). `None`: no such limit.
    pub daily_limit: Option<RateLimit>,
    /// Answer `scope` (requested ∩ permissions) in token responses and restrict the token to it.
    /// Off by default: Genesys ignores `scope` for client credentials (it is only recorded).
    pub echo_scope: bool,
    /// Number of fake queues behind `GET /api/v2/routing/queues` (for pagination tests).
    pub queue_count: u32,
    /// Faults switched on at start.
    pub faults: FaultConfig,
    /// Serve `/__emulator/...` (counters, faults, reset). On by default; the server only listens
    /// on loopback.
    pub control_routes: bool,
    /// Print one line per request on standard error.
    pub log_requests: bool,
    /// Serve HTTPS instead of HTTP: a throwaway CA and a certificate for `localhost` and
    /// `127.0.0.1` are made at start ([`EmulatorHandle::ca_pem`](crate::EmulatorHandle::ca_pem)
    /// has the CA to trust). Off by default.
    ///
    /// ```
    /// # async fn demo() -> Result<(), credflow_emulator::EmulatorError> {
    /// use credflow_emulator::{Emulator, EmulatorConfig};
    /// let emulator = Emulator::start(EmulatorConfig::default().with_tls(true)).await?;
    /// assert!(emulator.base_url().starts_with("https://127.0.0.1:"));
    /// let ca = emulator.ca_pem().unwrap_or_default(); // "-----BEGIN CERTIFICATE-----..."
    /// # let _ = ca; Ok(()) }
    /// ```
    pub tls: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            environment: DEFAULT_ENVIRONMENT.to_owned(),
            port: 0,
            clients: ClientConfig::demo_clients(),
            default_token_lifetime: DEFAULT_TOKEN_LIFETIME,
            api_rate_limit: RateLimit::GENESYS_API,
            rate_limit_scope: RateLimitScope::Client,
            token_rate_limit: RateLimit::TOKEN_ENDPOINT,
            daily_limit: None,
            echo_scope: false,
            queue_count: 5,
            faults: FaultConfig::default(),
            control_routes: true,
            log_requests: false,
            tls: false,
        }
    }
}

impl EmulatorConfig {
    /// Sets the environment.
    #[must_use]
    pub fn with_environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = environment.into();
        self
    }

    /// Serves HTTPS (see [`EmulatorConfig::tls`]).
    #[must_use]
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the port on 127.0.0.1 (0: any free port).
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the default token life.
    #[must_use]
    pub fn with_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_token_lifetime = lifetime;
        self
    }

    /// Adds a client (or replaces the one with the same id).
    #[must_use]
    pub fn with_client(mut self, client: ClientConfig) -> Self {
        self.clients.retain(|c| c.id != client.id);
        self.clients.push(client);
        self
    }

    /// Replaces every client, the demo ones included.
    #[must_use]
    pub fn with_clients(mut self, clients: Vec<ClientConfig>) -> Self {
        self.clients = clients;
        self
    }

    /// Sets the API rate limit per client.
    #[must_use]
    pub fn with_api_rate_limit(mut self, limit: u64, window: Duration) -> Self {
        self.api_rate_limit = RateLimit::new(limit, window);
        self
    }

    /// Sets what the API rate limit counts per (client id or token).
    #[must_use]
    pub fn with_rate_limit_scope(mut self, scope: RateLimitScope) -> Self {
        self.rate_limit_scope = scope;
        self
    }

    /// Sets the token-endpoint rate limit per client.
    #[must_use]
    pub fn with_token_rate_limit(mut self, limit: u64, window: Duration) -> Self {
        self.token_rate_limit = RateLimit::new(limit, window);
        self
    }

    /// Sets the long ("daily") limit per client.
    #[must_use]
    pub fn with_daily_limit(mut self, limit: u64, window: Duration) -> Self {
        self.daily_limit = Some(RateLimit::new(limit, window));
        self
    }

    /// Turns the scope echo on or off (see [`EmulatorConfig::echo_scope`]).
    #[must_use]
    pub fn with_echo_scope(mut self, echo: bool) -> Self {
        self.echo_scope = echo;
        self
    }

    /// Sets the faults active at start.
    #[must_use]
    pub fn with_faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }

    /// Turns per-request logging on standard error on or off.
    #[must_use]
    pub fn with_request_log(mut self, log: bool) -> Self {
        self.log_requests = log;
        self
    }

    /// Checks the configuration; [`Emulator::start`](crate::Emulator::start) calls this.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.environment.trim().is_empty() {
            return Err(ConfigError::EmptyEnvironment);
        }
        for (name, limit) in
            [("api_rate_limit", self.api_rate_limit), ("token_rate_limit", self.token_rate_limit)]
                .into_iter()
                .chain(self.daily_limit.map(|l| ("daily_limit", l)))
        {
            if limit.limit == 0 || limit.window.as_millis() == 0 {
                return Err(ConfigError::EmptyRateLimit(name));
            }
        }
        if self.default_token_lifetime.as_millis() == 0 {
            return Err(ConfigError::ZeroTokenLifetime(String::from("<default>")));
        }
        for (i, client) in self.clients.iter().enumerate() {
            if client.id.is_empty() || client.id.contains(':') {
                return Err(ConfigError::BadClientId(client.id.clone()));
            }
            if self.clients.iter().skip(i.saturating_add(1)).any(|c| c.id == client.id) {
                return Err(ConfigError::DuplicateClient(client.id.clone()));
            }
            if client.token_lifetime.is_some_and(|l| l.as_millis() == 0) {
                return Err(ConfigError::ZeroTokenLifetime(client.id.clone()));
            }
        }
        let p = self.faults.drop.probability;
        if !(0.0..=1.0).contains(&p) {
            return Err(ConfigError::BadDropProbability);
        }
        Ok(())
    }
}

/// A configuration the emulator refuses to start with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `environment` is empty: set a host suffix such as `mypurecloud.com`.
    EmptyEnvironment,
    /// A rate limit (named) admits nothing: its `limit` or its `window` is zero.
    EmptyRateLimit(&'static str),
    /// A client id is empty or contains `:` (which Basic authentication cannot carry unencoded
    /// in the user part; Genesys ids are UUIDs).
    BadClientId(String),
    /// Two clients share this id.
    DuplicateClient(String),
    /// A token life (of this client, or `<default>`) is zero.
    ZeroTokenLifetime(String),
    /// The drop probability is outside 0.0..=1.0 (or NaN).
    BadDropProbability,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyEnvironment => f.write_str("the environment name is empty"),
            Self::EmptyRateLimit(name) => write!(f, "{name} admits nothing (zero limit or window)"),
            Self::BadClientId(id) => write!(f, "client id {id:?} is empty or contains ':'"),
            Self::DuplicateClient(id) => write!(f, "client id {id:?} is configured twice"),
            Self::ZeroTokenLifetime(id) => write!(f, "token lifetime of {id} is zero"),
            Self::BadDropProbability => f.write_str("drop probability must be within 0.0..=1.0"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_has_demo_clients() {
        let config = EmulatorConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.clients.len(), 3);
        assert!(format!("{:?}", config.clients).contains("<redacted>"));
        assert!(!format!("{:?}", config.clients).contains(DEMO_CLIENT_SECRET));
    }

    #[test]
    fn rejects_bad_configs() {
        let base = EmulatorConfig::default;
        assert_eq!(base().with_environment(" ").validate(), Err(ConfigError::EmptyEnvironment));
        assert_eq!(
            base().with_api_rate_limit(0, Duration::from_secs(1)).validate(),
            Err(ConfigError::EmptyRateLimit("api_rate_limit"))
        );
        assert_eq!(
            base().with_daily_limit(1, Duration::ZERO).validate(),
            Err(ConfigError::EmptyRateLimit("daily_limit"))
        );
        let dup =
            base().with_clients(vec![ClientConfig::new("a", "x"), ClientConfig::new("a", "y")]);
        assert_eq!(dup.validate(), Err(ConfigError::DuplicateClient("a".into())));
        let colon = base().with_client(ClientConfig::new("a:b", "x"));
        assert_eq!(colon.validate(), Err(ConfigError::BadClientId("a:b".into())));
        let mut faults = FaultConfig::default();
        faults.drop.probability = f64::NAN;
        assert_eq!(base().with_faults(faults).validate(), Err(ConfigError::BadDropProbability));
    }

    #[test]
    fn with_client_replaces_same_id() {
        let config = EmulatorConfig::default().with_client(
            ClientConfig::new(DEMO_CLIENT_ID, "other").with_state(ClientState::Inactive),
        );
        assert_eq!(config.clients.len(), 3);
        assert!(config.clients.iter().any(|c| c.id == DEMO_CLIENT_ID && c.secret == "other"));
    }
}
