//! Property tests for the fleet drivers (`credflow_core::fleet`), driven by arbitrary sequences
//! of polls, fleet answers (any wait, any order, unasked ones too), session waits and time steps.
//!
//! Invariants of a [`RequestDriver`], checked after every step:
//! - it never asks the fleet twice for one attempt without, in between, an answer telling it
//!   to wait and ask again, a local wait for the server's limit, or a send;
//! - no sleep it asks for, and no wake after a session wait, ends past the request's deadline;
//! - it holds the admission gate only while a question is out or it sleeps to ask again;
//! - a hold it relays is never longer than `max_wait`; a failure is final;
//! - after the fleet's "ask again", it asks no sooner than the answer said and
//!   `ASK_AGAIN_FIRST` (however short the answer), and never later than `max_wait` after the
//!   attempt's first question: it fails instead.
//!
//! Of a [`TokenDriver`]: a token the process refused, or the one it holds (when it refused
//! none since), is never taken again.
//!
//! Of a [`StoreLink`], against a reference model (joined or degraded, the time of the last
//! claimed probe, the changes counted), after arbitrary calls started and ended in any order:
//! a joined link is always usable; a degraded one lets one call through per probe interval,
//! and always one once the interval has passed; a call allowed earlier still may be made while
//! the link has not changed, and is asked about afresh once it has; only a call started since the last change can
//! change it, a failure degrading a joined link and an answer rejoining a degraded one; a busy
//! answer changes nothing.

use credflow_core::fleet::{
    ASK_AGAIN_FIRST, Admission, CallOutcome, CallTicket, DriverConfig, Failure, LinkChange,
    RequestDriver, Step, StoreLink, TokenDriver,
};
use credflow_core::http::Method;
use credflow_core::ratelimit::pacer::PaceReason;
use credflow_core::secret::{Credentials, Fingerprint};
use credflow_core::session::{
    HostKey, RequestSpec, RequestState, Session, SessionConfig, TokenEndpoint, WaitReason,
};
use credflow_core::{Duration, Instant};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Poll(bool),
    Answer(Option<(u8, u64)>),
    Hold(Option<u64>),
    Wait(u8, Option<u64>),
    Sent,
}

fn op() -> impl Strategy<Value = Op> {
    // Answers shorter than the ask-again floor, and ones a few of which pass `max_wait`.
    let wait = prop_oneof![0u64..20, 0u64..2_000, 20_000u64..60_001, 0u64..200_000, Just(u64::MAX)];
    prop_oneof![
        3 => (0u64..3_000).prop_map(Op::Advance),
        6 => any::<bool>().prop_map(Op::Poll),
        3 => proptest::option::of((0u8..4, wait.clone())).prop_map(Op::Answer),
        1 => proptest::option::of(wait.clone()).prop_map(Op::Hold),
        2 => (0u8..4, proptest::option::of(0u64..100_000)).prop_map(|(r, u)| Op::Wait(r, u)),
        1 => Just(Op::Sent),
    ]
}

fn request() -> RequestState {
    let creds = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
    let mut s: Session<256, 4> =
        Session::new(creds, endpoint, SessionConfig::default(), 7).unwrap();
    s.begin(Instant::ZERO, RequestSpec::new(Method::Get, HostKey::from_host("api.example")))
}

