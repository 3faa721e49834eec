//! Small helpers: a seeded generator, ids, whole seconds, ISO-8601 dates.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, seedable, good enough for fault injection and ids.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator seeded from the operating system (falls back to the clock).
    pub(crate) fn from_entropy() -> Self {
        let mut seed = [0_u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            seed =
                u64::try_from(nanos.as_nanos() & u128::from(u64::MAX)).unwrap_or(0).to_le_bytes();
        }
        Self(u64::from_le_bytes(seed))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        // 53 random mantissa bits.
        let bits = self.next_u64() >> 11;
        #[allow(clippy::cast_precision_loss)] // exact: 53 bits fit an f64 mantissa
        let value = bits as f64;
        value / (1_u64 << 53) as f64
    }

    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            for (o, b) in chunk.iter_mut().zip(bytes) {
                *o = b;
            }
        }
    }

    /// A random version-4 UUID in its usual text form (Genesys correlation ids look like this).
    pub(crate) fn uuid(&mut self) -> String {
        let mut b = [0_u8; 16];
        self.fill(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        format_uuid(b)
    }
}

/// Formats 16 bytes as `8-4-4-4-12` lowercase hex.
pub(crate) fn format_uuid(b: [u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// Whole seconds, rounded up: what `Retry-After` and `inin-ratelimit-reset` carry. A wait that
/// is not over is never announced as 0.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs();
    if d.subsec_nanos() > 0 { secs.saturating_add(1) } else { secs }
}

/// `Retry-After` value for a wait: whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    ceil_secs(d).max(1)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// ISO-8601 UTC with milliseconds, the form Genesys uses (`2024-05-06T07:08:09.010Z`).
pub(crate) fn iso8601(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if m <= 2 { y + 1 } else { y };
    (year, u32::try_from(m).unwrap_or(1), u32::try_from(d).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(iso8601(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(Duration::from_millis(951_782_400_007)), "2000-02-29T00:00:00.007Z");
        assert_eq!(iso8601(Duration::from_secs(1_715_000_000)), "2024-05-06T12:53:20.000Z");
    }

    #[test]
    fn ceil_and_retry_after() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1000)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
    }

    #[test]
    fn uuid_shape_and_seeded_determinism() {
        let a = SplitMix64::new(7).uuid();
        assert_eq!(a, SplitMix64::new(7).uuid());
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        let f = SplitMix64::new(1).next_f64();
        assert!((0.0..1.0).contains(&f));
    }
}
