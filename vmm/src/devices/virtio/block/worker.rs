//! The block device's thread: woken (epoll, no timeout) by queue notifications, it serves
//! every available request, notifications suppressed while it does. Guest-triggerable
//! conditions log at debug; the first host I/O error logs a warning once.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use sandpod_vmconfig::conventions::ErrorChain;
use virtio_queue::Queue;
use vm_memory::Bytes;
use vmm_sys_util::epoll::{Epoll, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::disk::{DiskIo, IoError};
use super::request::*;
use super::SEG_MAX;
use crate::devices::virtio::chain::Chain;
use crate::devices::virtio::epoll_helper::{epoll_add, EpollHandler};
use crate::devices::virtio::queue::{drain_queue, notify_used};
use crate::devices::virtio::Interrupt;
use crate::kvm::memory::GuestMem;

/// Indirect descriptor tables: this device does not offer VIRTIO_RING_F_INDIRECT_DESC, so a
/// chain using one is a protocol violation (see `chain.rs`).
const INDIRECT_DESC: bool = false;

const TOKEN_QUEUE: u64 = 0;
/// Header + data segments + status.
const MAX_DESCS: usize = SEG_MAX as usize + 2;

/// Request counters, logged when the device stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Completed reads.
    pub reads: u64,
    /// Completed writes.
    pub writes: u64,
    /// Completed flushes.
    pub flushes: u64,
    /// Requests answered IOERR.
    pub errors: u64,
    /// Requests answered UNSUPP.
    pub unsupported: u64,
    /// Of the errors, those of the image file (host I/O), not of the request.
    pub host_errors: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reads={} writes={} flushes={} errors={} (host I/O {}) unsupported={}",
            self.reads, self.writes, self.flushes, self.errors, self.host_errors, self.unsupported
        )
    }
}

/// The device's running state: the [`EpollHandler`] of its device thread.
pub struct Worker {
    /// Guest memory.
    pub mem: GuestMem,
    /// The request queue.
    pub queue: Queue,
    /// Its notification eventfd.
    pub queue_evt: EventFd,
    /// The device interrupt.
    pub interrupt: Arc<Interrupt>,
    /// What the thread waits on: `queue_evt` (see [`queue_epoll`]).
    pub epoll: Epoll,
    /// The image.
    pub disk: DiskIo,
    /// Capacity in sectors.
    pub capacity: u64,
    /// GET_ID answer.
    pub serial: [u8; ID_BYTES],
    /// Sync every write (the driver did not negotiate VIRTIO_BLK_F_FLUSH).
    pub write_through: bool,
    /// Counters.
    pub stats: Stats,
}

/// An epoll set holding the queue's notification eventfd, for [`Worker::epoll`].
pub fn queue_epoll(queue_evt: &EventFd) -> io::Result<Epoll> {
    let epoll = Epoll::new()?;
    epoll_add(&epoll, queue_evt.as_raw_fd(), EventSet::IN, TOKEN_QUEUE)?;
    Ok(epoll)
}

impl EpollHandler for Worker {
    fn epoll(&self) -> &Epoll {
        &self.epoll
    }

    /// Requests made available before activation (or before a notification) count too.
    fn start(&mut self) -> Result<(), String> {
        self.process_queue()
    }

    fn handle_event(&mut self, _token: u64, _events: EventSet) -> Result<(), String> {
        let _ = self.queue_evt.read();
        Ok(())
    }

    /// Every wake-up is a queue notification (the only fd besides the stop eventfd).
    fn after_wake(&mut self) -> Result<(), String> {
        self.process_queue()
    }
}

/// What serving a request needs of the [`Worker`]: everything but the queue (which
/// [`drain_queue`] holds meanwhile) and the thread's plumbing.
struct Server<'a> {
    mem: &'a GuestMem,
    disk: &'a mut DiskIo,
    capacity: u64,
    serial: &'a [u8; ID_BYTES],
    write_through: bool,
    stats: &'a mut Stats,
}

