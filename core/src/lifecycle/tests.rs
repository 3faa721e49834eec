extern crate std;
use super::*;
use crate::rng::Rng;
use proptest::prelude::*;
use std::vec::Vec;

type Lc = Lifecycle<64>;

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}
fn s(secs: u64) -> Instant {
    Instant::from_secs(secs)
}
fn tok(v: &str) -> AccessToken<64> {
    AccessToken::new(v).unwrap()
}
/// No jitter, so instants are exact.
fn exact() -> LifecycleConfig {
    LifecycleConfig { refresh_jitter_permille: 0, ..LifecycleConfig::default() }
}

/// A lifecycle holding a 300 s token acquired by a request sent at `sent`, answered 2 s later.
fn holding_300s(sent: Instant) -> (Lc, Rng, Generation) {
    let mut lc = Lc::new(exact()).unwrap();
    let mut rng = Rng::new(1);
    let ticket = lc.start_request(sent).unwrap();
    let at = sent + Duration::from_secs(2);
    let g = lc.on_success(at, ticket, tok("A"), Duration::from_secs(300), &mut rng).unwrap();
    (lc, rng, g)
}

#[test]
fn first_request_is_due_at_once_and_single_flight() {
    let mut lc = Lc::new(exact()).unwrap();
    assert_eq!(lc.state(s(0)), LifecycleState::NoToken { next_attempt: Instant::ZERO });
    let ticket = lc.start_request(s(0)).unwrap();
    assert_eq!(lc.start_request(s(0)), None, "never two requests in flight");
    assert_eq!(lc.start_request(s(29)), None);
    assert_eq!(lc.state(s(1)), LifecycleState::Acquiring);
    assert!(lc.token(s(1)).is_none());
    let _ = ticket;
}

#[test]
fn refresh_at_margin_and_expiry_anchored_to_send_time() {
    // Sent at 10 s, answered at 12 s, life 300 s: expires at 310 s (not 312 s), refresh
    // 60 s before expiry at 250 s, stop handing out 5 s before expiry at 305 s.
    let (mut lc, _, g) = holding_300s(s(10));
    let times = lc.token_times(s(12)).unwrap();
    assert_eq!(times.expires_at, s(310));
    assert_eq!(times.refresh_at, s(250));
    assert_eq!(times.usable_until, s(305));
    assert_eq!(lc.start_request(s(250) - Duration::from_millis(1)), None, "T-1: not due");
    assert_eq!(lc.token(t(304_999)).map(|(_, g)| g), Some(g), "T-1: still usable");
    assert_eq!(lc.token(s(305)), None, "T: never handed out at usable-until");
    assert!(lc.start_request(s(250)).is_some(), "T: refresh due");
    assert_eq!(lc.state(s(251)), LifecycleState::Refreshing { generation: g });
    assert!(lc.token(s(251)).is_some(), "old token served while refreshing");
}

#[test]
fn short_tokens_refresh_at_a_fraction_of_life() {
    let cfg = LifecycleConfig::default();
    assert_eq!(cfg.refresh_offset(Duration::from_secs(2)), Duration::from_secs(1));
    assert_eq!(cfg.refresh_offset(Duration::from_secs(61)), Duration::from_millis(30_500));
    assert_eq!(cfg.refresh_offset(Duration::from_secs(300)), Duration::from_secs(240));
    // Long tokens: never later than 90 % of life.
    assert_eq!(cfg.refresh_offset(Duration::from_secs(86_400)), Duration::from_secs(77_760));
    assert_eq!(cfg.safety(Duration::from_secs(2)), Duration::from_millis(200));
    assert_eq!(cfg.refresh_offset(Duration::ZERO), Duration::ZERO);
}

/// Driven as an adapter drives it: the expiry wake comes at once and is handled, and the
/// dropped token must not make the next request due before the spacing.
#[test]
fn zero_life_cannot_drive_a_request_loop() {
    let mut lc = Lc::new(exact()).unwrap();
    let mut rng = Rng::new(3);
    let ticket = lc.start_request(s(0)).unwrap();
    let g = lc.on_success(t(5), ticket, tok("Z"), Duration::ZERO, &mut rng).unwrap();
    assert!(lc.token(t(5)).is_none(), "a token with no life is never handed out");
    assert_eq!(lc.poll_timeout(), Some((s(0), Wake::TokenExpiry)));
    lc.handle_timeout(t(5), &mut rng);
    let events: Vec<_> = core::iter::from_fn(|| lc.poll_event()).collect();
    assert_eq!(events.last(), Some(&LifecycleEvent::Expired(g)));
    assert_eq!(lc.state(t(5)), LifecycleState::NoToken { next_attempt: s(1) });
    assert_eq!(lc.poll_timeout(), Some((s(1), Wake::RequestDue)), "says until when");
    assert_eq!(lc.start_request(t(5)), None);
    assert_eq!(lc.start_request(t(999)), None, "T-1");
    assert!(lc.start_request(s(1)).is_some(), "T: min_refresh_interval after the last start");
}

