//! Fleet mode, sans-IO: the protocol between one process and the fleet it shares a token and a
//! rate budget with, as three small state machines an adapter (and the simulator) drives.
//!
//! A *fleet* is several processes with the same client id and one shared store (Redis in
//! `credflow-redis`). The store is the adapter's business; what to ask it, when, and what its
//! answers mean is decided here, so that every adapter and the simulator do the same:
//!
//! - [`RequestDriver`], one per API request: before each attempt, ask the fleet's admission
//!   (one request per priority class at a time: the *admission gate*), sleep to a slot it
//!   reserved (reading the fleet's 429 hold after a long sleep), ask again when told to wait
//!   (spaced however short the answer, and for at most `max_wait` in all:
//!   [`Failure::NoSlot`] after that), hand a fleet wait too long to sleep (or the fleet's 429
//!   hold) to the session as the attempt's hold, and ask again after a local wait for the
//!   server's limit. It also says how long to sleep when
//!   [`Session::authorize`](crate::Session::authorize) answers `Wait`, with or without a fleet.
//!   No wait it asks for ends past the request's deadline.
//! - [`TokenDriver`], one per process: which token the fleet must not hand back (the one this
//!   process holds, or one it refused: never taken again), when a process with no token reads
//!   the fleet's (about once a second), and what becomes of the refresh lease after the token
//!   request (publish, release, or keep it as the fleet's back-off).
//! - [`ResponseReport`], one per response: what the fleet is told about a 429, from the
//!   session's own classification (so the wait Genesys writes into a 429's body counts as a
//!   `Retry-After` does).
//! - [`StoreLink`], one per process: whether the store is used (joined) or the process works
//!   alone after a failed call (degraded), when a degraded process tries the store again (one
//!   probe per interval), and which call's outcome may move it.
//!
//! Time is an argument ([`Instant`], monotonic milliseconds), as everywhere in the core; every
//! "not now" says until when.
//!
//! # The run loop of a request
//!
//! Drain the driver after every input; the adapter owns the clock, the store and the sleeps.
//!
//! ```
//! use credflow_core::fleet::{Admission, DriverConfig, RequestDriver, Step};
//! use credflow_core::http::Method;
//! use credflow_core::session::{Authorize, HostKey, RequestSpec};
//! use credflow_core::{Duration, Instant};
//! # use credflow_core::secret::Credentials;
//! # use credflow_core::session::{Session, SessionConfig, TokenEndpoint};
//! # let credentials = Credentials::from_strs("my-client-id", "my-secret").unwrap();
//! # let endpoint = TokenEndpoint::new("https://login.mypurecloud.com/oauth/token").unwrap();
//! # let mut session: Session =
//! #     Session::new(credentials, endpoint, SessionConfig::default(), 42).unwrap();
//! # let (ticket, _) = session.poll_token_request(Instant::ZERO, &mut [0u8; 1024]).unwrap().unwrap();
//! # let body = br#"{"access_token":"abc","token_type":"bearer","expires_in":86400}"#;
//! # session.handle_token_response(Instant::ZERO, ticket, 200, &[("Content-Type", "application/json")], body);
//! // What the shared store answers this request's questions: "ask again in 200 ms", then "go".
//! let mut store = [Admission::Wait(Duration::from_millis(200)), Admission::Now].into_iter();
//! let mut now = Instant::ZERO; // the adapter reads its clock here, every time
//! let mut req = session.begin(now, RequestSpec::new(Method::Get, HostKey::from_host("api.x")));
//! let mut driver = RequestDriver::new(DriverConfig::default(), None, true);
//! loop {
//!     match driver.poll(now, session.token(now).is_some()) {
//!         // Take the priority's admission gate, then ask the store (`None`: it failed).
//!         Step::AskFleet { .. } => {
//!             let hold = driver.handle_admission(now, store.next(), &mut req);
//!             assert_eq!(hold, None); // a `FleetHold` is announced as the fleet's
//!         }
//!         Step::ReadHold => assert_eq!(driver.handle_hold(now, None, &mut req), None),
//!         Step::Sleep { until, .. } => now = until,
//!         Step::Authorize => match session.authorize(now, &mut req) {
//!             Authorize::Send { token, .. } => {
//!                 driver.handle_sent();
//!                 assert_eq!(token.as_str(), "abc"); // send, then `handle_response`
//!                 break;
//!             }
//!             // Sleep until then, or until a token or breaker event.
//!             Authorize::Wait { until, reason } => {
//!                 now = driver.handle_wait(now, until, reason, &mut req).at
//!             }
//!             Authorize::Fail(error) => panic!("{error}"), // see `fleet_wait_until`
//!         },
//!         Step::Fail(why) => panic!("{why:?}"),
//!         Step::AwaitFleet => unreachable!("each question is answered where it is asked"),
//!     }
//!     // Release the admission gate whenever `!driver.holds_gate()`.
//! }
//! assert_eq!(now, Instant::from_millis(200));
//! ```

