//! sandpod-vmm's virtio-blk in the KVM test host: the guest reads two raw images (one
//! read-only, one whose size is not a multiple of 512), writes one at an offset (checked on the
//! host after the guest's sync and after the VMM exits), cannot write the read-only one, and
//! bad --disk values are one-line errors. The checks are in tests/kvm-host/guest/blk-check.sh.
mod common;

use common::{assert_checks, host, run};

#[test]
fn blk_read_write_read_only() {
    let host = host();
    let out = run(
        &host,
        &["sh", "-c", "timeout -k 5 600 /sandpod/scripts/blk-check.sh"],
    );
    assert_checks(
        &out,
        "blk-check",
        &[
            "agent-up",
            "serials-get-id",
            "size",
            "size-rounded-down",
            "size-rounding-logged",
            "ro-flag",
            "rw-flag",
            "read-sha256",
            "read-sha256-ro",
            "write-exit-0",
            "write-on-host-after-sync",
            "read-back-after-write",
            "ro-write-refused",
            "ro-write-refused-after-setrw",
            "ro-image-unchanged-while-running",
            "idle-no-busy-poll",
            "vmm-sigterm",
            "data-image-after-exit",
            "data-image-size-kept",
            "ro-image-unchanged",
            "flush-requests",
            "disk-error-missing",
            "disk-error-directory",
            "disk-error-bad-option",
        ],
    );
}
