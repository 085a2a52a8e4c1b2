//! The device behind the MMIO transport: features, config space, activation (offloads set
//! on the tap), frames both ways through the device thread, reset.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use virtio_bindings::virtio_net::*;
use vm_memory::{Bytes, GuestAddress};

use super::frame::HDR_LEN;
use super::tap::tun_offloads;
use super::test_utils::{frame, peer_read, FakeTap};
use super::*;
use crate::devices::virtio::test_utils::{
    guest_mem, halves, negotiate, rd, transport, wait_until, wr, DriverQueue,
};
use crate::devices::virtio::{
    MmioTransport, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
    VIRTIO_F_VERSION_1,
};

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

/// A device on a fake tap; the test's end of the tap and the offloads log.
fn net(mac: Option<[u8; 6]>, mtu: Option<u16>) -> (Net, OwnedFd, Arc<Mutex<Vec<u32>>>) {
    let (tap, peer, offloads) = FakeTap::new();
    (Net::new(Box::new(tap), mac, mtu), peer, offloads)
}

fn bits(list: &[u32]) -> u64 {
    list.iter().fold(0, |f, b| f | (1u64 << b))
}

#[test]
fn features_follow_the_configuration() {
    let (plain, _, _) = net(None, None);
    let f = plain.device_features();
    let always = bits(&[
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_F_STATUS,
    ]);
    assert_eq!(f & always, always);
    let never = bits(&[
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_MTU,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_CTRL_VQ,
        VIRTIO_NET_F_MQ,
        VIRTIO_NET_F_GUEST_UFO,
        VIRTIO_NET_F_HOST_UFO,
        VIRTIO_NET_F_GUEST_ECN,
        crate::devices::virtio::chain::VIRTIO_RING_F_INDIRECT_DESC,
    ]);
    assert_eq!(f & never, 0);
    let (full, _, _) = net(Some(MAC), Some(1400));
    let with = bits(&[VIRTIO_NET_F_MAC, VIRTIO_NET_F_MTU]);
    assert_eq!(full.device_features(), f | with);
    assert_eq!(full.device_type(), 1);
    assert_eq!(full.queue_max_sizes(), &[256, 256]);
}

#[test]
fn config_space_reads() {
    let (mut dev, _, _) = net(Some(MAC), Some(9000));
    let mut b = [0xffu8; 12];
    dev.read_config(0, &mut b);
    assert_eq!(&b[..6], &MAC);
    assert_eq!(u16::from_le_bytes([b[6], b[7]]), 1, "link up");
    assert_eq!(u16::from_le_bytes([b[8], b[9]]), 1, "one queue pair");
    assert_eq!(u16::from_le_bytes([b[10], b[11]]), 9000);
    // Byte by byte (Linux reads the MAC so), past the end, and writes ignored.
    let mut one = [0u8; 1];
    dev.read_config(5, &mut one);
    assert_eq!(one[0], 9);
    let mut far = [0xffu8; 4];
    dev.read_config(12, &mut far);
    assert_eq!(far, [0; 4]);
    dev.read_config(u64::MAX, &mut far);
    assert_eq!(far, [0; 4]);
    dev.write_config(0, &[1, 2, 3, 4, 5, 6]);
    dev.read_config(0, &mut b);
    assert_eq!(&b[..6], &MAC);
}

/// Writes the driver's queue registers for `q` as queue `index`, then QueueReady.
fn setup(t: &mut MmioTransport, index: u32, q: &DriverQueue<'_>) {
    let c = q.config(256);
    wr(t, 0x30, index);
    wr(t, 0x38, 256);
    for (reg, addr) in [(0x80, c.desc), (0x90, c.avail), (0xa0, c.used)] {
        let (lo, hi) = halves(addr);
        wr(t, reg, lo);
        wr(t, reg + 4, hi);
    }
    wr(t, 0x44, 1);
}