use crate::retry::policy::WaitSource;
use crate::secret::Fingerprint;
use crate::session::{Event, RequestState, Verdict, WaitReason};
use crate::time::{Duration, Instant};

/// The timings of the drivers. The defaults are the std adapter's; set `max_wait` to the
/// session's retry policy's, and `token_wait` to the adapter's longest wait for a token.
///
/// ```
/// use credflow_core::fleet::DriverConfig;
/// use credflow_core::{Duration, SessionConfig};
///
/// let session = SessionConfig::default();
/// let config = DriverConfig {
///     max_wait: session.retry.max_wait,
///     token_wait: Duration::from_secs(10),
///     ..DriverConfig::default()
/// };
/// assert_eq!(config.reservation_recheck, Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DriverConfig {
    /// The longest wait the retry policy accepts (`RetryPolicy::max_wait`): a longer fleet wait
    /// is handed to the session (which fails fast naming it), and the fleet's 429 hold is cut
    /// to it. Default 60 s.
    pub max_wait: Duration,
    /// A sleep to a reserved slot this long or longer reads the fleet's hold before the send:
    /// a 429 reported meanwhile holds the request too (a shorter sleep could only meet a 429
    /// reported within it). Default 1 s.
    pub reservation_recheck: Duration,
    /// Longest wait for a token without news (the adapter's `token_wait`): a token event
    /// wakes the request sooner. Default 30 s.
    pub token_wait: Duration,
    /// Safety net of a wait for a breaker probe's outcome, which no one can date: an abandoned
    /// probe frees its slot without an event. Default 1 s.
    pub probe_recheck: Duration,
    /// How often a process with no token, held back from requesting one, reads the fleet's.
    /// Default 1 s.
    pub peek_every: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            max_wait: Duration::from_secs(60),
            reservation_recheck: Duration::from_secs(1),
            token_wait: Duration::from_secs(30),
            probe_recheck: Duration::from_secs(1),
            peek_every: Duration::from_secs(1),
        }
    }
}

/// The fleet's answer to an admission question (the shared store's, in core time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Admission {
    /// Send now: the attempt was counted against the fleet's budget.
    Now,
    /// Send after this long without asking again: counted for that instant (a reserved slot).
    After(Duration),
    /// Not counted: ask again after this long (the fleet's window is spent or spaced).
    Wait(Duration),
    /// Not counted: the whole fleet is held back this long by a 429 a process of the fleet was
    /// answered. Told apart from [`Wait`](Self::Wait) so that the wait is named the fleet's.
    Held(Duration),
}

/// What a [`RequestDriver`] wants done next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub enum Step {
    /// Ask the fleet's admission for this attempt, holding the request's admission gate
    /// (acquire it first if not held); answer with [`RequestDriver::handle_admission`].
    AskFleet {
        /// The longest the request will wait for a reserved slot (`max_wait`, or less before
        /// the deadline).
        within: Duration,
        /// The store's probe (while the fleet link is degraded) was claimed when the request
        /// began: do not claim another for this question.
        probe_claimed: bool,
    },
    /// A question to the fleet is out: wait for its answer.
    AwaitFleet,
    /// Read the fleet's 429 hold (after a long sleep to a reserved slot); answer with
    /// [`RequestDriver::handle_hold`].
    ReadHold,
    /// Sleep until `until` for the fleet (its reserved slot, or its "ask again"), then poll.
    /// Never past the request's deadline.
    Sleep {
        /// When to poll again.
        until: Instant,
        /// The wait as the fleet answered it (from its answer to `until`), to announce.
        wait: Duration,
    },
    /// Ask the session: [`Session::authorize`](crate::Session::authorize).
    Authorize,
    /// The request cannot be sent.
    Fail(Failure),
}

