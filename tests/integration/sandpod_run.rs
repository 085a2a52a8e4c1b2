//! `sandpod run` of busybox bundles in the KVM test host: a VM per container, the rootfs over
//! virtio-fs, the OCI spec applied by the agent, teardown leaving nothing behind. The checks are
//! in tests/kvm-host/guest/containers-check.sh, containers-limits-check.sh,
//! share-security-check.sh (the host side of the share against a hostile guest),
//! guest-flood-check.sh (console and log floods against their caps) and vmm-jail-check.sh
//! (sandpod-vmm in its jail).
mod common;

use common::{assert_checks, host, run};

fn run_checks(script: &str, checks: &[&str]) {
    let host = host();
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            &format!("timeout -k 5 600 /sandpod/scripts/{script}"),
        ],
    );
    assert_checks(&out, script, checks);
}

#[test]
fn run_busybox_bundles() {
    run_checks(
        "containers-check.sh",
        &[
            "echo-output",
            "nothing-left-after-run",
            "guest-logs-in-runtime-log",
            "initrd-given-back",
            "exit-1-and-stderr",
            "exit-137-on-sigkill",
            "env-cwd-user-hostname-pid1",
            "rootfs-host-to-guest",
            "rootfs-guest-to-host",
            "readonly-rootfs",
            "terminal-mode",
            "sleeper-running",
            "sigterm-tears-down",
        ],
    );
}

#[test]
fn limits_security_and_bad_bundles() {
    run_checks(
        "containers-limits-check.sh",
        &[
            "memory-max-oom-kill",
            "pids-max-limits-forks",
            "mknod-with-cap-mknod",
            "mknod-without-cap-mknod",
            "seccomp-denies-mkdir",
            "masked-paths",
            "unmasked-control",
            "rlimit-nofile",
            "nothing-left-after-limits",
            "no-config-json",
            "invalid-json",
            "missing-rootfs",
            "unknown-namespace",
            "missing-binary",
        ],
    );
}

#[test]
fn share_boundary_against_a_hostile_guest() {
    run_checks(
        "share-security-check.sh",
        &[
            "victim-started",
            "evil-started",
            "share-mounts-nosuid-nodev",
            "rro-volume-read-only-on-host",
            "nosuid-ro-volume-read-only-on-host",
            "rw-volume-control",
            "share-top-capped",
            "guest-write-stops-at-share-cap",
            "share-not-in-other-namespaces",
            "planted-setuid-unreachable",
            "no-device-node-on-host",
            "teardown-ignores-planted-symlinks",
            "nothing-left-after-share-checks",
        ],
    );
}

#[test]
fn guest_floods_stay_within_caps() {
    run_checks(
        "guest-flood-check.sh",
        &[
            "console-file-capped-and-rotated",
            "console-drops-marked",
            "console-flood-rss-flat",
            "log-flood-connected",
            "log-flood-bounded",
            "log-flood-drops-reported",
            "nothing-left-after-floods",
        ],
    );
}

#[test]
fn the_vmm_runs_jailed() {
    run_checks(
        "vmm-jail-check.sh",
        &[
            "jail-container-running",
            "exec-in-jailed-vm",
            "vmm-is-the-jails-child",
            "vmm-no-capabilities",
            "vmm-jail-uid-gid",
            "vmm-no-new-privs",
            "vmm-not-dumpable",
            "vmm-own-namespaces-pid-1",
            "jail-root-only-the-jails-entries",
            "jail-read-only-but-vm-dir",
            "jail-mounts-not-on-host",
            "vmm-rlimits",
            "host-cgroup-limits",
            "vmm-dies-with-monitor",
            "nothing-left-after-jail-checks",
        ],
    );
}
