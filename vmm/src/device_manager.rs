//! Where the devices go and how they reach the guest: the IRQ budget, the virtio-mmio slots
//! (a 4 KiB MMIO window and an IRQ each) and their announcement on the kernel command line,
//! and the KVM wiring of every device (an irqfd per IRQ, an ioeventfd per virtio queue).
//! Firecracker's `device_manager` (`mmio.rs`, `legacy.rs`) is the model.
//!
//! The IRQ (GSI) budget: the in-kernel IOAPIC has [`IOAPIC_PINS`] (24) pins, all described in
//! the MP table.
//!
//! | IRQ | device |
//! | --- | --- |
//! | 1 ([`I8042_KBD_IRQ`]) | i8042 (the guest's reset goes through it) |
//! | 4 ([`COM1_IRQ`]) | COM1 |
//! | 5 to 23 ([`VIRTIO_FIRST_IRQ`] to [`VIRTIO_LAST_IRQ`]) | virtio-mmio slots 0 to 18, in order: vsock, the disks, the virtio-fs devices, the net devices |
//!
//! The configuration's limits ([`MAX_DISKS`], [`MAX_FS`], [`MAX_NET`]) are checked against it
//! at compile time; [`VirtioDevices::open`] checks it again.

use std::sync::{Arc, Mutex};

use kvm_ioctls::IoEventAddress;
use vmm_sys_util::eventfd::EventFd;

use crate::arch::x86_64::layout::{IOAPIC_START, MMIO_GAP_START};
use crate::arch::x86_64::mptable::IOAPIC_PINS;
use crate::config::{ConfigError, NetConfig, NetConfigError, VmConfig, MAX_DISKS, MAX_FS, MAX_NET};
use crate::devices::legacy::i8042::{I8042, I8042_KBD_IRQ, I8042_LEN, I8042_PORT};
use crate::devices::legacy::serial::{ConsoleOut, SavedSerial, COM1_IRQ, COM1_LEN, COM1_PORT};
use crate::devices::legacy::{EventFdTrigger, SerialDevice};
use crate::devices::power_port::{PowerPort, POWER_PORT, POWER_PORT_LEN};
use crate::devices::virtio::block::disk::DiskImage;
use crate::devices::virtio::block::Block;
use crate::devices::virtio::fs::Fs;
use crate::devices::virtio::mmio::QUEUE_NOTIFY;
use crate::devices::virtio::net::tap::Tap;
use crate::devices::virtio::net::Net;
use crate::devices::virtio::vsock::unix::{bind_listener, UdsCleanup};
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::{Interrupt, MmioTransport, VirtioDevice, MMIO_SIZE};
use crate::devices::{Bus, BusError};
use crate::error::{Error, Result};
use crate::exit::{ExitReason, ExitState};
use crate::kvm::memory::GuestMem;
use crate::kvm::memory::GuestRange;
use crate::kvm::vm::Vm;

/// Where virtio-mmio windows start: 4 KiB per slot from here, in the 32-bit MMIO gap.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// IRQ (GSI) of virtio slot 0.
pub const VIRTIO_FIRST_IRQ: u32 = 5;
/// IRQ of the last virtio slot: the IOAPIC's last pin.
pub const VIRTIO_LAST_IRQ: u32 = IOAPIC_PINS as u32 - 1;
/// Most virtio devices per VM: one IRQ each.
pub const MAX_VIRTIO_DEVICES: usize = (VIRTIO_LAST_IRQ - VIRTIO_FIRST_IRQ + 1) as usize;

const _: () = assert!(I8042_KBD_IRQ < VIRTIO_FIRST_IRQ && COM1_IRQ < VIRTIO_FIRST_IRQ);
const _: () = assert!(I8042_KBD_IRQ != COM1_IRQ);
// vsock, the disks, the virtio-fs and the net devices all fit.
const _: () = assert!(1 + MAX_DISKS + MAX_FS + MAX_NET <= MAX_VIRTIO_DEVICES);
// Every window lies in the MMIO gap, below the IOAPIC.
const _: () = assert!(VIRTIO_MMIO_BASE >= MMIO_GAP_START);
const _: () = assert!(VIRTIO_MMIO_BASE + MAX_VIRTIO_DEVICES as u64 * MMIO_SIZE <= IOAPIC_START);

