//! The vsock device's event loop thread: queue notifications (ioeventfds), the Unix sockets
//! and a stop eventfd in one epoll; tx packets go to the muxer, the muxer's packets go to the
//! rx queue.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::epoll::{ControlOperation, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::muxer::Muxer;
use super::packet::{read_packet, RxBuffer};
use crate::devices::virtio::queue::{add_used, pop_chain};
use crate::devices::virtio::Interrupt;
use crate::kvm::memory::GuestMem;

/// Queue indices.
pub const RXQ: usize = 0;
/// Guest-to-host packets.
pub const TXQ: usize = 1;
/// Transport events (unused: no migration).
pub const EVQ: usize = 2;

const TOKEN_STOP: u64 = 1 << 41;
const TOKEN_QUEUE: u64 = 1 << 42;

/// The device's running state.
pub struct Worker {
    /// Guest memory.
    pub mem: GuestMem,
    /// rx, tx, event.
    pub queues: Vec<Queue>,
    /// Their notification eventfds.
    pub queue_evts: Vec<EventFd>,
    /// The device interrupt.
    pub interrupt: Arc<Interrupt>,
    /// Written to stop the loop.
    pub stop: EventFd,
    /// Connections.
    pub muxer: Muxer,
}

impl Worker {
    /// Runs until stopped or the device breaks.
    pub fn run(mut self) {
        if let Err(e) = self.register() {
            self.interrupt
                .mark_broken(&format!("vsock: epoll setup: {e}"));
            return;
        }
        let mut events = vec![EpollEvent::default(); 64];
        loop {
            let n = match self
                .muxer
                .epoll()
                .wait(self.muxer.timeout_ms(), &mut events)
            {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.interrupt.mark_broken(&format!("vsock: epoll: {e}"));
                    return;
                }
            };
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_STOP => return,
                    t if t >= TOKEN_QUEUE => {
                        let index = (t - TOKEN_QUEUE) as usize;
                        if let Some(evt) = self.queue_evts.get(index) {
                            let _ = evt.read();
                        }
                    }
                    t => self.muxer.handle_event(t, ev.event_set()),
                }
            }
            self.muxer.expire(Instant::now());
            if let Err(e) = self.process_queues() {
                self.interrupt.mark_broken(&format!("vsock: {e}"));
                return;
            }
        }
    }

    fn register(&self) -> io::Result<()> {
        let epoll = self.muxer.epoll();
        epoll.ctl(
            ControlOperation::Add,
            self.stop.as_raw_fd(),
            EpollEvent::new(EventSet::IN, TOKEN_STOP),
        )?;
        for (i, evt) in self.queue_evts.iter().enumerate() {
            epoll.ctl(
                ControlOperation::Add,
                evt.as_raw_fd(),
                EpollEvent::new(EventSet::IN, TOKEN_QUEUE + i as u64),
            )?;
        }
        Ok(())
    }

    /// Consumes every tx packet, then fills rx buffers. `Err`: the driver corrupted a queue or
    /// sent a malformed packet (the device must be marked broken). Public for the fuzz targets
    /// (vmm/fuzz), which drive it on guest memory made of fuzz input.
    pub fn process_queues(&mut self) -> Result<(), String> {
        self.process_tx()?;
        self.process_rx()
    }

    /// Consumes every tx packet. Never stalls: a guest respecting our credit cannot overflow
    /// a connection's buffer, one that does not gets its connection reset. The driver's
    /// notifications are off while we drain the queue, and the queue is checked again after
    /// turning them back on (a chain added in between would otherwise wait for the next kick).
    fn process_tx(&mut self) -> Result<(), String> {
        let Worker {
            mem, queues, muxer, ..
        } = self;
        let q = queues.get_mut(TXQ).ok_or("no tx queue")?;
        let mut used = false;
        loop {
            q.disable_notification(mem).map_err(|e| e.to_string())?;
            while let Some(chain) = pop_chain(q, mem)? {
                let head = chain.head_index();
                let (hdr, payload) = read_packet(chain, mem).map_err(|e| format!("tx: {e}"))?;
                muxer.on_guest_packet(&hdr, &payload);
                add_used(q, mem, head, 0)?;
                used = true;
            }
            if !q.enable_notification(mem).map_err(|e| e.to_string())? {
                break;
            }
        }
        if used {
            self.notify(TXQ)?;
        }
        Ok(())
    }

    /// Fills rx buffers while the muxer has packets and the guest has buffers. Out of buffers
    /// with packets waiting, it asks the driver for a notification when it adds some (with
    /// EVENT_IDX that is the only rx notification we get: none while we need no buffers).
    fn process_rx(&mut self) -> Result<(), String> {
        let Worker {
            mem, queues, muxer, ..
        } = self;
        let q = queues.get_mut(RXQ).ok_or("no rx queue")?;
        let mut used = false;
        while muxer.has_rx_work() {
            let Some(chain) = pop_chain(q, mem)? else {
                if q.enable_notification(mem).map_err(|e| e.to_string())? {
                    continue; // buffers arrived meanwhile
                }
                break;
            };
            let head = chain.head_index();
            let rx = RxBuffer::new(chain, mem).map_err(|e| format!("rx: {e}"))?;
            match muxer.next_rx_packet(rx.payload_room()) {
                Some((hdr, payload)) => {
                    let len = rx.write(hdr, &payload).map_err(|e| format!("rx: {e}"))?;
                    add_used(q, mem, head, len)?;
                    used = true;
                }
                None => {
                    q.go_to_previous_position();
                    break;
                }
            }
        }
        if used {
            self.notify(RXQ)?;
        }
        Ok(())
    }

    fn notify(&mut self, index: usize) -> Result<(), String> {
        let q = self.queues.get_mut(index).ok_or("no queue")?;
        if q.needs_notification(&self.mem).map_err(|e| e.to_string())? {
            self.interrupt
                .signal_used()
                .map_err(|e| format!("interrupt: {e}"))?;
        }
        Ok(())
    }
}
