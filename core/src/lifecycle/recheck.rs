//! The hold after the token endpoint rejected the client (feature `recheck`): token requests
//! stop for [`LifecycleConfig::recheck_after`], doubling per rejection in a row up to
//! [`LifecycleConfig::recheck_cap`], then one checks whether the cause is gone.
//!
//! Without the feature there is no hold to keep: a rejection stops token requests until the
//! credentials change, and these answer accordingly (no recheck, no wait added).

use super::LifecycleConfig;
use crate::time::{Duration, Instant};

/// The hold after the last rejection, while no token came since (zero: none since the last
/// token or credential change, or rechecks are off): every request waits at least this long
/// after the one before ended, and the next rejection doubles it.
#[cfg(feature = "recheck")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Recheck {
    hold: Duration,
    /// When one request checks again after the last rejection (`None`: rechecks are off).
    /// Read only while requests are stopped by that rejection.
    at: Option<Instant>,
}

/// Without `recheck`: nothing to keep.
#[cfg(not(feature = "recheck"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Recheck;

#[cfg(feature = "recheck")]
impl Recheck {
    /// No hold: no rejection since the last token or credential change.
    pub(super) const NONE: Self = Recheck { hold: Duration::ZERO, at: None };

    /// A rejection at `now`: the hold becomes `recheck_after`, or twice the last one, at most
    /// `recheck_cap`, and one request checks again when it ends.
    pub(super) fn rejected(&mut self, cfg: &LifecycleConfig, now: Instant) {
        self.at = cfg.recheck_after.map(|first| {
            self.hold = self.hold.saturating_add(self.hold).max(first).min(cfg.recheck_cap);
            now.saturating_add(self.hold)
        });
    }

    /// When one request checks again after the last rejection (`None`: rechecks are off).
    pub(super) fn at(&self) -> Option<Instant> {
        self.at
    }

    /// `wait`, or the hold where that is longer: until a token comes, a rejected client sends
    /// no more than one request per hold, whatever ended the last one.
    pub(super) fn held_back(&self, wait: Duration) -> Duration {
        wait.max(self.hold)
    }
}

#[cfg(not(feature = "recheck"))]
impl Recheck {
    /// No hold, ever.
    pub(super) const NONE: Self = Recheck;

    /// A rejection: stopped until the credentials change.
    pub(super) fn rejected(&mut self, _cfg: &LifecycleConfig, _now: Instant) {}

    /// No recheck.
    pub(super) fn at(&self) -> Option<Instant> {
        None
    }

    /// `wait` as it is: no hold.
    pub(super) fn held_back(&self, wait: Duration) -> Duration {
        wait
    }
}
