//! The device end to end: a mock driver on guest memory, the worker thread, real Unix sockets.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Duration;

use virtio_queue::mock::MockSplitQueue;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::packet::*;
use super::unix::bind_listener;
use super::*;
use crate::devices::virtio::test_utils::{
    activation, eventfd, eventfds, guest_mem, vsock_guest_header, wait_until, DriverQueue,
};
use crate::devices::virtio::{Interrupt, STATUS_DEVICE_NEEDS_RESET, VIRTIO_RING_F_EVENT_IDX};
use crate::kvm::memory::GuestMem;

/// The header's size, as descriptor lengths count it.
const HDR_LEN: u32 = 44;
const _: () = assert!(HDR_LEN as usize == HDR_SIZE);
const RX_BUF: u32 = 4096 + HDR_LEN;

/// The guest's driver: rx buffers of RX_BUF bytes at 0x10_0000 + 8 KiB·(descriptor index),
/// tx packets at 0x40_0000 + 64 KiB·(descriptor index), one descriptor each.
struct Driver<'a> {
    mem: &'a GuestMem,
    rx: DriverQueue<'a>,
    tx: DriverQueue<'a>,
    ev: DriverQueue<'a>,
}

impl<'a> Driver<'a> {
    fn new(mem: &'a GuestMem, evts: &[EventFd]) -> Self {
        let queue = |addr, i: usize| DriverQueue::new(mem, addr, 256, evts[i].try_clone().unwrap());
        Driver {
            mem,
            rx: queue(0, 0),
            tx: queue(0x1_0000, 1),
            ev: queue(0x2_0000, 2),
        }
    }

    fn rx_addr(index: u32) -> u64 {
        0x10_0000 + u64::from(index) * 0x2000
    }

    fn post_rx(&mut self, n: u16) {
        for _ in 0..n {
            let addr = Self::rx_addr(u32::from(self.rx.next_desc()));
            self.rx.add(&[(addr, RX_BUF, true)]);
        }
        self.rx.kick();
    }

    fn send(&mut self, mut hdr: Header, payload: &[u8]) {
        let addr = 0x40_0000 + u64::from(self.tx.next_desc()) * 0x1_0000;
        hdr.len = u32::try_from(payload.len()).unwrap();
        self.mem
            .write_slice(&hdr.to_bytes(), GuestAddress(addr))
            .unwrap();
        self.mem
            .write_slice(payload, GuestAddress(addr + HDR_SIZE as u64))
            .unwrap();
        self.tx.add(&[(addr, HDR_LEN + hdr.len, false)]);
        self.tx.kick();
    }

    /// Waits for the next rx packet.
    fn recv(&mut self) -> (Header, Vec<u8>) {
        let elem = self.rx.next_used("no rx packet");
        let addr = Self::rx_addr(elem.id());
        let mut b = [0u8; HDR_SIZE];
        self.mem.read_slice(&mut b, GuestAddress(addr)).unwrap();
        let h = Header::parse(&b);
        assert_eq!(elem.len(), HDR_LEN + h.len);
        let mut p = vec![0u8; h.len as usize];
        self.mem
            .read_slice(&mut p, GuestAddress(addr + HDR_SIZE as u64))
            .unwrap();
        (h, p)
    }

    fn wait_tx_used(&mut self) {
        self.tx.wait_all_used("tx not consumed");
    }
}

fn hdr(op: u16, src_port: u32, dst_port: u32) -> Header {
    vsock_guest_header(op, src_port, dst_port, 64 * 1024)
}

struct Setup {
    dev: Vsock,
    mem: GuestMem,
    evts: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    path: std::path::PathBuf,
    _cleanup: super::unix::UdsCleanup,
}

impl Drop for Setup {
    /// Stops the device thread (before the socket goes).
    fn drop(&mut self) {
        self.dev.reset();
    }
}

/// A device on `mem`, not activated.
fn setup(name: &str, mem: &GuestMem) -> Setup {
    let path = std::env::temp_dir().join(format!("spv-{}-{name}", std::process::id()));
    let (listener, cleanup) = bind_listener(&path).unwrap();
    Setup {
        dev: Vsock::new(3, path.clone(), listener),
        mem: mem.clone(),
        evts: eventfds(3),
        interrupt: Arc::new(Interrupt::new(eventfd())),
        path,
        _cleanup: cleanup,
    }
}

/// A device and its driver on `mem`, activated without EVENT_IDX.
fn start<'a>(name: &str, mem: &'a GuestMem) -> (Setup, Driver<'a>) {
    let mut s = setup(name, mem);
    let d = Driver::new(mem, &s.evts);
    activate_with(&mut s, &d, 1 << 32);
    (s, d)
}

