//! `Config::extra_root_certificates`: the std adapter over HTTPS to the emulator, whose
//! throwaway CA it trusts only when told (`read_ca_file`, as `credflow --ca-file` does).

use std::time::Duration;

use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use credflow_reqwest::config::{credentials, read_ca_file};
use credflow_reqwest::{Client, Config, ErrorKind};
use reqwest::Method;

fn config_for(token_url: String, api_base: String) -> Config {
    let mut config = Config::custom(
        token_url,
        api_base,
        credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap(),
    );
    config.seed = Some(1);
    config.token_wait = Duration::from_millis(1500);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulators_ca_from_its_pem_file_lets_tokens_and_api_requests_through_tls() {
    let emu = Emulator::start(EmulatorConfig::default().with_tls(true)).await.unwrap();
    let dir = std::env::temp_dir().join(format!("credflow-tls-roots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("ca.pem");
    std::fs::write(&pem, emu.ca_pem().unwrap()).unwrap();

    let mut config = config_for(emu.token_url(), emu.api_base());
    config.extra_root_certificates = read_ca_file(pem.to_str().unwrap()).unwrap();
    assert_eq!(config.extra_root_certificates.len(), 1);
    let client = Client::new(config).unwrap();
    let request = client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    assert!(request.url().as_str().starts_with("https://127.0.0.1:"));
    assert_eq!(client.send(request).await.unwrap().status(), 200);
    let seen = emu.counters();
    assert_eq!((seen.token.succeeded, seen.api.requests), (1, 1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_the_server_is_not_trusted_and_no_request_reaches_it() {
    let emu = Emulator::start(EmulatorConfig::default().with_tls(true)).await.unwrap();
    let client = Client::new(config_for(emu.token_url(), emu.api_base())).unwrap();
    let error = client.token().await.unwrap_err();
    assert_ne!(error.kind(), ErrorKind::Config, "{error}");
    let seen = emu.counters();
    assert_eq!((seen.token.requests, seen.api.requests), (0, 0));
}

#[test]
fn a_ca_file_without_a_certificate_is_refused_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("credflow-tls-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("empty.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    let error = read_ca_file(path.to_str().unwrap()).unwrap_err();
    assert_eq!(error.exit_code(), 2);
    assert!(error.to_string().contains("empty.pem"), "{error}");
    let missing = read_ca_file(dir.join("missing.pem").to_str().unwrap()).unwrap_err();
    assert!(missing.to_string().contains("missing.pem"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn extra_roots_beside_a_given_transport_are_refused_not_ignored() {
    let emu = Emulator::start(EmulatorConfig::default().with_tls(true)).await.unwrap();
    let roots = read_ca_pem(&emu);
    let mut config = config_for(emu.token_url(), emu.api_base());
    config.extra_root_certificates = roots.clone();
    config.transport = Some(credflow_reqwest::Transport::new().unwrap());
    let error = Client::new(config).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.to_string().contains("Transport::with_roots"), "{error}");

    // Given to the transport instead, they apply.
    let transport =
        credflow_reqwest::Transport::with_roots(Duration::from_secs(5), "credflow-test", &roots)
            .unwrap();
    let client = Client::builder(
        credflow_reqwest::Target::Custom { token_url: emu.token_url(), api_base: emu.api_base() },
        credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).unwrap(),
    )
    .transport(transport)
    .build()
    .unwrap();
    let request = client.request(Method::GET, "/api/v2/routing/queues").unwrap().build().unwrap();
    assert_eq!(client.send(request).await.unwrap().status(), 200);
}

fn read_ca_pem(
    emu: &credflow_emulator::EmulatorHandle,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let dir = std::env::temp_dir().join(format!("credflow-tls-given-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("ca.pem");
    std::fs::write(&pem, emu.ca_pem().unwrap()).unwrap();
    let roots = read_ca_file(pem.to_str().unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    roots
}
