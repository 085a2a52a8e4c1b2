//! Slots, the IRQ budget and the command-line announcements (the KVM registration needs a
//! VM: the boot tests cover it).

use std::sync::{Arc, Mutex};

use super::*;
use crate::config::{DiskConfig, VsockConfig};
use crate::devices::virtio::test_utils::{MockDevice, MockLog};

fn mocks(n: usize) -> Vec<Box<dyn VirtioDevice>> {
    let log = Arc::new(Mutex::new(MockLog::default()));
    (0..n)
        .map(|_| Box::new(MockDevice(log.clone())) as Box<dyn VirtioDevice>)
        .collect()
}

#[test]
fn slots_follow_the_irq_budget() {
    assert_eq!(
        MmioSlot::nth(0),
        Some(MmioSlot {
            base: 0xd000_0000,
            irq: 5
        })
    );
    assert_eq!(
        MmioSlot::nth(1),
        Some(MmioSlot {
            base: 0xd000_1000,
            irq: 6
        })
    );
    // The IOAPIC's last pin is the last slot's.
    assert_eq!(MAX_VIRTIO_DEVICES, 19);
    assert_eq!(
        MmioSlot::nth(MAX_VIRTIO_DEVICES - 1),
        Some(MmioSlot {
            base: 0xd001_2000,
            irq: 23
        })
    );
    assert_eq!(MmioSlot::nth(MAX_VIRTIO_DEVICES), None);
    assert_eq!(MmioSlot::nth(usize::MAX), None);
    // vsock, 15 disks, 2 virtio-fs devices and a net device take every virtio IRQ.
    assert_eq!(1 + MAX_DISKS + MAX_FS + MAX_NET, MAX_VIRTIO_DEVICES);
}

#[test]
fn devices_are_announced_in_slot_order() {
    let devices = VirtioDevices::place(mocks(3)).unwrap();
    let mut cmdline = String::from("console=ttyS0");
    devices.announce(&mut cmdline);
    assert_eq!(
        cmdline,
        "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 \
         virtio_mmio.device=4K@0xd0001000:6 virtio_mmio.device=4K@0xd0002000:7"
    );
    let mut none = String::from("quiet");
    VirtioDevices::place(Vec::new())
        .unwrap()
        .announce(&mut none);
    assert_eq!(none, "quiet");
}

#[test]
fn more_devices_than_irqs_is_an_error() {
    let full = VirtioDevices::place(mocks(MAX_VIRTIO_DEVICES)).unwrap();
    assert_eq!(full.slots().count(), MAX_VIRTIO_DEVICES);
    let Err(e) = VirtioDevices::place(mocks(MAX_VIRTIO_DEVICES + 1)) else {
        panic!("20 devices placed");
    };
    assert_eq!(
        e.to_string(),
        "20 virtio devices given but IRQs for at most 19"
    );
}

#[test]
fn configured_devices_open_in_order_vsock_then_disks() {
    let dir = std::env::temp_dir().join(format!("spdm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("disk.img");
    std::fs::write(&image, [0u8; 4096]).unwrap();
    let uds = dir.join("v.sock");
    let mut config = VmConfig::new("/nonexistent/vmlinux");
    config.vsock = Some(VsockConfig {
        guest_cid: 3,
        uds_path: uds.clone(),
    });
    config.disks = vec![
        DiskConfig {
            path: image.clone(),
            read_only: true,
        };
        2
    ];
    let devices = VirtioDevices::open(&config, None).unwrap();
    let types: Vec<u32> = devices.slots.iter().map(|(_, d)| d.device_type()).collect();
    assert_eq!(types, [19, 2, 2]);
    let irqs: Vec<u32> = devices.slots().map(|s| s.irq).collect();
    assert_eq!(irqs, [5, 6, 7]);
    assert!(uds.exists());
    // The vsock socket goes with the devices.
    drop(devices);
    assert!(!uds.exists());

    // A missing image: the error names it, and the vsock socket made before is removed.
    config.disks[1].path = dir.join("missing.img");
    let Err(e) = VirtioDevices::open(&config, None) else {
        panic!("a missing image opened");
    };
    assert!(e.to_string().contains("missing.img"), "{e}");
    assert!(!uds.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn net_devices_take_the_slot_after_the_others() {
    use std::os::fd::AsRawFd;
    let mut config = VmConfig::new("/nonexistent/vmlinux");
    // An inherited fd that is not a tap: refused, the error names the device.
    let (r, _w) = nix::unistd::pipe().unwrap();
    config.net = vec![crate::config::NetConfig {
        tap: None,
        tap_fd: Some(r.as_raw_fd()),
        mac: None,
        mtu: None,
    }];
    let Err(e) = VirtioDevices::open(&config, None) else {
        panic!("a pipe used as a tap");
    };
    assert!(matches!(e, Error::Net { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("cannot use the tap of virtio-net tap-fd={}", r.as_raw_fd())
    );
}

/// A real tap needs CAP_NET_ADMIN: `make unit` runs this as root (`--include-ignored`).
#[test]
#[ignore = "needs root and /dev/net/tun (a real tap): run by `make unit` as root (--include-ignored), as in CI"]
fn a_real_tap_becomes_a_net_device() {
    let mut config = VmConfig::new("/nonexistent/vmlinux");
    let name = format!("spdm{}", std::process::id() % 100_000);
    config.net = vec![crate::config::NetConfig::tap(&name)];
    let devices = match VirtioDevices::open(&config, None) {
        Ok(d) => d,
        Err(e) => panic!("cannot open a tap (needs root and /dev/net/tun): {e}"),
    };
    let types: Vec<u32> = devices.slots.iter().map(|(_, d)| d.device_type()).collect();
    assert_eq!(types, [1]);
}
