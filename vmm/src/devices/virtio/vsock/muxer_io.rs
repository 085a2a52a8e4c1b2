//! The muxer's event paths: host socket events, guest packets and rx packet production.

use super::*;

impl Muxer {
    /// Handles an epoll event for the listener or a Unix stream (by token).
    pub fn handle_event(&mut self, token: u64, events: EventSet) {
        if token == TOKEN_LISTENER {
            self.accept_clients();
            return;
        }
        let Ok(fd) = RawFd::try_from(token) else {
            return;
        };
        if self.pending.contains_key(&fd) {
            self.poll_pending(fd);
            return;
        }
        let Some(&key) = self.by_fd.get(&fd) else {
            return;
        };
        let Some(e) = self.conns.get_mut(&key) else {
            return;
        };
        let readable = events.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR);
        if e.armed_in && readable {
            e.armed_in = false;
            if !e.rx_pending {
                e.rx_pending = true;
                // Full: out of sync, rebuilt from the table once drained.
                self.rx_ready.push(key);
            }
        }
        self.service(key);
    }

    fn accept_clients(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.pending.len() >= MAX_PENDING || self.conns.len() >= MAX_CONNECTIONS {
                        tracing::warn!("vsock: too many host clients; refusing one");
                        continue;
                    }
                    let fd = stream.as_raw_fd();
                    let client = match PendingClient::new(stream) {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("vsock: host client setup failed: {e}");
                            continue;
                        }
                    };
                    let ev = EpollEvent::new(EventSet::IN, fd_token(fd));
                    if let Err(e) = self.epoll.ctl(ControlOperation::Add, fd, ev) {
                        tracing::warn!("vsock: cannot watch a host client: {e}");
                        continue;
                    }
                    self.pending.insert(fd, client);
                    // It may have written its line already.
                    self.poll_pending(fd);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // E.g. EMFILE: keep the VMM alive, and pause accepting for a moment
                    // rather than spin on a listener that stays readable.
                    tracing::warn!("vsock: accept failed: {e}; pausing new host connections");
                    let fd = self.listener.as_raw_fd();
                    let _ = self
                        .epoll
                        .ctl(ControlOperation::Delete, fd, EpollEvent::default());
                    self.listener_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn poll_pending(&mut self, fd: RawFd) {
        let Some(p) = self.pending.get_mut(&fd) else {
            return;
        };
        match p.poll() {
            Handshake::Pending => {}
            Handshake::Failed(why) => {
                tracing::debug!("vsock: host client dropped: {why}");
                self.drop_pending(fd);
            }
            Handshake::Connect(port) => {
                let _ = self
                    .epoll
                    .ctl(ControlOperation::Delete, fd, EpollEvent::default());
                let Some(p) = self.pending.remove(&fd) else {
                    return;
                };
                let Some(local) = self.allocate_port() else {
                    tracing::warn!("vsock: no free host port");
                    return;
                };
                let mut conn =
                    Connection::new(p.stream, self.guest_cid, local, port, State::Connecting);
                conn.deadline = Some(Instant::now() + CONNECT_TIMEOUT);
                self.insert(conn);
                self.queue_control((local, port), OP_REQUEST, 0);
            }
        }
    }

    fn allocate_port(&mut self) -> Option<u32> {
        for _ in 0..=MAX_CONNECTIONS {
            let port = self.next_port;
            self.next_port = self
                .next_port
                .checked_add(1)
                .unwrap_or(EPHEMERAL_PORT_START);
            if !self.conns.keys().any(|(local, _)| *local == port) {
                return Some(port);
            }
        }
        None
    }

    fn insert(&mut self, conn: Connection) -> Key {
        let key = (conn.local_port, conn.peer_port);
        self.by_fd.insert(conn.stream.as_raw_fd(), key);
        let established = conn.state() == State::Established;
        self.conns.insert(
            key,
            Entry {
                conn,
                armed_in: established,
                rx_pending: false,
                control_pending: 0,
                credit_update_queued: false,
                awaiting_credit: false,
                registered: None,
            },
        );
        self.update_interest(key);
        key
    }

    /// Handles a packet the guest sent on its tx queue.
    pub fn on_guest_packet(&mut self, hdr: &Header, payload: &mut dyn TxPayload) {
        if hdr.src_cid != self.guest_cid || hdr.dst_cid != HOST_CID {
            tracing::debug!(
                "vsock: dropping packet from CID {} to CID {}",
                hdr.src_cid,
                hdr.dst_cid
            );
            return;
        }
        let key = (hdr.dst_port, hdr.src_port);
        if hdr.type_ != TYPE_STREAM {
            if self.conns.contains_key(&key) {
                self.reset(key);
            } else if hdr.op != OP_RST {
                self.queue_control(key, OP_RST, 0);
            }
            return;
        }
        let Some(e) = self.conns.get_mut(&key) else {
            self.unknown_connection(key, hdr);
            return;
        };
        let was_connecting = e.conn.state() == State::Connecting;
        let action = e.conn.on_packet(hdr, payload);
        if !self.apply(key, action) {
            return;
        }
        if let Some(e) = self.conns.get_mut(&key) {
            if was_connecting && e.conn.state() == State::Established {
                e.armed_in = true;
                self.guest_listened = true;
            }
        }
        self.service(key);
    }

    fn unknown_connection(&mut self, key: Key, hdr: &Header) {
        match hdr.op {
            OP_REQUEST if self.conns.len() < MAX_CONNECTIONS => {
                match connect_host_port(&self.uds_path, hdr.dst_port) {
                    Ok(stream) => {
                        let mut conn = Connection::new(
                            stream,
                            self.guest_cid,
                            key.0,
                            key.1,
                            State::Established,
                        );
                        conn.on_packet(
                            &Header {
                                op: OP_CREDIT_UPDATE,
                                ..*hdr
                            },
                            &mut &[][..],
                        );
                        self.insert(conn);
                        self.queue_control(key, OP_RESPONSE, 0);
                    }
                    Err(e) => {
                        tracing::debug!(
                            "vsock: guest connection to host port {} refused: {e}",
                            hdr.dst_port
                        );
                        self.queue_control(key, OP_RST, 0);
                    }
                }
            }
            OP_RST => {}
            _ => self.queue_control(key, OP_RST, 0),
        }
    }

    /// [`Self::next_rx`] into a vector (tests and fuzz targets): the header and payload.
    pub fn next_rx_packet(&mut self, room: usize) -> Option<(Header, Vec<u8>)> {
        let mut sink = VecSink {
            room,
            data: Vec::new(),
        };
        let hdr = self.next_rx(&mut sink)?;
        Some((hdr, sink.data))
    }

    /// The header of the next packet for the guest, whose payload (at most the sink's room)
    /// went straight into `sink`: control packets first, then RSTs, then data (or what a
    /// connection's socket has instead: EOF, a credit request). A header-only buffer (room 0)
    /// carries control packets only: with nothing else pending and data waiting, it gets a
    /// credit update of the connection first in line (a header is all it holds), which stays
    /// in line for a buffer with room.
    pub fn next_rx(&mut self, sink: &mut dyn RxSink) -> Option<Header> {
        while let Some((key, op, flags)) = self.control.pop_front() {
            if let Some(e) = self.conns.get_mut(&key) {
                e.control_pending = e.control_pending.saturating_sub(1);
                if op == OP_CREDIT_UPDATE {
                    e.credit_update_queued = false;
                }
                return Some(e.conn.header(op, flags, 0));
            }
        }
        if let Some(key) = self.rsts.pop_front() {
            return Some(self.rst_header(key));
        }
        if sink.room() == 0 {
            let key = self.next_rx_ready()?;
            let e = self.conns.get_mut(&key)?;
            return Some(e.conn.header(OP_CREDIT_UPDATE, 0, 0));
        }
        while let Some(key) = self.next_rx_ready() {
            self.rx_ready.pop();
            let Some(e) = self.conns.get_mut(&key) else {
                continue;
            };
            e.rx_pending = false;
            if !e.conn.wants_read() {
                continue;
            }
            match e.conn.read_for_guest(sink) {
                Ok(ReadOutcome::Data(n)) => {
                    // At most MAX_PKT_PAYLOAD bytes (read_for_guest).
                    #[allow(clippy::cast_possible_truncation)]
                    let hdr = e.conn.header(OP_RW, 0, n as u32);
                    e.rx_pending = true;
                    self.rx_ready.push(key);
                    return Some(hdr);
                }
                Ok(ReadOutcome::WouldBlock) => {
                    e.armed_in = true;
                    self.update_interest(key);
                }
                Ok(ReadOutcome::NoCredit) => {
                    // Ask once; the guest's answer (or its next update) re-arms us.
                    e.awaiting_credit = true;
                    return Some(e.conn.header(OP_CREDIT_REQUEST, 0, 0));
                }
                Ok(ReadOutcome::Eof) => {
                    return Some(e.conn.header(OP_SHUTDOWN, SHUTDOWN_SEND, 0));
                }
                Err(err) => {
                    tracing::debug!("vsock: reading host socket of {key:?}: {err}");
                    self.remove(key);
                    return Some(self.rst_header(key));
                }
            }
        }
        None
    }

    /// The first connection waiting for rx (left in the queue); an out-of-sync queue that
    /// ran dry is rebuilt from the connection table first.
    fn next_rx_ready(&mut self) -> Option<Key> {
        if self.rx_ready.is_empty() && !self.rx_ready.is_synced() {
            let waiting = self.conns.iter().filter(|(_, e)| e.rx_pending);
            self.rx_ready = RxQueue::rebuild(waiting.map(|(k, _)| *k));
        }
        self.rx_ready.peek()
    }
}
