//! [`Settings`]: the tunable part of a [`Config`](crate::Config).

use std::time::Duration;

use credflow_core::oauth::AuthMethod;
use credflow_core::session::SessionConfig;

use crate::config::Config;
#[cfg(feature = "serde")]
use crate::config::Target;

/// Everything in a [`Config`] a service may keep in its own configuration file,
/// which is everything but the credentials (and the run-time objects: a fleet store, a
/// transport). With the `serde` feature it is `Deserialize` and `Serialize`, and so are
/// [`Target`](crate::Target) and (write only) [`Config`] itself, whose secret is never written.
///
/// Durations are strings with a unit: `"250ms"`, `"90s"`, `"5m"`, `"2h"`, `"7d"` (a bare
/// number is refused: seconds or milliseconds is not guessed), as in the core's
/// configuration (`credflow_core::Duration`). A field the file leaves out keeps its default;
/// a field it misspells is an error.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use credflow_reqwest::{Target, config::{Settings, credentials}};
/// let file = r#"{
///     "target": { "genesys": "mypurecloud.ie" },
///     "settings": {
///         "auth_method": "client_secret_post",
///         "request_timeout": "10s",
///         "session": { "retry": { "max_retries": 5 }, "lifecycle": { "refresh_margin": "90s" } }
///     }
/// }"#;
/// #[derive(serde::Deserialize)]
/// struct MyServiceConfig { target: Target, settings: Settings }
/// let mine: MyServiceConfig = serde_json::from_str(file).unwrap();
/// let client = credflow_reqwest::Client::builder(mine.target, credentials("id", "secret").unwrap())
///     .settings(mine.settings);
/// assert_eq!(client.config().request_timeout, std::time::Duration::from_secs(10));
/// # }
/// ```
///
/// Each field is the [`Config`] field of the same name (documented there);
/// [`Settings::default`] is a [`Config`]'s defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Settings {
    /// [`Config::auth_method`]: `client_secret_basic`, `client_secret_post` or
    /// `client_secret_jwt`.
    pub auth_method: AuthMethod,
    /// [`Config::scope`].
    pub scope: Option<String>,
    /// [`Config::extra_params`], as `[["audience", "…"]]`.
    pub extra_params: Vec<(String, String)>,
    /// [`Config::session`]: the core's tuning.
    pub session: SessionConfig,
    /// [`Config::connect_timeout`].
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub connect_timeout: Duration,
    /// [`Config::request_timeout`].
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub request_timeout: Duration,
    /// [`Config::token_timeout`].
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub token_timeout: Duration,
    /// [`Config::token_wait`].
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub token_wait: Duration,
    /// [`Config::max_response_body`], in bytes.
    pub max_response_body: usize,
    /// [`Config::user_agent`].
    pub user_agent: String,
    /// [`Config::allow_insecure_http`].
    pub allow_insecure_http: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            auth_method: AuthMethod::default(),
            scope: None,
            extra_params: Vec::new(),
            session: SessionConfig::default(),
            connect_timeout: crate::transport::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: crate::transport::DEFAULT_REQUEST_TIMEOUT,
            token_timeout: Duration::from_secs(10),
            token_wait: Duration::from_secs(30),
            max_response_body: crate::config::DEFAULT_MAX_RESPONSE_BODY,
            user_agent: crate::transport::DEFAULT_USER_AGENT.to_owned(),
            allow_insecure_http: false,
        }
    }
}

impl Config {
    /// The tunable part of this configuration (everything but the credentials, the target, a
    /// fleet store and a transport), to write to a file.
    pub fn settings(&self) -> Settings {
        Settings {
            auth_method: self.auth_method,
            scope: self.scope.clone(),
            extra_params: self.extra_params.clone(),
            session: self.session.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            token_timeout: self.token_timeout,
            token_wait: self.token_wait,
            max_response_body: self.max_response_body,
            user_agent: self.user_agent.clone(),
            allow_insecure_http: self.allow_insecure_http,
        }
    }

    /// Sets every field of `settings` (read from a file, say) on this configuration.
    pub fn apply(&mut self, settings: Settings) {
        let Settings {
            auth_method,
            scope,
            extra_params,
            session,
            connect_timeout,
            request_timeout,
            token_timeout,
            token_wait,
            max_response_body,
            user_agent,
            allow_insecure_http,
        } = settings;
        self.auth_method = auth_method;
        self.scope = scope;
        self.extra_params = extra_params;
        self.session = session;
        self.connect_timeout = connect_timeout;
        self.request_timeout = request_timeout;
        self.token_timeout = token_timeout;
        self.token_wait = token_wait;
        self.max_response_body = max_response_body;
        self.user_agent = user_agent;
        self.allow_insecure_http = allow_insecure_http;
    }
}

/// A std duration in the core's form (`"90s"`), through `credflow_core::Duration`
/// (milliseconds; a longer duration saturates).
#[cfg(feature = "serde")]
pub(crate) mod duration {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        credflow_core::Duration::from_millis(ms).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let core = credflow_core::Duration::deserialize(d)?;
        Ok(Duration::from_millis(core.as_millis()))
    }

    /// The same for an optional duration (events' waits).
    pub(crate) mod option {
        use serde::Serializer;
        use std::time::Duration;

        pub(crate) fn serialize<S: Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&super::Wrapped(*d)),
                None => s.serialize_none(),
            }
        }
    }

    /// A std duration that serializes in the core's form.
    pub(crate) struct Wrapped(pub(crate) Duration);

    impl Serialize for Wrapped {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(&self.0, s)
        }
    }
}

/// [`Target`] as a file holds it: `{"genesys": "mypurecloud.ie"}` (any form
/// [`parse_environment`](credflow_core::env::parse_environment) reads),
/// `{"custom": {"token_url": "…", "api_base": "…"}}` or `{"token_only": {"token_url": "…"}}`.
/// Written with any userinfo of a URL masked.
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum TargetRepr {
    Genesys(String),
    Custom { token_url: String, api_base: String },
    TokenOnly { token_url: String },
}

#[cfg(feature = "serde")]
impl serde::Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use credflow_core::http::url::Redacted;
        let repr = match self {
            Target::Genesys(env) => TargetRepr::Genesys(env.domain.to_owned()),
            Target::Custom { token_url, api_base } => TargetRepr::Custom {
                token_url: Redacted(token_url).to_string(),
                api_base: Redacted(api_base).to_string(),
            },
            Target::TokenOnly { token_url } => {
                TargetRepr::TokenOnly { token_url: Redacted(token_url).to_string() }
            }
        };
        repr.serialize(s)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Target, D::Error> {
        Ok(match TargetRepr::deserialize(d)? {
            TargetRepr::Genesys(name) => Target::Genesys(
                credflow_core::env::parse_environment(&name)
                    .map_err(|e| serde::de::Error::custom(format!("genesys {name:?}: {e}")))?,
            ),
            TargetRepr::Custom { token_url, api_base } => Target::Custom { token_url, api_base },
            TargetRepr::TokenOnly { token_url } => Target::TokenOnly { token_url },
        })
    }
}

/// A [`Config`] as written: its target, the client id (never the secret) and its
/// [`Settings`]. A fleet store and a transport are run-time objects and not written.
#[cfg(feature = "serde")]
impl serde::Serialize for Config {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Written<'a> {
            target: &'a Target,
            client_id: &'a str,
            #[serde(flatten)]
            settings: Settings,
        }
        Written {
            target: &self.target,
            client_id: self.credentials.id.as_str(),
            settings: self.settings(),
        }
        .serialize(s)
    }
}
