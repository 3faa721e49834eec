//! # credflow-redis
//!
//! Fleet mode for [credflow](credflow_reqwest) on Redis: every process that uses the same client
//! id (and environment) shares **one token** and **one rate budget**, because the platform counts
//! both per client id, and a burst of token requests from many pods is itself rate-limited.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use credflow_redis::{RedisConfig, RedisStore};
//!
//! let fleet_key = std::env::var("CREDFLOW_FLEET_KEY")?; // the same on every pod, 16+ bytes
//! let store = RedisStore::new(RedisConfig::new("redis://credflow:pw@redis:6379/0", fleet_key.as_bytes()))?;
//! let config = credflow_reqwest::Config::from_env()?.with_shared(Arc::new(store));
//! let client = credflow_reqwest::Client::new(config)?; // the rest of the application is unchanged
//! # let _ = client; Ok(()) }
//! ```
//!
//! ## What is shared, and how
//!
//! | key | holds | written by |
//! |---|---|---|
//! | `{prefix}:{<client id>\|<token url>}:token` | the token, sealed as a record (HMAC-SHA256 under the fleet key, bound to the credential's fingerprint, with its absolute expiry and a stamp that orders the records) and optionally encrypted (XChaCha20-Poly1305); expires with the token | the lease holder, in one Lua script that checks its fence |
//! | `…:lease` | the refresh lease: a random 128-bit fencing value, `SET NX PX` | one process at a time |
//! | `…:rate` | the fleet's rate-limit window: limit, remaining, reset, spacing state, 429 hold (`blocked_until`) | every process, atomically in Lua |
//! | `…:slots` | the send slots admission reserved that are not yet due (a sorted set by instant) | every process, atomically in Lua |
//!
//! (The braces are a Redis Cluster hash tag: the four keys of a client live in one slot.)
//!
//! - **Token, single flight across the fleet.** When a process's session says a refresh is due,
//!   it reads the token key. A usable token other than the one it holds is taken as is (cached
//!   locally until its own jittered refresh point). Otherwise it takes the lease, atomically and
//!   only if the token is still the one it judged unusable; the holder sends the token request
//!   and publishes the token and releases the lease in one script that checks the fencing value
//!   (a holder whose lease expired publishes nothing). The others poll every
//!   [`RedisConfig::poll_interval`] for the new token instead of fetching their own; if the
//!   holder dies (killed), its lease expires after [`RedisConfig::lease_ttl`] and the next
//!   poller takes over. A holder that stops in-process (its last `Client` dropped, or
//!   `Client::shutdown`) releases the lease at once (best effort on drop, awaited by
//!   `shutdown`). A failed refresh keeps the lease until it expires: the fleet's back-off. A lease
//!   taken without the taker knowing (the answer to the acquire script lost to a timeout or a
//!   reset connection, or the call dropped by the client's timeout) is released at once, on
//!   the tokio runtime, so the fleet does not wait `lease_ttl` for nobody. A process
//!   with no token that may not request one yet (its breaker cools down after an outage) reads
//!   the token key once a second (`SharedStore::current`), so it is back as soon as any
//!   process has a token.
//! - **Records only go forward.** Each record carries a stamp under its seal: the publisher's
//!   wall clock in milliseconds, raised past every stamp it took (so it grows across
//!   publishers whose clocks disagree). Each process remembers the newest stamp it took per
//!   token key and refuses an older record, as the core decides
//!   ([`credflow_core::snapshot::unseal_record`]): it logs a warning once and takes the lease
//!   to publish a newer token. The publish script does not compare stamps: Redis cannot check a
//!   seal, and only the lease holder publishes, under its fence, a record stamped past the one
//!   it replaces.
//! - **Client secrets never go to Redis.** Only tokens (sealed) and rate-limit counts do.
//! - **Rate budget.** Every response's rate-limit headers update the shared window (the latest
//!   observation from any pod, reconciled with what the fleet already sent, as the core pacer
//!   does), a 429 holds the whole fleet back for its `Retry-After`, at most the retry policy's
//!   `max_wait` ([`FleetScope::max_hold`](credflow_reqwest::shared::FleetScope::max_hold): a
//!   process honours another's 429 no longer than a server's own answer; a longer limit each
//!   process learns from the server), the key outliving the hold and the window by a minute. A
//!   longer hold found in the key (which no process with the same configuration writes) is cut
//!   to `max_wait` in Redis on first sight, so that it ends, and logged. Each attempt is
//!   admitted by one Lua script with the
//!   pacer's priority classes, burst and critical reserve. When the script's answer is a wait
//!   for the spacing or the reserve inside the current window, it reserves that slot (counted
//!   now, sent then, without asking again: one call per request), unless the slot lies beyond
//!   what the caller will wait, behind a 429's hold, or in the last second before the reset.
//!   Slots not yet due are taken off the server's `remaining` when a response reports it.
//! - **Degraded mode** is the client's (see [`credflow_reqwest::shared`]): any error here makes
//!   the process fall back to its local session, logged once, and rejoin when Redis answers.
//!   Operations are bounded by [`RedisConfig::response_timeout`].
//!
//! ## What a writer of Redis can and cannot do
//!
//! Redis is trusted with availability, not with tokens: the fleet key (and the encryption key)
//! never go there. Someone who can write the keys `{prefix}:*` but has neither key:
//!
//! - **cannot forge** a token record (HMAC-SHA256 under the fleet key; encrypted, the record is
//!   also bound to its key's name), nor make a process use a token sealed for another
//!   credential, an expired one, or a record older than one that process already took;
//! - **can replay** an older record, authentic and unexpired: every process that took a newer
//!   one refuses it (and the fleet fetches a new token, one request); a process that took none
//!   since it started cannot tell and takes it (at worst a token the server has since revoked:
//!   its first 401 makes that process refresh);
//! - **can delete** keys: the fleet refreshes (one lease, one token request) and forgets its
//!   shared window; each process's own session still honours every 429 it is answered;
//! - **can block**: hold the lease (processes wait [`RedisConfig::max_wait`], then fetch alone),
//!   write a 429 hold (each write holds the fleet at most `max_wait`, cut and logged), write a
//!   spent window with a far reset (requests fail fast naming the fleet's rate state, with each
//!   process's one probe per `max_wait`), or break a key's type (the scripts fail, and the
//!   processes go to degraded mode on their local sessions);
//! - **can read** tokens until they expire unless they are encrypted
//!   ([`RedisConfig::with_encryption_key`]), and the rate-limit counts.
//!
//! Whatever Redis holds, each process never waits past a request's deadline or longer than
//! `max_wait` on a 429 hold, never waits on Redis longer than a bounded call, and never sends
//! its client secret anywhere but the token endpoint.
//!
//! ## Existing Redis: TLS and ACL users
//!
//! - `rediss://` URLs need the `tls` feature. The server's certificate is checked against the
//!   public webpki roots, or only against the operator's CA with
//!   `RedisConfig::with_root_ca_pem` (feature `tls`; a private CA, as most fleets have). A
//!   server that authenticates its clients (mutual TLS, `tls-auth-clients yes`) gets the
//!   client certificate and key of `RedisConfig::with_client_cert_pem` (feature `tls`; the
//!   key is zeroized on drop and never shown by `Debug`).
//! - ACL users go in the URL (`redis://user:pass@host:6379/`) and need the commands of
//!   [`ACL_COMMANDS`] on `{prefix}:*`: `GET SET DEL PTTL PEXPIRE HMGET HSET ZADD
//!   ZREMRANGEBYSCORE ZCARD TIME EVALSHA SCRIPT|LOAD` (no `EVAL`: scripts run by hash, loaded
//!   once), plus `SELECT` for a database other than 0. The test suite runs the fleet as such a user with the default user
//!   disabled, and shows each of these is needed.
//! - A wrong password, a missing permission, an untrusted server certificate, or a client
//!   certificate missing, refused by the server or not matching its key puts the client in
//!   degraded mode at once, with the cause and the fix in its log line.

