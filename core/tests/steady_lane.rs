//! The steady-state lane against the session itself (the reference): two sessions built alike
//! and fed the same random inputs (token answers, requests of any priority and deadline to two
//! hosts, answers of every kind, with and without rate-limit fields, time steps, timeouts); at
//! random points, where the session offers a lane until `U` with generation `G`:
//!
//! - one session sends a request the lane covers at a random `t` in `[now, U)` the full way
//!   (`begin`, `authorize`, which answers `Send` with `G`, then `handle_response`), the other
//!   only counts it (`settle_lane`), or takes the state `Lane::request` gives for an answer
//!   that is not plain;
//! - from then on, every output of the two sessions is the same: each `authorize` answer,
//!   each verdict, the events, the counters, the next deadline, the next lane.
//!
//! So a plain answer in the lane needs no report, and every other is judged as it would have
//! been.

use credflow_core::http::Method;
use credflow_core::lifecycle::Ticket;
use credflow_core::ratelimit::pacer::Priority;
use credflow_core::retry::policy::TransportKind;
use credflow_core::secret::Credentials;
use credflow_core::session::{
    Authorize, HostKey, RequestSpec, RequestState, Session, SessionConfig, TokenEndpoint, Verdict,
};
use credflow_core::{Duration, Instant};
use proptest::prelude::*;

/// The host the lane is asked for; requests go to it and to one other.
const HOST: HostKey = HostKey(7);
const OTHER: HostKey = HostKey(8);

/// What an API server answers: a status, and whether with rate-limit fields.
const STATUSES: [u16; 9] = [200, 204, 304, 401, 403, 404, 429, 500, 503];

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    PollToken,
    AnswerToken(u16),
    Begin {
        other_host: bool,
        priority: u8,
        deadline: bool,
    },
    Authorize(usize),
    Respond {
        index: usize,
        status: usize,
        fields: bool,
    },
    Transport(usize),
    Timeout,
    /// Where the session offers a lane: a request sent in it at the given fraction of the
    /// lane, answered with `STATUSES[status]` (with rate-limit fields if `fields`).
    InLane {
        at: u16,
        status: usize,
        fields: bool,
        method: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop_oneof![0u64..50, 0u64..2_000, 0u64..400_000].prop_map(Op::Advance),
        2 => Just(Op::PollToken),
        2 => prop_oneof![Just(3600u16), 0u16..400].prop_map(Op::AnswerToken),
        4 => (any::<bool>(), 0u8..6, 0u8..5).prop_map(|(o, p, d)| Op::Begin {
            other_host: o && p % 3 == 0,
            priority: p,
            deadline: d == 0,
        }),
        4 => any::<usize>().prop_map(Op::Authorize),
        4 => (any::<usize>(), prop_oneof![4 => Just(0usize), 1 => 0usize..STATUSES.len()], prop_oneof![4 => Just(false), 1 => Just(true)])
            .prop_map(|(index, status, fields)| Op::Respond { index, status, fields }),
        1 => any::<usize>().prop_map(Op::Transport),
        1 => Just(Op::Timeout),
        4 => (any::<u16>(), prop_oneof![3 => Just(0usize), 2 => 0usize..STATUSES.len()], prop_oneof![4 => Just(false), 1 => Just(true)], any::<u8>())
            .prop_map(|(at, status, fields, method)| Op::InLane { at, status, fields, method }),
    ]
}

type S = Session<64, 2>;

/// One session with what its adapter would hold: the requests in flight, the token request.
struct World {
    s: S,
    reqs: Vec<(RequestState, bool)>,
    ticket: Option<Ticket>,
}

fn headers(fields: bool) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![("content-type", "application/json"), ("retry-after", "2")];
    if fields {
        h.extend([
            ("inin-ratelimit-count", "5"),
            ("inin-ratelimit-allowed", "20"),
            ("inin-ratelimit-reset", "30"),
        ]);
    }
    h
}

impl World {
    fn new(seed: u64) -> World {
        let creds = Credentials::from_strs("client", "secret").unwrap();
        let endpoint = TokenEndpoint::new("https://login.example.com/oauth/token").unwrap();
        // No retries but those first attempts buy: the budget's deposits show in the verdicts.
        let mut config = SessionConfig::default();
        config.budget.min_per_sec = 0;
        let s = S::new(creds, endpoint, config, seed).unwrap();
        World { s, reqs: Vec::new(), ticket: None }
    }

