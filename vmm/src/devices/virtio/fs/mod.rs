//! virtio-fs (device type 26) as a vhost-user front end: the file system requests go
//! straight from the guest's queues to a vhost-user-fs back end (virtiofsd), which maps guest
//! RAM (our memfd) itself.
//!
//! The VMM keeps the config space (tag, number of request queues), the queue notifications
//! (the transport's ioeventfds are the back end's kick eventfds) and the interrupts (the
//! [`worker`] turns the back end's call eventfds into InterruptStatus + irqfd). There is no
//! DAX window (no shared memory region). A back end that hangs up or fails a request marks
//! the device DEVICE_NEEDS_RESET; the VMM keeps running. The back end's cache policy
//! (`virtiofsd --cache auto|always|never`) is chosen by whoever starts it.

pub mod frontend;
pub mod worker;

use vmm_sys_util::eventfd::EventFd;

use super::device::{read_config_bytes, ActivateError, Activation, VirtioDevice};
use super::epoll_helper::DeviceThread;
use super::TYPE_FS;
pub use frontend::{Backend, FsError};
use sandpod_vmconfig::conventions::ErrorChain;
pub use sandpod_vmconfig::FsConfig;
use sandpod_vmconfig::MAX_TAG_LEN;
use worker::CallHandler;

/// Size of the config space: the tag and `num_request_queues` (le32).
pub const CONFIG_SIZE: usize = MAX_TAG_LEN + 4;

/// A virtio-fs device.
pub struct Fs {
    tag: String,
    config_space: [u8; CONFIG_SIZE],
    queue_sizes: Vec<u16>,
    backend: Backend,
    worker: Option<DeviceThread<CallHandler>>,
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs")
            .field("tag", &self.tag)
            .field("queues", &self.queue_sizes.len())
            .field("backend", &self.backend)
            .finish()
    }
}

impl Fs {
    /// Connects to the back end of `config` (already validated) and negotiates with it.
    pub fn new(config: &FsConfig) -> Result<Fs, FsError> {
        let backend = Backend::connect(&config.socket, config.num_queues())?;
        Ok(Fs::with_backend(config, backend))
    }

    /// A device over an already negotiated back end.
    pub fn with_backend(config: &FsConfig, backend: Backend) -> Fs {
        Fs {
            tag: config.tag.clone(),
            config_space: config_space(&config.tag, config.request_queues),
            queue_sizes: vec![config.queue_size; config.num_queues()],
            backend,
            worker: None,
        }
    }

    fn start(
        &mut self,
        features: u64,
        a: &Activation,
        calls: &[EventFd],
    ) -> Result<(), ActivateError> {
        let fail =
            |e: FsError| ActivateError::Start(std::io::Error::other(ErrorChain(&e).to_string()));
        self.backend
            .start(features, &a.mem, &a.queues, &a.queue_evts, calls)
            .map_err(fail)?;
        let socket = self.backend.watch_fd().map_err(fail)?;
        let calls = calls
            .iter()
            .map(EventFd::try_clone)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ActivateError::Start)?;
        let handler = CallHandler::new(self.tag.clone(), calls, socket, a.interrupt.clone())
            .map_err(ActivateError::Start)?;
        let label = format!("virtio-fs {}", self.tag);
        let thread = DeviceThread::spawn("virtio-fs", label, handler, a.interrupt.clone())
            .map_err(ActivateError::Start)?;
        self.worker = Some(thread);
        Ok(())
    }
}

/// The config space: the tag, NUL-padded to 36 bytes, then `num_request_queues` (le32).
pub fn config_space(tag: &str, request_queues: u16) -> [u8; CONFIG_SIZE] {
    let mut c = [0u8; CONFIG_SIZE];
    let n = tag.len().min(MAX_TAG_LEN);
    c[..n].copy_from_slice(&tag.as_bytes()[..n]);
    c[MAX_TAG_LEN..].copy_from_slice(&u32::from(request_queues).to_le_bytes());
    c
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        TYPE_FS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn device_features(&self) -> u64 {
        self.backend.guest_features()
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_space, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        tracing::debug!("virtio-fs: ignoring config write at {offset:#x}");
    }

    fn activate(&mut self, features: u64, a: Activation) -> Result<(), ActivateError> {
        self.reset();
        let n = self.queue_sizes.len();
        if a.queues.len() != n || a.queue_evts.len() != n {
            return Err(ActivateError::BadQueue {
                index: a.queues.len(),
                why: format!("virtio-fs needs {n} queues"),
            });
        }
        let calls = (0..n)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ActivateError::Start)?;
        let failed_before = self.backend.failed();
        if let Err(e) = self.start(features, &a, &calls) {
            // Only the first failure is news; later ones are the guest retrying.
            if failed_before {
                tracing::debug!("virtio-fs {}: cannot start: {e}", self.tag);
            } else {
                tracing::error!("virtio-fs {}: cannot start: {e}", self.tag);
            }
            return Err(e);
        }
        tracing::debug!(
            "virtio-fs {}: activated, {n} queues on {}",
            self.tag,
            self.backend.socket().display()
        );
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            worker.stop();
        }
        if let Err(e) = self.backend.stop() {
            // Once: the back end is not used after a failure.
            tracing::warn!(
                "virtio-fs {}: stopping the back end's rings: {}",
                self.tag,
                ErrorChain(&e)
            );
        }
    }
}

#[cfg(test)]
mod fake_backend;
#[cfg(test)]
mod tests;