/// Why a [`RequestDriver`] gave up on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// The fleet has no slot for it before its deadline.
    DeadlineExceeded,
    /// The fleet's 429 hold (this long, already cut to `max_wait`) ends after its deadline.
    HeldByFleet(Duration),
    /// The fleet kept answering "ask again" ([`Admission::Wait`]) for longer than `max_wait`
    /// in all, since its first such answer for this attempt (`waited`, to the next question it
    /// set): its budget had no slot for the attempt within the longest wait the policy accepts.
    NoSlot {
        /// From the first "ask again" to when the fleet said to ask again next.
        waited: Duration,
    },
}

/// The least wait before asking the fleet again after its first "ask again" for an attempt;
/// it doubles with each further one, up to [`ASK_AGAIN_MAX`]. However short the fleet's
/// answer (a store answering zero every time), one attempt's questions are spaced so.
pub const ASK_AGAIN_FIRST: Duration = Duration::from_millis(10);

/// The most the least wait before asking again grows to (see [`ASK_AGAIN_FIRST`]).
pub const ASK_AGAIN_MAX: Duration = Duration::from_secs(1);

/// The fleet's 429 hold as this process honours it, to be announced as the fleet's (not the
/// server's answer to this request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub struct FleetHold {
    /// How long the request is held back: at most `max_wait`.
    pub hold: Duration,
    /// What the store answered, when it was longer than `max_wait` and was cut.
    pub cut_from: Option<Duration>,
}

/// When to look again after [`Session::authorize`](crate::Session::authorize) said `Wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub struct Wake {
    /// Poll again at this instant at the latest (a token or breaker change may wake sooner).
    /// Never past the request's deadline.
    pub at: Instant,
    /// A token request is due or in flight: wake the token driver.
    pub kick_token_driver: bool,
}

/// Where the request stands with the fleet; each variant carries only what is valid in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The fleet was not asked about the next attempt.
    Unasked,
    /// The question is out, with the horizon it was asked with. Holds the gate.
    Asking { within: Duration },
    /// The fleet said to ask again at `at`, `wait` after its answer. Holds the gate.
    AskAgainAt { at: Instant, wait: Duration },
    /// Counted for the slot at `at`, `wait` after the fleet's answer; `recheck`: read the
    /// fleet's hold before the send.
    Reserved { at: Instant, wait: Duration, recheck: bool },
    /// Reading the fleet's hold before the reserved slot's send.
    ReadingHold,
    /// The fleet answered about the next attempt (or could not be asked): the session decides.
    /// Kept across waits for a token or a breaker probe (an outage, not the budget).
    Answered,
    /// Given up.
    Failed(Failure),
}

/// The fleet protocol of one API request, and its waits; see the [module docs](self).
///
/// Without a fleet (`fleet` false in [`new`](Self::new)) it only ever says
/// [`Step::Authorize`], and [`handle_wait`](Self::handle_wait) still says how long to sleep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestDriver {
    config: DriverConfig,
    /// The request asks the fleet (fleet mode, and the store was usable when it began).
    fleet: bool,
    /// The store's probe was claimed when the request began: its first question uses it.
    probe_claimed: bool,
    /// The first instant the session's deadline check fails (it passes at the deadline).
    give_up: Option<Instant>,
    /// The end of a fleet wait handed to the session as the attempt's hold.
    fleet_wait_until: Option<Instant>,
    /// When the fleet first answered "ask again" for the attempt, and how many such answers
    /// since: an attempt waits for the fleet's budget at most `max_wait` in all, and its
    /// questions are spaced. Not counted: a wait at the gate before the first answer, and a
    /// hold of the server's or a backoff (after which the fleet is asked afresh).
    first_question: Option<Instant>,
    asked_again: u8,
    phase: Phase,
}

