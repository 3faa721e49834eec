//! Time as the core sees it: values handed in by the caller, never read from a clock.
//!
//! Two kinds of time are kept apart on purpose:
//!
//! - [`Instant`] is monotonic time in milliseconds from an arbitrary origin (boot, process start, a
//!   test's zero). All scheduling uses it: refresh points, backoff, breaker cooldowns, pacing.
//!   [`Instant::MAX`] means "never".
//! - [`UnixTime`] is wall-clock time in seconds since 1970-01-01T00:00:00Z. It is used only where a
//!   time must survive a reboot or go on the wire: JWT `iat`/`exp`, HTTP-dates (`Retry-After`,
//!   `Date`), epoch-valued rate-limit resets, the expiry inside a sealed snapshot.
//!
//! [`Duration`] is a span in milliseconds. Every operation is saturating or checked: a server may
//! send any number, and no input can make the core overflow or panic. The `+`/`-` operators are
//! saturating (documented on each impl) so that decision code reads naturally.

use core::fmt;
use core::ops::{Add, Sub};

/// A span of time in milliseconds. Saturating arithmetic; [`Duration::MAX`] is "forever".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Duration(u64);

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration(0);
    /// The longest representable span, used as "forever".
    pub const MAX: Duration = Duration(u64::MAX);

    /// A span of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms)
    }

    /// A span of `s` seconds (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Duration(mul_sat(s, 1000))
    }

    /// A span of `m` minutes (saturating).
    pub const fn from_mins(m: u64) -> Self {
        Duration(mul_sat(m, 60_000))
    }

    /// Whole milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds (rounded down).
    pub const fn as_secs(self) -> u64 {
        match div_rem(self.0, 1000) {
            Some((secs, _)) => secs,
            None => 0,
        }
    }

    /// Whole seconds, rounded up: a wait of 1 ms is reported as 1 s, never as 0 s.
    pub const fn as_secs_ceil(self) -> u64 {
        match div_rem(self.0, 1000) {
            Some((secs, 0)) => secs,
            // At most u64::MAX / 1000, so the increment cannot overflow.
            Some((secs, _)) => secs.saturating_add(1),
            None => 0,
        }
    }

    /// `self + rhs`, or `None` on overflow.
    pub const fn checked_add(self, rhs: Duration) -> Option<Duration> {
        match self.0.checked_add(rhs.0) {
            Some(v) => Some(Duration(v)),
            None => None,
        }
    }

    /// `self - rhs`, or `None` if `rhs` is longer.
    pub const fn checked_sub(self, rhs: Duration) -> Option<Duration> {
        match self.0.checked_sub(rhs.0) {
            Some(v) => Some(Duration(v)),
            None => None,
        }
    }

    /// `self + rhs`, saturating at [`Duration::MAX`].
    pub const fn saturating_add(self, rhs: Duration) -> Duration {
        Duration(add_sat(self.0, rhs.0))
    }

    /// `self - rhs`, saturating at zero.
    pub const fn saturating_sub(self, rhs: Duration) -> Duration {
        Duration(sub_sat(self.0, rhs.0))
    }

    /// `self * n`, saturating at [`Duration::MAX`].
    pub const fn saturating_mul(self, n: u64) -> Duration {
        Duration(mul_sat(self.0, n))
    }

    /// `self * num / den` computed in 128 bits, saturating; a zero `den` gives [`Duration::MAX`].
    ///
    /// This is how fractions of a span are taken without floating point (for instance "80 % of
    /// the token's life" is `life.mul_ratio(4, 5)`). Out of line on purpose: 128-bit products
    /// and quotients are large on a 32-bit target, and would be copied into every call site.
    pub const fn mul_ratio(self, num: u64, den: u64) -> Duration {
        match mul_div(self.0, num, den, false) {
            Some(v) => Duration(v),
            None => Duration::MAX,
        }
    }

    /// `self * permille / 1000`: a fraction expressed in thousandths.
    pub const fn mul_permille(self, permille: u16) -> Duration {
        self.mul_ratio(permille as u64, 1000)
    }

    /// The shorter of two spans. Out of line on 32-bit targets, where a 64-bit comparison and
    /// select is taken at many places (caps on waits and backoffs).
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    pub fn min(self, other: Duration) -> Duration {
        Ord::min(self, other)
    }

    /// The longer of two spans.
    pub fn max(self, other: Duration) -> Duration {
        Ord::max(self, other)
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// `a * b / c` exactly, rounded down (or up with `ceil`); `None` if `c` is zero or the result
/// does not fit 64 bits. The crate's one place for wide products (see [`Duration::mul_ratio`]).
///
/// A product that fits 64 bits (the common case: milliseconds times a count or a permille) is
/// divided with one 64-bit division; a wider one by shift-and-subtract, 64 steps. A general
/// 128-bit division is far larger Cortex-M code.
#[inline(never)]
#[allow(clippy::cast_possible_truncation)] // the halves of a u128, on purpose
pub(crate) const fn mul_div(a: u64, b: u64, c: u64, ceil: bool) -> Option<u64> {
    // Two 64-bit factors: the product fits 128 bits.
    let wide = (a as u128).wrapping_mul(b as u128);
    let (high, low) = ((wide >> 64) as u64, wide as u64);
    let (quotient, rem) = if high == 0 {
        match div_rem(low, c) {
            Some(qr) => qr,
            None => return None,
        }
    } else if high < c {
        // The quotient fits 64 bits exactly when the high half is below the divisor.
        shift_subtract(high, low, c)
    } else {
        return None;
    };
    if ceil && rem != 0 { quotient.checked_add(1) } else { Some(quotient) }
}

/// `n / d` and `n % d`, or `None` when `d` is zero: the crate's 64-bit division.
///
/// A 32-bit target has no 64-bit divide instruction: there every `/` or `%` on `u64` is a call
/// into compiler-builtins' general division, large Cortex-M code, linked as soon as
/// one such operator is reachable. The core's reachable code divides 64-bit values only here:
/// with the hardware's 32-bit division when both operands fit 32 bits (seconds, window lengths,
/// slot numbers: the usual case), else by shift-and-subtract. 64-bit targets divide natively
/// (and inline it: it is one instruction there).
#[cfg_attr(not(target_pointer_width = "64"), inline(never))]
pub(crate) const fn div_rem(n: u64, d: u64) -> Option<(u64, u64)> {
    if d == 0 {
        return None;
    }
    #[cfg(target_pointer_width = "64")]
    {
        match (n.checked_div(d), n.checked_rem(d)) {
            (Some(q), Some(r)) => Some((q, r)),
            _ => None,
        }
    }
    #[cfg(not(target_pointer_width = "64"))]
    {
        Some(div_rem_narrow(n, d))
    }
}

/// `a + b`, saturating at `u64::MAX`. Out of line on 32-bit targets, where a saturating
/// 64-bit sum is a carry chain and a select, taken at hundreds of places (deadlines).
#[cfg_attr(not(target_pointer_width = "64"), inline(never))]
pub(crate) const fn add_sat(a: u64, b: u64) -> u64 {
    a.saturating_add(b)
}

/// `a - b`, saturating at zero; out of line on 32-bit targets like [`add_sat`].
#[cfg_attr(not(target_pointer_width = "64"), inline(never))]
pub(crate) const fn sub_sat(a: u64, b: u64) -> u64 {
    a.saturating_sub(b)
}

/// `a * b`, saturating at `u64::MAX`. Out of line on 32-bit targets: a saturating 64-bit
/// product is about 30 instructions there (the overflow check needs the high half), and it is
/// taken at many places (seconds to milliseconds, decimal digits, backoff doubling).
#[cfg_attr(not(target_pointer_width = "64"), inline(never))]
pub(crate) const fn mul_sat(a: u64, b: u64) -> u64 {
    a.saturating_mul(b)
}

/// [`div_rem`] without a 64-bit divide instruction; `d` is not zero.
#[cfg_attr(target_pointer_width = "64", allow(dead_code))] // tested against native division
#[allow(clippy::cast_possible_truncation)] // both checked to fit 32 bits
const fn div_rem_narrow(n: u64, d: u64) -> (u64, u64) {
    if n <= u32::MAX as u64 && d <= u32::MAX as u64 {
        let (n, d) = (n as u32, d as u32);
        if let (Some(q), Some(r)) = (n.checked_div(d), n.checked_rem(d)) {
            return (q as u64, r as u64);
        }
    }
    shift_subtract(0, n, d)
}

/// `(high · 2⁶⁴ + low) / c` and its remainder, for `high < c` (so the quotient fits 64 bits):
/// 64 steps of shift-and-subtract.
const fn shift_subtract(high: u64, low: u64, c: u64) -> (u64, u64) {
    let (mut rem, mut quotient) = (high, 0u64);
    let mut bit = 64u32;
    while bit > 0 {
        bit = bit.wrapping_sub(1);
        // rem < c, so (rem << 1 | next bit) < 2c: one subtraction suffices; `carry` is the bit
        // shifted out of `rem`, when 2 × rem overflows 64 bits.
        let carry = rem >> 63;
        rem = (rem << 1) | ((low >> bit) & 1);
        quotient <<= 1;
        if carry == 1 || rem >= c {
            rem = rem.wrapping_sub(c);
            quotient |= 1;
        }
    }
    (quotient, rem)
}

impl Add for Duration {
    type Output = Duration;
    /// Saturating addition.
    fn add(self, rhs: Duration) -> Duration {
        self.saturating_add(rhs)
    }
}

impl Sub for Duration {
    type Output = Duration;
    /// Saturating subtraction (never below zero).
    fn sub(self, rhs: Duration) -> Duration {
        self.saturating_sub(rhs)
    }
}

impl From<core::time::Duration> for Duration {
    /// Saturating conversion; sub-millisecond parts are dropped.
    fn from(d: core::time::Duration) -> Self {
        Duration(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl From<Duration> for core::time::Duration {
    fn from(d: Duration) -> Self {
        core::time::Duration::from_millis(d.0)
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Duration {
    /// Human form: `250ms`, `1.5s`, `42s`, `3h05m`, `forever`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms == u64::MAX {
            f.write_str("forever")
        } else if ms < 1000 {
            write!(f, "{ms}ms")
        } else if ms < 60_000 {
            if ms.is_multiple_of(1000) {
                write!(f, "{}s", ms / 1000)
            } else {
                write!(f, "{}.{:03}s", ms / 1000, ms % 1000)
            }
        } else if ms < 3_600_000 {
            write!(f, "{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
        } else {
            write!(f, "{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
        }
    }
}

/// A point in monotonic time: milliseconds from an origin the caller chose.
///
/// The core never reads a clock; adapters convert their clock's readings (std `Instant`,
/// embassy `Instant`, a simulator's virtual time) into this type. [`Instant::MAX`] means "never".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);
    /// "Never": later than any real instant. Adding to it stays at `MAX`.
    pub const MAX: Instant = Instant(u64::MAX);

    /// The instant `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    /// The instant `s` seconds after the origin (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Instant(mul_sat(s, 1000))
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, or `None` if it would pass [`Instant::MAX`].
    pub const fn checked_add(self, d: Duration) -> Option<Instant> {
        match self.0.checked_add(d.0) {
            Some(v) => Some(Instant(v)),
            None => None,
        }
    }

    /// `self - d`, or `None` if it would precede the origin.
    pub const fn checked_sub(self, d: Duration) -> Option<Instant> {
        match self.0.checked_sub(d.0) {
            Some(v) => Some(Instant(v)),
            None => None,
        }
    }

    /// `self + d`, saturating at [`Instant::MAX`] ("never" stays "never").
    pub const fn saturating_add(self, d: Duration) -> Instant {
        Instant(add_sat(self.0, d.0))
    }

    /// `self - d`, saturating at the origin.
    pub const fn saturating_sub(self, d: Duration) -> Instant {
        Instant(sub_sat(self.0, d.0))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration(sub_sat(self.0, earlier.0))
    }

    /// Time from `earlier` to `self`, or `None` if `earlier` is later.
    pub const fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        match self.0.checked_sub(earlier.0) {
            Some(v) => Some(Duration(v)),
            None => None,
        }
    }

    /// Whether this is [`Instant::MAX`].
    pub const fn is_never(self) -> bool {
        self.0 == u64::MAX
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating: never passes [`Instant::MAX`].
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturating: never precedes the origin.
    fn sub(self, d: Duration) -> Instant {
        self.saturating_sub(d)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating: zero if `rhs` is later.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Instant {
    /// `T+12.345s` (or `never`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == u64::MAX {
            f.write_str("never")
        } else {
            write!(f, "T+{}.{:03}s", self.0 / 1000, self.0 % 1000)
        }
    }
}

/// Wall-clock time: whole seconds since the Unix epoch (UTC), as carried by JWT claims and
/// HTTP-dates. Saturating arithmetic.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnixTime(u64);

impl UnixTime {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: UnixTime = UnixTime(0);

    /// `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        UnixTime(secs)
    }

    /// Seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// `self + d` (whole seconds of `d`, rounded down), saturating.
    pub const fn saturating_add(self, d: Duration) -> UnixTime {
        UnixTime(add_sat(self.0, d.as_secs()))
    }

    /// `self - d` (whole seconds of `d`, rounded up), saturating at the epoch.
    pub const fn saturating_sub(self, d: Duration) -> UnixTime {
        UnixTime(sub_sat(self.0, d.as_secs_ceil()))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: UnixTime) -> Duration {
        Duration::from_secs(sub_sat(self.0, earlier.0))
    }

    /// Time from `earlier` to `self`, or `None` if `earlier` is later.
    pub const fn checked_duration_since(self, earlier: UnixTime) -> Option<Duration> {
        match self.0.checked_sub(earlier.0) {
            Some(v) => Some(Duration::from_secs(v)),
            None => None,
        }
    }
}

impl fmt::Debug for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnixTime({})", self.0)
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A pairing of monotonic and wall-clock time observed at the same moment.
///
/// The session keeps one so that it can turn wall-clock values it receives (an HTTP-date
/// `Retry-After`, an epoch rate-limit reset) into monotonic deadlines, and so that it can produce
/// wall-clock values (JWT claims) from a monotonic `now`. Adapters refresh it from the system clock;
/// a device without a real-time clock can seed it from a server's `Date` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WallClock {
    /// The monotonic reading.
    pub at: Instant,
    /// The wall-clock reading taken at the same moment.
    pub wall: UnixTime,
}

impl WallClock {
    /// Pairs a monotonic and a wall-clock reading taken together.
    pub const fn new(at: Instant, wall: UnixTime) -> Self {
        WallClock { at, wall }
    }

    /// The wall-clock time at monotonic instant `now`, extrapolated from this pairing.
    pub fn wall_at(&self, now: Instant) -> UnixTime {
        // Whole seconds of the distance, rounded down ahead of the pairing and up before it
        // (`UnixTime`'s saturating add and sub): one division for both.
        let ahead = now >= self.at;
        let (later, earlier) = if ahead { (now, self.at) } else { (self.at, now) };
        let (secs, rem) = div_rem(later.0.wrapping_sub(earlier.0), 1000).unwrap_or((0, 0));
        if ahead {
            UnixTime(add_sat(self.wall.0, secs))
        } else {
            // At most u64::MAX / 1000, so the increment cannot overflow.
            UnixTime(sub_sat(self.wall.0, secs.saturating_add(u64::from(rem != 0))))
        }
    }

    /// The monotonic instant at which wall-clock time `t` arrives (saturating at the origin for
    /// times in the past before the origin, and at [`Instant::MAX`] for absurd futures).
    pub fn instant_at(&self, t: UnixTime) -> Instant {
        if t >= self.wall {
            self.at.saturating_add(t.saturating_duration_since(self.wall))
        } else {
            self.at.saturating_sub(self.wall.saturating_duration_since(t))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: 128-bit arithmetic as written in the textbook.
    fn mul_div_reference(a: u64, b: u64, c: u64, ceil: bool) -> Option<u64> {
        let wide = u128::from(a) * u128::from(b);
        let c = u128::from(c);
        let v = if ceil { wide.checked_add(c.checked_sub(1)?)? } else { wide }.checked_div(c)?;
        u64::try_from(v).ok()
    }

    #[test]
    fn saturating_products_stop_at_the_maximum() {
        assert_eq!(mul_sat(u64::MAX / 1000, 1000), u64::MAX / 1000 * 1000);
        assert_eq!(mul_sat(u64::MAX / 1000 + 1, 1000), u64::MAX);
        assert_eq!(mul_sat(0, u64::MAX), 0);
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
        assert_eq!(Duration::from_secs(7).as_millis(), 7000);
        assert_eq!(Duration::from_mins(2).as_millis(), 120_000);
        assert_eq!(Instant::from_secs(u64::MAX), Instant::MAX);
        assert_eq!(Duration::from_millis(3).saturating_mul(u64::MAX), Duration::MAX);
    }

    proptest! {
        #[test]
        fn mul_sat_is_the_saturating_product(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(mul_sat(a, b), a.saturating_mul(b));
        }

        #[test]
        fn mul_div_matches_128_bit_arithmetic(
            a in prop_oneof![any::<u64>(), 0u64..100_000],
            b in prop_oneof![any::<u64>(), 0u64..100_000],
            c in prop_oneof![any::<u64>(), 0u64..100_000],
            ceil in any::<bool>(),
        ) {
            prop_assert_eq!(mul_div(a, b, c, ceil), mul_div_reference(a, b, c, ceil));
        }
    }

    proptest! {
        /// The division for 32-bit targets (one 32-bit division, else shift-and-subtract) is
        /// the native one, across both paths and their boundary.
        #[test]
        fn narrow_division_matches_native(
            n in prop_oneof![any::<u64>(), 0u64..=u64::from(u32::MAX), Just(u64::MAX)],
            d in prop_oneof![any::<u64>(), 1u64..=u64::from(u32::MAX), 1u64..1000, Just(u64::MAX)],
        ) {
            prop_assume!(d != 0);
            prop_assert_eq!(div_rem_narrow(n, d), (n / d, n % d));
            prop_assert_eq!(div_rem(n, d), Some((n / d, n % d)));
        }
    }

    #[test]
    fn division_boundaries() {
        let max32 = u64::from(u32::MAX);
        for (n, d) in
            [(max32, 1), (max32 + 1, 1), (max32 + 1, 2), (max32, max32 + 1), (1, max32 + 1)]
        {
            assert_eq!(div_rem_narrow(n, d), (n / d, n % d), "{n} / {d}");
        }
        assert_eq!(div_rem(5, 0), None);
        assert_eq!(Duration::from_millis(999).as_secs(), 0);
        assert_eq!(Duration::from_millis(1000).as_secs(), 1);
        assert_eq!(Duration::from_millis(1000).as_secs_ceil(), 1);
        assert_eq!(Duration::from_millis(1001).as_secs_ceil(), 2);
        assert_eq!(Duration::MAX.as_secs_ceil(), u64::MAX.div_ceil(1000));
        assert_eq!(Duration::MAX.as_secs(), u64::MAX / 1000);
    }

    #[test]
    fn saturating_arithmetic_never_wraps() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::from_secs(1) - Instant::from_secs(5), Duration::ZERO);
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
        assert_eq!(Duration::MAX.mul_ratio(2, 1), Duration::MAX);
        assert_eq!(Duration::MAX.mul_ratio(u64::MAX, u64::MAX), Duration::MAX);
        assert_eq!(Duration::MAX.mul_ratio(u64::MAX - 1, u64::MAX).as_millis(), u64::MAX - 1);
        assert_eq!(mul_div(7, 3, 2, false), Some(10));
        assert_eq!(mul_div(7, 3, 2, true), Some(11));
        assert_eq!(mul_div(6, 3, 2, true), Some(9));
        assert_eq!(mul_div(u64::MAX, u64::MAX, 1, false), None);
        assert_eq!(mul_div(u64::MAX, 2, 2, true), Some(u64::MAX));
        assert_eq!(mul_div(u64::MAX, u64::MAX, u64::MAX, true), Some(u64::MAX));
        assert_eq!(Duration::from_secs(10).mul_ratio(1, 0), Duration::MAX);
        assert_eq!(Duration::from_secs(300).mul_permille(800), Duration::from_secs(240));
        assert_eq!(Duration::from_millis(1).as_secs_ceil(), 1);
        assert_eq!(UnixTime::from_secs(5).saturating_sub(Duration::from_secs(9)), UnixTime::EPOCH);
    }

    #[test]
    fn display_is_human() {
        extern crate std;
        use std::format;
        assert_eq!(format!("{}", Duration::from_millis(250)), "250ms");
        assert_eq!(format!("{}", Duration::from_millis(1500)), "1.500s");
        assert_eq!(format!("{}", Duration::from_secs(42)), "42s");
        assert_eq!(format!("{}", Duration::from_secs(3 * 3600 + 300)), "3h05m");
        assert_eq!(format!("{}", Duration::MAX), "forever");
        assert_eq!(format!("{}", Instant::from_millis(12_345)), "T+12.345s");
        assert_eq!(format!("{}", Instant::MAX), "never");
    }

    proptest! {
        /// `wall_at` (one division for both directions) is the wall time plus the whole
        /// seconds ahead of the pairing, rounded down, or minus those before it, rounded up.
        #[test]
        fn wall_at_rounds_towards_the_pairing(
            at in prop_oneof![any::<u64>(), 0u64..5000, Just(u64::MAX)],
            now in prop_oneof![any::<u64>(), 0u64..5000, Just(u64::MAX)],
            wall in prop_oneof![any::<u64>(), 0u64..10, Just(u64::MAX)],
        ) {
            let wc = WallClock::new(Instant::from_millis(at), UnixTime::from_secs(wall));
            let now = Instant::from_millis(now);
            let expected = if now >= wc.at {
                wc.wall.saturating_add(now.saturating_duration_since(wc.at))
            } else {
                wc.wall.saturating_sub(wc.at.saturating_duration_since(now))
            };
            prop_assert_eq!(wc.wall_at(now), expected);
        }
    }

    #[test]
    fn wall_at_boundaries() {
        let wc = WallClock::new(Instant::from_secs(10), UnixTime::from_secs(100));
        assert_eq!(wc.wall_at(Instant::from_millis(10_999)), UnixTime::from_secs(100));
        assert_eq!(wc.wall_at(Instant::from_millis(11_000)), UnixTime::from_secs(101));
        assert_eq!(wc.wall_at(Instant::from_millis(9_999)), UnixTime::from_secs(99));
        assert_eq!(wc.wall_at(Instant::from_millis(9_000)), UnixTime::from_secs(99));
        assert_eq!(wc.wall_at(Instant::from_millis(8_999)), UnixTime::from_secs(98));
        assert_eq!(wc.wall_at(Instant::ZERO), UnixTime::from_secs(90));
        let edge = WallClock::new(Instant::ZERO, UnixTime::from_secs(u64::MAX - 1));
        assert_eq!(edge.wall_at(Instant::MAX), UnixTime::from_secs(u64::MAX));
        let early = WallClock::new(Instant::MAX, UnixTime::from_secs(3));
        assert_eq!(early.wall_at(Instant::ZERO), UnixTime::EPOCH);
    }

    #[test]
    fn wall_clock_maps_both_ways() {
        let wc = WallClock::new(Instant::from_secs(100), UnixTime::from_secs(1_700_000_000));
        assert_eq!(wc.wall_at(Instant::from_secs(160)), UnixTime::from_secs(1_700_000_060));
        assert_eq!(wc.wall_at(Instant::from_secs(40)), UnixTime::from_secs(1_699_999_940));
        assert_eq!(wc.instant_at(UnixTime::from_secs(1_700_000_042)), Instant::from_secs(142));
        assert_eq!(wc.instant_at(UnixTime::EPOCH), Instant::ZERO);
        assert_eq!(wc.instant_at(UnixTime::from_secs(u64::MAX)), Instant::MAX);
    }
}