proptest! {
    #[test]
    fn the_request_driver_keeps_its_contract(
        deadline in proptest::option::of(0u64..120_000),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let config = DriverConfig::default();
        let mut driver = RequestDriver::new(config, deadline.map(Instant::from_millis), true);
        let give_up = deadline.map(|d| Instant::from_millis(d + 1));
        let mut req = request();
        let mut now = Instant::ZERO;
        // Whether a new question is allowed: at first, and after a wait-and-ask-again answer,
        // a local wait for the server's limit, or a send.
        let mut may_ask = true;
        let mut asked = false;
        let mut failed = None;
        // The attempt's first question, until it is sent.
        let mut first_question: Option<Instant> = None;
        for op in ops {
            match op {
                Op::Advance(ms) => now = now.saturating_add(Duration::from_millis(ms)),
                Op::Poll(has_token) => {
                    let step = driver.poll(now, has_token);
                    if let Some(failure) = failed {
                        prop_assert_eq!(step, Step::Fail(failure), "a failure is final");
                    }
                    match step {
                        Step::AskFleet { within, .. } => {
                            prop_assert!(may_ask, "a second question for one attempt");
                            prop_assert!(within <= config.max_wait);
                            if let Some(give_up) = give_up {
                                prop_assert!(now.saturating_add(within) <= give_up);
                            }
                            may_ask = false;
                            asked = true;
                        }
                        Step::Sleep { until, .. } => {
                            prop_assert!(until > now, "a sleep into the past");
                            if let Some(give_up) = give_up {
                                prop_assert!(until <= give_up, "a sleep past the deadline");
                            }
                        }
                        Step::Fail(failure) => failed = Some(failure),
                        Step::AwaitFleet | Step::ReadHold | Step::Authorize => {}
                    }
                    let gate = matches!(step, Step::AskFleet { .. } | Step::Sleep { .. } | Step::AwaitFleet);
                    if !gate {
                        prop_assert!(!driver.holds_gate(), "the gate held past {:?}", step);
                    }
                }
                Op::Answer(answer) => {
                    let answer = answer.map(|(kind, ms)| {
                        let wait = Duration::from_millis(ms);
                        match kind {
                            0 => Admission::Now,
                            1 => Admission::After(wait),
                            2 => Admission::Wait(wait),
                            _ => Admission::Held(wait),
                        }
                    });
                    let hold = driver.handle_admission(now, answer, &mut req);
                    if let Some(hold) = hold {
                        prop_assert!(hold.hold <= config.max_wait, "a hold past max_wait");
                    }
                    if let Some(Admission::Wait(w)) = answer
                        && asked
                        && w <= config.max_wait
                        && failed.is_none()
                    {
                        may_ask = true;
                        let first = *first_question.get_or_insert(now);
                        match driver.poll(now, true) {
                            Step::Sleep { until, .. } => {
                                let least = now.saturating_add(w.max(ASK_AGAIN_FIRST));
                                prop_assert!(until >= least, "asked again too soon");
                                prop_assert!(
                                    until <= first.saturating_add(config.max_wait),
                                    "asked again past max_wait in all"
                                );
                            }
                            Step::Fail(failure) => failed = Some(failure),
                            other => prop_assert!(false, "after an ask-again: {:?}", other),
                        }
                    }
                    asked = false;
                }
                Op::Hold(hold) => {
                    let hold = driver.handle_hold(now, hold.map(Duration::from_millis), &mut req);
                    if let Some(hold) = hold {
                        prop_assert!(hold.hold <= config.max_wait, "a hold past max_wait");
                    }
                }
                Op::Wait(reason, until) => {
                    let reason = match reason {
                        0 => WaitReason::Token,
                        1 => WaitReason::Paced(PaceReason::Spacing),
                        2 => WaitReason::Backoff,
                        _ => WaitReason::BreakerProbe,
                    };
                    let until = until.map(|ms| now.saturating_add(Duration::from_millis(ms)));
                    let wake = driver.handle_wait(now, until, reason, &mut req);
                    if matches!(reason, WaitReason::Paced(_) | WaitReason::Backoff) {
                        first_question = None;
                    }
                    if let Some(give_up) = give_up {
                        prop_assert!(wake.at <= give_up, "a wake past the deadline");
                    }
                    if matches!(reason, WaitReason::Paced(_) | WaitReason::Backoff) && !asked {
                        may_ask = true;
                    }
                }
                Op::Sent => {
                    driver.handle_sent();
                    first_question = None;
                    if !asked {
                        may_ask = true;
                    }
                }
            }
        }
    }

    /// An attempt the fleet answers only "ask again" (any waits up to `max_wait`), against a
    /// reference model: each question comes when the answer said, or after the floor if that is
    /// later (10 ms, doubling per answer, at most 1 s); none later than `max_wait` after the
    /// first, the attempt failing (naming the fleet's budget) where the next would be.
    #[test]
    fn ask_again_chains_are_spaced_and_end_within_max_wait(
        waits in proptest::collection::vec(prop_oneof![0u64..20, 0u64..5_000, 0u64..60_001], 1..200),
    ) {
        let config = DriverConfig::default();
        let mut driver = RequestDriver::new(config, None, true);
        let mut req = request();
        let mut now = Instant::ZERO;
        let last = Instant::ZERO.saturating_add(config.max_wait);
        for (answered, wait) in waits.into_iter().enumerate() {
            prop_assert!(matches!(driver.poll(now, true), Step::AskFleet { .. }), "at {:?}", now);
            let wait = Duration::from_millis(wait);
            let _ = driver.handle_admission(now, Some(Admission::Wait(wait)), &mut req);
            let floor = Duration::from_millis((10u64 << answered.min(16)).min(1_000));
            let at = now.saturating_add(wait.max(floor));
            if at > last {
                let waited = at.saturating_duration_since(Instant::ZERO);
                prop_assert_eq!(driver.poll(now, true), Step::Fail(Failure::NoSlot { waited }));
                break;
            }
            match driver.poll(now, true) {
                Step::Sleep { until, .. } => prop_assert_eq!(until, at),
                other => prop_assert!(false, "expected a sleep to {:?}, got {:?}", at, other),
            }
            prop_assert!(ASK_AGAIN_FIRST <= at.saturating_duration_since(now));
            now = at;
        }
    }

    #[test]
    fn a_token_not_taken_is_never_taken_again(
        ops in proptest::collection::vec((0u8..5, 0u8..4), 1..80),
    ) {
        let fp = |t: u8| Fingerprint::of_token(&[b'a' + t]);
        let mut tokens = TokenDriver::new(&DriverConfig::default());
        let mut refused: Option<u8> = None;
        let mut held: Option<u8> = None;
        for (kind, t) in ops {
            match kind {
                0 => {
                    tokens.handle_held(Some(fp(t)));
                    held = Some(t);
                }
                1 | 2 => {
                    let offered = tokens.handle_offer(fp(t));
                    let excluded = refused.or(held);
                    prop_assert_eq!(offered, excluded != Some(t), "offer of {} ({:?})", t, excluded);
                    if offered && kind == 1 {
                        tokens.handle_taken(fp(t));
                        held = Some(t);
                        refused = None;
                    } else if offered {
                        tokens.handle_refused(fp(t));
                        refused = Some(t);
                    }
                }
                3 => {
                    let _ = tokens.handle_token_answer(t % 2 == 0, true);
                    if t % 2 == 0 {
                        refused = None;
                    }
                }
                _ => prop_assert_eq!(tokens.exclude(), refused.or(held).map(fp)),
            }
        }
    }

    #[test]
    fn the_store_link_keeps_its_contract(
        probe_ms in 1u64..5_000,
        ops in proptest::collection::vec((0u8..5, 0u64..4_000, 0u8..3), 1..200),
    ) {
        let probe = Duration::from_millis(probe_ms);
        let mut link = StoreLink::new(probe);
        // Calls allowed and not yet made: the ticket, and the changes and probes counted, when
        // allowed.
        let mut claims: Vec<(CallTicket, u64, u64)> = Vec::new();
        // The model: joined or degraded, the last probe claimed, the changes and the probes
        // claimed counted.
        let mut degraded = false;
        let mut last_probe: Option<u64> = None;
        let mut changes = 0u64;
        let mut probes = 0u64;
        let mut now = 0u64;
        // Calls out: the ticket and the changes counted when each started.
        let mut calls: Vec<(CallTicket, u64)> = Vec::new();
        for (kind, n, outcome) in ops {
            match kind {
                0 => now = now.saturating_add(n),
                1 | 4 => {
                    // A claim made earlier still holds while the link has not changed and no
                    // other probe was claimed; else (and for a new call) the link is asked as
                    // it is now.
                    let claim = (kind == 4 && !claims.is_empty())
                        .then(|| claims.remove(n as usize % claims.len()));
                    let at = Instant::from_millis(now);
                    let usable = match claim {
                        Some((ticket, ..)) => link.still_usable(at, ticket),
                        None => link.usable(at),
                    };
                    if claim.is_some_and(|(_, when, probe)| when == changes && probe == probes) {
                        prop_assert!(usable, "a claim on an unchanged link holds");
                    } else if !degraded {
                        prop_assert!(usable, "a joined link is usable");
                    } else {
                        let due = last_probe.map_or(0, |at| at + probe_ms);
                        prop_assert_eq!(usable, now >= due, "probe at {} (due {})", now, due);
                        if usable {
                            last_probe = Some(now);
                            probes += 1;
                        }
                    }
                    if usable && claim.is_none() {
                        claims.push((link.call_started(), changes, probes));
                    }
                }
                2 => calls.push((link.call_started(), changes)),
                _ if calls.is_empty() => {}
                _ => {
                    let (ticket, started) = calls.remove(n as usize % calls.len());
                    let outcome = [CallOutcome::Answered, CallOutcome::Busy, CallOutcome::Failed]
                        [usize::from(outcome)];
                    let change = link.record(Instant::from_millis(now), ticket, outcome);
                    let expected = match (started == changes, outcome, degraded) {
                        (true, CallOutcome::Failed, false) => LinkChange::Degraded,
                        (true, CallOutcome::Answered, true) => LinkChange::Rejoined,
                        _ => LinkChange::None,
                    };
                    prop_assert_eq!(change, expected, "{:?} of a call started at change {}, now {}", outcome, started, changes);
                    match change {
                        LinkChange::Degraded => {
                            degraded = true;
                            // Degrading counts as a claimed probe: the next is one interval on.
                            last_probe = Some(now);
                            changes += 1;
                        }
                        LinkChange::Rejoined => {
                            degraded = false;
                            last_probe = None;
                            changes += 1;
                        }
                        LinkChange::None => {}
                    }
                }
            }
            prop_assert_eq!(link.is_joined(), !degraded);
        }
    }
}