impl RequestDriver {
    /// A request with the session's `deadline` if it has one. `fleet`:
    /// fleet mode, and the store may be called now (joined, or degraded with its probe due and
    /// claimed by this request).
    pub fn new(config: DriverConfig, deadline: Option<Instant>, fleet: bool) -> Self {
        RequestDriver {
            config,
            fleet,
            probe_claimed: fleet,
            give_up: deadline.map(|d| d.saturating_add(Duration::from_millis(1))),
            fleet_wait_until: None,
            first_question: None,
            asked_again: 0,
            phase: Phase::Unasked,
        }
    }

    /// The instant the request gives up (just after its deadline): bound every wait of the
    /// adapter's own (the gate, a store call) by it, and fail with
    /// [`Failure::DeadlineExceeded`] when it passes.
    pub fn give_up(&self) -> Option<Instant> {
        self.give_up
    }

    /// The end of the fleet's wait the session was told to hold the attempt for, if any: a
    /// session failure naming that wait names the fleet, not the server.
    pub fn fleet_wait_until(&self) -> Option<Instant> {
        self.fleet_wait_until
    }

    /// Whether the request holds its priority class's admission gate: one request per class
    /// asks the fleet at a time, and sleeps the "ask again" it is answered; the others queue.
    /// Release the gate whenever this is false.
    pub fn holds_gate(&self) -> bool {
        matches!(self.phase, Phase::Asking { .. } | Phase::AskAgainAt { .. })
    }

    /// What to do next. `has_token`: a usable token is at hand (the fleet is asked only then:
    /// an admission is for an attempt that can go, and never once the deadline passed).
    pub fn poll(&mut self, now: Instant, has_token: bool) -> Step {
        match self.phase {
            // Past the deadline the session fails the request: no question for it.
            Phase::Unasked if self.fleet && has_token && self.give_up.is_none_or(|g| now < g) => {
                let left = self.give_up.map(|at| at.saturating_duration_since(now));
                let within = left.map_or(self.config.max_wait, |l| l.min(self.config.max_wait));
                self.phase = Phase::Asking { within };
                let probe_claimed = core::mem::take(&mut self.probe_claimed);
                Step::AskFleet { within, probe_claimed }
            }
            Phase::Unasked | Phase::Answered => Step::Authorize,
            Phase::Asking { .. } | Phase::ReadingHold => Step::AwaitFleet,
            Phase::AskAgainAt { at, wait } if now < at => Step::Sleep { until: at, wait },
            Phase::AskAgainAt { .. } => {
                self.phase = Phase::Unasked;
                self.poll(now, has_token)
            }
            Phase::Reserved { at, wait, .. } if now < at => Step::Sleep { until: at, wait },
            Phase::Reserved { recheck: true, .. } => {
                self.phase = Phase::ReadingHold;
                Step::ReadHold
            }
            Phase::Reserved { recheck: false, .. } => {
                self.phase = Phase::Answered;
                Step::Authorize
            }
            Phase::Failed(why) => Step::Fail(why),
        }
    }

