//! The store's configuration ([`RedisConfig`]) and what can be wrong with it when the store is
//! built ([`SetupError`]).

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

#[cfg(doc)]
use crate::RedisStore;
use crate::sharing::{PodName, TokenSharing};

/// How a [`RedisStore`] connects and coordinates. Build it with [`RedisConfig::new`], then
/// adjust the public fields or chain the `with_*` methods, as with `credflow_reqwest::Config`.
///
/// `#[non_exhaustive]`: new fields may come in minor versions, so a `RedisConfig` is made with
/// [`RedisConfig::new`], never with a struct literal.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://…` (feature `tls`), or a Unix
    /// socket: `redis+unix:///path/to/redis.sock[?db=N][&user=…][&pass=…]`. Zeroized on drop
    /// (it may hold the password); `Debug` shows it without its password (`***`), whichever of
    /// these forms holds it.
    pub url: Zeroizing<String>,
    /// HMAC key that seals the token at rest (at least 16 bytes; the same on every process).
    pub fleet_key: Zeroizing<Vec<u8>>,
    /// When set, the token is also encrypted at rest (XChaCha20-Poly1305). Boxed, so that
    /// moving the config (into [`RedisStore::new`](crate::RedisStore::new), say) leaves no copy
    /// of the key behind; wiped on drop.
    pub encryption_key: Option<Box<Zeroizing<[u8; 32]>>>,
    /// Prefix of every key (default `credflow`).
    pub prefix: String,
    /// How long a refresh lease lasts if its holder never publishes (default 15 s: longer than
    /// a token request, short enough for another pod to take over soon; at most
    /// [`MAX_LEASE_TTL`](crate::MAX_LEASE_TTL), an hour).
    pub lease_ttl: Duration,
    /// How often a pod waiting for another's refresh looks for the new token (default 50 ms).
    pub poll_interval: Duration,
    /// Longest a pod waits for others' refreshes before fetching on its own (default 20 s:
    /// longer than the lease, so a dead holder is taken over first, and shorter than the
    /// client's `token_wait`, 30 s by default, which bounds the whole call: a store still
    /// waiting when the client gives up on it counts as unreachable, and the client degrades
    /// instead of fetching alone).
    pub max_wait: Duration,
    /// Connection timeout (default 1 s; at least 1 ms, at most
    /// [`MAX_TIMEOUT`](crate::MAX_TIMEOUT), a minute).
    pub connect_timeout: Duration,
    /// Timeout of one command (default 500 ms; at least 1 ms, at most
    /// [`MAX_TIMEOUT`](crate::MAX_TIMEOUT), a minute).
    pub response_timeout: Duration,
    /// One token and budget for the fleet (default), or one per pod: see [`TokenSharing`].
    pub token_sharing: TokenSharing,
    /// Accept a plain `redis://` URL to a host that is not loopback (default `false`): the
    /// password and every token record would cross the network in clear text (the records
    /// are sealed, which proves who wrote them, but readable unless
    /// [`with_encryption_key`](Self::with_encryption_key) encrypts them). Without it such a URL
    /// is refused when the store is built, before the host is resolved
    /// ([`SetupError::InsecureRedis`]); use `rediss://` (feature `tls`) or a Unix socket.
    /// Loopback is `127.0.0.0/8`, `::1` or `localhost`, as for the HTTP side's
    /// `allow_insecure_http`.
    pub allow_insecure_redis: bool,
    /// The CA certificates (PEM) a `rediss://` server's certificate must chain to, instead of
    /// the public webpki roots; see [`RedisConfig::with_root_ca_pem`].
    #[cfg(feature = "tls")]
    pub root_ca_pem: Option<Vec<u8>>,
    /// The client certificate (PEM: the certificate, then any intermediates) presented to a
    /// `rediss://` server that requires one (`tls-auth-clients yes`), with
    /// [`client_key_pem`](Self::client_key_pem); see [`RedisConfig::with_client_cert_pem`].
    #[cfg(feature = "tls")]
    pub client_cert_pem: Option<Vec<u8>>,
    /// The private key of [`client_cert_pem`](Self::client_cert_pem) (PEM: PKCS#8, PKCS#1 RSA
    /// or SEC1 EC), zeroized on drop and never shown by `Debug`.
    #[cfg(feature = "tls")]
    pub client_key_pem: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = redacted(&self.url);
        let mut f = f.debug_struct("RedisConfig");
        f.field("url", &url)
            .field("encrypted", &self.encryption_key.is_some())
            .field("prefix", &self.prefix)
            .field("lease_ttl", &self.lease_ttl)
            .field("poll_interval", &self.poll_interval)
            .field("max_wait", &self.max_wait)
            .field("token_sharing", &self.token_sharing);
        #[cfg(feature = "tls")]
        f.field("private_ca", &self.root_ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some());
        f.finish_non_exhaustive()
    }
}

