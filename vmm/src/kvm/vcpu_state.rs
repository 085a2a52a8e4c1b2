//! A vCPU's architectural state, saved for a snapshot and restored into a new vCPU.
//!
//! What is saved (the order Firecracker uses, and KVM's documentation asks for): MP state,
//! regs, sregs, xsave, xcrs, debug registers, LAPIC, every MSR KVM can save, vCPU events and
//! the TSC frequency. Saving must follow a KVM_RUN that returned with `immediate_exit` set: an
//! I/O or MMIO exit is only complete (and the state consistent) after the next KVM_RUN
//! (see `run_vcpu`).
//!
//! Restoring goes the other way, after KVM_SET_CPUID2: MP state, regs, sregs, xsave, xcrs,
//! debug registers, LAPIC, MSRs (after the LAPIC: the TSC deadline MSR needs it), events.

use kvm_bindings::{
    kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs,
    kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs, KVM_MAX_MSR_ENTRIES,
};
use kvm_ioctls::{Kvm, VcpuFd};
use serde::{Deserialize, Serialize};

use super::KvmError;

/// Everything KVM holds about one vCPU.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    /// KVM_GET_MP_STATE.
    pub mp_state: kvm_mp_state,
    /// General registers.
    pub regs: kvm_regs,
    /// Segment and control registers.
    pub sregs: kvm_sregs,
    /// FPU/SSE/AVX state (the legacy 4 KiB layout).
    pub xsave: kvm_xsave,
    /// Extended control registers.
    pub xcrs: kvm_xcrs,
    /// Debug registers.
    pub debug_regs: kvm_debugregs,
    /// The local APIC's registers.
    pub lapic: kvm_lapic_state,
    /// The MSRs that could be read.
    pub msrs: Vec<kvm_msr_entry>,
    /// Pending exceptions, interrupts, NMIs, SMIs.
    pub events: kvm_vcpu_events,
    /// The TSC frequency the vCPU ran at (kHz), if KVM reports it.
    pub tsc_khz: Option<u32>,
}

impl std::fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuState")
            .field("rip", &self.regs.rip)
            .field("msrs", &self.msrs.len())
            .finish()
    }
}

/// The MSRs to save: KVM's list (KVM_GET_MSR_INDEX_LIST). Those KVM then cannot read are
/// left out; those it refuses on restore are logged.
pub fn saved_msr_indices(kvm: &Kvm) -> Result<Vec<u32>, KvmError> {
    let list = kvm
        .get_msr_index_list()
        .map_err(KvmError::ioctl("KVM_GET_MSR_INDEX_LIST"))?;
    Ok(list.as_slice().to_vec())
}

fn msrs_of(entries: &[kvm_msr_entry]) -> Result<Msrs, KvmError> {
    Msrs::from_entries(entries).map_err(|_| KvmError::Ioctl {
        op: "building the MSR list",
        source: kvm_ioctls::Error::new(libc::E2BIG),
    })
}

/// Reads the MSRs in `indices`, in chunks KVM takes; an MSR KVM cannot read is left out (and
/// logged at debug).
fn read_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, KvmError> {
    let mut out = Vec::with_capacity(indices.len());
    let mut rest: Vec<u32> = indices.to_vec();
    while !rest.is_empty() {
        let chunk: Vec<kvm_msr_entry> = rest
            .iter()
            .take(KVM_MAX_MSR_ENTRIES)
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = msrs_of(&chunk)?;
        let read = vcpu
            .get_msrs(&mut msrs)
            .map_err(KvmError::ioctl("KVM_GET_MSRS"))?;
        out.extend_from_slice(&msrs.as_slice()[..read]);
        if read < chunk.len() {
            // KVM stops at the first MSR it cannot read: skip that one.
            tracing::debug!("MSR {:#x} cannot be read: not saved", chunk[read].index);
            rest.drain(..=read);
        } else {
            rest.drain(..read);
        }
    }
    Ok(out)
}

