//! Spans that operators can use (issue 15, item 11): one per token request and one per
//! attempt, with OpenTelemetry's HTTP client fields and credflow's own; the attempt that waited
//! for a refresh follows from that refresh's span; no field or event carries a secret.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credflow_emulator::hostile::{Hostile, Reply};
use credflow_reqwest::config::credentials;
use credflow_reqwest::{Client, Config};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

const CLIENT_ID: &str = "tracing-client";
const SECRET: &str = "s3cr3t-Tr4cing-VALUE";
const TOKENS: [&str; 2] = ["tok-FIRST-0a1b2c3d4e5f", "tok-SECOND-6a7b8c9d0e1f"];

/// One span as recorded: its name, fields (as text) and parent.
#[derive(Clone, Debug, Default)]
struct SpanRecord {
    name: &'static str,
    fields: BTreeMap<String, String>,
    parent: Option<usize>,
    closed: bool,
}

#[derive(Default)]
struct Recorded {
    spans: Vec<SpanRecord>,
    /// (span, the span it follows from), as indexes into `spans`.
    follows: Vec<(usize, usize)>,
    /// Every event's fields, as text.
    events: Vec<String>,
}

/// A layer that records every span, field, `follows_from` link and event.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Recorded>>);

/// The index of a span in `Recorded::spans`, kept in the span's extensions (ids are reused).
struct Index(usize);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut record = SpanRecord { name: attrs.metadata().name(), ..Default::default() };
        attrs.record(&mut Fields(&mut record.fields));
        let span = ctx.span(id).expect("a new span");
        record.parent = span.parent().and_then(|p| p.extensions().get::<Index>().map(|i| i.0));
        let mut recorded = self.0.lock().unwrap();
        span.extensions_mut().insert(Index(recorded.spans.len()));
        recorded.spans.push(record);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(index) = ctx.span(id).and_then(|s| s.extensions().get::<Index>().map(|i| i.0))
        else {
            return;
        };
        let mut recorded = self.0.lock().unwrap();
        values.record(&mut Fields(&mut recorded.spans[index].fields));
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        let index = |id| ctx.span(id).and_then(|s| s.extensions().get::<Index>().map(|i| i.0));
        if let (Some(span), Some(follows)) = (index(span), index(follows)) {
            self.0.lock().unwrap().follows.push((span, follows));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(index) = ctx.span(&id).and_then(|s| s.extensions().get::<Index>().map(|i| i.0))
        {
            self.0.lock().unwrap().spans[index].closed = true;
        }
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().events.push(format!("{fields:?}"));
    }
}

