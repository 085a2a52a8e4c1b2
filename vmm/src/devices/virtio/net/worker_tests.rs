//! The worker driven by hand (no thread): a mock driver on guest memory, a socket pair as
//! the tap (one frame per datagram, like a tap fd).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::epoll::EpollEvent;
use vmm_sys_util::eventfd::EventFd;

use super::frame::HDR_LEN;
use super::test_utils::{frame, peer_read, tap_pair};
use super::worker::*;
use crate::devices::virtio::epoll_helper::EpollHandler;
use crate::devices::virtio::test_utils::{clone_evts, eventfd, eventfds, guest_mem, DriverQueue};
use crate::devices::virtio::{Interrupt, VIRTIO_RING_F_EVENT_IDX};
use crate::kvm::memory::GuestMem;
use virtio_queue::QueueT;

/// Tx frames are written at 0x10_0000 + 0x1_0000 · n, rx buffers at 0x80_0000 + 0x1_0000 · n.
const TX_AREA: u64 = 0x10_0000;
const RX_AREA: u64 = 0x80_0000;
const RX_BUF: u32 = 2048;

struct Rig<'a> {
    mem: &'a GuestMem,
    rx: DriverQueue<'a>,
    tx: DriverQueue<'a>,
    worker: Worker,
    peer: OwnedFd,
    irq: EventFd,
    tx_count: u64,
}

impl<'a> Rig<'a> {
    fn new(mem: &'a GuestMem, features: u64) -> Self {
        let evts = eventfds(2);
        let rx = DriverQueue::new(mem, 0, 256, evts[0].try_clone().unwrap());
        let tx = DriverQueue::new(mem, 0x1_0000, 256, evts[1].try_clone().unwrap());
        let mut queues = vec![
            rx.config(256).build(mem).unwrap(),
            tx.config(256).build(mem).unwrap(),
        ];
        for q in &mut queues {
            q.set_event_idx(features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0);
        }
        let irq = eventfd();
        let interrupt = Arc::new(Interrupt::new(irq.try_clone().unwrap()));
        let (tap, peer) = tap_pair();
        let worker = Worker::new(
            mem.clone(),
            queues,
            clone_evts(&evts),
            interrupt,
            tap,
            features,
        )
        .unwrap();
        Rig {
            mem,
            rx,
            tx,
            worker,
            peer,
            irq,
            tx_count: 0,
        }
    }

    /// Puts `bytes` in guest memory as one tx chain of `pieces` buffers, without a kick.
    fn send(&mut self, bytes: &[u8], pieces: usize) {
        let at = TX_AREA + 0x1_0000 * self.tx_count;
        self.tx_count += 1;
        self.mem.write_slice(bytes, GuestAddress(at)).unwrap();
        let step = bytes.len().div_ceil(pieces);
        let descs: Vec<_> = (0..bytes.len())
            .step_by(step)
            .map(|o| {
                let len = step.min(bytes.len() - o);
                (at + o as u64, u32::try_from(len).unwrap(), false)
            })
            .collect();
        self.tx.add(&descs);
    }

    /// Posts `n` rx buffers of `len` bytes, without a kick.
    fn post_rx(&mut self, n: usize, len: u32) {
        for _ in 0..n {
            let at = RX_AREA + 0x1_0000 * u64::from(self.rx.next_desc());
            self.rx.add(&[(at, len, true)]);
        }
    }

    /// The next used rx entry and the bytes it holds.
    fn recv(&mut self) -> Vec<u8> {
        let e = self.rx.next_used("no rx frame");
        let mut b = vec![0u8; e.len() as usize];
        let at = RX_AREA + 0x1_0000 * u64::from(e.id());
        self.mem.read_slice(&mut b, GuestAddress(at)).unwrap();
        b
    }

    /// Interrupts signalled since the last call.
    fn interrupts(&self) -> u64 {
        self.irq.read().unwrap_or(0)
    }

