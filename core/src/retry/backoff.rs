//! *When* to retry: capped exponential backoff with full jitter.
//!
//! The `n`-th retry (counting from 0) waits a uniformly random time in `[0, ceiling(n)]`, where
//! `ceiling(n) = min(cap, base × multiplier^n)`. This is AWS's "full jitter" (Marc Brooker,
//! *Exponential Backoff And Jitter*, 2015): of the schemes compared there it finishes a contended
//! workload with the fewest calls, because clients that failed together spread out over the
//! whole interval instead of retrying in lock-step. The reference guide's fixed 0.5 s between
//! its 3 retries is exactly that lock-step.
//!
//! A server-stated `Retry-After` takes precedence over this schedule; see
//! [`RetryPolicy`](super::policy::RetryPolicy).
//!
//! ```
//! use credflow_core::retry::backoff::Backoff;
//! use credflow_core::rng::Rng;
//! use credflow_core::Duration;
//!
//! let backoff = Backoff::default(); // 500 ms × 2^n, capped at 30 s
//! assert_eq!(backoff.ceiling(0), Duration::from_millis(500));
//! assert_eq!(backoff.ceiling(3), Duration::from_secs(4));
//! assert_eq!(backoff.ceiling(40), Duration::from_secs(30));
//! let wait = backoff.delay(3, &mut Rng::new(7));
//! assert!(wait <= Duration::from_secs(4));
//! ```

use core::fmt;

use crate::rng::Rng;
use crate::time::{Duration, mul_sat};

/// Capped exponential backoff with full jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Backoff {
    /// Ceiling of the first retry's wait. Default 500 ms (the reference guide's fixed delay).
    pub base: Duration,
    /// Largest ceiling, whatever the retry number. Default 30 s.
    pub cap: Duration,
    /// Growth of the ceiling per retry. Default 2.
    pub multiplier: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(30), multiplier: 2 }
    }
}

impl Backoff {
    /// Checks the configuration once, where it is built.
    ///
    /// Every configuration is *safe* to use (nothing panics or overflows), but these are
    /// almost certainly mistakes.
    pub fn validate(&self) -> Result<(), BackoffError> {
        if self.base.is_zero() {
            Err(BackoffError::ZeroBase)
        } else if self.base > self.cap {
            Err(BackoffError::BaseAboveCap { base: self.base, cap: self.cap })
        } else if self.multiplier == 0 {
            Err(BackoffError::ZeroMultiplier)
        } else {
            Ok(())
        }
    }

    /// The longest wait before retry number `retry` (0 for the first retry):
    /// `min(cap, base × multiplier^retry)`, saturating, for any `retry` up to `u32::MAX`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        // Exponentiation by squaring, saturating, with the one out-of-line saturating product.
        let (mut factor, mut power, mut exponent) = (1u64, u64::from(self.multiplier), retry);
        while exponent > 0 {
            if exponent & 1 == 1 {
                factor = mul_sat(factor, power);
            }
            power = mul_sat(power, power);
            exponent >>= 1;
        }
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A wait before retry number `retry`, uniform in `[0, ceiling(retry)]` (both ends
    /// included), drawn from `rng`. Never longer than [`cap`](Self::cap).
    pub fn delay(&self, retry: u32, rng: &mut Rng) -> Duration {
        let ceiling = self.ceiling(retry).as_millis();
        Duration::from_millis(rng.below(ceiling.saturating_add(1)))
    }
}

/// A [`Backoff`] configuration that is almost certainly a mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BackoffError {
    /// `base` is zero: every retry would be immediate, hammering a server that just failed.
    ZeroBase,
    /// `base` is longer than `cap`: the cap wins from the first retry, so the backoff does not
    /// grow; probably the two were swapped or given in different units.
    BaseAboveCap {
        /// The configured base.
        base: Duration,
        /// The configured cap.
        cap: Duration,
    },
    /// `multiplier` is zero: every retry after the first would wait zero.
    ZeroMultiplier,
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackoffError::ZeroBase => {
                f.write_str("backoff base is zero: retries would hammer a failing server")
            }
            BackoffError::BaseAboveCap { base, cap } => {
                write!(f, "backoff base {base} exceeds cap {cap}: swapped values or mixed units?")
            }
            BackoffError::ZeroMultiplier => {
                f.write_str("backoff multiplier is zero: use 1 for a constant backoff")
            }
        }
    }
}

