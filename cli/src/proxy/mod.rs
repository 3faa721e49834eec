//! `credflow proxy`: a local HTTP/1.1 sidecar that gives services in any language credflow.
//!
//! Local clients (an SDK pointed at `http://127.0.0.1:8080`) send API requests without a real
//! token; the proxy forwards each through the std adapter's
//! [`Client::send_with`](credflow_reqwest::Client::send_with): its token attached (any inbound
//! `Authorization` replaced), paced to the server's rate limit, retried per the core's
//! verdicts, breakers and diagnosis included. What the proxy decides itself:
//!
//! - **Placeholder tokens.** SDKs that fetch a token themselves `POST /oauth/token` on the
//!   login host they derive from the API host; the proxy answers with a placeholder (the
//!   local key when one is set), never the real token.
//! - **Local key** (`--local-key-file`): local clients must present it (`Authorization: Bearer
//!   KEY`, the placeholder an SDK got, or `X-Credflow-Key`), so that other processes on the
//!   host cannot borrow the service's identity. Compared in constant time.
//! - **Priority** from `X-Credflow-Priority: critical|normal|background`, stripped.
//! - **Bodies** (`rules::body_plan`): request bodies up to `--max-body` are buffered, so the
//!   client can replay them when the core says a retry is safe; larger ones stream upstream
//!   and are sent once. Success responses stream back as they arrive, unread (an endpoint
//!   that echoes the request's `Authorization` in one hands the token to the client); error
//!   and redirect bodies (read by the client to classify them anyway; a redirect's may repeat
//!   a `Location` that carries the token) go back masked, at most the client's
//!   `max_response_body`. A redirect to another origin goes back as it came: what the local
//!   client sends there is its own (README: present the local key as the bearer token).
//! - **Header hygiene**: hop-by-hop headers and all those named in `Connection` are removed
//!   both ways; response header values are masked should the upstream echo a credential;
//!   `ININ-Correlation-Id` goes back as sent. Only the `chunked` transfer coding is passed
//!   (`rules::transfer_coding`): a local request in another is refused (501), an upstream error
//!   body in one withheld, an upstream success in one answered 502.
//! - **Giving up fast**: when credflow gives up (breaker open, a wait beyond `--max-wait`, the
//!   daily quota, no token within `--token-wait`), the local client gets 503 at once with
//!   `Retry-After` and a Genesys-shaped JSON body naming the cause (`server::Proxy::give_up`).
//!   A server's wait beyond `--max-wait` is relayed as the time until credflow's next probe of
//!   the limit (at most `--max-wait`), not as the server's hours or years: one request per
//!   `--max-wait` goes out as that probe, whatever its `--deadline`, and its success lets
//!   every request through again.
//! - **Backpressure**: at most `--max-pending` requests wait at once; past it, 503 +
//!   `Retry-After: 1`. A request's body must arrive within its `--deadline` (408 otherwise),
//!   so a client that stalls mid-body cannot keep its place.
//! - **Fleet mode** (`--redis URL --fleet-key-file PATH`): one token and one rate budget shared
//!   through Redis with every proxy and process of the client id (`Config::with_shared`);
//!   `rediss://` trusts the CAs of `--ca-file` (only those) when it is given; with
//!   `--encryption-key-file` the token is encrypted in Redis, not only sealed
//!   (`RedisConfig::encryption_key`).
//! - **Operations**: `/healthz` (200 once a token is held, else 503), `/metrics` (Prometheus
//!   text), graceful shutdown on SIGTERM or Ctrl-C (stop accepting, drain in-flight requests
//!   within `--drain`: a request from its head until its answer has gone out; those still
//!   waiting past it are answered 503 `credflow.shutting.down`; a connection still sending a
//!   head is closed), `tracing` logs (`CREDFLOW_LOG`).

mod metrics;
pub(crate) mod rules;
mod server;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use clap::Args;

use crate::url_arg::UrlArg;
use crate::{Failure, TargetArgs};

/// Default `--max-body`: request bodies up to 1 MiB are buffered and replayable.
pub(crate) const DEFAULT_MAX_BODY: usize = 1 << 20;