impl Worker {
    /// Serves every available request, with the driver's notifications off meanwhile (it adds
    /// requests without kicking while the thread is at work) and one used-buffer interrupt per
    /// pass over the queue (EVENT_IDX may spare it). `Err`: the queue or a chain is unusable,
    /// the device must be marked broken.
    pub fn process_queue(&mut self) -> Result<(), String> {
        let Worker {
            mem,
            queue,
            interrupt,
            disk,
            capacity,
            serial,
            write_through,
            stats,
            ..
        } = self;
        let mut server = Server {
            mem,
            disk,
            capacity: *capacity,
            serial,
            write_through: *write_through,
            stats,
        };
        let serve = |chain: &Chain| {
            let descs: Vec<Desc> = chain.descs.iter().map(Desc::from_queue).collect();
            server.serve(&descs)
        };
        let after_pass = |q: &mut Queue, used: usize| match used {
            0 => Ok(()),
            _ => notify_used(q, mem, interrupt),
        };
        drain_queue(queue, mem, INDIRECT_DESC, None, serve, after_pass)?;
        Ok(())
    }
}

impl Server<'_> {
    /// Serves one chain; returns the used length (bytes written to the guest, status included).
    fn serve(&mut self, descs: &[Desc]) -> Result<u32, String> {
        let parsed = parse(descs, MAX_DESCS, self.mem, self.capacity).map_err(|e| {
            tracing::debug!("virtio-blk: malformed chain: {e}");
            e.to_string()
        })?;
        let (status, written) = match parsed.request {
            Ok(req) => self.execute(&req),
            Err(e) => {
                tracing::debug!("virtio-blk: invalid request: {e}");
                (VIRTIO_BLK_S_IOERR, 0)
            }
        };
        match status {
            VIRTIO_BLK_S_IOERR => self.stats.errors += 1,
            VIRTIO_BLK_S_UNSUPP => self.stats.unsupported += 1,
            _ => {}
        }
        self.mem
            .write_obj(status, parsed.status)
            .map_err(|e| format!("status byte: {e}"))?;
        // Descriptors may overlap, so the data part can exceed 2^32: clamped for the used length.
        let written = u32::try_from(written.min(parsed.writable_len)).unwrap_or(u32::MAX - 1);
        Ok(written + 1)
    }

    /// Runs a valid request; returns its status and the data bytes written to the guest.
    fn execute(&mut self, req: &Request) -> (u8, u64) {
        // The sector of IN/OUT was checked against the capacity; other types carry the guest's
        // raw value, which is never used (so never multiplied).
        let offset = || req.sector.saturating_mul(SECTOR_SIZE);
        let result = match req.kind {
            RequestKind::In => self.disk.read(self.mem, offset(), &req.data),
            RequestKind::Out => {
                let written = self.disk.write(self.mem, offset(), &req.data);
                match written {
                    Ok(()) if self.write_through => self.disk.flush(),
                    other => other,
                }
            }
            RequestKind::Flush => self.disk.flush(),
            RequestKind::GetId => return (VIRTIO_BLK_S_OK, self.write_id(&req.data)),
            RequestKind::Unsupported(t) => {
                tracing::debug!("virtio-blk: unsupported request type {t}");
                return (VIRTIO_BLK_S_UNSUPP, 0);
            }
        };
        // A read, even a failed one, may have filled (part of) the buffers.
        let written = if req.kind == RequestKind::In {
            req.data_len
        } else {
            0
        };
        match result {
            Ok(()) => {
                match req.kind {
                    RequestKind::In => self.stats.reads += 1,
                    RequestKind::Out => self.stats.writes += 1,
                    _ => self.stats.flushes += 1,
                }
                (VIRTIO_BLK_S_OK, written)
            }
            Err(IoError::ReadOnly) => {
                tracing::debug!(
                    "virtio-blk: write at sector {} refused: read-only",
                    req.sector
                );
                (VIRTIO_BLK_S_IOERR, written)
            }
            Err(e) => {
                if self.stats.host_errors == 0 {
                    tracing::warn!(
                        "virtio-blk: {:?} at sector {} failed: {} (further errors at debug level)",
                        req.kind,
                        req.sector,
                        ErrorChain(&e)
                    );
                } else {
                    tracing::debug!(
                        "virtio-blk: {:?} at sector {} failed: {}",
                        req.kind,
                        req.sector,
                        ErrorChain(&e)
                    );
                }
                self.stats.host_errors += 1;
                (VIRTIO_BLK_S_IOERR, written)
            }
        }
    }

    /// Writes the serial (zero padded to 20 bytes, cut to the buffer) into `data`.
    fn write_id(&mut self, data: &[Segment]) -> u64 {
        let mut id: &[u8] = self.serial;
        for s in data {
            if id.is_empty() {
                break;
            }
            let n = id.len().min(s.len as usize);
            if self.mem.write_slice(&id[..n], s.addr).is_err() {
                break;
            }
            id = &id[n..];
        }
        (ID_BYTES - id.len()) as u64
    }
}
