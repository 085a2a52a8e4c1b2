//! Request parsing and validation on hand-made descriptor lists.

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::virtio::test_utils::guest_mem;

const MEM: u64 = 0x10_0000;
const MEM_SIZE: usize = 0x10_0000;
const HDR: u64 = 0x1000;
const DATA: u64 = 0x2000;
const STATUS: u64 = 0x9000;
const CAPACITY: u64 = 16;

fn header(m: &GuestMem, type_: u32, sector: u64) {
    let mut h = [0u8; HEADER_SIZE];
    h[..4].copy_from_slice(&type_.to_le_bytes());
    h[4..8].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    m.write_slice(&h, GuestAddress(HDR)).unwrap();
}

fn d(addr: u64, len: u32, write: bool) -> Desc {
    Desc {
        seg: Segment {
            addr: GuestAddress(addr),
            len,
        },
        write,
    }
}

fn seg(addr: u64, len: u32) -> Segment {
    Segment {
        addr: GuestAddress(addr),
        len,
    }
}

/// header, data (readable for a write, writable otherwise), status.
fn chain(data_len: u32, data_write: bool) -> Vec<Desc> {
    vec![
        d(HDR, 16, false),
        d(DATA, data_len, data_write),
        d(STATUS, 1, true),
    ]
}

fn request(m: &GuestMem, descs: &[Desc]) -> Result<Request, Invalid> {
    let p = parse(descs, 8, m, CAPACITY).unwrap();
    assert_eq!(
        p.status,
        GuestAddress(
            descs.last().unwrap().seg.addr.0 + u64::from(descs.last().unwrap().seg.len) - 1
        )
    );
    p.request
}

#[test]
fn read_write_flush_get_id() {
    let m = guest_mem(MEM_SIZE);
    header(&m, VIRTIO_BLK_T_IN, 3);
    let r = request(&m, &chain(1024, true)).unwrap();
    assert_eq!(r.kind, RequestKind::In);
    assert_eq!((r.sector, r.data_len), (3, 1024));
    assert_eq!(r.data, vec![seg(DATA, 1024)]);

    header(&m, VIRTIO_BLK_T_OUT, 15);
    let r = request(&m, &chain(512, false)).unwrap();
    assert_eq!((r.kind, r.sector, r.data_len), (RequestKind::Out, 15, 512));

    header(&m, VIRTIO_BLK_T_FLUSH, 0);
    let descs = [d(HDR, 16, false), d(STATUS, 1, true)];
    let p = parse(&descs, 8, &m, CAPACITY).unwrap();
    assert_eq!(p.request.unwrap().kind, RequestKind::Flush);
    assert_eq!((p.status, p.writable_len), (GuestAddress(STATUS), 0));

    header(&m, VIRTIO_BLK_T_GET_ID, 0);
    let r = request(&m, &chain(20, true)).unwrap();
    assert_eq!((r.kind, r.data_len), (RequestKind::GetId, 20));

    header(&m, 11, 0); // DISCARD: not offered
    assert_eq!(
        request(&m, &chain(16, false)).unwrap().kind,
        RequestKind::Unsupported(11)
    );
}

#[test]
fn any_layout_header_data_and_status_split_or_merged() {
    let m = guest_mem(MEM_SIZE);
    // The header split in two descriptors, the data and the status in one writable descriptor.
    let mut h = [0u8; HEADER_SIZE];
    h[8..].copy_from_slice(&2u64.to_le_bytes());
    m.write_slice(&h[..5], GuestAddress(0x3000)).unwrap();
    m.write_slice(&h[5..], GuestAddress(0x4000)).unwrap();
    let descs = [
        d(0x3000, 5, false),
        d(0x4000, 11, false),
        d(DATA, 513, true),
    ];
    let p = parse(&descs, 8, &m, CAPACITY).unwrap();
    assert_eq!(p.status, GuestAddress(DATA + 512));
    assert_eq!(p.writable_len, 512);
    let r = p.request.unwrap();
    assert_eq!((r.kind, r.sector), (RequestKind::In, 2));
    assert_eq!(r.data, vec![seg(DATA, 512)]);
    // Header and write data in one descriptor.
    let mut h = [0u8; HEADER_SIZE];
    h[0] = 1;
    m.write_slice(&h, GuestAddress(0x5000)).unwrap();
    let descs = [d(0x5000, 16 + 1024, false), d(STATUS, 1, true)];
    let r = request(&m, &descs).unwrap();
    assert_eq!(r.kind, RequestKind::Out);
    assert_eq!(r.data, vec![seg(0x5010, 1024)]);
}