/// `credflow proxy`'s own flags (the targeting flags and environment are the other commands').
#[derive(Clone, Debug, Args)]
#[command(after_help = "Local clients send API requests to the proxy as they would to the API \
base, with any token or none: the proxy attaches its own. SDKs that fetch a token first get a \
placeholder from the proxy's /oauth/token (with --local-key-file, only by presenting the key as \
their client secret; the key is then the placeholder). Reserved paths: /oauth/token, /healthz \
(200 once a token is held), /metrics (Prometheus text). When credflow gives up, the answer is \
503 with Retry-After and a Genesys-shaped JSON body whose code names the cause.\n\nExit codes: \
0 stopped by SIGTERM or Ctrl-C after draining, 2 configuration (a non-loopback --listen without \
--allow-non-loopback and a local key, a bad flag value), 5 the listen address cannot be bound, \
1 the drain deadline passed with requests still in flight (those still waiting for their answer \
were answered 503 credflow.shutting.down).")]
pub(crate) struct ProxyArgs {
    /// Address to listen on (plain HTTP). Loopback only unless --allow-non-loopback.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Listen on an address that is not loopback: other hosts can then reach the proxy, in
    /// clear text. Needs --local-key-file too.
    #[arg(long)]
    allow_non_loopback: bool,
    /// File holding the local key local clients must present (16+ visible ASCII characters).
    #[arg(long, env = "CREDFLOW_LOCAL_KEY_FILE", hide_env_values = true, value_name = "PATH")]
    local_key_file: Option<String>,
    /// Request bodies up to this many bytes are buffered (replayable on retry); larger ones
    /// stream upstream and are never retried.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY, value_name = "BYTES")]
    max_body: usize,
    /// Most requests waiting for the upstream at once; past it, 503 + Retry-After.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_pending: usize,
    /// Most local connections open at once; a connection past it is closed at once (each may
    /// hold up to about 120 KiB while a request head of up to 64 KiB arrives: 256 MiB for 2048).
    #[arg(long, default_value_t = 2048, value_name = "N")]
    max_connections: usize,
    /// A local connection is closed when it has sent no request head for this long (idle
    /// between requests, or stalled in a head), or taken none of its answer (a write to it
    /// that makes no progress).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    idle_timeout: Duration,
    /// Longest time one request may wait for a token before 503 (e.g. 500ms, 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    token_wait: Duration,
    /// Longest time one request may take in all, from its head: its body must arrive by then
    /// (else 408), and the waits and retries for it end there (503).
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    deadline: Duration,
    /// Longest wait credflow honours for a request (a 429's Retry-After, the rate-limit
    /// pacing's hold). A longer one is not waited for: the request is answered 503 at once,
    /// with a Retry-After of at most this, except one request per this interval, sent as the
    /// probe that finds out whether a limit the server set was lifted.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    max_wait: Duration,
    /// Fleet mode: share one token and one rate budget with every proxy and process of the
    /// same client id through Redis at this URL (redis://, or rediss:// for TLS: the server's
    /// certificate must then chain to the CAs of --ca-file if given, instead of the public
    /// roots; put a password in the environment variable, not in a flag value) [env:
    /// CREDFLOW_REDIS_URL]. Needs --fleet-key-file.
    #[arg(long, value_name = "URL")]
    pub(crate) redis: Option<UrlArg>,
    /// File holding the fleet key (16 bytes or more, the same on every member of the fleet): it
    /// seals the token stored in Redis.
    #[arg(long, env = "CREDFLOW_FLEET_KEY_FILE", hide_env_values = true, value_name = "PATH")]
    fleet_key_file: Option<String>,
    /// File holding the key that also encrypts the token stored in Redis (XChaCha20-Poly1305):
    /// 64 hexadecimal digits, 32 bytes (made by e.g. openssl rand -hex 32), one trailing line
    /// break allowed, the same on every member of the fleet. Without it the token in Redis is
    /// sealed (no one without the fleet key can forge one) but readable by whoever can read
    /// Redis.
    #[arg(long, env = "CREDFLOW_ENCRYPTION_KEY_FILE", hide_env_values = true, value_name = "PATH")]
    encryption_key_file: Option<String>,
    /// Accept a plain redis:// URL to a host that is not loopback: the Redis password and the
    /// tokens then cross the network in clear text (refused without it; use rediss://).
    #[arg(long)]
    allow_insecure_redis: bool,
    /// Share of each rate-limit window, in percent, that only critical requests may use
    /// (X-Credflow-Priority: critical); it shrinks to nothing at each reset.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(0..=90), value_name = "PERCENT")]
    critical_reserve: u16,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    drain: Duration,
    /// Threads serving requests. One (the default) costs the least CPU per request and serves
    /// far more requests than an API's rate limit lets through; more spread a busy proxy over
    /// several cores.
    #[arg(long, default_value_t = NonZeroUsize::MIN, value_name = "N")]
    pub(crate) threads: NonZeroUsize,
}

/// `250ms`, `5s`, `2m`, or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| format!("{text:?}: use e.g. 500ms, 5s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("{text:?}: use e.g. 500ms, 5s or 2m")),
    }
}

