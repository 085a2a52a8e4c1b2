//! The interface between a virtio device model and its transport.

use std::sync::Arc;

use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

use super::Interrupt;
use crate::kvm::memory::GuestMem;

/// What a device gets when the driver sets DRIVER_OK: validated queues, their notification
/// eventfds (same order), guest memory and the interrupt.
pub struct Activation {
    /// Guest memory.
    pub mem: GuestMem,
    /// The queues, configured and checked against guest memory.
    pub queues: Vec<Queue>,
    /// One notification eventfd per queue (the transport's ioeventfds).
    pub queue_evts: Vec<EventFd>,
    /// The device's interrupt.
    pub interrupt: Arc<Interrupt>,
}

/// Why activation failed.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// A queue's configuration is invalid.
    #[error("queue {index}: {why}")]
    BadQueue {
        /// Queue index.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// The device could not start (e.g. its worker thread).
    #[error("cannot start the device: {0}")]
    Start(std::io::Error),
}

/// A virtio device model.
pub trait VirtioDevice: Send {
    /// Virtio device type (19 for vsock).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue (powers of two); its length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits the device offers (VIRTIO_F_VERSION_1 is added by the transport).
    fn device_features(&self) -> u64;
    /// Reads the device configuration space at `offset` (bounds already checked by nobody:
    /// out-of-range bytes must read as zero).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device configuration space (read-only devices ignore it).
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts the device with the negotiated features.
    fn activate(&mut self, features: u64, activation: Activation) -> Result<(), ActivateError>;
    /// Stops the device and drops its queues (driver reset). Must be idempotent.
    fn reset(&mut self);
    /// The next [`VirtioDevice::activate`] restores a snapshot: the queues were the guest's
    /// before and the host side is new (vsock tells the driver its connections are gone).
    fn restoring(&mut self) {}
}

/// Copies `config[offset..offset + data.len()]` into `data`, zero-filling what is out of range.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_are_bounded() {
        let cfg = 3u64.to_le_bytes();
        let mut b = [0xffu8; 4];
        read_config_bytes(&cfg, 0, &mut b);
        assert_eq!(b, [3, 0, 0, 0]);
        read_config_bytes(&cfg, 6, &mut b);
        assert_eq!(b, [0; 4]);
        read_config_bytes(&cfg, u64::MAX, &mut b);
        assert_eq!(b, [0; 4]);
    }
}
