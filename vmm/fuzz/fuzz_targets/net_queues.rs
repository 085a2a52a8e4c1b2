//! The net device's queue processing on hostile guest memory: the tx and rx descriptor
//! tables, available rings and buffers are all fuzz input, and so are the frames the tap
//! (a socket pair here) has for the guest. Drives `Worker::process_queues` (what the device
//! thread runs after every wake-up) a few rounds; it may refuse the queues (`Err`: the device
//! would be marked broken) but must never panic, touch memory outside the guest's regions or
//! send the tap a frame out of bounds.
//!
//! Input: [tx size exponent, rx size exponent, flags (bits 0-1: rounds - 1, bit 6: offloads
//! negotiated, bit 7: EVENT_IDX), frame count, frames (le16 length, bytes) ..., guest
//! memory ...]. Region 0 holds the tx queue (descriptors 0x0, available ring 0x1000, used ring
//! 0x1400) and the rx queue (0x2000, 0x3000, 0x3400); descriptors may point anywhere.
#![no_main]

use std::os::fd::OwnedFd;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sandpod_vmm::devices::virtio::net::frame::{ETH_HLEN, HDR_LEN, MAX_FRAME_LEN};
use sandpod_vmm::devices::virtio::net::worker::Worker;
use sandpod_vmm::devices::virtio::net::QUEUE_SIZE;
use sandpod_vmm::devices::virtio::queue::QueueConfig;
use sandpod_vmm::devices::virtio::Interrupt;
use sandpod_vmm_fuzz::guest_memory;
use virtio_queue::QueueT;
use vmm_sys_util::eventfd::EventFd;

/// VIRTIO_NET_F_CSUM, GUEST_CSUM, GUEST_TSO4/6, HOST_TSO4/6.
const OFFLOADS: u64 = (1 << 0) | (1 << 1) | (1 << 7) | (1 << 8) | (1 << 11) | (1 << 12);

fn queue_config(size_exp: u8, base: u64) -> QueueConfig {
    QueueConfig {
        max_size: QUEUE_SIZE,
        size: 1 << (size_exp % 9),
        ready: true,
        desc: base,
        avail: base + 0x1000,
        used: base + 0x1400,
    }
}

fn eventfd() -> EventFd {
    EventFd::new(libc::EFD_NONBLOCK).expect("eventfd")
}

fn tap_pair() -> (OwnedFd, OwnedFd) {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, flags).expect("socketpair")
}

/// Splits the frames for the tap off the input; returns them and the rest.
fn frames(count: u8, mut data: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut out = Vec::new();
    for _ in 0..count % 8 {
        let [lo, hi, rest @ ..] = data else {
            break;
        };
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
        out.push(&rest[..len]);
        data = &rest[len..];
    }
    (out, data)
}

fuzz_target!(|data: &[u8]| {
    let [tx_exp, rx_exp, flags, count, rest @ ..] = data else {
        return;
    };
    let (tap_frames, memory) = frames(*count, rest);
    let mem = guest_memory(memory);
    let rx = queue_config(*rx_exp, 0x2000)
        .build(&mem)
        .expect("valid rx queue");
    let tx = queue_config(*tx_exp, 0)
        .build(&mem)
        .expect("valid tx queue");
    let mut queues = vec![rx, tx];
    for q in &mut queues {
        q.set_event_idx(flags & 0x80 != 0);
    }
    let features = if flags & 0x40 != 0 { OFFLOADS } else { 0 };
    let (tap, peer) = tap_pair();
    for f in &tap_frames {
        let _ = nix::unistd::write(&peer, f);
    }
    let interrupt = Arc::new(Interrupt::new(eventfd()));
    let evts = vec![eventfd(), eventfd()];
    let mut worker = Worker::new(mem, queues, evts, interrupt, tap, features).expect("worker");
    let mut buf = vec![0u8; 2 * MAX_FRAME_LEN];
    for _ in 0..=(flags % 4) {
        let result = worker.process_queues();
        // Whatever the guest did, what reaches the tap is a whole, bounded frame.
        while let Ok(n) = nix::unistd::read(&peer, &mut buf) {
            assert!(
                (HDR_LEN + ETH_HLEN..=MAX_FRAME_LEN).contains(&n),
                "{n} bytes"
            );
        }
        if result.is_err() {
            break;
        }
    }
});