// docs.rs (nightly, `--cfg docsrs`): mark each item a feature gates with that feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Longest span handed to the Lua scripts, in milliseconds (7 days): Lua numbers are doubles,
/// exact only to 2^53, and a server's absurd `Retry-After` must hold the fleet back, not
/// overflow into "send now".
const MAX_SCRIPT_MS: u64 = 7 * 24 * 3600 * 1000;

fn clamp_ms(ms: u64) -> u64 {
    ms.min(MAX_SCRIPT_MS)
}

mod at_rest;
mod errors;
// Public only to the fuzz targets (feature `__fuzzing`, not part of the API).
#[cfg(feature = "__fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod replies;
mod scripts;

// The README is the crates.io page: its example compiles as a doctest, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use credflow_core::UnixTime;
use credflow_core::ratelimit::RateLimitSnapshot;
use credflow_core::secret::Fingerprint;
use credflow_core::snapshot::{Stamp, UnsealError};
use credflow_reqwest::Priority;
use credflow_reqwest::shared::{
    Admission, BoxFuture, FleetScope, Lease, Refresh, SharedStore, SharedToken, StoreError,
};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;
use tracing::{debug, warn};
use zeroize::Zeroizing;

use crate::at_rest::{Keys, OpenError};
use crate::errors::unavailable;
use crate::replies::{Acquired, acquired, admission, hold_left};

