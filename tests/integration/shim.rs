//! containerd 1.6 with Sandpod's shim v2 in the KVM test host: `ctr run --runtime
//! io.containerd.kata.v2` (containerd finds /sandpod/bin/containerd-shim-kata-v2 on its PATH) on
//! the offline image build/images/busybox.tar. The checks are in
//! tests/kvm-host/guest/shim-ctr-check.sh: one-shot tasks (output, exit codes, stdin, a
//! terminal), a detached task's exec/ps/metrics/pause/resume/kill/delete, a pod of two containers
//! in one VM, an OOM kill, containerd restarted under a running task, and a SIGKILLed shim cleaned up by `shim delete`, each followed by a leak check.
mod common;

use std::time::Duration;

use common::{assert_checks, host, run};

#[test]
fn ctr_with_the_kata_shim() {
    let secs = 1500;
    let mut host = host();
    // Every pod is a microVM booting under emulation: allow the whole script plus the test
    // host's boot.
    host.config.timeout = host.config.timeout.max(Duration::from_secs(secs + 120));
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            &format!("timeout -k 10 {secs} /sandpod/scripts/shim-ctr-check.sh"),
        ],
    );
    assert_checks(
        &out,
        "shim-ctr-check.sh",
        &[
            // start
            "containerd-starts",
            "ctr-import-image",
            "start-nothing-left",
            // run
            "shim-run-echo-exact",
            "shim-guest-logs-in-containerd-log",
            "shim-run-echo-nothing-left",
            "shim-exit-code-3",
            "shim-exit-codes-nothing-left",
            "shim-stdin-cat-exact",
            "shim-stdin-256k-intact",
            "shim-output-complete-at-exit",
            "shim-stdin-nothing-left",
            "shim-tty-t-pty-and-size",
            "shim-tty-nothing-left",
            "run-nothing-left",
            // detached
            "shim-run-d",
            "shim-exec-exact-and-exit-code",
            "shim-exec-killed-by-signal-137",
            "shim-exec-t-pty-size-and-exit",
            "shim-task-ps",
            "shim-task-metrics",
            "shim-pause",
            "shim-resume",
            "shim-exec-after-resume",
            "shim-kill-sigkill",
            "shim-killed-exit-137",
            "shim-task-and-container-rm",
            "shim-events-published",
            "shim-detached-nothing-left",
            "shim-kill-all",
            "shim-kill-all-rm",
            "shim-kill-all-nothing-left",
            "detached-nothing-left",
            // pod
            "shim-pod-bad-size-refused",
            "shim-pod-sandbox",
            "shim-pod-vm-size-from-annotation",
            "shim-pod-member-runs",
            "shim-pod-one-vm-one-shim",
            "shim-pod-rm",
            "shim-pod-nothing-left",
            "pod-nothing-left",
            // oom
            "shim-oom-exit-137",
            "shim-oom-event-published",
            "shim-oom-nothing-left",
            "oom-nothing-left",
            // containerd restarted
            "shim-restart-task-running",
            "containerd-sigkilled-and-started",
            "shim-restart-task-still-listed",
            "shim-restart-exec",
            "containerd-stopped-and-started",
            "shim-restart-twice-still-listed",
            "shim-restart-kill",
            "shim-restart-delete",
            "shim-restart-nothing-left",
            "containerd-restart-nothing-left",
            // dead shim
            "shim-dead-running",
            "shim-dead-exit-published",
            "shim-dead-rm",
            "shim-dead-nothing-left",
            "dead-shim-nothing-left",
        ],
    );
}