/// `url` as the `redis` crate reads it, without its secrets: built from what it parses to,
/// never from its text, so that no form of URL shows its password (a TCP URL's userinfo, a
/// Unix socket URL's `pass` query value, percent-encoded or not): the scheme (`redis`,
/// `rediss`, `redis+unix`), the user name, a password as `***`, the host and port or the
/// socket's path, the database, and `#insecure`. A URL that does not parse is not shown at all.
fn redacted(url: &str) -> String {
    use redis::{ConnectionAddr, IntoConnectionInfo};
    let Ok(info) = url.into_connection_info() else {
        return "(a URL that does not parse)".to_owned();
    };
    let redis::RedisConnectionInfo { db, username, password, .. } = info.redis;
    // Wiped here rather than freed as they are: only whether there is one is shown.
    let password = Zeroizing::new(password);
    let username = Zeroizing::new(username);
    let (scheme, host, port, fragment) = match info.addr {
        ConnectionAddr::Unix(path) => {
            let mut shown = format!("redis+unix://{}?db={db}", path.display());
            if let Some(user) = username.as_deref() {
                shown.push_str("&user=");
                shown.push_str(user);
            }
            if password.is_some() {
                shown.push_str("&pass=***");
            }
            return shown;
        }
        ConnectionAddr::Tcp(host, port) => ("redis", host, port, ""),
        ConnectionAddr::TcpTls { host, port, insecure, .. } => {
            ("rediss", host, port, if insecure { "#insecure" } else { "" })
        }
    };
    let userinfo = match (username.as_deref(), password.is_some()) {
        (None, false) => String::new(),
        (user, true) => format!("{}:***@", user.unwrap_or("")),
        (Some(user), false) => format!("{user}@"),
    };
    // An IPv6 address, bracketed as in the URL.
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    format!("{scheme}://{userinfo}{host}:{port}/{db}{fragment}")
}

impl RedisConfig {
    /// Defaults for Redis at `url`, sealing tokens under `fleet_key`.
    pub fn new(url: impl Into<String>, fleet_key: &[u8]) -> Self {
        RedisConfig {
            url: Zeroizing::new(url.into()),
            fleet_key: Zeroizing::new(fleet_key.to_vec()),
            encryption_key: None,
            prefix: "credflow".to_owned(),
            lease_ttl: Duration::from_secs(15),
            poll_interval: Duration::from_millis(50),
            max_wait: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
            token_sharing: TokenSharing::Fleet,
            allow_insecure_redis: false,
            #[cfg(feature = "tls")]
            root_ca_pem: None,
            #[cfg(feature = "tls")]
            client_cert_pem: None,
            #[cfg(feature = "tls")]
            client_key_pem: None,
        }
    }

    /// Gives this pod a token and a rate budget of its own, named `pod` (see
    /// [`TokenSharing::PerPod`]: for an API that counts its rate limit per token).
    ///
    /// ```
    /// use credflow_redis::{PodName, RedisConfig, TokenSharing};
    ///
    /// let pod = PodName::new("api-7d9f-x2").unwrap(); // e.g. std::env::var("HOSTNAME")
    /// let config = RedisConfig::new("redis://redis:6379/0", b"fleet key, 16+ bytes").with_token_per_pod(pod);
    /// assert!(matches!(config.token_sharing, TokenSharing::PerPod(_)));
    /// ```
    pub fn with_token_per_pod(mut self, pod: PodName) -> Self {
        self.token_sharing = TokenSharing::PerPod(pod);
        self
    }

    /// Accepts a plain `redis://` URL to a host that is not loopback: see
    /// [`allow_insecure_redis`](Self::allow_insecure_redis). For a network where clear text is
    /// a choice made knowingly (a lab); pair it with
    /// [`with_encryption_key`](Self::with_encryption_key).
    ///
    /// ```
    /// use credflow_redis::{RedisConfig, RedisStore, SetupError};
    ///
    /// let config = RedisConfig::new("redis://redis.lab.invalid:6379/0", b"fleet key, 16+ bytes");
    /// assert!(matches!(RedisStore::new(config.clone()), Err(SetupError::InsecureRedis(_))));
    /// assert!(RedisStore::new(config.with_insecure_redis()).is_ok()); // connects lazily
    /// ```
    pub fn with_insecure_redis(mut self) -> Self {
        self.allow_insecure_redis = true;
        self
    }

    /// Encrypts the token at rest under `key` (32 bytes, the same on every process).
    pub fn with_encryption_key(mut self, mut key: [u8; 32]) -> Self {
        self.encryption_key = Some(Box::new(Zeroizing::new(key)));
        zeroize::Zeroize::zeroize(&mut key);
        self
    }

