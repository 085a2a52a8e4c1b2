//! Frames in and out of chains, and every malformed chain refused.

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::virtio::test_utils::{guest_mem, F_NEXT, F_WRITE};

const MEM: usize = 0x40_0000;

fn chain(descs: &[(u64, u32, u16)]) -> Chain {
    Chain {
        head: 0,
        descs: descs
            .iter()
            .map(|&(a, l, f)| Descriptor::new(a, l, f, 0))
            .collect(),
    }
}

/// A header (no offload) and a 60-byte frame of 0xab.
fn plain_frame() -> Vec<u8> {
    let mut f = vec![0u8; HDR_LEN];
    f.extend_from_slice(&[0xab; 60]);
    f
}

const ALL: TxOffloads = TxOffloads {
    csum: true,
    tso4: true,
    tso6: true,
};

#[test]
fn tx_frame_over_several_buffers() {
    let mem = guest_mem(MEM);
    let f = plain_frame();
    mem.write_slice(&f[..5], GuestAddress(0x1000)).unwrap();
    mem.write_slice(&f[5..], GuestAddress(0x2000)).unwrap();
    let c = chain(&[(0x1000, 5, F_NEXT), (0x2000, 67, 0)]);
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    assert_eq!(read_tx(&c, &mem, TxOffloads::default(), &mut buf), Ok(72));
    assert_eq!(&buf[..72], &f[..]);
}

#[test]
fn tx_malformed_chains_are_refused() {
    let mem = guest_mem(MEM);
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let mut tx = |descs: &[(u64, u32, u16)]| read_tx(&chain(descs), &mem, ALL, &mut buf);
    assert_eq!(
        tx(&[(0x1000, 72, F_NEXT), (0x2000, 10, F_WRITE)]),
        Err(FrameError::WritableInTx)
    );
    assert_eq!(tx(&[(0x1000, 25, 0)]), Err(FrameError::TooShort(25)));
    assert_eq!(tx(&[(0x1000, 0, 0)]), Err(FrameError::TooShort(0)));
    assert!(matches!(
        tx(&[(MEM as u64 - 8, 72, 0)]),
        Err(FrameError::Chain(BadChain::BufferOutsideMemory { .. }))
    ));
    assert!(matches!(
        tx(&[(u64::MAX - 4, 72, 0)]),
        Err(FrameError::Chain(_))
    ));
    // Over the limit, also when made of many small buffers.
    assert_eq!(
        tx(&[(0x1000, 65563, 0)]),
        Err(FrameError::TooLong(MAX_FRAME_LEN + 1))
    );
    let many: Vec<_> = (0..5).map(|_| (0x1000, 0x4000, F_NEXT)).collect();
    assert_eq!(tx(&many), Err(FrameError::TooLong(5 * 0x4000)));
    // Descriptors of 4 GiB each do not overflow the sum.
    let huge = [(0, u32::MAX, F_NEXT), (0, u32::MAX, 0)];
    assert!(tx(&huge).is_err());
}

#[test]
fn tx_headers_must_match_the_negotiated_offloads() {
    let hdr = |flags: u8, gso: u8, gso_size: u16, start: u16, off: u16| {
        let mut h = [0u8; HDR_LEN];
        h[0] = flags;
        h[1] = gso;
        h[4..6].copy_from_slice(&gso_size.to_le_bytes());
        h[6..8].copy_from_slice(&start.to_le_bytes());
        h[8..10].copy_from_slice(&off.to_le_bytes());
        h
    };
    let none = TxOffloads::default();
    assert_eq!(check_tx_header(&hdr(0, 0, 0, 0, 0), 60, none), Ok(()));
    let csum = hdr(1, 0, 0, 34, 16);
    assert_eq!(check_tx_header(&csum, 60, ALL), Ok(()));
    assert!(check_tx_header(&csum, 60, none).is_err());
    // The checksum field must lie inside the frame.
    assert!(check_tx_header(&hdr(1, 0, 0, 50, 9), 60, ALL).is_err());
    assert!(check_tx_header(&hdr(1, 0, 0, 0xffff, 0xffff), 60, ALL).is_err());
    assert!(check_tx_header(&hdr(2, 0, 0, 0, 0), 60, ALL).is_err());
    let tso4 = hdr(1, 1, 1448, 34, 16);
    assert_eq!(check_tx_header(&tso4, 60, ALL), Ok(()));
    let only_csum = TxOffloads { csum: true, ..none };
    assert!(check_tx_header(&tso4, 60, only_csum).is_err());
    assert!(check_tx_header(&hdr(1, 4, 1448, 54, 16), 80, only_csum).is_err());
    assert_eq!(check_tx_header(&hdr(1, 4, 1448, 54, 16), 80, ALL), Ok(()));
    // No segment size; UDP (UFO), ECN: never negotiated.
    assert!(check_tx_header(&hdr(1, 1, 0, 34, 16), 60, ALL).is_err());
    assert!(check_tx_header(&hdr(1, 3, 1448, 34, 6), 60, ALL).is_err());
    assert!(check_tx_header(&hdr(1, 0x81, 1448, 34, 16), 60, ALL).is_err());
}

#[test]
fn rx_frame_with_header_over_several_buffers() {
    let mem = guest_mem(MEM);
    let c = chain(&[(0x1000, 4, F_WRITE | F_NEXT), (0x2000, 0x1000, F_WRITE)]);
    let rx = RxChain::new(&c, &mem).unwrap();
    assert_eq!(rx.capacity(), 0x1004);
    let mut f = plain_frame();
    f[0] = 2; // DATA_VALID, passed through
    f[10] = 0x55; // num_buffers: whatever the tap left
    let used = rx.write(&mut f.clone()).unwrap();
    assert_eq!(used, 72);
    let mut got = [0u8; 72];
    mem.read_slice(&mut got[..4], GuestAddress(0x1000)).unwrap();
    mem.read_slice(&mut got[4..], GuestAddress(0x2000)).unwrap();
    assert_eq!(got[0], 2);
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1);
    assert_eq!(&got[HDR_LEN..], &f[HDR_LEN..]);
}

#[test]
fn rx_malformed_chains_are_refused() {
    let mem = guest_mem(MEM);
    let rx = |descs: &[(u64, u32, u16)]| RxChain::new(&chain(descs), &mem).map(|r| r.capacity());
    assert_eq!(
        rx(&[(0x1000, 100, F_WRITE | F_NEXT), (0x2000, 100, 0)]).err(),
        Some(FrameError::ReadableInRx)
    );
    assert_eq!(
        rx(&[(0x1000, 11, F_WRITE)]).err(),
        Some(FrameError::RxTooSmall(11))
    );
    assert!(matches!(
        rx(&[(MEM as u64 - 100, 200, F_WRITE)]),
        Err(FrameError::Chain(BadChain::BufferOutsideMemory { .. }))
    ));
    // A frame larger than the chain is refused, nothing written.
    let r = RxChain::new(&chain(&[(0x1000, 50, F_WRITE)]), &mem).unwrap();
    assert_eq!(r.write(&mut plain_frame()), Err(FrameError::RxTooSmall(50)));
    assert_eq!(mem.read_obj::<u8>(GuestAddress(0x1000 + 12)).unwrap(), 0);
    let r = RxChain::new(&chain(&[(0x1000, 50, F_WRITE)]), &mem).unwrap();
    assert_eq!(r.write(&mut [0u8; 5]), Err(FrameError::TooShort(5)));
}
