//! The device end to end: a mock driver on guest memory, the worker thread, real Unix sockets.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::packet::*;
use super::unix::bind_listener;
use super::*;
use crate::devices::virtio::queue::QueueConfig;
use crate::devices::virtio::{Interrupt, STATUS_DEVICE_NEEDS_RESET, VIRTIO_RING_F_EVENT_IDX};
use crate::kvm::memory::GuestMem;

const WRITE: u16 = 2;
const RX_BUF: u32 = 4096 + HDR_SIZE as u32;

struct Driver<'a> {
    mem: &'a GuestMem,
    rx: MockSplitQueue<'a, GuestMem>,
    tx: MockSplitQueue<'a, GuestMem>,
    rx_next: u16,
    tx_next: u16,
    rx_seen: u16,
    tx_seen: u16,
    evts: Vec<EventFd>,
}

impl<'a> Driver<'a> {
    fn new(mem: &'a GuestMem, evts: Vec<EventFd>) -> Self {
        Driver {
            mem,
            rx: MockSplitQueue::create(mem, GuestAddress(0), 256),
            tx: MockSplitQueue::create(mem, GuestAddress(0x1_0000), 256),
            rx_next: 0,
            tx_next: 0,
            rx_seen: 0,
            tx_seen: 0,
            evts,
        }
    }

    fn post_rx(&mut self, n: u16) {
        for _ in 0..n {
            let i = self.rx_next;
            let addr = 0x10_0000 + u64::from(i) * 0x2000;
            let d = RawDescriptor::from(SplitDescriptor::new(addr, RX_BUF, WRITE, 0));
            self.rx.add_desc_chains(&[d], i).unwrap();
            self.rx_next += 1;
        }
        self.evts[0].write(1).unwrap();
    }

    fn send(&mut self, mut hdr: Header, payload: &[u8]) {
        let i = self.tx_next;
        let addr = 0x40_0000 + u64::from(i) * 0x1_0000;
        hdr.len = payload.len() as u32;
        self.mem
            .write_slice(&hdr.to_bytes(), GuestAddress(addr))
            .unwrap();
        self.mem
            .write_slice(payload, GuestAddress(addr + HDR_SIZE as u64))
            .unwrap();
        let len = (HDR_SIZE + payload.len()) as u32;
        let d = RawDescriptor::from(SplitDescriptor::new(addr, len, 0, 0));
        self.tx.add_desc_chains(&[d], i).unwrap();
        self.tx_next += 1;
        self.evts[1].write(1).unwrap();
    }

    /// Waits for the next rx packet.
    fn recv(&mut self) -> (Header, Vec<u8>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while u16::from_le(self.rx.used().idx().load()) == self.rx_seen {
            assert!(Instant::now() < deadline, "no rx packet");
            std::thread::sleep(Duration::from_millis(5));
        }
        let elem = self
            .rx
            .used()
            .ring()
            .ref_at(self.rx_seen as usize)
            .unwrap()
            .load();
        self.rx_seen += 1;
        let addr = 0x10_0000 + u64::from(elem.id()) * 0x2000;
        let mut b = [0u8; HDR_SIZE];
        self.mem.read_slice(&mut b, GuestAddress(addr)).unwrap();
        let h = Header::parse(&b);
        assert_eq!(elem.len(), HDR_SIZE as u32 + h.len);
        let mut p = vec![0u8; h.len as usize];
        self.mem
            .read_slice(&mut p, GuestAddress(addr + HDR_SIZE as u64))
            .unwrap();
        (h, p)
    }

    fn wait_tx_used(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while u16::from_le(self.tx.used().idx().load()) != self.tx_next {
            assert!(Instant::now() < deadline, "tx not consumed");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.tx_seen = self.tx_next;
    }
}

fn hdr(op: u16, src_port: u32, dst_port: u32) -> Header {
    Header {
        src_cid: 3,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        type_: TYPE_STREAM,
        op,
        buf_alloc: 64 * 1024,
        ..Header::default()
    }
}

struct Setup {
    dev: Vsock,
    mem: GuestMem,
    evts: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    path: std::path::PathBuf,
    _cleanup: super::unix::UdsCleanup,
}

fn setup(name: &str) -> Setup {
    let path = std::env::temp_dir().join(format!("spv-{}-{name}", std::process::id()));
    let (listener, cleanup) = bind_listener(&path).unwrap();
    let mem: GuestMem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let evts: Vec<EventFd> = (0..3)
        .map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap())
        .collect();
    let interrupt = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()));
    Setup {
        dev: Vsock::new(3, path.clone(), listener),
        mem,
        evts,
        interrupt,
        path,
        _cleanup: cleanup,
    }
}