    /// The fleet's answer to [`Step::AskFleet`], arrived at `now`; `None` when the store could
    /// not be asked or failed (the session then paces the attempt at the request's own
    /// priority). Marks `req` as the answer says. Returns the fleet's 429 hold to announce.
    /// An answer nobody asked for is ignored.
    pub fn handle_admission(
        &mut self,
        now: Instant,
        answer: Option<Admission>,
        req: &mut RequestState,
    ) -> Option<FleetHold> {
        let Phase::Asking { within } = self.phase else { return None };
        let max_wait = self.config.max_wait;
        let mut notice = None;
        self.phase = match answer {
            Some(Admission::Now) => {
                req.set_externally_paced(true);
                Phase::Answered
            }
            Some(Admission::After(wait)) if wait <= within => {
                // Counted for that instant: sleep, then send without asking again (the next
                // request of this class asks meanwhile).
                req.set_externally_paced(true);
                let at = now.saturating_add(wait);
                self.within_deadline(at, Failure::DeadlineExceeded).unwrap_or(Phase::Reserved {
                    at,
                    wait,
                    recheck: wait >= self.config.reservation_recheck,
                })
            }
            Some(Admission::Wait(wait)) if wait <= max_wait => {
                // Spaced however short the answer, and never past `max_wait` in all: a store
                // answering "ask again" without end (as one written to can) fails the attempt
                // instead of being asked in a loop.
                let wait = wait.max(ask_again_floor(self.asked_again));
                self.asked_again = self.asked_again.saturating_add(1);
                let at = now.saturating_add(wait);
                let since = *self.first_question.get_or_insert(now);
                let waited = at.saturating_duration_since(since);
                if waited > max_wait {
                    Phase::Failed(Failure::NoSlot { waited })
                } else {
                    self.within_deadline(at, Failure::DeadlineExceeded)
                        .unwrap_or(Phase::AskAgainAt { at, wait })
                }
            }
            Some(Admission::Held(answered)) => {
                // Another process's 429, relayed (never past `max_wait`): the session holds
                // the attempt back for it as for a wait of its own, then the fleet is asked
                // again. A longer wait of the session's own still fails fast, naming the
                // server's wait.
                let hold = self.cut(answered);
                notice = Some(hold);
                let until = now.saturating_add(hold.hold);
                match self.within_deadline(until, Failure::HeldByFleet(hold.hold)) {
                    Some(failed) => failed,
                    None => {
                        req.set_external_hold(until);
                        Phase::Answered
                    }
                }
            }
            Some(Admission::Wait(wait) | Admission::After(wait)) => {
                // A daily quota's hours (or a store that reserved beyond `within`): the session
                // paces with the fleet's wait as its own, so it fails fast naming it, or sends
                // its one probe per `max_wait`, as it does alone.
                let until = now.saturating_add(wait);
                req.set_external_hold(until);
                self.fleet_wait_until = Some(until);
                Phase::Answered
            }
            None => Phase::Answered,
        };
        notice
    }

    /// The fleet's 429 hold read for [`Step::ReadHold`] at `now` (`None` or zero: none, or
    /// the store failed). A 429 another process reported while this one slept to its slot
    /// holds it too. Returns the hold to announce. An answer nobody asked for is ignored.
    pub fn handle_hold(
        &mut self,
        now: Instant,
        hold: Option<Duration>,
        req: &mut RequestState,
    ) -> Option<FleetHold> {
        if self.phase != Phase::ReadingHold {
            return None;
        }
        self.phase = Phase::Answered;
        let hold = self.cut(hold.filter(|h| !h.is_zero())?);
        req.set_external_hold(now.saturating_add(hold.hold));
        Some(hold)
    }

    /// [`Session::authorize`](crate::Session::authorize) answered `Wait { until, reason }` at
    /// `now`: when to look again.
    ///
    /// After a hold of the server's (a 429's, a spent window: [`WaitReason::Paced`]) or a
    /// backoff, the fleet is asked again, so that the requests held together are spaced by its
    /// budget rather than released together; the admission and hold are cleared from `req`.
    /// Across a wait for a token or a breaker's probe (an outage, not the budget) the
    /// admission is kept: asking again on each wake would spend the fleet's budget on
    /// requests that cannot go.
    pub fn handle_wait(
        &mut self,
        now: Instant,
        until: Option<Instant>,
        reason: WaitReason,
        req: &mut RequestState,
    ) -> Wake {
        if matches!(reason, WaitReason::Paced(_) | WaitReason::Backoff) {
            req.set_externally_paced(false);
            req.set_external_hold(Instant::from_millis(0));
            // Asked afresh: the wait for the fleet's budget starts again.
            self.first_question = None;
            self.asked_again = 0;
            if self.phase == Phase::Answered {
                self.phase = Phase::Unasked;
            }
        }
        let (at, kick_token_driver) = match (reason, until) {
            // A token request is due or in flight: the token driver's answer wakes the request
            // (the instant is only a safety net).
            (WaitReason::Token, Some(at)) if at <= now => {
                (now.saturating_add(self.config.token_wait), true)
            }
            (WaitReason::Token, None) => (now.saturating_add(self.config.token_wait), true),
            (_, Some(at)) => (at, false),
            // A probe is testing the service: its outcome wakes the request, or a probe
            // abandoned without an event frees its slot within `probe_recheck`.
            (_, None) => (now.saturating_add(self.config.probe_recheck), false),
        };
        // The session fails the request once its deadline passed: wake for that.
        let at = self.give_up.map_or(at, |give_up| at.min(give_up));
        Wake { at, kick_token_driver }
    }