    /// Trusts only the CA certificates in `pem` (one or more `CERTIFICATE` blocks) for a
    /// `rediss://` server, instead of the public webpki roots: for a Redis whose certificate
    /// an organisation's private CA signed, as in most fleets. The server's certificate must
    /// chain to one of them and name the URL's host (DNS name or IP address).
    ///
    /// Checked by [`RedisStore::new`]: a PEM without a certificate, or with one that does not
    /// parse, or a URL that is not `rediss://`, is a [`SetupError::RootCa`]. A server whose
    /// certificate is not trusted is refused at connection time: the client then works on its
    /// local session (degraded mode), with the reason in its log.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use credflow_redis::{RedisConfig, RedisStore};
    ///
    /// let ca = std::fs::read("/etc/credflow/redis-ca.pem")?;
    /// let config = RedisConfig::new("rediss://credflow:pw@redis.internal:6380/", b"fleet key, 16+ bytes")
    ///     .with_root_ca_pem(ca);
    /// let store = RedisStore::new(config)?;
    /// # let _ = store; Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn with_root_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_ca_pem = Some(pem.into());
        self
    }

    /// Presents the client certificate `cert_pem` (one or more `CERTIFICATE` blocks: the
    /// client's certificate first, then any intermediates) with its private key `key_pem` (one
    /// `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block) to a `rediss://` server that
    /// authenticates its clients (mutual TLS, `tls-auth-clients yes`). The server's certificate
    /// is still checked as without it: against the public webpki roots, or the CA of
    /// [`RedisConfig::with_root_ca_pem`].
    ///
    /// This config's copy of the key is zeroized on drop and never shown by `Debug`; so is the
    /// store's (it keeps this config). The `redis` crate never has the key: the store decodes
    /// it from the PEM for each connection it opens, for rustls, which holds it for that
    /// connection's life, beyond this crate's reach.
    ///
    /// Checked by [`RedisStore::new`]: a certificate PEM without a certificate, a key PEM
    /// without a private key, either one that does not parse, or a URL that is not
    /// `rediss://`, is a [`SetupError::ClientCert`]. A server that refuses the certificate (its
    /// CA does not trust it) or requires one that was not given, and a key that does not match
    /// the certificate, are refused at connection time: the client then works on its local
    /// session (degraded mode), with the reason in its log.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use credflow_redis::{RedisConfig, RedisStore};
    ///
    /// let config = RedisConfig::new("rediss://credflow:pw@redis.internal:6380/", b"fleet key, 16+ bytes")
    ///     .with_root_ca_pem(std::fs::read("/etc/credflow/redis-ca.pem")?)
    ///     .with_client_cert_pem(
    ///         std::fs::read("/etc/credflow/client.pem")?,
    ///         std::fs::read("/etc/credflow/client.key")?,
    ///     );
    /// let store = RedisStore::new(config)?;
    /// # let _ = store; Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn with_client_cert_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_cert_pem = Some(cert_pem.into());
        self.client_key_pem = Some(Zeroizing::new(key_pem.into()));
        self
    }
}