/// Runs the proxy until SIGTERM or Ctrl-C.
pub(crate) async fn run(target: &TargetArgs, args: ProxyArgs) -> Result<(), Failure> {
    if !args.listen.ip().is_loopback() {
        if !args.allow_non_loopback {
            return Err(Failure::usage(format!(
                "--listen {}: not a loopback address; other hosts could use this service's \
                 identity through it. Pass --allow-non-loopback (and --local-key-file) to do so",
                args.listen
            )));
        }
        if args.local_key_file.is_none() {
            return Err(Failure::usage(format!(
                "--listen {} --allow-non-loopback needs --local-key-file: without a key, \
                 anyone who reaches the address borrows this service's identity",
                args.listen
            )));
        }
    }
    if args.max_body == 0 || args.max_pending == 0 {
        return Err(Failure::usage("--max-body and --max-pending must be at least 1"));
    }
    if args.idle_timeout.is_zero() {
        return Err(Failure::usage("--idle-timeout must be longer than 0 (e.g. 500ms, 30s)"));
    }
    if args.max_wait.is_zero() {
        return Err(Failure::usage(
            "--max-wait 0: every request held back by a rate limit would be sent as its probe; \
             give a wait such as 60s",
        ));
    }
    let local_key = args.local_key_file.as_deref().map(read_local_key).transpose()?;
    let mut config = crate::build_config(target)?;
    config.token_wait = args.token_wait;
    config.session.retry.max_wait = args.max_wait.into();
    config.session.pacer.critical_reserve_permille = args.critical_reserve.saturating_mul(10);
    // The URL may carry the Redis password: these copies of it are wiped when dropped.
    let redis = args.redis.clone();
    let redis = redis.or_else(|| std::env::var("CREDFLOW_REDIS_URL").ok().map(UrlArg::from));
    if let Some(url) = redis.as_deref().filter(|u| !u.is_empty()) {
        let keys = FleetKeyFiles {
            fleet: args.fleet_key_file.as_deref(),
            encryption: args.encryption_key_file.as_deref(),
        };
        let store = fleet_store(url, keys, target.ca_file.as_deref(), args.allow_insecure_redis)?;
        config = config.with_shared(store);
    } else if args.fleet_key_file.is_some() {
        return Err(Failure::usage("--fleet-key-file without --redis: no fleet to share with"));
    } else if args.encryption_key_file.is_some() {
        return Err(Failure::usage(
            "--encryption-key-file without --redis: no token stored in Redis to encrypt",
        ));
    }
    // Before the client: its clock starts within `new`, so waits it names are never
    // under-counted (they are rounded up to whole seconds for Retry-After anyway).
    let started = std::time::Instant::now();
    let client = credflow_reqwest::Client::new(config)?;
    let settings = server::Settings {
        started,
        local_key,
        max_body: args.max_body,
        max_pending: args.max_pending,
        deadline: args.deadline,
        drain: args.drain,
        loopback_hosts_only: args.listen.ip().is_loopback(),
        max_connections: args.max_connections,
        idle_timeout: args.idle_timeout,
    };
    server::serve(client, args.listen, settings).await
}

/// The files of the keys that protect the token stored in Redis: `--fleet-key-file` (needed)
/// and `--encryption-key-file`.
struct FleetKeyFiles<'a> {
    fleet: Option<&'a str>,
    encryption: Option<&'a str>,
}

/// The fleet's shared store: Redis at `url`, the token sealed under the fleet key, and
/// encrypted under the encryption key when its file is given. Over TLS (`rediss://`), the
/// server's certificate must chain to the CAs of `ca_file` (`--ca-file`) when one is given,
/// else to the public webpki roots.
fn fleet_store(
    url: &str,
    keys: FleetKeyFiles<'_>,
    ca_file: Option<&str>,
    allow_insecure_redis: bool,
) -> Result<std::sync::Arc<dyn credflow_reqwest::SharedStore>, Failure> {
    let Some(path) = keys.fleet else {
        return Err(Failure::usage(
            "--redis needs --fleet-key-file (or CREDFLOW_FLEET_KEY_FILE): the key, the same on \
             every member of the fleet, that seals the token stored in Redis",
        ));
    };
    let key = credflow_reqwest::config::read_secret_file(path, "--fleet-key-file")?;
    let mut config = credflow_redis::RedisConfig::new(url, key.expose_secret().as_bytes());
    config.allow_insecure_redis = allow_insecure_redis;
    if let Some(path) = keys.encryption {
        // Decoded straight into the config's zeroizing field, through no buffer of its own.
        let key: &mut [u8; 32] =
            config.encryption_key.insert(Box::new(zeroize::Zeroizing::new([0; 32])));
        read_encryption_key(path, key)?;
    }
    // For a plain redis:// URL the CA file is the HTTPS side's alone.
    let tls = url.get(..9).is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"));
    if let Some(path) = ca_file.filter(|_| tls) {
        let pem = std::fs::read(path)
            .map_err(|e| Failure::usage(format!("--ca-file {path}: cannot read it: {e}")))?;
        config = config.with_root_ca_pem(pem);
    }
    let store = credflow_redis::RedisStore::new(config).map_err(|e| match e {
        credflow_redis::SetupError::InsecureRedis(host) => Failure::usage(format!(
            "--redis: redis:// to {host}, which is not loopback, would send the Redis password \
             and the tokens in clear text: use rediss:// (or a Unix socket), or pass \
             --allow-insecure-redis"
        )),
        e => Failure::usage(format!("--redis / --fleet-key-file: {e}")),
    })?;
    Ok(std::sync::Arc::new(store))
}