    /// The session authorized the attempt and it is sent: the next attempt needs its own
    /// admission.
    pub fn handle_sent(&mut self) {
        if self.phase == Phase::Answered {
            self.phase = Phase::Unasked;
        }
        self.first_question = None;
        self.asked_again = 0;
    }

    /// `Some(failed phase)` when a wait for the fleet ending at `at` would end after the
    /// deadline.
    fn within_deadline(&self, at: Instant, why: Failure) -> Option<Phase> {
        self.give_up.is_some_and(|give_up| at > give_up).then_some(Phase::Failed(why))
    }

    /// The fleet's hold as honoured: never longer than `max_wait` (a store answering more is
    /// cut, and said to be).
    fn cut(&self, answered: Duration) -> FleetHold {
        let max_wait = self.config.max_wait;
        FleetHold {
            hold: answered.min(max_wait),
            cut_from: (answered > max_wait).then_some(answered),
        }
    }
}

/// The least wait before asking the fleet again after `asked_again` earlier "ask again"
/// answers for one attempt: [`ASK_AGAIN_FIRST`], doubled for each, at most [`ASK_AGAIN_MAX`].
fn ask_again_floor(asked_again: u8) -> Duration {
    let doublings = u32::from(asked_again.min(16));
    ASK_AGAIN_FIRST.saturating_mul(1u64 << doublings).min(ASK_AGAIN_MAX)
}

/// What to do with the refresh lease once the token request under it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub enum LeaseEnd {
    /// Publish the token obtained (the store releases the lease with it).
    Publish,
    /// Release the lease without a token: the request never reached the token endpoint, so
    /// the fleet learnt nothing and another process may try at once.
    Release,
    /// Keep the lease until it expires: the token endpoint failed, and the lease's time to
    /// live is the fleet's back-off.
    Keep,
}

/// When to read the fleet's token without a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub enum Peek {
    /// Now: read it, and offer it with [`TokenDriver::handle_offer`].
    Due,
    /// At this instant (sleep no later).
    At(Instant),
    /// Not while the process has a token or one is being requested.
    Off,
}

/// The fleet side of a process's token driver; see the [module docs](self).
///
/// Call [`handle_held`](TokenDriver::handle_held) on every turn with the token the session
/// holds, name [`exclude`](TokenDriver::exclude) to the store whenever it is asked for a
/// token, and pass every token it offers through [`handle_offer`](TokenDriver::handle_offer)
/// before the session sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenDriver {
    peek_every: Duration,
    /// The token this process holds (or held last): the fleet is asked for another one.
    held: Option<Fingerprint>,
    /// A fleet token this process could not take (unusable, or too close to expiry): named
    /// instead of `held` until a token request obtains one, so that the fleet hands out the
    /// lease rather than the same token again.
    refused: Option<Fingerprint>,
    /// While tokenless and held back, when to read the fleet's token next (kept across wakes,
    /// so that wake-ups cannot postpone it forever).
    next_peek: Option<Instant>,
}

impl TokenDriver {
    /// A process that holds no token yet.
    pub fn new(config: &DriverConfig) -> Self {
        TokenDriver { peek_every: config.peek_every, held: None, refused: None, next_peek: None }
    }

    /// The token the session holds now, if any.
    pub fn handle_held(&mut self, token: Option<Fingerprint>) {
        if token.is_some() {
            self.held = token;
        }
    }

    /// The token the fleet must not hand back: one refused, else the one held.
    pub fn exclude(&self) -> Option<Fingerprint> {
        self.refused.or(self.held)
    }

