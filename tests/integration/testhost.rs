//! The KVM test host itself: it boots, runs a command, returns its output and exit status
//! exactly, has a real /dev/kvm, and shows the current build outputs at /sandpod.
mod common;

use common::{host, run, text};

#[test]
fn runs_a_command_and_returns_its_output() {
    let host = host();
    let out = run(&host, &["uname", "-a"]);
    assert_eq!(out.code, 0, "output: {}", text(&out));
    let t = text(&out);
    assert!(t.starts_with("Linux testhost "), "unexpected uname: {t}");
    assert!(
        t.contains("cloud-amd64"),
        "not the Debian cloud kernel: {t}"
    );
}

#[test]
fn a_failing_command_fails() {
    let host = host();
    assert_eq!(run(&host, &["false"]).code, 1);
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; printf partial; exit 7",
        ],
    );
    assert_eq!(out.code, 7);
    assert_eq!(text(&out), "to-out\nto-err\npartial");
}

#[test]
fn has_kvm_and_the_build_outputs() {
    let host = host();
    let want = std::fs::read(host.config.share_dir.join("guest/vmlinux")).unwrap();
    let script = "test -c /dev/kvm && grep -q '^kvm_amd ' /proc/modules && echo kvm-ok; \
                  grep -qw svm /proc/cpuinfo && echo svm-ok; \
                  wc -c </sandpod/guest/vmlinux; sandpod-vmm --version";
    let out = run(&host, &["sh", "-c", script]);
    let t = text(&out);
    assert_eq!(out.code, 0, "output: {t}");
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], "kvm-ok");
    assert_eq!(lines[1], "svm-ok");
    assert_eq!(
        lines[2].trim(),
        want.len().to_string(),
        "vmlinux differs inside"
    );
    assert!(
        lines[3].starts_with("sandpod-vmm "),
        "no sandpod-vmm on PATH: {t}"
    );
}
