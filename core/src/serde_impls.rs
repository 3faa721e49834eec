//! The `serde` feature's hand-written impls: durations in a human form, correlation ids as
//! text. Everything else derives (`cfg_attr` lines beside each type).
//!
//! A [`Duration`] is a string: a whole number and one unit, `ms`, `s`, `m`, `h` or `d`
//! (`"250ms"`, `"90s"`, `"5m"`, `"2h"`, `"7d"`), or `"forever"`. Serialized with the largest
//! unit that divides it exactly (`90000` ms is `"90s"`, `3600000` ms is `"1h"`), so what is
//! written reads back the same. A bare number is refused: without a unit, seconds and
//! milliseconds are too easily confused.
//!
//! An [`Instant`](crate::Instant) is a number: milliseconds on the adapter's monotonic clock
//! (since the session started, for the std adapter), as in events.

use core::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::breaker::BreakerConfig;
use crate::classify::CorrelationId;
use crate::session::SessionConfig;
use crate::time::Duration;

/// The units, largest first: suffix and milliseconds.
const UNITS: [(&str, u64); 5] =
    [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ms = self.as_millis();
        if ms == u64::MAX {
            return serializer.serialize_str("forever");
        }
        let (unit, per) = UNITS
            .iter()
            .copied()
            .find(|&(_, per)| ms.is_multiple_of(per) && (ms != 0 || per == 1_000))
            .unwrap_or(("ms", 1));
        let mut buf = [0u8; 24];
        let text = write_number(&mut buf, ms.checked_div(per).unwrap_or(ms), unit);
        serializer.serialize_str(text)
    }
}

/// `n` in decimal followed by `unit`, in `buf` (20 digits and a two-letter unit fit in 24).
fn write_number<'b>(buf: &'b mut [u8; 24], mut n: u64, unit: &str) -> &'b str {
    let mut digits = [0u8; 20];
    let mut len = 0usize;
    loop {
        if let Some(slot) = digits.get_mut(len) {
            *slot = b'0'.saturating_add(u8::try_from(n % 10).unwrap_or(0));
        }
        len = len.saturating_add(1);
        n /= 10;
        if n == 0 || len == digits.len() {
            break;
        }
    }
    let mut at = 0usize;
    for &d in digits.get(..len).unwrap_or_default().iter().rev() {
        if let Some(slot) = buf.get_mut(at) {
            *slot = d;
        }
        at = at.saturating_add(1);
    }
    for &b in unit.as_bytes() {
        if let Some(slot) = buf.get_mut(at) {
            *slot = b;
        }
        at = at.saturating_add(1);
    }
    core::str::from_utf8(buf.get(..at).unwrap_or_default()).unwrap_or_default()
}

/// Reads `"90s"`, `"250ms"`, `"5m"`, `"2h"`, `"7d"` or `"forever"` (surrounding whitespace
/// ignored).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text == "forever" {
        return Ok(Duration::from_millis(u64::MAX));
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at_checked(digits).ok_or(DurationError::Malformed)?;
    if number.is_empty() {
        return Err(DurationError::Malformed);
    }
    let per =
        UNITS.iter().find(|(suffix, _)| *suffix == unit).map(|&(_, per)| per).ok_or(
            if unit.is_empty() { DurationError::NoUnit } else { DurationError::Malformed },
        )?;
    let n: u64 = number.parse().map_err(|_| DurationError::TooLarge)?;
    n.checked_mul(per)
        .filter(|&ms| ms != u64::MAX)
        .map(Duration::from_millis)
        .ok_or(DurationError::TooLarge)
}

/// Why a duration's text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DurationError {
    NoUnit,
    Malformed,
    TooLarge,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DurationError::NoUnit => {
                "a duration needs a unit: ms, s, m, h or d (\"90s\", \"250ms\")"
            }
            DurationError::Malformed => {
                "a duration is a whole number and a unit, ms, s, m, h or d (\"90s\", \"250ms\"), \
                 or \"forever\""
            }
            DurationError::TooLarge => "a duration too large to count in milliseconds",
        })
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"90s\", \"250ms\", \"5m\", \"2h\", \"7d\" or \"forever\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse_duration(text).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Duration, E> {
        Err(E::custom(DurationError::NoUnit))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Duration, E> {
        Err(E::custom(DurationError::NoUnit))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }
}

impl Serialize for CorrelationId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The patch of [`SessionConfig::token_breaker`](crate::session::SessionConfig): a field the
/// file leaves out keeps the *token* breaker's default (a 1 min `max_cooldown`), not the
/// [`BreakerConfig`] default a plain `serde(default)` would give it. (A field added to
/// `BreakerConfig` must be added here too, or a file naming it is refused.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakerPatch {
    consecutive_failures: Option<u32>,
    window: Option<u8>,
    min_calls: Option<u8>,
    failure_permille: Option<u16>,
    cooldown: Option<Duration>,
    max_cooldown: Option<Duration>,
    half_open_probes: Option<u8>,
}

/// Reads [`SessionConfig::token_breaker`](crate::session::SessionConfig) over its own default.
pub(crate) fn token_breaker<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BreakerConfig, D::Error> {
    let patch = BreakerPatch::deserialize(deserializer)?;
    let mut config = SessionConfig::default().token_breaker;
    let BreakerPatch {
        consecutive_failures,
        window,
        min_calls,
        failure_permille,
        cooldown,
        max_cooldown,
        half_open_probes,
    } = patch;
    config.consecutive_failures = consecutive_failures.unwrap_or(config.consecutive_failures);
    config.window = window.unwrap_or(config.window);
    config.min_calls = min_calls.unwrap_or(config.min_calls);
    config.failure_permille = failure_permille.unwrap_or(config.failure_permille);
    config.cooldown = cooldown.unwrap_or(config.cooldown);
    config.max_cooldown = max_cooldown.unwrap_or(config.max_cooldown);
    config.half_open_probes = half_open_probes.unwrap_or(config.half_open_probes);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_every_unit_and_write_back_the_same() {
        for (text, ms) in [
            ("250ms", 250),
            ("90s", 90_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("7d", 604_800_000),
            ("0s", 0),
            ("1500ms", 1_500),
            ("forever", u64::MAX),
        ] {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text}");
            let mut buf = [0u8; 24];
            let d = Duration::from_millis(ms);
            let written = if ms == u64::MAX {
                "forever"
            } else {
                let (unit, per) = UNITS
                    .iter()
                    .copied()
                    .find(|&(_, per)| ms % per == 0 && (ms != 0 || per == 1_000))
                    .unwrap();
                write_number(&mut buf, ms / per, unit)
            };
            assert_eq!(written, text);
            assert_eq!(parse_duration(written), Ok(d));
        }
        assert_eq!(parse_duration(" 90s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("60000ms"), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn a_duration_without_a_unit_or_past_u64_is_refused() {
        assert_eq!(parse_duration("90"), Err(DurationError::NoUnit));
        for bad in ["", "s", "1.5s", "-1s", "90 s", "90sec", "1e3ms", "ninety"] {
            assert_eq!(parse_duration(bad), Err(DurationError::Malformed), "{bad:?}");
        }
        assert_eq!(parse_duration("18446744073709551615d"), Err(DurationError::TooLarge));
        assert_eq!(parse_duration("99999999999999999999999s"), Err(DurationError::TooLarge));
    }
}
