//! Sandpod's power port: how the guest agent asks to end the VM.
//!
//! An x86 guest without ACPI cannot power off, and its reboot looks the same as a kernel panic
//! with `panic=-1` (both reset through the i8042 or a triple fault). So the agent writes its
//! request, one byte, to I/O port [`POWER_PORT`] (through /dev/port) before rebooting: 0 = power
//! off, 1 = reboot. The VM ends at once with that reason; a reset that comes without a request
//! is a crash. Other values are logged (rate-limited by the bus's unknown-access counter is not
//! needed: the guest gets nothing from writing garbage) and ignored. Reads return 0xff.

use std::sync::Arc;

use crate::devices::bus::BusDevice;
use crate::exit::{ExitReason, ExitState};

/// The port (one byte wide); must match the agent's `POWER_PORT`.
pub const POWER_PORT: u64 = 0x600;
/// Width of the port range.
pub const POWER_PORT_LEN: u64 = 1;
/// Written value: power off.
pub const REQUEST_POWER_OFF: u8 = 0;
/// Written value: reboot.
pub const REQUEST_REBOOT: u8 = 1;

/// Written value: save a snapshot and exit (template mode only; see [`crate::snapshot`]).
pub const REQUEST_SNAPSHOT: u8 = sandpod_vmconfig::REQUEST_SNAPSHOT;

/// The power port device.
pub struct PowerPort {
    exit: Arc<ExitState>,
    /// Snapshot requests are honoured (the VM was started with `snapshot_to`).
    snapshots: bool,
    ignored: u64,
}

impl PowerPort {
    pub fn new(exit: Arc<ExitState>) -> Self {
        PowerPort {
            exit,
            snapshots: false,
            ignored: 0,
        }
    }

    /// Honours [`REQUEST_SNAPSHOT`] (otherwise it is ignored like any unknown value).
    pub fn taking_snapshots(mut self, on: bool) -> Self {
        self.snapshots = on;
        self
    }
}

impl BusDevice for PowerPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let request = match (offset, data) {
            (0, [REQUEST_POWER_OFF]) => ExitReason::PowerOff,
            (0, [REQUEST_REBOOT]) => ExitReason::Reboot,
            (0, [REQUEST_SNAPSHOT]) if self.snapshots => ExitReason::Snapshot,
            _ => {
                self.ignored += 1;
                if self.ignored.is_power_of_two() {
                    tracing::warn!(
                        "power port: ignored write {data:x?} at offset {offset} ({} so far)",
                        self.ignored
                    );
                }
                return;
            }
        };
        self.exit.request(request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(data: &[u8]) -> Option<ExitReason> {
        let exit = Arc::new(ExitState::new());
        PowerPort::new(exit.clone()).write(0, data);
        exit.reason()
    }

    #[test]
    fn requests_end_the_vm() {
        assert_eq!(written(&[0]), Some(ExitReason::PowerOff));
        assert_eq!(written(&[1]), Some(ExitReason::Reboot));
    }

    #[test]
    fn a_snapshot_request_counts_only_in_template_mode() {
        // A guest that was not started to be a template cannot make the VMM write one.
        assert_eq!(written(&[REQUEST_SNAPSHOT]), None);
        let exit = Arc::new(ExitState::new());
        PowerPort::new(exit.clone())
            .taking_snapshots(true)
            .write(0, &[REQUEST_SNAPSHOT]);
        assert_eq!(exit.reason(), Some(ExitReason::Snapshot));
    }

    #[test]
    fn garbage_is_ignored() {
        assert_eq!(written(&[7]), None);
        assert_eq!(written(&[0, 0]), None);
        assert_eq!(written(&[]), None);
        let mut port = PowerPort::new(Arc::new(ExitState::new()));
        let mut buf = [0u8; 2];
        port.read(0, &mut buf);
        assert_eq!(buf, [0xff, 0xff]);
    }
}
