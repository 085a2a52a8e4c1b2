//! sandpod-vmm's virtio-vsock in the KVM test host: the agent's log connection reaches the host
//! (guest to host), sandpod-agentctl reaches the agent (host to guest, when it is built), and
//! the VMM removes its socket when it exits. The checks are in tests/kvm-host/guest/vsock-check.sh.
mod common;

use common::{host, run, text};

#[test]
fn vsock_both_directions() {
    let host = host();
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            "timeout -k 5 180 /sandpod/scripts/vsock-check.sh",
        ],
    );
    let t = text(&out);
    assert!(t.contains("check guest-to-host-logs ok"), "{t}");
    assert!(t.contains("check uds-removed ok"), "{t}");
    assert!(!t.contains(" FAIL"), "{t}");
    assert!(t.contains("vsock-check: 0 failed"), "{t}");
}
