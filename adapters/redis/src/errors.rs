//! Redis failures as the client's degraded mode reports them: the likely cause named, with its
//! fix, for the errors of a misconfigured deployment (password, ACL, TLS trust, client
//! certificate), read from the error's type: its [`redis::ErrorKind`], its server error code,
//! and the I/O and TLS errors in its source chain. Nothing is read from its message text but in
//! one case that has no other signal (see [`ACL_REFUSED_IN_SCRIPT`]).

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
    /// TLS: the connection's TLS configuration could not be built (a client key that is not
    /// the certificate's, say, or a crypto provider that cannot make one).
    ClientCertUnusable,
    /// TLS: the server's certificate is not trusted (or not valid for it).
    ServerCertUntrusted,
    /// The connection failed, timed out or dropped: Redis may come back.
    Transport,
    /// Anything else Redis answered.
    Other,
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
        rustls::Error::InconsistentKeys(_) => Some(Cause::ClientCertUnusable),
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
        // Building the connection's TLS configuration (from the client certificate and key,
        // on the crypto provider) failed: it is built on connecting; the URL was checked when
        // the store was built.
        ErrorKind::InvalidClientConfig => Cause::ClientCertUnusable,
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
        Cause::ClientCertUnusable => refused(format!(
            "TLS: the connection cannot be set up as configured ({e}); with a client \
             certificate (RedisConfig::with_client_cert_pem): is the private key the \
             certificate's?"
        )),
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
        let config = RedisError::from((
            ErrorKind::InvalidClientConfig,
            "Unable to build client with TLS parameters provided.",
            "anything".to_owned(),
        ));
        assert_eq!(cause(&config), Cause::ClientCertUnusable);
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
                Cause::ClientCertUnusable,
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
