//! Docker 20.10, Podman 4.3 and containerd 1.6's ctr with Sandpod as their OCI runtime in the
//! KVM test host: `docker run --runtime kata` (daemon.json `{"runtimes":{"kata":{"path":
//! "/sandpod/bin/sandpod"}}}`), `podman --runtime /sandpod/bin/sandpod` and `ctr run
//! --runc-binary /sandpod/bin/sandpod`, on the offline image build/images/busybox.tar
//! (scripts/build-image-tar.sh). The checks are in tests/kvm-host/guest/docker-check.sh and
//! podman-ctr-check.sh; `make engines-control` runs the same scripts against runc (RUNTIME=runc),
//! which proves the checks themselves right.
//!
//! OOMKilled and the stats against the container's limit differ from runc's by design: the
//! scripts check what kata shows there (docs/oci-cli.md).
mod common;

use std::time::Duration;

use common::{assert_checks, host, run};

/// Runs `script` with RUNTIME=kata in the test host, bounded by `secs`, and asserts every check.
/// (The engines are given /sandpod/bin/sandpod itself; to see how they call it, run the script
/// with ARGV_LOG=FILE by hand: `tests/kvm-host/run -- sh -c 'RUNTIME=kata ARGV_LOG=/tmp/a
/// /sandpod/scripts/docker-check.sh'`.)
fn run_checks(script: &str, secs: u64, checks: &[&str]) {
    let mut host = host();
    // Every container is a microVM booting under emulation: allow the whole script plus the
    // test host's boot, whatever the default command timeout is.
    host.config.timeout = host.config.timeout.max(Duration::from_secs(secs + 120));
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            &format!("RUNTIME=kata timeout -k 10 {secs} /sandpod/scripts/{script}"),
        ],
    );
    assert_checks(&out, script, checks);
}

#[test]
fn docker_with_kata_runtime() {
    run_checks(
        "docker-check.sh",
        1700,
        &[
            // start
            "dockerd-starts",
            "docker-load-image",
            "start-nothing-left",
            // run
            "run-echo-exact",
            "exit-code-3",
            "exit-code-137-sigkill",
            "pid1-survives-own-sigkill",
            "env-e-foo-bar",
            "workdir-w-tmp",
            "user-u-1000-1000",
            "hostname-h1",
            "stdin-i-cat-exact",
            "stdin-256k-intact",
            "tty-t-pty-and-size",
            "read-only-rootfs",
            "volume-host-to-container",
            "volume-container-to-host",
            "run-nothing-left",
            // network (the container's namespace mirrored into the VM)
            "net-eth0-has-docker-ip",
            "net-eth0-has-docker-mac",
            "net-default-route-via-docker0",
            "net-host-to-container",
            "net-published-port",
            "net-container-to-container",
            "net-raw-frame-flood-then-still-works",
            "net-container-to-host-4m-sha256",
            "net-user-defined-by-ip",
            "net-user-defined-by-name",
            "net-none-lo-only",
            "net-user-defined-removed",
            "network-nothing-left",
            // limits
            "memory-max-64m-in-cgroup",
            "pids-max-10-in-cgroup",
            "pids-limit-stops-fork-bomb",
            "memory-oom-exit-137",
            "limits-nothing-left",
            // detached
            "run-d-prints-id",
            "leak-check-sees-running",
            "ps-shows-up",
            "inspect-running",
            "logs-first-line",
            "exec-echo-exact",
            "exec-exit-code-5",
            "exec-user-workdir-env",
            "exec-in-same-container",
            "exec-i-stdin",
            "exec-t-pty-size-and-exit",
            "top-lists-processes",
            "stats-no-stream-vm-usage",
            "update-memory-applied",
            "pause",
            "paused-container-frozen",
            "unpause",
            "unpaused-container-runs",
            "kill-usr1-delivered",
            "stop-sigterm-graceful",
            "stop-t2-sigkill-after-timeout",
            "rm-f-running",
            "detached-nothing-left",
            // live-restore
            "dockerd-starts-live-restore",
            "container-outlives-dockerd",
            "dockerd-restarts-live-restore",
            "live-restored-running",
            "live-restored-exec",
            "live-restored-stop",
            "live-restore-nothing-left",
            "engines-stopped",
        ],
    );
}

#[test]
fn podman_and_ctr_with_kata_runtime() {
    run_checks(
        "podman-ctr-check.sh",
        900,
        &[
            // podman
            "podman-load-image",
            "podman-run-echo-exact",
            "podman-exit-code-3",
            "podman-run-d",
            "podman-exec-exact",
            "podman-exec-exit-code-5",
            "podman-stop-sigterm",
            "podman-rm",
            "podman-net-host-to-container",
            "podman-nothing-left",
            // ctr
            "containerd-starts",
            "ctr-import-image",
            "ctr-run-echo-exact",
            "ctr-exit-code-3",
            "ctr-run-d",
            "ctr-exec-exact-and-exit-code",
            "ctr-kill",
            "ctr-task-and-container-rm",
            "ctr-nothing-left",
        ],
    );
}
