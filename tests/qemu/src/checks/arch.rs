//! Where a 32-bit target computes differently: 64- and 128-bit arithmetic in software routines,
//! hashing, and `usize`-sized bounds. Expected values come from a reference implementation
//! (Python's arbitrary-precision integers, `hmac`, `hashlib`) or the algorithm's published
//! vectors, never from the host build of the core.

use credflow_core::rng::Rng;
use credflow_core::secret::{AccessToken, Credentials};
use credflow_core::session::HostKey;
use credflow_core::snapshot;
use credflow_core::{Duration, Instant};

use crate::{CheckResult, shown};

/// `u64` division (the core's own: one 32-bit division when both operands fit, else
/// shift-and-subtract; `__aeabi_uldivmod` in `Display`) and the `u128` product at the edges,
/// through `Duration`'s ratio, rounding and display.
pub(crate) fn wide_arithmetic_at_the_limits() -> CheckResult {
    let max = Duration::MAX;
    ensure_eq!(max.mul_ratio(u64::MAX, u64::MAX), max);
    ensure_eq!(max.mul_ratio(1, 3), Duration::from_millis(6_148_914_691_236_517_205));
    ensure_eq!(max.mul_ratio(2, 1), max);
    ensure_eq!(max.mul_ratio(1, 0), max);
    ensure_eq!(
        Duration::from_millis(1_000_000_007).mul_ratio(999_999_937, 1_000_000_009),
        Duration::from_millis(999_999_935)
    );
    ensure_eq!(
        Duration::from_millis(1_000_000_000_000).mul_permille(u16::MAX),
        Duration::from_millis(65_535_000_000_000)
    );
    ensure_eq!(max.mul_permille(1001), max);
    ensure_eq!(max.as_secs(), 18_446_744_073_709_551);
    ensure_eq!(max.as_secs_ceil(), 18_446_744_073_709_552);
    ensure_eq!(Duration::from_millis(1).as_secs_ceil(), 1);
    ensure_eq!(Duration::from_millis(4_294_967_296_001).as_secs_ceil(), 4_294_967_297);
    let almost = Duration::from_millis(u64::MAX - 1);
    ensure_eq!(shown::<32>(almost).as_str(), "5124095576030h25m");
    ensure_eq!(
        shown::<32>(Instant::from_millis(u64::MAX - 1)).as_str(),
        "T+18446744073709551.614s"
    );
    ensure_eq!(shown::<32>(Duration::from_millis(4_294_967_295)).as_str(), "1193h02m");
    Ok(())
}

/// SplitMix64's published vector (seed 1234567) and Lemire's reduction `(x × bound) >> 64`.
pub(crate) fn splitmix64_known_answers() -> CheckResult {
    let mut rng = Rng::new(1_234_567);
    let expected: [u64; 5] = [
        6_457_827_717_110_365_317,
        3_203_168_211_198_807_973,
        9_817_491_932_198_370_423,
        4_593_380_528_125_082_431,
        16_408_922_859_458_223_821,
    ];
    for value in expected {
        ensure_eq!(rng.next_u64(), value);
    }
    let mut rng = Rng::new(42);
    let bounds = [1, 10, 1000, (1u64 << 32) + 15, u64::MAX];
    let reduced = [0, 1, 278, 1_478_287_876, 701_532_786_141_963_249];
    for (bound, value) in bounds.into_iter().zip(reduced) {
        ensure_eq!(rng.below(bound), value);
    }
    ensure_eq!(Rng::new(9).below(0), 0);
    let mut bytes = [0u8; 13];
    Rng::new(7).fill_bytes(&mut bytes);
    ensure_eq!(bytes, [215, 13, 50, 89, 228, 225, 203, 99, 28, 102, 60, 244, 215]);
    Ok(())
}

/// `HostKey` is FNV-1a 64 over the lowercased host: the same key on every target, so a key
/// computed on one machine names the same breaker on another.
pub(crate) fn fnv1a_host_keys() -> CheckResult {
    ensure_eq!(HostKey::from_host(""), HostKey(0xcbf2_9ce4_8422_2325));
    ensure_eq!(HostKey::from_host("api.mypurecloud.com"), HostKey(0x53d3_f987_d24f_ddf7));
    ensure_eq!(
        HostKey::from_host("API.MyPureCloud.com"),
        HostKey::from_host("api.mypurecloud.com")
    );
    Ok(())
}

/// Fingerprints are HMAC-SHA256 over length-prefixed parts (big-endian `u64` lengths, whatever
/// `usize` is), cut to 6 bytes; a fleet of mixed machines must agree on them.
pub(crate) fn fingerprints_known_answers() -> CheckResult {
    let creds = ok!(Credentials::from_strs("my-client", "s3cr3t-value"));
    ensure_eq!(creds.fingerprint().as_bytes(), [0xd0, 0xc9, 0xca, 0xf3, 0x5f, 0x17]);
    ensure_eq!(shown::<16>(creds.fingerprint()).as_str(), "fp:d0c9caf35f17");
    let token = ok!(AccessToken::<64>::new("tok-abcdef123456"));
    ensure_eq!(token.fingerprint().as_bytes(), [0xeb, 0x20, 0xe2, 0x08, 0x31, 0x29]);
    Ok(())
}

/// Sizes near `usize::MAX` (4 GiB here, 16 EiB on the host) saturate instead of wrapping.
pub(crate) fn usize_bounds_saturate() -> CheckResult {
    ensure_eq!(snapshot::sealed_len(usize::MAX), usize::MAX);
    ensure_eq!(snapshot::sealed_len(usize::MAX - snapshot::OVERHEAD), usize::MAX);
    ensure_eq!(snapshot::sealed_len(usize::MAX - snapshot::OVERHEAD - 1), usize::MAX - 1);
    ensure_eq!(snapshot::sealed_len(0), snapshot::OVERHEAD);
    ensure_eq!(snapshot::OVERHEAD, 54);
    Ok(())
}
