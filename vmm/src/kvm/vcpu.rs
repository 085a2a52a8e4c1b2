//! vCPU setup and the KVM_RUN loop.
//!
//! Every vCPU gets CPUID, MSRs, FPU and LAPIC LINT setup. Only the boot vCPU (index 0) gets the
//! 64-bit entry state; the others stay in the wait-for-SIPI state KVM puts them in (with an
//! in-kernel irqchip) until the guest wakes them with INIT/SIPI.
//!
//! Stopping: the VMM sets [`ExitState`]'s stopping flag and sends [`kick_signal`] to each vCPU
//! thread. The signal handler sets `immediate_exit` in the thread's `kvm_run`, so a KVM_RUN
//! entered after the flag check returns at once with EINTR instead of running the guest.

use std::cell::Cell;
use std::sync::{Arc, Once};

use kvm_bindings::{
    CpuId, Msrs, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use super::cpuid::{filter_cpuid, VcpuTopology};
use super::vcpu_state::{save_vcpu, VcpuState};
use super::KvmError;
use crate::arch::x86_64::{msr, regs};
use crate::devices::Bus;
use crate::exit::{ExitReason, ExitState};

/// Entry state of the boot vCPU.
#[derive(Clone, Copy, Debug)]
pub struct BootEntry {
    /// 64-bit kernel entry point.
    pub entry: u64,
    /// Zero page address (goes in rsi).
    pub zero_page: u64,
    /// PML4 address (goes in cr3).
    pub cr3: u64,
}

/// Creates vCPU `index` of `count`.
pub fn create_vcpu(vm: &VmFd, index: u8) -> Result<VcpuFd, KvmError> {
    vm.create_vcpu(u64::from(index))
        .map_err(KvmError::ioctl("KVM_CREATE_VCPU"))
}

/// Configures a vCPU; `boot` is set for the boot vCPU only.
pub fn configure_vcpu(
    vcpu: &VcpuFd,
    topo: VcpuTopology,
    supported_cpuid: &CpuId,
    tsc_deadline: bool,
    boot: Option<BootEntry>,
) -> Result<(), KvmError> {
    let entries = filter_cpuid(supported_cpuid.as_slice(), topo, tsc_deadline);
    let cpuid = CpuId::from_entries(&entries).map_err(|_| KvmError::Ioctl {
        op: "building the CPUID list",
        source: kvm_ioctls::Error::new(libc::E2BIG),
    })?;
    vcpu.set_cpuid2(&cpuid)
        .map_err(KvmError::ioctl("KVM_SET_CPUID2"))?;

    let entries = msr::boot_msr_entries();
    let msrs = Msrs::from_entries(&entries).map_err(|_| KvmError::Ioctl {
        op: "building the MSR list",
        source: kvm_ioctls::Error::new(libc::EINVAL),
    })?;
    let set = vcpu
        .set_msrs(&msrs)
        .map_err(KvmError::ioctl("KVM_SET_MSRS"))?;
    if set != entries.len() {
        let index = entries.get(set).map_or(0, |e| e.index);
        tracing::warn!(vcpu = topo.index, "KVM refused MSR {index:#x}; continuing");
    }

    vcpu.set_fpu(&regs::boot_fpu())
        .map_err(KvmError::ioctl("KVM_SET_FPU"))?;

    let mut lapic = vcpu.get_lapic().map_err(KvmError::ioctl("KVM_GET_LAPIC"))?;
    regs::set_lint(&mut lapic);
    vcpu.set_lapic(&lapic)
        .map_err(KvmError::ioctl("KVM_SET_LAPIC"))?;

    if let Some(boot) = boot {
        let mut sregs = vcpu.get_sregs().map_err(KvmError::ioctl("KVM_GET_SREGS"))?;
        regs::setup_long_mode_sregs(&mut sregs, boot.cr3);
        vcpu.set_sregs(&sregs)
            .map_err(KvmError::ioctl("KVM_SET_SREGS"))?;
        vcpu.set_regs(&regs::boot_regs(boot.entry, boot.zero_page))
            .map_err(KvmError::ioctl("KVM_SET_REGS"))?;
    }
    Ok(())
}

thread_local! {
    /// This thread's `kvm_run.immediate_exit`, for the kick signal handler.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn handle_kick(_: c_int, _: *mut siginfo_t, _: *mut c_void) {
    let ptr = IMMEDIATE_EXIT.with(|p| p.get());
    if !ptr.is_null() {
        // SAFETY: the pointer is this thread's own kvm_run mapping, set by `run_vcpu` and
        // cleared before the VcpuFd (and its mapping) is dropped; a volatile byte store is
        // async-signal-safe.
        unsafe { ptr.write_volatile(1) };
    }
}

/// The real-time signal used to kick vCPU threads out of KVM_RUN.
pub fn kick_signal() -> c_int {
    SIGRTMIN()
}

/// Installs the kick signal handler (once per process).
pub fn install_kick_handler() -> Result<(), KvmError> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = register_signal_handler(kick_signal(), handle_kick).map_err(|e| KvmError::Ioctl {
            op: "installing the vCPU kick signal handler",
            source: e,
        });
    });
    result
}