/// The commands a Redis ACL user needs, on the keys `{prefix}:*` (`credflow:*` by default):
/// `GET` directly, `EVALSHA` and `SCRIPT LOAD` for the scripts, and what the scripts call. Add
/// `SELECT` when the URL names a database other than 0. For example:
///
/// ```text
/// ACL SETUSER credflow on >secret ~credflow:* resetchannels -@all +get +set +del +pttl +pexpire +hmget +hset +zadd +zremrangebyscore +zcard +time +evalsha +script|load
/// ```
///
/// (The client also sends `CLIENT SETINFO` when it connects and ignores its refusal.)
pub const ACL_COMMANDS: [&str; 13] = [
    "GET",
    "SET",
    "DEL",
    "PTTL",
    "PEXPIRE",
    "HMGET",
    "HSET",
    "ZADD",
    "ZREMRANGEBYSCORE",
    "ZCARD",
    "TIME",
    "EVALSHA",
    "SCRIPT|LOAD",
];

/// How a [`RedisStore`] connects and coordinates. Build it with [`RedisConfig::new`], then
/// adjust the public fields.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]` or `rediss://…` (feature `tls`).
    pub url: String,
    /// HMAC key that seals the token at rest (at least 16 bytes; the same on every process).
    pub fleet_key: Zeroizing<Vec<u8>>,
    /// When set, the token is also encrypted at rest (XChaCha20-Poly1305).
    pub encryption_key: Option<Zeroizing<[u8; 32]>>,
    /// Prefix of every key (default `credflow`).
    pub prefix: String,
    /// How long a refresh lease lasts if its holder never publishes (default 15 s: longer than
    /// a token request, short enough for another pod to take over soon).
    pub lease_ttl: Duration,
    /// How often a pod waiting for another's refresh looks for the new token (default 50 ms).
    pub poll_interval: Duration,
    /// Longest a pod waits for others' refreshes before fetching on its own (default 20 s:
    /// longer than the lease, so a dead holder is taken over first, and shorter than the
    /// client's `token_wait`, 30 s by default, which bounds the whole call: a store still
    /// waiting when the client gives up on it counts as unreachable, and the client degrades
    /// instead of fetching alone).
    pub max_wait: Duration,
    /// Connection timeout (default 1 s).
    pub connect_timeout: Duration,
    /// Timeout of one command (default 500 ms).
    pub response_timeout: Duration,
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
            .field("max_wait", &self.max_wait);
        #[cfg(feature = "tls")]
        f.field("private_ca", &self.root_ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some());
        f.finish_non_exhaustive()
    }
}