    /// The fleet offers the token with `fingerprint`: whether to give it to the session. Never
    /// the one [`exclude`](Self::exclude) names (a store that hands it back anyway is not
    /// followed into a loop on a bad entry).
    pub fn handle_offer(&mut self, fingerprint: Fingerprint) -> bool {
        Some(fingerprint) != self.exclude()
    }

    /// The session did not take the fleet's token (too close to expiry, unusable): it is not
    /// to be offered again.
    pub fn handle_refused(&mut self, fingerprint: Fingerprint) {
        self.refused = Some(fingerprint);
    }

    /// The session took the fleet's token: it is the one held now, and a token refused
    /// before is no longer named in its stead.
    pub fn handle_taken(&mut self, fingerprint: Fingerprint) {
        self.held = Some(fingerprint);
        self.refused = None;
    }

    /// A token request (under the lease, if `leased`) was answered: `obtained` a new token,
    /// or not; `reached`: it reached the token endpoint. Says what becomes of the lease.
    pub fn handle_token_answer(&mut self, obtained: bool, reached: bool) -> LeaseEnd {
        if obtained {
            self.refused = None;
            LeaseEnd::Publish
        } else if reached {
            LeaseEnd::Keep
        } else {
            LeaseEnd::Release
        }
    }

    /// Whether to read the fleet's token now. `tokenless`: the session has no token and no
    /// request out (its backoff or breaker holds it back after an outage), so another
    /// process's token is the quickest way back; read about every `peek_every`.
    pub fn poll_peek(&mut self, now: Instant, tokenless: bool) -> Peek {
        if !tokenless {
            self.next_peek = None;
            return Peek::Off;
        }
        let at = *self.next_peek.get_or_insert(now.saturating_add(self.peek_every));
        if now >= at {
            self.next_peek = Some(now.saturating_add(self.peek_every));
            Peek::Due
        } else {
            Peek::At(at)
        }
    }
}

/// What a response tells the fleet about a 429, from the session's classification of it: feed
/// it the events [`Session::handle_response`](crate::Session::handle_response) raised and its
/// verdict, then read [`rate_limited`](Self::rate_limited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseReport {
    /// The 429's wait, if the response was one: `Some(None)` without a wait.
    wait: Option<Option<Duration>>,
    /// The verdict names the server's wait (a `Retry-After` or Genesys's body wait).
    server_wait: bool,
}

impl ResponseReport {
    /// An event the session raised while handling the response at `now`.
    pub fn handle_event(&mut self, now: Instant, event: &Event) {
        if let Event::RateLimited { until, .. } = event {
            let wait = until.saturating_duration_since(now);
            self.wait = Some((!wait.is_zero()).then_some(wait));
        }
    }

    /// The session's verdict on the response.
    pub fn handle_verdict(&mut self, verdict: &Verdict) {
        self.server_wait =
            matches!(verdict, Verdict::Retry { source: WaitSource::ServerRetryAfter, .. });
    }

    /// `Some(wait)` if the response was a 429, with the wait the server asked for (its
    /// `Retry-After`, or the wait Genesys writes into the body), `None` inside when it named
    /// none. (A zero wait reads as none unless the verdict retries on the server's word.)
    pub fn rate_limited(&self) -> Option<Option<Duration>> {
        match self.wait {
            Some(None) if self.server_wait => Some(Some(Duration::ZERO)),
            wait => wait,
        }
    }
}

