//! The core's time types (`core/src/time.rs`): monotonic and wall-clock time, saturating.

use credflow_core::{Duration, Instant, UnixTime, WallClock};

use crate::{CheckResult, shown};

/// Saturating arithmetic never wraps, at either end.
pub(crate) fn saturating_arithmetic() -> CheckResult {
    ensure_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
    ensure_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
    ensure_eq!(Instant::from_secs(1) - Instant::from_secs(5), Duration::ZERO);
    ensure_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
    ensure_eq!(Duration::from_mins(u64::MAX / 60_000 + 1), Duration::MAX);
    ensure_eq!(Duration::from_secs(300).mul_permille(800), Duration::from_secs(240));
    ensure_eq!(UnixTime::from_secs(5).saturating_sub(Duration::from_secs(9)), UnixTime::EPOCH);
    ensure_eq!(
        UnixTime::from_secs(5).saturating_sub(Duration::from_millis(1)),
        UnixTime::from_secs(4)
    );
    ensure_eq!(Instant::from_millis(7).checked_sub(Duration::from_millis(8)), None);
    ensure_eq!(Instant::MAX.checked_add(Duration::from_millis(1)), None);
    ensure!(Instant::MAX.is_never() && !Instant::from_millis(u64::MAX - 1).is_never());
    Ok(())
}

/// `Display` is human and exact (it is what logs and error messages show).
pub(crate) fn display_is_human() -> CheckResult {
    ensure_eq!(shown::<16>(Duration::from_millis(250)).as_str(), "250ms");
    ensure_eq!(shown::<16>(Duration::from_millis(1500)).as_str(), "1.500s");
    ensure_eq!(shown::<16>(Duration::from_secs(42)).as_str(), "42s");
    ensure_eq!(shown::<16>(Duration::from_secs(30_000)).as_str(), "8h20m");
    ensure_eq!(shown::<16>(Duration::from_secs(3 * 3600 + 300)).as_str(), "3h05m");
    ensure_eq!(shown::<16>(Duration::from_secs(60)).as_str(), "1m00s");
    ensure_eq!(shown::<16>(Duration::MAX).as_str(), "forever");
    ensure_eq!(shown::<16>(Instant::from_millis(12_345)).as_str(), "T+12.345s");
    ensure_eq!(shown::<16>(Instant::MAX).as_str(), "never");
    Ok(())
}

/// A wall-clock pairing maps both ways and saturates at the origin and at "never".
pub(crate) fn wall_clock_maps_both_ways() -> CheckResult {
    let wc = WallClock::new(Instant::from_secs(100), UnixTime::from_secs(1_700_000_000));
    ensure_eq!(wc.wall_at(Instant::from_secs(160)), UnixTime::from_secs(1_700_000_060));
    ensure_eq!(wc.wall_at(Instant::from_secs(40)), UnixTime::from_secs(1_699_999_940));
    ensure_eq!(wc.instant_at(UnixTime::from_secs(1_700_000_042)), Instant::from_secs(142));
    ensure_eq!(wc.instant_at(UnixTime::EPOCH), Instant::ZERO);
    ensure_eq!(wc.instant_at(UnixTime::from_secs(u64::MAX)), Instant::MAX);
    // Past 2106 (beyond any 32-bit `time_t`) is still exact.
    let far = WallClock::new(Instant::ZERO, UnixTime::from_secs(1 << 33));
    ensure_eq!(far.wall_at(Instant::from_secs(5)), UnixTime::from_secs((1 << 33) + 5));
    Ok(())
}
