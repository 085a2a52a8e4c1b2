//! The virtio-mmio register path as a hostile guest drives it: reads and writes of arbitrary
//! offsets, widths and values on the transport of a block or vsock device, through the
//! status state machine (feature negotiation, queue setup, DRIVER_OK activation with the
//! device thread started, queue notifications, interrupt acks, resets). Guest memory is fuzz
//! input too, so activated devices chew on hostile rings.
//!
//! Checks: the identification registers never change, a register access that is not 32-bit
//! and aligned reads as zero, DRIVER_OK is never set without FEATURES_OK, and writing 0 to
//! the status resets it.
//!
//! Input: [device (bit 0: vsock, else block; bit 1: read-only disk), op count, ops (8 bytes
//! each: kind, offset lo, offset hi, value bytes 0-4), guest memory...]. kind bit 0 is write,
//! bits 1-3 pick the width from [`WIDTHS`].
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sandpod_vmm::config::DiskConfig;
use sandpod_vmm::devices::virtio::block::disk::DiskImage;
use sandpod_vmm::devices::virtio::block::Block;
use sandpod_vmm::devices::virtio::mmio::{CONFIG_SPACE, MMIO_MAGIC, MMIO_VERSION};
use sandpod_vmm::devices::virtio::vsock::Vsock;
use sandpod_vmm::devices::virtio::{
    Interrupt, MmioTransport, VirtioDevice, MMIO_SIZE, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
};
use sandpod_vmm::devices::BusDevice;
use sandpod_vmm_fuzz::{disk_image_path, guest_memory, vsock_listener};
use vmm_sys_util::eventfd::EventFd;

const OP_SIZE: usize = 8;
/// Access widths: mostly the 32-bit accesses registers take, some others.
const WIDTHS: [usize; 8] = [4, 4, 4, 4, 1, 2, 8, 3];
const STATUS: u64 = 0x70;

fn eventfd() -> EventFd {
    EventFd::new(libc::EFD_NONBLOCK).expect("eventfd")
}

fn device(sel: u8) -> Box<dyn VirtioDevice> {
    if sel & 1 == 0 {
        let config = DiskConfig {
            path: disk_image_path().to_path_buf(),
            read_only: sel & 2 != 0,
        };
        Box::new(Block::new(
            DiskImage::open(&config).expect("the fuzz disk image"),
        ))
    } else {
        let (path, listener) = vsock_listener();
        Box::new(Vsock::new(3, path, listener))
    }
}

fn read32(t: &mut MmioTransport, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

fn check_read(device_type: u32, offset: u64, b: &[u8]) {
    if offset >= CONFIG_SPACE {
        return;
    }
    let Ok(v) = <[u8; 4]>::try_from(b) else {
        assert!(
            b.iter().all(|&x| x == 0),
            "{}-byte read at {offset:#x}",
            b.len()
        );
        return;
    };
    if offset & 3 != 0 {
        assert_eq!(v, [0; 4], "unaligned read at {offset:#x}");
        return;
    }
    let v = u32::from_le_bytes(v);
    match offset {
        0x00 => assert_eq!(v, MMIO_MAGIC),
        0x04 => assert_eq!(v, MMIO_VERSION),
        0x08 => assert_eq!(v, device_type),
        STATUS if v & STATUS_DRIVER_OK != 0 => {
            assert_ne!(v & STATUS_FEATURES_OK, 0, "DRIVER_OK without FEATURES_OK");
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let [sel, nops, rest @ ..] = data else {
        return;
    };
    let (ops, memory) = rest.split_at((usize::from(*nops) * OP_SIZE).min(rest.len()));
    let dev = device(*sel);
    let device_type = dev.device_type();
    let queues = dev.queue_max_sizes().len();
    let interrupt = Arc::new(Interrupt::new(eventfd()));
    let evts = (0..queues).map(|_| eventfd()).collect();
    let mut t = MmioTransport::new(dev, guest_memory(memory), interrupt, evts);
    for op in ops.chunks_exact(OP_SIZE) {
        let width = WIDTHS[usize::from(op[0] >> 1) % WIDTHS.len()];
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]])) % MMIO_SIZE;
        let mut value = [0u8; 8];
        value[..5].copy_from_slice(&op[3..8]);
        if op[0] & 1 == 0 {
            let mut b = vec![0xa5u8; width];
            t.read(offset, &mut b);
            check_read(device_type, offset, &b);
        } else {
            t.write(offset, &value[..width]);
            if offset == STATUS && width == 4 && value[..4] == [0; 4] {
                assert_eq!(read32(&mut t, STATUS) & !0x40, 0, "reset left status bits");
            }
        }
    }
    // Dropping the transport resets the device (joins its thread).
});
