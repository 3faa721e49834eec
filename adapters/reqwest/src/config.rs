//! Client configuration: a plain struct, or the environment variables the reference guide uses.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use credflow_core::env::{
    CLIENT_ID_VARIABLES, CLIENT_SECRET_VARIABLES, Conflict, ENVIRONMENT_VARIABLES, Environment,
    parse_environment,
};
use credflow_core::http::url::{PlainHttp, Redacted, Url, UrlError};
use credflow_core::oauth::AuthMethod;
use credflow_core::secret::{ClientId, ClientSecret, CredentialError, CredentialPart, Credentials};
use credflow_core::session::SessionConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::shared::SharedStore;
use crate::transport::Transport;

pub use crate::settings::Settings;

/// `GENESYS_CLIENT_ID`: the OAuth client id.
pub const ENV_CLIENT_ID: &str = "GENESYS_CLIENT_ID";
/// `GENESYS_CLIENT_SECRET`: the OAuth client secret.
pub const ENV_CLIENT_SECRET: &str = "GENESYS_CLIENT_SECRET";
/// `GENESYSCLOUD_OAUTHCLIENT_ID`: the client id under the name Genesys's own tooling uses
/// (the Terraform provider, the CLI); accepted beside [`ENV_CLIENT_ID`].
pub const ENV_OAUTHCLIENT_ID: &str = CLIENT_ID_VARIABLES.tooling;
/// `GENESYSCLOUD_OAUTHCLIENT_SECRET`: the client secret under Genesys tooling's name;
/// accepted beside [`ENV_CLIENT_SECRET`].
pub const ENV_OAUTHCLIENT_SECRET: &str = CLIENT_SECRET_VARIABLES.tooling;
/// `GENESYSCLOUD_REGION`: the environment under Genesys tooling's name (`eu-west-1`, or any
/// form [`parse_environment`] reads); accepted beside [`ENV_ENV_NAME`].
pub const ENV_REGION: &str = ENVIRONMENT_VARIABLES.tooling;
/// `GENESYS_CLIENT_SECRET_FILE`: a file holding the secret (a mounted Kubernetes secret, say).
pub const ENV_CLIENT_SECRET_FILE: &str = "GENESYS_CLIENT_SECRET_FILE";
/// `GENESYS_ENV_NAME`: the Genesys Cloud environment (`mypurecloud.ie`, `eu-west-1`, …).
pub const ENV_ENV_NAME: &str = "GENESYS_ENV_NAME";
/// `CREDFLOW_TOKEN_URL`: a token endpoint of any OAuth2 server (with `CREDFLOW_API_BASE`;
/// [`Config::from_env`] needs both, the `credflow token` command only this one).
pub const ENV_TOKEN_URL: &str = "CREDFLOW_TOKEN_URL";
/// `CREDFLOW_API_BASE`: the API base URL that goes with `CREDFLOW_TOKEN_URL`.
pub const ENV_API_BASE: &str = "CREDFLOW_API_BASE";

/// The default of [`Config::max_response_body`]: 64 KiB.
pub const DEFAULT_MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Where tokens come from and where API requests go.
///
/// Both URLs must be `https`, or `http` to a loopback host (`127.0.0.0/8`, `[::1]`,
/// `localhost`): the token URL receives the client credentials, the API base the bearer
/// tokens. [`Client::new`](crate::Client::new) refuses any other `http` URL unless
/// [`Config::allow_insecure_http`] is set. `Debug` masks userinfo.
#[derive(Clone, PartialEq, Eq)]
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
    /// Tokens only, from any OAuth2 server, for a process that hands them to another HTTP
    /// stack: without an API base, [`Client::url`](crate::Client::url) and
    /// [`Client::request`](crate::Client::request) answer a configuration error.
    TokenOnly {
        /// The token endpoint URL.
        token_url: String,
    },
}

impl Target {
    /// The token endpoint URL.
    pub fn token_url(&self) -> &str {
        match self {
            Target::Genesys(env) => env.token_url,
            Target::Custom { token_url, .. } | Target::TokenOnly { token_url } => token_url,
        }
    }

