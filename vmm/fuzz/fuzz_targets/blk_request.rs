//! virtio-blk requests from hostile guest memory: descriptor tables, available ring and
//! buffers are all fuzz input. Each available chain is walked by the shared chain walker
//! (`pop_chain`: indirect tables, lengths, indices), parsed by the block request parser, and
//! its verdict checked; then the same queue is served by the device's own `process_queue` on
//! a real (scratch) image. Nothing may panic or touch memory outside the guest's regions.
//!
//! Checks on an accepted request: the status byte is in guest memory; a read or write has a
//! length that is a multiple of 512 and a sector range inside the disk; its data buffers
//! are inside guest memory and add up to its length; a flush or an unsupported request has
//! no data.
//!
//! Input: [flags, guest memory...]. flags bits 0-3: queue size exponent (1 << (x % 9));
//! bit 4: indirect tables allowed by the walker; bits 5-6: chains made available - 1; bit 7:
//! write-through. Region 0 holds the descriptor table (0x0), the available ring (0x1000,
//! its `idx` set by the target) and the used ring (0x1400).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sandpod_vmm::config::DiskConfig;
use sandpod_vmm::devices::virtio::block::disk::DiskImage;
use sandpod_vmm::devices::virtio::block::request::{
    parse, Desc, RequestKind, ID_BYTES, SECTOR_SIZE,
};
use sandpod_vmm::devices::virtio::block::worker::{queue_epoll, Stats, Worker};
use sandpod_vmm::devices::virtio::block::{QUEUE_SIZE, SEG_MAX};
use sandpod_vmm::devices::virtio::queue::{pop_chain, QueueConfig};
use sandpod_vmm::devices::virtio::Interrupt;
use sandpod_vmm::kvm::memory::GuestMem;
use sandpod_vmm_fuzz::{disk_image_path, guest_memory, DISK_SECTORS};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};
use vmm_sys_util::eventfd::EventFd;

const DESC: u64 = 0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x1400;
const MAX_DESCS: usize = SEG_MAX as usize + 2;

fn eventfd() -> EventFd {
    EventFd::new(libc::EFD_NONBLOCK).expect("eventfd")
}

fn queue(mem: &GuestMem, flags: u8) -> Queue {
    let config = QueueConfig {
        max_size: QUEUE_SIZE,
        size: 1 << ((flags & 0xf) % 9),
        ready: true,
        desc: DESC,
        avail: AVAIL,
        used: USED,
    };
    config.build(mem).expect("a valid queue")
}

fn in_memory(mem: &GuestMem, addr: GuestAddress, len: u32) -> bool {
    usize::try_from(len).is_ok_and(|len| mem.check_range(addr, len, Permissions::Read))
}

/// Walks and parses every available chain, checking the parser's verdicts.
fn check_parser(mem: &GuestMem, flags: u8) {
    let mut q = queue(mem, flags);
    let indirect = flags & 0x10 != 0;
    while let Ok(Some(chain)) = pop_chain(&mut q, mem, indirect) {
        assert!(
            chain.descs.len() <= usize::from(q.size()),
            "chain past the queue size"
        );
        let descs: Vec<Desc> = chain.descs.iter().map(Desc::from_queue).collect();
        let Ok(parsed) = parse(&descs, MAX_DESCS, mem, DISK_SECTORS) else {
            continue;
        };
        assert!(mem.check_range(parsed.status, 1, Permissions::Write));
        let Ok(req) = parsed.request else {
            continue;
        };
        let total: u64 = req.data.iter().map(|s| u64::from(s.len)).sum();
        assert_eq!(total, req.data_len);
        assert!(req.data.iter().all(|s| in_memory(mem, s.addr, s.len)));
        match req.kind {
            RequestKind::In | RequestKind::Out => {
                assert_eq!(req.data_len % SECTOR_SIZE, 0);
                let end = req.sector.checked_add(req.data_len / SECTOR_SIZE);
                assert!(end.is_some_and(|e| e <= DISK_SECTORS), "{req:?}");
            }
            RequestKind::Flush | RequestKind::Unsupported(_) => assert!(req.data.is_empty()),
            RequestKind::GetId => {}
        }
    }
}

/// Serves the queue with the device's own code on the scratch image.
fn serve(mem: GuestMem, flags: u8) {
    let disk = DiskImage::open(&DiskConfig {
        path: disk_image_path().to_path_buf(),
        read_only: false,
    })
    .expect("the fuzz disk image");
    let queue_evt = eventfd();
    let mut worker = Worker {
        queue: queue(&mem, flags),
        mem,
        epoll: queue_epoll(&queue_evt).expect("epoll"),
        queue_evt,
        interrupt: Arc::new(Interrupt::new(eventfd())),
        disk: disk.handle().expect("a disk handle"),
        capacity: disk.capacity(),
        serial: [b'f'; ID_BYTES],
        write_through: flags & 0x80 != 0,
        stats: Stats::default(),
    };
    let _ = worker.process_queue();
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, memory)) = data.split_first() else {
        return;
    };
    let mem = guest_memory(memory);
    let chains = u16::from((flags >> 5) & 3) + 1;
    mem.write_obj(0u16, GuestAddress(AVAIL)).expect("in memory");
    mem.write_obj(chains.to_le(), GuestAddress(AVAIL + 2))
        .expect("in memory");
    mem.write_obj(0u16, GuestAddress(USED + 2))
        .expect("in memory");
    check_parser(&mem, flags);
    serve(mem, flags);
});