/// Saves `vcpu`'s state (see the module docs for when this is valid).
pub fn save_vcpu(vcpu: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState, KvmError> {
    let mp_state = vcpu
        .get_mp_state()
        .map_err(KvmError::ioctl("KVM_GET_MP_STATE"))?;
    let regs = vcpu.get_regs().map_err(KvmError::ioctl("KVM_GET_REGS"))?;
    let sregs = vcpu.get_sregs().map_err(KvmError::ioctl("KVM_GET_SREGS"))?;
    let xsave = vcpu.get_xsave().map_err(KvmError::ioctl("KVM_GET_XSAVE"))?;
    let xcrs = vcpu.get_xcrs().map_err(KvmError::ioctl("KVM_GET_XCRS"))?;
    let debug_regs = vcpu
        .get_debug_regs()
        .map_err(KvmError::ioctl("KVM_GET_DEBUGREGS"))?;
    let lapic = vcpu.get_lapic().map_err(KvmError::ioctl("KVM_GET_LAPIC"))?;
    let msrs = read_msrs(vcpu, msr_indices)?;
    let events = vcpu
        .get_vcpu_events()
        .map_err(KvmError::ioctl("KVM_GET_VCPU_EVENTS"))?;
    let tsc_khz = vcpu.get_tsc_khz().ok();
    Ok(VcpuState {
        mp_state,
        regs,
        sregs,
        xsave,
        xcrs,
        debug_regs,
        lapic,
        msrs,
        events,
        tsc_khz,
    })
}

/// Restores `state` into `vcpu` (already given its CPUID). `xsave_fits`: KVM's xsave area is
/// no larger than `kvm_xsave` (KVM_CAP_XSAVE2 reports at most 4 KiB), which makes
/// KVM_SET_XSAVE with a `kvm_xsave` sound.
pub fn restore_vcpu(vcpu: &VcpuFd, state: &VcpuState, xsave_fits: bool) -> Result<(), KvmError> {
    if let Some(khz) = state.tsc_khz {
        if vcpu.get_tsc_khz().ok() != Some(khz) {
            if let Err(e) = vcpu.set_tsc_khz(khz) {
                tracing::warn!("cannot set the vCPU's TSC to the snapshot's {khz} kHz: {e}");
            }
        }
    }
    vcpu.set_mp_state(state.mp_state)
        .map_err(KvmError::ioctl("KVM_SET_MP_STATE"))?;
    vcpu.set_regs(&state.regs)
        .map_err(KvmError::ioctl("KVM_SET_REGS"))?;
    vcpu.set_sregs(&state.sregs)
        .map_err(KvmError::ioctl("KVM_SET_SREGS"))?;
    if !xsave_fits {
        return Err(KvmError::Ioctl {
            op: "KVM_SET_XSAVE (this host's xsave area is larger than 4 KiB)",
            source: kvm_ioctls::Error::new(libc::ENOTSUP),
        });
    }
    // SAFETY: KVM reads at most its xsave area's size from the pointer, and the caller checked
    // (KVM_CAP_XSAVE2) that this is no more than the `kvm_xsave` we pass.
    unsafe { vcpu.set_xsave(&state.xsave) }.map_err(KvmError::ioctl("KVM_SET_XSAVE"))?;
    vcpu.set_xcrs(&state.xcrs)
        .map_err(KvmError::ioctl("KVM_SET_XCRS"))?;
    vcpu.set_debug_regs(&state.debug_regs)
        .map_err(KvmError::ioctl("KVM_SET_DEBUGREGS"))?;
    vcpu.set_lapic(&state.lapic)
        .map_err(KvmError::ioctl("KVM_SET_LAPIC"))?;
    for chunk in state.msrs.chunks(KVM_MAX_MSR_ENTRIES) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let set = vcpu
                .set_msrs(&msrs_of(rest)?)
                .map_err(KvmError::ioctl("KVM_SET_MSRS"))?;
            if set < rest.len() {
                tracing::warn!("KVM refused MSR {:#x} of the snapshot", rest[set].index);
                rest = &rest[set + 1..];
            } else {
                rest = &[];
            }
        }
    }
    vcpu.set_vcpu_events(&state.events)
        .map_err(KvmError::ioctl("KVM_SET_VCPU_EVENTS"))?;
    Ok(())
}
