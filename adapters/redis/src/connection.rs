//! The store's one multiplexed Redis connection, over a stream this crate opens itself so that
//! every byte read passes [`Bounded`] before the `redis` crate's parser: neither the `redis`
//! crate's `ConnectionManager` nor its client takes a stream from outside (its DNS hook
//! only chooses addresses), so connecting (TCP, `rediss://` with rustls, Unix sockets) and
//! replacing a dropped connection are done here, as `ConnectionManager` did them: a connection
//! attempt in a task of its own (a caller giving up does not cut it; one cut off with its
//! runtime is begun anew, and so is one older than the connect timeout for a caller on another
//! runtime), bounded by [`RedisConfig::connect_timeout`] and tried once more
//! after 200 ms, every command bounded by [`RedisConfig::response_timeout`], and a connection
//! that failed as dropped (reset, aborted, closed, a reply past the bound, a parse error) or
//! whose task ended (its runtime shut down too) replaced by the next call; unlike
//! `ConnectionManager`, so is one that left two commands in a row unanswered past the
//! response timeout (whether or not their callers waited that long), and one whose server
//! answered that it is a replica
//! (`READONLY`, `MASTERDOWN`: a primary demoted by a failover; before Redis 7.0, a script's
//! refused write is an `ERR` quoting the `READONLY`).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError, RedisFuture,
    RedisResult, Value,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::RedisConfig;
use crate::bounded::Bounded;
use crate::connect::Target;
use crate::errors::Unusable;

/// The pause before the second connection attempt (`ConnectionManager`'s longest back-off as
/// this crate set it).
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// Commands in a row left unanswered past the response timeout on one connection, after
/// which it is let go. Not one: a lone timeout may be a slow Redis, or one reply lost on a
/// connection that still carries the others, and a reconnect for each would cost a new
/// connection (and handshake) per slow reply. (The release of a lease whose acquire went
/// unanswered, [`FenceGuard`](crate::fence::FenceGuard), is sent on whichever connection is in
/// use when it goes: the acquire's, unless that one was let go by then (the acquire's timeout
/// the second in a row, say), then a new one. Either does: it is a compare-and-delete on the
/// lease key, on any connection; this count is not what keeps it on the acquire's.)
const STALLED_AFTER: u32 = 2;

/// A byte stream to Redis: TCP, TLS over TCP, or a Unix socket.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// How to reach Redis: the address and handshake the URL gives (the user and password wiped on
/// drop, and given to the `redis` crate only as a copy for each attempt's handshake, wiped
/// after it), and the TLS material (the client key wiped on drop; the `redis` crate never has
/// it).
struct Connector {
    target: Target,
    connect_timeout: Duration,
    response_timeout: Duration,
    #[cfg(feature = "tls")]
    root_ca_pem: Option<Vec<u8>>,
    #[cfg(feature = "tls")]
    client_cert: Option<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>)>,
}

impl Connector {
    /// One connection attempt, the handshake (`AUTH`, `SELECT`, `CLIENT SETINFO`) included,
    /// within the connect timeout.
    async fn connect(&self) -> RedisResult<Live> {
        let attempt = async {
            let stream = Bounded::new(self.stream().await?);
            let config = AsyncConnectionConfig::new().set_response_timeout(self.response_timeout);
            // Wiped when the handshake is done, or cut off by the timeout.
            let handshake = self.target.handshake();
            MultiplexedConnection::new_with_config(&handshake.0, stream, config).await
        };
        let (con, driver) = tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        let driver = tokio::spawn(driver).abort_handle();
        Ok(Live { con, id: 0, driver: Arc::new(Driver(driver)) })
    }

    async fn stream(&self) -> RedisResult<Box<dyn Stream>> {
        match &self.target.addr {
            ConnectionAddr::Tcp(host, port) => Ok(Box::new(tcp(host, *port).await?)),
            #[cfg(feature = "tls")]
            ConnectionAddr::TcpTls { host, port, insecure, .. } => {
                self.tls(host, *port, *insecure).await
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                Ok(Box::new(tokio::net::UnixStream::connect(path).await?))
            }
            // `redis::Client::open` refuses `rediss://` without the TLS features.
            #[cfg(not(feature = "tls"))]
            ConnectionAddr::TcpTls { .. } => {
                Err(Unusable::Unsupported.error("rediss:// needs the tls feature"))
            }
            #[cfg(not(unix))]
            ConnectionAddr::Unix(_) => {
                Err(Unusable::Unsupported.error("Unix sockets are not supported on this platform"))
            }
        }
    }