/// Every path that makes a request due waits for the spacing: a failure the server asks to
/// retry at once, an abandoned request, a credential change.
#[test]
fn every_path_to_a_due_request_keeps_the_spacing() {
    let mut rng = Rng::new(3);
    let retry_now = [
        TokenFailure::Transient { retry_after: Some(Duration::ZERO) },
        TokenFailure::RateLimited { retry_after: Some(Duration::ZERO) },
    ];
    for failure in retry_now {
        let mut lc = Lc::new(exact()).unwrap();
        let ticket = lc.start_request(s(10)).unwrap();
        lc.on_failure(t(10_010), ticket, failure, &mut rng);
        assert_eq!(
            lc.poll_event(),
            Some(LifecycleEvent::RequestFailed {
                failure,
                failures: 1,
                next_attempt: s(11),
                serving_stale: false,
            }),
            "the event says until when"
        );
        assert_eq!(lc.next_request_at(), Some(s(11)));
        assert_eq!(lc.start_request(t(10_999)), None, "T-1");
        assert!(lc.start_request(s(11)).is_some(), "T");
    }

    let mut lc = Lc::new(exact()).unwrap();
    let ticket = lc.start_request(s(10)).unwrap();
    lc.on_abandoned(t(10_010), ticket);
    assert_eq!(lc.start_request(t(10_999)), None, "abandoned: T-1");
    assert!(lc.start_request(s(11)).is_some(), "abandoned: T");

    // A credential change does not go early either (a secret reloaded in a loop).
    let mut lc = Lc::new(exact()).unwrap();
    let _ticket = lc.start_request(s(10)).unwrap();
    lc.credentials_changed(t(10_010));
    assert_eq!(lc.state(t(10_010)), LifecycleState::NoToken { next_attempt: s(11) });
    assert_eq!(lc.start_request(t(10_999)), None, "rotated: T-1");
    let _ticket = lc.start_request(s(11)).unwrap();
    lc.credentials_changed(s(11));
    assert_eq!(lc.start_request(t(11_999)), None, "rotated twice: T-1");
    assert!(lc.start_request(s(12)).is_some(), "rotated twice: T");
}

/// A server's `Retry-After` lengthens the backoff but never shortens it: one that answers every
/// failure with `Retry-After: 0` gets the same doubling waits as one that says nothing, not a
/// request per `min_refresh_interval` for as long as it fails.
#[test]
fn a_short_retry_after_does_not_shorten_the_backoff() {
    let mut rng = Rng::new(5);
    for failure in [
        TokenFailure::Transient { retry_after: Some(Duration::ZERO) },
        TokenFailure::RateLimited { retry_after: Some(Duration::from_millis(10)) },
    ] {
        let mut lc = Lc::new(exact()).unwrap();
        let mut at = s(0);
        let mut requests = 0;
        while at < s(600) {
            let ticket = lc.start_request(at).expect("due");
            requests += 1;
            lc.on_failure(at, ticket, failure, &mut rng);
            let next = lc.next_request_at().unwrap();
            // Equal jitter: at least half the doubling ceiling (1 s, 2 s, ... capped at 60 s).
            let ceiling =
                Duration::from_secs(1 << (requests - 1).min(6)).min(Duration::from_secs(60));
            assert!(next - at >= ceiling.mul_ratio(1, 2), "{failure:?} #{requests}: {}", next - at);
            at = next;
        }
        // 1 + 2 + ... + 32 s, then 30 to 60 s each: at most 26 requests in ten minutes (there
        // would be 600 at one per second).
        assert!(requests <= 26, "{failure:?}: {requests} requests in ten minutes");
    }

    // A longer wish is honoured as it is.
    let mut lc = Lc::new(exact()).unwrap();
    let ticket = lc.start_request(s(0)).unwrap();
    let wait = Duration::from_secs(45);
    lc.on_failure(s(0), ticket, TokenFailure::Transient { retry_after: Some(wait) }, &mut rng);
    assert_eq!(lc.next_request_at(), Some(s(45)));
}

/// The one exception: the refresh after a 401 goes at once, but only once per interval, so
/// a server that refuses every fresh token cannot chain early refreshes.
#[test]
fn one_early_refresh_per_interval_after_a_401() {
    let mut lc = Lc::new(exact()).unwrap();
    let mut rng = Rng::new(3);
    let life = Duration::from_secs(300);
    let ticket = lc.start_request(s(0)).unwrap();
    let g1 = lc.on_success(t(10), ticket, tok("A"), life, &mut rng).unwrap();
    assert!(lc.invalidate(t(20), g1));
    let ticket = lc.start_request(t(20)).expect("the refresh after a 401 goes at once");
    let g2 = lc.on_success(t(30), ticket, tok("B"), life, &mut rng).unwrap();
    // The fresh token is refused too: its refresh waits for the spacing of early ones.
    assert!(lc.invalidate(t(40), g2));
    assert_eq!(lc.state(t(40)), LifecycleState::NoToken { next_attempt: t(1020) });
    assert_eq!(lc.poll_timeout(), Some((t(1020), Wake::RequestDue)));
    assert_eq!(lc.start_request(t(1019)), None, "T-1");
    let ticket = lc.start_request(t(1020)).expect("T");
    let g3 = lc.on_success(t(1030), ticket, tok("C"), life, &mut rng).unwrap();
    assert!(lc.invalidate(t(1040), g3));
    assert_eq!(lc.start_request(t(2019)), None, "one per interval, however often refused");
    assert!(lc.start_request(t(2020)).is_some());

    // A backoff in force is not skipped by a 401.
    let mut lc = Lc::new(exact()).unwrap();
    let ticket = lc.start_request(s(0)).unwrap();
    let g = lc.on_success(t(10), ticket, tok("A"), life, &mut rng).unwrap();
    let ticket = lc.start_request(s(240)).unwrap();
    let wait = Duration::from_secs(30);
    lc.on_failure(s(241), ticket, TokenFailure::RateLimited { retry_after: Some(wait) }, &mut rng);
    assert!(lc.invalidate(s(242), g));
    assert_eq!(lc.next_request_at(), Some(s(271)));
}

#[test]
fn jitter_spreads_a_fleet_but_stays_within_the_margin() {
    let cfg = LifecycleConfig::default();
    let mut seen = Vec::new();
    for seed in 0..50 {
        let mut lc = Lc::new(cfg).unwrap();
        let mut rng = Rng::new(seed);
        let ticket = lc.start_request(s(0)).unwrap();
        lc.on_success(s(0), ticket, tok("A"), Duration::from_secs(300), &mut rng).unwrap();
        let r = lc.token_times(s(0)).unwrap().refresh_at;
        // Refresh between 210 s (240 - 50 % of the 60 s margin) and 240 s.
        assert!(r > s(210) && r <= s(240), "{r}");
        seen.push(r);
    }
    seen.sort();
    seen.dedup();
    assert!(seen.len() > 40, "instances spread their refreshes");
}