/// A token endpoint that grants the two tokens in turn, and an API that refuses the first
/// (401) and accepts the second. The second grant takes a moment: the retry after the 401
/// asks for its token before the refresh is done, and waits for it (on a fast machine an
/// immediate grant could land before the retry asks, which then waits for nothing).
fn server() -> Hostile {
    let grants = AtomicUsize::new(0);
    Hostile::start(move |req| {
        if req.path() == "/oauth/token" {
            let grant = grants.fetch_add(1, Ordering::SeqCst);
            let token = TOKENS[grant.min(1)];
            let body =
                format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#);
            let reply = Reply::json(200, &body);
            return if grant == 0 { reply } else { reply.delayed(Duration::from_millis(300)) };
        }
        match req.header("authorization") {
            Some(value) if value == format!("Bearer {}", TOKENS[1]) => Reply::json(200, "{}"),
            _ => Reply::json(401, r#"{"message":"token expired","code":"bad.credentials"}"#),
        }
    })
}

#[tokio::test]
async fn a_refresh_and_the_attempt_that_waited_for_it() {
    let recorder = Recorder::default();
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder.clone()));
    let server = server();
    let mut config = Config::custom(
        server.url("/oauth/token"),
        server.url("/api/v2/"),
        credentials(CLIENT_ID, SECRET).unwrap(),
    );
    config.seed = Some(11);
    let client = Client::new(config).unwrap();

    let response = client
        .send(client.request(reqwest::Method::GET, "users/me").unwrap().build().unwrap())
        .await;
    assert_eq!(response.expect("the retry with a fresh token").status(), 200);
    client.shutdown().await;

    let recorded = recorder.0.lock().unwrap();
    let named = |name: &str| -> Vec<(usize, &SpanRecord)> {
        recorded.spans.iter().enumerate().filter(|(_, s)| s.name == name).collect()
    };
    let field = |span: &SpanRecord, name: &str| span.fields.get(name).cloned();

    // Two token requests: the first token, then the refresh after the 401.
    let fetches = named("credflow.token_fetch");
    assert_eq!(fetches.len(), 2, "{:#?}", recorded.spans);
    let host = server.addr().ip().to_string();
    let port = server.addr().port().to_string();
    for (generation, (_, fetch)) in fetches.iter().enumerate() {
        assert_eq!(field(fetch, "http.request.method").as_deref(), Some("POST"));
        assert_eq!(field(fetch, "server.address"), Some(host.clone()));
        assert_eq!(field(fetch, "server.port"), Some(port.clone()));
        assert_eq!(field(fetch, "http.response.status_code").as_deref(), Some("200"));
        let generation = (generation + 1).to_string();
        assert_eq!(field(fetch, "credflow.token.generation"), Some(generation));
        assert_eq!(field(fetch, "error.type"), None);
    }

    // One request, two attempts under it: a 401 with the first token, then a 200 with the
    // second, named a resend.
    let sends = named("credflow.send");
    assert_eq!(sends.len(), 1);
    let (send_index, send) = sends[0];
    assert_eq!(field(send, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(field(send, "url.path").as_deref(), Some("/api/v2/users/me"));
    let attempts = named("credflow.attempt");
    assert_eq!(attempts.len(), 2, "{:#?}", recorded.spans);
    let (_, first) = attempts[0];
    let (second_index, second) = attempts[1];
    for (_, attempt) in &attempts {
        assert_eq!(attempt.parent, Some(send_index));
        assert_eq!(field(attempt, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(field(attempt, "server.address"), Some(host.clone()));
    }
    assert_eq!(field(first, "http.response.status_code").as_deref(), Some("401"));
    assert_eq!(field(first, "error.type").as_deref(), Some("401"));
    assert_eq!(field(first, "credflow.token.generation").as_deref(), Some("1"));
    assert_eq!(field(first, "credflow.retry.reason").as_deref(), Some("Reauthenticate"));
    assert!(field(first, "credflow.retry.wait_ms").is_some());
    assert_eq!(field(first, "http.request.resend_count"), None);
    assert_eq!(field(second, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(field(second, "credflow.token.generation").as_deref(), Some("2"));
    assert_eq!(field(second, "http.request.resend_count").as_deref(), Some("1"));
    assert_eq!(field(second, "error.type"), None);

    // The attempt that waited for the refresh follows from the refresh's span.
    let (refresh_index, _) = fetches[1];
    assert!(
        recorded.follows.contains(&(second_index, refresh_index)),
        "links: {:?}",
        recorded.follows
    );

    // No secret in any span field or event: not the client secret, not a token, not the
    // Basic credentials.
    let basic = server
        .requests()
        .iter()
        .find(|r| r.path() == "/oauth/token")
        .map(|r| r.basic_credentials().to_owned())
        .expect("a token request");
    assert!(!basic.is_empty());
    let everything = recorded
        .spans
        .iter()
        .flat_map(|s| s.fields.values().cloned())
        .chain(recorded.events.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!recorded.events.is_empty(), "events were recorded too");
    for secret in [SECRET, TOKENS[0], TOKENS[1], basic.as_str()] {
        assert!(!everything.contains(secret), "a secret in the traces: {everything}");
    }
}

/// A `token()` that had to wait (no token yet) is a span of its own, linked to the token
/// request it waited for.
#[tokio::test]
async fn a_token_wait_follows_from_its_fetch() {
    let recorder = Recorder::default();
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder.clone()));
    let server = server();
    let client = Client::new(Config::token_only(
        server.url("/oauth/token"),
        credentials(CLIENT_ID, SECRET).unwrap(),
    ))
    .unwrap();
    let token = client.token().await.unwrap();
    assert_eq!(token.generation(), 1);
    // The fetch's span closes (and an exporter sends it) soon after the answer, not when the
    // next token request replaces it, a token life later.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    {
        let recorded = recorder.0.lock().unwrap();
        let fetch = recorded.spans.iter().find(|s| s.name == "credflow.token_fetch");
        assert!(fetch.expect("a token_fetch span").closed, "the fetch's span is still open");
    }
    client.shutdown().await;

    let recorded = recorder.0.lock().unwrap();
    let index = |name: &str| recorded.spans.iter().position(|s| s.name == name);
    let wait = index("credflow.token_wait").expect("a token_wait span");
    let fetch = index("credflow.token_fetch").expect("a token_fetch span");
    assert!(recorded.follows.contains(&(wait, fetch)), "links: {:?}", recorded.follows);
    assert_eq!(
        recorded.spans[wait].fields.get("credflow.token.generation").map(String::as_str),
        Some("1")
    );
}
