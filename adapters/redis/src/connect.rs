//! Where a [`RedisStore`](crate::RedisStore) connects and how it authenticates: the URL read
//! as the `redis` crate reads it, and with `rediss://` the operator's root CA and client
//! certificate, each checked when the store is built.

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use zeroize::Zeroizing;

use crate::{RedisConfig, SetupError};

/// What the URL says: the address (with no TLS parameters: this crate builds each
/// connection's TLS configuration itself), and the handshake, whose user and password are
/// kept apart from it, wiped on drop.
pub(crate) struct Target {
    pub(crate) addr: ConnectionAddr,
    /// The database and protocol; no user or password (see [`Target::handshake`]).
    pub(crate) base: RedisConnectionInfo,
    pub(crate) username: Option<Zeroizing<String>>,
    pub(crate) password: Option<Zeroizing<String>>,
}

impl Target {
    /// The handshake of one connection attempt, with its own copy of the user and password
    /// for the `redis` crate (which takes them as plain `String`s), wiped when the attempt ends
    /// or is cut off.
    pub(crate) fn handshake(&self) -> Handshake {
        Handshake(RedisConnectionInfo {
            username: self.username.as_deref().cloned(),
            password: self.password.as_deref().cloned(),
            ..self.base.clone()
        })
    }
}

/// One connection attempt's handshake information (see [`Target::handshake`]): its user and
/// password wiped on drop.
pub(crate) struct Handshake(pub(crate) RedisConnectionInfo);

