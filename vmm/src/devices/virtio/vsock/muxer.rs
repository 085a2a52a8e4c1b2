//! The vsock muxer: every connection, the hybrid listener and its pending clients, the
//! packets waiting for the guest's rx queue, and epoll interest on the Unix sockets.
//!
//! Reading a host socket is driven by the rx queue: a readable socket is disarmed (no more
//! EPOLLIN) and queued; it is read only when the guest has an rx buffer for the data and
//! credit for it, and re-armed when a read would block or credit comes back. So a guest
//! without rx buffers or credit makes us stop reading (the host client's writes block) and
//! never makes us spin.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Instant;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::connection::{Action, Connection, ReadOutcome, State};
use super::packet::*;
use super::rx_queue::RxQueue;
use super::unix::{connect_host_port, Handshake, PendingClient, CONNECT_TIMEOUT};

/// epoll token of the listener (fds are tokens for streams; fixed tokens are above u32).
pub const TOKEN_LISTENER: u64 = 1 << 40;
/// Most connections at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most host clients still sending their CONNECT line.
pub const MAX_PENDING: usize = 64;
/// Most RSTs for untracked connections waiting for rx buffers (the guest's junk gets them;
/// beyond that they are dropped).
pub const MAX_RSTS: usize = 1024;
/// Most control packets queued for one connection: its REQUEST or RESPONSE and one credit
/// update (coalesced), so no connection can fill the control queue and starve the others.
pub const MAX_CONTROL_PER_CONN: u8 = 2;
/// First host port for host-initiated connections.
pub const EPHEMERAL_PORT_START: u32 = 1 << 30;

/// A connection: (host port, guest port).
pub(super) type Key = (u32, u32);

struct Entry {
    conn: Connection,
    armed_in: bool,
    /// Readable host socket waiting for an rx buffer (in `rx_ready`, unless that is out of
    /// sync).
    rx_pending: bool,
    /// Control packets of this connection in `control` (at most MAX_CONTROL_PER_CONN).
    control_pending: u8,
    credit_update_queued: bool,
    awaiting_credit: bool,
    registered: Option<EventSet>,
}

/// All connections of one vsock device.
pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    conns: HashMap<Key, Entry>,
    by_fd: HashMap<RawFd, Key>,
    pending: HashMap<RawFd, PendingClient>,
    /// Control packets of tracked connections (bounded per connection).
    control: VecDeque<(Key, u16, u32)>,
    /// RSTs for keys no longer (or never) tracked.
    rsts: VecDeque<Key>,
    /// Control packets dropped (for rate-limited logging).
    dropped: u64,
    rx_ready: RxQueue,
    next_port: u32,
    /// Set while accepting is paused after an accept error (e.g. out of fds).
    listener_paused_until: Option<Instant>,
    /// A guest listener has accepted a host connection (OP_RESPONSE).
    guest_listened: bool,
}

/// The epoll token of a Unix stream: its fd (the fixed tokens are above u32).
#[allow(clippy::cast_sign_loss)] // an open fd is never negative: the value is kept
pub(super) fn fd_token(fd: RawFd) -> u64 {
    fd as u64
}

/// How long accepting pauses after an accept error (instead of spinning on it).
pub const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

