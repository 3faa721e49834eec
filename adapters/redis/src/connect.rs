//! The Redis client a [`RedisStore`](crate::RedisStore) connects with: the URL alone, or
//! `rediss://` with the operator's root CA and client certificate, each checked when the store
//! is built.

#[cfg(feature = "tls")]
use zeroize::Zeroizing;

use crate::{RedisConfig, SetupError};

/// The Redis client for `config`: with the operator's root CA and client certificate when
/// given.
pub(crate) fn client(config: &RedisConfig) -> Result<redis::Client, SetupError> {
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