    /// The API base URL; `None` for [`Target::TokenOnly`].
    pub fn api_base(&self) -> Option<&str> {
        match self {
            Target::Genesys(env) => Some(env.api_base),
            Target::Custom { api_base, .. } => Some(api_base),
            Target::TokenOnly { .. } => None,
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Genesys(env) => f.debug_tuple("Genesys").field(env).finish(),
            Target::Custom { token_url, api_base } => f
                .debug_struct("Custom")
                .field("token_url", &format_args!("\"{}\"", Redacted(token_url)))
                .field("api_base", &format_args!("\"{}\"", Redacted(api_base)))
                .finish(),
            Target::TokenOnly { token_url } => f
                .debug_struct("TokenOnly")
                .field("token_url", &format_args!("\"{}\"", Redacted(token_url)))
                .finish(),
        }
    }
}

/// Everything a [`Client`](crate::Client) needs. Build it with [`Config::genesys`],
/// [`Config::custom`], [`Config::token_only`] or [`Config::from_env`], then adjust the public
/// fields; or use [`Client::builder`](crate::Client::builder), which sets them by name.
///
/// `#[non_exhaustive]`: new fields may come in minor versions, so a `Config` is made with one
/// of its constructors, never with a struct literal.
#[derive(Clone, Debug)]
#[non_exhaustive]
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
    /// Timeout of one API attempt, response headers and body included (default 30 s): the
    /// client-wide timeout of the API client credflow builds for this client, and set on each
    /// attempt where that client's timeout is another (a shared [`Transport`]
    /// built with the default) or the HTTP client is the caller's.
    pub request_timeout: Duration,
    /// Timeout of one token request (default 10 s).
    pub token_timeout: Duration,
    /// Longest a caller of [`Client::token`](crate::Client::token) waits for a first token
    /// before getting an error (default 30 s).
    pub token_wait: Duration,
    /// Most bytes of a response body the client reads into memory (default 64 KiB): a token
    /// response, or an API error body read to classify it.
    ///
    /// A token response larger than this is a token failure that says so ("response larger
    /// than N bytes"; for a success, token requests stop: see
    /// [`Session::handle_token_too_large`](credflow_core::session::Session::handle_token_too_large)),
    /// however the server frames it (a `Content-Length`, an endless chunked body). A token
    /// response has no business being larger than a few KiB; raise this only for a server
    /// whose tokens really are that large. An API error body larger than this is classified
    /// by its first bytes and handed to the caller whole, the rest streamed as it comes.
    /// Success bodies of API requests are never read by the client: they are the caller's.
    ///
    /// ```
    /// # let credentials = credflow_reqwest::config::credentials("id", "secret").unwrap();
    /// let mut config = credflow_reqwest::Config::custom(
    ///     "https://idp.example/oauth/token", "https://api.example", credentials);
    /// config.max_response_body = 256 * 1024; // a server with very large JWTs
    /// ```
    pub max_response_body: usize,
    /// Seed for jitter and `client_secret_jwt` ids (`jti`); `None` takes one from the operating
    /// system (the default). A fixed seed is for tests: processes of one client id that share
    /// a seed may send the same `jti`, which a server may refuse as a replay.
    pub seed: Option<u64>,
    /// `User-Agent` sent with every request.
    pub user_agent: String,
    /// Fleet mode: a store shared by every process with this client id (one token, one rate
    /// budget; see [`crate::shared`]). `None` (the default): this process works alone.
    pub shared: Option<Arc<dyn SharedStore>>,
    /// Allows `http` token URLs and API bases to hosts that are not loopback (default `false`).
    ///
    /// Off, [`Client::new`](crate::Client::new) refuses them before anything is resolved or
    /// connected: the client credentials and bearer tokens sent there would cross the network
    /// in clear text, readable and replayable by anyone on the path. On, they are sent, and
    /// the client logs a `tracing` warning naming each such URL when it is built. For a test
    /// network without TLS, never in production. `http` to `127.0.0.0/8`, `[::1]` and
    /// `localhost` (the emulator) needs no opt-in.
    ///
    /// ```
    /// # let credentials = credflow_reqwest::config::credentials("id", "secret")?;
    /// let mut config = credflow_reqwest::Config::custom(
    ///     "http://auth.lab.test/oauth/token", "http://api.lab.test", credentials);
    /// config.allow_insecure_http = true; // a lab network without TLS
    /// # Ok::<(), credflow_reqwest::Error>(())
    /// ```
    pub allow_insecure_http: bool,
    /// The HTTP clients to send through (see [`crate::transport`]): `None` (the default)
    /// builds credflow's own for this client, with [`connect_timeout`](Self::connect_timeout)
    /// and [`user_agent`](Self::user_agent); a [`Transport`] shared by many clients, or one
    /// holding the caller's API client, is used as it is (those two fields then do not apply
    /// to it). Token requests always go through a client of credflow's that follows no
    /// redirect.
    pub transport: Option<Transport>,
    /// Certificate authorities trusted besides the platform's (DER; default none): a
    /// TLS-inspecting proxy's, a private server's, the emulator's test CA. Read a PEM file
    /// with [`read_ca_file`].
    ///
    /// ```no_run
    /// # let credentials = credflow_reqwest::config::credentials("id", "secret")?;
    /// let mut config = credflow_reqwest::Config::custom(
    ///     "https://auth.corp.example/oauth/token", "https://api.corp.example", credentials);
    /// config.extra_root_certificates = credflow_reqwest::config::read_ca_file("/etc/corp/ca.pem")?;
    /// # Ok::<(), credflow_reqwest::Error>(())
    /// ```
    pub extra_root_certificates: Vec<CertificateDer<'static>>,
}

