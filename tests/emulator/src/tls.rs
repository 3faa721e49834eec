//! HTTPS: a throwaway certificate authority and a leaf certificate for `localhost` and
//! `127.0.0.1`, made when an emulator with [`EmulatorConfig::tls`](crate::EmulatorConfig::tls)
//! starts and forgotten when it stops.
//!
//! Clients under test trust the CA ([`EmulatorHandle::ca_pem`](crate::EmulatorHandle::ca_pem),
//! or the file `credflow emulator --tls` writes) and nothing else changes: the same routes,
//! faults and counters, over TLS 1.3 or 1.2. Keys are ECDSA P-256 and the server offers only
//! `http/1.1` in ALPN, which TLS stacks for microcontrollers (embedded-tls) also speak.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// The names the leaf certificate is valid for: loopback by name (RFC 6761 §6.3; the token
/// endpoint and the API as two origins, `login.localhost` and `api.localhost`, as Genesys
/// Cloud has them) and by address. Three names at most, and no wildcard: embedded-tls's
/// verifier reads three `subjectAltName` DNS names and takes `*` only left of two labels.
const LEAF_NAMES: [&str; 4] = ["localhost", "login.localhost", "api.localhost", "127.0.0.1"];

/// A test CA and the server's TLS configuration, signed by it.
pub(crate) struct TestPki {
    /// The CA certificate, PEM.
    pub(crate) ca_pem: String,
    /// The CA certificate, DER.
    pub(crate) ca_der: CertificateDer<'static>,
    pub(crate) acceptor: TlsAcceptor,
}

impl TestPki {
    /// A fresh CA (its key is dropped once the leaf is signed) and a leaf for
    /// [`LEAF_NAMES`].
    pub(crate) fn generate() -> Result<Self, String> {
        fn error(what: &'static str) -> impl Fn(rcgen::Error) -> String {
            move |e| format!("{what}: {e}")
        }
        let ca_key = KeyPair::generate().map_err(error("CA key"))?;
        let mut ca_params = CertificateParams::new(Vec::new()).map_err(error("CA"))?;
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params.distinguished_name.push(DnType::CommonName, "credflow-emulator test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(error("CA certificate"))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().map_err(error("server key"))?;
        let names = LEAF_NAMES.map(str::to_owned).to_vec();
        let mut leaf_params = CertificateParams::new(names).map_err(error("server"))?;
        leaf_params.distinguished_name = DistinguishedName::new();
        leaf_params.distinguished_name.push(DnType::CommonName, "localhost");
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.use_authority_key_identifier_extension = true;
        let leaf_cert =
            leaf_params.signed_by(&leaf_key, &issuer).map_err(error("server certificate"))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_no_client_auth()
            // The leaf alone: clients hold the CA, as they would hold a public root.
            .with_single_cert(vec![leaf_cert.der().clone()], key)
            .map_err(|e| format!("server TLS configuration: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}
