//! The device end to end: a mock driver on guest memory, the device thread, a real image file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::request::*;
use super::*;
use crate::config::DiskConfig;
use crate::devices::virtio::test_utils::{activation, eventfd, guest_mem, wait_until, DriverQueue};
use crate::devices::virtio::{Interrupt, VIRTIO_RING_F_EVENT_IDX};
use crate::kvm::memory::GuestMem;

const HDR: u64 = 0x1_0000;
const STATUS: u64 = 0x1_8000;
const DATA: u64 = 0x2_0000;
/// Image: 64 sectors, sector i filled with byte i.
const SECTORS: u64 = 64;

struct Setup {
    dev: Block,
    mem: GuestMem,
    evt: EventFd,
    interrupt: Arc<Interrupt>,
    /// The interrupt's eventfd (one count per used-buffer interrupt).
    irq: EventFd,
    path: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.dev.reset();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn image(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("spblk-dev-{}-{name}.img", std::process::id()));
    let data: Vec<u8> = (0..SECTORS * 512)
        .map(|i| u8::try_from(i / 512).unwrap())
        .collect();
    std::fs::write(&p, data).unwrap();
    p
}

fn setup(name: &str, read_only: bool) -> Setup {
    let path = image(name);
    let disk = disk::DiskImage::open(&DiskConfig {
        path: path.clone(),
        read_only,
    })
    .unwrap();
    let irq = eventfd();
    Setup {
        dev: Block::new(disk),
        mem: guest_mem(1 << 20),
        evt: eventfd(),
        interrupt: Arc::new(Interrupt::new(irq.try_clone().unwrap())),
        irq,
        path,
    }
}

struct Driver<'a> {
    mem: &'a GuestMem,
    q: DriverQueue<'a>,
}

impl<'a> Driver<'a> {
    fn new(s: &'a mut Setup) -> Self {
        Self::with_features(s, 1 << 32 | 1 << VIRTIO_BLK_F_FLUSH)
    }

    /// A driver that negotiated `features`.
    fn with_features(s: &'a mut Setup, features: u64) -> Self {
        let q = DriverQueue::new(&s.mem, 0, QUEUE_SIZE, s.evt.try_clone().unwrap());
        let queue = q.config(QUEUE_SIZE).build(&s.mem).unwrap();
        let a = activation(
            &s.mem,
            vec![queue],
            std::slice::from_ref(&s.evt),
            &s.interrupt,
        );
        s.dev.activate(features, a).unwrap();
        Driver { mem: &s.mem, q }
    }

    /// Submits a chain of (addr, len, device-writable) and returns its used length once done.
    fn submit(&mut self, descs: &[(u64, u32, bool)]) -> u32 {
        self.q.add(descs);
        self.q.kick();
        self.q.next_used("request not completed").len()
    }

    /// A request with a header for `type_`/`sector`, data at DATA, and a status byte; returns
    /// (status, used length).
    fn request(&mut self, type_: u32, sector: u64, data: Option<(u32, bool)>) -> (u8, u32) {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&type_.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(HDR)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let mut descs = vec![(HDR, 16, false)];
        if let Some((len, w)) = data {
            descs.push((DATA, len, w));
        }
        descs.push((STATUS, 1, true));
        let len = self.submit(&descs);
        (self.mem.read_obj(GuestAddress(STATUS)).unwrap(), len)
    }

    fn data(&self, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.mem.read_slice(&mut b, GuestAddress(DATA)).unwrap();
        b
    }
}

fn file_sector(path: &Path, sector: u64) -> Vec<u8> {
    let all = std::fs::read(path).unwrap();
    all[usize::try_from(sector * 512).unwrap()..][..512].to_vec()
}

#[test]
fn config_space_and_features() {
    let s = setup("cfg", false);
    assert_eq!(s.dev.device_type(), 2);
    let mut b = [0u8; 8];
    s.dev.read_config(0, &mut b);
    assert_eq!(u64::from_le_bytes(b), SECTORS);
    let mut b = [0u8; 4];
    s.dev.read_config(12, &mut b);
    assert_eq!(u32::from_le_bytes(b), SEG_MAX);
    let f = s.dev.device_features();
    assert_eq!(f & (1 << VIRTIO_BLK_F_RO), 0);
    assert_ne!(f & (1 << VIRTIO_BLK_F_FLUSH), 0);
    assert_ne!(f & (1 << VIRTIO_BLK_F_SEG_MAX), 0);
    assert_ne!(f & (1 << VIRTIO_RING_F_EVENT_IDX), 0);
    let ro = setup("cfg-ro", true);
    assert_ne!(ro.dev.device_features() & (1 << VIRTIO_BLK_F_RO), 0);
}

