//! The virtio-mmio transport, version 2 ("modern") only, as a device on the MMIO bus.
//!
//! Register layout per the virtio 1.2 spec, section 4.2.2. Registers take 32-bit accesses
//! only (others read as zero and are ignored); the device configuration space at 0x100 takes
//! any width. The queue notification register is normally served by ioeventfds (KVM never
//! exits for it); a write that does reach the bus is forwarded to the same eventfd.
//!
//! Every log here is triggered by guest register writes, so it is at debug level: a hostile
//! guest cannot flood the host log.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::device::{Activation, VirtioDevice};
use super::queue::QueueConfig;
use super::*;
use crate::devices::bus::BusDevice;
use crate::kvm::memory::GuestMem;

/// Size of a device's MMIO window.
pub const MMIO_SIZE: u64 = 0x1000;
/// "virt" in little endian.
pub const MMIO_MAGIC: u32 = 0x7472_6976;
/// Only the modern layout is offered.
pub const MMIO_VERSION: u32 = 2;
/// Vendor id: "SPOD".
pub const VENDOR_ID: u32 = 0x5350_4f44;
/// Offset of QueueNotify (where the ioeventfds sit).
pub const QUEUE_NOTIFY: u64 = 0x50;
/// Offset of the device configuration space.
pub const CONFIG_SPACE: u64 = 0x100;

/// A transport's registers and queues, for a snapshot. On restore the queues' positions come
/// from the used rings in the restored memory (the device had finished every chain it took:
/// the guest was idle when it asked for the snapshot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportState {
    /// The device's virtio type (checked against the restored device's).
    pub device_type: u32,
    /// Device status.
    pub status: u32,
    /// DeviceFeaturesSel.
    pub device_features_sel: u32,
    /// DriverFeaturesSel.
    pub driver_features_sel: u32,
    /// The features the driver accepted.
    pub driver_features: u64,
    /// QueueSel.
    pub queue_sel: u32,
    /// ConfigGeneration.
    pub config_generation: u32,
    /// InterruptStatus.
    pub interrupt_status: u32,
    /// DEVICE_NEEDS_RESET was set.
    pub needs_reset: bool,
    /// Each queue's registers.
    pub queues: Vec<QueueConfig>,
}

/// A virtio device behind the MMIO transport.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMem,
    interrupt: Arc<Interrupt>,
    queue_evts: Vec<EventFd>,
    queues: Vec<QueueConfig>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    config_generation: u32,
    activated: bool,
}

