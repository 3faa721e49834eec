//! A response's correlation id is masked wherever the session keeps it (a 429's event, a failed
//! request's detail), and only there: a success's is not kept, so masking it (comparing it with
//! every form of every credential) would be work for nothing on every ordinary response. Nor
//! is it looked for: the session asks a success's or a permanent answer's headers for none of
//! the correlation fields, while `classify_response` still names every answer's id.

use std::cell::RefCell;

use credflow_core::Instant;
use credflow_core::classify::classify_response;
use credflow_core::http::{Headers, Method};
use credflow_core::secret::Credentials;
use credflow_core::session::{
    Authorize, HostKey, RequestSpec, Session, SessionConfig, TokenEndpoint, Verdict,
};

const TOKEN: &str = "tok-XYZ-0123456789";
const SECRET: &str = "s3cret-value-42";

fn secs(v: u64) -> Instant {
    Instant::from_secs(v)
}

/// A session holding `TOKEN`, whose retry policy gives up at the first transient failure.
fn session() -> Session<256, 2> {
    let creds = Credentials::from_strs("client", SECRET).unwrap();
    let endpoint = TokenEndpoint::new("https://login.example.com/oauth/token").unwrap();
    let mut config = SessionConfig::default();
    config.retry.max_retries = 0;
    let mut s = Session::new(creds, endpoint, config, 3).unwrap();
    let mut buf = [0u8; 1024];
    let (ticket, _) = s.poll_token_request(secs(0), &mut buf).unwrap().unwrap();
    let body = format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3600}}"#);
    s.handle_token_response(secs(0), ticket, 200, &[], body.as_bytes());
    while s.poll_event().is_some() {}
    s
}

fn answer(s: &mut Session<256, 2>, at: u64, status: u16, correlation: &str) -> Verdict {
    let host = HostKey::from_host("api.example");
    let mut req = s.begin(secs(at), RequestSpec::new(Method::Get, host));
    assert!(matches!(s.authorize(secs(at), &mut req), Authorize::Send { .. }));
    s.handle_response(secs(at), &mut req, status, &[("ININ-Correlation-Id", correlation)], b"")
}

#[test]
fn a_kept_correlation_id_is_masked_and_a_successs_changes_nothing() {
    let mut s = session();
    // A success echoing the credentials: done, nothing kept, nothing said.
    for echo in [TOKEN, SECRET] {
        assert_eq!(answer(&mut s, 1, 200, echo), Verdict::Done);
        assert_eq!(answer(&mut s, 1, 404, echo), Verdict::Done);
    }
    assert!(s.poll_event().is_none());

    // A 429's event carries the id, masked.
    let verdict = answer(&mut s, 2, 429, TOKEN);
    assert!(matches!(verdict, Verdict::Retry { .. } | Verdict::Fail(_)), "{verdict:?}");
    let events = format!("{:?}", core::iter::from_fn(|| s.poll_event()).collect::<Vec<_>>());
    assert!(events.contains("RateLimited") && !events.contains(TOKEN), "{events}");

    // A failed request's detail carries the id, masked.
    match answer(&mut s, 100, 500, &format!("id-{SECRET}")) {
        Verdict::Fail(error) => {
            let detail = s.error_detail(error);
            let shown = format!("{error} {detail} {detail:?}");
            assert!(!shown.contains(SECRET) && shown.contains("[redacted]"), "{shown}");
        }
        other => panic!("{other:?}"),
    }
}

/// Headers that remember each name asked for.
struct Asked<'a> {
    fields: &'a [(&'a str, &'a str)],
    names: RefCell<Vec<String>>,
}

impl Headers for Asked<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.names.borrow_mut().push(name.to_ascii_lowercase());
        Headers::get(self.fields, name)
    }

    fn any_name(&self, matches: fn(&str) -> bool) -> Option<bool> {
        self.fields.any_name(matches)
    }
}

#[test]
fn a_success_or_permanent_answers_correlation_fields_are_not_read() {
    let fields = [("ININ-Correlation-Id", "c-1"), ("X-Request-Id", "r-1")];
    let correlation = ["inin-correlation-id", "x-request-id"];
    for (status, read) in [(200, false), (204, false), (404, false), (429, true), (503, true)] {
        let mut s = session();
        let headers = Asked { fields: &fields, names: RefCell::new(Vec::new()) };
        let mut req = s.begin(secs(1), RequestSpec::new(Method::Get, HostKey::from_host("a")));
        assert!(matches!(s.authorize(secs(1), &mut req), Authorize::Send { .. }));
        let _ = s.handle_response(secs(1), &mut req, status, &headers, b"");
        let names = headers.names.into_inner();
        let asked = correlation.iter().any(|c| names.iter().any(|n| n == c));
        assert_eq!(asked, read, "{status}: asked for {names:?}");
    }
    // The classification on its own names the id of every answer.
    for status in [200, 404, 429] {
        let c = classify_response(status, &fields.as_slice(), b"", None);
        assert_eq!(c.correlation_id.as_ref().map(|c| c.as_str()), Some("c-1"), "{status}");
    }
}
