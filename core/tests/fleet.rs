//! Timeline tests for the fleet drivers (`credflow_core::fleet`): a request's questions to the
//! fleet and its waits, a process's fleet token protocol, and what a 429 tells the fleet.

use credflow_core::fleet::{
    Admission, DriverConfig, Failure, FleetHold, LeaseEnd, Peek, RequestDriver, ResponseReport,
    Step, TokenDriver,
};
use credflow_core::http::Method;
use credflow_core::ratelimit::pacer::PaceReason;
use credflow_core::retry::policy::WaitSource;
use credflow_core::secret::{Credentials, Fingerprint};
use credflow_core::session::{
    Authorize, Event, HostKey, RequestSpec, RequestState, RetryReason, Session, SessionConfig,
    TokenEndpoint, Verdict, WaitReason,
};
use credflow_core::{Duration, Instant};

fn ms(v: u64) -> Instant {
    Instant::from_millis(v)
}
fn dur(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A session holding a token from time 0, and a request begun at 0.
fn session_and_request() -> (Session<256, 4>, RequestState) {
    let creds = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
    let mut s = Session::new(creds, endpoint, SessionConfig::default(), 7).unwrap();
    let mut buf = [0u8; 2048];
    let (ticket, _) = s.poll_token_request(ms(0), &mut buf).unwrap().unwrap();
    let body = br#"{"access_token":"abc","token_type":"bearer","expires_in":86400}"#;
    s.handle_token_response(ms(0), ticket, 200, &[("Content-Type", "application/json")], body);
    let req = s.begin(ms(0), RequestSpec::new(Method::Get, HostKey::from_host("api.example")));
    (s, req)
}

fn fleet_driver(deadline: Option<u64>) -> RequestDriver {
    RequestDriver::new(DriverConfig::default(), deadline.map(ms), true)
}

/// Asks the driver at `now` and expects a question to the fleet; returns its horizon.
fn expect_ask(driver: &mut RequestDriver, now: u64) -> Duration {
    match driver.poll(ms(now), true) {
        Step::AskFleet { within, .. } => {
            assert!(driver.holds_gate(), "a question is asked holding the gate");
            within
        }
        other => panic!("expected a question to the fleet at {now}, got {other:?}"),
    }
}

#[test]
fn without_a_fleet_the_session_decides_every_attempt() {
    let mut driver = RequestDriver::new(DriverConfig::default(), None, false);
    assert_eq!(driver.poll(ms(0), true), Step::Authorize);
    assert!(!driver.holds_gate());
    driver.handle_sent();
    assert_eq!(driver.poll(ms(10), true), Step::Authorize);
}

#[test]
fn one_question_per_attempt_then_a_new_one_after_the_send() {
    let (_, mut req) = session_and_request();
    let mut driver = fleet_driver(None);
    assert_eq!(expect_ask(&mut driver, 0), Duration::from_secs(60), "max_wait, no deadline");
    assert_eq!(driver.poll(ms(0), true), Step::AwaitFleet, "never a second question");
    assert_eq!(driver.handle_admission(ms(5), Some(Admission::Now), &mut req), None);
    assert!(req.externally_paced());
    assert!(!driver.holds_gate(), "the turn is passed on with the answer");
    assert_eq!(driver.poll(ms(5), true), Step::Authorize);
    assert_eq!(driver.poll(ms(6), true), Step::Authorize, "the admission stands");
    driver.handle_sent();
    expect_ask(&mut driver, 7);
}

#[test]
fn no_question_without_a_token_to_send_with() {
    let mut driver = fleet_driver(None);
    assert_eq!(driver.poll(ms(0), false), Step::Authorize);
    expect_ask(&mut driver, 1);
}

#[test]
fn told_to_wait_it_sleeps_holding_the_gate_then_asks_again() {
    let (_, mut req) = session_and_request();
    let mut driver = fleet_driver(None);
    expect_ask(&mut driver, 0);
    let _ = driver.handle_admission(ms(10), Some(Admission::Wait(dur(200))), &mut req);
    assert!(!req.externally_paced(), "not counted");
    assert_eq!(driver.poll(ms(10), true), Step::Sleep { until: ms(210), wait: dur(200) });
    assert!(driver.holds_gate(), "the others queue while it sleeps");
    assert_eq!(driver.poll(ms(209), true), Step::Sleep { until: ms(210), wait: dur(200) });
    expect_ask(&mut driver, 210);
}

#[test]
fn a_reserved_slot_is_slept_to_and_sent_without_asking_again() {
    let (mut s, mut req) = session_and_request();
    let mut driver = fleet_driver(None);
    expect_ask(&mut driver, 0);
    let _ = driver.handle_admission(ms(0), Some(Admission::After(dur(300))), &mut req);
    assert!(req.externally_paced(), "counted for its slot");
    assert!(!driver.holds_gate(), "the next request asks meanwhile");
    assert_eq!(driver.poll(ms(299), true), Step::Sleep { until: ms(300), wait: dur(300) });
    assert_eq!(driver.poll(ms(300), true), Step::Authorize, "a short sleep reads no hold");
    assert!(matches!(s.authorize(ms(300), &mut req), Authorize::Send { .. }));
}

#[test]
fn after_a_long_sleep_to_its_slot_it_reads_the_fleets_hold() {
    let (mut s, mut req) = session_and_request();
    let mut driver = fleet_driver(None);
    expect_ask(&mut driver, 0);
    let _ = driver.handle_admission(ms(0), Some(Admission::After(dur(1_000))), &mut req);
    assert_eq!(driver.poll(ms(1_000), true), Step::ReadHold);
    assert_eq!(driver.poll(ms(1_001), true), Step::AwaitFleet, "one read");
    let hold = driver.handle_hold(ms(1_010), Some(dur(5_000)), &mut req);
    assert_eq!(hold, Some(FleetHold { hold: dur(5_000), cut_from: None }));
    assert_eq!(driver.poll(ms(1_010), true), Step::Authorize);
    // The session holds the attempt for it, as for its own pacer's wait.
    match s.authorize(ms(1_010), &mut req) {
        Authorize::Wait { until, reason: WaitReason::Paced(_) } => {
            assert_eq!(until, Some(ms(6_010)))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_fleets_hold_is_cut_to_max_wait_and_bounded_by_the_deadline() {
    let (_, mut req) = session_and_request();
    let mut driver = fleet_driver(None);
    expect_ask(&mut driver, 0);
    let hold = driver.handle_admission(ms(0), Some(Admission::Held(dur(7_200_000))), &mut req);
    let max = Duration::from_secs(60);
    assert_eq!(hold, Some(FleetHold { hold: max, cut_from: Some(dur(7_200_000)) }));
    assert_eq!(driver.poll(ms(0), true), Step::Authorize, "the session waits it out");

    // With a deadline the hold ends after, it fails at once naming the fleet.
    let mut driver = fleet_driver(Some(2_000));
    assert_eq!(expect_ask(&mut driver, 0), dur(2_001), "the horizon stops at the deadline");
    let _ = driver.handle_admission(ms(0), Some(Admission::Held(dur(3_000))), &mut req);
    assert_eq!(driver.poll(ms(0), true), Step::Fail(Failure::HeldByFleet(dur(3_000))));
    assert_eq!(driver.poll(ms(1), true), Step::Fail(Failure::HeldByFleet(dur(3_000))));
}

#[test]
fn a_wait_past_the_deadline_fails_at_once() {
    let (_, mut req) = session_and_request();
    let mut driver = fleet_driver(Some(1_000));
    expect_ask(&mut driver, 0);
    let _ = driver.handle_admission(ms(0), Some(Admission::Wait(dur(1_002))), &mut req);
    assert_eq!(driver.poll(ms(0), true), Step::Fail(Failure::DeadlineExceeded));
    // At the edge (the deadline check passes at the deadline itself) it still sleeps.
    let mut driver = fleet_driver(Some(1_000));
    expect_ask(&mut driver, 0);
    let _ = driver.handle_admission(ms(0), Some(Admission::Wait(dur(1_001))), &mut req);
    assert_eq!(driver.poll(ms(0), true), Step::Sleep { until: ms(1_001), wait: dur(1_001) });
}

#[test]
fn a_wait_of_hours_is_handed_to_the_session_which_fails_fast_naming_it() {
    let (mut s, mut req) = session_and_request();
    let mut driver = fleet_driver(None);
    expect_ask(&mut driver, 0);
    let hours = Duration::from_secs(3 * 3600);
    let _ = driver.handle_admission(ms(0), Some(Admission::Wait(hours)), &mut req);
    assert_eq!(driver.fleet_wait_until(), Some(ms(0).saturating_add(hours)));
    assert_eq!(driver.poll(ms(0), true), Step::Authorize);
    // The session's one probe per max_wait goes; the next attempt fails fast.
    assert!(matches!(s.authorize(ms(0), &mut req), Authorize::Send { .. }));
}

#[test]
fn a_store_that_fails_leaves_the_attempt_to_the_session() {
    let (_, mut req) = session_and_request();
    let mut driver = fleet_driver(None);
    expect_ask(&mut driver, 0);
    assert_eq!(driver.handle_admission(ms(0), None, &mut req), None);
    assert!(!req.externally_paced(), "paced locally at its own priority");
    assert_eq!(driver.poll(ms(0), true), Step::Authorize);
    // An answer nobody asked for changes nothing.
    let _ = driver.handle_admission(ms(1), Some(Admission::Now), &mut req);
    assert!(!req.externally_paced());
}

#[test]
fn a_local_hold_for_the_server_sends_it_back_to_the_fleet_an_outage_does_not() {
    let (_, mut req) = session_and_request();
    let mut driver = fleet_driver(None);
    expect_ask(&mut driver, 0);
    let _ = driver.handle_admission(ms(0), Some(Admission::Now), &mut req);
    // Waiting for a token: the admission is kept.
    let wake = driver.handle_wait(ms(0), None, WaitReason::Token, &mut req);
    assert!(wake.kick_token_driver);
    assert_eq!(wake.at, ms(30_000), "token_wait, unless a token event comes first");
    assert!(req.externally_paced());
    assert_eq!(driver.poll(ms(10), true), Step::Authorize);
    // Held for a 429's wait: asked again after it.
    let paced = WaitReason::Paced(PaceReason::Backoff429);
    let wake = driver.handle_wait(ms(10), Some(ms(500)), paced, &mut req);
    assert_eq!((wake.at, wake.kick_token_driver), (ms(500), false));
    assert!(!req.externally_paced(), "the admission does not outlive the hold");
    expect_ask(&mut driver, 500);
}

#[test]
fn local_waits_never_end_past_the_deadline() {
    let (_, mut req) = session_and_request();
    let mut driver = RequestDriver::new(DriverConfig::default(), Some(ms(2_000)), false);
    let probe = driver.handle_wait(ms(0), None, WaitReason::BreakerProbe, &mut req);
    assert_eq!(probe.at, ms(1_000), "a probe's outcome is re-checked every second");
    let token = driver.handle_wait(ms(1_500), None, WaitReason::Token, &mut req);
    assert_eq!(token.at, ms(2_001), "just past the deadline, where the session fails it");
    let due = driver.handle_wait(ms(0), Some(ms(0)), WaitReason::Token, &mut req);
    assert!(due.kick_token_driver, "a token request is due: the driver is woken");
}

fn fp(token: &str) -> Fingerprint {
    Fingerprint::of_token(token.as_bytes())
}

#[test]
fn the_fleet_is_asked_for_another_token_than_the_one_held_or_refused() {
    let mut tokens = TokenDriver::new(&DriverConfig::default());
    assert_eq!(tokens.exclude(), None);
    tokens.handle_held(Some(fp("a")));
    tokens.handle_held(None);
    assert_eq!(tokens.exclude(), Some(fp("a")), "the token held last");
    assert!(!tokens.handle_offer(fp("a")), "never the held token again");
    assert!(tokens.handle_offer(fp("b")));
    tokens.handle_refused(fp("b"));
    assert_eq!(tokens.exclude(), Some(fp("b")), "the refused one, so the fleet leases");
    assert!(!tokens.handle_offer(fp("b")), "never the refused token again");
    tokens.handle_taken(fp("c"));
    assert_eq!(tokens.exclude(), Some(fp("c")));
    tokens.handle_refused(fp("d"));
    assert_eq!(tokens.handle_token_answer(true, true), LeaseEnd::Publish);
    assert_eq!(tokens.exclude(), Some(fp("c")), "a token obtained clears the refusal");
}

#[test]
fn the_lease_is_published_kept_or_released() {
    let mut tokens = TokenDriver::new(&DriverConfig::default());
    assert_eq!(tokens.handle_token_answer(true, true), LeaseEnd::Publish);
    assert_eq!(tokens.handle_token_answer(false, true), LeaseEnd::Keep, "the fleet's back-off");
    assert_eq!(tokens.handle_token_answer(false, false), LeaseEnd::Release, "taught nothing");
}

#[test]
fn a_tokenless_process_reads_the_fleets_token_once_a_second() {
    let mut tokens = TokenDriver::new(&DriverConfig::default());
    assert_eq!(tokens.poll_peek(ms(0), false), Peek::Off);
    assert_eq!(tokens.poll_peek(ms(100), true), Peek::At(ms(1_100)));
    // Wake-ups in between do not postpone it.
    assert_eq!(tokens.poll_peek(ms(600), true), Peek::At(ms(1_100)));
    assert_eq!(tokens.poll_peek(ms(1_099), true), Peek::At(ms(1_100)));
    assert_eq!(tokens.poll_peek(ms(1_100), true), Peek::Due);
    assert_eq!(tokens.poll_peek(ms(1_150), true), Peek::At(ms(2_100)));
    assert_eq!(tokens.poll_peek(ms(1_200), false), Peek::Off, "a token again");
    assert_eq!(tokens.poll_peek(ms(1_300), true), Peek::At(ms(2_300)));
}

#[test]
fn a_429_tells_the_fleet_the_wait_the_session_read() {
    let limited = |until| Event::RateLimited { until, correlation_id: None };
    let retry = |source| Verdict::Retry { at: ms(0), reason: RetryReason::RateLimited, source };
    // The wait Genesys writes into the body, or a Retry-After.
    let mut report = ResponseReport::default();
    report.handle_event(ms(1_000), &limited(ms(8_000)));
    report.handle_verdict(&retry(WaitSource::ServerRetryAfter));
    assert_eq!(report.rate_limited(), Some(Some(Duration::from_secs(7))));
    // A bare 429.
    let mut report = ResponseReport::default();
    report.handle_event(ms(1_000), &limited(ms(1_000)));
    report.handle_verdict(&retry(WaitSource::Backoff));
    assert_eq!(report.rate_limited(), Some(None));
    // `Retry-After: 0`.
    let mut report = ResponseReport::default();
    report.handle_event(ms(1_000), &limited(ms(1_000)));
    report.handle_verdict(&retry(WaitSource::ServerRetryAfter));
    assert_eq!(report.rate_limited(), Some(Some(Duration::ZERO)));
    // Not a 429.
    let mut report = ResponseReport::default();
    report.handle_verdict(&Verdict::Done);
    assert_eq!(report.rate_limited(), None);
}

/// Only the fleet's "ask again" answers count toward `max_wait`: a wait at the gate before the
/// first answer, and a hold (the fleet's 429 relayed, paced by the session) after which the
/// fleet is asked afresh, do not. A 50 s hold then a 12 s "ask again" (max_wait 60 s) failed
/// the attempt at once with `NoSlot`, though the fleet had said "ask again" once.
#[test]
fn only_ask_again_answers_count_toward_max_wait() {
    let (_, mut req) = session_and_request();
    assert_eq!(DriverConfig::default().max_wait, dur(60_000));
    // Asked at 0, answered at 10 s (a queue at the gate, a slow store): not counted.
    let mut driver = fleet_driver(None);
    expect_ask(&mut driver, 0);
    let _ = driver.handle_admission(ms(10_000), Some(Admission::Wait(dur(55_000))), &mut req);
    match driver.poll(ms(10_000), true) {
        Step::Sleep { until, .. } => assert_eq!(until, ms(65_000)),
        other => panic!("55 s after the first ask-again is within max_wait, not {other:?}"),
    }
    // Held 50 s by the fleet's 429 and paced by the session, then asked afresh.
    let mut driver = fleet_driver(None);
    expect_ask(&mut driver, 0);
    let hold = driver.handle_admission(ms(0), Some(Admission::Held(dur(50_000))), &mut req);
    assert!(hold.is_some());
    assert_eq!(driver.poll(ms(0), true), Step::Authorize);
    let until = Some(ms(50_000));
    let _ = driver.handle_wait(ms(0), until, WaitReason::Paced(PaceReason::Exhausted), &mut req);
    expect_ask(&mut driver, 50_000);
    let _ = driver.handle_admission(ms(50_000), Some(Admission::Wait(dur(12_000))), &mut req);
    match driver.poll(ms(50_000), true) {
        Step::Sleep { until, .. } => assert_eq!(until, ms(62_000)),
        other => panic!("the first ask-again after the hold is slept, not {other:?}"),
    }
}

/// A store that answers "ask again" at once, every time (as one anyone can write to may):
/// the questions of one attempt are spaced however short the answer (10 ms, doubling to 1 s),
/// and the attempt fails naming the fleet's budget once its wait for it would pass `max_wait`
/// in all, instead of asking without end. A sent attempt starts afresh.
#[test]
fn a_store_always_saying_ask_again_is_asked_spaced_and_not_forever() {
    let (_, mut req) = session_and_request();
    let mut driver = fleet_driver(None);
    let max_wait = DriverConfig::default().max_wait;
    let mut now = ms(0);
    let mut questions = 0;
    let mut gaps = Vec::new();
    let failure = loop {
        match driver.poll(now, true) {
            Step::AskFleet { .. } => {
                questions += 1;
                let _ = driver.handle_admission(now, Some(Admission::Wait(dur(0))), &mut req);
            }
            Step::Sleep { until, .. } => {
                gaps.push(until.saturating_duration_since(now));
                now = until;
            }
            Step::Fail(failure) => break failure,
            other => panic!("{other:?} at {now:?}"),
        }
    };
    assert!(gaps.iter().all(|gap| *gap >= dur(10)), "{gaps:?}");
    assert_eq!(&gaps[..4], [dur(10), dur(20), dur(40), dur(80)]);
    assert!(gaps.iter().all(|gap| *gap <= dur(1_000)), "{gaps:?}");
    // 10 + 20 + ... + 640 ms, then a question a second: about 66 in the minute, not a loop.
    assert!((60..=70).contains(&questions), "{questions} questions");
    match failure {
        Failure::NoSlot { waited } => assert!(waited > max_wait && waited <= max_wait + dur(1_000)),
        other => panic!("{other:?}"),
    }
    assert!(now <= ms(0) + max_wait, "it gave up within max_wait of its first question");

    // An honest store's "ask again" of a few seconds is slept as it says, and a sent attempt
    // asks afresh.
    let mut driver = fleet_driver(None);
    expect_ask(&mut driver, 0);
    let _ = driver.handle_admission(ms(0), Some(Admission::Wait(dur(2_500))), &mut req);
    assert_eq!(driver.poll(ms(0), true), Step::Sleep { until: ms(2_500), wait: dur(2_500) });
    expect_ask(&mut driver, 2_500);
    let _ = driver.handle_admission(ms(2_500), Some(Admission::Now), &mut req);
    assert_eq!(driver.poll(ms(2_500), true), Step::Authorize);
    driver.handle_sent();
    expect_ask(&mut driver, 70_000);
    let _ = driver.handle_admission(ms(70_000), Some(Admission::Wait(dur(5))), &mut req);
    assert_eq!(driver.poll(ms(70_000), true), Step::Sleep { until: ms(70_010), wait: dur(10) });
}