/// Reads the encryption key of `--encryption-key-file` at `path` into `key`: the file, read as
/// every secret file is (a regular file of at most 4 KiB, one trailing line break removed; see
/// `credflow_reqwest::config::read_secret_file`), holds the key's 32 bytes as 64 hexadecimal
/// digits, upper or lower case. Errors name the flag and the path, never the content.
fn read_encryption_key(path: &str, key: &mut [u8; 32]) -> Result<(), Failure> {
    let secret = credflow_reqwest::config::read_secret_file(path, "--encryption-key-file")?;
    decode_key(secret.expose_secret(), key).map_err(|why| {
        Failure::usage(format!(
            "--encryption-key-file {path}: {why}; the file must hold 64 hexadecimal digits, \
             the key's 32 bytes (make one with: openssl rand -hex 32)"
        ))
    })
}

/// Decodes the 64 hexadecimal digits of `text` into `key`; otherwise why not, without any of
/// `text` (it is a key, or whatever else the file held).
fn decode_key(text: &str, key: &mut [u8; 32]) -> Result<(), String> {
    let digits = text.as_bytes();
    if digits.len() != 2 * key.len() {
        return Err(format!("it holds {} characters, not 64", text.chars().count()));
    }
    let nibble = |digit: u8| char::from(digit).to_digit(16).and_then(|n| u8::try_from(n).ok());
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        match (pair.first().copied().and_then(nibble), pair.get(1).copied().and_then(nibble)) {
            (Some(high), Some(low)) => *byte = (high << 4) | low,
            _ => {
                // What was decoded so far is wiped with the config when the error ends the run.
                return Err("it holds a character that is not a hexadecimal digit".to_owned());
            }
        }
    }
    Ok(())
}

/// The local key: the file's first line, at least 16 bytes of visible ASCII.
fn read_local_key(path: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
    let secret = credflow_reqwest::config::read_secret_file(path, "--local-key-file")?;
    let key = zeroize::Zeroizing::new(secret.expose_secret().as_bytes().to_vec());
    if key.len() < 16 || !key.iter().all(|b| b.is_ascii_graphic()) {
        return Err(Failure::usage(format!(
            "--local-key-file {path}: the key must be at least 16 characters of visible ASCII \
             (no spaces): it is compared as a bearer token"
        )));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("ms").is_err());
    }

    /// An encryption key is 64 hexadecimal digits, either case; anything else is refused
    /// without showing what the file held.
    #[test]
    fn encryption_keys() {
        let mut key = [0u8; 32];
        let hex = "00112233445566778899aabbccddeeffFFEEDDCCBBAA99887766554433221100";
        assert_eq!(decode_key(hex, &mut key), Ok(()));
        assert_eq!(key[..4], [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(key[16..20], [0xff, 0xee, 0xdd, 0xcc]);
        assert_eq!(key[31], 0x00);
        let secret = "s3cr3t-key-material-s3cr3t-key-material-s3cr3t-key-material-s3cr";
        assert_eq!(secret.len(), 64);
        for bad in [&hex[..62], &format!("{hex}00"), secret, &format!("{} ", &hex[..63]), ""] {
            let why = decode_key(bad, &mut key).unwrap_err();
            assert!(!why.contains("s3cr3t") && !why.contains("0011"), "{why}");
        }
        assert!(decode_key(&hex[..62], &mut key).unwrap_err().contains("62 characters"));
        // 64 bytes, but one of them is no digit (a character of two bytes).
        let accented = format!("é{}", &hex[..62]);
        assert!(decode_key(&accented, &mut key).unwrap_err().contains("not a hexadecimal digit"));
        let sign = format!("+{}", &hex[..63]);
        assert!(decode_key(&sign, &mut key).unwrap_err().contains("not a hexadecimal digit"));
    }
}