    /// Applies `op` at `now`; what the session answered, as text.
    fn step(&mut self, op: &Op, now: Instant) -> String {
        let s = &mut self.s;
        match *op {
            Op::Advance(_) | Op::InLane { .. } => String::new(),
            Op::PollToken => {
                let mut buf = [0u8; 512];
                match s.poll_token_request(now, &mut buf) {
                    Ok(Some((ticket, _))) => {
                        self.ticket = Some(ticket);
                        "token request".into()
                    }
                    other => format!("{:?}", other.map(|o| o.is_some())),
                }
            }
            Op::AnswerToken(life) => match self.ticket.take() {
                Some(ticket) => {
                    let body = format!(
                        r#"{{"access_token":"tok{life}","token_type":"Bearer","expires_in":{life}}}"#
                    );
                    s.handle_token_response(now, ticket, 200, &[], body.as_bytes());
                    "token answered".into()
                }
                None => String::new(),
            },
            Op::Begin { other_host, priority, deadline } => {
                if self.reqs.len() >= 12 {
                    return String::new();
                }
                let priority = [Priority::Normal, Priority::Critical, Priority::Background]
                    [usize::from(priority % 3)];
                let host = if other_host { OTHER } else { HOST };
                let mut spec = RequestSpec::new(Method::Get, host);
                spec.priority = priority;
                spec.deadline = deadline.then(|| now + Duration::from_secs(5));
                self.reqs.push((s.begin(now, spec), false));
                "begun".into()
            }
            Op::Authorize(i) => {
                if self.reqs.is_empty() {
                    return String::new();
                }
                let i = i % self.reqs.len();
                let (req, sent) = &mut self.reqs[i];
                let answer = s.authorize(now, req);
                let text = format!("{answer:?}");
                match answer {
                    Authorize::Send { .. } => *sent = true,
                    Authorize::Fail(_) => {
                        let _ = self.reqs.swap_remove(i);
                    }
                    Authorize::Wait { .. } => {}
                }
                text
            }
            Op::Respond { index, status, fields } => {
                if self.reqs.is_empty() {
                    return String::new();
                }
                let i = index % self.reqs.len();
                if !self.reqs[i].1 {
                    return String::new();
                }
                let verdict = s.handle_response(
                    now,
                    &mut self.reqs[i].0,
                    STATUSES[status],
                    &headers(fields)[..],
                    b"{}",
                );
                self.after(i, verdict)
            }
            Op::Transport(i) => {
                if self.reqs.is_empty() {
                    return String::new();
                }
                let i = i % self.reqs.len();
                if !self.reqs[i].1 {
                    return String::new();
                }
                let verdict =
                    s.handle_transport_error(now, &mut self.reqs[i].0, TransportKind::Reset);
                self.after(i, verdict)
            }
            Op::Timeout => {
                s.handle_timeout(now);
                String::new()
            }
        }
    }

    /// The request `i` was answered with `verdict`: kept for a retry, or gone.
    fn after(&mut self, i: usize, verdict: Verdict) -> String {
        self.reqs[i].1 = false;
        if !matches!(verdict, Verdict::Retry { .. }) {
            let _ = self.reqs.swap_remove(i);
        }
        format!("{verdict:?}")
    }

    /// Everything the session shows: its counters (with `unsettled` requests sent in a lane
    /// and not yet reported), events, next deadline and lane, and its requests' states.
    fn observed(&mut self, now: Instant, unsettled: u64) -> String {
        let mut events = Vec::new();
        while let Some(event) = self.s.poll_event() {
            events.push(event);
        }
        let mut counters = self.s.counters();
        counters.requests += unsettled;
        counters.attempts += unsettled;
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?}",
            counters,
            events,
            self.s.poll_timeout(),
            self.s.steady_lane(now, HOST),
            self.s.token(now).map(|(t, times)| (t.as_str().to_owned(), times)),
            self.reqs,
        )
    }
}