fn activate_with(s: &mut Setup, d: &Driver<'_>, features: u64) {
    let queues = [&d.rx, &d.tx, &d.ev]
        .iter()
        .map(|q| q.config(256).build(&s.mem).unwrap())
        .collect::<Vec<_>>();
    assert!(queues.iter().all(|q| q.ready()));
    let a = activation(&s.mem, queues, &s.evts, &s.interrupt);
    s.dev.activate(features, a).unwrap();
}

#[test]
fn config_space_holds_the_guest_cid() {
    let s = setup("cfg", &guest_mem(16 << 20));
    let mut b = [0u8; 8];
    s.dev.read_config(0, &mut b);
    assert_eq!(u64::from_le_bytes(b), 3);
    assert_eq!(s.dev.device_type(), 19);
    assert_eq!(s.dev.queue_max_sizes().len(), 3);
}

#[test]
fn guest_initiated_connection() {
    let mem = guest_mem(16 << 20);
    let (s, mut d) = start("gi", &mem);
    d.post_rx(16);

    // Nobody listens on host port 1025 yet: RST.
    d.send(hdr(OP_REQUEST, 5000, 1025), &[]);
    let (h, _) = d.recv();
    assert_eq!((h.op, h.src_port, h.dst_port), (OP_RST, 1025, 5000));

    let host = UnixListener::bind(sandpod_vmconfig::uds_port_path(&s.path, 1025)).unwrap();
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
    std::fs::remove_file(sandpod_vmconfig::uds_port_path(&s.path, 1025)).unwrap();
}

#[test]
fn host_initiated_connection_and_credit() {
    let mem = guest_mem(16 << 20);
    let (s, mut d) = start("hi", &mem);
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
    assert_eq!(d.rx.used_idx(), d.rx.seen());
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
}

#[test]
fn malformed_tx_marks_device_broken() {
    let mem = guest_mem(16 << 20);
    let (s, mut d) = start("bad", &mem);
    // A descriptor pointing outside guest memory.
    d.tx.add(&[(0xffff_0000, 64, false)]);
    d.tx.kick();
    wait_until("device not marked broken", || s.interrupt.needs_reset());
    assert_eq!(STATUS_DEVICE_NEEDS_RESET, 0x40);
}

/// With EVENT_IDX (queue size 256): the driver's used_event (after its available ring)
/// decides interrupts, and the device's avail_event (after its used ring) asks for kicks.
#[test]
fn event_idx_suppresses_interrupts_and_asks_for_kicks() {
    let mem = guest_mem(16 << 20);
    let mut s = setup("ei", &mem);
    let mut d = Driver::new(&mem, &s.evts);
    let used_event =
        |mq: &MockSplitQueue<'_, GuestMem>| GuestAddress(mq.avail_addr().0 + 4 + 2 * 256);
    let avail_event =
        |mq: &MockSplitQueue<'_, GuestMem>| GuestAddress(mq.used_addr().0 + 4 + 8 * 256);
    mem.write_obj(1000u16.to_le(), used_event(&d.tx.mq))
        .unwrap();
    mem.write_obj(1000u16.to_le(), used_event(&d.rx.mq))
        .unwrap();
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
    assert_eq!(
        u16::from_le(mem.read_obj(avail_event(&d.tx.mq)).unwrap()),
        2
    );
    assert_eq!(
        u16::from_le(mem.read_obj(avail_event(&d.rx.mq)).unwrap()),
        1
    );

    // The driver wants an interrupt after the next used rx buffer.
    mem.write_obj(1u16.to_le(), used_event(&d.rx.mq)).unwrap();
    d.post_rx(1);
    assert_eq!(d.recv().0.dst_port, 5001);
    wait_until("no interrupt at used_event", || {
        s.interrupt.status() & crate::devices::virtio::INT_USED_RING != 0
    });
}

/// The attack: a tx packet behind an indirect table, VIRTIO_RING_F_INDIRECT_DESC not
/// offered (virtio-queue's iterator would follow the table: up to 65535 reads per chain).
#[test]
fn indirect_tx_chain_marks_device_broken() {
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    const TABLE: u64 = 0x30_0000;
    const PKT: u64 = 0x31_0000;
    let mem = guest_mem(16 << 20);
    let (s, d) = start("indirect", &mem);
    mem.write_slice(&hdr(OP_REQUEST, 5000, 7).to_bytes(), GuestAddress(PKT))
        .unwrap();
    mem.write_obj(
        SplitDescriptor::new(PKT, HDR_LEN, 0, 0),
        GuestAddress(TABLE),
    )
    .unwrap();
    let indirect = SplitDescriptor::new(TABLE, 16, 4, 0);
    d.tx.mq
        .add_desc_chains(&[RawDescriptor::from(indirect)], 0)
        .unwrap();
    d.tx.kick();
    wait_until("device not marked broken", || s.interrupt.needs_reset());
    assert_eq!(d.tx.used_idx(), 0);
}