impl Config {
    pub(crate) fn with_target(credentials: Credentials, target: Target) -> Self {
        let mut config = Config {
            credentials,
            target,
            auth_method: AuthMethod::default(),
            scope: None,
            extra_params: Vec::new(),
            session: SessionConfig::default(),
            connect_timeout: Duration::ZERO,
            request_timeout: Duration::ZERO,
            token_timeout: Duration::ZERO,
            token_wait: Duration::ZERO,
            max_response_body: 0,
            seed: None,
            user_agent: String::new(),
            shared: None,
            allow_insecure_http: false,
            transport: None,
            extra_root_certificates: Vec::new(),
        };
        // The defaults live in one place: `Settings::default`.
        config.apply(crate::settings::Settings::default());
        config
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

    /// A client that only gets tokens, from `token_url` of any OAuth2 server: it has no API
    /// base to join request paths to ([`Target::TokenOnly`]).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), credflow_reqwest::Error> {
    /// use credflow_reqwest::{Client, Config, config::credentials};
    /// let config = Config::token_only("https://auth.example.com/oauth2/token", credentials("id", "secret")?);
    /// let token = Client::new(config)?.token().await?;
    /// # let _ = token; Ok(()) }
    /// ```
    pub fn token_only(token_url: impl Into<String>, credentials: Credentials) -> Self {
        Config::with_target(credentials, Target::TokenOnly { token_url: token_url.into() })
    }

    /// Reads the configuration from the process environment: `GENESYS_CLIENT_ID`,
    /// `GENESYS_CLIENT_SECRET` or `GENESYS_CLIENT_SECRET_FILE`, `GENESYS_ENV_NAME` (default
    /// `mypurecloud.com`), or `CREDFLOW_TOKEN_URL` with `CREDFLOW_API_BASE` for another server.
    /// Genesys tooling's names are accepted beside the first three:
    /// `GENESYSCLOUD_OAUTHCLIENT_ID`, `GENESYSCLOUD_OAUTHCLIENT_SECRET`, `GENESYSCLOUD_REGION`;
    /// a setting given under both names with different values is an error naming both
    /// (`mypurecloud.ie` and `eu-west-1` are the same environment).
    /// A missing or malformed variable is an error that names it, and so is a secret given
    /// twice (both `GENESYS_CLIENT_SECRET` and `GENESYS_CLIENT_SECRET_FILE`: which one is meant
    /// is not guessed). An empty variable counts as unset. The file is read by
    /// [`read_secret_file`].
    pub fn from_env() -> Result<Self, Error> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] over any variable source (for tests and embedding).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let conflict = |e: Conflict| Error::config(e.to_string());
        let ids = (lookup(ENV_CLIENT_ID), lookup(ENV_OAUTHCLIENT_ID));
        let (id_name, id) = CLIENT_ID_VARIABLES
            .pick(ids.0.as_deref(), ids.1.as_deref(), |a, b| a == b)
            .map_err(conflict)?
            .ok_or_else(|| {
                Error::config(format!("{ENV_CLIENT_ID} (or {ENV_OAUTHCLIENT_ID}) is not set"))
            })?;
        let file = lookup(ENV_CLIENT_SECRET_FILE).filter(|v| !v.is_empty());
        let file = file.as_deref().map(|path| (path, ENV_CLIENT_SECRET_FILE));
        let secret = secret_from_environment(&lookup, file)?.ok_or_else(|| {
            Error::config(format!(
                "{ENV_CLIENT_SECRET} (or {ENV_OAUTHCLIENT_SECRET}, or \
                 {ENV_CLIENT_SECRET_FILE}) is not set"
            ))
        })?;
        let credentials = Credentials::new(client_id(id, id_name)?, secret);
        // An empty variable (a template's placeholder) counts as unset.
        let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let target = match (set(ENV_TOKEN_URL), set(ENV_API_BASE)) {
            (Some(_), Some(_)) if set(ENV_ENV_NAME).or_else(|| set(ENV_REGION)).is_some() => {
                // Credentials meant for one would go to the other: not guessed.
                return Err(Error::config(format!(
                    "two targets: a Genesys Cloud environment ({ENV_ENV_NAME} or {ENV_REGION}) \
                     and a custom server ({ENV_TOKEN_URL} and {ENV_API_BASE}); set one of them"
                )));
            }
            (Some(token_url), Some(api_base)) => Target::Custom { token_url, api_base },
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::config(format!(
                    "{ENV_TOKEN_URL} and {ENV_API_BASE} go together; set both or neither (a \
                     client for tokens only: Config::token_only)"
                )));
            }
            (None, None) => {
                let names = (lookup(ENV_ENV_NAME), lookup(ENV_REGION));
                let picked = ENVIRONMENT_VARIABLES
                    .pick(names.0.as_deref(), names.1.as_deref(), same_environment)
                    .map_err(conflict)?;
                let (variable, name) = picked.unwrap_or((ENV_ENV_NAME, "mypurecloud.com"));
                Target::Genesys(
                    parse_environment(name)
                        .map_err(|e| Error::config(format!("{variable}={name:?}: {e}")))?,
                )
            }
        };
        Ok(Config::with_target(credentials, target))
    }
}

