//! Rate limits (`core/src/ratelimit/`): every header dialect into one snapshot, and the pacer
//! (GCRA spacing, priority reserve, exhaustion, 429) whose arithmetic is `u128`.

use credflow_core::ratelimit::headers::{
    EPOCH_THRESHOLD, MAX_EPOCH_HORIZON, parse_rate_limit, reset_delay,
};
use credflow_core::ratelimit::pacer::{Pace, PaceReason, Pacer, PacerConfig, Priority};
use credflow_core::ratelimit::{Dialect, RateLimitSnapshot};
use credflow_core::{Duration, Instant, UnixTime};

use crate::CheckResult;

const NOW: UnixTime = UnixTime::from_secs(1_792_152_841);
const T0: Instant = Instant::from_secs(1_000);

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn snap(limit: u64, remaining: u64, reset_s: u64) -> RateLimitSnapshot {
    RateLimitSnapshot {
        limit: Some(limit),
        remaining: Some(remaining),
        reset_after: secs(reset_s),
        window: secs(60),
        dialect: Dialect::Genesys,
    }
}

fn pacer(burst: u32) -> Pacer {
    Pacer::new(PacerConfig { burst, burst_permille: 0, ..PacerConfig::default() })
}

/// Genesys Cloud's `inin-ratelimit-*`: used count and limit give what remains.
pub(crate) fn genesys_dialect() -> CheckResult {
    let h = [
        ("inin-ratelimit-count", "1"),
        ("inin-ratelimit-allowed", "180"),
        ("inin-ratelimit-reset", "61"),
    ];
    ensure_eq!(
        parse_rate_limit(&h, None),
        Some(RateLimitSnapshot {
            limit: Some(180),
            remaining: Some(179),
            reset_after: secs(61),
            window: None,
            dialect: Dialect::Genesys
        })
    );
    let over = [("ININ-RateLimit-Count", "200"), ("ININ-RateLimit-Allowed", "180")];
    ensure_eq!(parse_rate_limit(&over, None).and_then(|s| s.remaining), Some(0));
    ensure_eq!(parse_rate_limit(&[("inin-ratelimit-count", "5")], None), None);
    Ok(())
}

/// Epoch resets (seconds and milliseconds) become delays against a reference, bounded by a
/// horizon; values past 2^32 are the normal case here, not an overflow.
pub(crate) fn epoch_resets() -> CheckResult {
    let h = [
        ("X-RateLimit-Limit", "5000"),
        ("X-RateLimit-Remaining", "0"),
        ("X-RateLimit-Reset", "1792152901"),
    ];
    let s = some!(parse_rate_limit(&h, Some(NOW)));
    ensure_eq!(
        (s.limit, s.remaining, s.reset_after, s.dialect),
        (Some(5000), Some(0), secs(60), Dialect::XRateLimit)
    );
    ensure_eq!(some!(parse_rate_limit(&h, None)).reset_after, None);
    ensure_eq!(
        some!(parse_rate_limit(&h, Some(UnixTime::from_secs(1_792_152_900)))).reset_after,
        secs(1)
    );
    ensure_eq!(
        some!(parse_rate_limit(&h, Some(UnixTime::from_secs(1_792_152_901)))).reset_after,
        secs(0)
    );
    ensure_eq!(reset_delay(EPOCH_THRESHOLD - 1, None), secs(EPOCH_THRESHOLD - 1));
    ensure_eq!(reset_delay(EPOCH_THRESHOLD, None), None);
    ensure_eq!(reset_delay(1_792_152_901_000, Some(NOW)), secs(60));
    ensure_eq!(reset_delay(1_792_152_901_999, Some(NOW)), secs(60));
    let horizon = MAX_EPOCH_HORIZON.as_secs();
    ensure_eq!(reset_delay(NOW.as_secs() + horizon, Some(NOW)), secs(horizon));
    ensure_eq!(reset_delay(NOW.as_secs() + horizon + 1, Some(NOW)), None);
    ensure_eq!(reset_delay(u64::MAX, Some(NOW)), None);
    Ok(())
}