/// Makes sure the VM stops if a vCPU thread ends without a requested exit (e.g. a panic), so
/// the VMM never waits forever on a dead vCPU.
struct EndGuard<'a> {
    exit: &'a ExitState,
    index: u8,
}

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        IMMEDIATE_EXIT.with(|p| p.set(std::ptr::null_mut()));
        if !self.exit.is_stopping() {
            self.exit.request(ExitReason::Error(format!(
                "vCPU {} thread ended unexpectedly",
                self.index
            )));
        }
    }
}

/// What a vCPU thread hands back: its state when the VM ended for a snapshot, else nothing.
pub type VcpuEnd = Option<Result<VcpuState, String>>;

/// Runs a vCPU until the VM stops. Every outcome is reported through `exit`; nothing the guest
/// does makes this panic. `snapshot_msrs`: the VM may end for a snapshot (template mode); then
/// the vCPU's state (with these MSRs) is returned.
pub fn run_vcpu(
    mut vcpu: VcpuFd,
    index: u8,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    exit: Arc<ExitState>,
    snapshot_msrs: Option<Arc<Vec<u32>>>,
) -> VcpuEnd {
    let _guard = EndGuard { exit: &exit, index };
    let immediate_exit: *mut u8 = &mut vcpu.get_kvm_run().immediate_exit;
    IMMEDIATE_EXIT.with(|p| p.set(immediate_exit));
    while !exit.is_stopping() {
        let reason = match vcpu.run() {
            Ok(run_exit) => handle_exit(run_exit, &pio, &mmio),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
                None
            }
            Err(e) => Some(ExitReason::Error(format!(
                "vCPU {index}: KVM_RUN failed: {e}"
            ))),
        };
        if let Some(reason) = reason {
            let reason = match reason {
                ExitReason::Error(msg) if msg == INTERNAL_ERROR => {
                    ExitReason::Error(internal_error(&mut vcpu, index))
                }
                r => r,
            };
            tracing::debug!(vcpu = index, "vCPU requests VM exit: {reason}");
            exit.request(reason);
            break;
        }
    }
    let msrs = snapshot_msrs?;
    if exit.reason() != Some(ExitReason::Snapshot) {
        return None;
    }
    Some(stop_for_snapshot(&mut vcpu, index, &msrs))
}

/// Completes the exit in progress without running the guest further (an I/O or MMIO exit is
/// only complete, its instruction retired, after the next KVM_RUN: with `immediate_exit` set
/// KVM finishes it and returns EINTR), then saves the vCPU.
fn stop_for_snapshot(vcpu: &mut VcpuFd, index: u8, msrs: &[u32]) -> Result<VcpuState, String> {
    vcpu.set_kvm_immediate_exit(1);
    let ran = vcpu.run().map(|_| ());
    vcpu.set_kvm_immediate_exit(0);
    match ran {
        Err(e) if e.errno() == libc::EINTR => {}
        Ok(()) => return Err(format!("vCPU {index}: KVM_RUN ran with immediate_exit set")),
        Err(e) => return Err(format!("vCPU {index}: completing its last exit: {e}")),
    }
    save_vcpu(vcpu, msrs).map_err(|e| format!("vCPU {index}: {e}"))
}

