//! The VMM: builds a VM from a [`VmConfig`], runs its vCPUs and reports why it ended.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::{Kvm, VcpuFd};
use vmm_sys_util::signal::Killable;

use crate::config::{ConsoleConfig, VmConfig};
use crate::device_manager::{create_legacy_devices, LegacyOptions, VirtioDevices};
use crate::devices::bus::lock;
use crate::devices::legacy::serial::console_output;
use crate::devices::legacy::SerialDevice;
use crate::devices::virtio::mmio::TransportState;
use crate::devices::virtio::vsock::unix::UdsCleanup;
use crate::devices::virtio::{MmioTransport, TYPE_BLOCK};
use crate::devices::Bus;
use crate::error::{Error, Result};
use crate::exit::{ExitReason, ExitState};
use crate::kvm::cpuid::VcpuTopology;
use crate::kvm::memory::{create_guest_memory, register_guest_memory, GuestMem, GuestRange};
use crate::kvm::vcpu::{
    configure_vcpu, create_vcpu, install_kick_handler, kick_signal, run_vcpu, VcpuEnd,
};
use crate::kvm::vcpu_state::saved_msr_indices;
use crate::kvm::vm::{create_vm, Vm};
use crate::loader::{load_guest, open_boot_files, retained_initrd};
use crate::seccomp::{dump, spawner, Mode, RuleOptions, SeccompFilters, ThreadKind};
use crate::snapshot::restore;
use crate::snapshot::save::{SaveInputs, SnapshotTarget};

/// How long to keep kicking vCPU threads before giving up on joining them.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A configured VM, ready to run.
pub struct Vmm {
    // Field order is drop order: vCPUs and devices before the VM, the VM before memory.
    vcpus: Vec<VcpuFd>,
    serial: Arc<Mutex<SerialDevice>>,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    transports: Vec<Arc<Mutex<MmioTransport>>>,
    /// A restored VM's device states, applied in [`Vmm::run`] (activating a device starts its
    /// thread, which must come from the seccomp spawner).
    restore: Option<Vec<TransportState>>,
    /// Template mode (`snapshot_to`).
    snapshot: Option<SnapshotPlan>,
    uds: Option<UdsCleanup>,
    exit: Arc<ExitState>,
    seccomp: Arc<SeccompFilters>,
    vm: Vm,
    _kvm: Kvm,
    mem: GuestMem,
}

/// What template mode needs when the guest asks for its snapshot.
struct SnapshotPlan {
    target: SnapshotTarget,
    /// The MSRs each vCPU saves (KVM's list, read before the filters are in place).
    msrs: Arc<Vec<u32>>,
    /// The retained initrd, left out of the snapshot.
    release: Option<GuestRange>,
}

impl std::fmt::Debug for Vmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vmm")
            .field("vcpus", &self.vcpus.len())
            .finish()
    }
}