    /// Ready events of the worker's epoll set, without waiting.
    fn ready_tokens(&self) -> Vec<u64> {
        let mut events = [EpollEvent::default(); 8];
        let n = self.worker.epoll().wait(0, &mut events).unwrap();
        events[..n].iter().map(|e| e.data()).collect()
    }
}

#[test]
fn tx_frame_reaches_the_tap() {
    let mem = guest_mem(16 << 20);
    let mut r = Rig::new(&mem, 0);
    let f = frame(100, 0x42);
    r.send(&f, 3);
    r.tx.kick();
    assert_eq!(r.ready_tokens(), vec![TOKEN_TXQ]);
    r.worker
        .handle_event(TOKEN_TXQ, vmm_sys_util::epoll::EventSet::IN)
        .unwrap();
    r.worker.after_wake().unwrap();
    assert_eq!(peer_read(&r.peer), Some(f));
    assert_eq!(r.tx.next_used("tx not used").len(), 0);
    assert_eq!(r.interrupts(), 1);
    assert_eq!(r.worker.stats.tx_frames, 1);
}

#[test]
fn tx_batch_signals_once_and_yields_to_rx() {
    let mem = guest_mem(64 << 20);
    let mut r = Rig::new(&mem, 0);
    for i in 0..10u8 {
        r.send(&frame(60, i), 1);
    }
    r.worker.process_queues().unwrap();
    for i in 0..10u8 {
        assert_eq!(peer_read(&r.peer), Some(frame(60, i)));
    }
    assert_eq!(r.interrupts(), 1, "one interrupt for the batch");
    // More than a batch: the rest waits for the next wake-up, which the worker arranged.
    for _ in 0..(TX_BATCH + 5) {
        r.send(&frame(60, 7), 1);
    }
    r.worker.process_queues().unwrap();
    assert_eq!(r.tx.used_idx(), 10 + u16::try_from(TX_BATCH).unwrap());
    assert_eq!(r.ready_tokens(), vec![TOKEN_TXQ]);
    r.worker.process_queues().unwrap();
    assert_eq!(r.tx.used_idx(), 10 + u16::try_from(TX_BATCH + 5).unwrap());
    assert_eq!(r.worker.stats.tx_frames, 10 + TX_BATCH as u64 + 5);
}

#[test]
fn rx_frame_lands_in_guest_buffers_with_its_header() {
    let mem = guest_mem(16 << 20);
    let mut r = Rig::new(&mem, 0);
    r.post_rx(2, RX_BUF);
    let f = frame(200, 0x17);
    nix::unistd::write(&r.peer, &f).unwrap();
    r.worker.process_queues().unwrap();
    let got = r.recv();
    assert_eq!(got.len(), f.len());
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
    assert_eq!(&got[HDR_LEN..], &f[HDR_LEN..]);
    assert_eq!(r.interrupts(), 1);
    assert!(r.worker.tap_readable_interest());
}

