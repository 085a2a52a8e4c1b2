use super::*;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use vm_memory::{Bytes, GuestAddress};

use crate::devices::virtio::chain::Chain;
use crate::devices::virtio::test_utils::{guest_mem, F_WRITE as WRITE};

fn sample() -> Header {
    Header {
        src_cid: 3,
        dst_cid: 2,
        src_port: 1234,
        dst_port: 1025,
        len: 5,
        type_: TYPE_STREAM,
        op: OP_RW,
        flags: 0,
        buf_alloc: 262144,
        fwd_cnt: 77,
    }
}

#[test]
fn header_round_trip_is_little_endian() {
    let h = sample();
    let b = h.to_bytes();
    assert_eq!(&b[0..8], &[3, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&b[16..20], &1234u32.to_le_bytes());
    assert_eq!(&b[28..30], &[1, 0]);
    assert_eq!(&b[30..32], &[5, 0]);
    assert_eq!(Header::parse(&b), h);
}

fn desc(addr: u64, len: u32, flags: u16) -> SplitDescriptor {
    SplitDescriptor::new(addr, len, flags, 0)
}

/// A chain made of `descs` (as walked from a queue).
fn chain_of(descs: &[SplitDescriptor]) -> Chain {
    Chain {
        head: 0,
        descs: descs.to_vec(),
    }
}

#[test]
fn reads_header_split_across_descriptors() {
    let m = guest_mem(0x10_0000);
    let b = sample().to_bytes();
    m.write_slice(&b[..10], GuestAddress(0x8000)).unwrap();
    m.write_slice(&b[10..], GuestAddress(0x9000)).unwrap();
    m.write_slice(b"hello", GuestAddress(0x9000 + 34)).unwrap();
    let chain = chain_of(&[desc(0x8000, 10, 0), desc(0x9000, 34 + 5, 0)]);
    let (h, payload) = read_packet(&chain, &m).unwrap();
    assert_eq!(h, sample());
    assert_eq!(payload, b"hello");
}

#[test]
fn rejects_malformed_packets() {
    let m = guest_mem(0x10_0000);
    // Shorter than a header.
    let chain = chain_of(&[desc(0x8000, 20, 0)]);
    assert_eq!(read_packet(&chain, &m).unwrap_err(), PacketError::Short(20));
    // len beyond the chain.
    let mut h = sample();
    h.len = 100;
    m.write_slice(&h.to_bytes(), GuestAddress(0x8000)).unwrap();
    let chain = chain_of(&[desc(0x8000, 60, 0)]);
    assert!(matches!(
        read_packet(&chain, &m),
        Err(PacketError::BadLen {
            len: 100,
            avail: 16
        })
    ));
    // len beyond the limit, even if the chain were that long.
    h.len = MAX_PKT_PAYLOAD + 1;
    m.write_slice(&h.to_bytes(), GuestAddress(0x8000)).unwrap();
    let chain = chain_of(&[desc(0x8000, 0x7_0000, 0)]);
    assert!(matches!(
        read_packet(&chain, &m),
        Err(PacketError::BadLen { .. })
    ));
    // A buffer outside guest memory.
    let chain = chain_of(&[desc(0xf_ff00, 0x1000, 0)]);
    assert!(matches!(
        read_packet(&chain, &m),
        Err(PacketError::Chain(_))
    ));
    // Write-only descriptors are not read.
    let chain = chain_of(&[desc(0x8000, 64, WRITE)]);
    assert_eq!(read_packet(&chain, &m).unwrap_err(), PacketError::Short(0));
}

#[test]
fn writes_rx_packets_across_descriptors() {
    let m = guest_mem(0x10_0000);
    let chain = chain_of(&[desc(0x8000, 30, WRITE), desc(0x9000, 100, WRITE)]);
    let rx = RxBuffer::new(&chain, &m).unwrap();
    assert_eq!(rx.payload_room(), 130 - HDR_SIZE);
    let used = rx.write(sample(), b"abc").unwrap();
    assert_eq!(used, 47);
    let mut b = [0u8; HDR_SIZE];
    m.read_slice(&mut b[..30], GuestAddress(0x8000)).unwrap();
    m.read_slice(&mut b[30..], GuestAddress(0x9000)).unwrap();
    let h = Header::parse(&b);
    assert_eq!(h.len, 3);
    assert_eq!(h.op, OP_RW);
    let mut p = [0u8; 3];
    m.read_slice(&mut p, GuestAddress(0x9000 + 14)).unwrap();
    assert_eq!(&p, b"abc");
    // Too small for a header.
    let chain = chain_of(&[desc(0x8000, 40, WRITE)]);
    assert!(matches!(
        RxBuffer::new(&chain, &m),
        Err(PacketError::RxTooSmall(40))
    ));
}