#[test]
fn failed_refresh_keeps_serving_the_old_token_with_backoff() {
    let (mut lc, mut rng, g) = holding_300s(s(0));
    let ticket = lc.start_request(s(240)).unwrap();
    lc.on_failure(s(241), ticket, TokenFailure::Transient { retry_after: None }, &mut rng);
    let LifecycleState::BackingOff { next_attempt, failures: 1, serving: true } = lc.state(s(241))
    else {
        panic!("{:?}", lc.state(s(241)));
    };
    // Equal jitter: between 0.5 s and 1 s after the failure.
    assert!(next_attempt >= t(241_500) && next_attempt <= s(242), "{next_attempt}");
    assert_eq!(lc.token(s(241)).map(|(_, g)| g), Some(g));
    assert_eq!(lc.start_request(next_attempt - Duration::from_millis(1)), None);
    let ticket = lc.start_request(next_attempt).unwrap();
    lc.on_failure(
        next_attempt,
        ticket,
        TokenFailure::RateLimited { retry_after: Some(Duration::from_secs(30)) },
        &mut rng,
    );
    assert_eq!(lc.next_request_at(), Some(next_attempt + Duration::from_secs(30)));
    // Past usable-until the old token is gone, never served.
    lc.handle_timeout(s(295), &mut rng);
    assert!(lc.token(s(295)).is_none());
    let events: Vec<_> = core::iter::from_fn(|| lc.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(e, LifecycleEvent::RequestFailed { failures: 1, .. })));
    assert_eq!(events.last(), Some(&LifecycleEvent::Expired(g)));
}

#[test]
fn backoff_grows_and_is_capped() {
    let cfg = exact();
    let mut rng = Rng::new(9);
    for failures in 1..80 {
        let d = cfg.retry_delay(failures, &mut rng);
        assert!(d <= cfg.retry_cap, "{failures}: {d}");
        assert!(d >= cfg.retry_base.mul_ratio(1, 2));
    }
    assert!(cfg.retry_delay(7, &mut rng) >= Duration::from_secs(30));
}

