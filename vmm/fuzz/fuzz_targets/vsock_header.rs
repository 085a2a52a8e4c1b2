//! A vsock packet as the guest sends it: arbitrary bytes split over up to four descriptors of
//! one tx chain, read and validated by `read_packet`, then handed to the muxer. Checks that the
//! header round-trips, that exactly the well-formed packets are accepted with their payload,
//! and that whatever the muxer answers is addressed to the guest and fits the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sandpod_vmm::devices::virtio::queue::{pop_chain, QueueConfig};
use sandpod_vmm::devices::virtio::vsock::packet::{
    read_packet, Header, PacketError, TxPayload, HDR_SIZE, HOST_CID, MAX_PKT_PAYLOAD,
};
use sandpod_vmm_fuzz::{guest_memory, muxer, publish, write_desc, F_NEXT, GUEST_CID};

const DESC: u64 = 0;
const AVAIL: u64 = 0x100;
const USED: u64 = 0x200;
const PKT: u64 = 0x1000;
const PKT_MAX: usize = 0x7000;
const RX_ROOM: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if let Some(b) = data.get(..HDR_SIZE) {
        let b: &[u8; HDR_SIZE] = b.try_into().expect("HDR_SIZE bytes");
        assert_eq!(
            &Header::parse(b).to_bytes(),
            b,
            "header does not round-trip"
        );
    }

    // data[0] % 4 cut points (the next bytes, scaled to the packet) split the packet.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let ncuts = usize::from(n % 4);
    if rest.len() < ncuts {
        return;
    }
    let (cut_bytes, pkt) = rest.split_at(ncuts);
    let pkt = &pkt[..pkt.len().min(PKT_MAX)];
    let mut cuts: Vec<usize> = cut_bytes
        .iter()
        .map(|&c| usize::from(c) * pkt.len() / 255)
        .collect();
    cuts.sort_unstable();
    cuts.push(pkt.len());

    let mem = guest_memory(&[]);
    let mut start = 0;
    for (i, &end) in cuts.iter().enumerate() {
        let last = i + 1 == cuts.len();
        let i = i as u16;
        let len = (end - start) as u32;
        let flags = if last { 0 } else { F_NEXT };
        write_desc(&mem, DESC, i, (PKT + start as u64, len, flags, i + 1));
        start = end;
    }
    vm_memory::Bytes::write_slice(&mem, pkt, vm_memory::GuestAddress(PKT)).expect("packet fits");
    publish(&mem, AVAIL, &[0]);
    let config = QueueConfig {
        max_size: 4,
        size: 4,
        ready: true,
        desc: DESC,
        avail: AVAIL,
        used: USED,
    };
    let mut queue = config.build(&mem).expect("a valid queue");
    let chain = pop_chain(&mut queue, &mem, false)
        .expect("a sane available ring")
        .expect("one chain");

    let result = read_packet(&chain, &mem);
    if pkt.len() < HDR_SIZE {
        assert!(matches!(result, Err(PacketError::Short(n)) if n == pkt.len()));
        return;
    }
    let hdr = Header::parse(pkt[..HDR_SIZE].try_into().expect("HDR_SIZE bytes"));
    let fits = hdr.len <= MAX_PKT_PAYLOAD && hdr.len as usize <= pkt.len() - HDR_SIZE;
    let (parsed, mut payload) = match result {
        Ok(p) => p,
        Err(e) => {
            assert!(!fits, "a well-formed packet was rejected: {e}");
            return;
        }
    };
    assert!(fits, "a packet with a bad length was accepted: {hdr:?}");
    assert_eq!(parsed, hdr);
    let mut bytes = std::collections::VecDeque::new();
    TxPayload::append_to(&mut payload.clone(), &mut bytes).expect("a mapped payload");
    assert_eq!(bytes, &pkt[HDR_SIZE..HDR_SIZE + hdr.len as usize]);

    // The muxer validates the rest (CIDs, type, op, ports, credit).
    let mut m = muxer();
    m.on_guest_packet(&parsed, &mut payload);
    let mut answers = 0;
    while m.has_rx_work() && answers < 16 {
        let Some((h, p)) = m.next_rx_packet(RX_ROOM) else {
            break;
        };
        assert_eq!((h.src_cid, h.dst_cid), (HOST_CID, GUEST_CID), "{h:?}");
        assert!(
            p.len() <= RX_ROOM,
            "{} bytes for a {RX_ROOM}-byte buffer",
            p.len()
        );
        answers += 1;
    }
});
