//! Shared by the fuzz targets: guest memory filled from fuzz input, split virtqueue layout
//! helpers, and a vsock muxer on a throw-away Unix listener.
//!
//! The muxer's listener lives in `$TMPDIR/sandpod-fuzz-<pid>/` (the Makefile points TMPDIR at a
//! directory it removes). A host listener on `<uds>_1025` lets guest connection requests to
//! port 1025 succeed, so data and credit packets reach a live connection, not just RSTs.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sandpod_vmm::devices::virtio::vsock::muxer::Muxer;
use sandpod_vmm::kvm::memory::GuestMem;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The guest's CID.
pub const GUEST_CID: u64 = 3;
/// A host port with a listener behind it.
pub const LIVE_PORT: u32 = 1025;

/// Two RAM regions with a hole between them, like the VMM's RAM around the 32-bit MMIO gap:
/// descriptors pointing into the hole or straddling it must be rejected, never dereferenced.
pub const REGIONS: [(u64, usize); 2] = [(0, 0x8000), (0x1_0000, 0x8000)];

/// Descriptor flag: the chain continues at `next`.
pub const F_NEXT: u16 = 1;
/// Descriptor flag: device-writable buffer.
pub const F_WRITE: u16 = 2;

/// Guest memory laid out as [`REGIONS`], filled from `fill` (region by region; the rest is
/// zero).
pub fn guest_memory(fill: &[u8]) -> GuestMem {
    let ranges = REGIONS.map(|(a, l)| (GuestAddress(a), l));
    let mem = GuestMemoryMmap::from_ranges(&ranges).expect("mapping fuzz guest memory");
    let mut rest = fill;
    for (addr, len) in REGIONS {
        let n = rest.len().min(len);
        mem.write_slice(&rest[..n], GuestAddress(addr))
            .expect("write inside a region");
        rest = &rest[n..];
    }
    mem
}

/// Writes descriptor `index` of the table at `table`.
pub fn write_desc(mem: &GuestMem, table: u64, index: u16, desc: (u64, u32, u16, u16)) {
    let (addr, len, flags, next) = desc;
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&addr.to_le_bytes());
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b[12..14].copy_from_slice(&flags.to_le_bytes());
    b[14..16].copy_from_slice(&next.to_le_bytes());
    mem.write_slice(&b, GuestAddress(table + 16 * u64::from(index)))
        .expect("descriptor inside guest memory");
}

/// Makes `heads` available in the available ring at `avail` (flags 0, idx = heads.len()).
pub fn publish(mem: &GuestMem, avail: u64, heads: &[u16]) {
    for (i, h) in heads.iter().enumerate() {
        mem.write_obj(h.to_le(), GuestAddress(avail + 4 + 2 * i as u64))
            .expect("available ring inside guest memory");
    }
    mem.write_obj(0u16, GuestAddress(avail))
        .expect("available ring inside guest memory");
    let idx = u16::try_from(heads.len()).expect("at most 65535 heads");
    mem.write_obj(idx.to_le(), GuestAddress(avail + 2))
        .expect("available ring inside guest memory");
}

struct Listeners {
    uds: PathBuf,
    main: UnixListener,
    live: UnixListener,
}

fn listeners() -> &'static Listeners {
    static L: OnceLock<Listeners> = OnceLock::new();
    L.get_or_init(|| {
        let dir = scratch_dir();
        let uds = dir.join("v.sock");
        let live_path = PathBuf::from(format!("{}_{LIVE_PORT}", uds.display()));
        let _ = std::fs::remove_file(&uds);
        let _ = std::fs::remove_file(&live_path);
        let main = UnixListener::bind(&uds).expect("binding the fuzz vsock socket");
        let live = UnixListener::bind(&live_path).expect("binding the fuzz host port socket");
        live.set_nonblocking(true).expect("non-blocking listener");
        Listeners { uds, main, live }
    })
}

/// A fresh muxer (no state carried over from earlier inputs: crashes must reproduce).
pub fn muxer() -> Muxer {
    let l = listeners();
    // Connections the previous input made to the live port: accept and drop them, so the
    // backlog never fills.
    while l.live.accept().is_ok() {}
    let listener = l.main.try_clone().expect("cloning the fuzz listener");
    Muxer::new(GUEST_CID, l.uds.clone(), listener).expect("creating the muxer")
}

/// The process's scratch directory, `$TMPDIR/sandpod-fuzz-<pid>/` (sockets, the disk image).
pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sandpod-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the fuzz scratch directory");
    dir
}

/// The vsock socket path and a clone of its listener, for a vsock device.
pub fn vsock_listener() -> (PathBuf, UnixListener) {
    let l = listeners();
    while l.live.accept().is_ok() {}
    let listener = l.main.try_clone().expect("cloning the fuzz listener");
    (l.uds.clone(), listener)
}

/// Sectors of the fuzz disk image.
pub const DISK_SECTORS: u64 = 64;

/// The path of a disk image of [`DISK_SECTORS`] sectors (created once; writes by earlier
/// inputs may have changed its contents, never its size).
pub fn disk_image_path() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let path = scratch_dir().join("disk.img");
        let len = usize::try_from(DISK_SECTORS * 512).expect("a small image");
        std::fs::write(&path, vec![0x5a; len]).expect("creating the fuzz disk image");
        path
    })
}
