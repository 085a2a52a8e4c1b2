//! What the virtio unit tests share: guest memory and eventfd builders, a bounded wait, the
//! driver's side of the MMIO transport (register access, negotiation, queue setup) and a mock
//! driver queue on guest memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use virtio_queue::desc::split::{Descriptor as SplitDescriptor, VirtqUsedElem};
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::device::{read_config_bytes, ActivateError};
use super::queue::QueueConfig;
use super::vsock::packet::{Header, HOST_CID, TYPE_STREAM};
use super::*;
use crate::devices::bus::BusDevice;
use crate::kvm::memory::GuestMem;

/// Descriptor flag: the chain continues at `next`.
pub const F_NEXT: u16 = 1;
/// Descriptor flag: device-writable buffer.
pub const F_WRITE: u16 = 2;

/// Guest RAM of `size` bytes at guest address 0 (anonymous memory).
pub fn guest_mem(size: usize) -> GuestMem {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).unwrap()
}

/// A non-blocking eventfd.
pub fn eventfd() -> EventFd {
    EventFd::new(libc::EFD_NONBLOCK).unwrap()
}

/// `n` non-blocking eventfds.
pub fn eventfds(n: usize) -> Vec<EventFd> {
    (0..n).map(|_| eventfd()).collect()
}

/// Second handles on `evts` (same eventfds).
pub fn clone_evts(evts: &[EventFd]) -> Vec<EventFd> {
    evts.iter().map(|e| e.try_clone().unwrap()).collect()
}

/// Waits (20 s at most, then fails the test with `what`: generous, as CI machines are loaded)
/// until `done` holds.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What a [`MockDevice`] was asked to do.
#[derive(Default)]
pub struct MockLog {
    /// Per activation: the features and the queue sizes.
    pub activations: Vec<(u64, Vec<u16>)>,
    /// Resets.
    pub resets: usize,
    /// Per activation: each queue's next available index.
    pub positions: Vec<Vec<u16>>,
    /// `restoring` calls.
    pub restoring: usize,
}

/// A device of type 19 with two queues of 256, feature bit 3 and an 8-byte config space
/// (0x1122_3344_5566_7788), that records activations and resets.
pub struct MockDevice(pub Arc<Mutex<MockLog>>);

impl VirtioDevice for MockDevice {
    fn device_type(&self) -> u32 {
        TYPE_VSOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 256]
    }
    fn device_features(&self) -> u64 {
        1 << 3
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&0x1122_3344_5566_7788u64.to_le_bytes(), offset, data);
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(&mut self, features: u64, a: Activation) -> Result<(), ActivateError> {
        let sizes = a.queues.iter().map(|q| q.size()).collect();
        let positions = a.queues.iter().map(|q| q.next_avail()).collect();
        let mut log = self.0.lock().unwrap();
        log.activations.push((features, sizes));
        log.positions.push(positions);
        Ok(())
    }
    fn restoring(&mut self) {
        self.0.lock().unwrap().restoring += 1;
    }
    fn reset(&mut self) {
        self.0.lock().unwrap().resets += 1;
    }
}

/// A device behind a transport, with the eventfds the VMM would register with KVM.
pub struct TransportRig {
    /// The transport.
    pub t: MmioTransport,
    /// The irqfd (what KVM would read).
    pub irq: EventFd,
    /// The device's interrupt state.
    pub interrupt: Arc<Interrupt>,
    /// One ioeventfd per queue (what the guest's QueueNotify writes would signal).
    pub notify: Vec<EventFd>,
}

/// Puts `dev` behind a transport on `mem`.
pub fn transport(dev: Box<dyn VirtioDevice>, mem: GuestMem) -> TransportRig {
    let irq = eventfd();
    let interrupt = Arc::new(Interrupt::new(irq.try_clone().unwrap()));
    let notify = eventfds(dev.queue_max_sizes().len());
    let t = MmioTransport::new(dev, mem, interrupt.clone(), clone_evts(&notify));
    TransportRig {
        t,
        irq,
        interrupt,
        notify,
    }
}

/// A 32-bit register read.
pub fn rd(t: &mut MmioTransport, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(off, &mut b);
    u32::from_le_bytes(b)
}

