//! The vhost-user front end: one connection to a vhost-user-fs back end (virtiofsd).
//!
//! On [`Backend::connect`] (VMM start): SET_OWNER, GET_FEATURES, GET/SET_PROTOCOL_FEATURES
//! (MQ, REPLY_ACK) and GET_QUEUE_NUM. On [`Backend::start`] (the driver's DRIVER_OK):
//! SET_FEATURES with the driver's features, SET_MEM_TABLE with the guest RAM memfd, and per
//! queue SET_VRING_NUM/ADDR/BASE/CALL/KICK/ENABLE. [`Backend::stop`] (driver reset) disables
//! the rings and takes them back with GET_VRING_BASE. Replies have a timeout, so a hung back
//! end fails the request instead of hanging the vCPU that triggered it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vhost::vhost_user::message::VhostUserHeaderFlag;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::vhost_user::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::virtio::VIRTIO_F_VERSION_1;
use crate::kvm::memory::GuestMem;

/// How long the back end may take to answer one request.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Ring features passed through to the guest when the back end offers them: indirect
/// descriptors (28), event index (29) and VERSION_1 (32). Packed rings are not offered (the
/// transport validates split rings), nor are vhost-only bits (PROTOCOL_FEATURES, LOG_ALL).
pub const GUEST_FEATURES_MASK: u64 = (1 << 28) | (1 << 29) | (1 << VIRTIO_F_VERSION_1);

/// Protocol features we use when offered: several queues and acknowledged requests.
const WANTED_PROTOCOL: VhostUserProtocolFeatures =
    VhostUserProtocolFeatures::MQ.union(VhostUserProtocolFeatures::REPLY_ACK);

/// What went wrong talking to the back end.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The socket is missing, not a socket, or nobody accepts on it.
    #[error("cannot connect to the vhost-user-fs socket {} (is virtiofsd running?)", path.display())]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Error.
        source: io::Error,
    },
    /// A vhost-user request failed (back end gone, refused, timed out, bad reply).
    #[error("vhost-user {request} failed")]
    Request {
        /// The request.
        request: &'static str,
        /// Error.
        source: vhost::Error,
    },
    /// The back end lacks a feature we need.
    #[error("the back end does not offer {0}")]
    MissingFeature(&'static str),
    /// The back end serves fewer queues than configured.
    #[error("the back end supports {have} queues; {want} configured (1 + request queues)")]
    TooFewQueues {
        /// Configured.
        want: usize,
        /// The back end's GET_QUEUE_NUM.
        have: u64,
    },
    /// Guest memory cannot be shared (a region without a file) or a ring is outside it.
    #[error("guest memory: {0}")]
    Memory(String),
    /// An earlier request failed: the connection is not used again (no reconnection).
    #[error("the back end failed earlier and is not used again")]
    Failed,
    /// A local resource (socket option, fd duplication).
    #[error("{what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Error.
        source: io::Error,
    },
}

fn req(request: &'static str) -> impl FnOnce(vhost::Error) -> FsError {
    move |source| FsError::Request { request, source }
}

/// A connected, negotiated back end.
pub struct Backend {
    frontend: Frontend,
    socket: PathBuf,
    features: u64,
    protocol: VhostUserProtocolFeatures,
    started: usize,
    failed: bool,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("socket", &self.socket)
            .field("features", &format_args!("{:#x}", self.features))
            .finish()
    }
}

