use super::*;
use std::io::{Read, Write};
use std::os::fd::AsFd;
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
    let (h, mut payload) = read_packet(&chain, &m).unwrap();
    assert_eq!(h, sample());
    let mut out = VecDeque::from(b"..".to_vec());
    TxPayload::append_to(&mut payload, &mut out).unwrap();
    assert_eq!(out, b"..hello");
    assert_eq!(payload.remaining(), 0);
}

#[test]
fn sends_payload_across_descriptors_to_a_socket() {
    let m = guest_mem(0x10_0000);
    let mut h = sample();
    h.len = 9;
    m.write_slice(&h.to_bytes(), GuestAddress(0x8000)).unwrap();
    m.write_slice(b"abcd", GuestAddress(0x8000 + 44)).unwrap();
    m.write_slice(b"efghiXX", GuestAddress(0xa000)).unwrap();
    // The second buffer holds more than the header's len: the rest is not payload.
    let chain = chain_of(&[desc(0x8000, 48, 0), desc(0xa000, 7, 0)]);
    let (_, mut payload) = read_packet(&chain, &m).unwrap();
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    assert_eq!(TxPayload::send_to(&mut payload, a.as_fd()).unwrap(), 9);
    assert_eq!(payload.remaining(), 0);
    drop(a);
    let mut got = Vec::new();
    b.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"abcdefghi");
}

#[test]
fn receives_socket_data_into_rx_buffers() {
    let m = guest_mem(0x10_0000);
    let chain = chain_of(&[desc(0x8000, 46, WRITE), desc(0x9000, 100, WRITE)]);
    let mut rx = RxBuffer::new(&chain, &m).unwrap();
    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.write_all(b"0123456789").unwrap();
    // At most `max` bytes, spread over both buffers.
    assert_eq!(rx.recv_from(b.as_fd(), 6).unwrap(), 6);
    assert_eq!(rx.room(), 146 - HDR_SIZE - 6);
    assert_eq!(rx.finish(sample()).unwrap(), 50);
    let mut p = [0u8; 6];
    m.read_slice(&mut p[..2], GuestAddress(0x8000 + 44))
        .unwrap();
    m.read_slice(&mut p[2..], GuestAddress(0x9000)).unwrap();
    assert_eq!(&p, b"012345");
    let mut hb = [0u8; HDR_SIZE];
    m.read_slice(&mut hb, GuestAddress(0x8000)).unwrap();
    assert_eq!(Header::parse(&hb).len, 6);
    // Nothing to read: would block; the peer gone: end of stream.
    let mut rx = RxBuffer::new(&chain, &m).unwrap();
    assert_eq!(rx.recv_from(b.as_fd(), 100).unwrap(), 4);
    let err = rx.recv_from(b.as_fd(), 100).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    drop(a);
    assert_eq!(rx.recv_from(b.as_fd(), 100).unwrap(), 0);
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
    let mut rx = RxBuffer::new(&chain, &m).unwrap();
    assert_eq!(rx.payload_room(), 130 - HDR_SIZE);
    rx.put(b"abc").unwrap();
    let used = rx.finish(sample()).unwrap();
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