    /// TLS over TCP with the rustls configuration the `redis` crate would build (see
    /// [`Connector::tls_config`]); SNI on.
    #[cfg(feature = "tls")]
    async fn tls(&self, host: &str, port: u16, insecure: bool) -> RedisResult<Box<dyn Stream>> {
        use rustls_pki_types::ServerName;
        if insecure {
            // As the `redis` crate refuses `#insecure` without its `tls-rustls-insecure`.
            return Err(Unusable::Insecure.error("the URL ends in #insecure"));
        }
        let config = self.tls_config(crypto_provider())?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| Unusable::TlsHost.error(format!("{host:?}: {e}")))?;
        let tcp = tcp(host, port).await?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
        Ok(Box::new(tls))
    }

    /// The rustls configuration of a connection, on `provider`: the operator's CA only, or the
    /// webpki roots; the client certificate if given; rustls's safe default protocol versions.
    /// A provider that cannot make one (no cipher suite for them) is an `InvalidClientConfig`
    /// error, as is a certificate or key that does not parse, or a key that rustls does not
    /// take with its certificate: each of its own [`Unusable`] reason.
    #[cfg(feature = "tls")]
    fn tls_config(
        &self,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> RedisResult<rustls::ClientConfig> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let root_ca = |e: &dyn std::fmt::Display| Unusable::RootCa.error(e.to_string());
        let client_cert = |e: &dyn std::fmt::Display| Unusable::ClientCert.error(e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_ca_pem {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| root_ca(&e))?;
                    roots.add(cert).map_err(|e| root_ca(&e))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Unusable::CryptoProvider.error(e.to_string()))?
            .with_root_certificates(roots);
        match &self.client_cert {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| client_cert(&e))?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| client_cert(&e))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| client_cert(&e))
            }
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

/// The rustls crypto provider of `rediss://` connections: the process's default if the
/// application installed one, else `ring` (the provider this crate compiles in), named
/// explicitly and not installed as the process's default. (`rustls::ClientConfig::builder()`
/// installed it, or panicked where rustls was built with more than one provider and the
/// application had installed none.)
#[cfg(feature = "tls")]
fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// A TCP connection to `host`: its addresses tried together, the first to answer kept (as the
/// `redis` crate does).
async fn tcp(host: &str, port: u16) -> RedisResult<tokio::net::TcpStream> {
    let mut attempts = tokio::task::JoinSet::new();
    for addr in tokio::net::lookup_host((host, port)).await? {
        attempts.spawn(tokio::net::TcpStream::connect(addr));
    }
    let mut last = None;
    while let Some(attempt) = attempts.join_next().await {
        match attempt {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Some(RedisError::from(e)),
            Err(e) => last = Some(RedisError::from(std::io::Error::other(e))),
        }
    }
    // A name that resolves to no address: a transport failure, as one that does not resolve
    // is (an I/O error), not a configuration the store cannot use.
    Err(last.unwrap_or_else(|| {
        RedisError::from(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the host resolved to no address",
        ))
    }))
}

/// Ends a connection's reading and writing task when the last handle to it is gone.
struct Driver(tokio::task::AbortHandle);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connection established, with its task (kept running while a handle is held).
#[derive(Clone)]
struct Live {
    con: MultiplexedConnection,
    /// Which connection attempt made it.
    id: u64,
    driver: Arc<Driver>,
}

impl Live {
    /// Whether its task ended (the connection closed or failed): calls on it would only fail.
    fn ended(&self) -> bool {
        self.driver.0.is_finished()
    }
}

