use super::*;
use std::io::{Read, Write};

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

fn guest(op: u16, len: u32, buf_alloc: u32, fwd_cnt: u32) -> Header {
    Header {
        src_cid: 3,
        dst_cid: HOST_CID,
        src_port: 1024,
        dst_port: 1 << 30,
        len,
        type_: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc,
        fwd_cnt,
    }
}

/// Reads for the guest into a buffer with `room` bytes of payload space.
fn read(c: &mut Connection, room: usize) -> (ReadOutcome, Vec<u8>) {
    let mut sink = VecSink {
        room,
        data: Vec::new(),
    };
    let outcome = c.read_for_guest(&mut sink).unwrap();
    (outcome, sink.data)
}

fn read_all(s: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = [0u8; 4096];
    while let Ok(n) = s.read(&mut b) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[..n]);
    }
    out
}

#[test]
fn host_initiated_handshake_writes_ok_line() {
    let (ours, mut client) = pair();
    let mut c = Connection::new(ours, 3, 1 << 30, 1024, State::Connecting);
    assert!(!c.wants_read());
    let req = c.header(OP_REQUEST, 0, 0);
    assert_eq!((req.src_cid, req.dst_cid, req.dst_port), (2, 3, 1024));
    assert_eq!(req.buf_alloc, CONN_BUF_SIZE);
    // Data before the RESPONSE is a protocol error.
    assert_eq!(
        c.on_packet(&guest(OP_RW, 1, 4096, 0), &mut &b"x"[..]),
        Action::Reset
    );
    assert_eq!(
        c.on_packet(&guest(OP_RESPONSE, 0, 4096, 0), &mut &[][..]),
        Action::None
    );
    assert_eq!(c.state(), State::Established);
    assert!(c.wants_read());
    assert_eq!(c.flush().unwrap(), Action::None);
    assert_eq!(read_all(&mut client), b"OK 1073741824\n");
    // The OK line does not count as forwarded guest data.
    assert_eq!(c.header(OP_CREDIT_UPDATE, 0, 0).fwd_cnt, 0);
}

#[test]
fn credit_accounting_both_ways() {
    let (ours, mut client) = pair();
    let mut c = Connection::new(ours, 3, 1 << 30, 1024, State::Established);
    // The guest's credit for us: buf_alloc minus what is in flight.
    assert_eq!(
        c.on_packet(&guest(OP_CREDIT_UPDATE, 0, 100, 0), &mut &[][..]),
        Action::None
    );
    assert_eq!(c.peer_credit(), 100);
    client.write_all(&[7u8; 300]).unwrap();
    let (ReadOutcome::Data(n), d) = read(&mut c, 4096) else {
        panic!("expected data")
    };
    assert_eq!(n, d.len());
    assert_eq!(d.len(), 100);
    let h = c.header(OP_RW, 100, 100);
    assert_eq!(h.len, 100);
    assert_eq!(c.peer_credit(), 0);
    assert_eq!(read(&mut c, 4096).0, ReadOutcome::NoCredit);
    // The guest consumed 60 bytes.
    c.on_packet(&guest(OP_CREDIT_UPDATE, 0, 100, 60), &mut &[][..]);
    assert_eq!(c.peer_credit(), 60);
    let (ReadOutcome::Data(_), d) = read(&mut c, 16) else {
        panic!("expected data")
    };
    assert_eq!(d.len(), 16);

    // Guest -> host: forwarded bytes raise fwd_cnt; an update is due past the threshold.
    let chunk = vec![1u8; 32 * 1024];
    let chunk_len = u32::try_from(chunk.len()).unwrap();
    let mut sent = 0u32;
    while sent < CREDIT_UPDATE_THRESHOLD {
        assert_eq!(
            c.on_packet(&guest(OP_RW, chunk_len, 100, 60), &mut &chunk[..]),
            Action::None
        );
        assert_eq!(c.flush().unwrap(), Action::None);
        sent += chunk_len;
        assert_eq!(read_all(&mut client).len(), chunk.len());
    }
    assert!(c.needs_credit_update());
    let h = c.header(OP_CREDIT_UPDATE, 0, 0);
    assert_eq!(h.fwd_cnt, sent);
    assert!(!c.needs_credit_update());
    assert_eq!(
        c.on_packet(&guest(OP_CREDIT_REQUEST, 0, 100, 60), &mut &[][..]),
        Action::Send(OP_CREDIT_UPDATE, 0)
    );
}

#[test]
fn host_back_pressure_is_bounded() {
    let (ours, client) = pair();
    let mut c = Connection::new(ours, 3, 1 << 30, 1024, State::Established);
    // The client never reads: the socket fills, then our buffer, then the guest is reset.
    let chunk = vec![0u8; 64 * 1024];
    let chunk_len = u32::try_from(chunk.len()).unwrap();
    let mut accepted = 0u32;
    loop {
        match c.on_packet(&guest(OP_RW, chunk_len, 4096, 0), &mut &chunk[..]) {
            Action::None => accepted += chunk_len,
            Action::Reset => break,
            other => panic!("unexpected {other:?}"),
        }
        c.flush().unwrap();
        assert!(accepted < 64 << 20, "unbounded buffering");
    }
    assert!(c.has_pending_output());
    // fwd_cnt only counts what reached the socket, so the guest ran out of credit first.
    let h = c.header(OP_CREDIT_UPDATE, 0, 0);
    assert!((accepted - h.fwd_cnt) >= CONN_BUF_SIZE - chunk_len);
    drop(client);
}

#[test]
fn half_close_and_reset() {
    let (ours, mut client) = pair();
    let mut c = Connection::new(ours, 3, 1 << 30, 1024, State::Established);
    let mut sd = guest(OP_SHUTDOWN, 0, 4096, 0);
    sd.flags = SHUTDOWN_SEND;
    c.on_packet(&guest(OP_RW, 2, 4096, 0), &mut &b"hi"[..]);
    assert_eq!(c.on_packet(&sd, &mut &[][..]), Action::None);
    // Data after SHUTDOWN_SEND is a violation.
    assert_eq!(
        c.on_packet(&guest(OP_RW, 1, 4096, 0), &mut &b"x"[..]),
        Action::Reset
    );
    assert_eq!(c.flush().unwrap(), Action::None);
    // The buffered data, then EOF for the host client; the other direction still works.
    assert_eq!(read_all(&mut client), b"hi");
    assert!(c.wants_read());
    client.write_all(b"back").unwrap();
    assert_eq!(read(&mut c, 100), (ReadOutcome::Data(4), b"back".to_vec()));
    drop(client);
    assert_eq!(read(&mut c, 100).0, ReadOutcome::Eof);
    assert!(!c.wants_read());
    // Full shutdown: RST once nothing is pending.
    sd.flags = SHUTDOWN_SEND | SHUTDOWN_RCV;
    assert_eq!(c.on_packet(&sd, &mut &[][..]), Action::Reset);
    assert_eq!(
        c.on_packet(&guest(OP_RST, 0, 0, 0), &mut &[][..]),
        Action::Close
    );
}

#[test]
fn fwd_cnt_wraps() {
    let (ours, _client) = pair();
    let mut c = Connection::new(ours, 3, 1 << 30, 1024, State::Established);
    c.tx_cnt = Wrapping(u32::MAX - 10);
    c.on_packet(
        &guest(OP_CREDIT_UPDATE, 0, 100, u32::MAX - 20),
        &mut &[][..],
    );
    assert_eq!(c.peer_credit(), 90);
    c.header(OP_RW, 0, 20);
    assert_eq!(c.peer_credit(), 70);
}
