//! A hostile guest against the muxer's queues: stale rx entries, an rx queue past its bound,
//! a CREDIT_REQUEST flood, header-only rx buffers.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};

use super::tests::{g, muxer, pump};
use super::*;
use crate::devices::virtio::vsock::rx_queue::RX_QUEUE_SIZE;

/// The host's listener for guest connections to host port 1025.
fn host_port(path: &std::path::Path) -> (UnixListener, PathBuf) {
    let p = PathBuf::from(format!("{}_1025", path.display()));
    let _ = std::fs::remove_file(&p);
    (UnixListener::bind(&p).unwrap(), p)
}

/// The guest connects from `guest_port` to host port 1025; returns the host's end.
fn guest_connect(m: &mut Muxer, l: &UnixListener, guest_port: u32) -> UnixStream {
    m.on_guest_packet(&g(OP_REQUEST, guest_port, 1025), &mut &[][..]);
    l.accept().unwrap().0
}

/// Runs the epoll loop until nothing more happens.
fn pump_until_idle(m: &mut Muxer) {
    let mut events = vec![EpollEvent::default(); 64];
    while m.epoll().wait(50, &mut events).unwrap() > 0 {
        pump(m);
    }
}

/// Every packet the muxer has for buffers of `room` payload bytes.
fn drain(m: &mut Muxer, room: usize) -> Vec<(Header, Vec<u8>)> {
    std::iter::from_fn(|| m.next_rx_packet(room)).collect()
}

#[test]
fn removed_connections_leave_no_stale_rx_or_control_entries() {
    let (mut m, path, _g) = muxer("stale");
    let (l, lp) = host_port(&path);
    // A guest posting no rx buffers opens one connection after the other on the same
    // port; the host has data for each; the guest resets each. Nothing may pile up.
    for _ in 0..300 {
        let mut peer = guest_connect(&mut m, &l, 5000);
        peer.write_all(b"x").unwrap();
        pump(&mut m);
        assert_eq!(m.rx_ready.len(), 1);
        m.on_guest_packet(&g(OP_RST, 5000, 1025), &mut &[][..]);
        assert_eq!(
            m.rx_ready.len(),
            0,
            "a removed connection stays in the rx queue"
        );
        assert_eq!(
            m.control.len(),
            0,
            "a removed connection's RESPONSE stays queued"
        );
    }
    assert_eq!(m.connection_count(), 0);
    assert!(m.next_rx_packet(4096).is_none());
    std::fs::remove_file(lp).unwrap();
}

#[test]
fn rx_queue_is_bounded_and_rebuilt_from_the_connections() {
    let (mut m, path, _g) = muxer("rxq");
    let (l, lp) = host_port(&path);
    let n = u32::try_from(RX_QUEUE_SIZE).unwrap() + 44;
    let mut peers = Vec::new();
    for port in 0..n {
        let mut peer = guest_connect(&mut m, &l, 6000 + port);
        peer.write_all(&port.to_le_bytes()).unwrap();
        peers.push(peer);
    }
    pump_until_idle(&mut m);
    assert!(m.rx_ready.len() <= RX_QUEUE_SIZE);
    assert!(!m.rx_ready.is_synced());
    // Every connection's data arrives anyway (the queue is rebuilt once drained).
    let mut got = Vec::new();
    for (h, p) in drain(&mut m, 4096) {
        if h.op == OP_RW {
            assert_eq!(p, (h.dst_port - 6000).to_le_bytes());
            got.push(h.dst_port);
        }
    }
    got.sort_unstable();
    assert_eq!(got, (6000..6000 + n).collect::<Vec<_>>());
    std::fs::remove_file(lp).unwrap();
}

#[test]
fn credit_request_flood_does_not_starve_other_connections() {
    let (mut m, path, _g) = muxer("flood");
    let (l, lp) = host_port(&path);
    let _peer = guest_connect(&mut m, &l, 5000);
    assert_eq!(m.next_rx_packet(4096).unwrap().0.op, OP_RESPONSE);
    // The guest floods CREDIT_REQUESTs without posting rx buffers...
    for _ in 0..10_000 {
        m.on_guest_packet(&g(OP_CREDIT_REQUEST, 5000, 1025), &mut &[][..]);
    }
    assert_eq!(m.control.len(), 1, "credit updates are coalesced");
    // ... and a host client connects meanwhile: its REQUEST still gets through.
    let mut client = UnixStream::connect(&path).unwrap();
    client.write_all(b"CONNECT 1024\n").unwrap();
    pump(&mut m);
    let ops: Vec<(u16, u32)> = drain(&mut m, 4096)
        .iter()
        .map(|(h, _)| (h.op, h.dst_port))
        .collect();
    assert_eq!(ops, [(OP_CREDIT_UPDATE, 5000), (OP_REQUEST, 1024)]);
    // Once delivered, the next request gets its update again.
    m.on_guest_packet(&g(OP_CREDIT_REQUEST, 5000, 1025), &mut &[][..]);
    assert_eq!(m.next_rx_packet(4096).unwrap().0.op, OP_CREDIT_UPDATE);
    std::fs::remove_file(lp).unwrap();
}

#[test]
fn header_only_rx_buffer_carries_control_not_a_credit_request() {
    let (mut m, path, _g) = muxer("hdronly");
    let (l, lp) = host_port(&path);
    let mut peer = guest_connect(&mut m, &l, 5000);
    // A header-only buffer can carry the RESPONSE.
    assert_eq!(m.next_rx_packet(0).unwrap().0.op, OP_RESPONSE);
    peer.write_all(b"data").unwrap();
    pump(&mut m);
    // Data waits, the guest has credit, the buffer has no room: not "no credit".
    let (h, p) = m.next_rx_packet(0).unwrap();
    assert_eq!((h.op, h.len, p.len()), (OP_CREDIT_UPDATE, 0, 0));
    // The data goes in the next buffer with room.
    let (h, p) = m.next_rx_packet(4096).unwrap();
    assert_eq!((h.op, p.as_slice()), (OP_RW, &b"data"[..]));
    std::fs::remove_file(lp).unwrap();
}