impl Muxer {
    /// A muxer accepting host clients on `listener` (non-blocking).
    pub fn new(guest_cid: u64, uds_path: PathBuf, listener: UnixListener) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        listener.set_nonblocking(true)?;
        epoll.ctl(
            ControlOperation::Add,
            listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN, TOKEN_LISTENER),
        )?;
        Ok(Muxer {
            guest_cid,
            uds_path,
            listener,
            epoll,
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            pending: HashMap::new(),
            control: VecDeque::new(),
            rsts: VecDeque::new(),
            dropped: 0,
            rx_ready: RxQueue::new(),
            next_port: EPHEMERAL_PORT_START,
            listener_paused_until: None,
            guest_listened: false,
        })
    }

    /// The epoll instance (the worker adds its queue and stop eventfds with tokens above u32).
    /// Whether a guest listener has ever accepted a host connection.
    pub fn guest_has_listened(&self) -> bool {
        self.guest_listened
    }

    pub fn epoll(&self) -> &Epoll {
        &self.epoll
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Whether packets wait for rx buffers.
    pub fn has_rx_work(&self) -> bool {
        !self.control.is_empty()
            || !self.rsts.is_empty()
            || !self.rx_ready.is_empty()
            || !self.rx_ready.is_synced()
    }

    /// Keys in the rx queue (tests and fuzz targets check its bound).
    pub fn rx_queue_len(&self) -> usize {
        self.rx_ready.len()
    }

    /// Control packets waiting (tracked connections, RSTs).
    pub fn control_len(&self) -> (usize, usize) {
        (self.control.len(), self.rsts.len())
    }

    /// Milliseconds until the next handshake deadline, or -1.
    pub fn timeout_ms(&self) -> i32 {
        let pending = self.pending.values().map(|p| p.deadline);
        let conns = self.conns.values().filter_map(|e| e.conn.deadline);
        let all = pending.chain(conns).chain(self.listener_paused_until);
        match all.min() {
            None => -1,
            Some(d) => {
                let ms = d.saturating_duration_since(Instant::now()).as_millis();
                i32::try_from(ms).unwrap_or(i32::MAX).saturating_add(1)
            }
        }
    }

    /// Drops handshakes past their deadline; resumes accepting after a pause.
    pub fn expire(&mut self, now: Instant) {
        if self.listener_paused_until.is_some_and(|t| t <= now) {
            self.listener_paused_until = None;
            let ev = EpollEvent::new(EventSet::IN, TOKEN_LISTENER);
            let fd = self.listener.as_raw_fd();
            if let Err(e) = self.epoll.ctl(ControlOperation::Add, fd, ev) {
                tracing::warn!("vsock: cannot watch the listener again: {e}");
            }
        }
        let expired: Vec<RawFd> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(fd, _)| *fd)
            .collect();
        for fd in expired {
            tracing::debug!("vsock: host client sent no CONNECT line in time");
            self.drop_pending(fd);
        }
        let late: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, e)| e.conn.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            tracing::debug!("vsock: guest port {} did not answer in time", key.1);
            self.reset(key);
        }
    }

    /// Queues a control packet: for a tracked connection at most MAX_CONTROL_PER_CONN of
    /// them and one credit update (coalesced); an RST for an untracked key goes to the
    /// bounded RST queue; anything else for an untracked key is dropped.
    fn queue_control(&mut self, key: Key, op: u16, flags: u32) {
        let queued = match self.conns.get_mut(&key) {
            Some(e) if op == OP_CREDIT_UPDATE && e.credit_update_queued => true,
            Some(e) if e.control_pending < MAX_CONTROL_PER_CONN => {
                e.control_pending += 1;
                e.credit_update_queued |= op == OP_CREDIT_UPDATE;
                self.control.push_back((key, op, flags));
                true
            }
            Some(_) => false,
            None if op == OP_RST && self.rsts.len() < MAX_RSTS => {
                self.rsts.push_back(key);
                true
            }
            None => false,
        };
        if !queued {
            self.dropped += 1;
            // Guest-triggerable (a flood of junk): logged for the 1st, 2nd, 4th, ... drop.
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    "vsock: control queue full; dropped op {op} for {key:?} ({} dropped so far)",
                    self.dropped
                );
            }
        }
    }

    /// An RST for `key` (host port, guest port), for connections we no longer track.
    pub(super) fn rst_header(&self, key: Key) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: key.0,
            dst_port: key.1,
            type_: TYPE_STREAM,
            op: OP_RST,
            ..Header::default()
        }
    }

    /// Sends the guest RST and drops the connection.
    fn reset(&mut self, key: Key) {
        self.remove(key);
        self.queue_control(key, OP_RST, 0);
    }

    fn remove(&mut self, key: Key) {
        if let Some(e) = self.conns.remove(&key) {
            // No stale entries: its control packets and its rx queue entry go with it.
            if e.control_pending > 0 {
                self.control.retain(|(k, _, _)| *k != key);
            }
            if e.rx_pending {
                self.rx_ready.remove(key);
            }
            let fd = e.conn.stream.as_raw_fd();
            self.by_fd.remove(&fd);
            if e.registered.is_some() {
                let _ = self
                    .epoll
                    .ctl(ControlOperation::Delete, fd, EpollEvent::default());
            }
        }
    }

    fn drop_pending(&mut self, fd: RawFd) {
        if self.pending.remove(&fd).is_some() {
            let _ = self
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default());
        }
    }

    /// Makes epoll interest match what the connection needs; no interest = not registered
    /// (so a hung-up socket nobody waits on cannot wake us in a loop).
    fn update_interest(&mut self, key: Key) {
        let Some(e) = self.conns.get_mut(&key) else {
            return;
        };
        let mut want = EventSet::empty();
        if e.armed_in {
            want |= EventSet::IN;
        }
        if e.conn.has_pending_output() {
            want |= EventSet::OUT;
        }
        let fd = e.conn.stream.as_raw_fd();
        let want = (!want.is_empty()).then_some(want);
        if want == e.registered {
            return;
        }
        let ev = EpollEvent::new(want.unwrap_or(EventSet::empty()), fd_token(fd));
        let res = match (e.registered, want) {
            (None, Some(_)) => self.epoll.ctl(ControlOperation::Add, fd, ev),
            (Some(_), Some(_)) => self.epoll.ctl(ControlOperation::Modify, fd, ev),
            (Some(_), None) => self.epoll.ctl(ControlOperation::Delete, fd, ev),
            (None, None) => Ok(()),
        };
        match res {
            Ok(()) => e.registered = want,
            Err(err) => {
                tracing::warn!("vsock: epoll update failed: {err}");
                self.reset(key);
            }
        }
    }

    fn apply(&mut self, key: Key, action: Action) -> bool {
        match action {
            Action::None => true,
            Action::Send(op, flags) => {
                self.queue_control(key, op, flags);
                true
            }
            Action::Reset => {
                self.reset(key);
                false
            }
            Action::Close => {
                self.remove(key);
                false
            }
        }
    }

    /// Flushes guest data to the host socket, queues a credit update if due, re-arms reading
    /// when the guest granted credit, and updates epoll interest.
    fn service(&mut self, key: Key) {
        let Some(e) = self.conns.get_mut(&key) else {
            return;
        };
        let flushed = e.conn.flush();
        let action = match flushed {
            Ok(a) => a,
            Err(err) => {
                tracing::debug!("vsock: host socket of {key:?} failed: {err}");
                Action::Reset
            }
        };
        if !self.apply(key, action) {
            return;
        }
        let Some(e) = self.conns.get_mut(&key) else {
            return;
        };
        let update = e.conn.needs_credit_update();
        if e.awaiting_credit && e.conn.peer_credit() > 0 {
            e.awaiting_credit = false;
            e.armed_in = true;
        }
        if update {
            self.queue_control(key, OP_CREDIT_UPDATE, 0);
        }
        self.update_interest(key);
    }
}

#[path = "muxer_io.rs"]
mod io_paths;

#[cfg(test)]
#[path = "muxer_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "muxer_bounds_tests.rs"]
mod bounds_tests;
