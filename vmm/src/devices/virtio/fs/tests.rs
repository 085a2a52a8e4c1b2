//! The device against a scripted back end: negotiation, the message sequence on DRIVER_OK
//! (through the real MMIO transport), shared guest memory, kicks, calls → interrupts, reset,
//! a failing request and a back end that hangs up.

use std::sync::Arc;
use std::time::Duration;

use std::fs::File;
use std::io::{Read, Write};
use vhost::vhost_user::message::FrontendReq as R;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::EventFd;

use super::fake_backend::{code, Fake, Msg, Script, NEED_REPLY};
use super::*;
use crate::devices::bus::BusDevice;
use crate::devices::virtio::test_utils::{negotiate, rd, setup_queue, transport, wait_until, wr};
use crate::devices::virtio::*;
use crate::kvm::memory::{create_guest_memory, GuestMem};

const F_INDIRECT: u64 = 1 << 28;
const F_EVENT_IDX: u64 = 1 << 29;
const F_PROTOCOL: u64 = 1 << 30;
const F_LOG_ALL: u64 = 1 << 26;
const F_VERSION_1: u64 = 1 << 32;
const P_MQ: u64 = 1 << 0;
const P_REPLY_ACK: u64 = 1 << 3;
const P_CONFIG: u64 = 1 << 9;

/// What virtiofsd offers.
fn virtiofsd_like() -> Script {
    Script {
        features: F_VERSION_1 | F_INDIRECT | F_EVENT_IDX | F_PROTOCOL | F_LOG_ALL,
        protocol: P_MQ | P_REPLY_ACK | P_CONFIG | (1 << 5) | (1 << 6),
        queue_num: 2,
        fail: Vec::new(),
    }
}

fn codes(msgs: &[Msg]) -> Vec<u32> {
    msgs.iter().map(|m| m.code).collect()
}

fn connect(script: Script, config: &FsConfig) -> (Fake, Result<Backend, FsError>) {
    let (fake, stream) = Fake::start(script);
    let b = Backend::from_stream(stream, config.socket.clone(), config.num_queues());
    (fake, b)
}

#[test]
fn config_space_layout() {
    let c = config_space("shared", 1);
    assert_eq!(&c[..6], b"shared");
    assert!(c[6..36].iter().all(|&b| b == 0));
    assert_eq!(&c[36..], &[1, 0, 0, 0]);
    let full = "t".repeat(36);
    let c = config_space(&full, 3);
    assert_eq!(&c[..36], full.as_bytes());
    assert_eq!(u32::from_le_bytes(c[36..].try_into().unwrap()), 3);
}

#[test]
fn negotiation_at_connect() {
    let config = FsConfig::new("shared", "/run/fs.sock");
    let (fake, b) = connect(virtiofsd_like(), &config);
    let b = b.unwrap();
    let msgs = fake.drain();
    assert_eq!(
        codes(&msgs),
        [
            code(R::SET_OWNER),
            code(R::GET_FEATURES),
            code(R::GET_PROTOCOL_FEATURES),
            code(R::SET_PROTOCOL_FEATURES),
            code(R::GET_QUEUE_NUM),
        ]
    );
    // Only MQ and REPLY_ACK are taken.
    assert_eq!(msgs[3].u64_at(0), P_MQ | P_REPLY_ACK);
    // The guest sees the ring features, not the vhost-only ones.
    assert_eq!(b.guest_features(), F_VERSION_1 | F_INDIRECT | F_EVENT_IDX);
}

