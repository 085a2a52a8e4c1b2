//! The VMM: builds a VM from a [`VmConfig`], runs its vCPUs and reports why it ended.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::{Kvm, VcpuFd};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::Killable;

use crate::config::{ConsoleConfig, VmConfig};
use crate::devices::bus::lock;
use crate::devices::legacy::i8042::{I8042, I8042_KBD_IRQ, I8042_LEN, I8042_PORT};
use crate::devices::legacy::serial::{console_output, COM1_IRQ, COM1_LEN, COM1_PORT};
use crate::devices::legacy::{EventFdTrigger, SerialDevice};
use crate::devices::power_port::{PowerPort, POWER_PORT, POWER_PORT_LEN};
use crate::devices::virtio::block::disk::DiskImage;
use crate::devices::virtio::block::Block;
use crate::devices::virtio::fs::Fs;
use crate::devices::virtio::vsock::unix::{bind_listener, UdsCleanup};
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::{Interrupt, MmioTransport, VirtioDevice, MMIO_SIZE};
use crate::devices::Bus;
use crate::error::{Error, Result};
use crate::exit::{ExitReason, ExitState};
use crate::kvm::cpuid::VcpuTopology;
use crate::kvm::memory::{create_guest_memory, register_guest_memory, GuestMem};
use crate::kvm::vcpu::{configure_vcpu, create_vcpu, install_kick_handler, kick_signal, run_vcpu};
use crate::kvm::vm::{create_vm, Vm};
use crate::loader::{load_guest, open_boot_files};

/// Where virtio-mmio devices go: 4 KiB windows from here, in the 32-bit MMIO gap.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// First virtio IRQ (GSI); 4 is COM1, 1 the i8042.
pub const VIRTIO_FIRST_IRQ: u32 = 5;
/// QueueNotify offset in a virtio-mmio window.
const QUEUE_NOTIFY: u64 = crate::devices::virtio::mmio::QUEUE_NOTIFY;

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
        let VirtioDevices {
            devices: virtio,
            uds,
        } = virtio_devices(&config)?;
        for (i, _) in virtio.iter().enumerate() {
            let (base, irq) = virtio_slot(i);
            config
                .cmdline
                .push_str(&format!(" virtio_mmio.device=4K@{base:#x}:{irq}"));
        }
        let console = console_output(&config.console).map_err(|source| Error::Console {
            path: match &config.console {
                ConsoleConfig::File(p) => p.clone(),
                _ => "stdout".into(),
            },
            source,
        })?;

        let kvm = crate::kvm::open_kvm()?;
        let vm = create_vm(&kvm, config.vcpus)?;
        let mem = create_guest_memory(config.mem_bytes())?;
        register_guest_memory(&vm.fd, &mem)?;
        let boot = load_guest(&config, files, &mem)?;

        let exit = Arc::new(ExitState::new());
        let (pio, serial) = create_devices(&vm, console, exit.clone())?;
        let mmio = create_virtio_devices(&vm, &mem, virtio)?;

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
        for (index, vcpu) in self.vcpus.drain(..).enumerate() {
            let (pio, mmio, exit) = (self.pio.clone(), self.mmio.clone(), self.exit.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || run_vcpu(vcpu, index as u8, pio, mmio, exit));
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

fn irq_eventfd(vm: &Vm, gsi: u32, what: &'static str) -> Result<EventFd> {
    let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::Device { what, source })?;
    vm.fd.register_irqfd(&evt, gsi).map_err(|e| Error::Device {
        what,
        source: e.into(),
    })?;
    Ok(evt)
}

/// The configured virtio devices, in slot order, and what must live as long as the VM.
struct VirtioDevices {
    devices: Vec<Box<dyn VirtioDevice>>,
    /// Removes the vsock socket.
    uds: Option<UdsCleanup>,
}