/// The link to the fleet's shared store, one per process: **joined** (the fleet's token and
/// budget), or **degraded** after a failed call (the local session decides alone, as a single
/// process does) until a call made while degraded succeeds. While degraded, the store is tried
/// at most once per `probe_every` (the *probe*); no request waits on an unreachable store.
///
/// A call's outcome moves the link only if the link did not change while the call was out: a
/// slow call that started before the store failed, and succeeds after, proves nothing about
/// the store now, and a failure that started before a rejoin is not news. A busy answer (a
/// lease another process holds) says nothing about the store's health.
///
/// ```
/// use credflow_core::fleet::{CallOutcome, LinkChange, StoreLink};
/// use credflow_core::{Duration, Instant};
///
/// let mut link = StoreLink::new(Duration::from_secs(1));
/// let t0 = Instant::ZERO;
/// assert!(link.usable(t0));
/// let call = link.call_started();
/// assert_eq!(link.record(t0, call, CallOutcome::Failed), LinkChange::Degraded);
/// assert!(!link.usable(t0), "no call until the probe is due");
/// let t1 = Instant::from_millis(1_000);
/// assert!(link.usable(t1), "the probe");
/// assert!(!link.usable(t1), "claimed once");
/// let probe = link.call_started();
/// assert_eq!(link.record(t1, probe, CallOutcome::Answered), LinkChange::Rejoined);
/// assert!(link.is_joined());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StoreLink {
    probe_every: Duration,
    /// `Some(when the next probe is due)` while degraded.
    degraded: Option<Instant>,
    /// Counts the changes between joined and degraded (see [`CallTicket`]).
    epoch: u64,
    /// Counts the probes claimed while degraded.
    probes: u64,
}

/// A store call under way, as [`StoreLink::call_started`] saw the link: its outcome counts
/// only if the link has not changed since; a claim to call holds only if no other probe was
/// claimed since either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CallTicket {
    epoch: u64,
    probe: u64,
}

/// How a store call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CallOutcome {
    /// The store answered (whatever the answer).
    Answered,
    /// The store answered that another process holds what was asked for (a lease): nothing
    /// about its health.
    Busy,
    /// The call failed or was not answered in time.
    Failed,
}

/// What a call's outcome did to the link: announce a change once, when it happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LinkChange {
    /// Nothing changed.
    None,
    /// The store failed: the process works alone until a probe succeeds.
    Degraded,
    /// A probe succeeded: the process is back in the fleet.
    Rejoined,
}

impl StoreLink {
    /// A joined link that probes a failed store again every `probe_every` (at least 1 ms).
    pub const fn new(probe_every: Duration) -> Self {
        let probe_every =
            if probe_every.as_millis() == 0 { Duration::from_millis(1) } else { probe_every };
        StoreLink { probe_every, degraded: None, epoch: 0, probes: 0 }
    }

    /// Joined: the store is used.
    pub fn is_joined(&self) -> bool {
        self.degraded.is_none()
    }

    /// Whether a store call may be made at `now`: joined, or degraded with the probe due. While
    /// degraded a `true` claims the probe (the next is due `probe_every` later): ask once per
    /// call.
    pub fn usable(&mut self, now: Instant) -> bool {
        match self.degraded {
            None => true,
            Some(due) if now >= due => {
                self.degraded = Some(now.saturating_add(self.probe_every));
                self.probes = self.probes.wrapping_add(1);
                true
            }
            Some(_) => false,
        }
    }

    /// Whether a call that [`usable`](Self::usable) allowed earlier, when the link's ticket
    /// ([`call_started`](Self::call_started)) was `then`, may still be made at `now`: yes if
    /// the link has not changed since (still joined, or the probe claimed then is still the
    /// last one claimed); else as [`usable`](Self::usable) says now. A request that waited at
    /// the admission gate while the store failed for another does not call it again, nor one
    /// whose probe was followed by another's.
    pub fn still_usable(&mut self, now: Instant, then: CallTicket) -> bool {
        then == self.call_started() || self.usable(now)
    }

    /// A store call starts: hand its ticket to [`record`](Self::record) with its outcome.
    pub fn call_started(&self) -> CallTicket {
        CallTicket { epoch: self.epoch, probe: self.probes }
    }

    /// The outcome, at `now`, of the call `call` was given for.
    pub fn record(&mut self, now: Instant, call: CallTicket, outcome: CallOutcome) -> LinkChange {
        if call.epoch != self.epoch {
            return LinkChange::None;
        }
        let change = match (outcome, self.degraded.is_some()) {
            (CallOutcome::Failed, false) => {
                self.degraded = Some(now.saturating_add(self.probe_every));
                LinkChange::Degraded
            }
            (CallOutcome::Answered, true) => {
                self.degraded = None;
                LinkChange::Rejoined
            }
            _ => return LinkChange::None,
        };
        self.epoch = self.epoch.wrapping_add(1);
        change
    }
}