/// A 32-bit register write.
pub fn wr(t: &mut MmioTransport, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

/// What Linux's virtio_mmio driver does up to FEATURES_OK: reset, ACKNOWLEDGE, DRIVER, the
/// driver's features (high half, then low), FEATURES_OK. Whether the device accepted is in
/// the status register.
pub fn negotiate(t: &mut MmioTransport, driver_features: u64) {
    let (lo, hi) = halves(driver_features);
    wr(t, 0x70, 0);
    wr(t, 0x70, STATUS_ACKNOWLEDGE);
    wr(t, 0x70, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    wr(t, 0x24, 1);
    wr(t, 0x20, hi);
    wr(t, 0x24, 0);
    wr(t, 0x20, lo);
    wr(
        t,
        0x70,
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
    );
}

/// Sets up queue `index` with `size` entries: descriptor table at `base`, available ring at
/// `base + 0x1000`, used ring at `base + 0x2000`, then QueueReady.
pub fn setup_queue(t: &mut MmioTransport, index: u32, size: u32, base: u64) {
    wr(t, 0x30, index);
    assert_eq!(rd(t, 0x44), 0, "queue {index} ready before setup");
    wr(t, 0x38, size);
    for (reg, addr) in [(0x80, base), (0x90, base + 0x1000), (0xa0, base + 0x2000)] {
        let (lo, hi) = halves(addr);
        wr(t, reg, lo);
        wr(t, reg + 4, hi);
    }
    wr(t, 0x44, 1);
    assert_eq!(rd(t, 0x44), 1, "queue {index} not ready after setup");
}

/// The low and high 32 bits of `v`.
pub fn halves(v: u64) -> (u32, u32) {
    let lo = u32::try_from(v & 0xffff_ffff).unwrap();
    let hi = u32::try_from(v >> 32).unwrap();
    (lo, hi)
}

/// Descriptors for a chain at table index `first`, from (addr, len, device-writable).
pub fn chain(descs: &[(u64, u32, bool)], first: u16) -> Vec<RawDescriptor> {
    (first..)
        .zip(descs.iter().enumerate())
        .map(|(i, (n, &(addr, len, writable)))| {
            let last = n + 1 == descs.len();
            let flags = if writable { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            let next = if last { 0 } else { i + 1 };
            RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
        })
        .collect()
}

/// The driver's side of one split queue on guest memory: adds chains, kicks the device's
/// notification eventfd, waits for used entries.
pub struct DriverQueue<'a> {
    /// The rings.
    pub mq: MockSplitQueue<'a, GuestMem>,
    kick: EventFd,
    next_desc: u16,
    chains: u16,
    seen: u16,
}

impl<'a> DriverQueue<'a> {
    /// A queue of `size` entries whose rings start at `addr`; `kick` is its notification
    /// eventfd.
    pub fn new(mem: &'a GuestMem, addr: u64, size: u16, kick: EventFd) -> Self {
        DriverQueue {
            mq: MockSplitQueue::create(mem, GuestAddress(addr), size),
            kick,
            next_desc: 0,
            chains: 0,
            seen: 0,
        }
    }

    /// The registers the driver writes for this queue (QueueNumMax = size).
    pub fn config(&self, size: u16) -> QueueConfig {
        queue_config(&self.mq, size, size)
    }

    /// The descriptor index the next chain starts at.
    pub fn next_desc(&self) -> u16 {
        self.next_desc
    }

    /// Makes a chain of (addr, len, device-writable) available, without a kick.
    pub fn add(&mut self, descs: &[(u64, u32, bool)]) {
        let raw = chain(descs, self.next_desc);
        self.mq.add_desc_chains(&raw, self.next_desc).unwrap();
        self.next_desc += u16::try_from(descs.len()).unwrap();
        self.chains += 1;
    }

    /// Notifies the device (the guest's QueueNotify write).
    pub fn kick(&self) {
        self.kick.write(1).unwrap();
    }

    /// The used ring's index.
    pub fn used_idx(&self) -> u16 {
        u16::from_le(self.mq.used().idx().load())
    }

    /// Used entries taken so far with [`DriverQueue::next_used`].
    pub fn seen(&self) -> u16 {
        self.seen
    }

    /// Waits for the next used entry and takes it.
    pub fn next_used(&mut self, what: &str) -> VirtqUsedElem {
        wait_until(what, || self.used_idx() != self.seen);
        let elem = self
            .mq
            .used()
            .ring()
            .ref_at(usize::from(self.seen))
            .unwrap()
            .load();
        self.seen += 1;
        elem
    }

    /// Waits until every chain added is used, and takes them all.
    pub fn wait_all_used(&mut self, what: &str) {
        wait_until(what, || self.used_idx() == self.chains);
        self.seen = self.chains;
    }
}

/// Queue registers for the rings of `mq`, ready.
pub fn queue_config(mq: &MockSplitQueue<'_, GuestMem>, max_size: u16, size: u16) -> QueueConfig {
    QueueConfig {
        max_size,
        size,
        ready: true,
        desc: mq.desc_table_addr().0,
        avail: mq.avail_addr().0,
        used: mq.used_addr().0,
    }
}

/// What the transport hands a device on DRIVER_OK.
pub fn activation(
    mem: &GuestMem,
    queues: Vec<virtio_queue::Queue>,
    queue_evts: &[EventFd],
    interrupt: &Arc<Interrupt>,
) -> Activation {
    Activation {
        mem: mem.clone(),
        queues,
        queue_evts: clone_evts(queue_evts),
        interrupt: interrupt.clone(),
    }
}

/// A vsock stream packet header from the guest (CID 3) to the host.
pub fn vsock_guest_header(op: u16, src_port: u32, dst_port: u32, buf_alloc: u32) -> Header {
    Header {
        src_cid: 3,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        type_: TYPE_STREAM,
        op,
        buf_alloc,
        ..Header::default()
    }
}
