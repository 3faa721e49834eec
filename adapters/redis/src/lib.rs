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
//! let store = RedisStore::new(RedisConfig::new("rediss://credflow:pw@redis:6380/0", fleet_key.as_bytes()))?;
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
//! That is [`TokenSharing::Fleet`], the default. Where the API counts its rate limit per token
//! rather than per client id, [`TokenSharing::PerPod`] gives each pod its own token, rate and
//! slots keys (`…:pod:<name>:token`, …) and so its own token's budget, the lease staying the
//! fleet's so that refreshes take turns; [`TokenSharing`] has the trade-off.
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
//!   Operations are bounded by [`RedisConfig::response_timeout`]; a connection that leaves two
//!   commands in a row unanswered past it (a peer gone silent, with no reset to tell) is let
//!   go, and the next call connects afresh; so is one whose server answers that it is a
//!   replica (`READONLY`, `MASTERDOWN`: after a failover, the demoted primary; before Redis
//!   7.0, a script's refused write comes as an `ERR Error running script` quoting `-READONLY`,
//!   recognised too), so that the next call reaches the primary the URL's host now leads to.
//!   One store may serve several tokio runtimes: a connection attempt runs on the runtime of
//!   the call that began it, and a call on another runtime waits for it at most
//!   [`RedisConfig::connect_timeout`] before beginning its own (that runtime may be alive but
//!   not run, a current-thread runtime between two `block_on`s).
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
//!   process's one probe per `max_wait`), leave the window spent for ever (a request asks
//!   again at most once a second after a few quicker tries, and fails naming the fleet's
//!   budget after `max_wait`), or break a key's type (the scripts fail, and the processes go to
//!   degraded mode on their local sessions);
//! - **can read** tokens until they expire unless they are encrypted
//!   ([`RedisConfig::with_encryption_key`]), and the rate-limit counts.
//!
//! Whatever Redis holds, each process never waits past a request's deadline or longer than
//! `max_wait` on a 429 hold, never waits on Redis longer than a bounded call, and never sends
//! its client secret anywhere but the token endpoint.
//!
//! The Redis *server* (or whoever sits between it and a `redis://` client, or whatever the URL
//! points at instead) is trusted more, but not with the process's memory: each reply is read
//! only up to a bound, [`MAX_REPLY_LEN`] (64 KiB, eight times the longest token value credflow
//! reads; a script answers a few integers), at most 256 elements in an array, set or map and 8
//! levels of nesting. A peer that announces or sends more (a bulk string announced at a
//! gigabyte, an array of a billion elements, a line without end) has the connection dropped
//! there, before the bytes are buffered: the call fails at once as for a reset connection, the
//! process goes to degraded mode, and the next call connects again. Within the bound, what the
//! server answers is read as the scripts' answers, within their contracts, and an error text
//! it sends reaches the logs as it is. A plain `redis://` URL is accepted to loopback only
//! (or with [`RedisConfig::allow_insecure_redis`]): to any other host the password and the
//! tokens would cross the network in clear text. Use `rediss://` or a Unix socket.
//!
//! ## Existing Redis: TLS and ACL users
//!
//! - `rediss://` URLs need the `tls` feature. The server's certificate is checked against the
//!   public webpki roots, or only against the operator's CA with
//!   `RedisConfig::with_root_ca_pem` (feature `tls`; a private CA, as most fleets have). A
//!   server that authenticates its clients (mutual TLS, `tls-auth-clients yes`) gets the
//!   client certificate and key of `RedisConfig::with_client_cert_pem` (feature `tls`; the
//!   key is zeroized on drop and never shown by `Debug`).
//!   Each connection's rustls configuration is built here (this crate opens the connections,
//!   to read them through the reply bound), on the process's default crypto provider if the
//!   application installed one (`CryptoProvider::install_default`, before the first
//!   `rediss://` connection), else on `ring`, the provider this crate compiles in, named
//!   explicitly: this adapter installs no process-wide default, and does not panic where
//!   rustls was built with several providers and none was installed. A provider that cannot
//!   make a TLS client configuration fails the connection (degraded mode, the reason logged).
//! - ACL users go in the URL (`rediss://user:pass@host:6380/`) and need the commands of
//!   [`ACL_COMMANDS`] on `{prefix}:*`: `GET GETRANGE SET DEL PTTL PEXPIRE HMGET HSET ZADD
//!   ZREMRANGEBYSCORE ZCARD TIME EVALSHA SCRIPT|LOAD` (no `EVAL`: scripts run by hash, loaded
//!   once), plus `SELECT` for a database other than 0. The test suite runs the fleet as such a user with the default user
//!   disabled, and shows each of these is needed.
//! - The URL ([`RedisConfig::url`]) and the store's copies of the user and password read from
//!   it are zeroized on drop, and never shown by `Debug`. The `redis` crate gets a copy of them
//!   for each connection's handshake, wiped when it is done; the `AUTH` command it builds from
//!   it, and the URL parser's own copies, are freed unwiped, beyond this crate's reach.
//! - A wrong password, a missing permission, an untrusted server certificate, or a client
//!   certificate missing, refused by the server or not matching its key puts the client in
//!   degraded mode at once, with the cause and the fix in its log line.

