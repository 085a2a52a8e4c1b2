use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::virtio::test_utils::{guest_mem, F_NEXT, F_WRITE};

const F_INDIRECT: u16 = 4;
const TABLE: u64 = 0x1000;
const INDIRECT_TABLE: u64 = 0x8000;

fn mem() -> GuestMem {
    guest_mem(0x10_0000)
}

fn put(m: &GuestMem, table: u64, index: u16, d: (u64, u32, u16, u16)) {
    let desc = SplitDescriptor::new(d.0, d.1, d.2, d.3);
    m.write_obj(desc, GuestAddress(table + 16 * u64::from(index)))
        .unwrap();
}

fn rules(queue_size: u16, indirect: bool) -> ChainRules {
    ChainRules {
        desc_table: GuestAddress(TABLE),
        queue_size,
        indirect,
    }
}

fn addrs(c: &Chain) -> Vec<u64> {
    c.descs.iter().map(|d| d.addr().0).collect()
}

#[test]
fn walks_a_direct_chain() {
    let m = mem();
    put(&m, TABLE, 3, (0x2_0000, 16, F_NEXT, 5));
    put(&m, TABLE, 5, (0x3_0000, 1, F_WRITE, 0));
    let c = Chain::walk(&m, rules(8, false), 3).unwrap();
    assert_eq!(c.head, 3);
    assert_eq!(addrs(&c), [0x2_0000, 0x3_0000]);
    assert!(c.descs[1].is_write_only());
}

/// The attack: an indirect table on a device that never offered VIRTIO_RING_F_INDIRECT_DESC
/// (virtio-queue's iterator follows it, up to 65535 entries).
#[test]
fn refuses_indirect_tables_unless_negotiated() {
    let m = mem();
    put(&m, TABLE, 0, (INDIRECT_TABLE, 2 * 16, F_INDIRECT, 0));
    put(&m, INDIRECT_TABLE, 0, (0x2_0000, 44, F_NEXT, 1));
    put(&m, INDIRECT_TABLE, 1, (0x3_0000, 8, 0, 0));
    assert_eq!(
        Chain::walk(&m, rules(8, false), 0).unwrap_err(),
        BadChain::IndirectNotNegotiated
    );
    let c = Chain::walk(&m, rules(8, true), 0).unwrap();
    assert_eq!(addrs(&c), [0x2_0000, 0x3_0000]);
}

#[test]
fn bounds_chains_to_the_queue_size() {
    let m = mem();
    // A loop: 0 -> 1 -> 0 (virtio-queue ends it silently after queue-size descriptors).
    put(&m, TABLE, 0, (0x2_0000, 8, F_NEXT, 1));
    put(&m, TABLE, 1, (0x2_0000, 8, F_NEXT, 0));
    assert_eq!(
        Chain::walk(&m, rules(8, false), 0).unwrap_err(),
        BadChain::TooLong(8)
    );
    // An indirect table of 4096 entries behind a queue of 8, all of them chained.
    put(&m, TABLE, 0, (INDIRECT_TABLE, 4096 * 16, F_INDIRECT, 0));
    for i in 0..4096u16 {
        put(&m, INDIRECT_TABLE, i, (0x2_0000, 8, F_NEXT, i + 1));
    }
    assert_eq!(
        Chain::walk(&m, rules(8, true), 0).unwrap_err(),
        BadChain::TooLong(8)
    );
    // Exactly the queue size is fine.
    put(&m, INDIRECT_TABLE, 7, (0x2_0000, 8, 0, 0));
    assert_eq!(Chain::walk(&m, rules(8, true), 0).unwrap().descs.len(), 8);
}

#[test]
fn refuses_malformed_indirect_descriptors_and_indices() {
    let m = mem();
    let walk = |head| Chain::walk(&m, rules(8, true), head);
    // Nested indirect.
    put(&m, TABLE, 0, (INDIRECT_TABLE, 32, F_INDIRECT, 0));
    put(&m, INDIRECT_TABLE, 0, (INDIRECT_TABLE, 32, F_INDIRECT, 0));
    assert_eq!(walk(0).unwrap_err(), BadChain::NestedIndirect);
    // INDIRECT with NEXT.
    put(&m, TABLE, 0, (INDIRECT_TABLE, 32, F_INDIRECT | F_NEXT, 1));
    assert_eq!(walk(0).unwrap_err(), BadChain::IndirectWithNext);
    // Table lengths that are empty or not whole descriptors.
    put(&m, TABLE, 0, (INDIRECT_TABLE, 0, F_INDIRECT, 0));
    assert_eq!(walk(0).unwrap_err(), BadChain::BadIndirectLen(0));
    put(&m, TABLE, 0, (INDIRECT_TABLE, 20, F_INDIRECT, 0));
    assert_eq!(walk(0).unwrap_err(), BadChain::BadIndirectLen(20));
    // A table outside guest memory.
    put(&m, TABLE, 0, (0xffff_0000, 32, F_INDIRECT, 0));
    assert_eq!(
        walk(0).unwrap_err(),
        BadChain::DescOutsideMemory(0xffff_0000)
    );
    // next beyond the table, the head beyond the queue.
    put(&m, TABLE, 0, (0x2_0000, 8, F_NEXT, 8));
    assert!(matches!(
        walk(0),
        Err(BadChain::IndexOutOfRange { index: 8, .. })
    ));
    put(&m, TABLE, 0, (INDIRECT_TABLE, 32, F_INDIRECT, 0));
    put(&m, INDIRECT_TABLE, 0, (0x2_0000, 8, F_NEXT, 2));
    assert!(matches!(
        walk(0),
        Err(BadChain::IndexOutOfRange { index: 2, size: 2 })
    ));
    assert!(matches!(walk(9), Err(BadChain::IndexOutOfRange { .. })));
}

#[test]
fn reads_and_writes_across_buffers() {
    let m = mem();
    let d = |addr, len, flags| SplitDescriptor::new(addr, len, flags, 0);
    let c = Chain {
        head: 0,
        descs: vec![
            d(0x2_0000, 3, 0),
            d(0x2_1000, 0, 0),
            d(0x2_2000, 5, 0),
            d(0x3_0000, 2, F_WRITE),
            d(0x3_1000, 4, F_WRITE),
        ],
    };
    m.write_slice(b"abc", GuestAddress(0x2_0000)).unwrap();
    m.write_slice(b"defgh", GuestAddress(0x2_2000)).unwrap();
    let mut r = c.reader(&m).unwrap();
    assert_eq!(r.available_bytes(), 8);
    let mut b = [0u8; 4];
    r.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"abcd");
    assert_eq!(
        r.read_exact(&mut [0u8; 5]).unwrap_err(),
        BadChain::Short { wanted: 5, left: 4 }
    );
    r.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"efgh");
    let mut w = c.writer(&m).unwrap();
    assert_eq!(w.available_bytes(), 6);
    w.write_all(b"123456").unwrap();
    let mut got = [0u8; 4];
    m.read_slice(&mut got, GuestAddress(0x3_1000)).unwrap();
    assert_eq!(&got, b"3456");
    // A buffer outside guest memory (or past its end).
    let c = Chain {
        head: 0,
        descs: vec![d(0xf_fff0, 0x20, 0)],
    };
    assert!(matches!(
        c.reader(&m),
        Err(BadChain::BufferOutsideMemory { .. })
    ));
}
