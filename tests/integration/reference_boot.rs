//! The reference boot: inside the test host, QEMU `-M microvm` with KVM boots our guest kernel
//! and initramfs, and the agent prints its ready line. The yardstick for sandpod-vmm.
mod common;

use common::{host, run, text};

fn ready_ms(output: &str) -> Option<u64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("sandpod-agent ready "))
        .and_then(|ms| ms.trim().parse().ok())
}

#[test]
fn qemu_microvm_boots_the_guest_to_the_agent() {
    let host = host();
    let out = run(&host, &["/sandpod/scripts/reference-boot.sh", "1", "128"]);
    let t = text(&out);
    assert_eq!(out.code, 0, "reference boot failed:\n{t}");
    let ms = ready_ms(&t).unwrap_or_else(|| panic!("no ready line:\n{t}"));
    assert!(ms > 0, "the agent reported {ms} ms since boot");
}

#[test]
fn the_test_initramfs_boots_too() {
    let host = host();
    let out = run(
        &host,
        &[
            "/sandpod/scripts/reference-boot.sh",
            "1",
            "128",
            "/sandpod/guest/initramfs-test.cpio",
        ],
    );
    let t = text(&out);
    assert_eq!(out.code, 0, "reference boot (test initramfs) failed:\n{t}");
    assert!(ready_ms(&t).is_some(), "no ready line:\n{t}");
}
