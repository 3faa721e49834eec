//! What the Lua scripts answer, decoded: every number here comes from Redis, which anyone with
//! write access to it controls (the rate hash's fields and the lease's time to live are read
//! back through these answers). Nothing in them may make a process poll Redis in a loop, wait
//! without bound, or admit a request that a broken window would refuse.

// `Acquired` is `pub` for the fuzz targets (`crate::fuzzing`); the module is private otherwise.
#![cfg_attr(not(feature = "__fuzzing"), allow(unreachable_pub))]

use std::time::Duration;

use credflow_reqwest::shared::{Admission, StoreError};

/// What the acquire script answered (`ACQUIRE` in `scripts.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The token is no longer the value the caller judged unusable: look again.
    Changed,
    /// The lease is the caller's.
    Taken,
    /// Another process holds the lease, for this long (at least 1 ms) if Redis knows.
    Held(Option<Duration>),
}

/// Reads the acquire script's `{code, pttl}`. A code other than 0 and 1 is a lease held
/// elsewhere. A negative time to live is not known: -1 is a lease without expiry, which the
/// scripts never write (someone else did), and must not be taken for an expiry that is due
/// (the poller would ask every millisecond until its `max_wait`).
pub(crate) fn acquired(code: i64, pttl: i64) -> Acquired {
    match code {
        0 => Acquired::Changed,
        1 => Acquired::Taken,
        _ => Acquired::Held(u64::try_from(pttl).ok().map(|ms| Duration::from_millis(ms.max(1)))),
    }
}

/// Reads the admission script's `{counted, wait ms}`. A negative wait is a broken window (the
/// script never sends one): refused, so the client paces locally, rather than admitted (fail
/// safe, not open). The client bounds a long wait itself (see [`Admission`]).
pub(crate) fn admission(counted: i64, wait: i64, held: i64) -> Result<Admission, StoreError> {
    let Ok(ms) = u64::try_from(wait) else {
        return Err(StoreError::Refused(format!("admission script answered {wait} ms")));
    };
    let wait = Duration::from_millis(ms);
    Ok(match (counted, ms) {
        (1, 0) => Admission::Now,
        (1, _) => Admission::After(wait),
        _ if held == 1 => Admission::Held(wait),
        _ => Admission::Wait(wait),
    })
}

/// Reads the hold script's answer: the fleet's 429 hold left in ms (none unless positive).
pub(crate) fn hold_left(left: i64) -> Option<Duration> {
    u64::try_from(left).ok().filter(|&ms| ms > 0).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_without_expiry_has_no_known_end() {
        assert_eq!(acquired(2, -1), Acquired::Held(None));
        assert_eq!(acquired(2, -2), Acquired::Held(None));
        assert_eq!(acquired(2, 0), Acquired::Held(Some(Duration::from_millis(1))));
        assert_eq!(acquired(7, 250), Acquired::Held(Some(Duration::from_millis(250))));
        assert_eq!((acquired(0, 9), acquired(1, -1)), (Acquired::Changed, Acquired::Taken));
    }

    #[test]
    fn admission_answers_are_read_as_the_script_means_them() {
        assert_eq!(admission(1, 0, 0), Ok(Admission::Now));
        assert_eq!(admission(1, 20, 0), Ok(Admission::After(Duration::from_millis(20))));
        assert_eq!(admission(0, 0, 0), Ok(Admission::Wait(Duration::ZERO)));
        assert_eq!(admission(0, 7, 1), Ok(Admission::Held(Duration::from_millis(7))));
        assert_eq!(admission(-3, 5, 0), Ok(Admission::Wait(Duration::from_millis(5))));
        assert!(matches!(admission(1, -1, 0), Err(StoreError::Refused(_))));
        assert_eq!(hold_left(i64::MIN), None);
        assert_eq!(hold_left(0), None);
        assert_eq!(hold_left(i64::MAX), Some(Duration::from_millis(i64::MAX as u64)));
    }
}