impl core::error::Error for BackoffError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn default_doubles_from_half_a_second_to_thirty() {
        let b = Backoff::default();
        assert_eq!(b.validate(), Ok(()));
        let ceilings: [u64; 8] = core::array::from_fn(|n| b.ceiling(n as u32).as_millis());
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    }

    #[test]
    fn ceiling_saturates_without_overflow() {
        let huge = Backoff { base: Duration::MAX, cap: Duration::MAX, multiplier: u32::MAX };
        assert_eq!(huge.ceiling(u32::MAX), Duration::MAX);
        assert_eq!(huge.ceiling(0), Duration::MAX);
        let b = Backoff { base: ms(1), cap: Duration::MAX, multiplier: 2 };
        assert_eq!(b.ceiling(63), ms(1 << 63));
        assert_eq!(b.ceiling(64), Duration::MAX);
        assert_eq!(Backoff::default().ceiling(u32::MAX), Duration::from_secs(30));
        let constant = Backoff { multiplier: 1, ..Backoff::default() };
        assert_eq!(constant.ceiling(u32::MAX), ms(500));
        let zero = Backoff { multiplier: 0, ..Backoff::default() };
        assert_eq!((zero.ceiling(0), zero.ceiling(1)), (ms(500), Duration::ZERO));
        assert_eq!(zero.validate(), Err(BackoffError::ZeroMultiplier));
    }

    #[test]
    fn delay_reaches_both_ends_of_the_interval() {
        let b = Backoff { base: ms(3), cap: ms(3), multiplier: 2 };
        let mut rng = Rng::new(1);
        let mut seen = [false; 4];
        for _ in 0..200 {
            let d = b.delay(0, &mut rng).as_millis();
            seen[usize::try_from(d).unwrap()] = true;
        }
        assert_eq!(seen, [true; 4]);
        let max = Backoff { base: Duration::MAX, cap: Duration::MAX, multiplier: 2 };
        assert!(max.delay(5, &mut rng) <= Duration::MAX);
        let none = Backoff { base: Duration::ZERO, ..Backoff::default() };
        assert_eq!(none.delay(9, &mut rng), Duration::ZERO);
    }

    #[test]
    fn validate_names_the_mistake() {
        extern crate std;
        use std::string::ToString;
        let swapped = Backoff { base: Duration::from_secs(30), cap: ms(500), multiplier: 2 };
        let err = swapped.validate().unwrap_err();
        assert_eq!(err, BackoffError::BaseAboveCap { base: Duration::from_secs(30), cap: ms(500) });
        assert!(err.to_string().contains("30s exceeds cap 500ms"));
        let zero = Backoff { base: Duration::ZERO, ..Backoff::default() };
        assert_eq!(zero.validate(), Err(BackoffError::ZeroBase));
    }

    proptest! {
        /// The squaring loop against the textbook: `min(cap, base × multiplier^retry)` with
        /// the standard library's saturating power.
        #[test]
        fn ceiling_is_the_saturating_power(
            base in prop_oneof![0u64..10_000, any::<u64>()],
            cap in any::<u64>(),
            multiplier in prop_oneof![0u32..5, any::<u32>()],
            retry in prop_oneof![0u32..70, any::<u32>()],
        ) {
            let b = Backoff { base: ms(base), cap: ms(cap), multiplier };
            let factor = u64::from(multiplier).saturating_pow(retry);
            prop_assert_eq!(b.ceiling(retry), ms(base.saturating_mul(factor).min(cap)));
        }

        #[test]
        fn delay_within_ceiling_and_cap(
            base in 0u64..=u64::MAX, cap in 0u64..=u64::MAX, multiplier in any::<u32>(),
            retry in any::<u32>(), seed in any::<u64>(),
        ) {
            let b = Backoff { base: ms(base), cap: ms(cap), multiplier };
            let d = b.delay(retry, &mut Rng::new(seed));
            prop_assert!(d <= b.ceiling(retry));
            prop_assert!(d <= b.cap);
        }

        #[test]
        fn ceiling_never_shrinks_with_more_retries(
            base in 1u64..10_000, cap in 1u64..100_000_000, multiplier in 1u32..10, retry in 0u32..100,
        ) {
            let b = Backoff { base: ms(base), cap: ms(cap), multiplier };
            prop_assert!(b.ceiling(retry) <= b.ceiling(retry + 1));
        }
    }
}
