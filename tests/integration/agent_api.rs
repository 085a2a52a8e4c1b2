//! The agent's API end to end in the KVM test host, through sandpod-vmm's hybrid vsock and
//! sandpod-agentctl: bulk data through `cat`, signals, parallel processes, and clients whose VM
//! goes away mid-stream (VMM SIGKILLed, guest power-off, guest crash) failing promptly instead
//! of hanging. The checks are in tests/kvm-host/guest/agent-api-check.sh.
mod common;

use common::{assert_checks, host, run};

#[test]
fn agent_api_in_a_microvm() {
    let host = host();
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            "timeout -k 5 600 /sandpod/scripts/agent-api-check.sh",
        ],
    );
    assert_checks(
        &out,
        "agent-api-check",
        &[
            "health",
            "cat-10mib-exit",
            "cat-10mib-size",
            "cat-10mib-sha256",
            "sigterm-signal-delivered",
            "sigterm-status",
            "sigterm-exit-143",
            "signal-unknown-id-fails",
            "parallel-20",
            "vmm-sigkill-stream-open",
            "vmm-sigkill-client-error",
            "vmm-sigkill-client-prompt",
            "vmm-sigkill-client-message",
            "vmm-sigkill-vmm-exit",
            "poweroff-stream-open",
            "poweroff-client-error",
            "poweroff-client-prompt",
            "poweroff-client-message",
            "poweroff-vmm-exit",
            "guest-crash-stream-open",
            "guest-crash-client-error",
            "guest-crash-client-prompt",
            "guest-crash-client-message",
            "guest-crash-vmm-exit",
        ],
    );
}
