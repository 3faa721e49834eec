//! HTTPS: the emulator's throwaway CA verifies its server for `localhost` and `127.0.0.1`,
//! routes work over TLS as over HTTP, and a client that does not trust the CA is refused.

use std::sync::Arc;

use base64::Engine as _;
use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn connector(roots: RootCertStore) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One request on a fresh TLS connection, the answer read until the server closes.
async fn exchange(
    tls: &TlsConnector,
    port: u16,
    name: &'static str,
    request: &str,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let server = ServerName::try_from(name).unwrap();
    let mut stream = tls.connect(server, tcp).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn token_request() -> String {
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET}"));
    let body = "grant_type=client_credentials";
    format!(
        "POST /oauth/token HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn serves_https_verified_by_its_ca_for_localhost_and_127_0_0_1() {
    let emu = Emulator::start(EmulatorConfig::default().with_tls(true)).await.unwrap();
    assert!(emu.base_url().starts_with("https://127.0.0.1:"));
    assert!(emu.token_url().starts_with("https://127.0.0.1:"));
    assert!(emu.ca_pem().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(emu.ca_der().unwrap().to_vec())).unwrap();
    let tls = connector(roots);
    let port = emu.addr().port();
    for name in ["localhost", "127.0.0.1"] {
        let answer = exchange(&tls, port, name, &token_request()).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{name}: {answer}");
        assert!(answer.contains("\"access_token\""), "{answer}");
    }
    assert_eq!(emu.counters().token.succeeded, 2);
}

#[tokio::test]
async fn a_client_without_the_ca_is_refused_and_so_is_plain_http() {
    let emu = Emulator::start(EmulatorConfig::default().with_tls(true)).await.unwrap();
    let port = emu.addr().port();
    // Another emulator's CA: a certificate from an unknown issuer.
    let other = Emulator::start(EmulatorConfig::default().with_tls(true)).await.unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(other.ca_der().unwrap().to_vec())).unwrap();
    let error = exchange(&connector(roots), port, "localhost", &token_request()).await;
    let error = error.unwrap_err().to_string();
    assert!(error.contains("invalid peer certificate"), "{error}");
    // The name must be one the certificate holds.
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(emu.ca_der().unwrap().to_vec())).unwrap();
    let error = exchange(&connector(roots), port, "api.mypurecloud.com", &token_request()).await;
    let error = error.unwrap_err().to_string();
    assert!(error.contains("not valid for name"), "{error}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(token_request().as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP/1.1 200"));
    assert_eq!(emu.counters().token.requests, 0);
}
