//! Plain `http` token URLs and API bases to hosts that are not loopback: refused by
//! `Client::new`, through the core's URL check, before anything is resolved or connected; allowed,
//! with a warning, only under `Config::allow_insecure_http`. And userinfo in either URL is
//! refused without being repeated.
//!
//! Nothing here contacts a host that is not loopback. Refused hosts are under `.invalid`
//! (RFC 6761). The one host that is "not loopback" to the core but reachable is `127.1`: a short
//! spelling of 127.0.0.1 that resolvers disagree on (so the core does not vouch for it), which
//! reqwest's URL parser reads as 127.0.0.1, where a scripted server listens. Without the
//! opt-in, that server receiving nothing proves the refusal came before any connection; with
//! it, the token request arriving proves the opt-in lets the client through.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config, ErrorKind};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata};

const TOKEN: &str = r#"{"access_token":"t0ken","token_type":"bearer","expires_in":3600}"#;

fn token_server() -> Hostile {
    Hostile::start(|req| {
        if req.path() == "/oauth/token" { Reply::json(200, TOKEN) } else { Reply::status(404) }
    })
}

fn config(token_url: &str, api_base: &str) -> Config {
    let mut config = Config::custom(token_url, api_base, credentials("client", "s3cret").unwrap());
    config.seed = Some(1);
    config.token_wait = Duration::from_secs(2);
    config
}

/// `http://127.1:PORT`: the server's port on a spelling of 127.0.0.1 the core does not trust.
fn short_spelling(server: &Hostile, path: &str) -> String {
    format!("http://127.1:{}{path}", server.addr().port())
}

/// Long enough for a token driver that had been started to reach the server.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_plain_http_token_url_off_the_machine_is_refused_at_once() {
    let e = Client::new(config(
        "http://auth.example.invalid/oauth/token",
        "https://api.example.invalid",
    ))
    .unwrap_err();
    assert_eq!((e.kind(), e.exit_code()), (ErrorKind::Config, 2));
    let text = e.to_string();
    assert!(
        text.contains("token URL \"http://auth.example.invalid/oauth/token\"")
            && text.contains("clear text")
            && text.contains("https"),
        "{text}"
    );
}

#[tokio::test]
async fn a_plain_http_api_base_off_the_machine_is_refused_before_any_token_request() {
    let server = token_server();
    let e =
        Client::new(config(&server.url("/oauth/token"), "http://api.example.invalid")).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("API base \"http://api.example.invalid\""), "{e}");
    settle().await;
    assert!(server.requests().is_empty(), "no token request for a client that was refused");
}

#[tokio::test]
async fn the_refusal_comes_before_any_connection() {
    let server = token_server();
    let e =
        Client::new(config(&short_spelling(&server, "/oauth/token"), &short_spelling(&server, "")))
            .unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("clear text"), "{e}");
    settle().await;
    assert!(server.requests().is_empty(), "reqwest would have reached it: nothing was sent");
}

#[tokio::test]
async fn with_the_opt_in_the_client_sends_and_warns() {
    let server = token_server();
    let mut config = config(&short_spelling(&server, "/oauth/token"), &short_spelling(&server, ""));
    config.allow_insecure_http = true;
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let client = {
        let _capture = tracing::subscriber::set_default(Warnings(Arc::clone(&warnings)));
        Client::new(config).unwrap()
    };
    let warnings = warnings.lock().unwrap().clone();
    assert_eq!(warnings.len(), 2, "one warning per URL: {warnings:?}");
    let token_url = short_spelling(&server, "/oauth/token");
    assert!(
        warnings[0].contains("allow_insecure_http")
            && warnings[0].contains(&token_url)
            && warnings[0].contains("client credentials"),
        "{warnings:?}"
    );
    assert!(warnings[1].contains("bearer tokens"), "{warnings:?}");

    assert_eq!(client.token().await.unwrap().as_str(), "t0ken");
    assert_eq!(server.requests_to("/oauth/token"), 1);
}

#[tokio::test]
async fn loopback_needs_no_opt_in_and_no_warning() {
    let server = token_server();
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let client = {
        let _capture = tracing::subscriber::set_default(Warnings(Arc::clone(&warnings)));
        Client::new(config(&server.url("/oauth/token"), &server.url(""))).unwrap()
    };
    assert!(warnings.lock().unwrap().is_empty());
    assert_eq!(client.token().await.unwrap().as_str(), "t0ken");
}

#[tokio::test]
async fn userinfo_is_refused_and_never_repeated() {
    let server = token_server();
    let with_userinfo = format!("http://alice:pw@{}/oauth/token", server.addr());
    for config in [
        config(&with_userinfo, &server.url("")),
        config(&server.url("/oauth/token"), &format!("http://alice:pw@{}", server.addr())),
        config(&format!("http://alice:p/w@{}/oauth/token", server.addr()), &server.url("")),
    ] {
        let shown = format!("{config:?}");
        assert!(!shown.contains("pw") && !shown.contains("alice"), "{shown}");
        let e = Client::new(config).unwrap_err();
        let text = format!("{e} {e:?}");
        assert_eq!(e.exit_code(), 2);
        assert!(text.contains("***@"), "{text}");
        assert!(!text.contains("pw") && !text.contains("p/w") && !text.contains("alice"), "{text}");
    }
    let e = Client::new(config(&with_userinfo, &server.url(""))).unwrap_err();
    assert!(e.to_string().contains("not allowed"), "{e}");
    settle().await;
    assert!(server.requests().is_empty());
}

/// Records the text of every `WARN` event dispatched on this thread.
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, "{}={value} ", field.name());
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == Level::WARN {
            let mut text = String::new();
            event.record(&mut Text(&mut text));
            self.0.lock().unwrap().push(text);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