/// `url` without its password.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl RedisConfig {
    /// Defaults for Redis at `url`, sealing tokens under `fleet_key`.
    pub fn new(url: impl Into<String>, fleet_key: &[u8]) -> Self {
        RedisConfig {
            url: url.into(),
            fleet_key: Zeroizing::new(fleet_key.to_vec()),
            encryption_key: None,
            prefix: "credflow".to_owned(),
            lease_ttl: Duration::from_secs(15),
            poll_interval: Duration::from_millis(50),
            max_wait: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
            #[cfg(feature = "tls")]
            root_ca_pem: None,
            #[cfg(feature = "tls")]
            client_cert_pem: None,
            #[cfg(feature = "tls")]
            client_key_pem: None,
        }
    }

    /// Encrypts the token at rest under `key` (32 bytes, the same on every process).
    pub fn with_encryption_key(mut self, key: [u8; 32]) -> Self {
        self.encryption_key = Some(Zeroizing::new(key));
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
    /// This config's copy of the key is zeroized on drop and never shown by `Debug`. The redis
    /// crate takes the PEM by value when the store is built (and frees that copy without
    /// wiping it), then keeps the decoded key, which it and rustls use for each connection, for
    /// as long as the store lives: out of this crate's reach.
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
    /// The fleet key is shorter than 16 bytes.
    FleetKeyTooShort,
    /// The lease is zero, or the poll interval is zero or not shorter than the lease.
    Timing,
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
            SetupError::FleetKeyTooShort => write!(
                f,
                "the fleet key must be at least {} bytes",
                credflow_core::snapshot::MIN_KEY_LEN
            ),
            SetupError::Timing => {
                f.write_str("lease_ttl must be positive and poll_interval shorter than it")
            }
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

/// A [`SharedStore`] on Redis. One per process (it holds one multiplexed, self-reconnecting
/// connection); connecting is lazy, so a process starts even while Redis is down.
pub struct RedisStore {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    config: RedisConfig,
    keys: Keys,
    /// Per token key: the newest record stamp this process took (it refuses older ones), and
    /// the last older one it refused (said once, not on every poll).
    newest: Mutex<HashMap<String, Newest>>,
    acquire: Script,
    publish: Script,
    release: Script,
    admit: Script,
    hold: Script,
    observe: Script,
    rate_limited: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The Redis client for `config`: with the operator's root CA and client certificate when
/// given.
fn client(config: &RedisConfig) -> Result<redis::Client, SetupError> {
    #[cfg(feature = "tls")]
    if let Some(client) = tls_client(config)? {
        return Ok(client);
    }
    redis::Client::open(config.url.as_str()).map_err(SetupError::Url)
}

/// The `rediss://` client with the operator's root CA and/or client certificate, each checked
/// first; `None` when neither is given (the URL alone says how to connect).
#[cfg(feature = "tls")]
fn tls_client(config: &RedisConfig) -> Result<Option<redis::Client>, SetupError> {
    use redis::IntoConnectionInfo;
    let client_cert = match (&config.client_cert_pem, &config.client_key_pem) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((cert, key)),
        (Some(_), None) => {
            return Err(SetupError::ClientCert(
                "a client certificate without its private key; set both with \
                 RedisConfig::with_client_cert_pem"
                    .to_owned(),
            ));
        }
        (None, Some(_)) => {
            return Err(SetupError::ClientCert(
                "a client private key without its certificate; set both with \
                 RedisConfig::with_client_cert_pem"
                    .to_owned(),
            ));
        }
    };
    if config.root_ca_pem.is_none() && client_cert.is_none() {
        return Ok(None);
    }
    let info = config.url.as_str().into_connection_info().map_err(SetupError::Url)?;
    if !matches!(info.addr, redis::ConnectionAddr::TcpTls { .. }) {
        return Err(if config.root_ca_pem.is_some() {
            SetupError::RootCa("a root CA needs a rediss:// URL".to_owned())
        } else {
            SetupError::ClientCert("a client certificate needs a rediss:// URL".to_owned())
        });
    }
    if let Some(pem) = &config.root_ca_pem {
        check_certificates(pem).map_err(|e| SetupError::RootCa(format!("the PEM {e}")))?;
    }
    let client_tls = match client_cert {
        Some((cert, key)) => {
            check_certificates(cert)
                .map_err(|e| SetupError::ClientCert(format!("the certificate PEM {e}")))?;
            check_private_key(key).map_err(SetupError::ClientCert)?;
            Some(redis::ClientTlsConfig { client_cert: cert.clone(), client_key: key.to_vec() })
        }
        None => None,
    };
    let with_client_cert = client_tls.is_some();
    let certificates = redis::TlsCertificates { client_tls, root_cert: config.root_ca_pem.clone() };
    redis::Client::build_with_tls(info, certificates).map(Some).map_err(|e| {
        if with_client_cert {
            SetupError::ClientCert(e.to_string())
        } else {
            SetupError::RootCa(e.to_string())
        }
    })
}

/// `Ok` if `pem` holds at least one `CERTIFICATE` block and every one parses; otherwise what is
/// wrong, to follow "the PEM".
#[cfg(feature = "tls")]
fn check_certificates(pem: &[u8]) -> Result<(), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut count = 0usize;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| format!("does not parse: {e}"))?;
        count = count.saturating_add(1);
    }
    if count == 0 {
        return Err("holds no CERTIFICATE block".to_owned());
    }
    Ok(())
}

