//! virtio-vsock (device type 19) with Firecracker-style hybrid vsock on Unix sockets.
//!
//! Three queues (rx, tx, event) and the guest CID in config space. The host side is in
//! [`unix`] (listener, CONNECT handshake, `<uds>_<port>` connections), connections in
//! [`connection`] and [`muxer`], and the event loop thread in [`worker`].

pub mod connection;
pub mod muxer;
pub mod packet;
pub mod rx_queue;
pub mod unix;
pub mod worker;

use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use virtio_queue::QueueT;

use super::device::{read_config_bytes, ActivateError, Activation, VirtioDevice};
use super::epoll_helper::DeviceThread;
use super::{TYPE_VSOCK, VIRTIO_RING_F_EVENT_IDX};
use crate::kvm::memory::GuestRange;
use muxer::Muxer;
use worker::Worker;

/// Queue size of each of the three queues.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 3] = [QUEUE_SIZE; 3];

/// The vsock device.
pub struct Vsock {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    /// Guest memory given back to the host once the guest's first listener answers.
    release: Option<GuestRange>,
    /// The next activation restores a snapshot: send a transport reset first.
    restoring: bool,
    running: Option<DeviceThread<Worker>>,
}

impl Vsock {
    /// A device for `guest_cid` whose host clients connect to `listener` (bound at
    /// `uds_path`, see [`unix::bind_listener`]).
    pub fn new(guest_cid: u32, uds_path: PathBuf, listener: UnixListener) -> Self {
        Vsock {
            guest_cid: u64::from(guest_cid),
            uds_path,
            listener,
            release: None,
            restoring: false,
            running: None,
        }
    }

    /// Gives `release` back to the host when a guest listener first accepts a
    /// connection (the guest's PID 1 is running then: see
    /// [`crate::loader::retained_initrd`] and [`crate::kvm::memory::discard`]). Once per VM, not again after a device reset.
    pub fn releasing(mut self, release: Option<GuestRange>) -> Self {
        self.release = release;
        self
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        TYPE_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn device_features(&self) -> u64 {
        // Under nested virtualization every notification and interrupt costs two emulated
        // exits: EVENT_IDX lets both sides skip most of them.
        1 << VIRTIO_RING_F_EVENT_IDX
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.guest_cid.to_le_bytes(), offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        tracing::debug!("vsock: ignoring config write at {offset:#x}");
    }

    fn activate(&mut self, features: u64, mut a: Activation) -> Result<(), ActivateError> {
        self.reset();
        let event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        for q in &mut a.queues {
            q.set_event_idx(event_idx);
        }
        if a.queues.len() != QUEUE_SIZES.len() || a.queue_evts.len() != QUEUE_SIZES.len() {
            return Err(ActivateError::BadQueue {
                index: a.queues.len(),
                why: "vsock needs 3 queues".into(),
            });
        }
        let listener = self.listener.try_clone().map_err(ActivateError::Start)?;
        let muxer = Muxer::new(self.guest_cid, self.uds_path.clone(), listener)
            .map_err(ActivateError::Start)?;
        let mut worker = Worker::new(a.mem, a.queues, a.queue_evts, a.interrupt.clone(), muxer)
            .map_err(ActivateError::Start)?
            .releasing(self.release.take());
        if std::mem::take(&mut self.restoring) {
            worker
                .send_transport_reset()
                .map_err(|why| ActivateError::BadQueue { index: 2, why })?;
        }
        let thread = DeviceThread::spawn("vsock", "vsock".into(), worker, a.interrupt)
            .map_err(ActivateError::Start)?;
        self.running = Some(thread);
        tracing::debug!("vsock: activated, guest CID {}", self.guest_cid);
        Ok(())
    }

    fn restoring(&mut self) {
        self.restoring = true;
    }

    fn reset(&mut self) {
        if let Some(mut thread) = self.running.take() {
            thread.stop();
        }
    }
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
