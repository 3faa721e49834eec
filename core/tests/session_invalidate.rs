//! `Session::invalidate`: an application that sent the token with its own HTTP stack reports a
//! 401 for it. Only that generation is dropped; the refresh it makes due is spaced like the
//! session's own 401 refreshes, so reporting in a loop cannot storm the token endpoint.

use credflow_core::Instant;
use credflow_core::lifecycle::{Generation, LifecycleEvent, Ticket};
use credflow_core::secret::Credentials;
use credflow_core::session::{Event, Session, SessionConfig, TokenEndpoint};

fn ms(v: u64) -> Instant {
    Instant::from_millis(v)
}

struct Harness {
    s: Session<256, 4>,
    buf: Vec<u8>,
}

impl Harness {
    fn new() -> Self {
        let creds = Credentials::from_strs("client", "secret").unwrap();
        let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
        Harness {
            s: Session::new(creds, endpoint, SessionConfig::default(), 7).unwrap(),
            buf: vec![0; 2048],
        }
    }

    fn poll(&mut self, now: Instant) -> Option<Ticket> {
        self.s.poll_token_request(now, &mut self.buf).unwrap().map(|(ticket, _)| ticket)
    }

    /// Sends the token request due at `now` and answers it with `token` (an hour's life).
    fn acquire(&mut self, now: Instant, token: &str) -> Generation {
        let ticket = self.poll(now).unwrap_or_else(|| panic!("a token request due at {now}"));
        let body =
            format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#);
        self.s.handle_token_response(now, ticket, 200, &[], body.as_bytes());
        self.generation(now).expect("a token installed")
    }

    fn generation(&self, now: Instant) -> Option<Generation> {
        self.s.token(now).map(|(_, times)| times.generation)
    }

    fn token(&self, now: Instant) -> Option<String> {
        self.s.token(now).map(|(token, _)| token.as_str().to_owned())
    }
}

#[test]
fn only_the_reported_generation_is_dropped() {
    let mut h = Harness::new();
    let first = h.acquire(ms(0), "first");
    assert_eq!(h.poll(ms(10_000)), None, "a fresh token: nothing due");

    // The application reports the current token: dropped, a refresh due at once.
    assert!(h.s.invalidate(ms(10_000), first));
    assert_eq!(h.token(ms(10_000)), None);
    assert!(
        std::iter::from_fn(|| h.s.poll_event())
            .any(|e| matches!(e, Event::Token(LifecycleEvent::Invalidated(g)) if g == first)),
        "the drop is announced"
    );
    let second = h.acquire(ms(10_000), "second");
    assert_ne!(first, second);

    // A late report for the old token leaves the new one alone, and asks for nothing.
    assert!(!h.s.invalidate(ms(10_500), first));
    assert_eq!(h.token(ms(10_500)).as_deref(), Some("second"));
    assert_eq!(h.poll(ms(10_500)), None);
}

#[test]
fn reporting_every_token_in_a_loop_gets_one_refresh_per_interval() {
    let mut h = Harness::new();
    let mut generation = h.acquire(ms(0), "t0");
    let mut sent = 1;
    // For three seconds, the application reports each token it gets, every 10 ms.
    for step in 1..=300 {
        let now = ms(1_000 + step * 10);
        let _ = h.s.invalidate(now, generation);
        if let Some(ticket) = h.poll(now) {
            sent += 1;
            let body =
                format!(r#"{{"access_token":"t{sent}","token_type":"bearer","expires_in":3600}}"#);
            h.s.handle_token_response(now, ticket, 200, &[], body.as_bytes());
            generation = h.generation(now).expect("installed");
        }
    }
    // min_refresh_interval (1 s by default) spaces the refreshes made for a 401.
    assert!((3..=5).contains(&sent), "{sent} token requests in 3 s");
}
