//! Runs the self-test suite on the host, so it is part of `cargo test --workspace`: a check that
//! fails here fails CI before the target is tried, and one that fails only on the target points
//! at the target.

// `CheckResult` is the suite's check signature (see the crate root for why it is large).
#![allow(clippy::result_large_err)]

use credflow_qemu::{
    CHECKS, Check, CheckResult, Failure, Outcome, Summary, footprint, run, run_checks,
};

#[test]
#[cfg_attr(feature = "canary", ignore = "the canary check fails on purpose")]
fn every_check_passes_on_the_host() {
    let mut failures = Vec::new();
    let summary = run(&mut |o: &Outcome<'_>| {
        if let Err(f) = o.result {
            failures.push(format!("{}::{}: {f}", o.check.area, o.check.name));
        }
    });
    for (name, bytes) in footprint() {
        eprintln!("size_of {name}: {bytes} bytes");
    }
    eprintln!("{summary}");
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(usize::try_from(summary.passed).unwrap(), CHECKS.len());
    assert!(summary.success());
}

fn passes() -> CheckResult {
    Ok(())
}

fn fails() -> CheckResult {
    let expected = 1001u64;
    if expected != 1000 {
        return Err(Failure::new("1000 == expected", file!(), line!())
            .with_detail(format_args!("left {}, right {expected}", 1000)));
    }
    Ok(())
}

#[test]
fn failures_are_counted_reported_and_fail_the_run() {
    let checks = [
        Check { area: "t", name: "passes", run: passes },
        Check { area: "t", name: "fails", run: fails },
        Check { area: "t", name: "passes_too", run: passes },
    ];
    let mut seen = Vec::new();
    let summary = run_checks(&checks, &mut |o: &Outcome<'_>| {
        seen.push((o.check.name, o.result.as_ref().err().map(ToString::to_string)));
    });
    assert_eq!(summary, Summary { passed: 2, failed: 1 });
    assert!(!summary.success());
    assert_eq!(summary.to_string(), "2 passed, 1 failed");
    assert_eq!(seen.len(), 3, "every outcome is reported, in order");
    let (name, failure) = &seen[1];
    assert_eq!(*name, "fails");
    let failure = failure.as_deref().unwrap();
    assert!(
        failure.contains("host.rs:") && failure.contains("expected 1000 == expected"),
        "{failure}"
    );
    assert!(failure.ends_with("(left 1000, right 1001)"), "{failure}");
    assert!(!run_checks(&[], &mut |_: &Outcome<'_>| {}).success(), "no check run is no success");
}

#[test]
fn checks_have_unique_names() {
    let mut names: Vec<_> = CHECKS.iter().map(|c| (c.area, c.name)).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before);
}
