//! Container limits and security settings enforced in a Sandpod microVM, through
//! sandpod-agentctl in the KVM test host: cgroup v2 memory (OOM kill) / pids / cpu, exec joining
//! the container's cgroup, cgroup removal, capabilities, no_new_privileges, seccomp, masked and
//! read-only paths, rlimits, bad profiles refused; no capabilities without a capabilities spec,
//! the cgroup namespace rooted at the container's cgroup, the helper not dumpable before exec,
//! the device cgroup, no vsock from containers (and no guest-local vsock path), stdio streams
//! refused without the process's token. The checks are in
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
            "timeout -k 5 480 /sandpod/scripts/container-security-check.sh",
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
        "no-caps-spec-CapInh-empty",
        "no-caps-spec-CapPrm-empty",
        "no-caps-spec-CapEff-empty",
        "no-caps-spec-CapBnd-empty",
        "no-caps-spec-CapAmb-empty",
        "no-caps-spec-chown-refused",
        "cgroup-ns-init-sees-root",
        "cgroup-ns-exec-sees-root",
        "cgroup-ns-still-in-its-cgroup",
        "helper-not-dumpable-before-exec",
        "init-dumpable-after-exec",
        "device-cgroup-mknod-allowed",
        "device-cgroup-denies-console",
        "device-cgroup-allows-null",
        "device-cgroup-rule-allows-console",
        "guest-vsock-loopback-off",
        "vsock-refused-to-containers",
        "vsock-allowed-creates-sockets",
        "vsock-allowed-still-reaches-nothing",
        "stream-with-token-works",
        "stream-wrong-token-gets-nothing",
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