#[test]
fn read_write_flush_and_get_id() {
    let mut s = setup("rw", false);
    let path = s.path.clone();
    let interrupt = s.interrupt.clone();
    let mut d = Driver::new(&mut s);

    // Read sectors 5 and 6: the image's bytes, used length = data + status.
    assert_eq!(
        d.request(VIRTIO_BLK_T_IN, 5, Some((1024, true))),
        (VIRTIO_BLK_S_OK, 1025)
    );
    let got = d.data(1024);
    assert!(got[..512].iter().all(|&b| b == 5) && got[512..].iter().all(|&b| b == 6));

    // Write sector 9 from guest memory, in two descriptors.
    d.mem.write_slice(&[0xa5; 512], GuestAddress(DATA)).unwrap();
    d.mem
        .write_slice(&[0x5a; 512], GuestAddress(DATA + 0x1000))
        .unwrap();
    let mut h = [0u8; 16];
    h[0] = 1;
    h[8] = 9;
    d.mem.write_slice(&h, GuestAddress(HDR)).unwrap();
    let len = d.submit(&[
        (HDR, 16, false),
        (DATA, 256, false),
        (DATA + 0x1000, 256, false),
        (STATUS, 1, true),
    ]);
    assert_eq!(len, 1);
    assert_eq!(
        d.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(),
        VIRTIO_BLK_S_OK
    );
    let s9 = file_sector(&path, 9);
    assert!(s9[..256].iter().all(|&b| b == 0xa5) && s9[256..].iter().all(|&b| b == 0x5a));
    assert!(file_sector(&path, 10).iter().all(|&b| b == 10));
    assert!(file_sector(&path, 8).iter().all(|&b| b == 8));
    // The last sector is writable too.
    assert_eq!(
        d.request(VIRTIO_BLK_T_OUT, SECTORS - 1, Some((512, false)))
            .0,
        VIRTIO_BLK_S_OK
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), SECTORS * 512);

    assert_eq!(d.request(VIRTIO_BLK_T_FLUSH, 0, None), (VIRTIO_BLK_S_OK, 1));
    // The sector of a FLUSH is not used: a huge one neither overflows nor matters.
    assert_eq!(
        d.request(VIRTIO_BLK_T_FLUSH, u64::MAX, None),
        (VIRTIO_BLK_S_OK, 1)
    );

    // GET_ID: the file name, zero padded to 20 bytes.
    d.mem.write_slice(&[0xee; 20], GuestAddress(DATA)).unwrap();
    assert_eq!(
        d.request(VIRTIO_BLK_T_GET_ID, 0, Some((20, true))),
        (VIRTIO_BLK_S_OK, 21)
    );
    let name = path.file_name().unwrap().as_encoded_bytes();
    let mut want = [0u8; 20];
    let n = name.len().min(20);
    want[..n].copy_from_slice(&name[..n]);
    assert_eq!(d.data(20), want);

    // Unsupported type (DISCARD was not offered).
    assert_eq!(d.request(11, 0, Some((16, false))).0, VIRTIO_BLK_S_UNSUPP);
    assert!(!interrupt.needs_reset());
}