impl Handshake {
    fn wipe(&mut self) {
        use zeroize::Zeroize;
        self.0.username.zeroize();
        self.0.password.zeroize();
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// Reads `config`'s URL, and checks the operator's root CA and client certificate when given.
/// The user and password the `redis` crate parses from the URL are moved into wiped
/// containers at once. (The URL parser's own copies of the URL's text are freed unwiped,
/// inside the `redis` and `url` crates: beyond this crate's reach.)
pub(crate) fn target(config: &RedisConfig) -> Result<Target, SetupError> {
    let info = config.url.as_str().into_connection_info().map_err(SetupError::Url)?;
    let redis::ConnectionInfo { addr, redis: mut base } = info;
    let username = base.username.take().map(Zeroizing::new);
    let password = base.password.take().map(Zeroizing::new);
    if let ConnectionAddr::Tcp(host, _) = &addr
        && !config.allow_insecure_redis
        && !is_loopback(host)
    {
        return Err(SetupError::InsecureRedis(host.clone()));
    }
    #[cfg(feature = "tls")]
    check_tls(config, &addr)?;
    Ok(Target { addr, base, username, password })
}

/// Whether `host` (as the `redis` crate parsed it: IPv6 without brackets) is loopback: an
/// address in `127.0.0.0/8`, `::1`, or the name `localhost` in any case. Decided on the text,
/// before anything is resolved.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks the `rediss://` root CA and client certificate, when given: both halves of the
/// client certificate set, a `rediss://` URL, every PEM holding what it should and parsing,
/// each root CA certificate a trust anchor rustls takes.
#[cfg(feature = "tls")]
fn check_tls(config: &RedisConfig, addr: &ConnectionAddr) -> Result<(), SetupError> {
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
        return Ok(());
    }
    if !matches!(addr, ConnectionAddr::TcpTls { .. }) {
        return Err(if config.root_ca_pem.is_some() {
            SetupError::RootCa("a root CA needs a rediss:// URL".to_owned())
        } else {
            SetupError::ClientCert("a client certificate needs a rediss:// URL".to_owned())
        });
    }
    if let Some(pem) = &config.root_ca_pem {
        check_certificates(pem).map_err(|e| SetupError::RootCa(format!("the PEM {e}")))?;
        check_trust_anchors(pem).map_err(SetupError::RootCa)?;
    }
    if let Some((cert, key)) = client_cert {
        check_certificates(cert)
            .map_err(|e| SetupError::ClientCert(format!("the certificate PEM {e}")))?;
        check_private_key(key).map_err(SetupError::ClientCert)?;
    }
    Ok(())
}

/// `Ok` if rustls takes every certificate of `pem` (which [`check_certificates`] passed) as a
/// trust anchor, as each connection adds them to its root store.
#[cfg(feature = "tls")]
fn check_trust_anchors(pem: &[u8]) -> Result<(), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("the PEM does not parse: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the PEM holds a certificate that is not a trust anchor: {e}"))?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain `redis://` URL is accepted to loopback only, unless allowed explicitly; the
    /// refusal is decided on the URL's text (`.invalid` never resolves), and `rediss://` and
    /// Unix sockets are not concerned.
    #[test]
    fn plain_redis_beyond_loopback_is_refused_unless_allowed() {
        let key = b"0123456789abcdef";
        for url in [
            "redis://127.0.0.1:6379/0",
            "redis://127.8.9.10/",
            "redis://[::1]:6379",
            "redis://LocalHost",
            "redis+unix:///run/redis.sock?pass=hunter2",
        ] {
            assert!(target(&RedisConfig::new(url, key)).is_ok(), "{url}");
        }
        for (url, host) in [
            ("redis://app:hunter2@redis.invalid:6379/0", "redis.invalid"),
            ("redis://10.0.0.7", "10.0.0.7"),
            ("redis://[::2]:6379", "::2"),
            ("redis://localhost.invalid", "localhost.invalid"),
            ("redis://127.0.0.1.invalid", "127.0.0.1.invalid"),
        ] {
            match target(&RedisConfig::new(url, key)) {
                Err(SetupError::InsecureRedis(named)) => assert_eq!(named, host, "{url}"),
                other => panic!("{url}: {:?}", other.err()),
            }
            let shown = SetupError::InsecureRedis(host.to_owned()).to_string();
            assert!(shown.contains("rediss://") && !shown.contains("hunter2"), "{shown}");
            assert!(target(&RedisConfig::new(url, key).with_insecure_redis()).is_ok(), "{url}");
        }
    }

    /// The store keeps the URL's user and password in wiped containers, apart from what the
    /// `redis` crate gets; its address carries no TLS parameters (the client key).
    #[test]
    fn the_target_keeps_the_password_apart() {
        let config = RedisConfig::new("redis://app:hunter2@127.0.0.1:1/2", b"0123456789abcdef");
        let target = target(&config).unwrap();
        assert_eq!(
            (target.base.username.as_deref(), target.base.password.as_deref()),
            (None, None)
        );
        assert_eq!(target.username.as_deref().map(String::as_str), Some("app"));
        assert_eq!(target.password.as_deref().map(String::as_str), Some("hunter2"));
        assert_eq!(target.base.db, 2);
    }

    /// An attempt's copy of the user and password, given to the `redis` crate, is wiped.
    #[test]
    fn a_handshake_copy_is_wiped() {
        let url = "redis+unix:///run/redis.sock?user=app&pass=hunter2&db=3";
        let target = target(&RedisConfig::new(url, b"0123456789abcdef")).unwrap();
        let mut handshake = target.handshake();
        assert_eq!(handshake.0.username.as_deref(), Some("app"));
        assert_eq!(handshake.0.password.as_deref(), Some("hunter2"));
        assert_eq!(handshake.0.db, 3);
        handshake.wipe();
        assert_eq!(
            (handshake.0.username.as_deref(), handshake.0.password.as_deref()),
            (None, None)
        );
        // The store's own copies stay, for the next attempt.
        assert_eq!(target.handshake().0.password.as_deref(), Some("hunter2"));
    }

    /// A throwaway self-signed certificate and its key (PEM), made by the `openssl` command as
    /// the integration tests make theirs.
    #[cfg(feature = "tls")]
    fn self_signed() -> (Vec<u8>, Vec<u8>) {
        let dir =
            std::env::temp_dir().join(format!("credflow-redis-connect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .args(["-nodes", "-days", "1", "-subj", "/CN=credflow-redis test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("the openssl command is installed (apt-get install -y openssl)");
        assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
        let pems = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
        let _ = std::fs::remove_dir_all(dir);
        pems
    }

    /// With a root CA and a client certificate, checked, the address the connections are made
    /// to carries no TLS parameters: the `redis` crate never has the decoded client key (it
    /// kept it, from `build_with_tls`, for as long as the store lived).
    #[cfg(feature = "tls")]
    #[test]
    fn the_redis_crate_never_has_the_client_key() {
        let (cert, key) = self_signed();
        let config = RedisConfig::new("rediss://app:hunter2@127.0.0.1:1/", b"0123456789abcdef")
            .with_root_ca_pem(cert.clone())
            .with_client_cert_pem(cert, key);
        let target = target(&config).unwrap();
        assert!(
            matches!(&target.addr, ConnectionAddr::TcpTls { tls_params: None, .. }),
            "{:?}",
            target.addr
        );
        assert_eq!(target.base.password, None);
    }
}