/// The certificates of a PEM file (`-----BEGIN CERTIFICATE-----` blocks; other blocks are
/// skipped), for [`Config::extra_root_certificates`].
///
/// # Errors
///
/// A configuration error (exit code 2) naming the file: it cannot be read, a block is
/// malformed, or it holds no certificate.
pub fn read_ca_file(path: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let refuse = |why: String| Error::config(format!("CA file {path}: {why}"));
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| refuse(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(e.to_string()))?;
    if certificates.is_empty() {
        return Err(refuse("no certificate (PEM, -----BEGIN CERTIFICATE-----) in it".to_owned()));
    }
    Ok(certificates)
}

/// Checks a URL that will receive credentials or tokens, as [`Client::new`](crate::Client::new)
/// does (the core's [`Url::parse_with`]): `what` names it in the error (`"token URL"`,
/// `"--api-base"`), with any userinfo masked. Returns whether the URL is plain `http` to a host
/// that is not loopback, which only `allow_insecure_http` lets through: the caller warns.
///
/// ```
/// use credflow_reqwest::config::check_url;
/// assert_eq!(check_url("token URL", "https://login.example.com/oauth/token", false).ok(), Some(false));
/// assert_eq!(check_url("token URL", "http://127.0.0.1:8089/oauth/token", false).ok(), Some(false));
/// let refused = check_url("token URL", "http://auth.example.invalid/oauth/token", false).unwrap_err();
/// assert_eq!(refused.exit_code(), 2);
/// assert_eq!(check_url("token URL", "http://auth.example.invalid/oauth/token", true).ok(), Some(true));
/// ```
///
/// # Errors
///
/// A configuration error (exit code 2) for a malformed URL, userinfo (never repeated), or
/// plain `http` to a host that is not loopback without the opt-in.
pub fn check_url(what: &str, url: &str, allow_insecure_http: bool) -> Result<bool, Error> {
    let plain_http =
        if allow_insecure_http { PlainHttp::Anywhere } else { PlainHttp::LoopbackOnly };
    match Url::parse_with(url, plain_http) {
        Ok(parsed) => Ok(parsed.is_insecure()),
        Err(e) => Err(url_error(what, url, e)),
    }
}

