//! Ending the VM from inside: power-off and reboot; and, for a template VM, the snapshot request.
//!
//! An x86 guest without ACPI (ours) has no power-off method, and a reboot looks the same to the
//! VMM as a kernel panic (`panic=-1` reboots too). So before ending the VM the agent writes its
//! request to Sandpod's power port (I/O port [`POWER_PORT`], through /dev/port): sandpod-vmm ends
//! at once with the matching exit status, and a reset that comes without a request is known to
//! be a crash. Other VMMs ignore the write; the reboot that follows ends the VM there.
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use nix::sys::reboot::{reboot as sys_reboot, RebootMode};

/// Sandpod's power port (one byte, write-only); must match sandpod-vmm.
pub const POWER_PORT: u64 = 0x600;
/// Value written to [`POWER_PORT`] to power off.
pub const REQUEST_POWER_OFF: u8 = 0;
/// Value written to [`POWER_PORT`] to reboot.
pub const REQUEST_REBOOT: u8 = 1;
/// Value written to [`POWER_PORT`] to ask for a snapshot (template mode); must match
/// `vmconfig::REQUEST_SNAPSHOT`.
pub const REQUEST_SNAPSHOT: u8 = 2;

/// Syncs and lets the console's transmit buffer drain: the VMM acts the moment it sees a
/// request, and the last lines printed would be lost. Not a terminal: nothing to drain.
fn settle() {
    nix::unistd::sync();
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let _ = nix::sys::termios::tcdrain(std::io::stdout());
    let _ = nix::sys::termios::tcdrain(std::io::stderr());
}

fn end_vm(request: u8) -> anyhow::Result<()> {
    settle();
    if let Ok(port) = OpenOptions::new().write(true).open("/dev/port") {
        // Best effort: without the port (another VMM) the reboot below still ends the VM.
        let _ = port.write_at(&[request], POWER_PORT);
    }
    // Only returns on failure. RB_AUTOBOOT, not RB_POWER_OFF: without ACPI the latter halts.
    let err = sys_reboot(RebootMode::RB_AUTOBOOT).unwrap_err();
    anyhow::bail!("reboot(2): {err}")
}

/// Powers the VM off.
pub fn power_off() -> anyhow::Result<()> {
    end_vm(REQUEST_POWER_OFF)
}

/// Reboots the VM (for a VMM, the end of the VM).
pub fn reboot() -> anyhow::Result<()> {
    end_vm(REQUEST_REBOOT)
}

/// Asks the VMM to snapshot the VM (template mode). In the template VM, sandpod-vmm saves the
/// VM and exits during the write: this never returns there. In every VM restored from the
/// snapshot, execution goes on right after the write: returning `Ok` means "this is a clone"
/// (or a VMM that ignores the request, which then looks the same to the agent).
///
/// Unlike power-off this is not best effort: without the port there is no snapshot to wait for.
pub fn request_snapshot() -> anyhow::Result<()> {
    use anyhow::Context;
    let port = OpenOptions::new()
        .write(true)
        .open("/dev/port")
        .context("opening /dev/port")?;
    settle();
    port.write_at(&[REQUEST_SNAPSHOT], POWER_PORT)
        .context("writing the snapshot request to the power port")?;
    Ok(())
}
