//! Containers in a Sandpod microVM, end to end through sandpod-agentctl in the KVM test host:
//! output, exit statuses, env/cwd/user, hostname, read-only rootfs, pid and mount namespaces,
//! terminal mode, missing or unexecutable binaries, exec into a container, RemoveContainer.
//! The checks are in tests/kvm-host/guest/container-check.sh.
mod common;

use common::{assert_checks, host, run};

#[test]
fn containers_end_to_end() {
    let host = host();
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            "timeout -k 5 600 /sandpod/scripts/container-check.sh",
        ],
    );
    assert_checks(
        &out,
        "container-check",
        &[
            "switch-root",
            "echo-output",
            "exit-0",
            "exit-1",
            "env-and-cwd",
            "user-ids",
            "hostname-from-spec",
            "guest-hostname-untouched",
            "rw-rootfs-writable",
            "ro-rootfs-refuses-writes",
            "ro-rootfs-bind-mount-readable",
            "ro-rootfs-nothing-written",
            "pid-ns-init-is-pid-1",
            "pid-ns-ps-only-own",
            "pid-ns-no-agent",
            "terminal-tty",
            "terminal-crlf",
            "missing-binary-create-fails",
            "missing-binary-named",
            "missing-binary-not-left",
            "exec-failure-start-fails",
            "exec-failure-named",
            "start-separately",
            "start-twice-refused",
            "exec-sees-hostname",
            "exec-sees-rootfs",
            "exec-in-pid-ns",
            "exec-cwd-user",
            "exec-tty",
            "mount-ns-inside",
            "mount-ns-not-in-agent",
            "sigkill-137",
            "remove",
            "processes-before",
            "remove-no-processes-left",
            "remove-exec-killed",
            "remove-twice-refused",
            "remove-no-mounts-left",
            "unstarted-blocked",
            "remove-unstarted",
        ],
    );
}
