//! Container limits and security settings enforced in a Sandpod microVM, through
//! sandpod-agentctl in the KVM test host: cgroup v2 memory (OOM kill) / pids / cpu, exec joining
//! the container's cgroup, cgroup removal, capabilities, no_new_privileges, seccomp, masked and
//! read-only paths, rlimits, bad profiles refused. The checks are in
//! tests/kvm-host/guest/container-security-check.sh.
mod common;

use common::{assert_checks, host, run};

#[test]
fn container_security_end_to_end() {
    let host = host();
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            "timeout -k 5 280 /sandpod/scripts/container-security-check.sh",
        ],
    );
    let mut checks = vec![
        "memory-oom-sigkill",
        "memory-oom-kill-counted",
        "memory-max-set",
        "cgroup-removed-with-container",
        "pids-max-fork-fails",
        "pids-max-event",
        "exec-joins-container-cgroup",
        "cpu-max-set",
        "cpu-weight-from-shares",
        "remove-kills-and-removes-cgroup",
        "mknod-with-cap-mknod",
        "mknod-without-cap-mknod",
        "bounding-set-is-the-spec",
        "no-new-privs-set",
        "no-new-privs-unset",
        "seccomp-mkdir-not-made",
        "masked-paths-control",
        "masked-files-empty",
        "masked-dir-empty",
        "masked-dir-read-only",
        "readonly-proc-sys",
        "readonly-etc",
        "writable-elsewhere",
        "rlimit-nofile",
        "bad-seccomp-refused",
        "bad-memory-limit-refused",
        "bad-specs-leave-no-cgroup",
        "no-cgroups-left",
    ];
    let seccomp: Vec<String> = ["true", "false"]
        .iter()
        .flat_map(|nnp| {
            ["denies-mkdir", "other-calls-work", "filter-mode"]
                .map(|c| format!("seccomp-nnp-{nnp}-{c}"))
        })
        .collect();
    checks.extend(seccomp.iter().map(String::as_str));
    assert_checks(&out, "container-security-check", &checks);
}