#[test]
fn negotiation_failures() {
    let mut config = FsConfig::new("shared", "/run/fs.sock");
    config.request_queues = 2;
    let (_fake, b) = connect(virtiofsd_like(), &config);
    let e = b.unwrap_err();
    assert!(
        matches!(e, FsError::TooFewQueues { want: 3, have: 2 }),
        "{e}"
    );

    let config = FsConfig::new("shared", "/run/fs.sock");
    let mut s = virtiofsd_like();
    s.features &= !F_VERSION_1;
    let e = connect(s, &config).1.unwrap_err();
    assert_eq!(
        e.to_string(),
        "the back end does not offer VIRTIO_F_VERSION_1"
    );
    let mut s = virtiofsd_like();
    s.features &= !F_PROTOCOL;
    let e = connect(s, &config).1.unwrap_err();
    assert!(e.to_string().contains("PROTOCOL_FEATURES"), "{e}");

    // A back end that closes the connection at once.
    let (fake, stream) = Fake::start(virtiofsd_like());
    fake.peer.shutdown(std::net::Shutdown::Both).unwrap();
    let e = Backend::from_stream(stream, "/s".into(), 2).unwrap_err();
    assert!(
        e.to_string().starts_with("vhost-user SET_OWNER failed"),
        "{e}"
    );
}

#[test]
fn missing_socket_is_a_clear_error() {
    let e = Backend::connect(std::path::Path::new("/nonexistent/fs.sock"), 2).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot connect to the vhost-user-fs socket /nonexistent/fs.sock (is virtiofsd running?)"
    );
    // The cause is the source, printed once by the chain.
    assert_eq!(
        sandpod_vmconfig::conventions::ErrorChain(&e).to_string(),
        "cannot connect to the vhost-user-fs socket /nonexistent/fs.sock (is virtiofsd \
         running?): No such file or directory (os error 2)"
    );
}

#[test]
fn guest_memory_is_shared_memfd() {
    let mem = create_guest_memory(8 << 20).unwrap();
    let regions = frontend::memory_regions(&mem).unwrap();
    assert_eq!(regions.len(), 1);
    let r = mem.find_region(GuestAddress(0)).unwrap();
    assert_ne!(r.get_mmap().flags() & libc::MAP_SHARED, 0);
    assert_eq!(regions[0].guest_phys_addr, 0);
    assert_eq!(regions[0].memory_size, 8 << 20);
    assert_eq!(regions[0].mmap_offset, 0);
    assert_eq!(regions[0].userspace_addr, r.as_ptr() as u64);
    assert_eq!(
        std::fs::read_link(format!("/proc/self/fd/{}", regions[0].mmap_handle))
            .unwrap()
            .to_string_lossy(),
        "/memfd:sandpod-guest-ram (deleted)"
    );
}

struct Rig {
    t: MmioTransport,
    fake: Fake,
    mem: GuestMem,
    irq: EventFd,
    interrupt: Arc<Interrupt>,
    notify: Vec<EventFd>,
}

fn rig(script: Script) -> Rig {
    let mut config = FsConfig::new("shared", "/run/fs.sock");
    config.queue_size = 256;
    let (fake, b) = connect(script, &config);
    let _ = fake.drain();
    let dev = Fs::with_backend(&config, b.unwrap());
    let mem = create_guest_memory(16 << 20).unwrap();
    let rig = transport(Box::new(dev), mem.clone());
    Rig {
        t: rig.t,
        fake,
        mem,
        irq: rig.irq,
        interrupt: rig.interrupt,
        notify: rig.notify,
    }
}

fn queue_base(i: u32) -> u64 {
    0x10_0000 * (u64::from(i) + 1)
}

/// What Linux's virtio_mmio + virtio_fs drivers do, up to DRIVER_OK.
fn drive_to_driver_ok(t: &mut MmioTransport) {
    wr(t, 0x14, 1);
    assert_eq!(rd(t, 0x10), 1); // VERSION_1
    wr(t, 0x14, 0);
    assert_eq!(u64::from(rd(t, 0x10)), F_INDIRECT | F_EVENT_IDX);
    negotiate(t, F_VERSION_1 | F_EVENT_IDX);
    let s = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
    assert_eq!(rd(t, 0x70), s);
    for q in 0..2 {
        wr(t, 0x30, q);
        assert_eq!(rd(t, 0x34), 256);
        setup_queue(t, q, 128, queue_base(q));
    }
    wr(t, 0x70, s | STATUS_DRIVER_OK);
}

