//! The steady state, in which ordinary requests need not ask the session: [`Lane`].

use super::{HostKey, RequestSpec, RequestState, Session};
use crate::classify::plainly_successful;
use crate::http::Headers;
use crate::lifecycle::Generation;
use crate::ratelimit::headers::names_rate_limit;
use crate::ratelimit::pacer::Priority;
use crate::secret::TokenStorage;
use crate::time::Instant;

/// Until when ordinary requests to one host may be sent with one token without asking the
/// session ([`Session::steady_lane`]).
///
/// The steady state: while nothing but ordinary successes happens, every request is sent at
/// once with the same token, and its success changes nothing the session decides by. A
/// [`Lane`] says so, and until when, so that an adapter can send such requests without asking
/// the session each time (no lock, no call): the decision stays the session's.
///
/// # The contract
///
/// [`Session::steady_lane`] at `now` offers a lane for one host only when, for every instant
/// `t` in `[now, until)` and as long as nothing is reported to the session:
///
/// - [`begin`](Session::begin) then [`authorize`](Session::authorize) of a request the lane
///   [`covers`](Lane::covers) (normal priority, no deadline, its host) answers
///   [`Send`](super::Authorize::Send) with the token of the lane's generation, and changes
///   nothing in the session but what [`settle_lane`](Session::settle_lane) records: the
///   `requests` and `attempts` counters, the retry budget's deposit, the host's last use;
/// - [`handle_response`](Session::handle_response) of an answer the lane calls
///   [plain](Lane::answered_plainly) (a 1xx–3xx status, no rate-limit field) answers
///   [`Done`](super::Verdict::Done) and changes nothing at all.
///
/// That holds when the token is usable and not yet due for its refresh ahead of expiry
/// (`until` is at the earlier of the two), the host's breaker is closed with a window full of
/// successes (a success changes nothing), the pacer knows no rate-limit window and holds
/// nothing back (no 429's wait in force), the request's token is the one the pacer has seen,
/// and `until` is within the retry budget's current slot (so that the deposits of the lane's
/// requests all count in one slot). Otherwise, and whenever unsure, there is no lane.
///
/// # Driving it
///
/// An adapter asks for a lane under the lock it holds the session with, after every change
/// (any call that reports something, a token change), publishes it where requests read it
/// without the lock, and withdraws it at the next change. A request in the lane counts
/// itself, is sent with the lane's token, and is done if its answer is plain and the lane it
/// was sent in has not been withdrawn meanwhile. Any other answer (an error, a rate-limit
/// field, or a plain one that comes after the lane was withdrawn: the session has changed
/// since) is reported as for any request, with the state [`Lane::request`] gives, which is
/// the one `begin` and `authorize` would have left. A request sent in a lane just before
/// another request's 429 is handled is the same as one authorized just before it.
///
/// The adapter reports how many requests were sent in the lane with
/// [`settle_lane`](Session::settle_lane) before the session next reads what they count: before
/// it judges an answer (`handle_response`, `handle_transport_error`: a retry draws on the
/// budget their first attempts fed), before it authorizes a request to another host (which
/// may recycle a breaker by last use), and before its counters are read. `begin` and
/// `authorize` of the lane's host read none of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Lane {
    since: Instant,
    until: Instant,
    generation: Generation,
    host: HostKey,
}

impl Lane {
    /// When the lane was offered.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// The lane holds before this instant only.
    pub fn until(&self) -> Instant {
        self.until
    }

    /// The generation of the token every request in the lane is sent with.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The host the lane is for.
    pub fn host(&self) -> HostKey {
        self.host
    }

    /// Whether a request described by `spec` may be sent in the lane at `now`: within it in
    /// time, to its host, of normal priority and without a deadline (anything else asks the
    /// session).
    pub fn covers(&self, now: Instant, spec: &RequestSpec) -> bool {
        self.since <= now
            && now < self.until
            && spec.host == self.host
            && spec.priority == Priority::Normal
            && spec.deadline.is_none()
    }

    /// Whether an answer with `status` and `headers` is one the session would take as a plain
    /// success (a 1xx–3xx status, no rate-limit field among the headers, which must be able to
    /// list their names): nothing for the session to hear of a request sent in the lane while
    /// the lane still holds.
    pub fn answered_plainly<Hd: Headers + ?Sized>(&self, status: u16, headers: &Hd) -> bool {
        // The status first: an error answer's names are not listed.
        matches!(status, 100..=399)
            && plainly_successful(status, headers.any_name(names_rate_limit))
    }

