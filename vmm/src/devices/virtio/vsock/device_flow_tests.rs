//! Flow control end to end (the device thread, real sockets): a stalled host reader loses no
//! byte and reorders none; a guest without rx buffers makes the VMM buffer nothing.

use std::io::ErrorKind;
use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, setsockopt, sockopt};

use super::connection::CONN_BUF_SIZE;
use super::*;

/// Deterministic bytes that differ between offsets (a reordering or a loss changes them).
fn pattern(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// A guest connection from port 5001 to host port 1025, established; the host's end.
fn connect(s: &Setup, d: &mut Driver<'_>, buf_alloc: u32) -> (UnixStream, UnixListener) {
    let host = UnixListener::bind(sandpod_vmconfig::uds_port_path(&s.path, 1025)).unwrap();
    let mut req = hdr(OP_REQUEST, 5001, 1025);
    req.buf_alloc = buf_alloc;
    d.send(req, &[]);
    let (h, _) = d.recv();
    assert_eq!(h.op, OP_RESPONSE);
    let (peer, _) = host.accept().unwrap();
    (peer, host)
}

/// The guest's view of its credit for the host: what the device advertised last.
struct GuestSender {
    sent: u32,
    fwd_cnt: u32,
    buf_alloc: u32,
}

impl GuestSender {
    fn credit(&self) -> u32 {
        self.buf_alloc - (self.sent - self.fwd_cnt)
    }

    /// Takes an rx packet from the device (a credit update) into account.
    fn take(&mut self, d: &mut Driver<'_>) {
        let (h, _) = d.recv();
        assert_eq!(h.op, OP_CREDIT_UPDATE, "{h:?}");
        self.fwd_cnt = h.fwd_cnt;
        self.buf_alloc = h.buf_alloc;
    }
}

#[test]
fn a_stalled_host_reader_gets_every_byte_in_order_once_it_reads() {
    let mem = guest_mem(32 << 20);
    let (s, mut d) = start("stall", &mem);
    d.post_rx(128);
    let (mut peer, _host) = connect(&s, &mut d, 64 * 1024);
    let data = pattern(3 << 20);
    const CHUNK: usize = 48 * 1024;
    let mut g = GuestSender {
        sent: 0,
        fwd_cnt: 0,
        buf_alloc: CONN_BUF_SIZE,
    };
    let mut off = 0;
    let send = |g: &mut GuestSender, d: &mut Driver<'_>, off: &mut usize| {
        let n = CHUNK.min(data.len() - *off).min(g.credit() as usize);
        d.send(hdr(OP_RW, 5001, 1025), &data[*off..*off + n]);
        d.wait_tx_used();
        *off += n;
        g.sent += u32::try_from(n).unwrap();
    };
    // The host does not read: the guest sends what its credit allows until the socket and
    // the device's buffer are full and no more credit comes.
    loop {
        if g.credit() > 0 {
            send(&mut g, &mut d, &mut off);
            continue;
        }
        // Credit updates still on their way?
        std::thread::sleep(Duration::from_millis(200));
        if d.rx.used_idx() == d.rx.seen() {
            break;
        }
        while d.rx.used_idx() != d.rx.seen() {
            g.take(&mut d);
        }
    }
    assert!(off < data.len(), "the stalled reader took everything");
    assert!(g.sent - g.fwd_cnt <= CONN_BUF_SIZE);
    // The host reads again, slowly; the guest sends the rest as credit comes back.
    let total = data.len();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(total);
        let mut b = vec![0u8; 16 * 1024];
        while got.len() < total {
            let n = peer.read(&mut b).unwrap();
            assert!(n > 0, "EOF after {} bytes", got.len());
            got.extend_from_slice(&b[..n]);
            std::thread::sleep(Duration::from_micros(200));
        }
        got
    });
    while off < data.len() {
        if g.credit() == 0 {
            g.take(&mut d);
        } else {
            send(&mut g, &mut d, &mut off);
        }
    }
    let got = reader.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the bytes differ from what the guest sent");
    std::fs::remove_file(sandpod_vmconfig::uds_port_path(&s.path, 1025)).unwrap();
}

#[test]
fn a_guest_without_rx_buffers_makes_the_vmm_buffer_nothing() {
    let mem = guest_mem(32 << 20);
    let (s, mut d) = start("norx", &mem);
    d.post_rx(1);
    // Plenty of credit for the host: only the missing rx buffers hold the data back.
    let (peer, _host) = connect(&s, &mut d, 64 << 20);
    peer.set_nonblocking(true).unwrap();
    // A small send buffer, so what the socket holds fits the mock driver's rx buffers.
    setsockopt(&peer, sockopt::SndBuf, &(32 * 1024)).unwrap();
    let data = pattern(16 << 20);
    // The host writes until its writes would block for a while (or all of it went in).
    let mut written = 0;
    let mut idle = 0;
    while written < data.len() && idle < 20 {
        match (&peer).write(&data[written..]) {
            Ok(n) => {
                written += n;
                idle = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                idle += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("host write: {e}"),
        }
    }
    // What went in sits in the socket (its send buffer accounts for it), not in the VMM.
    let sndbuf = getsockopt(&peer.as_fd(), sockopt::SndBuf).unwrap();
    let bound = 2 * sndbuf;
    assert!(
        written <= bound,
        "{written} bytes written with no rx buffer: the VMM buffers them (bound {bound})"
    );
    // Buffers come: every byte written arrives, in order.
    let mut got = Vec::new();
    while got.len() < written {
        d.post_rx(1);
        let (h, p) = d.recv();
        assert_eq!(h.op, OP_RW, "{h:?}");
        got.extend_from_slice(&p);
    }
    assert!(
        got == data[..written],
        "the guest got other bytes than the host wrote"
    );
    std::fs::remove_file(sandpod_vmconfig::uds_port_path(&s.path, 1025)).unwrap();
}