/// Opens and checks (before KVM is touched) the configured virtio devices: vsock, then the
/// disks.
fn virtio_devices(config: &VmConfig) -> Result<VirtioDevices> {
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    let mut uds = None;
    if let Some(v) = &config.vsock {
        let (listener, cleanup) = bind_listener(&v.uds_path).map_err(|source| Error::Device {
            what: "the vsock socket",
            source: std::io::Error::new(
                source.kind(),
                format!("{}: {source}", v.uds_path.display()),
            ),
        })?;
        devices.push(Box::new(Vsock::new(
            v.guest_cid,
            v.uds_path.clone(),
            listener,
        )));
        uds = Some(cleanup);
    }
    for disk in &config.disks {
        let image = DiskImage::open(disk).map_err(|source| Error::Disk {
            path: disk.path.clone(),
            source,
        })?;
        devices.push(Box::new(Block::new(image)));
    }
    for fs in &config.fs {
        let dev = Fs::new(fs).map_err(|source| Error::Fs {
            tag: fs.tag.clone(),
            source,
        })?;
        devices.push(Box::new(dev));
    }
    Ok(VirtioDevices { devices, uds })
}

/// MMIO base and IRQ of the `index`th virtio device.
fn virtio_slot(index: usize) -> (u64, u32) {
    (
        VIRTIO_MMIO_BASE + index as u64 * MMIO_SIZE,
        VIRTIO_FIRST_IRQ + index as u32,
    )
}

/// Puts each device behind a virtio-mmio transport on a new MMIO bus, with an irqfd for its
/// interrupt and an ioeventfd per queue on QueueNotify (datamatch = queue index).
fn create_virtio_devices(
    vm: &Vm,
    mem: &GuestMem,
    devices: Vec<Box<dyn VirtioDevice>>,
) -> Result<Bus> {
    let mut mmio = Bus::new("mmio");
    let what = "virtio-mmio device";
    let err = |e: kvm_ioctls::Error| Error::Device {
        what,
        source: e.into(),
    };
    for (i, dev) in devices.into_iter().enumerate() {
        let (base, irq) = virtio_slot(i);
        let interrupt = Arc::new(Interrupt::new(irq_eventfd(vm, irq, what)?));
        let mut queue_evts = Vec::new();
        for q in 0..dev.queue_max_sizes().len() {
            let evt = EventFd::new(libc::EFD_NONBLOCK)
                .map_err(|source| Error::Device { what, source })?;
            let addr = kvm_ioctls::IoEventAddress::Mmio(base + QUEUE_NOTIFY);
            vm.fd.register_ioevent(&evt, &addr, q as u32).map_err(err)?;
            queue_evts.push(evt);
        }
        let transport = MmioTransport::new(dev, mem.clone(), interrupt, queue_evts);
        mmio.insert(Arc::new(Mutex::new(transport)), base, MMIO_SIZE)
            .map_err(|e| Error::Device {
                what,
                source: std::io::Error::other(e),
            })?;
        tracing::debug!("virtio-mmio device {i} at {base:#x}, IRQ {irq}");
    }
    Ok(mmio)
}

fn create_devices(
    vm: &Vm,
    console: crate::devices::legacy::serial::ConsoleOut,
    exit: Arc<ExitState>,
) -> Result<(Bus, Arc<Mutex<SerialDevice>>)> {
    let mut pio = Bus::new("pio");
    let bus_err = |what| {
        move |e: crate::devices::BusError| Error::Device {
            what,
            source: std::io::Error::other(e),
        }
    };

    let serial_evt = irq_eventfd(vm, COM1_IRQ, "serial port IRQ")?;
    let serial = Arc::new(Mutex::new(SerialDevice::new(
        EventFdTrigger(serial_evt),
        console,
    )));
    pio.insert(serial.clone(), COM1_PORT, COM1_LEN)
        .map_err(bus_err("serial port"))?;

    let kbd_evt = irq_eventfd(vm, I8042_KBD_IRQ, "i8042 IRQ")?;
    let reset_exit = exit.clone();
    let i8042 = I8042::new(
        Box::new(move || {
            reset_exit.request(ExitReason::Reset);
        }),
        Some(kbd_evt),
    );
    pio.insert(Arc::new(Mutex::new(i8042)), I8042_PORT, I8042_LEN)
        .map_err(bus_err("i8042"))?;

    pio.insert(
        Arc::new(Mutex::new(PowerPort::new(exit))),
        POWER_PORT,
        POWER_PORT_LEN,
    )
    .map_err(bus_err("power port"))?;
    Ok((pio, serial))
}
