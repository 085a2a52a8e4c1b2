//! The VMM: builds a VM from a [`VmConfig`], runs its vCPUs and reports why it ended.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::{Kvm, VcpuFd};
use vmm_sys_util::signal::Killable;

use crate::config::{ConsoleConfig, VmConfig};
use crate::device_manager::{create_legacy_devices, VirtioDevices};
use crate::devices::bus::lock;
use crate::devices::legacy::serial::console_output;
use crate::devices::legacy::SerialDevice;
use crate::devices::virtio::vsock::unix::UdsCleanup;
use crate::devices::Bus;
use crate::error::{Error, Result};
use crate::exit::{ExitReason, ExitState};
use crate::kvm::cpuid::VcpuTopology;
use crate::kvm::memory::{create_guest_memory, register_guest_memory, GuestMem};
use crate::kvm::vcpu::{configure_vcpu, create_vcpu, install_kick_handler, kick_signal, run_vcpu};
use crate::kvm::vm::{create_vm, Vm};
use crate::loader::{load_guest, open_boot_files};

/// How long to keep kicking vCPU threads before giving up on joining them.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A configured VM, ready to run.
pub struct Vmm {
    // Field order is drop order: vCPUs and devices before the VM, the VM before memory.
    vcpus: Vec<VcpuFd>,
    serial: Arc<Mutex<SerialDevice>>,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    _uds: Option<UdsCleanup>,
    exit: Arc<ExitState>,
    _vm: Vm,
    _kvm: Kvm,
    _mem: GuestMem,
}

impl std::fmt::Debug for Vmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vmm")
            .field("vcpus", &self.vcpus.len())
            .finish()
    }
}

impl Vmm {
    /// Checks the configuration and the input files, then creates and sets up the VM. Input
    /// errors are reported before KVM is touched.
    pub fn new(mut config: VmConfig) -> Result<Vmm> {
        config.validate()?;
        let files = open_boot_files(&config)?;
        let virtio = VirtioDevices::open(&config)?;
        virtio.announce(&mut config.cmdline);
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
        let mem = create_guest_memory(config.mem_bytes())?;
        register_guest_memory(&vm.fd, &mem)?;
        let boot = load_guest(&config, files, &mem)?;

        let exit = Arc::new(ExitState::new());
        let (pio, serial) = create_legacy_devices(&vm, console, exit.clone())?;
        let (mmio, uds) = virtio.register(&vm, &mem)?;

        let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
        for index in 0..config.vcpus {
            let vcpu = create_vcpu(&vm.fd, index)?;
            let topo = VcpuTopology {
                index,
                count: config.vcpus,
            };
            let boot_entry = (index == 0).then_some(boot);
            configure_vcpu(
                &vcpu,
                topo,
                &vm.supported_cpuid,
                vm.tsc_deadline,
                boot_entry,
            )?;
            vcpus.push(vcpu);
        }
        tracing::info!(
            "VM ready: {} vCPUs, {} MiB, entry {:#x}",
            config.vcpus,
            config.mem_mib,
            boot.entry
        );
        Ok(Vmm {
            vcpus,
            serial,
            pio: Arc::new(pio),
            mmio: Arc::new(mmio),
            _uds: uds,
            exit,
            _vm: vm,
            _kvm: kvm,
            _mem: mem,
        })
    }

    /// The VM's exit state: call [`ExitState::request`] on it (from any thread) to stop the
    /// VM, e.g. on SIGTERM.
    pub fn exit_state(&self) -> Arc<ExitState> {
        self.exit.clone()
    }

    /// Runs the VM until the guest or [`ExitState::request`] ends it.
    pub fn run(mut self) -> Result<ExitReason> {
        install_kick_handler()?;
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        for (index, vcpu) in (0u8..).zip(self.vcpus.drain(..)) {
            let (pio, mmio, exit) = (self.pio.clone(), self.mmio.clone(), self.exit.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || run_vcpu(vcpu, index, pio, mmio, exit));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    self.exit.request(ExitReason::Stopped);
                    stop_threads(threads);
                    return Err(Error::Thread(e));
                }
            }
        }
        let reason = self.exit.wait();
        tracing::info!("VM stopping: {reason}");
        stop_threads(threads);
        lock(&self.serial).flush();
        tracing::debug!(
            "unhandled guest accesses: {} port I/O, {} MMIO",
            self.pio.unknown_accesses(),
            self.mmio.unknown_accesses()
        );
        Ok(reason)
    }
}

/// Kicks vCPU threads out of KVM_RUN until they have all returned (or the timeout passes).
fn stop_threads(threads: Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut pending = threads;
    while !pending.is_empty() {
        let (done, running): (Vec<_>, Vec<_>) = pending.into_iter().partition(|t| t.is_finished());
        for t in done {
            if t.join().is_err() {
                tracing::error!("a vCPU thread panicked");
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
        for t in &pending {
            let _ = t.kill(kick_signal());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