/// Reads an eventfd the back end got (non-blocking: None when not signalled).
fn evt_read(mut f: &File) -> Option<u64> {
    let mut b = [0u8; 8];
    f.read_exact(&mut b).ok().map(|()| u64::from_ne_bytes(b))
}

fn evt_write(mut f: &File) {
    f.write_all(&1u64.to_ne_bytes()).unwrap();
}

fn host_addr(mem: &GuestMem, gpa: u64) -> u64 {
    mem.get_host_address(GuestAddress(gpa)).unwrap() as u64
}

#[test]
fn driver_ok_sets_up_the_backend() {
    let mut r = rig(virtiofsd_like());
    // Config space through the transport: the tag, then num_request_queues.
    let mut tag = [0u8; 8];
    r.t.read(0x100, &mut tag);
    assert_eq!(&tag, b"shared\0\0");
    assert_eq!(rd(&mut r.t, 0x100 + 36), 1);
    assert_eq!(rd(&mut r.t, 0x08), 26);
    r.mem
        .write_obj(0x5eed_f00d_u32, GuestAddress(0x7000))
        .unwrap();

    drive_to_driver_ok(&mut r.t);
    assert_eq!(rd(&mut r.t, 0x70) & STATUS_DEVICE_NEEDS_RESET, 0);
    let msgs = r.fake.drain();
    let mut want = vec![code(R::SET_FEATURES), code(R::SET_MEM_TABLE)];
    for _ in 0..2 {
        want.extend(
            [
                R::SET_VRING_NUM,
                R::SET_VRING_ADDR,
                R::SET_VRING_BASE,
                R::SET_VRING_CALL,
                R::SET_VRING_KICK,
                R::SET_VRING_ENABLE,
            ]
            .map(code),
        );
    }
    assert_eq!(codes(&msgs), want);
    assert!(msgs.iter().all(|m| m.flags & NEED_REPLY != 0));
    // The driver's features plus PROTOCOL_FEATURES.
    assert_eq!(msgs[0].u64_at(0), F_VERSION_1 | F_EVENT_IDX | F_PROTOCOL);

    // SET_MEM_TABLE: one region, the memfd, at its offset; the back end's mapping of it
    // sees what the guest wrote.
    let mt = &msgs[1];
    assert_eq!(mt.u32_at(0), 1);
    assert_eq!(mt.files.len(), 1);
    let (gpa, size, uaddr, off) = (mt.u64_at(8), mt.u64_at(16), mt.u64_at(24), mt.u64_at(32));
    assert_eq!((gpa, size, off), (0, 16 << 20, 0));
    assert_eq!(uaddr, host_addr(&r.mem, 0));
    let backend_view = vm_memory::GuestMemoryMmap::<()>::from_ranges_with_files([(
        GuestAddress(0),
        usize::try_from(size).unwrap(),
        Some(vm_memory::FileOffset::new(
            mt.files[0].try_clone().unwrap(),
            off,
        )),
    )])
    .unwrap();
    assert_eq!(
        backend_view.read_obj::<u32>(GuestAddress(0x7000)).unwrap(),
        0x5eed_f00d
    );
    backend_view.write_obj(7u8, GuestAddress(0x7100)).unwrap();
    assert_eq!(r.mem.read_obj::<u8>(GuestAddress(0x7100)).unwrap(), 7);

    // Per queue: size, ring addresses in our address space, base 0, one fd each for
    // call and kick, enable.
    for q in 0..2u32 {
        let m = &msgs[2 + 6 * q as usize..8 + 6 * q as usize];
        assert_eq!((m[0].u32_at(0), m[0].u32_at(4)), (q, 128));
        let base = queue_base(q);
        assert_eq!(m[1].u32_at(0), q);
        assert_eq!(m[1].u64_at(8), host_addr(&r.mem, base));
        assert_eq!(m[1].u64_at(16), host_addr(&r.mem, base + 0x2000));
        assert_eq!(m[1].u64_at(24), host_addr(&r.mem, base + 0x1000));
        assert_eq!((m[2].u32_at(0), m[2].u32_at(4)), (q, 0));
        assert_eq!((m[3].u64_at(0), m[3].files.len()), (u64::from(q), 1));
        assert_eq!((m[4].u64_at(0), m[4].files.len()), (u64::from(q), 1));
        assert_eq!((m[5].u32_at(0), m[5].u32_at(4)), (q, 1));
    }

    // Kick: the guest's QueueNotify write (ioeventfd) reaches the back end's kick fd.
    let kick = |q: usize| &msgs[6 + 6 * q].files[0];
    r.notify[1].write(1).unwrap();
    assert_eq!(evt_read(kick(1)), Some(1));
    assert_eq!(evt_read(kick(0)), None);
    wr(&mut r.t, 0x50, 0); // a notify that reaches the bus goes to the same eventfd
    assert_eq!(evt_read(kick(0)), Some(1));

    // Call: the back end's signal sets InterruptStatus bit 0, then the irqfd fires.
    assert_eq!(rd(&mut r.t, 0x60), 0);
    let call = &msgs[5 + 6].files[0];
    evt_write(call);
    wait_until("no interrupt after a call", || r.irq.read().is_ok());
    assert_eq!(rd(&mut r.t, 0x60), INT_USED_RING);
    wr(&mut r.t, 0x64, INT_USED_RING);
    assert_eq!(rd(&mut r.t, 0x60), 0);

    // Driver reset: the rings are disabled and taken back; a new DRIVER_OK sets them up again.
    wr(&mut r.t, 0x70, 0);
    let msgs = r.fake.drain();
    let want = [
        R::SET_VRING_ENABLE,
        R::GET_VRING_BASE,
        R::SET_VRING_ENABLE,
        R::GET_VRING_BASE,
    ]
    .map(code);
    assert_eq!(codes(&msgs), want);
    assert_eq!((msgs[2].u32_at(0), msgs[2].u32_at(4)), (1, 0));
    // After a reset, calls no longer raise interrupts (the worker is gone).
    evt_write(call);
    std::thread::sleep(Duration::from_millis(100));
    assert!(r.irq.read().is_err());
    drive_to_driver_ok(&mut r.t);
    assert_eq!(r.fake.drain().len(), 14);
    assert_eq!(rd(&mut r.t, 0x70) & STATUS_DEVICE_NEEDS_RESET, 0);
}

