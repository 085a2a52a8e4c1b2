//! Ending the VM from inside: power-off and reboot.
use nix::sys::reboot::{reboot as sys_reboot, RebootMode};

fn end_vm(mode: RebootMode) -> anyhow::Result<()> {
    nix::unistd::sync();
    // Only returns on failure.
    let err = sys_reboot(mode).unwrap_err();
    anyhow::bail!("reboot({mode:?}): {err}")
}

/// Powers the VM off. A guest without ACPI (ours) has no power-off method: the kernel halts
/// instead, so VMMs end such a guest on reboot (`reboot=k`); use [`reboot`] to end the VM.
pub fn power_off() -> anyhow::Result<()> {
    end_vm(RebootMode::RB_POWER_OFF)
}

/// Reboots the VM (the VMM treats a guest reboot as the end of the VM).
pub fn reboot() -> anyhow::Result<()> {
    end_vm(RebootMode::RB_AUTOBOOT)
}