#[test]
fn rx_without_buffers_waits_for_a_kick() {
    let mem = guest_mem(16 << 20);
    let mut r = Rig::new(&mem, 0);
    nix::unistd::write(&r.peer, &frame(100, 1)).unwrap();
    nix::unistd::write(&r.peer, &frame(100, 2)).unwrap();
    assert_eq!(r.ready_tokens(), vec![TOKEN_TAP]);
    r.worker.after_wake().unwrap();
    // No buffer: the frames stay in the tap and the tap no longer wakes the thread.
    assert!(!r.worker.tap_readable_interest());
    assert!(r.ready_tokens().is_empty(), "the thread would spin");
    assert_eq!(r.rx.used_idx(), 0);
    // One buffer and a kick: one frame in, the other waits again.
    r.post_rx(1, RX_BUF);
    r.rx.kick();
    assert_eq!(r.ready_tokens(), vec![TOKEN_RXQ]);
    r.worker
        .handle_event(TOKEN_RXQ, vmm_sys_util::epoll::EventSet::IN)
        .unwrap();
    r.worker.after_wake().unwrap();
    assert_eq!(r.recv()[HDR_LEN], 1);
    assert!(!r.worker.tap_readable_interest());
    assert!(r.ready_tokens().is_empty());
    r.post_rx(4, RX_BUF);
    r.rx.kick();
    r.worker
        .handle_event(TOKEN_RXQ, vmm_sys_util::epoll::EventSet::IN)
        .unwrap();
    r.worker.after_wake().unwrap();
    assert_eq!(r.recv()[HDR_LEN], 2);
    // Buffers left: listening to the tap again.
    assert!(r.worker.tap_readable_interest());
    assert!(r.ready_tokens().is_empty());
    nix::unistd::write(&r.peer, &frame(100, 3)).unwrap();
    assert_eq!(r.ready_tokens(), vec![TOKEN_TAP]);
    r.worker.after_wake().unwrap();
    assert_eq!(r.recv()[HDR_LEN], 3);
    assert_eq!(r.worker.stats.rx_frames, 3);
}

#[test]
fn rx_frame_too_large_for_the_buffer_is_dropped() {
    let mem = guest_mem(16 << 20);
    let mut r = Rig::new(&mem, 0);
    r.post_rx(1, 100);
    nix::unistd::write(&r.peer, &frame(500, 1)).unwrap();
    nix::unistd::write(&r.peer, &frame(50, 2)).unwrap();
    r.worker.process_queues().unwrap();
    // The buffer got the frame that fits.
    let got = r.recv();
    assert_eq!((got.len(), got[HDR_LEN]), (62, 2));
    assert_eq!(r.worker.stats.rx_dropped, 1);
}

#[test]
fn hostile_tx_chains_are_dropped() {
    let mem = guest_mem(16 << 20);
    let mut r = Rig::new(&mem, 0);
    let good = frame(60, 9);
    // Device-writable buffer in a tx chain.
    r.mem.write_slice(&good, GuestAddress(TX_AREA)).unwrap();
    r.tx.add(&[(TX_AREA, 40, false), (TX_AREA + 40, 32, true)]);
    // Outside guest memory; straddling its end.
    r.tx.add(&[(0xffff_0000_0000, 72, false)]);
    r.tx.add(&[((16 << 20) - 10, 72, false)]);
    // Too short for a header and an Ethernet header; too long.
    r.tx.add(&[(TX_AREA, 20, false)]);
    r.tx.add(&[(TX_AREA, 65563, false)]);
    // NEEDS_CSUM without VIRTIO_NET_F_CSUM negotiated.
    let mut csum = good.clone();
    csum[0] = 1;
    r.tx_count = 1;
    r.send(&csum, 1);
    // A good one after all that.
    r.send(&good, 1);
    r.worker.process_queues().unwrap();
    assert_eq!(peer_read(&r.peer), Some(good));
    assert_eq!(peer_read(&r.peer), None);
    for _ in 0..7 {
        assert_eq!(r.tx.next_used("tx").len(), 0);
    }
    assert_eq!(r.worker.stats.tx_bad_chains, 6);
    assert_eq!(r.worker.stats.tx_frames, 1);
}

#[test]
fn hostile_rx_chains_are_dropped_and_the_frame_kept() {
    let mem = guest_mem(16 << 20);
    let mut r = Rig::new(&mem, 0);
    nix::unistd::write(&r.peer, &frame(60, 5)).unwrap();
    // Device-readable buffer; outside memory; too small for a header; then a good one.
    r.rx.add(&[(RX_AREA, 100, false)]);
    r.rx.add(&[(0xffff_0000_0000, 2048, true)]);
    r.rx.add(&[(RX_AREA + 0x1_0000, 11, true)]);
    r.post_rx(1, RX_BUF);
    r.worker.process_queues().unwrap();
    for _ in 0..3 {
        assert_eq!(r.rx.next_used("rx").len(), 0);
    }
    let got = r.recv();
    assert_eq!((got.len(), got[HDR_LEN]), (72, 5));
    assert_eq!(r.worker.stats.rx_bad_chains, 3);
}