/// The connection in use, and the attempt to make one under way.
#[derive(Default)]
struct Slot {
    live: Option<Live>,
    /// Commands in a row left unanswered past the response timeout on `live` (an answer, any
    /// answer, ends the run); [`STALLED_AFTER`] of them let the connection go.
    timeouts: u32,
    /// The connection attempt under way.
    connecting: Option<Attempt>,
    /// Connection attempts begun so far: each attempt's number.
    begun: u64,
    /// Connection attempts ended so far: each connection's id.
    attempts: u64,
}

/// A connection attempt under way: where its outcome is sent when it ends, and when and on
/// which runtime it was begun (its task runs there, and only while that runtime is run).
struct Attempt {
    outcome: watch::Receiver<Option<Attempted>>,
    /// Which attempt it is (see [`Slot::begun`]).
    number: u64,
    begun: Instant,
    runtime: Option<tokio::runtime::Id>,
}

/// A connection attempt's outcome, for every caller that waited for it.
type Attempted = Result<Live, Failure>;

/// The error of a failed connection attempt, kept to answer every caller that waited for it (a
/// `RedisError` is not `Clone`).
struct Failure {
    kind: ErrorKind,
    code: Option<String>,
    detail: String,
    io: Option<std::io::ErrorKind>,
    #[cfg(feature = "tls")]
    tls: Option<rustls::Error>,
    unusable: Option<Unusable>,
}

impl Failure {
    fn of(e: &RedisError) -> Self {
        Failure {
            kind: e.kind(),
            code: e.code().map(str::to_owned),
            detail: e.detail().map_or_else(|| e.to_string(), str::to_owned),
            io: e.is_io_error().then(|| io_kind(e)).flatten(),
            #[cfg(feature = "tls")]
            tls: crate::errors::tls_error(e).cloned(),
            unusable: Unusable::of(e),
        }
    }

    /// The error again, as the errors module classifies it: kind, server code, I/O kind, TLS
    /// cause and [`Unusable`] reason kept (as `ConnectionManager` answered its waiters, but for
    /// the TLS cause and the reason).
    fn error(&self) -> RedisError {
        if let Some(reason) = self.unusable {
            return reason.error(self.detail.clone());
        }
        if let Some(kind) = self.io {
            #[cfg(feature = "tls")]
            if let Some(tls) = &self.tls {
                return RedisError::from(std::io::Error::new(kind, tls.clone()));
            }
            return RedisError::from(std::io::Error::new(kind, self.detail.clone()));
        }
        match (self.kind, &self.code) {
            (ErrorKind::ExtensionError, Some(code)) => {
                redis::make_extension_error(code.clone(), Some(self.detail.clone()))
            }
            (kind, _) => RedisError::from((kind, "connecting failed", self.detail.clone())),
        }
    }
}

/// The kind of the I/O error inside `e`, if there is one.
fn io_kind(e: &RedisError) -> Option<std::io::ErrorKind> {
    let source = std::error::Error::source(e)?;
    source.downcast_ref::<std::io::Error>().map(std::io::Error::kind)
}

/// The store's connection: one multiplexed connection, made on first use and replaced after it
/// failed as dropped. Clones share it.
#[derive(Clone)]
pub(crate) struct Connection(Arc<Inner>);

struct Inner {
    connector: Connector,
    slot: Mutex<Slot>,
}

