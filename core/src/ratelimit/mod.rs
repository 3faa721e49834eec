//! Rate limits: what servers say about them, and how to pace requests within them.
//!
//! - [`headers`] reads every dialect in use into one [`RateLimitSnapshot`].
//! - [`pacer`] turns the latest snapshot into "send now" or "not before T" per priority.

pub mod headers;
pub mod pacer;

use crate::time::Duration;

/// Which header dialect a [`RateLimitSnapshot`] was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Dialect {
    /// Genesys Cloud: `inin-ratelimit-count` (used), `-allowed` (limit), `-reset` (seconds).
    Genesys,
    /// GitHub style `X-RateLimit-Limit/Remaining/Reset`.
    XRateLimit,
    /// `X-Rate-Limit-Limit/Remaining/Reset` (X/Twitter style, and the reference guide's names).
    XRateLimitDashed,
    /// IETF draft -00..-06 fields: `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`.
    IetfSeparate,
    /// IETF draft -07: `RateLimit: limit=100, remaining=50, reset=5`.
    IetfCombined,
    /// IETF draft -08 and later structured fields: `RateLimit: "p";r=50;t=30` with
    /// `RateLimit-Policy: "p";q=100;w=60`.
    IetfStructured,
}

/// What one response said about the rate limit it was counted against.
///
/// All fields are optional because servers send subsets. Times are relative to the moment the
/// response was received: an epoch-valued reset has already been converted to a delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RateLimitSnapshot {
    /// Requests allowed per window.
    pub limit: Option<u64>,
    /// Requests still allowed in the current window.
    pub remaining: Option<u64>,
    /// Time until the current window resets (the quota is replenished).
    pub reset_after: Option<Duration>,
    /// Length of the window, when the server states it (IETF policy `w`).
    pub window: Option<Duration>,
    /// The dialect it was read from.
    pub dialect: Dialect,
}

impl RateLimitSnapshot {
    /// This snapshot less what no pacer believes: a reset or a window further away than
    /// [`pacer::MAX_RESET`] (a day, a daily quota's) is dropped, as if the server had not said
    /// it. Held to, one answer claiming 999 999 999 s would hold lower priorities back for
    /// decades, with nothing sent to learn otherwise; a real limit that long is found by its 429.
    /// The pacer reads snapshots through this, and so do the fleet's stores.
    #[must_use]
    pub fn believed(&self) -> RateLimitSnapshot {
        let believed = |d: &Duration| *d <= pacer::MAX_RESET;
        RateLimitSnapshot {
            reset_after: self.reset_after.filter(believed),
            window: self.window.filter(believed),
            ..*self
        }
    }
}