const INTERNAL_ERROR: &str = "internal error";

fn internal_error(vcpu: &mut VcpuFd, index: u8) -> String {
    // SAFETY: exit_reason was KVM_EXIT_INTERNAL_ERROR, so `internal` is the active union field.
    let internal = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal };
    let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
    format!(
        "vCPU {index}: KVM internal error (suberror {}) at rip {rip:#x}",
        internal.suberror
    )
}

/// Handles one exit; returns a reason when the VM must end.
fn handle_exit(run_exit: VcpuExit<'_>, pio: &Bus, mmio: &Bus) -> Option<ExitReason> {
    match run_exit {
        VcpuExit::IoIn(port, data) => {
            pio.read(u64::from(port), data);
            None
        }
        VcpuExit::IoOut(port, data) => {
            pio.write(u64::from(port), data);
            None
        }
        VcpuExit::MmioRead(addr, data) => {
            mmio.read(addr, data);
            None
        }
        VcpuExit::MmioWrite(addr, data) => {
            mmio.write(addr, data);
            None
        }
        VcpuExit::Hlt => Some(ExitReason::PowerOff),
        VcpuExit::Shutdown => Some(ExitReason::TripleFault),
        VcpuExit::SystemEvent(kind, _) => Some(match kind {
            KVM_SYSTEM_EVENT_SHUTDOWN => ExitReason::PowerOff,
            KVM_SYSTEM_EVENT_RESET => ExitReason::Reset,
            KVM_SYSTEM_EVENT_CRASH => ExitReason::GuestCrash,
            other => ExitReason::Error(format!("unexpected KVM system event {other}")),
        }),
        VcpuExit::InternalError => Some(ExitReason::Error(INTERNAL_ERROR.to_string())),
        VcpuExit::FailEntry(reason, cpu) => Some(ExitReason::Error(format!(
            "KVM entry failed (hardware reason {reason:#x}) on host CPU {cpu}"
        ))),
        VcpuExit::Intr | VcpuExit::IrqWindowOpen => None,
        other => Some(ExitReason::Error(format!("unexpected vCPU exit {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_vcpu_thread_stops_the_vm() {
        let exit = Arc::new(ExitState::new());
        let e = exit.clone();
        let t = std::thread::spawn(move || {
            let _guard = EndGuard { exit: &e, index: 3 };
            panic!("simulated vCPU bug");
        });
        assert!(t.join().is_err());
        assert_eq!(
            exit.reason(),
            Some(ExitReason::Error("vCPU 3 thread ended unexpectedly".into()))
        );
    }

    #[test]
    fn exits_map_to_reasons() {
        let pio = Bus::new("pio");
        let mmio = Bus::new("mmio");
        let mut buf = [0u8; 1];
        assert_eq!(
            handle_exit(VcpuExit::IoIn(0x80, &mut buf), &pio, &mmio),
            None
        );
        assert_eq!(buf, [0xff]);
        assert_eq!(handle_exit(VcpuExit::IoOut(0x80, &[1]), &pio, &mmio), None);
        let mut m = [0u8; 4];
        assert_eq!(
            handle_exit(VcpuExit::MmioRead(0xd000_0000, &mut m), &pio, &mmio),
            None
        );
        assert_eq!(m, [0xff; 4]);
        assert_eq!(
            handle_exit(VcpuExit::Shutdown, &pio, &mmio),
            Some(ExitReason::TripleFault)
        );
        assert_eq!(
            handle_exit(
                VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, &[]),
                &pio,
                &mmio
            ),
            Some(ExitReason::Reset)
        );
        assert_eq!(
            handle_exit(
                VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, &[]),
                &pio,
                &mmio
            ),
            Some(ExitReason::PowerOff)
        );
        assert!(matches!(
            handle_exit(VcpuExit::FailEntry(7, 1), &pio, &mmio),
            Some(ExitReason::Error(_))
        ));
        assert_eq!(handle_exit(VcpuExit::Intr, &pio, &mmio), None);
    }
}