/// `Ok` if `pem` holds a private key rustls reads (PKCS#8, PKCS#1 RSA or SEC1 EC); the decoded
/// key is zeroized at once.
#[cfg(feature = "tls")]
fn check_private_key(pem: &[u8]) -> Result<(), String> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::{Error, PemObject};
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => {
            drop(Zeroizing::new(key));
            Ok(())
        }
        Err(Error::NoItemsFound) => Err("the key PEM holds no PRIVATE KEY, RSA PRIVATE KEY or \
                                         EC PRIVATE KEY block"
            .to_owned()),
        Err(e) => Err(format!("the key PEM does not parse: {e}")),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn wall_now() -> UnixTime {
    UnixTime::from_secs(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// The wall clock in milliseconds since the Unix epoch (the stamp of a record sealed now).
fn wall_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, millis)
}

/// What one process took from one token key.
#[derive(Clone, Copy, Debug, Default)]
struct Newest {
    /// The newest record stamp taken ([`Stamp::ZERO`]: none yet).
    taken: Stamp,
    /// The last older record refused, if any.
    refused: Option<Stamp>,
}

/// Says so when a script found the fleet's 429 hold beyond `max_hold` and cut it: `reached` ms
/// from now it went (0 when it did not). No process with this configuration writes that.
fn report_cut_hold(rate_key: &str, reached: i64, max_hold: Duration) {
    if reached <= 0 {
        return;
    }
    let reached = Duration::from_millis(u64::try_from(reached).unwrap_or(0));
    warn!(
        key = rate_key,
        ?reached,
        ?max_hold,
        "the fleet's shared rate state held every pod back for longer than a pod honours a \
         server's Retry-After (max_wait): cut to it. Pods with this configuration never write \
         that: look for one with a longer max_wait, or another writer of this key"
    );
}

impl RedisStore {
    /// A store for Redis as `config` says. Does not connect yet.
    pub fn new(config: RedisConfig) -> Result<Self, SetupError> {
        if config.fleet_key.len() < credflow_core::snapshot::MIN_KEY_LEN {
            return Err(SetupError::FleetKeyTooShort);
        }
        if config.lease_ttl.is_zero()
            || config.poll_interval.is_zero()
            || config.poll_interval >= config.lease_ttl
        {
            return Err(SetupError::Timing);
        }
        let client = client(&config)?;
        let keys =
            Keys { fleet: config.fleet_key.clone(), encryption: config.encryption_key.clone() };
        Ok(RedisStore {
            client,
            connection: OnceCell::new(),
            keys,
            acquire: Script::new(scripts::ACQUIRE),
            publish: Script::new(scripts::PUBLISH),
            release: Script::new(scripts::RELEASE),
            admit: Script::new(&scripts::admit()),
            observe: Script::new(&scripts::observe()),
            rate_limited: Script::new(&scripts::rate_limited()),
            hold: Script::new(&scripts::hold()),
            newest: Mutex::new(HashMap::new()),
            config,
        })
    }

    /// The four key names of `scope`: token, lease, rate, slots.
    pub fn key_names(&self, scope: &FleetScope) -> [String; 4] {
        let base = format!("{}:{{{}|{}}}", self.config.prefix, scope.client_id, scope.token_url);
        ["token", "lease", "rate", "slots"].map(|name| format!("{base}:{name}"))
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let manager = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(self.config.connect_timeout)
                    .set_response_timeout(self.config.response_timeout)
                    .set_number_of_retries(1)
                    .set_max_delay(200);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .map_err(unavailable)?;
        Ok(manager.clone())
    }

