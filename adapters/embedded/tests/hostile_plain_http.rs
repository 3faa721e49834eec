//! Plain `http` to a host that is not loopback: refused by the core's URL check when the client
//! is built, before the connector is ever asked to resolve or connect, unless the application
//! opted in. Hosts are under `.invalid` (RFC 6761), and nothing here connects anywhere: the
//! connector fails the test if it is called at all.

use credflow_core::http::url::{PlainHttp, UrlError};
use credflow_core::secret::Credentials;
use credflow_core::session::{Session, SessionConfig, SetupError, TokenEndpoint};
use credflow_embedded::{Client, ClientConfig, Connector, InvalidUrl, Target};

/// A connector that must never be used.
struct Never;

impl Connector for Never {
    type Connection = embedded_io_adapters::tokio_1::FromTokio<tokio::net::TcpStream>;
    type Error = ();

    async fn connect(&mut self, target: &Target) -> Result<Self::Connection, ()> {
        panic!("connect({target:?}) called: the URL should have been refused first");
    }
}

fn session(endpoint: TokenEndpoint) -> Session<1024, 1> {
    let credentials = Credentials::from_strs("client-id", "client-secret").unwrap();
    Session::new(credentials, endpoint, SessionConfig::default(), 7).unwrap()
}

fn https_endpoint() -> TokenEndpoint {
    TokenEndpoint::new("https://auth.example.invalid/oauth/token").unwrap()
}

#[test]
fn a_plain_http_api_base_off_the_machine_is_refused_when_the_client_is_built() {
    let refused = |api_base: &str| {
        Client::new(Never, session(https_endpoint()), api_base, ClientConfig::default()).err()
    };
    let insecure = Some(InvalidUrl::Url(UrlError::InsecureHttp));
    assert_eq!(refused("http://api.example.invalid"), insecure);
    assert_eq!(refused("http://10.0.0.1:8080"), insecure);
    assert_eq!(refused("http://127.1"), insecure, "not a spelling every resolver reads alike");
    assert_eq!(refused("http://user:pw@127.0.0.1:1"), Some(InvalidUrl::Url(UrlError::UserInfo)));
    for fine in
        ["http://127.0.0.1:8089", "http://[::1]:8089", "http://localhost", "https://a.invalid"]
    {
        assert_eq!(refused(fine), None, "{fine}");
    }
}

#[test]
fn a_plain_http_token_url_off_the_machine_is_refused_by_the_endpoint() {
    let url = "http://auth.example.invalid/oauth/token";
    assert_eq!(
        TokenEndpoint::<64>::new(url),
        Err(SetupError::InvalidTokenUrl(UrlError::InsecureHttp))
    );
    assert_eq!(Target::from_url(url), Err(InvalidUrl::Url(UrlError::InsecureHttp)));
}

#[test]
fn the_opt_in_is_explicit_and_per_url() {
    let url = "http://auth.example.invalid/oauth/token";
    let endpoint = TokenEndpoint::new_with_plain_http(url, PlainHttp::Anywhere).unwrap();
    // The token URL's opt-in does not cover the API base: that is the client configuration's.
    let err = Client::new(
        Never,
        session(endpoint.clone()),
        "http://api.example.invalid",
        ClientConfig::default(),
    )
    .err();
    assert_eq!(err, Some(InvalidUrl::Url(UrlError::InsecureHttp)));

    let config = ClientConfig { plain_http: PlainHttp::Anywhere, ..ClientConfig::default() };
    let client =
        Client::new(Never, session(endpoint), "http://api.example.invalid", config).unwrap();
    let shown = format!("{client:?}");
    assert!(
        shown.contains("http://auth.example.invalid:80")
            && shown.contains("http://api.example.invalid:80"),
        "{shown}"
    );
    // Built, not driven: nothing was resolved or connected (`Never` would have panicked).
}
