//! VM templates at the VMM level in the KVM test host: a template VM saves itself at the
//! agent's request, two clones restored from it at once answer only after ResumeClone and then
//! differ in their random numbers while their clocks follow the host's, a broken or foreign
//! snapshot is refused with a clear error, and `bench restore_ms` compares a restore with a
//! cold boot (tests/kvm-host/guest/snapshot-check.sh); then, in the same test host, ten
//! `sandpod run`s at once all restored from the runtime's template, leaving nothing behind
//! (burst-check.sh), the template's spare memory made again, mapped by the next start and made
//! again; then a corrupt template (warned, booted cold, removed, made again) and a
//! template of another initramfs (its own key).
mod common;

use common::{assert_checks, host, run};

#[test]
fn template_snapshot_and_restore() {
    let host = host();
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            "timeout -k 5 400 /sandpod/scripts/snapshot-check.sh 3 alternating; \
             timeout -k 5 700 /sandpod/scripts/burst-check.sh 10",
        ],
    );
    let mut checks: Vec<String> = [
        "template-exit-4",
        "template-state-file",
        "template-memory-sparse",
    ]
    .map(String::from)
    .to_vec();
    for clone in ["a", "b"] {
        for c in [
            "health",
            "refused-before-reseed",
            "resume-clone",
            "second-resume-refused",
            "exec-output",
            "exec-status",
            "clock-within-1s",
        ] {
            checks.push(format!("{clone}-{c}"));
        }
    }
    checks.extend(
        [
            "clones-uuid-differ",
            "clones-urandom-differ",
            "corrupt-state-exit-1",
            "corrupt-state-message",
            "truncated-memory-exit-1",
            "truncated-memory-message",
            "other-size-exit-1",
            "other-size-message",
            "restores-answer",
        ]
        .map(String::from),
    );
    let checks: Vec<&str> = checks.iter().map(String::as_str).collect();
    assert_checks(&out, "snapshot-check", &checks);
    assert_checks(
        &out,
        "burst-check",
        &[
            "warm-start",
            "burst-all-running",
            "burst-all-restored",
            "nothing-left-after-burst",
            "spare-ready",
            "spare-run",
            "spare-mapped",
            "spare-made-again",
            "spare-no-name-left",
            "template-present",
            "corrupt-template-run",
            "corrupt-template-warned",
            "corrupt-template-booted-cold",
            "corrupt-template-removed",
            "template-remade",
            "template-remade-restored",
            "other-initramfs-run",
            "other-initramfs-new-template",
            "other-initramfs-restored",
            "nothing-left-after-templates",
        ],
    );
}
