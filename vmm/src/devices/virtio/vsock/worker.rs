//! The vsock device's event loop, run by its device thread: queue notifications (ioeventfds)
//! and the Unix sockets in one epoll; tx packets go to the muxer, the muxer's packets go to
//! the rx queue.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::epoll::{Epoll, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::muxer::Muxer;
use super::packet::{read_packet, RxBuffer};
use crate::devices::virtio::chain::Chain;
use crate::devices::virtio::epoll_helper::{epoll_add, EpollHandler};
use crate::devices::virtio::queue::{add_used, drain_queue, notify_used, pop_chain};
use crate::devices::virtio::Interrupt;
use crate::kvm::memory::{discard, GuestMem, GuestRange};

/// Indirect descriptor tables: this device does not offer VIRTIO_RING_F_INDIRECT_DESC, so a
/// chain using one is a protocol violation (see `chain.rs`).
const INDIRECT_DESC: bool = false;

/// Queue indices.
pub const RXQ: usize = 0;
/// Guest-to-host packets.
pub const TXQ: usize = 1;
/// Transport events: only VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, after a snapshot's restore.
pub const EVQ: usize = 2;
/// `struct virtio_vsock_event`'s id for a transport reset (virtio 1.2, 5.10.6.7).
const VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: u32 = 0;
/// Longest wait for the driver to take a transport reset in before packets go to it anyway.
const RESET_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// epoll token of queue `i`'s notification eventfd: `TOKEN_QUEUE + i` (the muxer's tokens are
/// below).
const TOKEN_QUEUE: u64 = 1 << 42;

/// The device's running state: the [`EpollHandler`] of its device thread.
pub struct Worker {
    /// Guest memory.
    pub mem: GuestMem,
    /// rx, tx, event.
    pub queues: Vec<Queue>,
    /// Their notification eventfds.
    pub queue_evts: Vec<EventFd>,
    /// The device interrupt.
    pub interrupt: Arc<Interrupt>,
    /// Connections; its epoll set is the thread's.
    pub muxer: Muxer,
    /// Guest memory to give back once a guest listener has answered (see
    /// [`super::Vsock::releasing`]).
    release: Option<GuestRange>,
    /// After a transport reset: no packet goes to the guest until its driver has handled the
    /// event (it then gives the event buffer back: a notification on the event queue), or
    /// until this deadline. Linux handles rx and events in separate work items: a connection
    /// request that overtook the reset would be reset with the connections of before.
    rx_held_until: Option<Instant>,
}

impl Worker {
    /// A worker whose thread waits on the queue eventfds too (added to the muxer's epoll).
    pub fn new(
        mem: GuestMem,
        queues: Vec<Queue>,
        queue_evts: Vec<EventFd>,
        interrupt: Arc<Interrupt>,
        muxer: Muxer,
    ) -> io::Result<Worker> {
        for (token, evt) in (TOKEN_QUEUE..).zip(&queue_evts) {
            epoll_add(muxer.epoll(), evt.as_raw_fd(), EventSet::IN, token)?;
        }
        Ok(Worker {
            mem,
            queues,
            queue_evts,
            interrupt,
            muxer,
            release: None,
            rx_held_until: None,
        })
    }

    /// See [`super::Vsock::releasing`].
    pub fn releasing(mut self, release: Option<GuestRange>) -> Self {
        self.release = release;
        self
    }

    /// Tells the driver its transport was reset (a restored snapshot: every connection it had
    /// is gone, its listeners stay). Needs an event buffer from the driver; without one the
    /// event is dropped with a warning (the guest then only learns it from resets).
    pub fn send_transport_reset(&mut self) -> Result<(), String> {
        let Worker { mem, queues, .. } = self;
        let q = queues.get_mut(EVQ).ok_or("no event queue")?;
        let Some(chain) = pop_chain(q, mem, INDIRECT_DESC)? else {
            tracing::warn!("vsock: no event buffer for the transport reset");
            return Ok(());
        };
        let event = VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.to_le_bytes();
        chain
            .writer(mem)
            .and_then(|mut w| w.write_all(&event))
            .map_err(|e| format!("event queue: {e}"))?;
        add_used(q, mem, chain.head, 4)?;
        if q.event_idx_enabled() {
            // The driver gives the buffer back once it has handled the event; with EVENT_IDX it
            // notifies only when its available index passes the one we name: the current one.
            let avail = q
                .avail_idx(mem, std::sync::atomic::Ordering::Acquire)
                .map_err(|e| format!("event queue: {e}"))?;
            let avail_event = q.used_ring() + 4 + 8 * u64::from(q.size());
            vm_memory::Bytes::write_obj(mem, avail.0, vm_memory::GuestAddress(avail_event))
                .map_err(|e| format!("event queue: {e}"))?;
        }
        self.rx_held_until = Some(Instant::now() + RESET_ACK_TIMEOUT);
        self.notify(EVQ)
    }

    /// Whether packets to the guest wait for its driver to take a transport reset in.
    fn rx_held(&mut self) -> bool {
        match self.rx_held_until {
            Some(deadline) if Instant::now() < deadline => true,
            Some(_) => {
                tracing::debug!("vsock: the driver did not acknowledge the transport reset");
                self.rx_held_until = None;
                false
            }
            None => false,
        }
    }