#[test]
fn looping_or_indirect_chains_break_the_device() {
    let mem = guest_mem(16 << 20);
    let mut r = Rig::new(&mem, 0);
    // A descriptor whose next is itself.
    let looping = SplitDescriptor::new(TX_AREA, 72, 1, 0);
    r.tx.mq
        .add_desc_chains(&[RawDescriptor::from(looping)], 0)
        .unwrap();
    let e = r.worker.process_queues().unwrap_err();
    assert!(e.contains("longer than the queue size"), "{e}");
    assert_eq!(peer_read(&r.peer), None);

    let mut r = Rig::new(&mem, 0);
    let indirect = SplitDescriptor::new(0x30_0000, 16, 4, 0);
    r.rx.mq
        .add_desc_chains(&[RawDescriptor::from(indirect)], 0)
        .unwrap();
    nix::unistd::write(&r.peer, &frame(60, 5)).unwrap();
    let e = r.worker.process_queues().unwrap_err();
    assert!(e.contains("INDIRECT_DESC"), "{e}");
}

#[test]
fn a_hung_up_tap_stops_the_thread() {
    let mem = guest_mem(16 << 20);
    let mut r = Rig::new(&mem, 0);
    let peer = std::mem::replace(&mut r.peer, tap_pair().0);
    drop(peer);
    let mut events = [EpollEvent::default(); 8];
    let n = r.worker.epoll().wait(0, &mut events).unwrap();
    let ev = events[..n].iter().find(|e| e.data() == TOKEN_TAP).unwrap();
    assert!(r.worker.handle_event(TOKEN_TAP, ev.event_set()).is_err());
    assert!(r.worker.epoll().as_raw_fd() >= 0);
}

/// With EVENT_IDX (queue size 256): the driver's used_event (after its available ring)
/// decides interrupts; running out of rx buffers, the device's avail_event (after its used
/// ring) asks for the kick that brings the next one.
#[test]
fn event_idx_suppresses_interrupts_and_asks_for_the_rx_kick() {
    let mem = guest_mem(16 << 20);
    let mut r = Rig::new(&mem, 1 << VIRTIO_RING_F_EVENT_IDX);
    let used_event = |q: &DriverQueue<'_>| GuestAddress(q.mq.avail_addr().0 + 4 + 2 * 256);
    let avail_event = |q: &DriverQueue<'_>| GuestAddress(q.mq.used_addr().0 + 4 + 8 * 256);
    mem.write_obj(1000u16.to_le(), used_event(&r.rx)).unwrap();
    mem.write_obj(1000u16.to_le(), used_event(&r.tx)).unwrap();
    r.post_rx(1, RX_BUF);
    for i in 0..3 {
        nix::unistd::write(&r.peer, &frame(60, i)).unwrap();
    }
    r.send(&frame(60, 9), 1);
    r.worker.process_queues().unwrap();
    assert_eq!(r.recv()[HDR_LEN], 0);
    assert_eq!(peer_read(&r.peer), Some(frame(60, 9)));
    assert_eq!(r.interrupts(), 0, "interrupted before used_event");
    // Out of rx buffers with frames waiting: kick me when you add buffer 1.
    assert_eq!(u16::from_le(mem.read_obj(avail_event(&r.rx)).unwrap()), 1);
    assert!(!r.worker.tap_readable_interest());
    // The driver wants an interrupt after the next used rx buffer.
    mem.write_obj(1u16.to_le(), used_event(&r.rx)).unwrap();
    r.post_rx(1, RX_BUF);
    r.worker.process_queues().unwrap();
    assert_eq!(r.recv()[HDR_LEN], 1);
    assert_eq!(r.interrupts(), 1);
}
