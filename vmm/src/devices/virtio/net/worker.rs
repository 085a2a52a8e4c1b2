//! The net device's thread: one epoll set with the tap fd, the rx and tx queues' eventfds
//! (and the stop eventfd, added by [`crate::devices::virtio::DeviceThread`]).
//!
//! After each wake-up, tx then rx, each at most a batch ([`TX_BATCH`], [`RX_BATCH`]) with at
//! most one interrupt per queue per batch:
//!
//! * tx: every available chain is copied into the frame buffer, checked ([`super::frame`])
//!   and written to the tap with one `writev` (header, frame), then returned with used length
//!   0. A bad chain is returned unsent and counted. A full batch with chains left re-arms the
//!   tx eventfd, so rx gets its turn before the rest.
//! * rx: a frame is read from the tap only when an rx chain is in hand, so frames wait in the
//!   tap (whose queue the kernel bounds) while the guest has no buffers. Out of buffers, the
//!   tap's EPOLLIN interest is dropped and the driver asked for a notification: no wake-up,
//!   let alone spinning, until the rx queue is kicked. A frame larger than the chain is
//!   dropped (counted) and the chain kept for the next one.
//!
//! Guest-triggered conditions log at debug; the first tap write error warns once.

use std::fmt;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::frame::{read_tx, RxChain, TxOffloads, HDR_LEN, MAX_FRAME_LEN};
use crate::devices::virtio::chain::Chain;
use crate::devices::virtio::epoll_helper::{epoll_add, EpollHandler};
use crate::devices::virtio::queue::{add_used, drain_queue, notify_used, pop_chain};
use crate::devices::virtio::Interrupt;
use crate::kvm::memory::GuestMem;

/// Indirect descriptor tables: not offered, so a chain using one breaks the device.
const INDIRECT_DESC: bool = false;

/// Queue index of the receive queue.
pub const RXQ: usize = 0;
/// Queue index of the transmit queue.
pub const TXQ: usize = 1;

/// Most tx chains per wake-up.
pub const TX_BATCH: usize = 128;
/// Most rx frames per wake-up.
pub const RX_BATCH: usize = 128;

/// epoll token of the rx queue's eventfd.
pub const TOKEN_RXQ: u64 = 0;
/// epoll token of the tx queue's eventfd.
pub const TOKEN_TXQ: u64 = 1;
/// epoll token of the tap.
pub const TOKEN_TAP: u64 = 2;

/// What the device did, logged when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames sent to the tap.
    pub tx_frames: u64,
    /// Tx chains dropped as malformed.
    pub tx_bad_chains: u64,
    /// Frames the tap refused (full, down, bad header).
    pub tx_tap_errors: u64,
    /// Frames given to the guest.
    pub rx_frames: u64,
    /// Frames dropped: larger than the guest's buffer.
    pub rx_dropped: u64,
    /// Rx chains dropped as malformed.
    pub rx_bad_chains: u64,
    /// Times the thread woke up.
    pub wakeups: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tx {} frames ({} bad chains, {} tap errors), rx {} frames ({} dropped, {} bad \
             chains), {} wake-ups",
            self.tx_frames,
            self.tx_bad_chains,
            self.tx_tap_errors,
            self.rx_frames,
            self.rx_dropped,
            self.rx_bad_chains,
            self.wakeups
        )
    }
}

/// The device's running state: the [`EpollHandler`] of its thread.
pub struct Worker {
    mem: GuestMem,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    tap: OwnedFd,
    epoll: Epoll,
    offloads: TxOffloads,
    /// Whether the epoll set wants the tap's EPOLLIN (off while the guest has no rx buffers).
    tap_readable_interest: bool,
    /// One frame, header included: [`MAX_FRAME_LEN`] bytes, allocated once.
    buf: Vec<u8>,
    /// Counters.
    pub stats: Stats,
}

impl Worker {
    /// A worker on `queues` (rx, tx) and their eventfds, sending and receiving on `tap`
    /// (non-blocking, one frame per read/write), for the negotiated `features`.
    pub fn new(
        mem: GuestMem,
        queues: Vec<Queue>,
        queue_evts: Vec<EventFd>,
        interrupt: Arc<Interrupt>,
        tap: OwnedFd,
        features: u64,
    ) -> std::io::Result<Worker> {
        if queues.len() != 2 || queue_evts.len() != 2 {
            return Err(std::io::Error::other("virtio-net needs 2 queues"));
        }
        let epoll = Epoll::new()?;
        epoll_add(&epoll, queue_evts[RXQ].as_raw_fd(), EventSet::IN, TOKEN_RXQ)?;
        epoll_add(&epoll, queue_evts[TXQ].as_raw_fd(), EventSet::IN, TOKEN_TXQ)?;
        epoll_add(&epoll, tap.as_raw_fd(), EventSet::IN, TOKEN_TAP)?;
        Ok(Worker {
            mem,
            queues,
            queue_evts,
            interrupt,
            tap,
            epoll,
            offloads: TxOffloads::from_features(features),
            tap_readable_interest: true,
            buf: vec![0; MAX_FRAME_LEN],
            stats: Stats::default(),
        })
    }

    /// Serves tx, then rx. `Err`: the driver corrupted a queue (or the tap failed): the
    /// device must be marked broken. Public for the fuzz target (vmm/fuzz).
    pub fn process_queues(&mut self) -> Result<(), String> {
        self.process_tx()?;
        self.process_rx()
    }

    /// Whether the tap's EPOLLIN is in the epoll set (false: the guest has no rx buffers).
    pub fn tap_readable_interest(&self) -> bool {
        self.tap_readable_interest
    }

