//! The VM-wide state KVM holds: the in-kernel PICs and IOAPIC, the PIT and the kvmclock.
//! Restored into a VM made by [`super::vm::create_vm`] (which creates the irqchip and PIT)
//! before its vCPUs are restored.

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

use super::KvmError;

/// The irqchips in the order they are saved.
const CHIPS: [u32; 3] = [
    KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQCHIP_IOAPIC,
];

/// Everything KVM holds about the VM besides memory and vCPUs.
#[derive(Clone, Serialize, Deserialize)]
pub struct VmState {
    /// PIC master, PIC slave, IOAPIC (each tagged with its chip id).
    pub irqchips: Vec<kvm_irqchip>,
    /// The i8254 PIT.
    pub pit: kvm_pit_state2,
    /// The kvmclock (flags cleared: KVM_SET_CLOCK takes none of KVM_GET_CLOCK's).
    pub clock: kvm_clock_data,
}

impl std::fmt::Debug for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmState")
            .field("clock_ns", &self.clock.clock)
            .finish()
    }
}

/// Saves the VM's state (its vCPUs stopped).
pub fn save_vm(vm: &VmFd) -> Result<VmState, KvmError> {
    let mut irqchips = Vec::with_capacity(CHIPS.len());
    for chip_id in CHIPS {
        let mut chip = kvm_irqchip {
            chip_id,
            ..Default::default()
        };
        vm.get_irqchip(&mut chip)
            .map_err(KvmError::ioctl("KVM_GET_IRQCHIP"))?;
        irqchips.push(chip);
    }
    let pit = vm.get_pit2().map_err(KvmError::ioctl("KVM_GET_PIT2"))?;
    let mut clock = vm.get_clock().map_err(KvmError::ioctl("KVM_GET_CLOCK"))?;
    clock.flags = 0;
    Ok(VmState {
        irqchips,
        pit,
        clock,
    })
}

/// Checks what KVM would not: one of each chip, in order.
pub fn check_vm_state(state: &VmState) -> Result<(), String> {
    let ids: Vec<u32> = state.irqchips.iter().map(|c| c.chip_id).collect();
    if ids != CHIPS {
        return Err(format!("irqchips {ids:?}, expected {CHIPS:?}"));
    }
    Ok(())
}

/// Restores `state` (checked by [`check_vm_state`]) into `vm`.
pub fn restore_vm(vm: &VmFd, state: &VmState) -> Result<(), KvmError> {
    vm.set_pit2(&state.pit)
        .map_err(KvmError::ioctl("KVM_SET_PIT2"))?;
    let clock = kvm_clock_data {
        flags: 0,
        ..state.clock
    };
    vm.set_clock(&clock)
        .map_err(KvmError::ioctl("KVM_SET_CLOCK"))?;
    for chip in &state.irqchips {
        vm.set_irqchip(chip)
            .map_err(KvmError::ioctl("KVM_SET_IRQCHIP"))?;
    }
    Ok(())
}
