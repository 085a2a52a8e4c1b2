use std::io::Write;
use std::path::PathBuf;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::devices::virtio::block::disk::IoError;

/// Two 1 MiB regions, adjacent in guest addresses (separate mappings on the host).
fn two_regions() -> GuestMem {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20), (GuestAddress(1 << 20), 1 << 20)])
        .unwrap()
}

fn temp_file(name: &str, data: &[u8]) -> (PathBuf, File) {
    let p = std::env::temp_dir().join(format!("spiov-{}-{name}", std::process::id()));
    std::fs::File::create(&p).unwrap().write_all(data).unwrap();
    let f = File::options().read(true).write(true).open(&p).unwrap();
    (p, f)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 7 + i / 511) % 256).unwrap())
        .collect()
}

fn seg(addr: u64, len: u32) -> Segment {
    Segment {
        addr: GuestAddress(addr),
        len,
    }
}

/// Segments: one crossing the region boundary, then 1500 one-sector buffers with gaps (more
/// than IOV_MAX iovecs), then two adjacent ones (merged).
fn scattered() -> Vec<Segment> {
    let mut segs = vec![seg((1 << 20) - 1024, 4096)];
    segs.extend((0..1500).map(|i| seg(0x1000 + i * 600, 512)));
    segs.push(seg(0x10_0000 + 0x8000, 1024));
    segs.push(seg(0x10_0000 + 0x8400, 2048));
    segs
}

fn gather(mem: &GuestMem, segs: &[Segment]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in segs {
        let mut b = vec![0u8; s.len as usize];
        mem.read_slice(&mut b, s.addr).unwrap();
        out.extend(b);
    }
    out
}

#[test]
fn reads_and_writes_scattered_buffers_across_regions() {
    let mem = two_regions();
    let segs = scattered();
    let total: usize = segs.iter().map(|s| s.len as usize).sum();
    assert!(iovecs(&mem, &segs, Direction::Read).unwrap().iovecs().len() > IOV_MAX);
    let image = pattern(total + 8192);
    let (path, file) = temp_file("rw", &image);

    transfer(&file, &mem, 4096, &segs, Direction::Read).unwrap();
    assert_eq!(gather(&mem, &segs), &image[4096..4096 + total]);

    // Back to the file at another offset: the bytes land there, nothing else changes.
    transfer(&file, &mem, 512, &segs, Direction::Write).unwrap();
    let after = std::fs::read(&path).unwrap();
    assert_eq!(&after[..512], &image[..512]);
    assert_eq!(&after[512..512 + total], &image[4096..4096 + total]);
    assert_eq!(&after[512 + total..], &image[512 + total..]);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn adjacent_buffers_are_merged_and_regions_split() {
    let mem = two_regions();
    let segs = [seg(0x2000, 512), seg(0x2200, 1024), seg(0x3000, 512)];
    let mut iov = iovecs(&mem, &segs, Direction::Write).unwrap();
    let lens: Vec<usize> = iov.iovecs().iter().map(|v| v.iov_len).collect();
    assert_eq!(lens, [1536, 512]);
    assert_eq!(iov.len(), 2048);
    // Across the boundary of two mappings: two iovecs (unless the host mapped them adjacent).
    let mut iov = iovecs(&mem, &[seg((1 << 20) - 512, 1024)], Direction::Read).unwrap();
    assert_eq!(iov.len(), 1024);
    assert!(!iov.iovecs().is_empty() && iov.iovecs().len() <= 2);
}

#[test]
fn a_short_file_is_an_error() {
    let mem = two_regions();
    let (path, file) = temp_file("short", &pattern(1024));
    let e = transfer(&file, &mem, 512, &[seg(0, 1024)], Direction::Read).unwrap_err();
    assert!(
        matches!(&e, IoError::File(io) if io.kind() == io::ErrorKind::UnexpectedEof),
        "{e:?}"
    );
    // What was there was read.
    let mut b = [0u8; 512];
    mem.read_slice(&mut b, GuestAddress(0)).unwrap();
    assert_eq!(&b[..], &pattern(1024)[512..]);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn outside_guest_memory_is_an_error() {
    let mem = two_regions();
    let (path, file) = temp_file("oob", &pattern(4096));
    let r = transfer(
        &file,
        &mem,
        0,
        &[seg((2 << 20) - 512, 1024)],
        Direction::Read,
    );
    assert!(matches!(r, Err(IoError::Memory(_))), "{r:?}");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn advance_skips_whole_and_partial_iovecs() {
    let mut buf = [0u8; 64];
    let base = buf.as_mut_ptr();
    let mut iovs = [
        libc::iovec {
            iov_base: base.cast(),
            iov_len: 10,
        },
        libc::iovec {
            iov_base: base.wrapping_add(20).cast(),
            iov_len: 30,
        },
    ];
    let rest = advance(&mut iovs, 15);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].iov_len, 25);
    assert_eq!(rest[0].iov_base.cast::<u8>(), base.wrapping_add(25));
    let rest = advance(rest, 25);
    assert!(rest.is_empty());
}
