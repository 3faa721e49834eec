//! Fixed-window counters, one per client id (or per token) and limit.
//!
//! A window opens at the first request after the previous one closed and lasts `window`. That is
//! the simplest limiter consistent with what Genesys shows (`inin-ratelimit-count` rising to
//! `inin-ratelimit-allowed`, `inin-ratelimit-reset` counting down to the next window), and the
//! harshest on bursty clients, which is what a test server should be.

use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// One client's window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FixedWindow {
    opened: Instant,
    count: u64,
}

/// What the headers of an answer say about a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WindowState {
    /// Requests admitted in the current window (this one included if admitted).
    pub(crate) count: u64,
    /// The limit.
    pub(crate) allowed: u64,
    /// Time until the window closes.
    pub(crate) reset_after: Duration,
}

impl FixedWindow {
    pub(crate) const fn new(now: Instant) -> Self {
        Self { opened: now, count: 0 }
    }

    /// Opens a new window if the current one has closed.
    fn roll(&mut self, now: Instant, limit: RateLimit) {
        if self.is_closed(now, limit) {
            *self = Self::new(now);
        }
    }

    /// Whether the window has closed by `now` (the next request would open a new one).
    pub(crate) fn is_closed(&self, now: Instant, limit: RateLimit) -> bool {
        now.saturating_duration_since(self.opened) >= limit.window
    }

    /// Whether one more request fits, without counting it; `Err` carries the wait.
    pub(crate) fn check(&mut self, now: Instant, limit: RateLimit) -> Result<(), WindowState> {
        self.roll(now, limit);
        if self.count < limit.limit { Ok(()) } else { Err(self.state(now, limit)) }
    }

    /// Counts one request (after [`FixedWindow::check`] said it fits).
    pub(crate) fn consume(&mut self, now: Instant, limit: RateLimit) -> WindowState {
        self.count = self.count.saturating_add(1);
        self.state(now, limit)
    }

    /// Checks and counts in one step.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        limit: RateLimit,
    ) -> Result<WindowState, WindowState> {
        self.check(now, limit)?;
        Ok(self.consume(now, limit))
    }

    pub(crate) fn state(&self, now: Instant, limit: RateLimit) -> WindowState {
        let elapsed = now.saturating_duration_since(self.opened);
        WindowState {
            count: self.count,
            allowed: limit.limit,
            reset_after: limit.window.saturating_sub(elapsed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn admits_limit_then_refuses_until_window_closes() {
        let t0 = Instant::now();
        let limit = RateLimit::new(2, Duration::from_millis(1000));
        let mut w = FixedWindow::new(t0);
        assert_eq!(w.admit(t0, limit).map(|s| s.count), Ok(1));
        assert_eq!(w.admit(t0 + 10 * MS, limit).map(|s| s.count), Ok(2));
        let refused = w.admit(t0 + 400 * MS, limit);
        assert_eq!(refused, Err(WindowState { count: 2, allowed: 2, reset_after: 600 * MS }));
        // T-1: still closed.
        assert!(w.admit(t0 + 999 * MS, limit).is_err());
        // T: a new window.
        let fresh = w.admit(t0 + 1000 * MS, limit);
        assert_eq!(fresh, Ok(WindowState { count: 1, allowed: 2, reset_after: 1000 * MS }));
    }

    #[test]
    fn check_does_not_count() {
        let t0 = Instant::now();
        let limit = RateLimit::new(1, Duration::from_secs(1));
        let mut w = FixedWindow::new(t0);
        assert!(w.check(t0, limit).is_ok());
        assert!(w.check(t0, limit).is_ok());
        assert!(w.admit(t0, limit).is_ok());
        assert!(w.check(t0, limit).is_err());
    }
}