#[test]
fn chains_without_a_status_byte_are_fatal() {
    let m = guest_mem(MEM_SIZE);
    header(&m, VIRTIO_BLK_T_IN, 0);
    assert_eq!(
        parse(&[d(HDR, 16, false)], 8, &m, CAPACITY),
        Err(ChainError::NoStatus)
    );
    assert_eq!(
        parse(&[d(HDR, 16, false), d(STATUS, 0, true)], 8, &m, CAPACITY),
        Err(ChainError::NoStatus)
    );
    assert_eq!(parse(&[], 8, &m, CAPACITY), Err(ChainError::NoStatus));
    // Status outside guest memory, or wrapping around the address space.
    assert_eq!(
        parse(&[d(HDR, 16, false), d(MEM, 1, true)], 8, &m, CAPACITY),
        Err(ChainError::StatusOutsideMemory(MEM))
    );
    assert!(matches!(
        parse(&[d(HDR, 16, false), d(u64::MAX, 2, true)], 8, &m, CAPACITY),
        Err(ChainError::StatusOutsideMemory(_))
    ));
    // Readable after writable.
    let descs = [
        d(HDR, 16, false),
        d(DATA, 512, true),
        d(0x5000, 512, false),
        d(STATUS, 1, true),
    ];
    assert_eq!(
        parse(&descs, 8, &m, CAPACITY),
        Err(ChainError::ReadableAfterWritable)
    );
    // Too many descriptors.
    let descs = vec![d(HDR, 16, false); 9];
    assert_eq!(parse(&descs, 8, &m, CAPACITY), Err(ChainError::TooLong(8)));
}

#[test]
fn bad_requests_are_refused_with_the_reason() {
    let m = guest_mem(MEM_SIZE);
    // Header shorter than 16 bytes.
    let descs = [d(HDR, 15, false), d(STATUS, 1, true)];
    assert_eq!(request(&m, &descs), Err(Invalid::ShortHeader(15)));
    let descs = [d(STATUS, 1, true)];
    assert_eq!(request(&m, &descs), Err(Invalid::ShortHeader(0)));
    // Header or data outside guest memory, or wrapping.
    let descs = [d(MEM - 8, 16, false), d(STATUS, 1, true)];
    assert!(matches!(
        request(&m, &descs),
        Err(Invalid::OutsideMemory { .. })
    ));
    header(&m, VIRTIO_BLK_T_IN, 0);
    let descs = [
        d(HDR, 16, false),
        d(MEM - 512, 1024, true),
        d(STATUS, 1, true),
    ];
    assert_eq!(
        request(&m, &descs),
        Err(Invalid::OutsideMemory {
            addr: MEM - 512,
            len: 1024
        })
    );
    let descs = [
        d(HDR, 16, false),
        d(u64::MAX - 100, 512, true),
        d(STATUS, 1, true),
    ];
    assert!(matches!(
        request(&m, &descs),
        Err(Invalid::OutsideMemory { .. })
    ));
    // Wrong data direction.
    header(&m, VIRTIO_BLK_T_IN, 0);
    assert!(matches!(
        request(&m, &chain(512, false)),
        Err(Invalid::Direction {
            kind: 0,
            readable: 512,
            writable: 0
        })
    ));
    header(&m, VIRTIO_BLK_T_OUT, 0);
    assert!(matches!(
        request(&m, &chain(512, true)),
        Err(Invalid::Direction { kind: 1, .. })
    ));
    header(&m, VIRTIO_BLK_T_GET_ID, 0);
    assert!(matches!(
        request(&m, &chain(20, false)),
        Err(Invalid::Direction { kind: 8, .. })
    ));
    // Not a multiple of 512.
    header(&m, VIRTIO_BLK_T_IN, 0);
    assert_eq!(request(&m, &chain(100, true)), Err(Invalid::Unaligned(100)));
}

#[test]
fn sector_ranges_are_checked_without_overflow() {
    let m = guest_mem(MEM_SIZE);
    // The last sector is fine, one past it is not.
    header(&m, VIRTIO_BLK_T_IN, CAPACITY - 1);
    assert!(request(&m, &chain(512, true)).is_ok());
    header(&m, VIRTIO_BLK_T_OUT, CAPACITY - 1);
    assert_eq!(
        request(&m, &chain(1024, false)),
        Err(Invalid::OutOfRange {
            sector: CAPACITY - 1,
            len: 1024,
            capacity: CAPACITY
        })
    );
    header(&m, VIRTIO_BLK_T_IN, CAPACITY);
    assert!(matches!(
        request(&m, &chain(512, true)),
        Err(Invalid::OutOfRange { .. })
    ));
    // A zero-length read at the end is in range; past the end it is not.
    header(&m, VIRTIO_BLK_T_IN, CAPACITY);
    assert!(request(&m, &[d(HDR, 16, false), d(STATUS, 1, true)]).is_ok());
    header(&m, VIRTIO_BLK_T_IN, CAPACITY + 1);
    assert!(request(&m, &[d(HDR, 16, false), d(STATUS, 1, true)]).is_err());
    // Sectors whose byte offset or end would overflow.
    for sector in [u64::MAX, u64::MAX / 512, u64::MAX - 1, 1 << 55] {
        header(&m, VIRTIO_BLK_T_IN, sector);
        assert!(
            matches!(
                request(&m, &chain(512, true)),
                Err(Invalid::OutOfRange { .. })
            ),
            "{sector}"
        );
    }
    // Flush ignores the sector.
    header(&m, VIRTIO_BLK_T_FLUSH, u64::MAX);
    assert!(request(&m, &[d(HDR, 16, false), d(STATUS, 1, true)]).is_ok());
}