#[test]
fn invalid_requests_get_ioerr_and_change_nothing() {
    let mut s = setup("bad", false);
    let path = s.path.clone();
    let interrupt = s.interrupt.clone();
    let before = std::fs::read(&path).unwrap();
    let mut d = Driver::new(&mut s);
    // Past the end, overlapping the end, overflowing.
    assert_eq!(
        d.request(VIRTIO_BLK_T_OUT, SECTORS, Some((512, false))).0,
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(
        d.request(VIRTIO_BLK_T_OUT, SECTORS - 1, Some((1024, false)))
            .0,
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(
        d.request(VIRTIO_BLK_T_IN, u64::MAX, Some((512, true))).0,
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(
        d.request(VIRTIO_BLK_T_OUT, u64::MAX / 512, Some((512, false)))
            .0,
        VIRTIO_BLK_S_IOERR
    );
    // Not a multiple of 512; wrong direction.
    assert_eq!(
        d.request(VIRTIO_BLK_T_OUT, 0, Some((100, false))).0,
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(
        d.request(VIRTIO_BLK_T_OUT, 0, Some((512, true))).0,
        VIRTIO_BLK_S_IOERR
    );
    // Data outside guest memory.
    d.mem.write_slice(&[0u8; 16], GuestAddress(HDR)).unwrap();
    let len = d.submit(&[(HDR, 16, false), (0xff_ff00, 512, true), (STATUS, 1, true)]);
    assert_eq!(
        (d.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), len),
        (VIRTIO_BLK_S_IOERR, 1)
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!interrupt.needs_reset());
    // The device still works.
    assert_eq!(
        d.request(VIRTIO_BLK_T_IN, 1, Some((512, true))).0,
        VIRTIO_BLK_S_OK
    );
}

#[test]
fn read_only_disk_refuses_writes() {
    let mut s = setup("ro", true);
    let path = s.path.clone();
    let before = std::fs::read(&path).unwrap();
    let mut d = Driver::new(&mut s);
    d.mem.write_slice(&[0x11; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(
        d.request(VIRTIO_BLK_T_OUT, 0, Some((512, false))),
        (VIRTIO_BLK_S_IOERR, 1)
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        d.request(VIRTIO_BLK_T_IN, 3, Some((512, true))).0,
        VIRTIO_BLK_S_OK
    );
    assert!(d.data(512).iter().all(|&b| b == 3));
    assert_eq!(d.request(VIRTIO_BLK_T_FLUSH, 0, None).0, VIRTIO_BLK_S_OK);
}

/// Eight reads made available before one kick: all served in one pass with one interrupt; with
/// EVENT_IDX and a used_event the batch does not reach, none, and once the queue is drained the
/// device asks for the next kick (avail_event = the next request).
#[test]
fn a_batch_is_served_with_one_interrupt() {
    const N: u16 = 8;
    for event_idx in [false, true] {
        let mut s = setup(if event_idx { "batch-ei" } else { "batch" }, false);
        let irq = s.irq.try_clone().unwrap();
        let mut features = 1 << 32 | 1 << VIRTIO_BLK_F_FLUSH;
        if event_idx {
            features |= 1 << VIRTIO_RING_F_EVENT_IDX;
        }
        let mut d = Driver::with_features(&mut s, features);
        let used_event = GuestAddress(d.q.mq.avail_addr().0 + 4 + 2 * u64::from(QUEUE_SIZE));
        let avail_event = GuestAddress(d.q.mq.used_addr().0 + 4 + 8 * u64::from(QUEUE_SIZE));
        d.mem.write_obj(1000u16.to_le(), used_event).unwrap();
        for i in 0..u64::from(N) {
            let mut h = [0u8; 16];
            h[8..].copy_from_slice(&(10 + i).to_le_bytes());
            d.mem.write_slice(&h, GuestAddress(HDR + 16 * i)).unwrap();
            d.mem.write_obj(0xffu8, GuestAddress(STATUS + i)).unwrap();
            d.q.add(&[
                (HDR + 16 * i, 16, false),
                (DATA + 0x1000 * i, 512, true),
                (STATUS + i, 1, true),
            ]);
        }
        d.q.kick();
        d.q.wait_all_used("batch not completed");
        for i in 0..u64::from(N) {
            let status: u8 = d.mem.read_obj(GuestAddress(STATUS + i)).unwrap();
            assert_eq!(status, VIRTIO_BLK_S_OK);
            let mut b = [0u8; 512];
            d.mem
                .read_slice(&mut b, GuestAddress(DATA + 0x1000 * i))
                .unwrap();
            assert!(b.iter().all(|&x| u64::from(x) == 10 + i), "request {i}");
        }
        if event_idx {
            wait_until("avail_event not set", || {
                d.mem.read_obj::<u16>(avail_event).unwrap() == N.to_le()
            });
            assert!(irq.read().is_err(), "an interrupt before used_event");
        } else {
            let mut n = 0;
            wait_until("no interrupt", || {
                n += irq.read().unwrap_or(0);
                n > 0
            });
            assert_eq!(n, 1, "interrupts");
            assert!(irq.read().is_err(), "more than one interrupt");
        }
    }
}

fn wait_broken(interrupt: &Interrupt) {
    wait_until("device not marked broken", || interrupt.needs_reset());
}

#[test]
fn chain_without_status_marks_the_device_broken() {
    for (name, descs) in [
        ("nostatus", vec![(HDR, 16, false)]),
        ("outside", vec![(HDR, 16, false), (0x10_0000, 1, true)]),
        (
            "order",
            vec![
                (HDR, 16, false),
                (DATA, 512, true),
                (DATA, 512, false),
                (STATUS, 1, true),
            ],
        ),
    ] {
        let mut s = setup(name, false);
        let interrupt = s.interrupt.clone();
        let mut d = Driver::new(&mut s);
        d.q.add(&descs);
        d.q.kick();
        wait_broken(&interrupt);
        assert_eq!(d.q.used_idx(), 0, "{name}");
    }
}

#[test]
fn corrupt_avail_index_marks_the_device_broken() {
    let mut s = setup("avail", false);
    let interrupt = s.interrupt.clone();
    let d = Driver::new(&mut s);
    d.q.mq.avail().idx().store(u16::to_le(1000));
    d.q.kick();
    wait_broken(&interrupt);
}

/// The attack: a chain through an indirect table, on a device that does not offer
/// VIRTIO_RING_F_INDIRECT_DESC (virtio-queue's iterator would follow it and serve the
/// request). The table holds a valid read request.
#[test]
fn indirect_chain_without_the_feature_marks_the_device_broken() {
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    const TABLE: u64 = 0x3_0000;
    let mut s = setup("indirect", false);
    let interrupt = s.interrupt.clone();
    let d = Driver::new(&mut s);
    let table = crate::devices::virtio::test_utils::chain(
        &[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)],
        0,
    );
    for (i, desc) in (0u64..).zip(&table) {
        d.mem
            .write_obj(SplitDescriptor::from(*desc), GuestAddress(TABLE + 16 * i))
            .unwrap();
    }
    let mut h = [0u8; 16];
    h[8..].copy_from_slice(&3u64.to_le_bytes());
    d.mem.write_slice(&h, GuestAddress(HDR)).unwrap();
    let indirect = SplitDescriptor::new(TABLE, 3 * 16, 4, 0);
    d.q.mq
        .add_desc_chains(&[RawDescriptor::from(indirect)], 0)
        .unwrap();
    d.q.kick();
    wait_broken(&interrupt);
    assert_eq!(d.q.used_idx(), 0);
}
