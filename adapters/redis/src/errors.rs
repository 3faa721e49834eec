//! Redis failures as the client's degraded mode reports them: the likely cause named, with its
//! fix, for the errors of a misconfigured deployment (password, ACL, TLS trust, client
//! certificate), read from the error's type: its [`redis::ErrorKind`], its server error code,
//! the I/O and TLS errors in its source chain, and for the `InvalidClientConfig` errors this
//! crate makes when it connects, which of them it is ([`Unusable`]). Nothing is read from a
//! message's text but in one case that has no other signal (see [`ACL_REFUSED_IN_SCRIPT`]).

use credflow_reqwest::shared::StoreError;
use redis::{ErrorKind, RedisError};

use crate::ACL_COMMANDS;

/// The reply Redis 7.0 and 7.1 give when a script's `redis.call` is refused by the ACL: a
/// generic `ERR` (Redis 7.2 and later answer `NOPERM`, as to a command refused directly). The
/// server's fixed text is the only sign of the cause, matched at the start of the detail.
const ACL_REFUSED_IN_SCRIPT: &str = "The user executing the script can't run this command";

/// Why a Redis call failed, as far as the error's type tells.
// Without the `tls` feature there is no TLS error to find the TLS causes in.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The server refused the URL's user and password.
    Authentication,
    /// The ACL user lacks a command or key permission.
    Permission,
    /// TLS: the server wants a client certificate and got none.
    ClientCertRequired,
    /// TLS: the server refused the client certificate (one of RFC 8446 §6.2's alerts for it).
    ClientCertRejected,
    /// The connection could not be set up as configured, for the reason named.
    Unusable(Unusable),
    /// TLS: the server's certificate is not trusted (or not valid for it).
    ServerCertUntrusted,
    /// The connection failed, timed out or dropped: Redis may come back.
    Transport,
    /// Anything else Redis answered.
    Other,
}

/// Why a connection could not be set up as configured: one for each `InvalidClientConfig` error
/// this crate makes when it connects ([`Unusable::error`]), so that each is reported under its
/// own label, with its own fix. An `InvalidClientConfig` error of another origin (the `redis`
/// crate's) is reported as it is ([`Cause::Other`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// TLS: rustls does not take the client certificate with its key (a key that is not the
    /// certificate's, or of a kind it cannot sign with), or their PEM does not parse.
    ClientCert,
    /// TLS: a certificate of the root CA does not parse or is not a trust anchor rustls takes.
    RootCa,
    /// TLS: the rustls crypto provider cannot make a TLS client configuration (no cipher suite
    /// for the protocol versions).
    CryptoProvider,
    /// TLS: the URL's host is neither a DNS name nor an IP address, which a server's certificate
    /// is checked against.
    TlsHost,
    /// A `rediss://` URL ending in `#insecure` (no check of the server's certificate), which
    /// this crate does not do.
    Insecure,
    /// A kind of connection this build or platform does not have: `rediss://` without the
    /// `tls` feature, a Unix socket elsewhere than on Unix.
    Unsupported,
}

impl Unusable {
    /// Every reason, to tell which one an error is.
    const ALL: [Unusable; 6] = [
        Unusable::ClientCert,
        Unusable::RootCa,
        Unusable::CryptoProvider,
        Unusable::TlsHost,
        Unusable::Insecure,
        Unusable::Unsupported,
    ];

    /// The description of its error: the one part of a `RedisError` made from a pair or a
    /// triple that this crate chooses and reads back, one for each reason.
    fn description(self) -> &'static str {
        match self {
            Unusable::ClientCert => "the client certificate and key cannot be used",
            Unusable::RootCa => "the root CA cannot be used",
            Unusable::CryptoProvider => {
                "the rustls crypto provider cannot make a TLS client configuration"
            }
            Unusable::TlsHost => {
                "the URL's host is not a name a certificate can be checked against"
            }
            Unusable::Insecure => {
                "#insecure (no check of the server's certificate) is not supported"
            }
            Unusable::Unsupported => "not supported by this build or platform",
        }
    }

    /// The `InvalidClientConfig` error of this reason, saying `detail`.
    pub(crate) fn error(self, detail: impl Into<String>) -> RedisError {
        RedisError::from((ErrorKind::InvalidClientConfig, self.description(), detail.into()))
    }

    /// The reason `e` was made with by [`Unusable::error`], if it was.
    pub(crate) fn of(e: &RedisError) -> Option<Unusable> {
        if e.kind() != ErrorKind::InvalidClientConfig {
            return None;
        }
        // `RedisError` gives the description it was made with through this method only; the
        // descriptions compared are this crate's own, never a server's text.
        #[allow(deprecated)]
        let description = std::error::Error::description(e);
        Unusable::ALL.into_iter().find(|reason| reason.description() == description)
    }
}