    fn process_tx(&mut self) -> Result<(), String> {
        let Worker {
            mem,
            queues,
            queue_evts,
            tap,
            buf,
            stats,
            offloads,
            ..
        } = self;
        let q = queues.get_mut(TXQ).ok_or("no tx queue")?;
        let serve = |chain: &Chain| {
            match read_tx(chain, mem, *offloads, buf) {
                Ok(len) => write_frame(tap, &buf[..len], stats),
                Err(e) => {
                    tracing::debug!("virtio-net: tx chain {} dropped: {e}", chain.head);
                    stats.tx_bad_chains += 1;
                }
            }
            Ok(0)
        };
        let drained = drain_queue(q, mem, INDIRECT_DESC, Some(TX_BATCH), serve, |_, _| Ok(()))?;
        if drained.batch_full {
            // More may be waiting: come back after rx had its turn.
            queue_evts[TXQ]
                .write(1)
                .map_err(|e| format!("tx eventfd: {e}"))?;
        }
        if drained.used > 0 {
            self.notify(TXQ)?;
        }
        Ok(())
    }

    fn process_rx(&mut self) -> Result<(), String> {
        let Worker {
            mem,
            queues,
            tap,
            buf,
            stats,
            ..
        } = self;
        let q = queues.get_mut(RXQ).ok_or("no rx queue")?;
        let mut used = 0usize;
        let mut out_of_buffers = false;
        for _ in 0..RX_BATCH {
            let Some(chain) = pop_chain(q, mem, INDIRECT_DESC)? else {
                if q.enable_notification(mem).map_err(|e| e.to_string())? {
                    continue; // buffers arrived meanwhile
                }
                out_of_buffers = true;
                break;
            };
            let rx = match RxChain::new(&chain, mem) {
                Ok(rx) => rx,
                Err(e) => {
                    tracing::debug!("virtio-net: rx chain {} dropped: {e}", chain.head);
                    stats.rx_bad_chains += 1;
                    add_used(q, mem, chain.head, 0)?;
                    used += 1;
                    continue;
                }
            };
            let len = match nix::unistd::read(&*tap, buf) {
                Ok(len) => len,
                Err(Errno::EAGAIN) => {
                    q.go_to_previous_position();
                    break;
                }
                Err(Errno::EINTR) => {
                    q.go_to_previous_position();
                    continue;
                }
                Err(e) => return Err(format!("reading the tap: {e}")),
            };
            if len < HDR_LEN || len > rx.capacity() {
                tracing::debug!(
                    "virtio-net: {len}-byte frame dropped (rx buffer of {})",
                    rx.capacity()
                );
                stats.rx_dropped += 1;
                q.go_to_previous_position();
                continue;
            }
            let written = rx
                .write(&mut buf[..len])
                .map_err(|e| format!("rx chain {}: {e}", chain.head))?;
            add_used(q, mem, chain.head, written)?;
            stats.rx_frames += 1;
            used += 1;
        }
        self.set_tap_interest(!out_of_buffers)?;
        if used > 0 {
            self.notify(RXQ)?;
        }
        Ok(())
    }

    /// Adds or drops the tap's EPOLLIN interest.
    fn set_tap_interest(&mut self, readable: bool) -> Result<(), String> {
        if readable == self.tap_readable_interest {
            return Ok(());
        }
        let events = if readable {
            EventSet::IN
        } else {
            EventSet::empty()
        };
        self.epoll
            .ctl(
                ControlOperation::Modify,
                self.tap.as_raw_fd(),
                EpollEvent::new(events, TOKEN_TAP),
            )
            .map_err(|e| format!("epoll: {e}"))?;
        self.tap_readable_interest = readable;
        Ok(())
    }

    fn notify(&mut self, index: usize) -> Result<(), String> {
        let q = self.queues.get_mut(index).ok_or("no queue")?;
        notify_used(q, &self.mem, &self.interrupt)
    }
}

/// Writes one frame (header, then the rest) to the tap; a refused frame is counted.
fn write_frame(tap: &OwnedFd, frame: &[u8], stats: &mut Stats) {
    let (hdr, eth) = frame.split_at(HDR_LEN);
    match nix::sys::uio::writev(tap, &[IoSlice::new(hdr), IoSlice::new(eth)]) {
        Ok(_) => stats.tx_frames += 1,
        Err(e) => {
            if stats.tx_tap_errors == 0 && e != Errno::EAGAIN {
                tracing::warn!("virtio-net: the tap refused a frame: {e} (further at debug)");
            } else {
                tracing::debug!("virtio-net: the tap refused a frame: {e}");
            }
            stats.tx_tap_errors += 1;
        }
    }
}

impl EpollHandler for Worker {
    fn epoll(&self) -> &Epoll {
        &self.epoll
    }

    fn handle_event(&mut self, token: u64, events: EventSet) -> Result<(), String> {
        match token {
            TOKEN_RXQ | TOKEN_TXQ => {
                let index = if token == TOKEN_RXQ { RXQ } else { TXQ };
                if let Some(evt) = self.queue_evts.get(index) {
                    let _ = evt.read();
                }
            }
            TOKEN_TAP if events.intersects(EventSet::ERROR | EventSet::HANG_UP) => {
                // Reported whatever the interest: the tap is gone (detached, or the fake
                // tap's peer closed). Waiting on would spin.
                return Err("the tap reports an error or hang-up".into());
            }
            _ => {}
        }
        Ok(())
    }

    fn after_wake(&mut self) -> Result<(), String> {
        self.stats.wakeups += 1;
        self.process_queues()
    }
}
