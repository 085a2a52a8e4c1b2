//! sandpod-vmm's virtio-vsock in the KVM test host: the agent's log connection reaches the host
//! (guest to host), sandpod-agentctl reaches the agent (host to guest), and
//! the VMM removes its socket when it exits. The checks are in tests/kvm-host/guest/vsock-check.sh.
mod common;

use common::{assert_checks, host, run};

#[test]
fn vsock_both_directions() {
    let host = host();
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            "timeout -k 5 600 /sandpod/scripts/vsock-check.sh",
        ],
    );
    // sandpod-agentctl is part of the build: the host-to-guest checks must run, not be skipped.
    assert_checks(
        &out,
        "vsock-check",
        &[
            "guest-to-host-logs",
            "health-over-vsock",
            "exec-stdout",
            "exec-stdin-roundtrip-3m",
            "exec-stdout-1m",
            "exec-status",
            "eight-concurrent-execs",
            "refused-port-closes-client",
            "bad-line-closes-client",
            "vmm-sigterm",
            "uds-removed",
            "live-socket-refused",
            "stale-socket-replaced",
        ],
    );
}