impl Connection {
    /// To `target`, as `config` says. Does not connect yet.
    pub(crate) fn new(target: Target, config: &RedisConfig) -> Self {
        let connector = Connector {
            target,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            #[cfg(feature = "tls")]
            root_ca_pem: config.root_ca_pem.clone(),
            #[cfg(feature = "tls")]
            client_cert: config.client_cert_pem.clone().zip(config.client_key_pem.clone()),
        };
        Connection(Arc::new(Inner { connector, slot: Mutex::new(Slot::default()) }))
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.0.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Connects now if there is no connection (see [`Connection::live`]).
    pub(crate) async fn ready(&self) -> RedisResult<()> {
        self.live().await.map(drop)
    }

    /// The connection, made now if there is none (or its task ended): one attempt and one
    /// more after [`RETRY_DELAY`], in a task of its own (on the caller's runtime). Callers
    /// arriving meanwhile wait for that attempt and get its outcome; a caller that gives up
    /// (the client bounds each store call) does not cut it short, so a handshake slower than
    /// one call's limit still completes, for the calls after.
    ///
    /// An attempt whose task was dropped before its end, without an outcome (the runtime it
    /// ran on shut down while the store lives on: one store used by tests, or by tasks, that
    /// each make a runtime), is not waited for again: the next caller begins one anew, and so
    /// does, once, each caller that was waiting for it.
    ///
    /// An attempt begun on another runtime than the caller's is waited for until it is older
    /// than the connect timeout ([`Connection::outlived`]): past that, the caller begins one
    /// anew on its own runtime (or joins the one another caller began first), which becomes
    /// the attempt under way. That runtime may be alive but not run (a current-thread runtime
    /// between two `block_on`s), its attempt then neither going on nor ending, and every
    /// caller on every other runtime was held until it ran again.
    async fn live(&self) -> RedisResult<Live> {
        let here = tokio::runtime::Handle::try_current().ok().map(|runtime| runtime.id());
        let mut cut_off = false;
        loop {
            let (mut attempt, deadline) = {
                let mut slot = self.slot();
                match &slot.live {
                    Some(live) if !live.ended() => return Ok(live.clone()),
                    _ => slot.live = None,
                }
                match &slot.connecting {
                    // Its channel still open. An attempt that ends takes itself out of the
                    // slot and sends its outcome under this lock, so one left here whose
                    // channel is closed never sent one: its task was dropped (its runtime
                    // shut down) or panicked, and waiting for it would fail every caller for
                    // as long as the store lives.
                    Some(attempt)
                        if attempt.outcome.has_changed().is_ok()
                            && !self.outlived(attempt, here) =>
                    {
                        (attempt.outcome.clone(), self.deadline(attempt, here))
                    }
                    _ => (self.begin(&mut slot, here), None),
                }
            };
            let waited = match deadline {
                Some(deadline) => {
                    tokio::time::timeout_at(deadline, attempt.wait_for(Option::is_some)).await
                }
                None => Ok(attempt.wait_for(Option::is_some).await),
            };
            match waited {
                Ok(Ok(outcome)) => {
                    return match &*outcome {
                        Some(Ok(live)) => Ok(live.clone()),
                        Some(Err(failure)) => Err(failure.error()),
                        None => {
                            Err(RedisError::from(std::io::Error::other("no connection attempt")))
                        }
                    };
                }
                // The attempt, on another runtime, outlived the connect timeout without an
                // outcome: the slot is looked at again, and an attempt begun on this runtime
                // if it is still the one under way.
                Err(_outlived) => {}
                // The attempt this caller waited for was cut off: not by Redis, its runtime
                // went away (another test's, or a task's that made its own). Failing the call
                // would put the process in degraded mode, its warning naming a cause that says
                // nothing about Redis; this caller, still running, has a runtime to connect on,
                // so it begins an attempt anew (or joins the one another waiter began first,
                // as every caller does), within its own limit on the call. Once: an attempt
                // cut off again (the caller's own runtime shutting down) fails the call rather
                // than loop.
                Ok(Err(_)) if !cut_off => cut_off = true,
                Ok(Err(_)) => {
                    return Err(RedisError::from(std::io::Error::other(
                        "the connection attempt was cut off twice (its runtime shut down, or it panicked)",
                    )));
                }
            }
        }
    }

    /// Begins a connection attempt on the runtime `here` (the caller's), as the one under way
    /// in `slot`; returns where its outcome will be sent.
    fn begin(
        &self,
        slot: &mut Slot,
        here: Option<tokio::runtime::Id>,
    ) -> watch::Receiver<Option<Attempted>> {
        slot.begun = slot.begun.wrapping_add(1);
        let (sender, outcome) = watch::channel(None);
        slot.connecting = Some(Attempt {
            outcome: outcome.clone(),
            number: slot.begun,
            begun: Instant::now(),
            runtime: here,
        });
        tokio::spawn(self.clone().connect(sender, slot.begun));
        outcome
    }

    /// Whether `attempt`, begun on another runtime than `here`, is older than the connect
    /// timeout: a caller on `here` then begins one anew instead of waiting for it.
    ///
    /// The connect timeout bounds an attempt's first try, the handshake included: by then an
    /// attempt whose runtime is run has its outcome, or is in its retry (its first try failed).
    /// An older one is on a runtime not run (alive, between two `block_on`s of a current-thread
    /// runtime, or with every worker blocked), or in that retry; beginning anew costs, in the
    /// second case, one more connection attempt to a Redis that failed one, and ends the wait
    /// in the first, which lasted until that runtime ran again. Not the attempt's longest life
    /// (twice the timeout and the retry's pause), which would tell the cases apart: the client
    /// bounds each store call at 1 s, the default connect timeout, so every call on the other
    /// runtimes would fail for more than two seconds, the process going to degraded mode. A
    /// caller on the attempt's own runtime waits for it to its end: that runtime is run (the
    /// caller is), so the attempt goes on, within its own timeouts.
    fn outlived(&self, attempt: &Attempt, here: Option<tokio::runtime::Id>) -> bool {
        here.is_some()
            && attempt.runtime != here
            && attempt.begun.elapsed() >= self.0.connector.connect_timeout
    }

    /// When a caller on `here` stops waiting for `attempt`, if it is on another runtime (see
    /// [`outlived`](Self::outlived)).
    fn deadline(
        &self,
        attempt: &Attempt,
        here: Option<tokio::runtime::Id>,
    ) -> Option<tokio::time::Instant> {
        if here.is_none() || attempt.runtime == here {
            return None;
        }
        let deadline = attempt.begun.checked_add(self.0.connector.connect_timeout)?;
        Some(tokio::time::Instant::from_std(deadline))
    }

    /// The connection attempt number `number` that [`live`](Self::live) began: its outcome
    /// sent on `outcome` and put in the slot, as the connection in use unless the attempt was
    /// replaced meanwhile (see [`outlived`](Self::outlived)) and the slot holds the connection
    /// of a newer one. That one's runtime was run while this one's was not: the connection
    /// whose reading and writing task is on it serves the calls.
    async fn connect(self, outcome: watch::Sender<Option<Attempted>>, number: u64) {
        let connector = &self.0.connector;
        let result = match connector.connect().await {
            Ok(live) => Ok(live),
            Err(_) => {
                tokio::time::sleep(RETRY_DELAY).await;
                connector.connect().await
            }
        };
        let mut slot = self.slot();
        slot.attempts = slot.attempts.wrapping_add(1);
        let under_way = slot.connecting.as_ref().is_some_and(|attempt| attempt.number == number);
        if under_way {
            slot.connecting = None;
        }
        let attempted = match result {
            Ok(mut live) => {
                live.id = slot.attempts;
                if under_way || slot.live.as_ref().is_none_or(Live::ended) {
                    slot.live = Some(live.clone());
                    slot.timeouts = 0;
                }
                Ok(live)
            }
            Err(e) => Err(Failure::of(&e)),
        };
        let _ = outcome.send(Some(attempted));
    }

    /// After a command on `used`: a connection that failed as dropped (or was answered that
    /// its server is a replica, see [`on_a_replica`]), or left
    /// [`STALLED_AFTER`] commands in a row unanswered past the response timeout, is let go, so
    /// that the next call connects afresh (its task ends once the calls still on it are done).
    ///
    /// Timeouts count: credflow's commands are short scripts, and the replies on one
    /// connection come in order, so a reply that stalls (a peer gone silent after a network
    /// partition or a failover, with no reset to tell; a reply that stops within the bound)
    /// would fail every later command on it at its timeout, for as long as the process lives.
    /// A Redis that is only slow costs a reconnect per second timeout, at the pace the fleet's
    /// degraded mode calls it.
    fn after(&self, used: &Live, outcome: Outcome) {
        let mut slot = self.slot();
        // Only the connection in use: a call that failed on an older one does not count
        // against (or drop) its replacement.
        if slot.live.as_ref().is_none_or(|live| live.id != used.id) {
            return;
        }
        let stalled = match outcome {
            Outcome::TimedOut => {
                slot.timeouts = slot.timeouts.saturating_add(1);
                slot.timeouts >= STALLED_AFTER
            }
            Outcome::Broken => true,
            Outcome::Answered => {
                slot.timeouts = 0;
                false
            }
        };
        if stalled {
            slot.live = None;
            slot.timeouts = 0;
        }
    }

    /// Sends one command (or pipeline) with `send` on the connection, in a task of its own
    /// that follows it to its end, its reply or its response timeout, and tells
    /// [`after`](Self::after) how it went; the caller awaits that task. A caller that gives up
    /// first (the client bounds each store call, at 1 s, which may come before the response
    /// timeout) does not cut it short: its command counts as unanswered only once the response
    /// timeout has passed since it was sent with no reply, so a reply only slow (within the
    /// timeout) never lets a connection go, and a stall is still seen, at the timeout, whichever
    /// limit ended the calls. (Counted as unanswered when dropped, two callers giving up in a
    /// row let a healthy connection go, and one slow reply made every command queued behind it
    /// count.) At most [`MAX_TIMEOUT`](crate::MAX_TIMEOUT) per command: the tasks of a stalled
    /// connection are bounded by the calls made in that time.
    async fn call<T, F>(&self, send: impl FnOnce(MultiplexedConnection) -> F) -> RedisResult<T>
    where
        T: Replies + Send + 'static,
        F: Future<Output = RedisResult<T>> + Send + 'static,
    {
        let live = self.live().await?;
        let command = send(live.con.clone());
        let connection = self.clone();
        let followed = tokio::spawn(async move {
            let result = command.await;
            let outcome = match &result {
                Err(e) if e.is_timeout() => Outcome::TimedOut,
                Err(e) if e.is_unrecoverable_error() || on_a_replica(e.code(), e.detail()) => {
                    Outcome::Broken
                }
                // A server's error comes as a reply (`Value::ServerError`), made an error only
                // when the caller reads it.
                Ok(replies) if replies.says_replica() => Outcome::Broken,
                // Answered, if only with an error: the connection carries replies.
                _ => Outcome::Answered,
            };
            connection.after(&live, outcome);
            result
        });
        followed.await.unwrap_or_else(|e| {
            // Its runtime shut down (the caller's own, so the caller is going too), or it
            // panicked: no outcome to count.
            Err(RedisError::from(std::io::Error::other(format!("the command's task ended: {e}"))))
        })
    }
}

/// Whether a server's error (its `code` and `detail`) says it is not (or no longer) a primary
/// that takes writes: `READONLY` (a replica: after a failover, the demoted primary, still at
/// the address this connection was made to, while the name or proxy in the URL now leads to the
/// new one), `MASTERDOWN` (a replica that lost its primary), or, from a Redis before 7.0, an
/// `ERR` that quotes a `READONLY` refusal of a script's write ([`refused_write_in_script`]).
/// Every credflow script writes, so each later call on that connection would be refused the
/// same way, for as long as the server kept it open: the connection is let go like a dropped
/// one, and the next call connects afresh.
fn on_a_replica(code: Option<&str>, detail: Option<&str>) -> bool {
    match code {
        Some("READONLY" | "MASTERDOWN") => true,
        Some("ERR") => detail.is_some_and(refused_write_in_script),
        _ => false,
    }
}

/// How Redis before 7.0 begins the detail of its `ERR` reply to a script that failed.
const SCRIPT_FAILED: &str = "Error running script";

/// How such a reply quotes a replica's refusal of the script's write: the refusal's own reply
/// (code and `-` included) after the script's name and line.
const READONLY_QUOTED: &str = ": -READONLY ";

/// Whether the `detail` of an `ERR` reply is a Redis before 7.0 answering a script whose
/// `redis.call` wrote on a replica. Such a server refuses the write inside the script with its
/// `READONLY` reply as the Lua error (`luaPushError(lua, shared.roslaveerr->ptr)` in
/// `scripting.c`, prefixed with the script's name and line, twice, by Lua and by the error
/// handler) and answers the whole script `ERR` with it quoted, its line breaks dropped:
///
/// ```text
/// -ERR Error running script (call to f_<sha1>): @user_script:16: @user_script: 16: -READONLY You can't write against a read only replica.
/// ```
///
/// (`slave.` before Redis 5.0.) The code is `ERR`, as for any failed script: the quoted
/// refusal is the only sign, matched in the text Redis writes itself, never in data a script
/// returns (credflow's scripts put none in their errors). Redis 7.0 and later keep the code
/// (`-READONLY You can't write against a read only replica. script: …`); no version quotes
/// `MASTERDOWN` so (a replica that lost its primary refuses `EVALSHA` itself with it, before
/// the script runs).
fn refused_write_in_script(detail: &str) -> bool {
    detail.starts_with(SCRIPT_FAILED) && detail.contains(READONLY_QUOTED)
}

/// What a command (or pipeline) returns: whether it holds a server's error that
/// [`on_a_replica`] names.
trait Replies {
    fn says_replica(&self) -> bool;
}

impl Replies for Value {
    fn says_replica(&self) -> bool {
        matches!(self, Value::ServerError(e) if on_a_replica(Some(e.code()), e.details()))
    }
}

impl Replies for Vec<Value> {
    fn says_replica(&self) -> bool {
        self.iter().any(Replies::says_replica)
    }
}

/// How a command on a connection went.
#[derive(Clone, Copy)]
enum Outcome {
    Answered,
    TimedOut,
    /// Failed as a dropped connection.
    Broken,
}

impl ConnectionLike for Connection {
    // The command is copied for the task that follows it (see `call`).
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let cmd = cmd.clone();
        Box::pin(self.call(move |mut con| async move { con.send_packed_command(&cmd).await }))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let cmd = cmd.clone();
        Box::pin(self.call(move |mut con| async move {
            con.send_packed_commands(&cmd, offset, count).await
        }))
    }

