//! Client configuration: a plain struct, or the environment variables the reference guide uses.

use std::sync::Arc;
use std::time::Duration;

use credflow_core::env::{Environment, parse_environment};
use credflow_core::oauth::AuthMethod;
use credflow_core::secret::{CredentialPart, Credentials};
use credflow_core::session::SessionConfig;

use crate::error::Error;
use crate::shared::SharedStore;

/// `GENESYS_CLIENT_ID`: the OAuth client id.
pub const ENV_CLIENT_ID: &str = "GENESYS_CLIENT_ID";
/// `GENESYS_CLIENT_SECRET`: the OAuth client secret.
pub const ENV_CLIENT_SECRET: &str = "GENESYS_CLIENT_SECRET";
/// `GENESYS_CLIENT_SECRET_FILE`: a file holding the secret (a mounted Kubernetes secret, say).
pub const ENV_CLIENT_SECRET_FILE: &str = "GENESYS_CLIENT_SECRET_FILE";
/// `GENESYS_ENV_NAME`: the Genesys Cloud environment (`mypurecloud.ie`, `eu-west-1`, …).
pub const ENV_ENV_NAME: &str = "GENESYS_ENV_NAME";
/// `CREDFLOW_TOKEN_URL`: a token endpoint of any OAuth2 server (with `CREDFLOW_API_BASE`).
pub const ENV_TOKEN_URL: &str = "CREDFLOW_TOKEN_URL";
/// `CREDFLOW_API_BASE`: the API base URL that goes with `CREDFLOW_TOKEN_URL`.
pub const ENV_API_BASE: &str = "CREDFLOW_API_BASE";

/// Where tokens come from and where API requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A Genesys Cloud environment: `https://login.<env>/oauth/token` and `https://api.<env>`.
    Genesys(&'static Environment),
    /// Any OAuth2 server, or the emulator: chosen explicitly, never by accident.
    Custom {
        /// The token endpoint URL.
        token_url: String,
        /// The API base URL; request paths are joined to it.
        api_base: String,
    },
}

impl Target {
    /// The token endpoint URL.
    pub fn token_url(&self) -> &str {
        match self {
            Target::Genesys(env) => env.token_url,
            Target::Custom { token_url, .. } => token_url,
        }
    }

    /// The API base URL.
    pub fn api_base(&self) -> &str {
        match self {
            Target::Genesys(env) => env.api_base,
            Target::Custom { api_base, .. } => api_base,
        }
    }
}

/// Everything a [`Client`](crate::Client) needs. Build it with [`Config::genesys`],
/// [`Config::custom`] or [`Config::from_env`], then adjust the public fields.
#[derive(Clone, Debug)]
pub struct Config {
    /// Client id and secret (the secret is redacted in `Debug` and zeroized on drop).
    pub credentials: Credentials,
    /// Token endpoint and API base.
    pub target: Target,
    /// How the client authenticates to the token endpoint (default `client_secret_basic`).
    pub auth_method: AuthMethod,
    /// Scope to request, space-separated. Genesys Cloud ignores it for client credentials.
    pub scope: Option<String>,
    /// Extra token-request parameters such as `audience` or `resource`.
    pub extra_params: Vec<(String, String)>,
    /// The core's tuning: refresh margins, retry policy and budget, breakers, pacing.
    pub session: SessionConfig,
    /// TCP connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Timeout of one API attempt, response headers and error body included (default 30 s).
    pub request_timeout: Duration,
    /// Timeout of one token request (default 10 s).
    pub token_timeout: Duration,
    /// Longest a caller of [`Client::token`](crate::Client::token) waits for a first token
    /// before getting an error (default 30 s).
    pub token_wait: Duration,
    /// Seed for jitter and `client_secret_jwt` ids (`jti`); `None` takes one from the operating
    /// system (the default). A fixed seed is for tests: processes of one client id that share
    /// a seed may send the same `jti`, which a server may refuse as a replay.
    pub seed: Option<u64>,
    /// `User-Agent` sent with every request.
    pub user_agent: String,
    /// Fleet mode: a store shared by every process with this client id (one token, one rate
    /// budget; see [`crate::shared`]). `None` (the default): this process works alone.
    pub shared: Option<Arc<dyn SharedStore>>,
}

impl Config {
    fn with_target(credentials: Credentials, target: Target) -> Self {
        Config {
            credentials,
            target,
            auth_method: AuthMethod::default(),
            scope: None,
            extra_params: Vec::new(),
            session: SessionConfig::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            token_timeout: Duration::from_secs(10),
            token_wait: Duration::from_secs(30),
            seed: None,
            user_agent: concat!("credflow/", env!("CARGO_PKG_VERSION")).to_owned(),
            shared: None,
        }
    }

