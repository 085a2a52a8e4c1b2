//! One vsock stream connection between a guest port and a host Unix socket: its state
//! machine, credit accounting and the bounded buffer of guest data waiting for the host.
//!
//! Flow control (virtio spec 5.10.6.3): we advertise `buf_alloc` = [`CONN_BUF_SIZE`] and
//! `fwd_cnt` = guest bytes written to the host socket. A guest that respects that credit never
//! makes our buffer grow beyond `buf_alloc`; one that does not is reset. While the host socket
//! would block, `fwd_cnt` stays put and the guest runs out of credit: back-pressure without
//! unbounded buffering. In the other direction we never send more than the guest's credit
//! (`peer_buf_alloc - (tx_cnt - peer_fwd_cnt)`).

use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;
use std::num::Wrapping;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use super::packet::*;

/// Our receive buffer per connection (what we advertise as buf_alloc).
pub const CONN_BUF_SIZE: u32 = 256 * 1024;
/// Send a CREDIT_UPDATE once this many bytes were forwarded since the last one we sent.
pub const CREDIT_UPDATE_THRESHOLD: u32 = CONN_BUF_SIZE / 4;

/// Connection state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// A host client asked for the guest port; REQUEST sent, waiting for RESPONSE.
    Connecting,
    /// Data flows.
    Established,
}

/// What the muxer must do after a guest packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing (beyond re-evaluating interest).
    None,
    /// Send the guest this control op with these flags.
    Send(u16, u32),
    /// Send the guest RST and drop the connection.
    Reset,
    /// Drop the connection silently (the guest reset it).
    Close,
}

/// Outcome of reading the host socket for the guest.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were received into the sink: send them as OP_RW.
    Data(usize),
    /// Nothing to read now.
    WouldBlock,
    /// The guest has no credit left for us.
    NoCredit,
    /// The host closed (at least) its sending side.
    Eof,
}

/// A connection.
#[derive(Debug)]
pub struct Connection {
    /// Host side.
    pub stream: UnixStream,
    /// Host port (ours).
    pub local_port: u32,
    /// Guest port.
    pub peer_port: u32,
    guest_cid: u64,
    state: State,
    /// Connecting connections time out.
    pub deadline: Option<Instant>,
    to_host: VecDeque<u8>,
    /// Bytes at the front of `to_host` that are not guest data (the `OK` line).
    uncounted: usize,
    fwd_cnt: Wrapping<u32>,
    last_fwd_cnt_sent: Wrapping<u32>,
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
    tx_cnt: Wrapping<u32>,
    peer_shutdown: u32,
    host_eof: bool,
    host_write_shut: bool,
}

