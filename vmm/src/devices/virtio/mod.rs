//! Virtio devices over the virtio-mmio transport (modern, version 2 only).
//!
//! A device implements [`VirtioDevice`]; [`MmioTransport`] exposes it on the MMIO bus, runs the
//! driver's status/feature/queue negotiation and hands the configured queues to the device on
//! DRIVER_OK. Queue notifications arrive on ioeventfds and interrupts leave through an irqfd
//! ([`Interrupt`]), so the data path never goes through the vCPU threads: each device serves
//! its queues on its own thread ([`DeviceThread`], one epoll loop per device).

pub mod block;
pub mod chain;
pub mod device;
pub mod epoll_helper;
pub mod fs;
pub mod guest_iovecs;
pub mod interrupt;
pub mod mmio;
pub mod net;
pub mod queue;
#[cfg(test)]
pub(crate) mod test_utils;
pub mod vsock;

pub use device::{ActivateError, Activation, VirtioDevice};
pub use epoll_helper::{DeviceThread, EpollHandler};
pub use interrupt::Interrupt;
pub use mmio::{MmioTransport, MMIO_SIZE};

/// Device status bit: the guest noticed the device.
pub const STATUS_ACKNOWLEDGE: u32 = 1;
/// Device status bit: the guest has a driver for it.
pub const STATUS_DRIVER: u32 = 2;
/// Device status bit: the driver is ready.
pub const STATUS_DRIVER_OK: u32 = 4;
/// Device status bit: feature negotiation is complete.
pub const STATUS_FEATURES_OK: u32 = 8;
/// Device status bit: the device hit an error and needs a reset.
pub const STATUS_DEVICE_NEEDS_RESET: u32 = 0x40;
/// Device status bit: the driver gave up on the device.
pub const STATUS_FAILED: u32 = 0x80;

/// Feature bit: virtio 1.0 or later ("modern") device. Required.
pub const VIRTIO_F_VERSION_1: u32 = 32;
/// Feature bit: used_event / avail_event suppress interrupts and notifications.
pub const VIRTIO_RING_F_EVENT_IDX: u32 = 29;

/// Interrupt status bit: a used buffer was added to a queue.
pub const INT_USED_RING: u32 = 1;
/// Interrupt status bit: the configuration (or the device status) changed.
pub const INT_CONFIG: u32 = 2;

/// Device type of virtio-net.
pub const TYPE_NET: u32 = 1;
/// Device type of virtio-blk.
pub const TYPE_BLOCK: u32 = 2;
/// Device type of virtio-vsock.
pub const TYPE_VSOCK: u32 = 19;
/// Device type of virtio-fs.
pub const TYPE_FS: u32 = 26;