impl Backend {
    /// Connects to the back end at `path` and negotiates what does not depend on the driver;
    /// `num_queues` queues must be supported.
    pub fn connect(path: &Path, num_queues: usize) -> Result<Backend, FsError> {
        let connect_err = |source| FsError::Connect {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(connect_err)?;
        if !meta.file_type().is_socket() {
            return Err(connect_err(io::Error::other("not a Unix socket")));
        }
        let stream = UnixStream::connect(path).map_err(connect_err)?;
        Self::from_stream(stream, path.to_path_buf(), num_queues)
    }

    /// Negotiates over an already connected stream (`socket` is for messages only).
    pub fn from_stream(
        stream: UnixStream,
        socket: PathBuf,
        num_queues: usize,
    ) -> Result<Backend, FsError> {
        let timeouts = stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(REPLY_TIMEOUT)));
        timeouts.map_err(|source| FsError::Io {
            what: "socket timeouts",
            source,
        })?;
        let mut frontend = Frontend::from_stream(stream, num_queues as u64);
        frontend.set_owner().map_err(req("SET_OWNER"))?;
        let features = frontend.get_features().map_err(req("GET_FEATURES"))?;
        if features & (1 << VIRTIO_F_VERSION_1) == 0 {
            return Err(FsError::MissingFeature("VIRTIO_F_VERSION_1"));
        }
        if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0 {
            return Err(FsError::MissingFeature("VHOST_USER_F_PROTOCOL_FEATURES"));
        }
        let offered = frontend
            .get_protocol_features()
            .map_err(req("GET_PROTOCOL_FEATURES"))?;
        let protocol = offered & WANTED_PROTOCOL;
        frontend
            .set_protocol_features(protocol)
            .map_err(req("SET_PROTOCOL_FEATURES"))?;
        if protocol.contains(VhostUserProtocolFeatures::MQ) {
            let have = frontend.get_queue_num().map_err(req("GET_QUEUE_NUM"))?;
            if have < num_queues as u64 {
                return Err(FsError::TooFewQueues {
                    want: num_queues,
                    have,
                });
            }
        } else if num_queues > 2 {
            return Err(FsError::MissingFeature(
                "VHOST_USER_PROTOCOL_F_MQ (needed for more than one request queue)",
            ));
        }
        if protocol.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            // Every request is acknowledged: failures are seen where they happen.
            frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        tracing::debug!(
            "virtio-fs: {} offers features {features:#x}, protocol {offered:?}",
            socket.display()
        );
        Ok(Backend {
            frontend,
            socket,
            features,
            protocol,
            started: 0,
            failed: false,
        })
    }

    /// The device features the guest is offered.
    pub fn guest_features(&self) -> u64 {
        self.features & GUEST_FEATURES_MASK
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A duplicate of the connection's fd, to watch for the back end hanging up.
    pub fn watch_fd(&self) -> Result<OwnedFd, FsError> {
        // SAFETY: the Frontend owns this fd and keeps it open for as long as `self` lives;
        // the borrow does not outlive this call (it is duplicated at once).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.frontend.as_raw_fd()) };
        fd.as_fd()
            .try_clone_to_owned()
            .map_err(|source| FsError::Io {
                what: "duplicating the vhost-user socket",
                source,
            })
    }

    /// Whether a request failed (the back end is then never used again).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Hands the rings to the back end: `kicks` are the queues' notification eventfds (the
    /// transport's ioeventfds), `calls` the eventfds the back end signals used buffers on.
    pub fn start(
        &mut self,
        driver_features: u64,
        mem: &GuestMem,
        queues: &[Queue],
        kicks: &[EventFd],
        calls: &[EventFd],
    ) -> Result<(), FsError> {
        if self.failed {
            return Err(FsError::Failed);
        }
        let result = self.try_start(driver_features, mem, queues, kicks, calls);
        self.failed = result.is_err();
        result
    }

    fn try_start(
        &mut self,
        driver_features: u64,
        mem: &GuestMem,
        queues: &[Queue],
        kicks: &[EventFd],
        calls: &[EventFd],
    ) -> Result<(), FsError> {
        let features = driver_features | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        self.frontend
            .set_features(features)
            .map_err(req("SET_FEATURES"))?;
        let regions = memory_regions(mem)?;
        self.frontend
            .set_mem_table(&regions)
            .map_err(req("SET_MEM_TABLE"))?;
        for (index, ((queue, kick), call)) in queues.iter().zip(kicks).zip(calls).enumerate() {
            self.started = index + 1;
            let ring = vring_config(mem, queue)?;
            let f = &mut self.frontend;
            f.set_vring_num(index, queue.size())
                .map_err(req("SET_VRING_NUM"))?;
            f.set_vring_addr(index, &ring)
                .map_err(req("SET_VRING_ADDR"))?;
            f.set_vring_base(index, queue.next_avail())
                .map_err(req("SET_VRING_BASE"))?;
            f.set_vring_call(index, call)
                .map_err(req("SET_VRING_CALL"))?;
            f.set_vring_kick(index, kick)
                .map_err(req("SET_VRING_KICK"))?;
            f.set_vring_enable(index, true)
                .map_err(req("SET_VRING_ENABLE"))?;
        }
        Ok(())
    }

    /// Takes the rings back (driver reset): each started ring is disabled and stopped with
    /// GET_VRING_BASE. Stops at the first failure; does nothing once the back end failed.
    pub fn stop(&mut self) -> Result<(), FsError> {
        let started = std::mem::take(&mut self.started);
        if self.failed {
            return Ok(());
        }
        let result = self.try_stop(started);
        self.failed = result.is_err();
        result
    }

    fn try_stop(&mut self, started: usize) -> Result<(), FsError> {
        for index in 0..started {
            self.frontend
                .set_vring_enable(index, false)
                .map_err(req("SET_VRING_ENABLE"))?;
            self.frontend
                .get_vring_base(index)
                .map_err(req("GET_VRING_BASE"))?;
        }
        Ok(())
    }

    /// The negotiated protocol features.
    pub fn protocol_features(&self) -> VhostUserProtocolFeatures {
        self.protocol
    }
}

/// Every guest RAM region as the back end maps it: the memfd, the offset in it, the guest
/// address and our own mapping's address (which vring addresses are expressed in).
pub fn memory_regions(mem: &GuestMem) -> Result<Vec<VhostUserMemoryRegionInfo>, FsError> {
    mem.iter()
        .map(|r| {
            VhostUserMemoryRegionInfo::from_guest_region(r).map_err(|e| {
                FsError::Memory(format!(
                    "region at {:#x} cannot be shared: {e}",
                    r.start_addr().0
                ))
            })
        })
        .collect()
}

/// A queue's ring addresses, translated to our address space as vhost-user wants them.
fn vring_config(mem: &GuestMem, queue: &Queue) -> Result<VringConfigData, FsError> {
    let host = |gpa: u64, what: &str| {
        mem.get_host_address(GuestAddress(gpa))
            .map(|p| p as u64)
            .map_err(|e| FsError::Memory(format!("{what} at {gpa:#x}: {e}")))
    };
    Ok(VringConfigData {
        queue_max_size: queue.max_size(),
        queue_size: queue.size(),
        flags: 0,
        desc_table_addr: host(queue.desc_table(), "descriptor table")?,
        used_ring_addr: host(queue.used_ring(), "used ring")?,
        avail_ring_addr: host(queue.avail_ring(), "available ring")?,
        log_addr: None,
    })
}