impl MmioTransport {
    /// Wraps `device`; `queue_evts` has one eventfd per queue (registered as ioeventfds by the
    /// caller), `interrupt` raises the device's IRQ.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMem,
        interrupt: Arc<Interrupt>,
        queue_evts: Vec<EventFd>,
    ) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&m| QueueConfig::new(m))
            .collect();
        MmioTransport {
            device,
            mem,
            interrupt,
            queue_evts,
            queues,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            config_generation: 0,
            activated: false,
        }
    }

    fn device_features(&self) -> u64 {
        self.device.device_features() | (1u64 << VIRTIO_F_VERSION_1)
    }

    fn queue(&mut self) -> Option<&mut QueueConfig> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// The driver may change queue registers only between FEATURES_OK and DRIVER_OK.
    fn queue_setup_allowed(&self) -> bool {
        self.status & STATUS_FEATURES_OK != 0 && self.status & STATUS_DRIVER_OK == 0
    }

    /// Resets the device and the transport, as a driver's reset does (also
    /// [`Vmm::abandon`](crate::Vmm::abandon)).
    pub fn reset(&mut self) {
        self.device.reset();
        self.activated = false;
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.queues.iter_mut().for_each(QueueConfig::reset);
        self.interrupt.reset();
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let queue = self.queues.get(self.queue_sel as usize);
        match offset {
            0x00 => MMIO_MAGIC,
            0x04 => MMIO_VERSION,
            0x08 => self.device.device_type(),
            0x0c => VENDOR_ID,
            0x10 => match self.device_features_sel {
                0 => (self.device_features() & 0xffff_ffff) as u32,
                1 => (self.device_features() >> 32) as u32,
                _ => 0,
            },
            0x34 => queue.map_or(0, |q| u32::from(q.max_size)),
            0x44 => queue.map_or(0, |q| u32::from(q.ready)),
            0x60 => self.interrupt.status(),
            0x70 => {
                let broken = self.interrupt.needs_reset();
                self.status | if broken { STATUS_DEVICE_NEEDS_RESET } else { 0 }
            }
            // Shared memory regions: none (a length of all ones means "no region").
            0xb0 | 0xb4 => u32::MAX,
            0xfc => self.config_generation,
            _ => {
                tracing::debug!("virtio-mmio: read of unknown register {offset:#x}");
                0
            }
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            0x14 => self.device_features_sel = v,
            0x20 => self.write_driver_features(v),
            0x24 => self.driver_features_sel = v,
            0x30 => self.queue_sel = v,
            0x38 | 0x44 | 0x80 | 0x84 | 0x90 | 0x94 | 0xa0 | 0xa4 => {
                self.write_queue_reg(offset, v)
            }
            QUEUE_NOTIFY => match self.queue_evts.get(v as usize) {
                Some(evt) => {
                    let _ = evt.write(1);
                }
                None => tracing::debug!("virtio-mmio: notify of unknown queue {v}"),
            },
            0x64 => self.interrupt.ack(v),
            0x70 => self.write_status(v),
            _ => tracing::debug!("virtio-mmio: write of unknown register {offset:#x}"),
        }
    }

    fn write_driver_features(&mut self, v: u32) {
        if self.status & STATUS_DRIVER == 0 || self.status & STATUS_FEATURES_OK != 0 {
            tracing::debug!(
                "virtio-mmio: driver features written in status {:#x}",
                self.status
            );
            return;
        }
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v),
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32),
            _ => {}
        }
    }

    fn write_queue_reg(&mut self, offset: u64, v: u32) {
        if !self.queue_setup_allowed() {
            tracing::debug!(
                "virtio-mmio: queue register {offset:#x} written in status {:#x}",
                self.status
            );
            return;
        }
        let Some(q) = self.queue() else {
            return;
        };
        let set_low = |a: &mut u64| *a = (*a & !0xffff_ffff) | u64::from(v);
        let set_high = |a: &mut u64| *a = (*a & 0xffff_ffff) | (u64::from(v) << 32);
        match offset {
            // Validated (power of two, <= max) when the queue is built.
            0x38 => q.size = u16::try_from(v).unwrap_or(0),
            0x44 => q.ready = v == 1,
            0x80 => set_low(&mut q.desc),
            0x84 => set_high(&mut q.desc),
            0x90 => set_low(&mut q.avail),
            0x94 => set_high(&mut q.avail),
            0xa0 => set_low(&mut q.used),
            _ => set_high(&mut q.used),
        }
    }

    fn write_status(&mut self, v: u32) {
        // NEEDS_RESET is the device's to set, not the driver's.
        let v = v & !STATUS_DEVICE_NEEDS_RESET;
        if v == 0 {
            self.reset();
            return;
        }
        // The driver only ever adds bits (besides reset).
        if v & self.status != self.status {
            tracing::debug!(
                "virtio-mmio: status {:#x} -> {v:#x} drops bits",
                self.status
            );
            return;
        }
        let new = v & !self.status;
        let mut accepted = v;
        if new & STATUS_FEATURES_OK != 0 && !self.features_ok() {
            // Not setting FEATURES_OK tells the driver the features were refused.
            accepted &= !STATUS_FEATURES_OK;
        }
        if new & STATUS_DRIVER_OK != 0 {
            if accepted & STATUS_FEATURES_OK == 0 {
                tracing::debug!("virtio-mmio: DRIVER_OK without FEATURES_OK");
                accepted &= !STATUS_DRIVER_OK;
            } else if let Err(e) = self.activate() {
                self.interrupt.mark_broken(&e);
            }
        }
        self.status = accepted;
    }

    fn features_ok(&self) -> bool {
        let offered = self.device_features();
        if self.driver_features & !offered != 0 {
            tracing::debug!(
                "virtio-mmio: driver accepted unoffered features {:#x}",
                self.driver_features & !offered
            );
            return false;
        }
        if self.driver_features & (1 << VIRTIO_F_VERSION_1) == 0 {
            tracing::debug!("virtio-mmio: legacy driver (no VIRTIO_F_VERSION_1) refused");
            return false;
        }
        true
    }

    fn activate(&mut self) -> Result<(), String> {
        self.activate_at(&[])
    }

    /// Activates the device; `positions[i]` (when given) is where queue i resumes (next
    /// available and next used index).
    fn activate_at(&mut self, positions: &[Option<u16>]) -> Result<(), String> {
        let mut queues = Vec::with_capacity(self.queues.len());
        for (index, q) in self.queues.iter().enumerate() {
            let mut queue = q
                .build(&self.mem)
                .map_err(|e| format!("queue {index}: {e}"))?;
            if let Some(Some(at)) = positions.get(index) {
                queue.set_next_avail(*at);
                queue.set_next_used(*at);
            }
            queues.push(queue);
        }
        let mut queue_evts = Vec::with_capacity(self.queue_evts.len());
        for evt in &self.queue_evts {
            queue_evts.push(evt.try_clone().map_err(|e| e.to_string())?);
        }
        let activation = Activation {
            mem: self.mem.clone(),
            queues,
            queue_evts,
            interrupt: self.interrupt.clone(),
        };
        self.device
            .activate(self.driver_features, activation)
            .map_err(|e| e.to_string())?;
        self.activated = true;
        Ok(())
    }

    /// The transport's state for a snapshot (the vCPUs stopped).
    pub fn save(&self) -> TransportState {
        TransportState {
            device_type: self.device.device_type(),
            status: self.status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            config_generation: self.config_generation,
            interrupt_status: self.interrupt.status(),
            needs_reset: self.interrupt.needs_reset(),
            queues: self.queues.clone(),
        }
    }

    /// Puts a fresh transport (guest memory already restored) in a snapshot's state, and
    /// restarts the device if the driver had started it. Everything in `state` comes from a
    /// file: each value is checked as a driver's write would be.
    pub fn restore(&mut self, state: &TransportState) -> Result<(), String> {
        if state.device_type != self.device.device_type() {
            return Err(format!(
                "device type {} in the snapshot, {} configured",
                state.device_type,
                self.device.device_type()
            ));
        }
        if state.queues.len() != self.queues.len()
            || state
                .queues
                .iter()
                .zip(&self.queues)
                .any(|(saved, ours)| saved.max_size != ours.max_size)
        {
            return Err("the snapshot's queues do not match the device's".into());
        }
        self.status = state.status & !STATUS_DEVICE_NEEDS_RESET;
        self.device_features_sel = state.device_features_sel;
        self.driver_features_sel = state.driver_features_sel;
        self.driver_features = state.driver_features;
        self.queue_sel = state.queue_sel;
        self.config_generation = state.config_generation;
        self.queues.clone_from(&state.queues);
        if self.status & STATUS_DRIVER_OK != 0 && !state.needs_reset {
            if self.status & STATUS_FEATURES_OK == 0 || !self.features_ok() {
                return Err("the snapshot's device was started without valid features".into());
            }
            self.device.restoring();
            self.activate_restored()?;
        }
        self.interrupt
            .restore(state.interrupt_status, state.needs_reset);
        Ok(())
    }

    /// Activation with each queue resumed where the used ring says the device stopped.
    fn activate_restored(&mut self) -> Result<(), String> {
        let mut positions = Vec::with_capacity(self.queues.len());
        for (index, q) in self.queues.iter().enumerate() {
            if !q.ready {
                positions.push(None);
                continue;
            }
            // The used ring's idx field follows its 16-bit flags.
            let used_idx: u16 = self
                .mem
                .read_obj(GuestAddress(q.used.wrapping_add(2)))
                .map_err(|e| format!("queue {index}: used ring {:#x}: {e}", q.used))?;
            positions.push(Some(used_idx));
        }
        self.activate_at(&positions)
    }

    /// The device's virtio type (`TYPE_*`).
    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    /// Whether the device was activated (DRIVER_OK accepted).
    pub fn is_activated(&self) -> bool {
        self.activated
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_SPACE {
            self.device.read_config(offset - CONFIG_SPACE, data);
            return;
        }
        match <&mut [u8; 4]>::try_from(&mut *data) {
            Ok(out) if offset & 3 == 0 => *out = self.read_reg(offset).to_le_bytes(),
            _ => data.fill(0),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_SPACE {
            self.device.write_config(offset - CONFIG_SPACE, data);
            self.config_generation = self.config_generation.wrapping_add(1);
            return;
        }
        match <[u8; 4]>::try_from(data) {
            Ok(v) if offset & 3 == 0 => self.write_reg(offset, u32::from_le_bytes(v)),
            _ => tracing::debug!("virtio-mmio: {}-byte write at {offset:#x}", data.len()),
        }
    }
}

#[cfg(test)]
#[path = "mmio_tests.rs"]
mod tests;

impl Drop for MmioTransport {
    fn drop(&mut self) {
        self.device.reset();
    }
}