/// A virtio-mmio device's place: its MMIO window and its IRQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioSlot {
    /// Base address of the window ([`MMIO_SIZE`] bytes).
    pub base: u64,
    /// IRQ (GSI).
    pub irq: u32,
}

impl MmioSlot {
    /// Slot `index`; `None` past the IRQ budget.
    pub fn nth(index: usize) -> Option<MmioSlot> {
        if index >= MAX_VIRTIO_DEVICES {
            return None;
        }
        let n = u32::try_from(index).ok()?;
        Some(MmioSlot {
            base: VIRTIO_MMIO_BASE + u64::from(n) * MMIO_SIZE,
            irq: VIRTIO_FIRST_IRQ + n,
        })
    }

    /// The kernel command-line parameter that tells the guest about the slot (the guest
    /// kernel needs `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`).
    pub fn cmdline_param(&self) -> String {
        format!(
            "virtio_mmio.device={}K@{:#x}:{}",
            MMIO_SIZE >> 10,
            self.base,
            self.irq
        )
    }
}

/// The configured virtio devices in their slots (slot order = configuration order: vsock,
/// the disks, the virtio-fs devices, the net devices), and what must live as long as the VM.
pub struct VirtioDevices {
    slots: Vec<(MmioSlot, Box<dyn VirtioDevice>)>,
    /// Removes the vsock socket.
    uds: Option<UdsCleanup>,
}

impl VirtioDevices {
    /// Opens and checks the configured devices (before KVM is touched) and gives each a slot.
    /// `release`: guest memory the vsock device gives back to the host once the guest's first
    /// listener answers (the retained initrd: see [`crate::loader::retained_initrd`]).
    pub fn open(config: &VmConfig, release: Option<GuestRange>) -> Result<VirtioDevices> {
        let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
        let mut uds = None;
        if let Some(v) = &config.vsock {
            let (listener, cleanup) =
                bind_listener(&v.uds_path).map_err(|source| Error::Device {
                    what: "the vsock socket",
                    source: std::io::Error::new(
                        source.kind(),
                        format!("{}: {source}", v.uds_path.display()),
                    ),
                })?;
            devices.push(Box::new(
                Vsock::new(v.guest_cid, v.uds_path.clone(), listener).releasing(release),
            ));
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
        for net in &config.net {
            devices.push(Box::new(open_net(net)?));
        }
        let mut placed = VirtioDevices::place(devices)?;
        placed.uds = uds;
        Ok(placed)
    }

    /// Gives `devices` slots 0, 1, … in order; an error past the IRQ budget.
    pub fn place(devices: Vec<Box<dyn VirtioDevice>>) -> Result<VirtioDevices> {
        let count = devices.len();
        let slots = devices
            .into_iter()
            .enumerate()
            .map(|(i, dev)| Some((MmioSlot::nth(i)?, dev)))
            .collect::<Option<Vec<_>>>()
            .ok_or(Error::TooManyDevices {
                count,
                max: MAX_VIRTIO_DEVICES,
            })?;
        Ok(VirtioDevices { slots, uds: None })
    }

    /// The slots taken, in order.
    pub fn slots(&self) -> impl Iterator<Item = MmioSlot> + '_ {
        self.slots.iter().map(|(slot, _)| *slot)
    }

    /// Appends each device's announcement to the kernel command line.
    pub fn announce(&self, cmdline: &mut String) {
        for slot in self.slots() {
            cmdline.push(' ');
            cmdline.push_str(&slot.cmdline_param());
        }
    }