    fn get_db(&self) -> i64 {
        self.0.connector.target.base.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::cause;

    /// A caller that waited for another's failed connection attempt gets an error classified
    /// as the attempt's own was: the degraded mode's log names the same cause and fix.
    #[test]
    fn a_waiter_gets_the_failure_as_it_was_classified() {
        let io = |kind| RedisError::from(std::io::Error::from(kind));
        let mut errors = vec![
            RedisError::from((ErrorKind::AuthenticationFailed, "Password authentication failed")),
            redis::make_extension_error("NOPERM".into(), Some("no permissions".into())),
            RedisError::from((ErrorKind::InvalidClientConfig, "bad", "key mismatch".to_owned())),
            Unusable::ClientCert.error("KeyMismatch"),
            Unusable::RootCa.error("not a trust anchor"),
            Unusable::CryptoProvider.error("no cipher suites"),
            Unusable::TlsHost.error("invalid dns name"),
            Unusable::Insecure.error("#insecure"),
            Unusable::Unsupported.error("not here"),
            io(std::io::ErrorKind::ConnectionRefused),
            io(std::io::ErrorKind::TimedOut),
            RedisError::from((ErrorKind::ResponseError, "An error was signalled", "x".to_owned())),
        ];
        #[cfg(feature = "tls")]
        errors.push(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        )));
        for e in errors.drain(..) {
            let again = Failure::of(&e).error();
            assert_eq!(cause(&again), cause(&e), "{e:?} / {again:?}");
            assert_eq!(again.kind(), e.kind(), "{e:?}");
            assert_eq!(again.is_unrecoverable_error(), e.is_unrecoverable_error(), "{e:?}");
        }
    }

    /// A server's refusal of a write because it is a replica is recognised in each form Redis
    /// sends it, read from the bytes on the wire as the connection reads them, as a reply and
    /// as an error: `READONLY` (for a script's write too from Redis 7.0 on), `MASTERDOWN`, and,
    /// before 7.0, the `ERR` of a script that quotes the `READONLY` refusal of its write
    /// (`replica.` from 5.0, `slave.` before). Other failed scripts, and `READONLY` elsewhere in
    /// a reply, are not.
    #[test]
    fn a_replicas_refusal_is_recognised_in_each_form() {
        let sha = "f_3b5d2e7c9a1f4e6b8d0c2a4e6f8b0d2c4e6a8c0e";
        let in_script = |quoted: &str| {
            format!(
                "-ERR Error running script (call to {sha}): @user_script:16: @user_script: 16: {quoted}\r\n"
            )
        };
        let replica = [
            "-READONLY You can't write against a read only replica.\r\n".to_owned(),
            format!(
                "-READONLY You can't write against a read only replica. script: {sha}, on \
                 @user_script:16.\r\n"
            ),
            "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n"
                .to_owned(),
            in_script("-READONLY You can't write against a read only replica."),
            in_script("-READONLY You can't write against a read only slave."),
        ];
        let other = [
            in_script("-OOM command not allowed when used memory > 'maxmemory'."),
            format!(
                "-ERR Error running script (call to {sha}): @user_script:3: Script attempted to \
                 access nonexistent global variable 'READONLY'\r\n"
            ),
            "-ERR unknown command 'x', with args beginning with: : -READONLY \r\n".to_owned(),
            "-NOSCRIPT No matching script. Please use EVAL.\r\n".to_owned(),
            "-READONLYX You can't\r\n".to_owned(),
        ];
        for (wire, expected) in
            replica.iter().map(|w| (w, true)).chain(other.iter().map(|w| (w, false)))
        {
            let reply = redis::parse_redis_value(wire.as_bytes()).unwrap();
            assert_eq!(reply.says_replica(), expected, "{wire}");
            assert_eq!(vec![Value::Okay, reply.clone()].says_replica(), expected, "{wire}");
            let Value::ServerError(error) = reply else { panic!("{wire}: {reply:?}") };
            let error = RedisError::from(error);
            assert_eq!(on_a_replica(error.code(), error.detail()), expected, "{wire}: {error}");
        }
    }

    /// A `rediss://` connection attempt installs no process-wide crypto provider: `ring` is
    /// named for its configuration. `rustls::ClientConfig::builder()` installed it as the
    /// process's default (and panicked, in the attempt's task, where rustls was built with
    /// several providers and none was installed). Nothing else in this test binary installs
    /// one.
    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn a_tls_connection_installs_no_process_wide_crypto_provider() {
        // A peer on 127.0.0.1 that closes each connection at once: the handshake fails.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(2) {
                drop(stream);
            }
        });
        let mut config =
            RedisConfig::new(format!("rediss://127.0.0.1:{port}/"), b"0123456789abcdef");
        config.connect_timeout = Duration::from_secs(2);
        let store = crate::RedisStore::new(config).unwrap();
        assert!(store.connection.ready().await.is_err(), "the peer closes every connection");
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    }

    /// A crypto provider that cannot make a TLS client configuration (no cipher suite) fails
    /// the connection with an `InvalidClientConfig` error, not a panic.
    #[cfg(feature = "tls")]
    #[test]
    fn a_provider_without_cipher_suites_is_an_invalid_client_config() {
        let config = RedisConfig::new("rediss://127.0.0.1:1/", b"0123456789abcdef");
        let store = crate::RedisStore::new(config).unwrap();
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: Vec::new(),
            ..rustls::crypto::ring::default_provider()
        };
        let e = store.connection.0.connector.tls_config(Arc::new(provider)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidClientConfig, "{e}");
        assert!(e.to_string().contains("crypto provider"), "{e}");
        assert_eq!(cause(&e), crate::errors::Cause::Unusable(Unusable::CryptoProvider));
        match crate::errors::unavailable(e) {
            credflow_reqwest::shared::StoreError::Refused(why) => {
                assert!(why.starts_with("TLS: the rustls crypto provider"), "{why}");
                assert!(!why.contains("client certificate"), "not its label: {why}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A `rediss://` URL that the connection cannot be set up for fails under its own reason,
    /// not the client certificate's, before anything is connected to: `#insecure` (no check of
    /// the server's certificate, which this crate does not do), and a host that is neither a
    /// DNS name nor an IP address (the certificate could not be checked against it).
    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn a_tls_url_that_cannot_be_set_up_fails_under_its_own_reason() {
        for (url, reason) in [
            ("rediss://127.0.0.1:1/#insecure", Unusable::Insecure),
            ("rediss://bad!host:1/", Unusable::TlsHost),
        ] {
            let store = crate::RedisStore::new(RedisConfig::new(url, b"0123456789abcdef")).unwrap();
            let e = store.connection.ready().await.unwrap_err();
            assert_eq!(cause(&e), crate::errors::Cause::Unusable(reason), "{url}: {e}");
        }
    }
}
