//! Shared by the test-host integration tests.
use std::path::PathBuf;

use sandpod_testhost::{Outcome, TestHost};

/// The test host, with the build outputs required to exist (run `make artifacts` first: the
/// Makefile's `test` target does).
pub fn host() -> TestHost {
    let host = TestHost::from_env().expect("setting up the KVM test host");
    let vmlinux: PathBuf = host.config.share_dir.join("guest/vmlinux");
    assert!(
        vmlinux.is_file(),
        "{} is missing: run `make artifacts` before the test-host tests",
        vmlinux.display()
    );
    host
}

/// Runs `argv` in the test host; panics if the test host itself failed.
/// Prints (stderr, shown by `make integration`) the L2's boot time, the whole run's and the
/// attempts it took, so a slow or retried run is seen even when it passes.
pub fn run(host: &TestHost, argv: &[&str]) -> Outcome {
    let started = std::time::Instant::now();
    let outcome = host
        .run(argv)
        .unwrap_or_else(|e| panic!("test host run of {argv:?} failed: {e}"));
    eprintln!(
        "[testhost] {:?}: exit {}, L2 booted in {:.1} s, {:.1} s in all, {} attempt(s)",
        argv.last().copied().unwrap_or_default(),
        outcome.code,
        outcome.boot_time.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        outcome.attempts
    );
    outcome
}

pub fn text(outcome: &Outcome) -> String {
    String::from_utf8_lossy(&outcome.output).into_owned()
}

/// Asserts that a check script passed: every named check printed `check <name> ok`, none
/// printed FAIL, the script's summary line says `<summary>: 0 failed`, and it exited 0.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub fn assert_checks(out: &Outcome, summary: &str, checks: &[&str]) {
    let t = text(out);
    for check in checks {
        assert!(
            t.contains(&format!("check {check} ok")),
            "check {check} did not pass:\n{t}"
        );
    }
    assert!(!t.contains(" FAIL"), "{t}");
    assert!(t.contains(&format!("{summary}: 0 failed")), "{t}");
    assert_eq!(out.code, 0, "{t}");
}
