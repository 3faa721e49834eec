//! The fleet link: the calls to the shared store (bounded, degrading once), announced as the
//! fleet's, and the reports of each response's rate-limit facts.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use credflow_core::fleet::{CallTicket, FleetHold, LinkChange};
use credflow_core::http::Headers;
use credflow_core::session::WaitReason;
use credflow_core::{Duration, Instant, Priority};
use reqwest::header::HeaderMap;
use tracing::{debug, info, warn};

use super::send::HeaderMapRef;
use super::{ClientEvent, Shared, std_duration};
use crate::shared::{Admission, FleetStatus};

impl Shared {
    /// Logs and announces a change of fleet status, once per change.
    pub(super) fn fleet_transition(
        &self,
        transition: LinkChange,
        error: Option<&crate::shared::StoreError>,
    ) {
        let status = match transition {
            LinkChange::None => return,
            LinkChange::Degraded => {
                let error = error.map(ToString::to_string).unwrap_or_default();
                warn!(%error, "shared store unreachable: working alone on the local session until it answers");
                FleetStatus::Degraded
            }
            LinkChange::Rejoined => {
                info!("shared store answers again: rejoined the fleet");
                FleetStatus::Joined
            }
        };
        self.emit(|| ClientEvent::Fleet(status));
    }

    /// The fleet's admission for one attempt; `None` when the store is not usable (degraded).
    /// `claimed`: the link's ticket when the request began and found it usable (joined, or
    /// with the probe it claimed), for its first question: asked if the link has not changed
    /// since. `within`: the longest the request will wait for a reserved slot.
    pub(super) async fn fleet_admit(
        &self,
        priority: Priority,
        claimed: Option<CallTicket>,
        within: StdDuration,
    ) -> Option<Admission> {
        let fleet = self.fleet.as_ref().filter(|f| match claimed {
            Some(claim) => f.still_usable(claim),
            None => f.usable(),
        })?;
        let (result, transition) =
            fleet.call(fleet.call_timeout, fleet.store.admit(&fleet.scope, priority, within)).await;
        self.fleet_transition(transition, result.as_ref().err());
        result.ok()
    }

    /// Sleeps until `until` for the fleet (a slot it reserved, or its answer to ask again),
    /// announced as a pacing wait of `wait` (as the fleet answered it).
    pub(super) async fn sleep_for_fleet(&self, until: Instant, wait: Duration) {
        let reason = WaitReason::Paced(credflow_core::ratelimit::pacer::PaceReason::Spacing);
        self.emit(|| ClientEvent::Wait { reason, wait: Some(std_duration(wait)) });
        tokio::time::sleep_until(self.clock.to_tokio(until)).await;
    }

    /// Announces the fleet's 429 hold as the driver honours it (never longer than the retry
    /// policy's `max_wait`; a store answering more was cut, and is said to be) as the fleet's
    /// ([`ClientEvent::FleetHold`]), not as the server's.
    pub(super) fn announce_fleet_hold(&self, hold: FleetHold) {
        if let Some(answered) = hold.cut_from {
            warn!(
                answered = ?std_duration(answered),
                max_wait = ?std_duration(self.driver.max_wait),
                "the fleet's shared store held requests back for longer than the retry policy's max_wait after another pod's 429; cut to max_wait"
            );
        }
        let hold = std_duration(hold.hold);
        debug!(
            ?hold,
            "held by the fleet's shared rate state: a pod of the fleet was answered 429 (not this request)"
        );
        self.emit(|| ClientEvent::FleetHold { wait: hold });
    }

    /// The fleet's current hold (see [`SharedStore::hold`](crate::shared::SharedStore::hold)), if the store is usable and
    /// reports one.
    pub(super) async fn fleet_hold(&self) -> Option<StdDuration> {
        let fleet = self.fleet.as_ref().filter(|f| f.usable())?;
        let (result, transition) =
            fleet.call(fleet.call_timeout, fleet.store.hold(&fleet.scope)).await;
        self.fleet_transition(transition, result.as_ref().err());
        result.ok().flatten().filter(|hold| !hold.is_zero())
    }

    /// Reports a response's rate-limit facts to the fleet, in the background: its rate-limit
    /// headers, and, for a 429, the wait the session read from it (`rate_limited`, from
    /// [`ResponseReport`](credflow_core::fleet::ResponseReport): a `Retry-After`, or the wait Genesys writes into the body).
    pub(super) fn fleet_report(
        shared: &Arc<Shared>,
        now: Instant,
        headers: &HeaderMap,
        rate_limited: Option<Option<Duration>>,
    ) {
        let Some(fleet) = shared.fleet.as_ref() else { return };
        let headers = HeaderMapRef(headers);
        let reference = headers
            .get("date")
            .and_then(credflow_core::http::date::parse_http_date)
            .or_else(|| Some(shared.clock.wall(now).wall_at(now)));
        // What the pacer would not believe (a reset or window beyond a day) the fleet is not told.
        let snapshot = credflow_core::ratelimit::headers::parse_rate_limit(&headers, reference)
            .map(|snapshot| snapshot.believed());
        let retry_after = rate_limited.map(|wait| wait.map(std_duration));
        if (snapshot.is_none() && retry_after.is_none()) || fleet.status() != FleetStatus::Joined {
            return;
        }
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            let Some(fleet) = shared.fleet.as_ref() else { return };
            if let Some(snapshot) = snapshot {
                let (result, transition) = fleet
                    .call(fleet.call_timeout, fleet.store.observe(&fleet.scope, snapshot))
                    .await;
                shared.fleet_transition(transition, result.as_ref().err());
            }
            if let Some(retry_after) = retry_after {
                let (result, transition) = fleet
                    .call(fleet.call_timeout, fleet.store.rate_limited(&fleet.scope, retry_after))
                    .await;
                shared.fleet_transition(transition, result.as_ref().err());
            }
        });
    }
}