    /// The state of a request sent in the lane at `at` described by `spec`, as `begin` and
    /// `authorize` would have left it: for reporting an answer that is not plain (or one that
    /// comes after the lane was withdrawn) with
    /// [`handle_response`](Session::handle_response) or
    /// [`handle_transport_error`](Session::handle_transport_error), and for the retries that
    /// follow.
    pub fn request(&self, spec: RequestSpec, at: Instant) -> RequestState {
        RequestState::sent_in_lane(spec, at, self.generation)
    }
}

impl<const N: usize, const H: usize, const E: usize, S: TokenStorage> Session<N, H, E, S> {
    /// A lane for requests to `host` from `now`, if the session is in its steady state (see
    /// [`Lane`]); `None` whenever it is not, or might not be.
    ///
    /// ```
    /// use credflow_core::http::Method;
    /// use credflow_core::secret::Credentials;
    /// use credflow_core::session::{Authorize, HostKey, RequestSpec, Session, SessionConfig, TokenEndpoint};
    /// use credflow_core::{Duration, Instant};
    ///
    /// let credentials = Credentials::from_strs("client-id", "client-secret").map_err(|(_, e)| e)?;
    /// let endpoint = TokenEndpoint::new("https://login.example.com/oauth/token")?;
    /// let mut session: Session<256, 1, 64> =
    ///     Session::new(credentials, endpoint, SessionConfig::default(), 7)?;
    /// let host = HostKey::from_host("api.example.com");
    /// let mut buf = [0u8; 512];
    /// let mut now = Instant::from_secs(1);
    /// let (ticket, _) = session.poll_token_request(now, &mut buf)?.expect("a token is due");
    /// let body = br#"{"access_token":"tok","token_type":"Bearer","expires_in":3600}"#;
    /// session.handle_token_response(now, ticket, 200, &[], body);
    /// // The host's breaker has not seen a full window of successes yet: no lane.
    /// assert!(session.steady_lane(now, host).is_none());
    /// for _ in 0..20 {
    ///     let mut req = session.begin(now, RequestSpec::new(Method::Get, host));
    ///     assert!(matches!(session.authorize(now, &mut req), Authorize::Send { .. }));
    ///     let _ = session.handle_response(now, &mut req, 200, &[("content-type", "application/json")], b"{}");
    ///     now = now + Duration::from_millis(10);
    /// }
    /// let lane = session.steady_lane(now, host).expect("steady");
    /// assert!(lane.covers(now, &RequestSpec::new(Method::Get, host)));
    /// // Three requests were sent in the lane, each answered plainly: the session is told.
    /// session.settle_lane(&lane, 3);
    /// assert_eq!(session.counters().requests, 23);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn steady_lane(&self, now: Instant, host: HostKey) -> Option<Lane> {
        let times = self.lifecycle.token_times(now)?;
        // The pacer first: with a server that sends rate-limit fields it never is steady.
        if now >= times.refresh_at || !self.pacer.steady(now, times.generation) {
            return None;
        }
        // Only the host itself: another host's use would order the recycling of breakers by
        // last use, which the lane's requests do not update one by one.
        let [(key, breaker, _)] = self.hosts.as_slice() else {
            return None;
        };
        if *key != host || !breaker.success_changes_nothing() {
            return None;
        }
        let until = times.refresh_at.min(times.usable_until).min(self.budget.slot_end(now));
        Some(Lane { since: now, until, generation: times.generation, host })
    }

    /// Records that `sent` requests were sent in `lane` (and those of them answered plainly
    /// while it held are done): what `begin` and `authorize` would have counted, each request
    /// and attempt, the retry budget's deposits (in the lane's slot), and the host's use.
    /// Call it before the session next judges an answer, authorizes a request to another
    /// host, or its counters are read (see [`Lane`]), so that it decides with them counted. Harmless with `sent`
    /// zero, and for a lane that has ended.
    pub fn settle_lane(&mut self, lane: &Lane, sent: u64) {
        if sent == 0 {
            return;
        }
        let counters = &mut self.counters;
        counters.requests = counters.requests.saturating_add(sent);
        counters.attempts = counters.attempts.saturating_add(sent);
        self.budget.deposit_many(lane.since, sent);
        if let Some(entry) = self.hosts.iter_mut().find(|(k, _, _)| *k == lane.host) {
            entry.2 = entry.2.max(lane.since);
        }
    }
}