/// A header-only rx buffer (44 bytes) gets a control packet; the data waits for a buffer
/// with room, and the device never asks for credit the guest already gave.
#[test]
fn header_only_rx_buffer_gets_control_packets() {
    let mem = guest_mem(16 << 20);
    let (s, mut d) = start("hdronly", &mem);
    let host = UnixListener::bind(format!("{}_1025", s.path.display())).unwrap();
    let post_header_only = |d: &mut Driver<'_>| {
        let addr = Driver::rx_addr(u32::from(d.rx.next_desc()));
        d.rx.add(&[(addr, HDR_LEN, true)]);
        d.rx.kick();
    };
    post_header_only(&mut d);
    d.send(hdr(OP_REQUEST, 5001, 1025), &[]);
    assert_eq!(d.recv().0.op, OP_RESPONSE);
    let (mut peer, _) = host.accept().unwrap();
    peer.write_all(b"hello").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    post_header_only(&mut d);
    let (h, p) = d.recv();
    assert_eq!((h.op, p.len()), (OP_CREDIT_UPDATE, 0));
    d.post_rx(1);
    let (h, p) = d.recv();
    assert_eq!((h.op, p.as_slice()), (OP_RW, &b"hello"[..]));
    std::fs::remove_file(format!("{}_1025", s.path.display())).unwrap();
}

#[test]
fn a_restored_device_resets_the_transport_and_holds_rx_until_the_driver_took_it_in() {
    let mem = guest_mem(16 << 20);
    let mut s = setup("rs", &mem);
    let mut d = Driver::new(&mem, &s.evts);
    // The driver's event buffers (as Linux posts 8) and rx buffers.
    for i in 0..8u64 {
        d.ev.add(&[(0x30_0000 + i * 0x100, 4, true)]);
    }
    mem.write_obj(0xffff_ffffu32, GuestAddress(0x30_0000))
        .unwrap();
    d.post_rx(16);
    s.dev.restoring();
    activate_with(&mut s, &d, 1 << 32 | 1 << VIRTIO_RING_F_EVENT_IDX);
    // The event: VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (id 0), 4 bytes, in the first buffer.
    let elem = d.ev.next_used("no transport reset event");
    assert_eq!((elem.id(), elem.len()), (0, 4));
    assert_eq!(mem.read_obj::<u32>(GuestAddress(0x30_0000)).unwrap(), 0);
    // With EVENT_IDX the device asks to be notified once the available index passes 8 (the
    // used ring's avail_event, after its 256 entries): the driver's re-post of the buffer.
    let avail_event = d.ev.config(256).used + 4 + 8 * 256;
    assert_eq!(mem.read_obj::<u16>(GuestAddress(avail_event)).unwrap(), 8);
    // A host connection meanwhile: its request waits for the driver.
    let mut client = UnixStream::connect(&s.path).unwrap();
    client.write_all(b"CONNECT 1024\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        d.rx.used_idx(),
        0,
        "a packet reached the guest before the reset was handled"
    );
    // The driver handled the event: it gives the buffer back and notifies.
    d.ev.add(&[(0x30_0000, 4, true)]);
    d.ev.kick();
    let (h, _) = d.recv();
    assert_eq!((h.op, h.dst_port), (OP_REQUEST, 1024));
}

#[test]
fn a_driver_that_never_takes_the_reset_in_only_delays_rx() {
    let mem = guest_mem(16 << 20);
    let mut s = setup("rt", &mem);
    let mut d = Driver::new(&mem, &s.evts);
    d.ev.add(&[(0x30_0000, 4, true)]);
    d.post_rx(16);
    s.dev.restoring();
    activate_with(&mut s, &d, 1 << 32);
    d.ev.next_used("no transport reset event");
    let mut client = UnixStream::connect(&s.path).unwrap();
    client.write_all(b"CONNECT 1024\n").unwrap();
    // No notification from the driver: after the 2 s hold the request goes anyway.
    let t0 = std::time::Instant::now();
    let (h, _) = d.recv();
    assert_eq!(h.op, OP_REQUEST);
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
}

#[path = "device_flow_tests.rs"]
mod flow;