impl Vmm {
    /// Checks the configuration and the input files, then creates and sets up the VM: booted
    /// from the kernel, or restored from `restore_from`. Input errors are reported before KVM
    /// is touched. Makes the process non-dumpable and compiles the seccomp filters
    /// [`Vmm::run`] installs (see [`crate::seccomp`]).
    pub fn new(mut config: VmConfig) -> Result<Vmm> {
        let started = std::time::Instant::now();
        config.validate()?;
        dump::set_not_dumpable().map_err(Error::Dumpable)?;
        let seccomp = seccomp_filters(&config)?;
        let compiled = started.elapsed();
        let (snapshot, restore_memory) = match &config.restore_from {
            Some(dir) => {
                let (snap, memory) = restore::open(dir)?;
                (Some(snap), Some(memory))
            }
            None => (None, None),
        };
        let files = match snapshot {
            None => Some(open_boot_files(&config)?),
            Some(_) => None,
        };
        let release = files.as_ref().and_then(|f| retained_initrd(&config, f));
        let opened = started.elapsed();
        let virtio = VirtioDevices::open(&config, release)?;
        tracing::debug!(
            seccomp_ms = compiled.as_millis(),
            inputs_ms = (opened - compiled).as_millis(),
            devices_ms = (started.elapsed() - opened).as_millis(),
            "filters compiled, inputs and devices opened"
        );
        virtio.announce(&mut config.cmdline);
        if let Some(snap) = &snapshot {
            snap.check_fits(config.vcpus, config.mem_bytes(), virtio.slots().count())
                .map_err(crate::snapshot::SnapshotError::Mismatch)?;
        }
        let target = match &config.snapshot_to {
            Some(dir) => Some(SnapshotTarget::create(dir)?),
            None => None,
        };
        let console =
            console_output(&config.console, &config.console_limits).map_err(|source| {
                Error::Console {
                    path: match &config.console {
                        ConsoleConfig::File(p) => p.clone(),
                        _ => "stdout".into(),
                    },
                    source,
                }
            })?;

        let kvm = crate::kvm::open_kvm()?;
        let vm = create_vm(&kvm, config.vcpus)?;
        let mem = match restore_memory {
            Some(memory) => restore::guest_memory(memory, config.mem_bytes())?,
            None => create_guest_memory(config.mem_bytes())?,
        };
        register_guest_memory(&vm.fd, &mem)?;
        let boot = match (&snapshot, files) {
            (Some(_), _) => None,
            (None, Some(files)) => Some(load_guest(&config, files, &mem)?),
            (None, None) => None,
        };

        let exit = Arc::new(ExitState::new());
        let legacy = LegacyOptions {
            serial: snapshot.as_ref().map(|s| &s.serial),
            snapshots: target.is_some(),
        };
        let (pio, serial) = create_legacy_devices(&vm, console, exit.clone(), legacy)?;
        let registered = virtio.register(&vm, &mem)?;

        let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
        for index in 0..config.vcpus {
            let vcpu = create_vcpu(&vm.fd, index)?;
            let topo = VcpuTopology {
                index,
                count: config.vcpus,
            };
            let boot_entry = if index == 0 { boot } else { None };
            configure_vcpu(
                &vcpu,
                topo,
                &vm.supported_cpuid,
                vm.tsc_deadline,
                boot_entry,
            )?;
            vcpus.push(vcpu);
        }
        if let Some(snap) = &snapshot {
            restore::kvm_state(&kvm, &vm, &vcpus, snap)?;
        }
        let snapshot_plan = match target {
            Some(target) => Some(SnapshotPlan {
                target,
                msrs: Arc::new(saved_msr_indices(&kvm)?),
                release,
            }),
            None => None,
        };
        match &boot {
            Some(b) => tracing::info!(
                "VM ready in {} ms: {} vCPUs, {} MiB, entry {:#x}",
                started.elapsed().as_millis(),
                config.vcpus,
                config.mem_mib,
                b.entry
            ),
            None => tracing::info!(
                "VM ready in {} ms: {} vCPUs, {} MiB, restored",
                started.elapsed().as_millis(),
                config.vcpus,
                config.mem_mib
            ),
        }
        Ok(Vmm {
            vcpus,
            serial,
            pio: Arc::new(pio),
            mmio: Arc::new(registered.mmio),
            transports: registered.transports,
            restore: snapshot.map(|s| s.devices),
            snapshot: snapshot_plan,
            uds: registered.uds,
            exit,
            seccomp: Arc::new(seccomp),
            vm,
            _kvm: kvm,
            mem,
        })
    }

    /// The VM's exit state: call [`ExitState::request`] on it (from any thread) to stop the
    /// VM, e.g. on SIGTERM.
    pub fn exit_state(&self) -> Arc<ExitState> {
        self.exit.clone()
    }

    /// The seccomp filters of the VMM's threads (e.g. for an embedder's own threads:
    /// `sandpod-vmm`'s signal thread installs [`ThreadKind::Main`]'s).
    pub fn seccomp(&self) -> Arc<SeccompFilters> {
        self.seccomp.clone()
    }

    /// Debug only: once the filters are installed, a thread of `kind` makes a forbidden
    /// syscall (the process dies of SIGSYS). Call before [`Vmm::run`].
    pub fn set_debug_seccomp_violation(&mut self, kind: Option<ThreadKind>) {
        match Arc::get_mut(&mut self.seccomp) {
            Some(filters) => filters.set_debug_violation(kind),
            None => tracing::warn!("--debug-seccomp-violation ignored: call it before seccomp()"),
        }
    }

    /// Runs the VM until the guest or [`ExitState::request`] ends it.
    ///
    /// Every thread installs its seccomp filter before the guest's first instruction: the
    /// spawner (device threads) and the vCPU threads at start, the calling thread once they
    /// have; then the vCPUs are let into the guest. The calling thread keeps its filter
    /// (and the process stays non-dumpable) after this returns: the VMM is meant to be a
    /// process of its own, as `sandpod-vmm` is.
    pub fn run(&mut self) -> Result<ExitReason> {
        install_kick_handler()?;
        let spawner = spawner::start(self.seccomp.clone())?;
        if let Some(states) = self.restore.take() {
            // Restarting the devices the guest had started starts their threads: through the
            // spawner, as a vCPU's activation would.
            spawner::enter(spawner.clone());
            let restored = restore::devices(&self.transports, &states);
            spawner::leave();
            restored?;
        }
        let snapshot_msrs = self.snapshot.as_ref().map(|s| s.msrs.clone());
        let gate = Arc::new(Gate::default());
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let mut threads: Vec<JoinHandle<VcpuEnd>> = Vec::new();
        let count = self.vcpus.len();
        for (index, vcpu) in (0u8..).zip(self.vcpus.drain(..)) {
            let (pio, mmio, exit) = (self.pio.clone(), self.mmio.clone(), self.exit.clone());
            let msrs = snapshot_msrs.clone();
            let (seccomp, spawner, vcpu_gate, ready) = (
                self.seccomp.clone(),
                spawner.clone(),
                gate.clone(),
                ready_tx.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || {
                    if let Err(e) = seccomp.apply(ThreadKind::Vcpu) {
                        // Sets the stopping flag: the vCPU never enters the guest.
                        exit.request(ExitReason::Error(e.to_string()));
                        return None;
                    }
                    spawner::enter(spawner);
                    let _ = ready.send(());
                    drop(ready);
                    vcpu_gate.wait();
                    if index == 0 {
                        seccomp.debug_violation(ThreadKind::Vcpu);
                    }
                    run_vcpu(vcpu, index, pio, mmio, exit, msrs)
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    self.exit.request(ExitReason::Stopped);
                    gate.open();
                    stop_threads(threads);
                    return Err(Error::Thread(e));
                }
            }
        }
        drop((ready_tx, spawner));
        // Every vCPU thread has its filter (or is gone) ...
        let ready = ready_rx.iter().take(count).count();
        if ready < count {
            self.exit
                .request(ExitReason::Error("a vCPU thread died at start".into()));
        }
        // ... then this thread.
        if let Err(e) = self.seccomp.apply(ThreadKind::Main) {
            self.exit.request(ExitReason::Error(e.to_string()));
        }
        gate.open();
        self.seccomp.debug_violation(ThreadKind::Main);
        let mut reason = self.exit.wait();
        tracing::info!("VM stopping: {reason}");
        let ends = stop_threads(threads);
        if reason == ExitReason::Snapshot {
            reason = self.save_snapshot(ends);
        }
        lock(&self.serial).flush();
        tracing::debug!(
            "unhandled guest accesses: {} port I/O, {} MMIO",
            self.pio.unknown_accesses(),
            self.mmio.unknown_accesses()
        );
        Ok(reason)
    }
}