/// The IETF drafts' separate, combined (-07) and structured (-08+) fields, and precedence.
pub(crate) fn ietf_dialects() -> CheckResult {
    let h = [
        ("RateLimit-Limit", "10, 10;w=1, 50;w=60"),
        ("RateLimit-Remaining", "3"),
        ("RateLimit-Reset", "5"),
    ];
    let s = some!(parse_rate_limit(&h, None));
    ensure_eq!(
        (s.limit, s.remaining, s.reset_after, s.dialect),
        (Some(10), Some(3), secs(5), Dialect::IetfSeparate)
    );
    let h = [("RateLimit", "remaining=0,reset=30"), ("RateLimit-Policy", "10;w=1, 100;w=60")];
    let s = some!(parse_rate_limit(&h, None));
    ensure_eq!(
        (s.limit, s.remaining, s.reset_after, s.window, s.dialect),
        (Some(10), Some(0), secs(30), secs(1), Dialect::IetfCombined)
    );
    let h = [
        ("RateLimit", r#""burst";r=50;t=30, "daily";r=5;t=86000"#),
        ("RateLimit-Policy", r#""burst";q=100;w=60, "daily";q=1000;w=86400"#),
    ];
    ensure_eq!(
        parse_rate_limit(&h, Some(NOW)),
        Some(RateLimitSnapshot {
            limit: Some(1000),
            remaining: Some(5),
            reset_after: secs(86_000),
            window: secs(86_400),
            dialect: Dialect::IetfStructured
        })
    );
    for bad in
        [r#""default";r=50;t=30,"#, r#""default";r=1234567890123456"#, r#""d";r=-1"#, "(a b;r=1"]
    {
        let h = [("RateLimit", bad), ("X-RateLimit-Remaining", "7")];
        let s = some!(parse_rate_limit(&h, None));
        ensure!((s.remaining, s.dialect) == (Some(7), Dialect::XRateLimit), "{bad:?}: {s:?}");
    }
    let all = [
        ("x-rate-limit-remaining", "1"),
        ("x-ratelimit-remaining", "2"),
        ("inin-ratelimit-allowed", "3"),
        ("ratelimit-remaining", "4"),
        ("ratelimit", r#""p";r=5"#),
    ];
    ensure_eq!(some!(parse_rate_limit(&all, None)).dialect, Dialect::IetfStructured);
    let h = [("x-ratelimit-limit", "99999999999999999999999"), ("x-ratelimit-remaining", " 12 ")];
    let s = some!(parse_rate_limit(&h, None));
    ensure_eq!((s.limit, s.remaining), (Some(u64::MAX), Some(12)));
    for junk in ["", "ten", "-1", "12.5", "1e3"] {
        ensure!(parse_rate_limit(&[("x-ratelimit-remaining", junk)], None).is_none(), "{junk:?}");
    }
    Ok(())
}

/// What is left is spread until the reset, exactly (T-1 waits, T goes); a burst goes first.
pub(crate) fn pacer_spacing_and_burst() -> CheckResult {
    let mut p = pacer(1);
    p.observe(T0, &snap(60, 60, 60));
    p.on_send(T0, Priority::Normal);
    let next = T0 + Duration::from_secs(1);
    ensure_eq!(
        p.check(next - ms(1), Priority::Normal),
        Pace::NotBefore { at: next, reason: PaceReason::Spacing }
    );
    ensure_eq!(p.check(next - ms(1), Priority::Critical), Pace::Now);
    ensure_eq!(p.check(next, Priority::Normal), Pace::Now);
    p.on_send(next, Priority::Normal);
    ensure_eq!(
        p.check(next, Priority::Normal),
        Pace::NotBefore { at: next + ms(1000), reason: PaceReason::Spacing }
    );
    let mut p = pacer(4);
    p.observe(T0, &snap(60, 60, 60));
    for _ in 0..4 {
        ensure_eq!(p.check(T0, Priority::Normal), Pace::Now);
        p.on_send(T0, Priority::Normal);
    }
    ensure_eq!(
        p.check(T0, Priority::Normal),
        Pace::NotBefore { at: T0 + ms(946), reason: PaceReason::Spacing }
    );
    Ok(())
}

/// The critical reserve shrinks linearly to the reset; Background leaves more.
pub(crate) fn pacer_reserve() -> CheckResult {
    let mut p = pacer(1);
    p.observe(T0, &snap(100, 10, 60));
    ensure_eq!(p.check(T0, Priority::Critical), Pace::Now);
    let at = T0 + Duration::from_secs(6);
    ensure_eq!(p.check(T0, Priority::Normal), Pace::NotBefore { at, reason: PaceReason::Reserve });
    ensure_eq!(
        p.check(at - ms(1), Priority::Normal),
        Pace::NotBefore { at, reason: PaceReason::Reserve }
    );
    ensure_eq!(p.check(at, Priority::Normal), Pace::Now);
    let at = T0 + Duration::from_secs(42);
    ensure_eq!(
        p.check(T0, Priority::Background),
        Pace::NotBefore { at, reason: PaceReason::Reserve }
    );
    ensure_eq!(p.check(at, Priority::Background), Pace::Now);
    Ok(())
}

/// Exhausted: everyone waits for the reset, then a full window is assumed (window arithmetic
/// with divisions of `u64` milliseconds).
pub(crate) fn pacer_exhaustion_and_429() -> CheckResult {
    let mut p = pacer(1);
    p.observe(T0, &snap(100, 1, 30));
    p.on_send(T0, Priority::Critical);
    let reset = T0 + Duration::from_secs(30);
    for prio in [Priority::Critical, Priority::Normal, Priority::Background] {
        ensure_eq!(
            p.check(reset - ms(1), prio),
            Pace::NotBefore { at: reset, reason: PaceReason::Exhausted }
        );
        ensure_eq!(p.check(reset, prio), Pace::Now);
    }
    ensure_eq!(p.remaining(reset + Duration::from_secs(125)), Some(100));
    p.on_send(reset + Duration::from_secs(125), Priority::Normal);
    ensure_eq!(p.remaining(reset + ms(179_999)), Some(99));
    ensure_eq!(p.remaining(reset + Duration::from_secs(180)), Some(100));
    let mut p = pacer(1);
    p.observe(T0, &snap(100, 50, 30));
    p.on_rate_limited(T0, secs(42));
    p.on_rate_limited(T0, secs(2));
    let until = T0 + Duration::from_secs(42);
    ensure_eq!(
        p.check(until - ms(1), Priority::Critical),
        Pace::NotBefore { at: until, reason: PaceReason::Backoff429 }
    );
    ensure_eq!(p.check(until, Priority::Critical), Pace::Now);
    let mut p = pacer(1);
    p.on_rate_limited(T0, None);
    ensure_eq!(
        p.check(T0, Priority::Critical),
        Pace::NotBefore { at: T0 + Duration::from_secs(1), reason: PaceReason::Backoff429 }
    );
    // Far in the future, near `Instant::MAX`: saturates instead of wrapping.
    let late = Instant::from_millis(u64::MAX - 5_000);
    let mut p = pacer(1);
    p.observe(late, &snap(10, 0, 60));
    ensure_eq!(
        p.check(late, Priority::Critical),
        Pace::NotBefore { at: Instant::MAX, reason: PaceReason::Exhausted }
    );
    Ok(())
}