/// The first TLS error in `e`'s source chain, looking inside I/O errors (whose `source` skips
/// the error they wrap: `get_ref` reaches it).
#[cfg(feature = "tls")]
pub(crate) fn tls_error(e: &RedisError) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// What a TLS error says of the deployment, if anything.
#[cfg(feature = "tls")]
fn tls_cause(e: &rustls::Error) -> Option<Cause> {
    use rustls::AlertDescription as Alert;
    match e {
        rustls::Error::AlertReceived(Alert::CertificateRequired) => Some(Cause::ClientCertRequired),
        rustls::Error::AlertReceived(
            Alert::UnknownCA
            | Alert::BadCertificate
            | Alert::CertificateUnknown
            | Alert::UnsupportedCertificate
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::AccessDenied,
        ) => Some(Cause::ClientCertRejected),
        rustls::Error::InconsistentKeys(_) => Some(Cause::Unusable(Unusable::ClientCert)),
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            Some(Cause::ServerCertUntrusted)
        }
        _ => None,
    }
}

/// Classifies `e` (see [`Cause`]).
pub(crate) fn cause(e: &RedisError) -> Cause {
    #[cfg(feature = "tls")]
    if let Some(cause) = tls_error(e).and_then(tls_cause) {
        return cause;
    }
    let refused_in_script = e.kind() == ErrorKind::ResponseError
        && e.detail().is_some_and(|d| d.starts_with(ACL_REFUSED_IN_SCRIPT));
    match e.kind() {
        ErrorKind::AuthenticationFailed => Cause::Authentication,
        _ if e.code() == Some("NOPERM") || refused_in_script => Cause::Permission,
        // The connection could not be set up as configured (its TLS configuration is built on
        // connecting; the URL was checked when the store was built): under its own reason if
        // this crate made the error, else as it is.
        ErrorKind::InvalidClientConfig => Unusable::of(e).map_or(Cause::Other, Cause::Unusable),
        _ if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal() =>
        {
            Cause::Transport
        }
        _ => Cause::Other,
    }
}

