//! Per-event cost of the core session and parser throughput.
//!
//! The core is `#![no_std]` without `alloc`: nothing measured here can allocate (there is no
//! allocator to call), so these are pure CPU costs.

use std::hint::black_box;

use credflow_core::classify::classify_response;
use credflow_core::http::Method;
use credflow_core::oauth::{ResponseOptions, parse_token_response};
use credflow_core::ratelimit::headers::parse_rate_limit;
use credflow_core::secret::Credentials;
use credflow_core::session::{Authorize, HostKey, RequestSpec, TokenEndpoint, Verdict};
use credflow_core::{Duration, Instant, Session, SessionConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TOKEN_BODY: &[u8] = br#"{"access_token":"eyJhbGciOiJIUzI1NiJ9.c2ltdWxhdGVkLXRva2VuLWJvZHktb2YtcmVhbGlzdGljLWxlbmd0aA.dGVzdA","token_type":"bearer","expires_in":86400}"#;
const OK_HEADERS: [(&str, &str); 4] = [
    ("content-type", "application/json"),
    ("inin-ratelimit-count", "1"),
    ("inin-ratelimit-allowed", "1000000000"),
    ("inin-ratelimit-reset", "60"),
];
const OK_CORRELATED_HEADERS: [(&str, &str); 6] = [
    ("content-type", "application/json"),
    ("date", "Sun, 06 Dec 2026 09:00:00 GMT"),
    ("inin-correlation-id", "5f0e3a4c-3d1b-4c7e-9a43-2b6f1f0c9d11"),
    ("inin-ratelimit-count", "1"),
    ("inin-ratelimit-allowed", "1000000000"),
    ("inin-ratelimit-reset", "60"),
];
const PLAIN_HEADERS: [(&str, &str); 3] = [
    ("content-type", "application/json"),
    ("content-length", "2"),
    ("date", "Sun, 06 Dec 2026 09:00:00 GMT"),
];
const LIMITED_HEADERS: [(&str, &str); 5] = [
    ("content-type", "application/json"),
    ("inin-ratelimit-count", "300"),
    ("inin-ratelimit-allowed", "300"),
    ("inin-ratelimit-reset", "42"),
    ("retry-after", "42"),
];
const LIMITED_BODY: &[u8] = br#"{"message":"Rate limit exceeded the maximum. Retry the request in [42] seconds","code":"too.many.requests.retry.after","status":429,"contextId":"5f0e3a4c-3d1b-4c7e-9a43-2b6f1f0c9d11","details":[],"errors":[]}"#;

/// A session holding a fresh token at time zero.
fn session_with_token() -> Session {
    let credentials = Credentials::from_strs("bench-client", "bench-secret").expect("credentials");
    let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").expect("url");
    let mut session: Session =
        Session::new(credentials, endpoint, SessionConfig::default(), 1).expect("session");
    let mut buf = [0u8; 1024];
    let (ticket, _) =
        session.poll_token_request(Instant::ZERO, &mut buf).expect("encodes").expect("due");
    session.handle_token_response(
        Instant::from_millis(100),
        ticket,
        200,
        &[("content-type", "application/json")],
        TOKEN_BODY,
    );
    while session.poll_event().is_some() {}
    session
}

fn session_events(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Elements(1));
    let mut session = session_with_token();
    let host = HostKey::from_host("api.mypurecloud.com");
    let mut now = Instant::from_secs(1);
    // A Genesys answer (its rate-limit fields; with its correlation id), and an answer
    // with no rate-limit field at all (the loopback server of the reqwest adapter's bench).
    let responses: [(&str, &[(&str, &str)]); 3] = [
        ("200", &OK_HEADERS),
        ("200, correlation id", &OK_CORRELATED_HEADERS),
        ("200, no rate-limit fields", &PLAIN_HEADERS),
    ];
    for (name, headers) in responses {
        group.bench_function(format!("begin+authorize+handle_response ({name})"), |b| {
            b.iter(|| {
                now = now + Duration::from_millis(1);
                let mut req = session.begin(now, RequestSpec::new(Method::Get, host));
                match session.authorize(now, &mut req) {
                    Authorize::Send { token, .. } => {
                        black_box(token.as_str());
                    }
                    other => panic!("not sent: {other:?}"),
                }
                let verdict = session.handle_response(now, &mut req, 200, headers, b"{}");
                assert_eq!(verdict, Verdict::Done);
            })
        });
    }
    group.bench_function("poll_timeout", |b| {
        b.iter(|| black_box(black_box(&session).poll_timeout()))
    });
    group.finish();
}

fn parsers(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(TOKEN_BODY.len() as u64));
    let opts = ResponseOptions::default();
    group.bench_function("token response", |b| {
        b.iter(|| black_box(parse_token_response::<2048>(black_box(TOKEN_BODY), &opts).is_ok()))
    });
    let header_bytes: usize = OK_HEADERS.iter().map(|(n, v)| n.len() + v.len()).sum();
    group.throughput(Throughput::Bytes(header_bytes as u64));
    group.bench_function("inin-ratelimit headers", |b| {
        b.iter(|| black_box(parse_rate_limit(black_box(&OK_HEADERS[..]), None)))
    });
    let bytes: usize =
        LIMITED_HEADERS.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>() + LIMITED_BODY.len();
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("classify 429 (headers + Genesys body)", |b| {
        b.iter(|| {
            black_box(classify_response(429, black_box(&LIMITED_HEADERS[..]), LIMITED_BODY, None))
        })
    });
    group.finish();
}

criterion_group!(benches, session_events, parsers);
criterion_main!(benches);