    /// The fleet token if it opens and is not `stale`. A record older than the newest this
    /// process took (written back over it) does not open; one that opens becomes the newest.
    fn usable(
        &self,
        scope: &FleetScope,
        aad: &str,
        value: &[u8],
        stale: Option<Fingerprint>,
    ) -> Option<SharedToken> {
        if value.is_empty() {
            return None;
        }
        let newest = self.newest(aad).taken;
        match at_rest::open(&self.keys, aad.as_bytes(), value, wall_now(), scope.credential, newest)
        {
            Ok(record) => {
                self.took(aad, record.stamp);
                (Some(record.token.fingerprint()) != stale).then(|| SharedToken {
                    token: Zeroizing::new(record.token.as_str().to_owned()),
                    expires_at: record.expires_at,
                })
            }
            Err(OpenError::Unseal(UnsealError::Replayed { stamp, newest })) => {
                let mut memory = self.lock_newest();
                let entry = memory.entry(aad.to_owned()).or_default();
                if entry.refused != Some(stamp) {
                    entry.refused = Some(stamp);
                    warn!(
                        key = aad,
                        %stamp,
                        %newest,
                        "the fleet's token record in Redis is older than one this process already \
                         took: an older record was written back (replayed by a writer of Redis, or \
                         a backup restored); refused, and a new token is fetched for the fleet"
                    );
                }
                None
            }
            Err(e) => {
                debug!(error = ?e, "fleet token not usable");
                None
            }
        }
    }

    fn lock_newest(&self) -> std::sync::MutexGuard<'_, HashMap<String, Newest>> {
        self.newest.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What this process took under `token_key`.
    fn newest(&self, token_key: &str) -> Newest {
        self.lock_newest().get(token_key).copied().unwrap_or_default()
    }

    /// Remembers `stamp` as taken under `token_key`, if it is the newest.
    fn took(&self, token_key: &str, stamp: Stamp) {
        let mut memory = self.lock_newest();
        let entry = memory.entry(token_key.to_owned()).or_default();
        entry.taken = entry.taken.max(stamp);
    }

    async fn current_inner(
        &self,
        scope: &FleetScope,
        stale: Option<Fingerprint>,
    ) -> Result<Option<SharedToken>, StoreError> {
        let [token_key, ..] = self.key_names(scope);
        let mut con = self.connection().await?;
        let value: Option<Vec<u8>> =
            redis::cmd("GET").arg(&token_key).query_async(&mut con).await.map_err(unavailable)?;
        let value = Zeroizing::new(value.unwrap_or_default());
        Ok(self.usable(scope, &token_key, &value, stale))
    }

