//! sandpod-vmm's virtio-fs in the KVM test host: virtiofsd (from the build, sandboxed, --cache
//! auto) shares a directory, the guest mounts it and reads, writes, lists, renames and removes
//! there, each result checked on the other side; the VM's exit ends virtiofsd; a virtiofsd that
//! dies leaves the VMM running. The checks are in tests/kvm-host/guest/virtiofs-check.sh.
mod common;

use common::{assert_checks, host, run};

#[test]
fn virtiofs_shared_directory() {
    let host = host();
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            "timeout -k 5 600 /sandpod/scripts/virtiofs-check.sh",
        ],
    );
    assert_checks(
        &out,
        "virtiofs-check",
        &[
            "virtiofsd-listening",
            "agent-up",
            "guest-mount",
            "host-file-read-in-guest",
            "guest-file-read-on-host",
            "sha256-host-to-guest",
            "sha256-guest-to-host",
            "ls-200-files",
            "mkdir-on-host",
            "rename-on-host",
            "unlink-on-host",
            "host-change-seen-in-guest",
            "read-64m",
            "sha256-64m",
            "idle-no-busy-poll",
            "vmm-sigterm",
            "virtiofsd-exits-with-vm",
            "backend-death-logged",
            "vmm-survives-backend-death",
            "vmm-sigterm-after-backend-death",
        ],
    );
}