    /// Fleet mode: shares the token and the rate budget through `store` (for instance
    /// `credflow_redis::RedisStore`). The rest of the application does not change.
    ///
    /// ```no_run
    /// # fn demo(store: std::sync::Arc<dyn credflow_reqwest::shared::SharedStore>) -> Result<(), credflow_reqwest::Error> {
    /// let config = credflow_reqwest::Config::from_env()?.with_shared(store);
    /// let client = credflow_reqwest::Client::new(config)?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn with_shared(mut self, store: Arc<dyn SharedStore>) -> Self {
        self.shared = Some(store);
        self
    }

    /// A client of the Genesys Cloud environment `env` (see [`parse_environment`]).
    pub fn genesys(env: &'static Environment, credentials: Credentials) -> Self {
        Config::with_target(credentials, Target::Genesys(env))
    }

    /// A client of any OAuth2 server: tokens from `token_url`, API requests under `api_base`.
    pub fn custom(
        token_url: impl Into<String>,
        api_base: impl Into<String>,
        credentials: Credentials,
    ) -> Self {
        let target = Target::Custom { token_url: token_url.into(), api_base: api_base.into() };
        Config::with_target(credentials, target)
    }

    /// Reads the configuration from the process environment: `GENESYS_CLIENT_ID`,
    /// `GENESYS_CLIENT_SECRET` or `GENESYS_CLIENT_SECRET_FILE`, `GENESYS_ENV_NAME` (default
    /// `mypurecloud.com`), or `CREDFLOW_TOKEN_URL` with `CREDFLOW_API_BASE` for another server.
    /// A missing or malformed variable is an error that names it.
    pub fn from_env() -> Result<Self, Error> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] over any variable source (for tests and embedding).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let id = lookup(ENV_CLIENT_ID)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::config(format!("{ENV_CLIENT_ID} is not set")))?;
        let secret = match (lookup(ENV_CLIENT_SECRET), lookup(ENV_CLIENT_SECRET_FILE)) {
            (Some(_), Some(_)) => {
                return Err(Error::config(format!(
                    "both {ENV_CLIENT_SECRET} and {ENV_CLIENT_SECRET_FILE} are set; keep one"
                )));
            }
            (Some(secret), None) => secret,
            (None, Some(path)) => read_secret_file(&path, ENV_CLIENT_SECRET_FILE)?,
            (None, None) => {
                return Err(Error::config(format!(
                    "{ENV_CLIENT_SECRET} (or {ENV_CLIENT_SECRET_FILE}) is not set"
                )));
            }
        };
        let credentials = credentials(&id, &secret)?;
        let target = match (lookup(ENV_TOKEN_URL), lookup(ENV_API_BASE)) {
            (Some(token_url), Some(api_base)) => Target::Custom { token_url, api_base },
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::config(format!(
                    "{ENV_TOKEN_URL} and {ENV_API_BASE} go together; set both or neither"
                )));
            }
            (None, None) => {
                let name = lookup(ENV_ENV_NAME).unwrap_or_else(|| "mypurecloud.com".to_owned());
                Target::Genesys(
                    parse_environment(&name)
                        .map_err(|e| Error::config(format!("{ENV_ENV_NAME}={name:?}: {e}")))?,
                )
            }
        };
        Ok(Config::with_target(credentials, target))
    }
}

/// Validates an id and a secret, naming the part that is wrong (never its value).
pub fn credentials(id: &str, secret: &str) -> Result<Credentials, Error> {
    Credentials::from_strs(id, secret).map_err(|(part, e)| {
        let name = match part {
            CredentialPart::ClientId => ENV_CLIENT_ID,
            CredentialPart::ClientSecret => ENV_CLIENT_SECRET,
        };
        Error::config(format!("{name}: {e}"))
    })
}

/// Reads a secret from a file, trimming one trailing newline (as editors and `echo` add).
pub fn read_secret_file(path: &str, what: &str) -> Result<String, Error> {
    let mut text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("{what}={path}: cannot read: {e}")))?;
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn genesys_from_env() {
        let c = Config::from_lookup(lookup(&[
            ("GENESYS_CLIENT_ID", "id"),
            ("GENESYS_CLIENT_SECRET", "s"),
            ("GENESYS_ENV_NAME", "eu-west-1"),
        ]))
        .unwrap();
        assert_eq!(c.target.token_url(), "https://login.mypurecloud.ie/oauth/token");
        assert_eq!(c.target.api_base(), "https://api.mypurecloud.ie");
        assert!(!format!("{c:?}").contains("\"s\""));
    }

    #[test]
    fn errors_name_the_variable() {
        let e = Config::from_lookup(lookup(&[("GENESYS_CLIENT_SECRET", "s")])).unwrap_err();
        assert!(e.to_string().contains("GENESYS_CLIENT_ID"), "{e}");
        let e = Config::from_lookup(lookup(&[("GENESYS_CLIENT_ID", "i")])).unwrap_err();
        assert!(e.to_string().contains("GENESYS_CLIENT_SECRET"), "{e}");
        let e = Config::from_lookup(lookup(&[
            ("GENESYS_CLIENT_ID", "i"),
            ("GENESYS_CLIENT_SECRET", "s"),
            ("GENESYS_ENV_NAME", "mypurecloud.co"),
        ]))
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("GENESYS_ENV_NAME") && text.contains("mypurecloud.com"), "{text}");
        let e = Config::from_lookup(lookup(&[
            ("GENESYS_CLIENT_ID", "i"),
            ("GENESYS_CLIENT_SECRET", "bad\u{7}secret"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("GENESYS_CLIENT_SECRET") && !e.to_string().contains("bad"));
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn secret_file_is_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("credflow-secret-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        let c = Config::from_lookup(lookup(&[
            ("GENESYS_CLIENT_ID", "i"),
            ("GENESYS_CLIENT_SECRET_FILE", dir.to_str().unwrap()),
        ]))
        .unwrap();
        assert_eq!(c.credentials.secret.expose_secret(), "from-file");
        std::fs::remove_file(&dir).unwrap();
        let e = Config::from_lookup(lookup(&[
            ("GENESYS_CLIENT_ID", "i"),
            ("GENESYS_CLIENT_SECRET_FILE", "/nonexistent/credflow"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("GENESYS_CLIENT_SECRET_FILE"), "{e}");
    }

    #[test]
    fn custom_target_needs_both_urls() {
        let e = Config::from_lookup(lookup(&[
            ("GENESYS_CLIENT_ID", "i"),
            ("GENESYS_CLIENT_SECRET", "s"),
            ("CREDFLOW_TOKEN_URL", "http://127.0.0.1:1/oauth/token"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("CREDFLOW_API_BASE"), "{e}");
    }
}