    async fn refresh_inner(
        &self,
        scope: &FleetScope,
        stale: Option<Fingerprint>,
    ) -> Result<Refresh, StoreError> {
        let [token_key, lease_key, ..] = self.key_names(scope);
        let mut con = self.connection().await?;
        let give_up = tokio::time::Instant::now() + self.config.max_wait;
        loop {
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&token_key)
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            let value = Zeroizing::new(value.unwrap_or_default());
            if let Some(token) = self.usable(scope, &token_key, &value, stale) {
                return Ok(Refresh::Token(token));
            }
            let mut fence = [0u8; 16];
            getrandom::fill(&mut fence)
                .map_err(|e| StoreError::Refused(format!("no randomness for the fence: {e}")))?;
            // From here until Redis answers, the lease may be ours without our knowing it (a
            // lost reply, or this future dropped by the caller's timeout): unless disarmed,
            // the guard releases the fence, so the fleet does not wait `lease_ttl` for nobody.
            let guard = FenceGuard::arm(self, con.clone(), &lease_key, fence);
            let (code, pttl): (i64, i64) = self
                .acquire
                .key(&token_key)
                .key(&lease_key)
                .arg(&value[..])
                .arg(&fence[..])
                .arg(millis(self.config.lease_ttl))
                .invoke_async(&mut con)
                .await
                .map_err(unavailable)?;
            // An answer says who holds the lease: ours (returned to the caller), or not taken
            // under this fence (nothing to release).
            guard.disarm();
            let lease_left = match acquired(code, pttl) {
                Acquired::Changed => continue,
                Acquired::Taken => return Ok(Refresh::Lease(Lease::new(fence))),
                Acquired::Held(left) => left.unwrap_or(self.config.poll_interval),
            };
            let now = tokio::time::Instant::now();
            if now >= give_up {
                return Err(StoreError::Busy);
            }
            let nap = self.config.poll_interval.min(lease_left).min(give_up - now);
            tokio::time::sleep(nap).await;
        }
    }

    async fn publish_inner(
        &self,
        scope: &FleetScope,
        lease: Lease,
        token: &SharedToken,
    ) -> Result<bool, StoreError> {
        let [token_key, lease_key, ..] = self.key_names(scope);
        let now = wall_now();
        let ttl = token.expires_at.saturating_duration_since(now);
        if ttl.is_zero() {
            return Ok(false);
        }
        // After every record this process took, the one it replaces included (read before the
        // lease was taken), and on the wall clock otherwise.
        let stamp = Stamp::after(self.newest(&token_key).taken, wall_now_ms());
        let value = at_rest::close(
            &self.keys,
            token_key.as_bytes(),
            &token.token,
            token.expires_at,
            scope.credential,
            stamp,
        )
        .map_err(|e| StoreError::Refused(format!("cannot seal the token: {e:?}")))?;
        let mut con = self.connection().await?;
        let published: i64 = self
            .publish
            .key(&token_key)
            .key(&lease_key)
            .arg(&lease.fence()[..])
            .arg(value)
            .arg(ttl.as_millis())
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        if published == 1 {
            self.took(&token_key, stamp);
        }
        Ok(published == 1)
    }

    async fn release_inner(&self, scope: &FleetScope, lease: Lease) -> Result<(), StoreError> {
        let [_, lease_key, ..] = self.key_names(scope);
        let mut con = self.connection().await?;
        let _: i64 = self
            .release
            .key(&lease_key)
            .arg(&lease.fence()[..])
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn admit_inner(
        &self,
        scope: &FleetScope,
        priority: Priority,
        within: Duration,
    ) -> Result<Admission, StoreError> {
        let [_, _, rate_key, slots_key] = self.key_names(scope);
        let class: u8 = match priority {
            Priority::Critical => 0,
            Priority::Normal => 1,
            Priority::Background => 2,
        };
        let p = scope.pacer;
        let mut con = self.connection().await?;
        let (counted, wait, held, reached): (i64, i64, i64, i64) = self
            .admit
            .key(&rate_key)
            .key(&slots_key)
            .arg(class)
            .arg(p.critical_reserve_permille)
            .arg(p.background_floor_permille)
            .arg(p.burst)
            .arg(p.burst_permille)
            .arg(clamp_ms(millis(within)))
            .arg(clamp_ms(millis(scope.max_hold)))
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        report_cut_hold(&rate_key, reached, scope.max_hold);
        admission(counted, wait, held)
    }

    async fn observe_inner(
        &self,
        scope: &FleetScope,
        snapshot: RateLimitSnapshot,
    ) -> Result<(), StoreError> {
        let Some(remaining) = snapshot.remaining else {
            return Ok(());
        };
        let [_, _, rate_key, slots_key] = self.key_names(scope);
        let known = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let mut con = self.connection().await?;
        let _: i64 = self
            .observe
            .key(&rate_key)
            .key(&slots_key)
            .arg(known(Some(remaining)))
            .arg(known(snapshot.limit))
            .arg(known(snapshot.reset_after.map(|d| clamp_ms(d.as_millis()))))
            .arg(known(snapshot.window.map(|d| clamp_ms(d.as_millis()))))
            .arg(scope.pacer.default_window.as_millis())
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn hold_inner(&self, scope: &FleetScope) -> Result<Option<Duration>, StoreError> {
        let [_, _, rate_key, _] = self.key_names(scope);
        let mut con = self.connection().await?;
        let (left, reached): (i64, i64) = self
            .hold
            .key(&rate_key)
            .arg(clamp_ms(millis(scope.max_hold)))
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        report_cut_hold(&rate_key, reached, scope.max_hold);
        Ok(hold_left(left))
    }

    async fn rate_limited_inner(
        &self,
        scope: &FleetScope,
        retry_after: Option<Duration>,
    ) -> Result<(), StoreError> {
        let [_, _, rate_key, slots_key] = self.key_names(scope);
        let after = retry_after.map_or(-1, |d| {
            let ms = clamp_ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            i64::try_from(ms).unwrap_or(i64::MAX)
        });
        let mut con = self.connection().await?;
        let reached: i64 = self
            .rate_limited
            .key(&rate_key)
            .key(&slots_key)
            .arg(after)
            .arg(clamp_ms(millis(scope.max_hold)))
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        report_cut_hold(&rate_key, reached, scope.max_hold);
        Ok(())
    }
}

/// A fence sent in ACQUIRE whose answer has not arrived. Dropped armed (an error, or the
/// refresh future dropped mid-call), it releases the fence on the current tokio runtime, bounded
/// by [`RedisConfig::response_timeout`]: RELEASE is compare-and-delete, so this is harmless when
/// the lease was not taken, and frees it at once when it was.
struct FenceGuard {
    pending: Option<PendingRelease>,
}

/// What [`FenceGuard`] needs to release its fence from a spawned task.
struct PendingRelease {
    con: ConnectionManager,
    release: Script,
    lease_key: String,
    fence: [u8; 16],
    timeout: Duration,
}

impl FenceGuard {
    fn arm(store: &RedisStore, con: ConnectionManager, lease_key: &str, fence: [u8; 16]) -> Self {
        FenceGuard {
            pending: Some(PendingRelease {
                con,
                release: store.release.clone(),
                lease_key: lease_key.to_owned(),
                fence,
                timeout: store.config.response_timeout,
            }),
        }
    }

    /// Redis answered: nothing to release.
    fn disarm(mut self) {
        self.pending = None;
    }
}

impl Drop for FenceGuard {
    fn drop(&mut self) {
        let Some(PendingRelease { mut con, release, lease_key, fence, timeout }) =
            self.pending.take()
        else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            debug!("no tokio runtime to release an unanswered lease; it expires after lease_ttl");
            return;
        };
        runtime.spawn(async move {
            let mut invocation = release.key(&lease_key);
            let call = invocation.arg(&fence[..]).invoke_async::<i64>(&mut con);
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(released)) => debug!(released, "unanswered lease released"),
                Ok(Err(e)) => debug!(error = %e, "unanswered lease not released"),
                Err(_) => debug!("unanswered lease not released in time"),
            }
        });
    }
}