/// A Redis error as the client's degraded mode reports it: `Unavailable` for a transport
/// failure (Redis may come back), `Refused` otherwise, with the cause and its fix said when the
/// error's type names one.
pub(crate) fn unavailable(e: RedisError) -> StoreError {
    let refused = |why: String| StoreError::Refused(why);
    match cause(&e) {
        Cause::Authentication => refused(format!(
            "Redis refused the user and password of the URL ({e}); check them, and that the \
             user is enabled"
        )),
        Cause::Permission => refused(format!(
            "the Redis ACL user lacks a permission ({e}); it needs {} on the keys <prefix>:*",
            ACL_COMMANDS.join(" ")
        )),
        Cause::ClientCertRequired => refused(format!(
            "TLS: the Redis server requires a client certificate ({e}); give one that its CA \
             signed with RedisConfig::with_client_cert_pem"
        )),
        Cause::ClientCertRejected => refused(format!(
            "TLS: the Redis server refused the client certificate ({e}); it must be signed by a \
             CA the server trusts (its tls-ca-cert-file), be valid now and allow client \
             authentication (RedisConfig::with_client_cert_pem)"
        )),
        Cause::Unusable(Unusable::ClientCert) => refused(format!(
            "TLS: the client certificate cannot be used ({e}); give the certificate with its \
             own private key, both PEM (RedisConfig::with_client_cert_pem): is the key the \
             certificate's?"
        )),
        Cause::Unusable(Unusable::RootCa) => refused(format!(
            "TLS: the root CA cannot be used ({e}); RedisConfig::with_root_ca_pem (the credflow \
             command: --ca-file) takes PEM CA certificates"
        )),
        Cause::Unusable(Unusable::CryptoProvider) => refused(format!(
            "TLS: the rustls crypto provider cannot make a TLS client configuration ({e}); the \
             provider the application installed as the process's default \
             (CryptoProvider::install_default) must have cipher suites for TLS 1.2 or 1.3"
        )),
        Cause::Unusable(Unusable::TlsHost) => refused(format!(
            "TLS: the host of the rediss:// URL is neither a DNS name nor an IP address, which \
             the server's certificate is checked against ({e}); use the name its certificate \
             gives"
        )),
        Cause::Unusable(Unusable::Insecure) => refused(format!(
            "the rediss:// URL asks for no check of the server's certificate ({e}); remove \
             #insecure, and trust a private CA with RedisConfig::with_root_ca_pem (the credflow \
             command: --ca-file)"
        )),
        Cause::Unusable(Unusable::Unsupported) => {
            refused(format!("this kind of Redis connection cannot be made here ({e})"))
        }
        Cause::ServerCertUntrusted => refused(format!(
            "TLS: the Redis server's certificate is not trusted ({e}); if a private CA signed \
             it, trust that CA with RedisConfig::with_root_ca_pem (the credflow command: \
             --ca-file)"
        )),
        Cause::Transport => StoreError::Unavailable(e.to_string()),
        Cause::Other => refused(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn io_error(kind: io::ErrorKind) -> RedisError {
        RedisError::from(io::Error::from(kind))
    }

    #[test]
    fn server_replies_by_kind_and_code() {
        let auth =
            RedisError::from((ErrorKind::AuthenticationFailed, "Password authentication failed"));
        assert_eq!(cause(&auth), Cause::Authentication);
        let noperm = redis::make_extension_error(
            "NOPERM".into(),
            Some("User app has no permissions to run the 'zadd' command".into()),
        );
        assert_eq!(cause(&noperm), Cause::Permission);
        let in_script = RedisError::from((
            ErrorKind::ResponseError,
            "An error was signalled by the server",
            "The user executing the script can't run this command or subcommand script: \
             f_0123, on @user_script:5."
                .to_owned(),
        ));
        assert_eq!(cause(&in_script), Cause::Permission);
        // The same words elsewhere than at the start of an ERR reply are not an ACL refusal.
        let echoed = RedisError::from((
            ErrorKind::ResponseError,
            "An error was signalled by the server",
            format!("WRONGTYPE {ACL_REFUSED_IN_SCRIPT}"),
        ));
        assert_eq!(cause(&echoed), Cause::Other);
        let other = redis::make_extension_error("NOPERMS".into(), None);
        assert_eq!(cause(&other), Cause::Other);
        let config = Unusable::ClientCert.error("KeyMismatch");
        assert_eq!(cause(&config), Cause::Unusable(Unusable::ClientCert));
    }

    /// Each cause of an `InvalidClientConfig` error is reported under its own label, with its
    /// own fix: only the TLS ones say "TLS", only the client certificate's names the client
    /// certificate; one this crate did not make (the `redis` crate's) is reported as it is.
    /// All were said as the client certificate's ("TLS: the connection cannot be set up as
    /// configured (…); with a client certificate …: is the private key the certificate's?").
    #[test]
    fn each_unusable_configuration_under_its_own_label() {
        let cases = [
            (
                Unusable::ClientCert,
                "TLS: the client certificate cannot be used",
                "with_client_cert_pem",
            ),
            (Unusable::RootCa, "TLS: the root CA cannot be used", "--ca-file"),
            (Unusable::CryptoProvider, "TLS: the rustls crypto provider", "install_default"),
            (Unusable::TlsHost, "TLS: the host of the rediss:// URL", "the name its certificate"),
            (Unusable::Insecure, "the rediss:// URL asks for no check", "remove #insecure"),
            (Unusable::Unsupported, "this kind of Redis connection cannot be made here", "detail"),
        ];
        assert_eq!(cases.len(), Unusable::ALL.len());
        for (reason, label, fix) in cases {
            let e = reason.error("detail");
            assert_eq!(Unusable::of(&e), Some(reason));
            assert_eq!(cause(&e), Cause::Unusable(reason));
            let StoreError::Refused(why) = unavailable(e) else { panic!("{reason:?}") };
            assert!(why.starts_with(label) && why.contains(fix), "{reason:?}: {why}");
            assert!(why.contains("detail"), "{reason:?}: the error itself is said: {why}");
            assert_eq!(
                why.contains("client certificate") || why.contains("private key"),
                reason == Unusable::ClientCert,
                "{reason:?}: {why}"
            );
        }
        // The `redis` crate's own, with a description of its choosing.
        for theirs in [
            RedisError::from((
                ErrorKind::InvalidClientConfig,
                "RESP3 is required for this command",
            )),
            RedisError::from((
                ErrorKind::InvalidClientConfig,
                "Unable to build client with TLS parameters provided.",
                "anything".to_owned(),
            )),
        ] {
            assert_eq!(Unusable::of(&theirs), None, "{theirs}");
            assert_eq!(cause(&theirs), Cause::Other, "{theirs}");
            let StoreError::Refused(why) = unavailable(theirs) else { panic!() };
            assert!(!why.contains("TLS:") && !why.contains("private key"), "{why}");
        }
        // Another kind with the same words is not one of them.
        let other = RedisError::from((ErrorKind::ResponseError, Unusable::RootCa.description()));
        assert_eq!(Unusable::of(&other), None);
    }

    #[test]
    fn transport_failures_are_unavailable_and_the_rest_refused() {
        for kind in
            [io::ErrorKind::ConnectionRefused, io::ErrorKind::TimedOut, io::ErrorKind::BrokenPipe]
        {
            let e = io_error(kind);
            assert_eq!(cause(&e), Cause::Transport, "{kind:?}");
            assert!(matches!(unavailable(e), StoreError::Unavailable(_)), "{kind:?}");
        }
        let busy = RedisError::from((ErrorKind::BusyLoadingError, "loading"));
        assert!(matches!(unavailable(busy), StoreError::Refused(_)));
        let noperm = redis::make_extension_error("NOPERM".into(), None);
        match unavailable(noperm) {
            StoreError::Refused(why) => assert!(why.contains(&ACL_COMMANDS.join(" ")), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// A TLS error is found inside the I/O error the handshake failed with, as tokio-rustls
    /// reports it, however deep.
    #[cfg(feature = "tls")]
    #[test]
    fn tls_errors_in_the_source_chain() {
        use rustls::AlertDescription as Alert;
        let during_handshake =
            |e: rustls::Error| RedisError::from(io::Error::new(io::ErrorKind::InvalidData, e));
        let cases = [
            (rustls::Error::AlertReceived(Alert::CertificateRequired), Cause::ClientCertRequired),
            (rustls::Error::AlertReceived(Alert::UnknownCA), Cause::ClientCertRejected),
            (rustls::Error::AlertReceived(Alert::BadCertificate), Cause::ClientCertRejected),
            (rustls::Error::AlertReceived(Alert::AccessDenied), Cause::ClientCertRejected),
            (
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                Cause::ServerCertUntrusted,
            ),
            (
                rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
                Cause::ServerCertUntrusted,
            ),
            (
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch),
                Cause::Unusable(Unusable::ClientCert),
            ),
            // Not a deployment's mistake that TLS names: a failed connection.
            (rustls::Error::AlertReceived(Alert::InternalError), Cause::Transport),
            (rustls::Error::HandshakeNotComplete, Cause::Transport),
        ];
        for (tls, expected) in cases {
            let shown = format!("{tls:?}");
            assert_eq!(cause(&during_handshake(tls)), expected, "{shown}");
        }
        let nested = io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(Alert::CertificateRequired),
        ));
        assert_eq!(cause(&RedisError::from(nested)), Cause::ClientCertRequired);
        match unavailable(during_handshake(rustls::Error::AlertReceived(
            Alert::CertificateRequired,
        ))) {
            StoreError::Refused(why) => assert!(why.contains("with_client_cert_pem"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