    /// Gives the release range back once the guest has a listener up (its PID 1 runs).
    fn release_when_guest_listens(&mut self) {
        if self.release.is_none() || !self.muxer.guest_has_listened() {
            return;
        }
        let Some(range) = self.release.take() else {
            return;
        };
        match discard(&self.mem, range) {
            Ok(n) => tracing::info!(
                "guest listening on vsock: gave the retained initrd ({} KiB at {:#x}) back to the host",
                n >> 10,
                range.addr
            ),
            Err(e) => tracing::warn!("cannot give guest memory at {:#x} back: {e}", range.addr),
        }
    }

    /// Consumes every tx packet, then fills rx buffers. `Err`: the driver corrupted a queue or
    /// sent a malformed packet (the device must be marked broken). Public for the fuzz targets
    /// (vmm/fuzz), which drive it on guest memory made of fuzz input.
    pub fn process_queues(&mut self) -> Result<(), String> {
        let tx_used = self.process_tx()?;
        self.release_when_guest_listens();
        let rx_used = !self.rx_held() && self.process_rx()?;
        self.notify_used_queues([(TXQ, tx_used), (RXQ, rx_used)])
    }

    /// One interrupt for the used buffers of both queues, if the driver wants one for either
    /// (its handler looks at every queue of the device).
    fn notify_used_queues(&mut self, used: [(usize, bool); 2]) -> Result<(), String> {
        let mut signal = false;
        for (index, _) in used.into_iter().filter(|(_, used)| *used) {
            let q = self.queues.get_mut(index).ok_or("no queue")?;
            // Asked of each queue: with EVENT_IDX it also records what was signalled.
            signal |= q.needs_notification(&self.mem).map_err(|e| e.to_string())?;
        }
        if signal {
            self.interrupt
                .signal_used()
                .map_err(|e| format!("interrupt: {e}"))?;
        }
        Ok(())
    }

    /// Consumes every tx packet (true: some were used). Never stalls: a guest respecting our
    /// credit cannot overflow a connection's buffer, one that does not gets its connection
    /// reset. The driver's notifications are off while we drain the queue, and the queue is
    /// checked again after turning them back on ([`drain_queue`]).
    fn process_tx(&mut self) -> Result<bool, String> {
        let Worker {
            mem, queues, muxer, ..
        } = self;
        let q = queues.get_mut(TXQ).ok_or("no tx queue")?;
        let serve = |chain: &Chain| {
            let (hdr, mut payload) = read_packet(chain, mem).map_err(|e| format!("tx: {e}"))?;
            muxer.on_guest_packet(&hdr, &mut payload);
            Ok(0)
        };
        let drained = drain_queue(q, mem, INDIRECT_DESC, None, serve, |_, _| Ok(()))?;
        Ok(drained.used > 0)
    }

    /// Fills rx buffers while the muxer has packets and the guest has buffers (true: some were
    /// used). Out of buffers with packets waiting, it asks the driver for a notification when
    /// it adds some (with EVENT_IDX that is the only rx notification we get: none while we
    /// need no buffers).
    fn process_rx(&mut self) -> Result<bool, String> {
        let Worker {
            mem, queues, muxer, ..
        } = self;
        let q = queues.get_mut(RXQ).ok_or("no rx queue")?;
        let mut used = false;
        while muxer.has_rx_work() {
            let Some(chain) = pop_chain(q, mem, INDIRECT_DESC)? else {
                if q.enable_notification(mem).map_err(|e| e.to_string())? {
                    continue; // buffers arrived meanwhile
                }
                break;
            };
            let head = chain.head;
            let mut rx = RxBuffer::new(&chain, mem).map_err(|e| format!("rx: {e}"))?;
            match muxer.next_rx(&mut rx) {
                Some(hdr) => {
                    let len = rx.finish(hdr).map_err(|e| format!("rx: {e}"))?;
                    add_used(q, mem, head, len)?;
                    used = true;
                }
                None => {
                    q.go_to_previous_position();
                    break;
                }
            }
        }
        Ok(used)
    }

    fn notify(&mut self, index: usize) -> Result<(), String> {
        let q = self.queues.get_mut(index).ok_or("no queue")?;
        notify_used(q, &self.mem, &self.interrupt)
    }
}

impl EpollHandler for Worker {
    fn epoll(&self) -> &Epoll {
        self.muxer.epoll()
    }

    fn timeout_ms(&self) -> i32 {
        let muxer = self.muxer.timeout_ms();
        let Some(held) = self.rx_held_until else {
            return muxer;
        };
        let ms = held.saturating_duration_since(Instant::now()).as_millis();
        let held = i32::try_from(ms).unwrap_or(i32::MAX).saturating_add(1);
        if muxer < 0 {
            held
        } else {
            muxer.min(held)
        }
    }

    fn handle_event(&mut self, token: u64, events: EventSet) -> Result<(), String> {
        match token.checked_sub(TOKEN_QUEUE) {
            Some(index) => {
                let evt = usize::try_from(index)
                    .ok()
                    .and_then(|i| self.queue_evts.get(i));
                if let Some(evt) = evt {
                    let _ = evt.read();
                }
                if index == EVQ as u64 && self.rx_held_until.take().is_some() {
                    tracing::debug!("vsock: the driver took the transport reset in");
                }
            }
            None => self.muxer.handle_event(token, events),
        }
        Ok(())
    }

    /// Handshake deadlines, then the queues (whatever woke us may have made work for both).
    fn after_wake(&mut self) -> Result<(), String> {
        self.muxer.expire(Instant::now());
        self.process_queues()
    }
}
