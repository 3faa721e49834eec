//! Caller-seeded randomness for jitter and JWT ids.
//!
//! The core never reads a random source. Adapters seed a [`Rng`] once (from the OS, a hardware
//! RNG, or a fixed seed in tests and simulations) and the core draws from it deterministically,
//! so the same seed and the same inputs give the same decisions: replayable, testable timelines.
//!
//! The generator is SplitMix64: tiny, fast, passes BigCrush, and entirely adequate for jitter.
//! It is **not** a cryptographic generator, and nothing it feeds needs one: jitter needs spread,
//! and the `jti` of a `client_secret_jwt` assertion needs uniqueness, which the session gets
//! from this generator and a counter (see [`oauth::jwt`](crate::oauth::jwt)). Keys and secrets
//! never come from it.

use crate::time::Duration;

/// A small deterministic pseudo-random generator (SplitMix64).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole future output is determined by `seed`.
    pub const fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value uniformly distributed in `[0, bound)`; `0` when `bound` is zero.
    ///
    /// Uses Lemire's multiply-shift reduction; the bias for 64-bit bounds below 2^32 is
    /// immeasurably small for jitter purposes.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let wide = u128::from(self.next_u64()).wrapping_mul(u128::from(bound));
        u64::try_from(wide >> 64).unwrap_or(0)
    }

    /// A duration uniformly distributed in `[0, max)` ("full jitter"); zero when `max` is zero.
    pub fn duration_below(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.below(max.as_millis()))
    }

    /// Fills `out` with random bytes.
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            for (o, b) in chunk.iter_mut().zip(v.iter()) {
                *o = *b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_bounded() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..1000 {
            let x = a.below(1000);
            assert_eq!(x, b.below(1000));
            assert!(x < 1000);
        }
        assert_eq!(a.below(0), 0);
        assert_eq!(a.duration_below(Duration::ZERO), Duration::ZERO);
        let mut buf = [0u8; 13];
        a.fill_bytes(&mut buf);
        assert!(buf.iter().any(|&x| x != 0));
    }

    #[test]
    fn roughly_uniform() {
        let mut r = Rng::new(7);
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            let i = usize::try_from(r.below(10)).unwrap();
            buckets[i] += 1;
        }
        assert!(buckets.iter().all(|&n| (800..1200).contains(&n)), "{buckets:?}");
    }
}
