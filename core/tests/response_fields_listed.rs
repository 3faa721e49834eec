//! Headers that can list their names (`Headers::any_name`) let the session judge an ordinary
//! response without its `Date` or the rate-limit dialects, and an ordinary success without
//! classifying it; the verdicts must not change. Two sessions, one fed headers that list their
//! names and one fed the same fields by name only, go through the same timeline and must agree
//! on every answer, event and counter.

use credflow_core::http::{Headers, Method};
use credflow_core::lifecycle::Ticket;
use credflow_core::secret::Credentials;
use credflow_core::session::{HostKey, RequestSpec, Session, SessionConfig, TokenEndpoint};
use credflow_core::{Duration, Instant, UnixTime, WallClock};
use proptest::prelude::*;

/// The same fields, read by name only: as a header store that cannot list its names.
struct ByNameOnly<'a>(&'a [(&'a str, &'a str)]);

impl Headers for ByNameOnly<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        Headers::get(self.0, name)
    }
}

/// A session holding a token, its wall clock at 2026-10-16.
fn session() -> Session<256, 2> {
    let creds = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new("https://login.example.com/oauth/token").unwrap();
    let mut s = Session::new(creds, endpoint, SessionConfig::default(), 11).unwrap();
    s.set_wall_clock(WallClock::new(Instant::ZERO, UnixTime::from_secs(1_792_152_800)));
    let mut buf = [0u8; 1024];
    let (ticket, _): (Ticket, _) = s.poll_token_request(Instant::ZERO, &mut buf).unwrap().unwrap();
    let body = br#"{"access_token":"T1","token_type":"bearer","expires_in":86400}"#;
    s.handle_token_response(Instant::ZERO, ticket, 200, &[], body);
    while s.poll_event().is_some() {}
    s
}

/// Sends one GET through `s` at `now` and answers it with `status` and `headers`; everything
/// the session said, as text.
fn exchange<H: Headers>(s: &mut Session<256, 2>, now: Instant, status: u16, headers: &H) -> String {
    let mut req = s.begin(now, RequestSpec::new(Method::Get, HostKey::from_host("api.example")));
    let mut said = format!("{:?}", s.authorize(now, &mut req));
    if req.attempts() == 1 {
        let verdict = s.handle_response(now, &mut req, status, headers, b"{}");
        said += &format!(" {verdict:?}");
    }
    while let Some(event) = s.poll_event() {
        said += &format!(" {event:?}");
    }
    said + &format!(" {:?} {:?}", s.counters(), s.poll_timeout())
}

/// Milliseconds to advance, then a response's status and fields.
type Step<'a> = (u64, u16, Vec<(&'a str, &'a str)>);

fn agree(steps: &[Step<'_>]) -> Result<(), TestCaseError> {
    let (mut listed, mut by_name) = (session(), session());
    let mut now = Instant::ZERO;
    for (advance, status, fields) in steps {
        now = now.saturating_add(Duration::from_millis(*advance));
        let a = exchange(&mut listed, now, *status, &fields.as_slice());
        let b = exchange(&mut by_name, now, *status, &ByNameOnly(fields));
        prop_assert_eq!(a, b);
    }
    Ok(())
}

/// A success without rate-limit fields, and one with the Genesys fields, an epoch reset or a
/// `Retry-After` date: the same verdicts with the names listed as without.
#[test]
fn with_and_without_rate_limit_fields_the_verdicts_are_the_same() {
    let date = ("Date", "Fri, 16 Oct 2026 12:00:00 GMT");
    let steps = [
        (0, 200, vec![date, ("content-type", "application/json")]),
        (10, 200, vec![date, ("inin-ratelimit-allowed", "3"), ("inin-ratelimit-count", "3")]),
        (10, 200, vec![date]),
        (10, 200, vec![("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1792152901")]),
        (10, 429, vec![date, ("Retry-After", "Fri, 16 Oct 2026 12:00:05 GMT")]),
        (6_000, 200, vec![]),
    ];
    agree(&steps).unwrap();
}

proptest! {
    #[test]
    fn listing_the_names_never_changes_what_the_session_says(
        steps in proptest::collection::vec(
            (
                prop_oneof![Just(0u64), 1u64..2_000, 50_000u64..200_000],
                prop_oneof![
                    4 => Just(200u16), 1 => Just(204), 1 => Just(304), 1 => Just(404),
                    1 => Just(429), 1 => Just(503), 1 => 100u16..600,
                ],
                proptest::collection::vec(
                    (
                        proptest::sample::select(vec![
                            "Date", "Retry-After", "X-RateLimit-Remaining", "x-ratelimit-reset",
                            "inin-ratelimit-allowed", "inin-ratelimit-count", "RateLimit",
                            "ININ-Correlation-Id", "content-type",
                        ]),
                        proptest::sample::select(vec![
                            "Fri, 16 Oct 2026 12:00:00 GMT", "Fri, 16 Oct 2026 12:00:30 GMT",
                            "1792152901", "0", "5", "180", r#""default";r=0;t=30"#,
                        ]),
                    ),
                    0..4,
                ),
            ),
            1..24,
        ),
    ) {
        agree(&steps)?;
    }
}