fn activate(s: &mut Setup, driver: &Driver<'_>) {
    activate_with(s, driver, 1 << 32);
}

fn activate_with(s: &mut Setup, driver: &Driver<'_>, features: u64) {
    let ev = MockSplitQueue::create(&s.mem, GuestAddress(0x2_0000), 256);
    let queues = [&driver.rx, &driver.tx, &ev]
        .iter()
        .map(|mq| {
            QueueConfig {
                max_size: 256,
                size: 256,
                ready: true,
                desc: mq.desc_table_addr().0,
                avail: mq.avail_addr().0,
                used: mq.used_addr().0,
            }
            .build(&s.mem)
            .unwrap()
        })
        .collect::<Vec<_>>();
    assert!(queues.iter().all(|q| q.ready()));
    let a = Activation {
        mem: s.mem.clone(),
        queues,
        queue_evts: s.evts.iter().map(|e| e.try_clone().unwrap()).collect(),
        interrupt: s.interrupt.clone(),
    };
    s.dev.activate(features, a).unwrap();
}

fn clone_evts(evts: &[EventFd]) -> Vec<EventFd> {
    evts.iter().map(|e| e.try_clone().unwrap()).collect()
}

#[test]
fn config_space_holds_the_guest_cid() {
    let s = setup("cfg");
    let mut b = [0u8; 8];
    s.dev.read_config(0, &mut b);
    assert_eq!(u64::from_le_bytes(b), 3);
    assert_eq!(s.dev.device_type(), 19);
    assert_eq!(s.dev.queue_max_sizes().len(), 3);
}

#[test]
fn guest_initiated_connection() {
    let mut s = setup("gi");
    let mem = s.mem.clone();
    let mut d = Driver::new(&mem, clone_evts(&s.evts));
    activate(&mut s, &d);
    d.post_rx(16);

    // Nobody listens on host port 1025 yet: RST.
    d.send(hdr(OP_REQUEST, 5000, 1025), &[]);
    let (h, _) = d.recv();
    assert_eq!((h.op, h.src_port, h.dst_port), (OP_RST, 1025, 5000));

    let host = UnixListener::bind(format!("{}_1025", s.path.display())).unwrap();
    d.send(hdr(OP_REQUEST, 5001, 1025), &[]);
    let (h, _) = d.recv();
    assert_eq!(
        (h.op, h.src_cid, h.dst_cid, h.dst_port),
        (OP_RESPONSE, 2, 3, 5001)
    );
    assert_eq!(h.buf_alloc, super::connection::CONN_BUF_SIZE);
    let (mut peer, _) = host.accept().unwrap();

    d.send(hdr(OP_RW, 5001, 1025), b"hello host");
    let mut b = [0u8; 10];
    peer.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello host");

    peer.write_all(b"hello guest").unwrap();
    let (h, p) = d.recv();
    assert_eq!((h.op, p.as_slice()), (OP_RW, &b"hello guest"[..]));
    assert_eq!(h.fwd_cnt, 10);

    // The host closes: the guest hears SHUTDOWN(send); the guest closes: RST.
    drop(peer);
    let (h, _) = d.recv();
    assert_eq!((h.op, h.flags), (OP_SHUTDOWN, SHUTDOWN_SEND));
    let mut sd = hdr(OP_SHUTDOWN, 5001, 1025);
    sd.flags = SHUTDOWN_SEND | SHUTDOWN_RCV;
    d.send(sd, &[]);
    let (h, _) = d.recv();
    assert_eq!(h.op, OP_RST);
    d.wait_tx_used();
    std::fs::remove_file(format!("{}_1025", s.path.display())).unwrap();
    s.dev.reset();
}

