use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::*;
use crate::devices::virtio::test_utils::vsock_guest_header;
use crate::devices::virtio::vsock::unix::{bind_listener, UdsCleanup};

pub(super) fn muxer(name: &str) -> (Muxer, PathBuf, UdsCleanup) {
    let path = std::env::temp_dir().join(format!("spm-{}-{name}", std::process::id()));
    let (l, guard) = bind_listener(&path).unwrap();
    (Muxer::new(3, path.clone(), l).unwrap(), path, guard)
}

pub(super) fn g(op: u16, src_port: u32, dst_port: u32) -> Header {
    vsock_guest_header(op, src_port, dst_port, 1 << 20)
}

/// Runs the epoll loop once, like the worker.
pub(super) fn pump(m: &mut Muxer) {
    let mut events = vec![EpollEvent::default(); 16];
    let n = m.epoll().wait(100, &mut events).unwrap();
    for ev in &events[..n] {
        m.handle_event(ev.data(), ev.event_set());
    }
}

#[test]
fn junk_from_the_guest_gets_rst_or_is_dropped() {
    let (mut m, _p, _g) = muxer("junk");
    // Wrong source CID or not for the host: dropped.
    let mut h = g(OP_RW, 1, 2);
    h.src_cid = 4;
    m.on_guest_packet(&h, &mut &[][..]);
    let mut h = g(OP_RW, 1, 2);
    h.dst_cid = 5;
    m.on_guest_packet(&h, &mut &[][..]);
    assert!(!m.has_rx_work());
    // Unknown connection: RST from the right ports.
    m.on_guest_packet(&g(OP_RW, 1000, 2000), &mut &b"x"[..]);
    let (h, _) = m.next_rx_packet(4096).unwrap();
    assert_eq!(
        (h.op, h.src_port, h.dst_port, h.dst_cid),
        (OP_RST, 2000, 1000, 3)
    );
    // RST to unknown: ignored. Seqpacket: RST.
    m.on_guest_packet(&g(OP_RST, 1000, 2000), &mut &[][..]);
    assert!(m.next_rx_packet(4096).is_none());
    let mut h = g(OP_REQUEST, 1, 2);
    h.type_ = 2;
    m.on_guest_packet(&h, &mut &[][..]);
    assert_eq!(m.next_rx_packet(4096).unwrap().0.op, OP_RST);
    // The RST queue is bounded.
    for i in 0..(u32::try_from(MAX_RSTS).unwrap() + 100) {
        m.on_guest_packet(&g(OP_RW, i, 2000), &mut &[][..]);
    }
    let mut n = 0;
    while m.next_rx_packet(4096).is_some() {
        n += 1;
    }
    assert_eq!(n, MAX_RSTS);
}

#[test]
fn many_host_clients_and_handshake_timeouts() {
    let (mut m, path, _g) = muxer("many");
    let mut clients = Vec::new();
    for port in 0..20u32 {
        let mut c = UnixStream::connect(&path).unwrap();
        c.write_all(format!("CONNECT {}\n", 2000 + port).as_bytes())
            .unwrap();
        clients.push(c);
    }
    // One that never finishes its line.
    let mut silent = UnixStream::connect(&path).unwrap();
    silent.write_all(b"CONN").unwrap();
    for _ in 0..5 {
        pump(&mut m);
    }
    let mut requests = Vec::new();
    while let Some((h, _)) = m.next_rx_packet(4096) {
        assert_eq!(h.op, OP_REQUEST);
        requests.push((h.src_port, h.dst_port));
    }
    assert_eq!(requests.len(), 20);
    let mut local: Vec<u32> = requests.iter().map(|r| r.0).collect();
    local.sort_unstable();
    local.dedup();
    assert_eq!(local.len(), 20, "host ports are unique");
    assert!(m.timeout_ms() > 0);
    // Accept half of them; the guest refuses the others.
    for (i, (host, guest)) in requests.iter().enumerate() {
        let op = if i % 2 == 0 { OP_RESPONSE } else { OP_RST };
        m.on_guest_packet(&g(op, *guest, *host), &mut &[][..]);
    }
    assert_eq!(m.connection_count(), 10);
    for (i, c) in clients.iter_mut().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 32];
        let n = c.read(&mut b).unwrap();
        if i % 2 == 0 {
            assert!(b[..n].starts_with(b"OK "), "{:?}", &b[..n]);
        } else {
            assert_eq!(n, 0);
        }
    }
    // Past the deadlines: the silent client is dropped, established ones stay.
    m.expire(Instant::now() + CONNECT_TIMEOUT + Duration::from_secs(1));
    silent
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut b = [0u8; 1];
    assert_eq!(silent.read(&mut b).unwrap(), 0);
    assert_eq!(m.connection_count(), 10);
    assert_eq!(m.timeout_ms(), -1);
}

#[test]
fn unanswered_requests_time_out_with_rst() {
    let (mut m, path, _g) = muxer("late");
    let mut c = UnixStream::connect(&path).unwrap();
    c.write_all(b"CONNECT 1024\n").unwrap();
    pump(&mut m);
    let (req, _) = m.next_rx_packet(4096).unwrap();
    assert_eq!(req.op, OP_REQUEST);
    m.expire(Instant::now() + CONNECT_TIMEOUT + Duration::from_secs(1));
    let (h, _) = m.next_rx_packet(4096).unwrap();
    assert_eq!((h.op, h.src_port), (OP_RST, req.src_port));
    assert_eq!(m.connection_count(), 0);
}