// docs.rs (nightly, `--cfg docsrs`): mark each item a feature gates with that feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod at_rest;
mod bounded;
mod config;
mod connect;
mod connection;
mod errors;
mod fence;
// Public only to the fuzz targets (feature `__fuzzing`, not part of the API).
#[cfg(feature = "__fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod rate;
mod replies;
mod scripts;
mod sharing;
mod token;

// The README is the crates.io page: its example compiles as a doctest, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use credflow_core::ratelimit::RateLimitSnapshot;
use credflow_core::secret::Fingerprint;
use credflow_reqwest::Priority;
use credflow_reqwest::shared::{
    Admission, BoxFuture, FleetScope, Lease, Refresh, SharedStore, SharedToken, StoreError,
};
use redis::Script;

use crate::at_rest::Keys;
pub use crate::config::{RedisConfig, SetupError};
use crate::connect::target;
use crate::connection::Connection;
use crate::errors::unavailable;
use crate::token::Newest;
pub use sharing::{BadPodName, PodName, TokenSharing};

/// The commands a Redis ACL user needs, on the keys `{prefix}:*` (`credflow:*` by default):
/// `GETRANGE` directly (the token, read only as far as credflow's longest), `EVALSHA` and
/// `SCRIPT LOAD` for the scripts, and what the scripts call. Add
/// `SELECT` when the URL names a database other than 0. For example:
///
/// ```text
/// ACL SETUSER credflow on >secret ~credflow:* resetchannels -@all +get +getrange +set +del +pttl +pexpire +hmget +hset +zadd +zremrangebyscore +zcard +time +evalsha +script|load
/// ```
///
/// (The client also sends `CLIENT SETINFO` when it connects and ignores its refusal.)
pub const ACL_COMMANDS: [&str; 14] = [
    "GET",
    "GETRANGE",
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

/// A [`SharedStore`] on Redis. One per process (it holds one multiplexed, self-reconnecting
/// connection); connecting is lazy, so a process starts even while Redis is down.
pub struct RedisStore {
    connection: Connection,
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The most bytes one reply from Redis may take (its type bytes, lengths and line ends
/// included), 64 KiB: past it, the connection is dropped as a reset one and the call fails.
/// Eight times the longest value credflow reads (the token, encrypted, at its longest); the
/// scripts answer a few integers. Aggregates are bounded too: at most 256 elements, nested at
/// most 8 deep.
pub const MAX_REPLY_LEN: usize = bounded::MAX_REPLY_LEN;

/// The longest [`RedisConfig::lease_ttl`] accepted: a lease whose holder dies stops the
/// fleet's refreshes that long, and one past Redis's range (`PX` takes a signed 64-bit count)
/// failed every acquire, a configuration mistake read as an unreachable store.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);

/// The longest [`RedisConfig::connect_timeout`] and [`RedisConfig::response_timeout`]
/// accepted, a minute: every caller waits for the connection attempt under way (each within
/// its own limit on a call), so one that stalls keeps the store unusable until its timeout;
/// and a reply that stalls is seen as such only once its timeout has passed (commands whose
/// callers gave up are followed until then). Longer than any Redis that answers at all needs.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The shortest [`RedisConfig::connect_timeout`] and [`RedisConfig::response_timeout`]
/// accepted: zero (or a few nanoseconds) failed every connection, or every command.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

impl RedisStore {
    /// A store for Redis as `config` says. Does not connect yet.
    pub fn new(config: RedisConfig) -> Result<Self, SetupError> {
        if config.fleet_key.len() < credflow_core::snapshot::MIN_KEY_LEN {
            return Err(SetupError::FleetKeyTooShort);
        }
        if config.lease_ttl.is_zero()
            || config.lease_ttl > MAX_LEASE_TTL
            || config.poll_interval.is_zero()
            || config.poll_interval >= config.lease_ttl
        {
            return Err(SetupError::Timing(
                "lease_ttl must be positive and at most an hour, and poll_interval shorter than it"
                    .to_owned(),
            ));
        }
        for (field, timeout) in [
            ("connect_timeout", config.connect_timeout),
            ("response_timeout", config.response_timeout),
        ] {
            if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
                return Err(SetupError::Timing(format!(
                    "{field} must be at least {MIN_TIMEOUT:?} and at most {MAX_TIMEOUT:?} (it is \
                     {timeout:?})"
                )));
            }
        }
        let target = target(&config)?;
        let keys =
            Keys { fleet: config.fleet_key.clone(), encryption: config.encryption_key.clone() };
        Ok(RedisStore {
            connection: Connection::new(target, &config),
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
        sharing::key_names(&self.config.prefix, &self.config.token_sharing, scope)
    }

    /// The store's connection, connected (made now if there is none).
    async fn connection(&self) -> Result<Connection, StoreError> {
        self.connection.ready().await.map_err(unavailable)?;
        Ok(self.connection.clone())
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
        assert!(matches!(RedisStore::new(config), Err(SetupError::Timing(_))));
        for lease_ttl in [MAX_LEASE_TTL + Duration::from_millis(1), Duration::MAX] {
            let mut config = RedisConfig::new("redis://127.0.0.1:1", b"0123456789abcdef");
            config.lease_ttl = lease_ttl;
            assert!(matches!(RedisStore::new(config), Err(SetupError::Timing(_))), "{lease_ttl:?}");
        }
        let mut config = RedisConfig::new("redis://127.0.0.1:1", b"0123456789abcdef");
        config.lease_ttl = MAX_LEASE_TTL;
        assert!(RedisStore::new(config).is_ok());
        assert!(matches!(
            RedisStore::new(RedisConfig::new("nope://", b"0123456789abcdef")),
            Err(SetupError::Url(_))
        ));
    }

    /// The connect and response timeouts are checked: at least 1 ms, at most [`MAX_TIMEOUT`];
    /// the error names the field and its limits.
    #[test]
    fn timeouts_are_validated() {
        for field in ["connect_timeout", "response_timeout"] {
            let with = |timeout| {
                let mut config = RedisConfig::new("redis://127.0.0.1:1", b"0123456789abcdef");
                match field {
                    "connect_timeout" => config.connect_timeout = timeout,
                    _ => config.response_timeout = timeout,
                }
                RedisStore::new(config)
            };
            let past_max = MAX_TIMEOUT + Duration::from_millis(1);
            for timeout in [Duration::ZERO, Duration::from_nanos(999_999), past_max, Duration::MAX]
            {
                match with(timeout) {
                    Err(e @ SetupError::Timing(_)) => {
                        let said = e.to_string();
                        assert!(said.contains(field) && said.contains("at most 60s"), "{said}");
                    }
                    other => panic!("{field} {timeout:?}: {other:?}"),
                }
            }
            for timeout in [MIN_TIMEOUT, MAX_TIMEOUT] {
                assert!(with(timeout).is_ok(), "{field} {timeout:?}");
            }
        }
    }
}