/// Equal jitter on odd ceilings: the fixed half rounds down, the random half covers the
/// rest up to the ceiling inclusive.
#[test]
fn backoff_halves_an_odd_ceiling_downwards() {
    let mut rng = Rng::new(3);
    for (ceiling, lowest) in [(1, 0), (3, 1), (5, 2)] {
        let cfg = LifecycleConfig {
            retry_base: Duration::from_millis(ceiling),
            retry_cap: Duration::from_millis(ceiling),
            ..exact()
        };
        let mut seen = std::vec::Vec::new();
        for _ in 0..200 {
            let d = cfg.retry_delay(1, &mut rng).as_millis();
            if !seen.contains(&d) {
                seen.push(d);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (lowest..=ceiling).collect::<std::vec::Vec<_>>(), "{ceiling}");
    }
}

#[test]
fn invalidate_only_drops_the_rejected_generation() {
    let (mut lc, mut rng, g1) = holding_300s(s(0));
    assert!(lc.invalidate(s(10), g1));
    assert!(lc.token(s(10)).is_none());
    assert!(!lc.invalidate(s(10), g1), "repeated invalidation is harmless");
    let ticket = lc.start_request(s(10)).expect("refresh due at once after a 401");
    let g2 = lc.on_success(s(11), ticket, tok("B"), Duration::from_secs(300), &mut rng).unwrap();
    assert!(g2 > g1);
    assert!(!lc.invalidate(s(12), g1), "a late 401 for the old token keeps the new one");
    assert_eq!(lc.token(s(12)).map(|(t, g)| (t.as_str(), g)), Some(("B", g2)));
}

#[test]
fn invalidate_while_refreshing_keeps_the_request_and_drops_the_token() {
    let (mut lc, mut rng, g1) = holding_300s(s(0));
    let ticket = lc.start_request(s(240)).unwrap();
    assert!(lc.invalidate(s(241), g1));
    assert_eq!(lc.state(s(241)), LifecycleState::Acquiring);
    assert_eq!(lc.start_request(s(241)), None, "still single flight");
    assert!(lc.on_success(s(242), ticket, tok("B"), Duration::from_secs(300), &mut rng).is_some());
}

const REASONS: [RejectReason; 6] = [
    RejectReason::InvalidClient,
    RejectReason::UnauthorizedClient,
    RejectReason::InvalidScope,
    RejectReason::GrantRejected,
    RejectReason::UnusableResponse,
    RejectReason::Redirected,
];

/// A lifecycle whose first request, sent at 0, was rejected for `reason` at 2 s.
fn rejected(config: LifecycleConfig, reason: RejectReason) -> (Lc, Rng) {
    let mut lc = Lc::new(config).unwrap();
    let mut rng = Rng::new(1);
    let ticket = lc.start_request(s(0)).unwrap();
    lc.on_failure(s(2), ticket, TokenFailure::Fatal(reason), &mut rng);
    (lc, rng)
}

/// Every reason stops requests for `recheck_after` (5 min) after the answer, says until when
/// (state, event, next deadline), then lets exactly one request out.
#[cfg(feature = "recheck")]
#[test]
fn each_rejection_stops_requests_until_the_recheck() {
    for reason in REASONS {
        let (mut lc, _) = rejected(exact(), reason);
        assert_eq!(lc.rejected(), Some(reason));
        let recheck_at = Some(s(302));
        assert_eq!(lc.state(s(2)), LifecycleState::Rejected { reason, recheck_at });
        assert_eq!(
            lc.poll_event(),
            Some(LifecycleEvent::CredentialsRejected { reason, recheck_at })
        );
        assert_eq!(lc.next_request_at(), recheck_at);
        assert_eq!(lc.poll_timeout(), Some((s(302), Wake::RequestDue)), "{reason:?}");
        for secs in [2, 3, 60, 301] {
            assert_eq!(lc.start_request(s(secs)), None, "{reason:?}: no retry loop");
        }
        assert_eq!(lc.start_request(t(301_999)), None, "{reason:?}: T-1");
        assert!(lc.start_request(s(302)).is_some(), "{reason:?}: T");
        assert_eq!(lc.rejected(), None, "the recheck in flight is not rejected");
        assert_eq!(lc.start_request(s(302)), None, "{reason:?}: one request, single flight");
    }
}

/// However many callers poll, however often: one request per hold, the hold doubling per
/// rejection in a row (5, 10, 20, 40 min) up to the cap (1 h).
#[cfg(feature = "recheck")]
#[test]
fn a_rejected_client_sends_one_request_per_hold_doubling_to_the_cap() {
    let (mut lc, mut rng) = (Lc::new(exact()).unwrap(), Rng::new(1));
    let mut starts = Vec::new();
    let mut at = s(0);
    while at < s(5 * 3600) {
        for _caller in 0..10 {
            if let Some(ticket) = lc.start_request(at) {
                starts.push(at.as_millis() / 1000);
                let failure = TokenFailure::Fatal(RejectReason::InvalidClient);
                lc.on_failure(at + Duration::from_secs(1), ticket, failure, &mut rng);
            }
        }
        at = at + Duration::from_millis(500);
    }
    // Each hold counts from the answer, a second after the request.
    assert_eq!(starts, [0, 301, 902, 2103, 4504, 8105, 11_706, 15_307], "{starts:?}");
    let cfg = LifecycleConfig { recheck_cap: Duration::from_mins(7), ..exact() };
    let (mut lc, mut rng) = rejected(cfg, RejectReason::InvalidScope);
    for (at, next) in [(302, 722), (722, 1142)] {
        let ticket = lc.start_request(s(at)).unwrap();
        lc.on_failure(s(at), ticket, TokenFailure::Fatal(RejectReason::InvalidScope), &mut rng);
        assert_eq!(lc.next_request_at(), Some(s(next)), "capped at 7 min");
    }
}

/// Until a token comes, the hold spaces every request, whatever ended the one before: a 503
/// asking for no wait, an abandoned request, one that timed out. Only a rejection doubles it.
#[cfg(feature = "recheck")]
#[test]
fn whatever_answers_the_recheck_the_next_request_waits_the_hold() {
    let outcomes: [fn(&mut Lc, Instant, Ticket, &mut Rng); 4] = [
        |lc, at, ticket, rng| {
            let failure = TokenFailure::Transient { retry_after: Some(Duration::ZERO) };
            lc.on_failure(at, ticket, failure, rng)
        },
        |lc, at, ticket, rng| {
            let failure = TokenFailure::RateLimited { retry_after: Some(Duration::from_secs(1)) };
            lc.on_failure(at, ticket, failure, rng)
        },
        |lc, at, ticket, _| lc.on_abandoned(at, ticket),
        |lc, at, _, rng| lc.handle_timeout(at + Duration::from_secs(30), rng),
    ];
    for (k, outcome) in outcomes.into_iter().enumerate() {
        let (mut lc, mut rng) = rejected(exact(), RejectReason::InvalidClient);
        let ticket = lc.start_request(s(302)).unwrap();
        outcome(&mut lc, s(303), ticket, &mut rng);
        let ended = if k == 3 { s(333) } else { s(303) };
        assert_eq!(lc.rejected(), None, "{k}: not a rejection");
        assert_eq!(lc.next_request_at(), Some(ended + Duration::from_mins(5)), "{k}");
        let at = ended + Duration::from_mins(5);
        assert_eq!(lc.start_request(at - Duration::from_millis(1)), None, "{k}: T-1");
        let ticket = lc.start_request(at).expect("T");
        lc.on_failure(at, ticket, TokenFailure::Fatal(RejectReason::InvalidClient), &mut rng);
        assert_eq!(lc.next_request_at(), Some(at + Duration::from_mins(10)), "{k}: doubled");
    }
}

/// A token ends the stop: requests are back to normal, and a later rejection starts again at
/// the first hold.
#[cfg(feature = "recheck")]
#[test]
fn a_token_ends_the_stop_and_the_doubling() {
    let (mut lc, mut rng) = rejected(exact(), RejectReason::InvalidClient);
    let ticket = lc.start_request(s(302)).unwrap();
    lc.on_failure(s(302), ticket, TokenFailure::Fatal(RejectReason::InvalidClient), &mut rng);
    let ticket = lc.start_request(s(902)).unwrap();
    let g = lc.on_success(s(903), ticket, tok("A"), Duration::from_secs(300), &mut rng).unwrap();
    let events: Vec<_> = core::iter::from_fn(|| lc.poll_event()).collect();
    assert!(
        matches!(events.last(), Some(LifecycleEvent::TokenAcquired { generation, .. }) if *generation == g)
    );
    assert_eq!(lc.state(s(903)), LifecycleState::Valid { generation: g, refresh_at: s(1142) });
    // Normal failures back off as ever (1 s), not by the hold.
    let ticket = lc.start_request(s(1142)).unwrap();
    lc.on_failure(s(1142), ticket, TokenFailure::Transient { retry_after: None }, &mut rng);
    assert!(lc.next_request_at() <= Some(s(1143)));
    let at = lc.next_request_at().unwrap();
    let ticket = lc.start_request(at).unwrap();
    lc.on_failure(at, ticket, TokenFailure::Fatal(RejectReason::InvalidClient), &mut rng);
    assert_eq!(lc.next_request_at(), Some(at + Duration::from_mins(5)), "not 20 min");
}

/// A credential change ends the stop at once (after the spacing), and the doubling with it.
#[cfg(feature = "recheck")]
#[test]
fn a_credential_change_ends_the_stop_at_once() {
    let (mut lc, mut rng) = rejected(exact(), RejectReason::InvalidClient);
    lc.credentials_changed(s(10));
    assert_eq!(lc.rejected(), None);
    assert_eq!(lc.state(s(10)), LifecycleState::NoToken { next_attempt: s(10) });
    let ticket = lc.start_request(s(10)).expect("at once");
    lc.on_failure(s(11), ticket, TokenFailure::Fatal(RejectReason::InvalidClient), &mut rng);
    assert_eq!(lc.next_request_at(), Some(s(311)), "the first hold again");
}

/// With `recheck_after: None`, or without the feature `recheck`, a rejection stops requests
/// until the credentials change.
#[test]
fn without_rechecks_a_rejection_stops_until_credentials_change() {
    #[cfg(feature = "recheck")]
    let cfg = LifecycleConfig { recheck_after: None, ..exact() };
    #[cfg(not(feature = "recheck"))]
    let cfg = exact();
    for reason in REASONS {
        let (mut lc, _) = rejected(cfg, reason);
        assert_eq!(lc.state(s(2)), LifecycleState::Rejected { reason, recheck_at: None });
        assert_eq!(
            lc.poll_event(),
            Some(LifecycleEvent::CredentialsRejected { reason, recheck_at: None })
        );
        for secs in [3, 60, 3600, 86_400, 40 * 86_400] {
            assert_eq!(lc.start_request(s(secs)), None, "{reason:?}: no retry loop");
        }
        assert_eq!(lc.next_request_at(), None);
        assert_eq!(lc.poll_timeout(), None);
        lc.credentials_changed(s(100_000));
        assert_eq!(lc.rejected(), None);
        assert!(lc.start_request(s(100_000)).is_some());
    }
}

/// A token from elsewhere (restored, a fleet's) is refused while requests are stopped; the
/// recheck's request may be answered with one (released as abandoned, then installed), which
/// ends the stop. A 401 during the stop does not bring the recheck forward.
#[cfg(feature = "recheck")]
#[test]
fn the_stop_holds_against_installs_and_401s_but_a_token_for_the_recheck_ends_it() {
    let (mut lc, mut rng) = rejected(exact(), RejectReason::InvalidClient);
    assert_eq!(lc.install(s(10), tok("F"), s(4000), &mut rng), None);
    let ticket = lc.start_request(s(302)).unwrap();
    lc.on_abandoned(s(302), ticket);
    let g = lc.install(s(302), tok("F"), s(4000), &mut rng).expect("taken");
    assert!(lc.invalidate(s(303), g));
    assert!(lc.start_request(s(303)).is_some(), "a 401 refresh: the stop is over");

    // A token held from before the rejection is served, and dropped after a 401, but the
    // recheck stays where it was.
    let (mut lc, mut rng, g) = holding_300s(s(0));
    let ticket = lc.start_request(s(240)).unwrap();
    lc.on_failure(s(241), ticket, TokenFailure::Fatal(RejectReason::InvalidClient), &mut rng);
    assert_eq!(lc.token(s(242)).map(|(_, g)| g), Some(g), "still usable");
    assert!(lc.invalidate(s(242), g));
    assert_eq!(lc.next_request_at(), Some(s(541)));
    assert_eq!(lc.start_request(s(540)), None);
}

#[test]
fn stale_and_late_outcomes_are_ignored() {
    let mut lc = Lc::new(exact()).unwrap();
    let mut rng = Rng::new(1);
    let old = lc.start_request(s(0)).unwrap();
    lc.credentials_changed(s(1)); // disowns `old`
    let new = lc.start_request(s(1)).unwrap();
    assert_eq!(lc.on_success(s(2), old, tok("OLD"), Duration::from_secs(300), &mut rng), None);
    lc.on_failure(s(2), old, TokenFailure::Fatal(RejectReason::InvalidClient), &mut rng);
    assert_eq!(lc.state(s(2)), LifecycleState::Acquiring);
    lc.on_success(s(3), new, tok("NEW"), Duration::from_secs(300), &mut rng).unwrap();
    assert_eq!(lc.token(s(3)).map(|(t, _)| t.as_str()), Some("NEW"));
}

#[test]
fn overdue_request_is_abandoned_not_wedged() {
    let mut lc = Lc::new(exact()).unwrap();
    let mut rng = Rng::new(1);
    let ticket = lc.start_request(s(0)).unwrap();
    assert_eq!(lc.poll_timeout(), Some((s(30), Wake::RequestTimeout)));
    lc.handle_timeout(t(29_999), &mut rng);
    assert!(lc.in_flight(), "T-1: still waiting");
    lc.handle_timeout(s(30), &mut rng);
    assert!(!lc.in_flight(), "T: abandoned");
    assert_eq!(lc.poll_event(), Some(LifecycleEvent::RequestTimedOut));
    // The late answer for the abandoned ticket is ignored.
    assert_eq!(lc.on_success(s(31), ticket, tok("L"), Duration::from_secs(300), &mut rng), None);
}

#[test]
fn abandoned_request_releases_single_flight_without_backoff() {
    let mut lc = Lc::new(exact()).unwrap();
    let ticket = lc.start_request(s(0)).unwrap();
    lc.on_abandoned(s(1), ticket);
    assert!(lc.start_request(s(1)).is_some());
}

/// Every caller giving up before the server answers (each call's limit shorter than the token
/// endpoint's latency) must not send a request per spacing for ever: from the second abandon
/// in a row, the next request waits as after failures, doubling up to the cap.
#[test]
fn abandon_after_abandon_backs_off() {
    let cfg = LifecycleConfig { retry_cap: Duration::from_secs(8), ..exact() };
    let (mut lc, mut rng) = (Lc::new(cfg).unwrap(), Rng::new(1));
    let mut at = s(0);
    let mut starts = Vec::new();
    while at < s(60) {
        if let Some(ticket) = lc.start_request(at) {
            starts.push(at.as_millis() / 1000);
            lc.on_abandoned(at, ticket);
        }
        at = at + Duration::from_millis(100);
    }
    // Spacing (1 s) after the first abandon, then 1, 2, 4, 8, 8… s after each one ends.
    assert_eq!(starts, [0, 1, 2, 4, 8, 16, 24, 32, 40, 48, 56], "{starts:?}");

    // Any outcome ends the run: after a failure, one abandon is free again.
    let ticket = lc.start_request(s(70)).unwrap();
    lc.on_failure(s(70), ticket, TokenFailure::Transient { retry_after: None }, &mut rng);
    let at = lc.next_request_at().unwrap();
    let ticket = lc.start_request(at).unwrap();
    lc.on_abandoned(at, ticket);
    assert_eq!(lc.next_request_at(), Some(at + Duration::from_secs(1)), "spacing only");

    // So does a token installed while none is in flight (restored, or a fleet's): after it,
    // one abandon is free again.
    let mut lc = Lc::new(cfg).unwrap();
    for _ in 0..3 {
        let at = lc.next_request_at().unwrap();
        let ticket = lc.start_request(at).unwrap();
        lc.on_abandoned(at, ticket);
    }
    let at = lc.next_request_at().unwrap();
    lc.install(at, tok("R"), at + Duration::from_secs(300), &mut rng).unwrap();
    lc.invalidate(at, lc.token(at).unwrap().1);
    let at = lc.next_request_at().unwrap().max(at);
    let ticket = lc.start_request(at).unwrap();
    lc.on_abandoned(at, ticket);
    assert_eq!(lc.next_request_at(), Some(at + Duration::from_secs(1)), "run ended (install)");

    // So does a token, and a credential change.
    for end in 0..2 {
        let mut lc = Lc::new(cfg).unwrap();
        for k in 0..3 {
            let at = lc.next_request_at().unwrap();
            let ticket = lc.start_request(at).unwrap();
            lc.on_abandoned(at, ticket);
            assert!(k < 2 || lc.next_request_at() > Some(at + Duration::from_secs(1)));
        }
        let at = lc.next_request_at().unwrap();
        if end == 0 {
            let ticket = lc.start_request(at).unwrap();
            lc.on_success(at, ticket, tok("T"), Duration::from_secs(300), &mut rng).unwrap();
            lc.invalidate(at, lc.token(at).unwrap().1);
        } else {
            lc.credentials_changed(at);
        }
        let at = lc.next_request_at().unwrap().max(at + Duration::from_secs(1));
        let ticket = lc.start_request(at).unwrap();
        lc.on_abandoned(at, ticket);
        assert_eq!(lc.next_request_at(), Some(at + Duration::from_secs(1)), "run ended ({end})");
    }
}

#[test]
fn install_serves_a_restored_token_and_plans_its_refresh() {
    let mut lc = Lc::new(exact()).unwrap();
    let mut rng = Rng::new(1);
    let g = lc.install(s(0), tok("R"), s(300), &mut rng).unwrap();
    assert_eq!(lc.token(s(1)).map(|(_, g)| g), Some(g));
    assert_eq!(lc.token_times(s(0)).unwrap().refresh_at, s(240));
    assert_eq!(lc.install(s(0), tok("X"), s(0), &mut rng), None, "expired tokens refused");
}

#[test]
fn poll_timeout_names_the_earliest_deadline() {
    let (lc, _, _) = holding_300s(s(0));
    assert_eq!(lc.poll_timeout(), Some((s(240), Wake::RequestDue)));
    let (mut lc, _, _) = holding_300s(s(0));
    let _ticket = lc.start_request(s(240)).unwrap();
    assert_eq!(lc.poll_timeout(), Some((s(270), Wake::RequestTimeout)));
    // The token stops being usable at 295 s: a request timing out later wakes for the
    // expiry first; one timing out at the same instant wins the tie.
    let (lc, _, _) = holding_300s(s(0));
    assert_eq!(lc.token_times(s(0)).unwrap().usable_until, s(295));
    for (sent, wake) in [
        (s(264), (s(294), Wake::RequestTimeout)),
        (s(265), (s(295), Wake::RequestTimeout)),
        (s(266), (s(295), Wake::TokenExpiry)),
    ] {
        let (mut lc, _, _) = holding_300s(s(0));
        let _ticket = lc.start_request(sent).unwrap();
        assert_eq!(lc.poll_timeout(), Some(wake), "{sent}");
    }
    // Rejected while a token is still usable: only its expiry is left to wake for.
    let (mut lc, mut rng, _) = holding_300s(s(0));
    let ticket = lc.start_request(s(240)).unwrap();
    lc.on_failure(s(241), ticket, TokenFailure::Fatal(RejectReason::InvalidClient), &mut rng);
    assert_eq!(lc.poll_timeout(), Some((s(295), Wake::TokenExpiry)));
}

#[test]
fn config_validation() {
    assert!(LifecycleConfig::default().validate().is_ok());
    let bad = LifecycleConfig { refresh_jitter_permille: 600, ..LifecycleConfig::default() };
    assert_eq!(bad.validate(), Err(ConfigError::JitterTooLarge));
    let bad = LifecycleConfig { min_refresh_permille: 950, ..LifecycleConfig::default() };
    assert_eq!(bad.validate(), Err(ConfigError::RefreshFractions));
    let bad = LifecycleConfig { retry_base: Duration::ZERO, ..LifecycleConfig::default() };
    assert!(Lc::new(bad).is_err());
}

#[cfg(feature = "recheck")]
#[test]
fn recheck_config_validation() {
    for recheck_after in [Duration::ZERO, Duration::from_mins(61)] {
        let bad =
            LifecycleConfig { recheck_after: Some(recheck_after), ..LifecycleConfig::default() };
        assert_eq!(bad.validate(), Err(ConfigError::RecheckBounds), "{recheck_after}");
    }
    let cap = LifecycleConfig {
        recheck_after: Some(Duration::from_mins(60)),
        ..LifecycleConfig::default()
    };
    assert_eq!(cap.validate(), Ok(()));
}

/// The default config rechecking `recheck_after` after a rejection (`None`: off), with what
/// the model needs: the recheck (off without the feature `recheck`) and its cap.
#[cfg(feature = "recheck")]
fn rechecking(recheck_after: Option<Duration>) -> (LifecycleConfig, Option<Duration>, Duration) {
    let config = LifecycleConfig { recheck_after, ..LifecycleConfig::default() };
    (config, recheck_after, config.recheck_cap)
}

#[cfg(not(feature = "recheck"))]
fn rechecking(_: Option<Duration>) -> (LifecycleConfig, Option<Duration>, Duration) {
    (LifecycleConfig::default(), None, Duration::ZERO)
}

/// Operations a caller (or a hostile scheduler) can perform, in any order.
#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Start,
    Succeed {
        life_s: u64,
    },
    Fail(u8),
    Abandon,
    Invalidate {
        back: u32,
    },
    Timeout,
    /// The adapter sleeps until the next deadline, handles it and starts what is due.
    SleepToDeadline,
    CredentialsChanged,
    Use,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..120_000).prop_map(Op::Advance),
        3 => Just(Op::Start),
        2 => prop_oneof![Just(0u64), 0u64..3, 0u64..400].prop_map(|life_s| Op::Succeed { life_s }),
        2 => any::<u8>().prop_map(Op::Fail),
        1 => Just(Op::Abandon),
        2 => (0u32..3).prop_map(|back| Op::Invalidate { back }),
        2 => Just(Op::Timeout),
        3 => Just(Op::SleepToDeadline),
        1 => Just(Op::CredentialsChanged),
        4 => Just(Op::Use),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Against a reference model of what was acquired and when: never an expired token,
    /// never two requests in flight, never a panic, and outcomes only for the live ticket.
    /// And whatever the lifetimes, failures and timeouts: no two requests start closer than
    /// `min_refresh_interval`, but for one refresh after a 401 per interval; and after a
    /// rejection, until a token or a credential change, none starts sooner than the hold
    /// (`recheck_after`, doubled per rejection in a row up to `recheck_cap`) after the one
    /// before ended, however it ended.
    #[test]
    fn never_expired_never_two_in_flight(
        ops in proptest::collection::vec(op(), 1..200),
        seed: u64,
        recheck_after in prop_oneof![
            Just(None),
            Just(Some(Duration::from_mins(5))),
            (1u64..=3_600_000).prop_map(|ms| Some(Duration::from_millis(ms))),
        ],
    ) {
        let (config, recheck_after, cap) = rechecking(recheck_after);
        let min = config.min_refresh_interval;
        let mut lc = Lifecycle::<16>::new(config).unwrap();
        let mut rng = Rng::new(seed);
        let mut now = Instant::ZERO;
        // Model: tickets outstanding, and the absolute expiry of every token by its value.
        let mut outstanding: Option<(Ticket, Instant)> = None;
        let mut expiries: Vec<(std::string::String, Instant)> = Vec::new();
        let mut counter = 0u32;
        // Model of the spacing: the last start, the last start that came early (closer
        // than `min` to the one before), and whether a 401 dropped a token since the last
        // start (with no token or credential change since).
        let mut last_start: Option<Instant> = None;
        let mut last_early: Option<Instant> = None;
        let mut refused_since_start = false;
        // Model of the hold after abandoned requests: how many in a row, and the earliest
        // instant the run lets the next request start.
        let mut abandoned = 0u32;
        let mut abandon_hold = Instant::ZERO;
        // Model of the hold after a rejection: its length (zero: no rejection since the last
        // token or credential change), and the earliest instant the next request may start.
        let mut recheck = Duration::ZERO;
        let mut recheck_until = Instant::ZERO;
        let mut start = |lc: &mut Lifecycle<16>, now: Instant, outstanding: &mut Option<(Ticket, Instant)>, refused: &mut bool, hold: Instant, recheck_until: Instant| {
            let Some(ticket) = lc.start_request(now) else { return Ok(()) };
            prop_assert!(outstanding.is_none(), "two requests in flight");
            prop_assert!(now >= hold, "a request at {now} during the hold of abandoned requests, until {hold}");
            prop_assert!(now >= recheck_until, "a request at {now} during the hold of a rejection, until {recheck_until}");
            *outstanding = Some((ticket, now));
            if let Some(gap) = last_start.map(|at| now.saturating_duration_since(at)) && gap < min {
                prop_assert!(*refused, "two requests {gap} apart, no 401 between them");
                prop_assert!(
                    last_early.is_none_or(|at| now.saturating_duration_since(at) >= min),
                    "two early refreshes within {min}"
                );
                last_early = Some(now);
            }
            last_start = Some(now);
            *refused = false;
            Ok(())
        };
        for op in ops {
            match op {
                Op::Advance(ms) => now = now + Duration::from_millis(ms),
                Op::Start => start(&mut lc, now, &mut outstanding, &mut refused_since_start, abandon_hold, recheck_until)?,
                Op::Succeed { life_s } => {
                    if let Some((ticket, sent)) = outstanding.take() {
                        counter += 1;
                        let value = std::format!("tok{counter}");
                        let life = Duration::from_secs(life_s);
                        if lc.on_success(now, ticket, tok16(&value), life, &mut rng).is_some() {
                            expiries.push((value, sent + life));
                            refused_since_start = false;
                            (abandoned, abandon_hold) = (0, Instant::ZERO);
                            (recheck, recheck_until) = (Duration::ZERO, Instant::ZERO);
                        }
                    }
                }
                Op::Fail(kind) => {
                    if let Some((ticket, sent)) = outstanding.take() {
                        let failure = match kind % 5 {
                            0 => TokenFailure::Transient { retry_after: None },
                            1 => TokenFailure::RateLimited { retry_after: Some(Duration::from_millis(u64::from(kind) * 100)) },
                            2 => TokenFailure::Transient { retry_after: Some(Duration::MAX) },
                            3 => TokenFailure::Transient { retry_after: Some(Duration::ZERO) },
                            _ => TokenFailure::Fatal(RejectReason::InvalidClient),
                        };
                        lc.on_failure(now, ticket, failure, &mut rng);
                        (abandoned, abandon_hold) = (0, Instant::ZERO);
                        if let (TokenFailure::Fatal(reason), Some(first)) = (failure, recheck_after) {
                            recheck = recheck.saturating_add(recheck).max(first).min(cap);
                            let recheck_at = lc.next_request_at();
                            prop_assert_eq!(lc.state(now), LifecycleState::Rejected { reason, recheck_at });
                            // Exactly the hold, unless the spacing or a held token's refresh
                            // point is later.
                            let refresh = lc.token_times(now).map_or(Instant::ZERO, |t| t.refresh_at);
                            let due = (now + recheck).max(refresh).max(sent + min);
                            prop_assert!(recheck_at.is_some_and(|at| at >= now + recheck && at <= due), "{recheck_at:?} after a rejection at {now}, hold {recheck}");
                        }
                        if !recheck.is_zero() {
                            recheck_until = now + recheck;
                        }
                    }
                }
                Op::Abandon => {
                    if let Some((ticket, sent)) = outstanding.take() {
                        lc.on_abandoned(now, ticket);
                        if !recheck.is_zero() {
                            recheck_until = now + recheck;
                        }
                        abandoned += 1;
                        if abandoned >= 2 {
                            // retry_base (1 s) doubled per abandon after the second, at most
                            // retry_cap (60 s).
                            let wait = Duration::from_secs((1u64 << (abandoned - 2).min(6)).min(60));
                            abandon_hold = now + wait;
                        }
                        // And no longer: the next request is due by the latest of the hold,
                        // the spacing after this one's start and the held token's refresh
                        // point (a reset missed would make the hold too long).
                        let refresh = lc.token_times(now).map_or(Instant::ZERO, |t| t.refresh_at);
                        let bound = abandon_hold.max(now).max(sent + min).max(refresh).max(recheck_until);
                        let due = lc.next_request_at();
                        prop_assert!(due.is_some_and(|at| at <= bound), "due {:?} after abandon {}, by {}", due, abandoned, bound);
                    }
                }
                Op::Invalidate { back } => {
                    if let Some((_, g)) = lc.token(now)
                        && lc.invalidate(now, Generation(g.0.saturating_sub(back)))
                    {
                        refused_since_start = true;
                    }
                }
                Op::Timeout => lc.handle_timeout(now, &mut rng),
                Op::SleepToDeadline => {
                    if let Some((at, _)) = lc.poll_timeout() {
                        now = now.max(at);
                    }
                    lc.handle_timeout(now, &mut rng);
                    if !lc.in_flight() && outstanding.take().is_some() {
                        // Timed out: a failure, which ends a run of abandons.
                        (abandoned, abandon_hold) = (0, Instant::ZERO);
                        if !recheck.is_zero() {
                            recheck_until = now + recheck;
                        }
                    }
                    start(&mut lc, now, &mut outstanding, &mut refused_since_start, abandon_hold, recheck_until)?;
                }
                Op::CredentialsChanged => {
                    lc.credentials_changed(now);
                    outstanding = None; // disowned
                    refused_since_start = false;
                    (abandoned, abandon_hold) = (0, Instant::ZERO);
                    (recheck, recheck_until) = (Duration::ZERO, Instant::ZERO);
                }
                Op::Use => {}
            }
            // If the lifecycle no longer considers the model's ticket in flight (timeout),
            // the model forgets it too.
            if !lc.in_flight() && outstanding.take().is_some() {
                // Timed out: a failure, which ends a run of abandons.
                (abandoned, abandon_hold) = (0, Instant::ZERO);
                if !recheck.is_zero() {
                    recheck_until = now + recheck;
                }
            }
            if let Some((token, _)) = lc.token(now) {
                let expiry = expiries.iter().find(|(v, _)| v == token.as_str()).map(|(_, e)| *e);
                prop_assert!(expiry.is_some(), "served a token never acquired");
                prop_assert!(now < expiry.unwrap_or(Instant::ZERO), "served an expired token at {now}");
            }
            // The session's shortcut to the rejected state agrees with the state.
            let rejected = match lc.state(now) {
                LifecycleState::Rejected { reason, .. } => Some(reason),
                _ => None,
            };
            prop_assert_eq!(lc.rejected(), rejected);
            if let Some((at, _)) = lc.poll_timeout() {
                let _ = at; // any instant is fine; must not panic
            }
            while lc.poll_event().is_some() {}
        }
    }
}

fn tok16(v: &str) -> AccessToken<16> {
    AccessToken::new(v).unwrap()
}