impl Vmm {
    /// For a process that exits right after [`Vmm::run`]: removes the vsock socket file,
    /// stops the block devices in order (their threads finish the requests they hold and
    /// report what they served) and leaves the rest to the process's exit. The other devices'
    /// orderly reset (joining their threads, taking the rings back from each vhost-user back
    /// end, which costs round trips to virtiofsd) is skipped: the kernel closes every
    /// descriptor and unmaps the memory, and a back end ends when its socket closes. Dropping
    /// the Vmm instead does all of that in order (for an embedder that goes on).
    pub fn abandon(mut self) {
        drop(self.uds.take());
        for t in &self.transports {
            let mut t = lock(t);
            if t.device_type() == TYPE_BLOCK {
                t.reset();
            }
        }
        std::mem::forget(self);
    }

    /// Template mode: saves the VM the guest asked to be saved (every vCPU has stopped).
    fn save_snapshot(&self, ends: Vec<VcpuEnd>) -> ExitReason {
        let Some(plan) = &self.snapshot else {
            return ExitReason::Error("a snapshot without snapshot_to".into());
        };
        let inputs = SaveInputs {
            vm: &self.vm.fd,
            mem: &self.mem,
            transports: &self.transports,
            serial: &self.serial,
            release: plan.release,
        };
        match crate::snapshot::save::save(&plan.target, &inputs, ends) {
            Ok(()) => ExitReason::Snapshot,
            Err(e) => ExitReason::Error(format!("saving the snapshot: {e}")),
        }
    }
}

/// The filters for `config` (none with `no_seccomp`, which is logged).
fn seccomp_filters(config: &VmConfig) -> Result<SeccompFilters> {
    if config.no_seccomp {
        tracing::warn!("seccomp filters disabled (no_seccomp / --no-seccomp): debug only");
        return Ok(SeccompFilters::disabled());
    }
    let mode = Mode::from_env();
    if mode == Mode::Log {
        tracing::warn!(
            "seccomp violations are only logged ({}=log)",
            crate::seccomp::MODE_ENV
        );
    }
    let opts = RuleOptions {
        console_file: matches!(config.console, ConsoleConfig::File(_)),
        snapshot: config.snapshot_to.is_some(),
    };
    Ok(SeccompFilters::new(true, opts, mode)?)
}

/// Holds the vCPU threads until every filter is installed.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cond: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }

    fn wait(&self) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        drop(self.cond.wait_while(open, |o| !*o));
    }
}

/// Kicks vCPU threads out of KVM_RUN until they have all returned (or the timeout passes).
/// Returns what each returned, in thread order (`None` for one that panicked or did not stop).
fn stop_threads(threads: Vec<JoinHandle<VcpuEnd>>) -> Vec<VcpuEnd> {
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut ends: Vec<VcpuEnd> = threads.iter().map(|_| None).collect();
    let mut pending: Vec<(usize, JoinHandle<VcpuEnd>)> = threads.into_iter().enumerate().collect();
    while !pending.is_empty() {
        let (done, running): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(_, t)| t.is_finished());
        for (i, t) in done {
            match t.join() {
                Ok(end) => ends[i] = end,
                Err(_) => tracing::error!("a vCPU thread panicked"),
            }
        }
        pending = running;
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            tracing::warn!(
                "{} vCPU thread(s) did not stop; leaving them",
                pending.len()
            );
            break;
        }
        for (_, t) in &pending {
            let _ = t.kill(kick_signal());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    ends
}
