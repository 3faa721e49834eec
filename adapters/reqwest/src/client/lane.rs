//! The steady-state lane: the session's [`Lane`] published for requests to read without its
//! lock. A request the lane covers is sent with the lane's token without `begin` and
//! `authorize`, and its plain answer is not reported (see `send::attempts`); the session
//! decides when there is a lane, and this module only carries its word.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use credflow_core::Instant;
use credflow_core::session::{Lane, RequestSpec};
use reqwest::header::HeaderValue;

use super::{SessionCell, Shared};

/// Set in [`LaneCell::sent`] once the lane is withdrawn: no request enters it any more, and a
/// request sent in it reports its answer as any other.
const CLOSED: u64 = 1 << 63;

/// A lane as published: the session's word, the header of its token, and the requests sent
/// in it not yet reported to the session.
pub(super) struct LaneCell {
    pub(super) lane: Lane,
    /// The `Authorization` header of the lane's token (the one `SessionCell::header` holds).
    pub(super) header: HeaderValue,
    /// Requests sent in the lane since the session was last told ([`Lane`]'s
    /// `settle_lane`), with [`CLOSED`] once the lane is withdrawn.
    sent: AtomicU64,
}

impl LaneCell {
    /// Whether the lane is still the session's word: not withdrawn since (a request sent in it
    /// whose plain answer comes after a change reports it, as one authorized before the
    /// change would).
    pub(super) fn holds(&self) -> bool {
        self.sent.load(Ordering::Acquire) & CLOSED == 0
    }

    /// The requests sent in the lane and not yet reported, taken (to report them now).
    fn take_sent(&self) -> u64 {
        self.sent.fetch_and(CLOSED, Ordering::AcqRel) & !CLOSED
    }

    /// Withdraws the lane; the requests sent in it and not yet reported.
    fn close(&self) -> u64 {
        self.sent.fetch_or(CLOSED, Ordering::AcqRel) & !CLOSED
    }
}

impl Shared {
    /// Enters the lane for a request described by `spec`, if there is one that covers it now:
    /// the lane and the instant the request was sent in it. Counted in the lane at once (so
    /// that the session hears of it before it decides anything else), or not at all.
    pub(super) fn enter_lane(&self, spec: &RequestSpec) -> Option<(Arc<LaneCell>, Instant)> {
        let cell = self.lane.load_full()?;
        let now = self.clock.now();
        if !cell.lane.covers(now, spec) || self.closing.load(Ordering::Relaxed) {
            return None;
        }
        let mut sent = cell.sent.load(Ordering::Relaxed);
        loop {
            if sent & CLOSED != 0 {
                return None;
            }
            match cell.sent.compare_exchange_weak(
                sent,
                sent.saturating_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((cell, now)),
                Err(seen) => sent = seen,
            }
        }
    }

    /// Tells the session of the requests sent in the lane since it last heard (before it
    /// decides about a request, or its counters are read).
    pub(super) fn settle_lane(&self, session: &mut SessionCell) {
        if let Some(cell) = self.lane.load_full() {
            let sent = cell.take_sent();
            session.core.settle_lane(&cell.lane, sent);
        }
    }

    /// After a change to the session (and before it decides about a request): the requests
    /// sent in the lane reported, and the lane the session offers now published, or the one
    /// published withdrawn. The lane as published is kept while the session offers the same
    /// (its token, its end). No lane in fleet mode: the fleet's shared budget admits each
    /// attempt.
    pub(super) fn sync_lane(&self, session: &mut SessionCell, now: Instant) {
        let current = self.lane.load_full();
        if let Some(cell) = &current {
            session.core.settle_lane(&cell.lane, cell.take_sent());
        }
        let offered = match self.fleet {
            None => session.core.steady_lane(now, self.api_host),
            Some(_) => None,
        };
        // The header of the lane's token: the one built when the token was published.
        let next = offered.and_then(|lane| match &session.header {
            Some((generation, header)) if *generation == lane.generation() => Some((lane, header)),
            _ => None,
        });
        if let (Some(cell), Some((lane, _))) = (&current, &next)
            && cell.lane.generation() == lane.generation()
            && cell.lane.until() == lane.until()
            && cell.holds()
        {
            return;
        }
        if current.is_none() && next.is_none() {
            return;
        }
        if let Some(cell) = &current {
            session.core.settle_lane(&cell.lane, cell.close());
        }
        self.lane.store(next.map(|(lane, header)| {
            Arc::new(LaneCell { lane, header: header.clone(), sent: AtomicU64::new(0) })
        }));
    }
}