impl Connection {
    /// A connection for `stream`; `connecting` for host-initiated ones (waiting for the
    /// guest's RESPONSE), else established (guest-initiated, after a successful connect).
    pub fn new(
        stream: UnixStream,
        guest_cid: u64,
        local_port: u32,
        peer_port: u32,
        state: State,
    ) -> Self {
        Connection {
            stream,
            local_port,
            peer_port,
            guest_cid,
            state,
            deadline: None,
            to_host: VecDeque::new(),
            uncounted: 0,
            fwd_cnt: Wrapping(0),
            last_fwd_cnt_sent: Wrapping(0),
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            tx_cnt: Wrapping(0),
            peer_shutdown: 0,
            host_eof: false,
            host_write_shut: false,
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// A header for a packet to the guest; records the fwd_cnt (and for RW the bytes) sent.
    pub fn header(&mut self, op: u16, flags: u32, len: u32) -> Header {
        self.last_fwd_cnt_sent = self.fwd_cnt;
        if op == OP_RW {
            self.tx_cnt += Wrapping(len);
        }
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc: CONN_BUF_SIZE,
            fwd_cnt: self.fwd_cnt.0,
        }
    }

    /// How many bytes the guest can still take from us.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = (self.tx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Whether enough was forwarded that the guest should hear about it.
    pub fn needs_credit_update(&self) -> bool {
        (self.fwd_cnt - self.last_fwd_cnt_sent).0 >= CREDIT_UPDATE_THRESHOLD
    }

    /// Whether the host socket should be read for the guest (credit aside).
    pub fn wants_read(&self) -> bool {
        self.state == State::Established && !self.host_eof && self.peer_shutdown & SHUTDOWN_RCV == 0
    }

    /// Whether guest data waits for the host socket.
    pub fn has_pending_output(&self) -> bool {
        !self.to_host.is_empty()
    }

    /// Handles a packet from the guest; the payload of OP_RW goes straight to the host socket
    /// when nothing is buffered before it, and what the socket does not take is buffered.
    pub fn on_packet(&mut self, hdr: &Header, payload: &mut dyn TxPayload) -> Action {
        self.peer_buf_alloc = hdr.buf_alloc;
        self.peer_fwd_cnt = Wrapping(hdr.fwd_cnt);
        match (hdr.op, self.state) {
            (OP_RESPONSE, State::Connecting) => {
                self.state = State::Established;
                self.deadline = None;
                let line = format!("OK {}\n", self.local_port);
                self.uncounted = line.len();
                self.to_host.extend(line.as_bytes());
                Action::None
            }
            (OP_RW, State::Established) => {
                if self.peer_shutdown & SHUTDOWN_SEND != 0 {
                    return Action::Reset;
                }
                let buffered = self.to_host.len() - self.uncounted;
                if buffered + payload.remaining() > CONN_BUF_SIZE as usize {
                    // Guest-triggerable, once per connection: debug, not warn.
                    tracing::debug!(
                        "vsock: guest port {} exceeded its credit; resetting",
                        self.peer_port
                    );
                    return Action::Reset;
                }
                match self.forward(payload) {
                    Ok(()) => Action::None,
                    Err(err) => {
                        tracing::debug!(
                            "vsock: host socket of guest port {} failed: {err}",
                            self.peer_port
                        );
                        Action::Reset
                    }
                }
            }
            (OP_CREDIT_UPDATE, State::Established) => Action::None,
            (OP_CREDIT_REQUEST, State::Established) => Action::Send(OP_CREDIT_UPDATE, 0),
            (OP_SHUTDOWN, State::Established) => {
                self.peer_shutdown |= hdr.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
                self.after_output()
            }
            (OP_RST, _) => Action::Close,
            _ => Action::Reset,
        }
    }

    /// What to do once output may have drained: a guest that shut down both directions gets
    /// its RST (which completes its close) once its data reached the host; one that only shut
    /// its sending side makes us shut the host socket's write side.
    fn after_output(&mut self) -> Action {
        if !self.to_host.is_empty() {
            return Action::None;
        }
        if self.peer_shutdown == SHUTDOWN_RCV | SHUTDOWN_SEND {
            return Action::Reset;
        }
        if self.peer_shutdown & SHUTDOWN_SEND != 0 && !self.host_write_shut {
            self.host_write_shut = true;
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        Action::None
    }

    /// Counts `n` bytes written to the host socket (after the uncounted `OK` line).
    fn count_forwarded(&mut self, n: usize) {
        let counted = n.saturating_sub(self.uncounted);
        self.uncounted -= n - counted;
        // fwd_cnt counts modulo 2^32 (and one send is at most the buffer).
        #[allow(clippy::cast_possible_truncation)]
        let counted = Wrapping(counted as u32);
        self.fwd_cnt += counted;
    }

    /// Sends guest data to the host socket while nothing is buffered before it, then buffers
    /// the rest (bounded by the credit check of the caller).
    fn forward(&mut self, payload: &mut dyn TxPayload) -> io::Result<()> {
        while self.to_host.is_empty() && payload.remaining() > 0 {
            match payload.send_to(self.stream.as_fd()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.count_forwarded(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        payload.append_to(&mut self.to_host)
    }

    /// Writes buffered guest data to the host socket until it would block. An error means
    /// the host side is gone: reset.
    pub fn flush(&mut self) -> io::Result<Action> {
        while !self.to_host.is_empty() {
            let (front, _) = self.to_host.as_slices();
            let mut front: &[u8] = front;
            match front.send_to(self.stream.as_fd()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.to_host.drain(..n);
                    self.count_forwarded(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.after_output())
    }

    /// Reads up to the sink's room (and the guest's credit) from the host socket, straight
    /// into the sink.
    pub fn read_for_guest(&mut self, sink: &mut dyn RxSink) -> io::Result<ReadOutcome> {
        let max = sink
            .room()
            .min(self.peer_credit() as usize)
            .min(MAX_PKT_PAYLOAD as usize);
        if max == 0 {
            return Ok(ReadOutcome::NoCredit);
        }
        loop {
            return match sink.recv_from(self.stream.as_fd(), max) {
                Ok(0) => {
                    self.host_eof = true;
                    Ok(ReadOutcome::Eof)
                }
                Ok(n) => Ok(ReadOutcome::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
