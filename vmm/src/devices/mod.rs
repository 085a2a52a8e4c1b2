//! Emulated devices and the buses that dispatch guest port and MMIO accesses to them.

pub mod bus;
pub mod legacy;
pub mod power_port;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