#[test]
fn failed_request_marks_the_device_broken() {
    let mut s = virtiofsd_like();
    s.fail = vec![R::SET_MEM_TABLE];
    let mut r = rig(s);
    drive_to_driver_ok(&mut r.t);
    assert_ne!(rd(&mut r.t, 0x70) & STATUS_DEVICE_NEEDS_RESET, 0);
    assert_eq!(
        codes(&r.fake.drain()),
        [code(R::SET_FEATURES), code(R::SET_MEM_TABLE)]
    );
}

#[test]
fn backend_hang_up_marks_the_device_broken() {
    let mut r = rig(virtiofsd_like());
    drive_to_driver_ok(&mut r.t);
    assert!(!r.interrupt.needs_reset());
    r.fake.peer.shutdown(std::net::Shutdown::Both).unwrap();
    wait_until("hang-up not noticed", || r.interrupt.needs_reset());
    assert_ne!(rd(&mut r.t, 0x70) & STATUS_DEVICE_NEEDS_RESET, 0);
    // The config change interrupt tells the driver.
    assert_ne!(rd(&mut r.t, 0x60) & INT_CONFIG, 0);
    // A reset and a new DRIVER_OK fail cleanly (no reconnection), without hanging.
    wr(&mut r.t, 0x70, 0);
    drive_to_driver_ok(&mut r.t);
    assert_ne!(rd(&mut r.t, 0x70) & STATUS_DEVICE_NEEDS_RESET, 0);
}
