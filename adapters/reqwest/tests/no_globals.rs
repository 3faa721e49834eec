//! A library sets no process-wide state: building and using a `Client` leaves rustls' process
//! default crypto provider alone, so an application can still install its own. (A test binary
//! of its own: nothing else in this process may install one.)

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config};

#[tokio::test]
async fn a_client_installs_no_process_default_crypto_provider() {
    let server = Hostile::start(|_| {
        Reply::json(200, r#"{"access_token":"t","token_type":"bearer","expires_in":3600}"#)
    });
    let config = Config::custom(
        server.url("/oauth/token"),
        server.url("/api/"),
        credentials("globals-client", "globals-secret").unwrap(),
    );
    let client = Client::new(config).expect("a client");
    assert_eq!(client.token().await.expect("a token").as_str(), "t");
    assert!(
        rustls::crypto::CryptoProvider::get_default().is_none(),
        "Client::new installed a process-wide default crypto provider"
    );
    // The application's own choice still goes in.
    let installed = rustls::crypto::ring::default_provider().install_default();
    assert!(installed.is_ok(), "the application could not install its provider");
}