#[test]
fn host_initiated_connection_and_credit() {
    let mut s = setup("hi");
    let mem = s.mem.clone();
    let mut d = Driver::new(&mem, clone_evts(&s.evts));
    activate(&mut s, &d);
    d.post_rx(64);

    let mut client = UnixStream::connect(&s.path).unwrap();
    client.write_all(b"CONNECT 1024\n").unwrap();
    let (h, _) = d.recv();
    assert_eq!((h.op, h.dst_port), (OP_REQUEST, 1024));
    assert!(h.src_port >= 1 << 30);
    let host_port = h.src_port;
    // Grant only 6000 bytes of credit.
    let mut resp = hdr(OP_RESPONSE, 1024, host_port);
    resp.buf_alloc = 6000;
    d.send(resp, &[]);
    let mut line = [0u8; 14];
    client.read_exact(&mut line).unwrap();
    assert_eq!(&line, format!("OK {host_port}\n").as_bytes());

    client.write_all(&[9u8; 10_000]).unwrap();
    let mut got = 0;
    while got < 6000 {
        let (h, p) = d.recv();
        assert_eq!(h.op, OP_RW);
        assert!(p.len() <= 4096);
        got += p.len();
    }
    assert_eq!(got, 6000);
    // Out of credit: the device asks once and sends no more data.
    let (h, _) = d.recv();
    assert_eq!(h.op, OP_CREDIT_REQUEST);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(u16::from_le(d.rx.used().idx().load()), d.rx_seen);
    // The guest consumed everything: the rest flows.
    let mut upd = hdr(OP_CREDIT_UPDATE, 1024, host_port);
    upd.buf_alloc = 6000;
    upd.fwd_cnt = 6000;
    d.send(upd, &[]);
    while got < 10_000 {
        let (h, p) = d.recv();
        assert_eq!(h.op, OP_RW);
        got += p.len();
    }
    assert_eq!(got, 10_000);
    // Guest RST closes the client.
    d.send(hdr(OP_RST, 1024, host_port), &[]);
    let mut b = [0u8; 1];
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(client.read(&mut b).unwrap(), 0);
    s.dev.reset();
}

#[test]
fn malformed_tx_marks_device_broken() {
    let mut s = setup("bad");
    let mem = s.mem.clone();
    let d = Driver::new(&mem, clone_evts(&s.evts));
    activate(&mut s, &d);
    // A descriptor pointing outside guest memory.
    let desc = RawDescriptor::from(SplitDescriptor::new(0xffff_0000, 64, 0, 0));
    d.tx.add_desc_chains(&[desc], 0).unwrap();
    d.evts[1].write(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.interrupt.needs_reset() {
        assert!(Instant::now() < deadline, "device not marked broken");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(STATUS_DEVICE_NEEDS_RESET, 0x40);
    s.dev.reset();
}

/// With EVENT_IDX (queue size 256): the driver's used_event (after its available ring)
/// decides interrupts, and the device's avail_event (after its used ring) asks for kicks.
#[test]
fn event_idx_suppresses_interrupts_and_asks_for_kicks() {
    let mut s = setup("ei");
    let mem = s.mem.clone();
    let mut d = Driver::new(&mem, clone_evts(&s.evts));
    let used_event =
        |mq: &MockSplitQueue<'_, GuestMem>| GuestAddress(mq.avail_addr().0 + 4 + 2 * 256);
    let avail_event =
        |mq: &MockSplitQueue<'_, GuestMem>| GuestAddress(mq.used_addr().0 + 4 + 8 * 256);
    mem.write_obj(1000u16.to_le(), used_event(&d.tx)).unwrap();
    mem.write_obj(1000u16.to_le(), used_event(&d.rx)).unwrap();
    activate_with(&mut s, &d, (1 << 32) | (1 << VIRTIO_RING_F_EVENT_IDX));
    assert_ne!(s.dev.device_features() & (1 << VIRTIO_RING_F_EVENT_IDX), 0);

    // One rx buffer, two RSTs to deliver (nobody listens on host ports 7 and 8).
    d.post_rx(1);
    d.send(hdr(OP_REQUEST, 5000, 7), &[]);
    d.send(hdr(OP_REQUEST, 5001, 8), &[]);
    assert_eq!(d.recv().0.dst_port, 5000);
    d.wait_tx_used();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(s.interrupt.status(), 0, "interrupted before used_event");
    // tx drained: kick me for the next chain; rx ran dry with an RST pending: kick me when
    // you add a buffer.
    assert_eq!(u16::from_le(mem.read_obj(avail_event(&d.tx)).unwrap()), 2);
    assert_eq!(u16::from_le(mem.read_obj(avail_event(&d.rx)).unwrap()), 1);

    // The driver wants an interrupt after the next used rx buffer.
    mem.write_obj(1u16.to_le(), used_event(&d.rx)).unwrap();
    d.post_rx(1);
    assert_eq!(d.recv().0.dst_port, 5001);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.interrupt.status() & crate::devices::virtio::INT_USED_RING == 0 {
        assert!(Instant::now() < deadline, "no interrupt at used_event");
        std::thread::sleep(Duration::from_millis(5));
    }
    s.dev.reset();
}