    /// Puts each device behind a virtio-mmio transport on a new MMIO bus, with an irqfd for
    /// its interrupt and an ioeventfd per queue on QueueNotify (datamatch = queue index).
    /// Returns the bus, the transports (slot order) and what must live as long as the VM.
    pub fn register(self, vm: &Vm, mem: &GuestMem) -> Result<Registered> {
        let mut mmio = Bus::new("mmio");
        let mut transports = Vec::new();
        let what = "virtio-mmio device";
        let err = |e: kvm_ioctls::Error| Error::Device {
            what,
            source: e.into(),
        };
        for (i, (slot, dev)) in self.slots.into_iter().enumerate() {
            let interrupt = Arc::new(Interrupt::new(irq_eventfd(vm, slot.irq, what)?));
            let mut queue_evts = Vec::new();
            for index in (0u32..).take(dev.queue_max_sizes().len()) {
                let evt = EventFd::new(libc::EFD_NONBLOCK)
                    .map_err(|source| Error::Device { what, source })?;
                let addr = IoEventAddress::Mmio(slot.base + QUEUE_NOTIFY);
                vm.fd.register_ioevent(&evt, &addr, index).map_err(err)?;
                queue_evts.push(evt);
            }
            let transport = Arc::new(Mutex::new(MmioTransport::new(
                dev,
                mem.clone(),
                interrupt,
                queue_evts,
            )));
            mmio.insert(transport.clone(), slot.base, MMIO_SIZE)
                .map_err(bus_err(what))?;
            transports.push(transport);
            tracing::debug!(
                "virtio-mmio device {i} at {:#x}, IRQ {}",
                slot.base,
                slot.irq
            );
        }
        Ok(Registered {
            mmio,
            transports,
            uds: self.uds,
        })
    }
}

/// The virtio devices on their bus.
pub struct Registered {
    /// The MMIO bus holding every transport.
    pub mmio: Bus,
    /// The transports in slot order (snapshots save and restore them).
    pub transports: Vec<Arc<Mutex<MmioTransport>>>,
    /// Removes the vsock socket.
    pub uds: Option<UdsCleanup>,
}

/// A net device on the configured tap (opened by name, or the inherited fd duplicated).
fn open_net(net: &NetConfig) -> Result<Net> {
    let tap = match (&net.tap, net.tap_fd) {
        (Some(name), _) => Tap::open(name),
        (None, Some(fd)) => Tap::from_fd(fd),
        // Refused by the configuration's validation already.
        (None, None) => return Err(ConfigError::Net(NetConfigError::TapChoice).into()),
    }
    .map_err(|source| Error::Net {
        tap: net.to_string(),
        source,
    })?;
    Ok(Net::new(Box::new(tap), net.mac.map(|m| m.0), net.mtu))
}

/// How the legacy devices start.
#[derive(Clone, Copy, Debug, Default)]
pub struct LegacyOptions<'a> {
    /// COM1's registers from a snapshot.
    pub serial: Option<&'a SavedSerial>,
    /// The power port honours snapshot requests (`snapshot_to`).
    pub snapshots: bool,
}

/// The legacy devices on a new port I/O bus: COM1 (output to `console`), the i8042 (its reset
/// command ends the VM) and the power port. Returns the bus and the serial port (flushed at
/// exit).
pub fn create_legacy_devices(
    vm: &Vm,
    console: ConsoleOut,
    exit: Arc<ExitState>,
    opts: LegacyOptions<'_>,
) -> Result<(Bus, Arc<Mutex<SerialDevice>>)> {
    let mut pio = Bus::new("pio");

    let serial_evt = irq_eventfd(vm, COM1_IRQ, "serial port IRQ")?;
    let trigger = EventFdTrigger(serial_evt);
    let serial = match opts.serial {
        Some(saved) => SerialDevice::from_saved(trigger, console, saved)
            .ok_or_else(|| Error::Snapshot("the snapshot's serial port state is invalid".into()))?,
        None => SerialDevice::new(trigger, console),
    };
    let serial = Arc::new(Mutex::new(serial));
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
        Arc::new(Mutex::new(
            PowerPort::new(exit).taking_snapshots(opts.snapshots),
        )),
        POWER_PORT,
        POWER_PORT_LEN,
    )
    .map_err(bus_err("power port"))?;
    Ok((pio, serial))
}

/// An eventfd registered as the irqfd of `gsi`.
fn irq_eventfd(vm: &Vm, gsi: u32, what: &'static str) -> Result<EventFd> {
    let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::Device { what, source })?;
    vm.fd.register_irqfd(&evt, gsi).map_err(|e| Error::Device {
        what,
        source: e.into(),
    })?;
    Ok(evt)
}

fn bus_err(what: &'static str) -> impl Fn(BusError) -> Error {
    move |e| Error::Device {
        what,
        source: std::io::Error::other(e),
    }
}

#[cfg(test)]
#[path = "device_manager_tests.rs"]
mod tests;