/// Why a [`RedisStore`] could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// The URL does not parse (or names `rediss://` without the `tls` feature).
    Url(redis::RedisError),
    /// A plain `redis://` URL to a host that is not loopback (named here), without
    /// [`RedisConfig::allow_insecure_redis`]: the password and the tokens would cross the
    /// network in clear text.
    InsecureRedis(String),
    /// The fleet key is shorter than 16 bytes.
    FleetKeyTooShort,
    /// A duration out of its bounds, named with them: the lease is zero or longer than
    /// [`MAX_LEASE_TTL`](crate::MAX_LEASE_TTL), the poll interval zero or not shorter than the
    /// lease, or the connect or response timeout shorter than 1 ms or longer than
    /// [`MAX_TIMEOUT`](crate::MAX_TIMEOUT).
    Timing(String),
    /// The root CA given with `RedisConfig::with_root_ca_pem` holds no certificate, or one that
    /// does not parse, or the URL is not `rediss://`.
    RootCa(String),
    /// The client certificate given with `RedisConfig::with_client_cert_pem` holds no
    /// certificate or no private key, or one that does not parse, or only one of the two is
    /// set, or the URL is not `rediss://`.
    ClientCert(String),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Url(e) => write!(f, "Redis URL: {e}"),
            SetupError::InsecureRedis(host) => write!(
                f,
                "redis:// to {host}, which is not loopback, would send the Redis password and \
                 the tokens in clear text: use rediss:// (or a Unix socket), or allow it \
                 explicitly (RedisConfig::allow_insecure_redis)"
            ),
            SetupError::FleetKeyTooShort => write!(
                f,
                "the fleet key must be at least {} bytes",
                credflow_core::snapshot::MIN_KEY_LEN
            ),
            SetupError::Timing(e) => f.write_str(e),
            SetupError::RootCa(e) => write!(f, "root CA for rediss://: {e}"),
            SetupError::ClientCert(e) => write!(f, "client certificate for rediss://: {e}"),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::Url(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The password, as it is written in the URLs below, and as they decode to.
    const SECRET: &str = "hunter2";

    fn shown(url: &str) -> String {
        let shown = format!("{:?}", RedisConfig::new(url, b"0123456789abcdef"));
        assert!(!shown.contains(SECRET) && !shown.contains("hunt"), "{url}: {shown}");
        shown
    }

    /// The encryption key stays where it was put when the config moves (into the store, a
    /// builder, a box): moving it leaves no unwiped copy of the key behind.
    #[test]
    fn moving_the_config_does_not_copy_the_encryption_key() {
        let config =
            RedisConfig::new("redis://127.0.0.1", b"0123456789abcdef").with_encryption_key([7; 32]);
        let at = config.encryption_key.as_deref().map(|key| key.as_ptr());
        let moved = Box::new(config);
        assert_eq!(moved.encryption_key.as_deref().map(|key| key.as_ptr()), at);
        assert_eq!(moved.encryption_key.as_deref().map(|key| **key), Some([7; 32]));
    }

    #[test]
    fn debug_hides_the_password_of_a_tcp_url() {
        for (url, expected) in [
            ("redis://app:hunter2@127.0.0.1:6380/3", "redis://app:***@127.0.0.1:6380/3"),
            ("redis://:hunter2@redis/", "redis://:***@redis:6379/0"),
            ("redis://app:hun%74er2@redis", "redis://app:***@redis:6379/0"),
            ("redis://app:hun@ter2@redis", "redis://app:***@redis:6379/0"),
            ("valkey://app:hunter2@[::1]:7000", "redis://app:***@[::1]:7000/0"),
            ("REDIS://app:hunt\ter2@redis", "redis://app:***@redis:6379/0"),
            ("redis://app@redis", "redis://app@redis:6379/0"),
            ("redis://redis/?pass=hunter2", "redis://redis:6379/0"),
        ] {
            assert!(shown(url).contains(&format!("url: {expected:?}")), "{url}: {}", shown(url));
        }
    }

    #[test]
    fn debug_hides_the_password_of_a_unix_socket_url() {
        for (url, expected) in [
            (
                "redis+unix:///run/redis.sock?pass=hunter2",
                "redis+unix:///run/redis.sock?db=0&pass=***",
            ),
            (
                "unix:///run/redis.sock?user=app&pass=hun%74er2&db=2",
                "redis+unix:///run/redis.sock?db=2&user=app&pass=***",
            ),
            (
                "valkey+unix:///run/redis.sock?pass=x&pass=hunter2",
                "redis+unix:///run/redis.sock?db=0&pass=***",
            ),
            ("redis+unix:///run/redis.sock#hunter2", "redis+unix:///run/redis.sock?db=0"),
        ] {
            assert!(shown(url).contains(&format!("url: {expected:?}")), "{url}: {}", shown(url));
        }
    }

    #[test]
    fn debug_hides_the_password_of_a_tls_url() {
        let url = "rediss://app:hunter2@redis.internal:6380/1";
        let debug = shown(url);
        #[cfg(feature = "tls")]
        assert!(debug.contains(r#"url: "rediss://app:***@redis.internal:6380/1""#), "{debug}");
        // Without the feature the `redis` crate does not take it: shown as not parsing.
        #[cfg(not(feature = "tls"))]
        assert!(debug.contains("does not parse"), "{debug}");
        #[cfg(feature = "tls")]
        assert!(shown(&format!("{url}#insecure")).contains(":6380/1#insecure"));
    }

    /// A URL the `redis` crate refuses is not shown (its text may hold the password anywhere),
    /// and neither the error of the store built from it.
    #[test]
    fn a_url_that_does_not_parse_is_not_shown_nor_in_the_error() {
        for url in [
            "redis://app:hunter2@redis:99999",
            "redis://app:hunter2@redis/not-a-db",
            "redis://app:hunter2@redis/?protocol=4",
            "redis://app:hunter2%ff@redis",
            "redis+unix:///run/redis.sock?pass=hunter2&db=x",
            "nope://app:hunter2@redis",
            "app:hunter2@redis",
        ] {
            assert!(shown(url).contains("(a URL that does not parse)"), "{url}");
            let config = RedisConfig::new(url, b"0123456789abcdef");
            let e = crate::RedisStore::new(config).map(drop).unwrap_err();
            assert!(matches!(e, SetupError::Url(_)), "{url}: {e:?}");
            for text in [e.to_string(), format!("{e:?}")] {
                assert!(!text.contains(SECRET) && !text.contains("hunt"), "{url}: {text}");
            }
        }
    }
}