/// The error for a URL the core refused: names it (userinfo masked) and says why.
pub(crate) fn url_error(what: &str, url: &str, e: UrlError) -> Error {
    Error::config(format!("{what} \"{}\": {e}", Redacted(url)))
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

/// Validates a client id; the error names `source` (the variable or flag it came from).
pub fn client_id(id: &str, source: &str) -> Result<ClientId, Error> {
    ClientId::new(id).map_err(|e| Error::config(format!("{source}: {e}")))
}

/// Validates a client secret; the error names `source` (the variable or flag it came from),
/// never the value.
pub fn client_secret(secret: &str, source: &str) -> Result<ClientSecret, Error> {
    ClientSecret::new(secret).map_err(|e| Error::config(format!("{source}: {e}")))
}

/// The error for a secret given both as a value (`GENESYS_CLIENT_SECRET`) and as a file
/// (`file_source`: `GENESYS_CLIENT_SECRET_FILE` or a flag): refused rather than one of them
/// silently preferred, since they may well differ (a rotated secret, a stale variable).
pub fn secret_given_twice(file_source: &str) -> Error {
    value_and_file(ENV_CLIENT_SECRET, file_source)
}

/// The client secret from exactly one place: its variable as `lookup` reads it
/// (`GENESYS_CLIENT_SECRET` or `GENESYSCLOUD_OAUTHCLIENT_SECRET`; both set to different values
/// is an error naming both), or `file`, a path and the flag or variable that named it (read by
/// [`read_secret_file`]). Given in both places, an error naming both ([`value_and_file`]);
/// in neither, `None`, for the caller to say how to give it. The copies of the value taken out
/// of the environment are wiped when dropped.
///
/// # Errors
///
/// A configuration error (exit code 2) that names the variables, the flag or the file, never
/// the secret.
pub fn secret_from_environment(
    lookup: impl Fn(&str) -> Option<String>,
    file: Option<(&str, &str)>,
) -> Result<Option<ClientSecret>, Error> {
    let values = (
        lookup(ENV_CLIENT_SECRET).map(Zeroizing::new),
        lookup(ENV_OAUTHCLIENT_SECRET).map(Zeroizing::new),
    );
    let value = CLIENT_SECRET_VARIABLES
        .pick(
            values.0.as_deref().map(String::as_str),
            values.1.as_deref().map(String::as_str),
            |a, b| a == b,
        )
        .map_err(|e| Error::config(e.to_string()))?;
    match (value, file) {
        (Some((name, _)), Some((_, source))) => Err(value_and_file(name, source)),
        (Some((name, value)), None) => client_secret(value, name).map(Some),
        (None, Some((path, source))) => read_secret_file(path, source).map(Some),
        (None, None) => Ok(None),
    }
}

/// [`secret_given_twice`] naming the variable the value came from (`GENESYS_CLIENT_SECRET` or
/// `GENESYSCLOUD_OAUTHCLIENT_SECRET`).
pub fn value_and_file(value_source: &str, file_source: &str) -> Error {
    Error::config(format!(
        "both {value_source} and {file_source} are set: which secret is meant is not \
         guessed; keep one"
    ))
}

/// Whether two environment names name the same environment (`mypurecloud.ie`, `eu-west-1`):
/// the comparison of [`ENVIRONMENT_VARIABLES`] for [`Config::from_env`] and the CLI.
pub fn same_environment(a: &str, b: &str) -> bool {
    match (parse_environment(a), parse_environment(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.trim() == b.trim(),
    }
}

/// The largest secret file [`read_secret_file`] reads, in bytes: far more than any client
/// secret ([`CLIENT_SECRET_CAPACITY`](credflow_core::secret::CLIENT_SECRET_CAPACITY) bytes),
/// far less than a file named by mistake.
pub const SECRET_FILE_LIMIT: usize = 4096;

/// Reads a client secret from the file at `path`; errors name `source` (the variable or flag
/// that gave the path) and the path, never the content.
///
/// The file must be a regular file (a symbolic link to one is followed: Kubernetes mounts
/// secrets that way) of at most [`SECRET_FILE_LIMIT`] bytes of UTF-8. Exactly one trailing
/// line break, `\n` or `\r\n` (as editors and `echo` add), is removed, and nothing else: the
/// rest is the secret, which must not be empty or hold another line break or control character.
///
/// Refused, before anything is read: a FIFO (opening one waits for a writer, for ever if none
/// comes), a device such as `/dev/zero` (whose content never ends), a directory or a socket;
/// a file larger than the limit (refused, not truncated). The kind of file is checked before
/// the file is opened, so that a FIFO is never opened, and again on the opened file, so that
/// what is read is what was checked. One race is left: a FIFO put at `path` between the two
/// checks makes the opening wait for a writer. Only someone who can write to the secret's
/// directory can do that, and they could replace the secret itself.
pub fn read_secret_file(path: &str, source: &str) -> Result<ClientSecret, Error> {
    let refuse = |why: &str| Error::config(format!("{source}={path}: {why}"));
    let cannot = |e: std::io::Error| refuse(&format!("cannot read: {e}"));
    // A value that names no file (not found, a name too long, a "directory" that is a file,
    // no permission to look) may be the secret itself, put in the wrong variable: not repeated.
    // `metadata` follows symbolic links: a link to a regular file is a regular file.
    let metadata = std::fs::metadata(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            _ => e.to_string(),
        };
        // Where a secret itself goes is said for the client secret only: other sources (the
        // proxy's key files) have no variable for the value.
        let hint = if [ENV_CLIENT_SECRET_FILE, "--client-secret-file"].contains(&source) {
            format!("the secret goes in {ENV_CLIENT_SECRET}")
        } else {
            format!("{source} takes the path of a file")
        };
        Error::config(format!(
            "{source}: cannot read: {why} (the value is not repeated, in case it is the secret \
             itself; {hint})"
        ))
    })?;
    check_regular(&metadata).map_err(|why| refuse(&why))?;
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    check_regular(&file.metadata().map_err(cannot)?).map_err(|why| refuse(&why))?;
    // One byte more than the limit tells a file at the limit from a larger one. A buffer of
    // fixed size, never grown: no copy of the secret is left behind in freed memory.
    let mut buf = Zeroizing::new(vec![0u8; SECRET_FILE_LIMIT + 1]);
    let mut len = 0;
    while let Some(rest) = buf.get_mut(len..).filter(|rest| !rest.is_empty()) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(cannot(e)),
        }
    }
    if len > SECRET_FILE_LIMIT {
        return Err(refuse(&format!(
            "larger than {SECRET_FILE_LIMIT} bytes, the limit for a secret file: is it the right \
             file?"
        )));
    }
    let text = std::str::from_utf8(buf.get(..len).unwrap_or_default())
        .map_err(|_| refuse("not UTF-8 text"))?;
    let secret = trim_line_break(text);
    ClientSecret::new(secret).map_err(|e| match e {
        CredentialError::Empty => refuse("the secret is empty"),
        CredentialError::ControlCharacter { at }
            if secret.as_bytes().get(at).is_some_and(|b| matches!(b, b'\n' | b'\r')) =>
        {
            refuse(&format!(
                "a line break at byte {at} of the secret (only one trailing line break, \\n or \
                 \\r\\n, is removed)"
            ))
        }
        e => refuse(&e.to_string()),
    })
}