impl SharedStore for RedisStore {
    fn refresh<'a>(
        &'a self,
        scope: &'a FleetScope,
        stale: Option<Fingerprint>,
    ) -> BoxFuture<'a, Result<Refresh, StoreError>> {
        Box::pin(self.refresh_inner(scope, stale))
    }

    fn publish<'a>(
        &'a self,
        scope: &'a FleetScope,
        lease: Lease,
        token: &'a SharedToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.publish_inner(scope, lease, token))
    }

    fn current<'a>(
        &'a self,
        scope: &'a FleetScope,
        stale: Option<Fingerprint>,
    ) -> BoxFuture<'a, Result<Option<SharedToken>, StoreError>> {
        Box::pin(self.current_inner(scope, stale))
    }

    fn release<'a>(
        &'a self,
        scope: &'a FleetScope,
        lease: Lease,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.release_inner(scope, lease))
    }

    fn admit<'a>(
        &'a self,
        scope: &'a FleetScope,
        priority: Priority,
        within: Duration,
    ) -> BoxFuture<'a, Result<Admission, StoreError>> {
        Box::pin(self.admit_inner(scope, priority, within))
    }

    fn observe<'a>(
        &'a self,
        scope: &'a FleetScope,
        snapshot: RateLimitSnapshot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.observe_inner(scope, snapshot))
    }

    fn rate_limited<'a>(
        &'a self,
        scope: &'a FleetScope,
        retry_after: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.rate_limited_inner(scope, retry_after))
    }

    fn hold<'a>(
        &'a self,
        scope: &'a FleetScope,
    ) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        Box::pin(self.hold_inner(scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated_and_its_debug_hides_the_password() {
        let config = RedisConfig::new("redis://app:hunter2@127.0.0.1:1/0", b"0123456789abcdef");
        let shown = format!("{config:?}");
        assert!(shown.contains("app:***@127.0.0.1") && !shown.contains("hunter2"), "{shown}");
        assert!(matches!(
            RedisStore::new(RedisConfig::new("redis://127.0.0.1:1", b"short")),
            Err(SetupError::FleetKeyTooShort)
        ));
        let mut config = RedisConfig::new("redis://127.0.0.1:1", b"0123456789abcdef");
        config.poll_interval = config.lease_ttl;
        assert!(matches!(RedisStore::new(config), Err(SetupError::Timing)));
        assert!(matches!(
            RedisStore::new(RedisConfig::new("nope://", b"0123456789abcdef")),
            Err(SetupError::Url(_))
        ));
    }
}
