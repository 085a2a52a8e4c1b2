//! VM creation: in-kernel IRQ chip (PIC, IOAPIC, LAPICs), PIT, TSS and identity map.

use kvm_bindings::{kvm_pit_config, CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, Kvm, VmFd};

use super::KvmError;
use crate::arch::x86_64::layout::{KVM_IDENTITY_MAP_ADDRESS, KVM_TSS_ADDRESS};

/// [`KVM_TSS_ADDRESS`] for KVM_SET_TSS_ADDR: below 4 GiB, so it fits any usize we build for.
#[allow(clippy::cast_possible_truncation)] // in range: asserted first
const TSS_ADDRESS: usize = {
    assert!(KVM_TSS_ADDRESS <= u32::MAX as u64);
    KVM_TSS_ADDRESS as usize
};

/// A created VM with what vCPU setup needs from KVM.
pub struct Vm {
    /// The VM fd.
    pub fd: VmFd,
    /// KVM_GET_SUPPORTED_CPUID, before per-vCPU filtering.
    pub supported_cpuid: CpuId,
    /// Whether the in-kernel LAPIC has a TSC deadline timer.
    pub tsc_deadline: bool,
}

/// Checks `vcpus` against KVM's limit, creates the VM and its in-kernel devices.
pub fn create_vm(kvm: &Kvm, vcpus: u8) -> Result<Vm, KvmError> {
    let max = kvm.get_max_vcpus();
    if usize::from(vcpus) > max {
        return Err(KvmError::TooManyVcpus {
            requested: vcpus,
            max,
        });
    }
    let supported_cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(KvmError::ioctl("KVM_GET_SUPPORTED_CPUID"))?;
    let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);

    let fd = kvm.create_vm().map_err(KvmError::ioctl("KVM_CREATE_VM"))?;
    fd.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS)
        .map_err(KvmError::ioctl("KVM_SET_IDENTITY_MAP_ADDR"))?;
    fd.set_tss_address(TSS_ADDRESS)
        .map_err(KvmError::ioctl("KVM_SET_TSS_ADDR"))?;
    fd.create_irq_chip()
        .map_err(KvmError::ioctl("KVM_CREATE_IRQCHIP"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    fd.create_pit2(pit)
        .map_err(KvmError::ioctl("KVM_CREATE_PIT2"))?;
    Ok(Vm {
        fd,
        supported_cpuid,
        tsc_deadline,
    })
}