/// `text` without one trailing `\n` or `\r\n`: the one rule [`read_secret_file`] documents.
fn trim_line_break(text: &str) -> &str {
    text.strip_suffix("\r\n").or_else(|| text.strip_suffix('\n')).unwrap_or(text)
}

/// `Ok` for a regular file; otherwise what the file is, for the error.
fn check_regular(metadata: &std::fs::Metadata) -> Result<(), String> {
    let kind = metadata.file_type();
    if kind.is_file() {
        return Ok(());
    }
    let what = if kind.is_dir() { "a directory" } else { special_file_kind(&kind) };
    Err(format!("is {what}; a secret file must be a regular file or a link to one"))
}

#[cfg(unix)]
fn special_file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_file_kind(_: &std::fs::FileType) -> &'static str {
    "a special file"
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
        assert_eq!(c.target.api_base(), Some("https://api.mypurecloud.ie"));
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

    /// Empty variables (a template's placeholders) are unset; a custom server beside a
    /// Genesys environment is two targets, refused naming the variables.
    #[test]
    fn empty_urls_are_unset_and_two_targets_are_refused() {
        let c = Config::from_lookup(lookup(&[
            ("GENESYS_CLIENT_ID", "i"),
            ("GENESYS_CLIENT_SECRET", "s"),
            ("CREDFLOW_TOKEN_URL", ""),
            ("CREDFLOW_API_BASE", " "),
            ("GENESYS_ENV_NAME", "mypurecloud.ie"),
        ]))
        .unwrap();
        assert_eq!(c.target.api_base(), Some("https://api.mypurecloud.ie"));
        for env in ["GENESYS_ENV_NAME", "GENESYSCLOUD_REGION"] {
            let e = Config::from_lookup(lookup(&[
                ("GENESYS_CLIENT_ID", "i"),
                ("GENESYS_CLIENT_SECRET", "s"),
                ("CREDFLOW_TOKEN_URL", "http://127.0.0.1:1/oauth/token"),
                ("CREDFLOW_API_BASE", "http://127.0.0.1:1"),
                (env, "mypurecloud.ie"),
            ]))
            .unwrap_err();
            let text = e.to_string();
            assert!(text.contains("two targets") && text.contains("CREDFLOW_TOKEN_URL"), "{text}");
        }
    }

    /// A scratch directory of this test process, removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("credflow-secret-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        /// A file `name` holding `content`; its path.
        fn file(&self, name: &str, content: &[u8]) -> String {
            let path = self.0.join(name);
            std::fs::write(&path, content).unwrap();
            path.to_str().unwrap().to_owned()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn read(path: &str) -> Result<String, String> {
        read_secret_file(path, "SOURCE")
            .map(|s| s.expose_secret().to_owned())
            .map_err(|e| e.to_string())
    }

    /// A path that names no file may be the secret itself: never repeated, and the hint on
    /// where a secret goes names the client secret's variable only for the client secret.
    #[test]
    fn a_missing_file_is_not_repeated_and_the_hint_fits_the_source() {
        let missing = "not-a-file-but-maybe-a-secret";
        for (source, hint) in [
            (ENV_CLIENT_SECRET_FILE, "the secret goes in GENESYS_CLIENT_SECRET"),
            ("--client-secret-file", "the secret goes in GENESYS_CLIENT_SECRET"),
            ("--local-key-file", "--local-key-file takes the path of a file"),
        ] {
            let e = read_secret_file(missing, source).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("no such file") && e.contains(hint), "{source}: {e}");
            assert!(!e.contains(missing), "{source}: {e}");
        }
    }

    #[test]
    fn exactly_one_trailing_line_break_is_trimmed() {
        let dir = Scratch::new("trim");
        assert_eq!(read(&dir.file("plain", b"hunter2")).unwrap(), "hunter2");
        assert_eq!(read(&dir.file("lf", b"hunter2\n")).unwrap(), "hunter2");
        assert_eq!(read(&dir.file("crlf", b"hunter2\r\n")).unwrap(), "hunter2");
        // A second line break is not trimmed: the secret would hold it, which is refused and
        // explained, never sent.
        for (name, content) in
            [("lflf", &b"hunter2\n\n"[..]), ("cr", b"hunter2\r"), ("mid", b"hun\nter2")]
        {
            let e = read(&dir.file(name, content)).unwrap_err();
            assert!(e.contains("line break") && e.contains("only one trailing"), "{name}: {e}");
            assert!(!e.contains("hun") && !e.contains("ter2"), "{name}: {e}");
        }
        // Spaces are part of the secret: only the documented line break is removed.
        assert_eq!(read(&dir.file("space", b" hunter2 \n")).unwrap(), " hunter2 ");
    }

    #[test]
    fn an_empty_or_non_text_secret_file_is_refused() {
        let dir = Scratch::new("empty");
        for (name, content) in [("empty", &b""[..]), ("lf", b"\n"), ("crlf", b"\r\n")] {
            let path = dir.file(name, content);
            let e = read(&path).unwrap_err();
            assert!(e.contains("SOURCE=") && e.contains(&path) && e.contains("empty"), "{e}");
        }
        let e = read(&dir.file("binary", b"hun\xffter2")).unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn a_large_secret_file_is_refused_naming_the_limit() {
        let dir = Scratch::new("large");
        let path = dir.file("huge", &vec![b'a'; 10 << 20]);
        let e = read(&path).unwrap_err();
        assert!(e.contains(&path) && e.contains("larger than 4096 bytes"), "{e}");
        // At the limit the file is read; its content is then too long for a secret, which is
        // another error, the core's.
        let e = read(&dir.file("limit", &vec![b'a'; SECRET_FILE_LIMIT])).unwrap_err();
        assert!(!e.contains("larger than") && e.contains("4096 bytes long"), "{e}");
        let e = read(&dir.file("over", &vec![b'a'; SECRET_FILE_LIMIT + 1])).unwrap_err();
        assert!(e.contains("larger than 4096 bytes"), "{e}");
    }

    #[test]
    fn a_directory_is_not_a_secret_file() {
        let dir = Scratch::new("dir");
        let path = dir.0.to_str().unwrap();
        let e = read(path).unwrap_err();
        assert!(e.contains(path) && e.contains("is a directory"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_link_to_a_regular_file_is_followed() {
        // How Kubernetes mounts a secret: `secret -> ..data/secret`.
        let dir = Scratch::new("link");
        let target = dir.file("target", b"linked\n");
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read(link.to_str().unwrap()).unwrap(), "linked");
        let dangling = dir.0.join("dangling");
        std::os::unix::fs::symlink(dir.0.join("missing"), &dangling).unwrap();
        let e = read(dangling.to_str().unwrap()).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }

    /// A value that names no file may be the secret put in the wrong variable: the error does
    /// not repeat it.
    #[test]
    fn a_file_that_does_not_exist_is_not_named() {
        let e = read("s3cret-value-not-a-path").unwrap_err();
        assert!(e.contains("no such file") && e.contains("SOURCE"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        // Other ways a secret is no path: a name too long, a file taken for a directory.
        let long = format!("s3cret{}", "x".repeat(300));
        let e = read(&long).unwrap_err();
        assert!(!e.contains("s3cret") && e.contains("SOURCE"), "{e}");
        let file = std::env::temp_dir().join(format!("credflow-not-a-dir-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let under = format!("{}/s3cret", file.display());
        let e = read(&under).unwrap_err();
        let _ = std::fs::remove_file(&file);
        assert!(!e.contains("s3cret") && e.contains("SOURCE"), "{e}");
    }

    /// Runs `read(path)` on a thread and gives up after a few seconds: a read that hangs fails
    /// the test instead of hanging it (the stuck thread ends with the test process).
    fn read_within_seconds(path: &str) -> Result<String, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let path = path.to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(read(&path));
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("read_secret_file returned within 5 s")
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_refused_without_reading_it() {
        // `/dev/zero` never ends: reading it in full would grow without bound.
        let e = read_within_seconds("/dev/zero").unwrap_err();
        assert!(e.contains("/dev/zero") && e.contains("is a character device"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_without_a_writer_is_refused_at_once() {
        let dir = Scratch::new("fifo");
        let path = dir.0.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(made.success());
        let path = path.to_str().unwrap();
        // Opening a FIFO for reading waits for a writer; none comes.
        let e = read_within_seconds(path).unwrap_err();
        assert!(e.contains(path) && e.contains("is a FIFO"), "{e}");
    }

    #[test]
    fn a_secret_given_twice_is_refused() {
        let dir = Scratch::new("twice");
        let path = dir.file("secret", b"from-file\n");
        let e = Config::from_lookup(lookup(&[
            ("GENESYS_CLIENT_ID", "i"),
            ("GENESYS_CLIENT_SECRET", "from-variable"),
            ("GENESYS_CLIENT_SECRET_FILE", &path),
        ]))
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("GENESYS_CLIENT_SECRET ") && text.contains("GENESYS_CLIENT_SECRET_FILE"),
            "{text}"
        );
        assert!(!text.contains("from-"), "{text}");
        assert_eq!(e.exit_code(), 2);
        // An empty variable is unset (as `GENESYS_CLIENT_SECRET=` from a template leaves it).
        let c = Config::from_lookup(lookup(&[
            ("GENESYS_CLIENT_ID", "i"),
            ("GENESYS_CLIENT_SECRET", ""),
            ("GENESYS_CLIENT_SECRET_FILE", &path),
        ]))
        .unwrap();
        assert_eq!(c.credentials.secret.expose_secret(), "from-file");
    }

    #[test]
    fn a_token_only_target_has_no_api_base() {
        let c =
            Config::token_only("http://127.0.0.1:1/oauth/token", credentials("i", "s").unwrap());
        assert_eq!(c.target.token_url(), "http://127.0.0.1:1/oauth/token");
        assert_eq!(c.target.api_base(), None);
    }
}
