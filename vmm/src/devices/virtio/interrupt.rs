//! A virtio device's interrupt: the InterruptStatus bits and the irqfd that raises its IRQ,
//! shared by the MMIO transport (status reads, ACK writes) and the device's worker thread.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use vmm_sys_util::eventfd::EventFd;

use super::{INT_CONFIG, INT_USED_RING};

/// Interrupt state of one device.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    needs_reset: AtomicBool,
    /// Whether a breakage was logged at error level (survives resets).
    reported: AtomicBool,
    evt: EventFd,
}

impl Interrupt {
    /// An interrupt raised by writing to `evt` (registered as a KVM irqfd).
    pub fn new(evt: EventFd) -> Self {
        Interrupt {
            status: AtomicU32::new(0),
            needs_reset: AtomicBool::new(false),
            reported: AtomicBool::new(false),
            evt,
        }
    }

    /// Signals a used buffer (interrupt status bit 0).
    pub fn signal_used(&self) -> io::Result<()> {
        self.raise(INT_USED_RING)
    }

    /// Marks the device broken (DEVICE_NEEDS_RESET) and signals a configuration change.
    pub fn mark_broken(&self, why: &str) {
        let newly_broken = !self.needs_reset.swap(true, Ordering::SeqCst);
        // A guest can break, reset and break a device in a loop: one error line per device,
        // the rest at debug.
        if newly_broken && !self.reported.swap(true, Ordering::SeqCst) {
            tracing::error!(
                "virtio device broken, the driver must reset it: {why} (repeats log at debug)"
            );
        } else if newly_broken {
            tracing::debug!("virtio device broken again: {why}");
        }
        let _ = self.raise(INT_CONFIG);
    }

    /// Whether the device is marked broken.
    pub fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::SeqCst)
    }

    fn raise(&self, bits: u32) -> io::Result<()> {
        self.status.fetch_or(bits, Ordering::SeqCst);
        self.evt.write(1)
    }

    /// The InterruptStatus register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// InterruptACK: clears `bits`.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// A snapshot's InterruptStatus and broken flag: pending bits are raised again (a spurious
    /// interrupt is harmless, a lost one hangs the driver).
    pub fn restore(&self, status: u32, needs_reset: bool) {
        self.needs_reset.store(needs_reset, Ordering::SeqCst);
        if status != 0 {
            let _ = self.raise(status);
        }
    }

    /// Device reset: no pending interrupt, not broken.
    pub fn reset(&self) {
        self.status.store(0, Ordering::SeqCst);
        self.needs_reset.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ack_and_broken() {
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let irq = Interrupt::new(evt.try_clone().unwrap());
        irq.signal_used().unwrap();
        assert_eq!(irq.status(), INT_USED_RING);
        assert_eq!(evt.read().unwrap(), 1);
        irq.mark_broken("test");
        assert!(irq.needs_reset());
        assert_eq!(irq.status(), INT_USED_RING | INT_CONFIG);
        irq.ack(INT_USED_RING);
        assert_eq!(irq.status(), INT_CONFIG);
        irq.reset();
        assert_eq!(irq.status(), 0);
        assert!(!irq.needs_reset());
    }
}