#[test]
fn end_to_end_through_the_transport() {
    let mem = guest_mem(16 << 20);
    let (dev, peer, offloads) = net(Some(MAC), None);
    let mut rig = transport(Box::new(dev), mem.clone());
    let t = &mut rig.t;
    // The driver takes checksums and TSO4 but not TSO6.
    let features = bits(&[
        VIRTIO_F_VERSION_1,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_MAC,
    ]);
    negotiate(t, features);
    assert_ne!(rd(t, 0x70) & STATUS_FEATURES_OK, 0);
    let kick = |i: usize| rig.notify[i].try_clone().unwrap();
    let mut rx = DriverQueue::new(&mem, 0, 256, kick(0));
    let mut tx = DriverQueue::new(&mem, 0x1_0000, 256, kick(1));
    setup(t, 0, &rx);
    setup(t, 1, &tx);
    let ok = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK;
    wr(t, 0x70, ok);
    assert_eq!(rd(t, 0x70), ok);
    assert!(t.is_activated());
    assert_eq!(
        *offloads.lock().unwrap(),
        vec![tun_offloads(features)],
        "offloads set on activation"
    );
    assert_eq!(tun_offloads(features), libc::TUN_F_CSUM | libc::TUN_F_TSO4);

    // Guest to host, with a partial checksum (negotiated).
    let mut out = frame(80, 0x33);
    out[0] = u8::try_from(VIRTIO_NET_HDR_F_NEEDS_CSUM).unwrap();
    out[6] = 34;
    out[8] = 16;
    mem.write_slice(&out, GuestAddress(0x10_0000)).unwrap();
    tx.add(&[(0x10_0000, u32::try_from(out.len()).unwrap(), false)]);
    tx.kick();
    wait_until("no frame on the tap", || {
        std::thread::sleep(Duration::from_millis(1));
        tx.used_idx() == 1
    });
    assert_eq!(peer_read(&peer), Some(out));

    // Host to guest: the frame waits in the tap until a buffer is posted.
    let inbound = frame(300, 0x44);
    nix::unistd::write(&peer, &inbound).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(rx.used_idx(), 0);
    rx.add(&[(0x20_0000, 4096, true)]);
    rx.kick();
    let e = rx.next_used("no rx frame");
    assert_eq!(e.len() as usize, inbound.len());
    let mut got = vec![0u8; inbound.len()];
    mem.read_slice(&mut got, GuestAddress(0x20_0000)).unwrap();
    assert_eq!(&got[HDR_LEN..], &inbound[HDR_LEN..]);
    wait_until("no used-buffer interrupt", || {
        rig.interrupt.status() & crate::devices::virtio::INT_USED_RING != 0
    });
    assert!(!rig.interrupt.needs_reset());

    // Reset stops the thread: frames stay in the tap.
    wr(&mut rig.t, 0x70, 0);
    rx.add(&[(0x21_0000, 4096, true)]);
    rx.kick();
    nix::unistd::write(&peer, &inbound).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(rx.used_idx(), 1);
}

#[test]
fn unoffered_features_are_refused() {
    let mem = guest_mem(1 << 20);
    let (dev, _peer, offloads) = net(None, None);
    let mut rig = transport(Box::new(dev), mem);
    for bit in [
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_CTRL_VQ,
    ] {
        negotiate(&mut rig.t, bits(&[VIRTIO_F_VERSION_1, bit]));
        assert_eq!(rd(&mut rig.t, 0x70) & STATUS_FEATURES_OK, 0, "bit {bit}");
    }
    assert!(offloads.lock().unwrap().is_empty());
}

#[test]
fn stop_returns_the_counters() {
    let mem = guest_mem(16 << 20);
    let (mut dev, peer, _) = net(None, None);
    let evts = crate::devices::virtio::test_utils::eventfds(2);
    let rx = DriverQueue::new(&mem, 0, 256, evts[0].try_clone().unwrap());
    let mut tx = DriverQueue::new(&mem, 0x1_0000, 256, evts[1].try_clone().unwrap());
    let queues = vec![
        rx.config(256).build(&mem).unwrap(),
        tx.config(256).build(&mem).unwrap(),
    ];
    let interrupt = Arc::new(crate::devices::virtio::Interrupt::new(
        crate::devices::virtio::test_utils::eventfd(),
    ));
    let a = crate::devices::virtio::test_utils::activation(&mem, queues, &evts, &interrupt);
    dev.activate(1 << VIRTIO_F_VERSION_1, a).unwrap();
    mem.write_slice(&frame(60, 1), GuestAddress(0x10_0000))
        .unwrap();
    tx.add(&[(0x10_0000, 72, false)]);
    tx.kick();
    tx.wait_all_used("tx not used");
    assert!(peer_read(&peer).is_some());
    let stats = dev.stop().unwrap();
    assert_eq!(stats.tx_frames, 1);
    assert!(stats.wakeups >= 1);
    assert!(dev.stop().is_none());
}
