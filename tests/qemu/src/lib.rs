//! # credflow-qemu
//!
//! credflow-core's own tests as a `no_std`, allocation-free suite that runs wherever the core
//! runs: on the host (`tests/host.rs`, part of `cargo test --workspace`) and on an emulated
//! Cortex-M4F (the `credflow-qemu` binary under `qemu-system-arm -machine mps2-an386`, run by
//! `scripts/qemu-test`).
//!
//! ## Why
//!
//! The core's unit tests need `std` and `proptest`, so they only ever run on the 64-bit host.
//! A device differs where bugs hide: `usize` is 32 bits, `u64` division and every `u128`
//! operation are software routines (`__aeabi_uldivmod`, `__udivti3`, `__multi3`), stacks are
//! small and nothing catches an overflow but the code itself. The checks here are the core's
//! known-answer vectors and scenarios, rewritten without `std`, with expected values that are
//! independent of the machine (RFC vectors, values computed by a reference implementation), so
//! a result that differs on the target fails there.
//!
//! ## What is checked
//!
//! | area | covers |
//! |---|---|
//! | `arch` | `u64`/`u128` arithmetic at its limits, SplitMix64 and FNV-1a known answers, fingerprints |
//! | `time` | saturating `Instant`/`Duration`/`UnixTime` arithmetic, display, wall-clock mapping |
//! | `secret` | credential and token bounds, redaction |
//! | `oauth` | RFC 6749 §2.3.1 Basic, form encoding, §4.4.2 request bytes, RFC 7515 A.1 HS256, `client_secret_jwt`, token and error responses including hostile bodies |
//! | `http` | HTTP-dates (RFC 9110 §5.6.7) with a round-trip sweep, `Retry-After`, Genesys error bodies, URLs, `WWW-Authenticate`, response classification, environments |
//! | `ratelimit` | every header dialect, epoch resets, the pacer's spacing, reserve, exhaustion and 429 |
//! | `retry` | backoff bounds, the retry budget, retry decisions |
//! | `breaker` | trips, cooldown doubling, half-open probes, the 64-outcome window |
//! | `snapshot` | sealed snapshot bytes, round trip at every alignment, tamper rejection |
//! | `session` | a virtual-time timeline (token, refresh ahead of expiry, 401, 429, 5xx backoff, breaker), outages, rejection, reboot |
//!
//! ## Writing a check
//!
//! A check is a `fn() -> Result<(), Failure>` registered in [`CHECKS`]. It must not panic (a
//! panic on the target ends the whole run) and must not allocate; `ensure!`, `ensure_eq!`,
//! `ensure_matches!`, `some!` and `ok!` return a [`Failure`] naming the file, line and
//! expression, with the values when they are printable. Keep stack frames modest: sessions use
//! small capacities (`Session<256, 2>`, see [`footprint`]).

#![no_std]
#![forbid(unsafe_code)]
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::todo
)]
// A `Failure` carries the compared values (a few hundred bytes) so that a check failing only on
// the target says why; there is no allocator to box it into, and it is returned once per check.
#![allow(clippy::result_large_err)]

use core::fmt::{self, Write as _};

#[macro_use]
mod macros;
mod checks;

/// Bytes of a [`Failure`]'s detail (the values of a failed comparison); longer text is cut.
pub const DETAIL_CAPACITY: usize = 192;

/// Why a check failed: where, which expectation, and the values involved when printable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The expectation that did not hold, as written in the source.
    pub expectation: &'static str,
    /// The source file of the expectation.
    pub file: &'static str,
    /// Its line.
    pub line: u32,
    /// The values compared (`Debug`), cut to [`DETAIL_CAPACITY`] bytes; may be empty.
    pub detail: heapless::String<DETAIL_CAPACITY>,
}

impl Failure {
    /// A failure of `expectation` at `file:line`, without detail.
    pub fn new(expectation: &'static str, file: &'static str, line: u32) -> Self {
        Failure { expectation, file, line, detail: heapless::String::new() }
    }

    /// Adds the values involved (best effort: what does not fit is dropped).
    #[must_use]
    pub fn with_detail(mut self, detail: fmt::Arguments<'_>) -> Self {
        let _ = self.detail.write_fmt(detail);
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: expected {}", self.file, self.line, self.expectation)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// What a check returns.
pub type CheckResult = Result<(), Failure>;

/// One named check.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    /// The area it belongs to (`oauth`, `session`, …).
    pub area: &'static str,
    /// Its name within the area.
    pub name: &'static str,
    /// The check itself.
    pub run: fn() -> CheckResult,
}

/// The outcome of one check, handed to the reporter as soon as it is known.
#[derive(Debug)]
pub struct Outcome<'a> {
    /// The check that ran.
    pub check: &'a Check,
    /// Its result.
    pub result: &'a CheckResult,
}

/// Counts of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Checks that passed.
    pub passed: u32,
    /// Checks that failed.
    pub failed: u32,
}

impl Summary {
    /// Whether every check passed (and at least one ran).
    pub const fn success(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }
}

impl fmt::Display for Summary {
    /// `N passed, N failed`: the closing line test runners and CI recognise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// Every check of the suite, in the order they run.
pub const CHECKS: &[Check] = checks::ALL;

/// Runs every check in [`CHECKS`], reporting each outcome as it is known.
///
/// With the `canary` feature a deliberately failing check runs last, to prove that a failure
/// reaches the exit status.
pub fn run(report: &mut dyn FnMut(&Outcome<'_>)) -> Summary {
    let summary = run_checks(CHECKS, report);
    #[cfg(feature = "canary")]
    let summary = {
        let canary = run_checks(&[checks::CANARY], report);
        Summary {
            passed: summary.passed.saturating_add(canary.passed),
            failed: summary.failed.saturating_add(canary.failed),
        }
    };
    summary
}

/// Runs `checks` in order, reporting each outcome as it is known.
pub fn run_checks(checks: &[Check], report: &mut dyn FnMut(&Outcome<'_>)) -> Summary {
    let mut summary = Summary::default();
    for check in checks {
        let result = (check.run)();
        match result {
            Ok(()) => summary.passed = summary.passed.saturating_add(1),
            Err(_) => summary.failed = summary.failed.saturating_add(1),
        }
        report(&Outcome { check, result: &result });
    }
    summary
}

/// Sizes in bytes of the core's larger types with the capacities the suite uses, as compiled
/// for the running target (a session is the largest value a caller keeps).
pub fn footprint() -> [(&'static str, usize); 6] {
    use core::mem::size_of;
    use credflow_core::oauth::{OAuthError, TokenResponse};
    use credflow_core::session::{Session, Verdict};
    [
        ("usize", size_of::<usize>()),
        ("Session<256, 2>", size_of::<Session<256, 2>>()),
        ("Session<2048, 4> (default)", size_of::<Session>()),
        ("TokenResponse<256>", size_of::<TokenResponse<256>>()),
        ("OAuthError", size_of::<OAuthError>()),
        ("Verdict", size_of::<Verdict>()),
    ]
}

/// Formats `value` into a fixed buffer (text that does not fit is cut at a fragment boundary).
pub(crate) fn shown<const N: usize>(value: impl fmt::Display) -> heapless::String<N> {
    let mut out = heapless::String::new();
    let _ = write!(out, "{value}");
    out
}