/// A session with a token and a full window of successes to `HOST`: in the steady state.
fn steady(world: &mut World, now: &mut Instant) {
    let warm = [Op::PollToken, Op::AnswerToken(3600)];
    for op in &warm {
        world.step(op, *now);
    }
    for _ in 0..20 {
        world.step(&Op::Begin { other_host: false, priority: 0, deadline: false }, *now);
        world.step(&Op::Authorize(usize::MAX), *now);
        world.step(&Op::Respond { index: usize::MAX, status: 0, fields: false }, *now);
        *now = *now + Duration::from_millis(3);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_lane_answers_as_the_session_would(
        ops in proptest::collection::vec(op(), 1..120),
        seed: u64,
        warm: bool,
    ) {
        // `lane` counts requests in its lane; `full` sends them the full way.
        let (mut lane, mut full) = (World::new(seed), World::new(seed));
        let mut now = Instant::from_secs(100);
        if warm {
            let mut at = now;
            steady(&mut lane, &mut at);
            steady(&mut full, &mut now);
        }
        let mut lanes = 0;
        // Requests sent in a lane and not yet reported: reported only where the session next
        // reads what they count (before it judges an answer or authorizes), as an adapter does.
        let mut unsettled: Option<(credflow_core::session::Lane, u64)> = None;
        for op in &ops {
            let reads = matches!(op, Op::Respond { .. } | Op::Transport(_) | Op::Authorize(_))
                // A lane kept while the session offers the same (its token, its end), as an
                // adapter keeps the one it published.
                || matches!((op, &unsettled), (Op::InLane { .. }, Some((offered, _)))
                    if lane.s.steady_lane(now, HOST).map(|l| (l.generation(), l.until()))
                        != Some((offered.generation(), offered.until())));
            if reads && let Some((offered, sent)) = unsettled.take() {
                lane.s.settle_lane(&offered, sent);
            }
            if let Op::Advance(ms) = op {
                now = now + Duration::from_millis(*ms);
            }
            if let Op::InLane { at, status, fields, method } = *op
                && let Some(offer) = unsettled.map(|(l, _)| l).or_else(|| lane.s.steady_lane(now, HOST))
                && offer.covers(now, &RequestSpec::new(Method::Get, HOST))
            {
                lanes += 1;
                prop_assert!(offer.until() > now && offer.since() <= now);
                // A random instant of the lane, its last millisecond included.
                let span = offer.until().as_millis() - now.as_millis();
                let t = Instant::from_millis(now.as_millis() + span * u64::from(at) / 65_536);
                let t = if at == u16::MAX { offer.until() - Duration::from_millis(1) } else { t };
                let method = [Method::Get, Method::Post, Method::Put, Method::Delete][usize::from(method % 4)];
                let spec = RequestSpec::new(method, HOST);
                prop_assert!(offer.covers(t, &spec));
                now = t;
                // The full way: sent with the lane's token.
                let mut req = full.s.begin(t, spec);
                let generation = match full.s.authorize(t, &mut req) {
                    Authorize::Send { generation, .. } => generation,
                    other => return Err(TestCaseError::fail(format!("in the lane at {t}: {other:?}"))),
                };
                prop_assert_eq!(generation, offer.generation());
                // The lane's way: counted, in the state the full way left.
                let sent = unsettled.map_or(0, |(_, sent)| sent);
                unsettled = Some((offer, sent + 1));
                let mut in_lane = offer.request(spec, t);
                prop_assert_eq!(&in_lane, &req);
                let hs = headers(fields);
                let code = STATUSES[status];
                if offer.answered_plainly(code, &hs[..]) {
                    // Not reported in the lane; the full way's verdict is `Done`.
                    prop_assert_eq!(full.s.handle_response(t, &mut req, code, &hs[..], b"{}"), Verdict::Done);
                } else {
                    // Reported before the session judges.
                    if let Some((offered, sent)) = unsettled.take() {
                        lane.s.settle_lane(&offered, sent);
                    }
                    let expected = full.s.handle_response(t, &mut req, code, &hs[..], b"{}");
                    let verdict = lane.s.handle_response(t, &mut in_lane, code, &hs[..], b"{}");
                    prop_assert_eq!(verdict, expected);
                    if matches!(verdict, Verdict::Retry { .. }) {
                        full.reqs.push((req, false));
                        lane.reqs.push((in_lane, false));
                    }
                }
                let pending = unsettled.map_or(0, |(_, sent)| sent);
                prop_assert_eq!(lane.observed(now, pending), full.observed(now, 0));
                continue;
            }
            let (a, b) = (lane.step(op, now), full.step(op, now));
            prop_assert_eq!(a, b, "{:?} at {}", op, now);
            let pending = unsettled.map_or(0, |(_, sent)| sent);
            prop_assert_eq!(lane.observed(now, pending), full.observed(now, 0), "after {:?} at {}", op, now);
        }
        // (How often a lane was offered is not asserted: the warm start makes it common.)
        let _ = lanes;
    }
}

/// A lane ends at the token's refresh point, and is not offered past it, nor with a rate-limit
/// window known, a 429's wait in force, a failure in the breaker's window, or before a full
/// window of successes.
#[test]
fn no_lane_outside_the_steady_state() {
    let mut world = World::new(1);
    let mut now = Instant::from_secs(100);
    assert!(world.s.steady_lane(now, HOST).is_none(), "no token");
    steady(&mut world, &mut now);
    let lane = world.s.steady_lane(now, HOST).expect("steady");
    let (_, times) = world.s.token(now).expect("a token");
    assert!(lane.until() <= times.refresh_at);
    assert!(world.s.steady_lane(times.refresh_at, HOST).is_none(), "refresh due");
    assert!(world.s.steady_lane(now, OTHER).is_none(), "another host");
    let spec = RequestSpec::new(Method::Get, HOST);
    let mut critical = spec;
    critical.priority = Priority::Critical;
    let mut with_deadline = spec;
    with_deadline.deadline = Some(now + Duration::from_secs(1));
    assert!(lane.covers(now, &spec));
    assert!(!lane.covers(lane.until(), &spec), "until is past the lane");
    assert!(!lane.covers(now, &critical) && !lane.covers(now, &with_deadline));

    // A failure in the breaker's window: none until a window of successes pushed it out.
    for (status, fields) in [(500, false), (200, true), (429, false)] {
        let mut w = World::new(1);
        let mut now = Instant::from_secs(100);
        steady(&mut w, &mut now);
        w.step(&Op::Begin { other_host: false, priority: 0, deadline: false }, now);
        w.step(&Op::Authorize(0), now);
        let status = STATUSES.iter().position(|s| *s == status).unwrap();
        w.step(&Op::Respond { index: 0, status, fields }, now);
        assert!(w.s.steady_lane(now, HOST).is_none(), "after {}", STATUSES[status]);
    }
}
