//! Restoring a snapshot into a VM set up from its configuration: the state file is read and
//! checked, memory copied into the new memfd (or a prepared file mapped), the KVM state put
//! back into the vCPUs and the VM, and (in `Vmm::run`, from the spawner) each device restarted
//! where the guest left it.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use kvm_ioctls::{Cap, Kvm, VcpuFd};

use super::{
    memory, read_state, Snapshot, SnapshotError, SNAPSHOT_MEMORY_FILE, SNAPSHOT_READY_MEMORY_FILE,
};
use crate::devices::bus::lock;
use crate::devices::virtio::mmio::TransportState;
use crate::devices::virtio::MmioTransport;
use crate::error::{Error, Result};
use crate::kvm::memory::{create_guest_memory, map_guest_memory, GuestMem};
use crate::kvm::vcpu_state::restore_vcpu;
use crate::kvm::vm::Vm;
use crate::kvm::vm_state::restore_vm;

/// Where a restored VM's guest memory comes from.
#[derive(Debug)]
pub enum RestoreMemory {
    /// The snapshot's sparse memory file, copied into a new memfd.
    Copy(File),
    /// A file prepared with the snapshot's memory ([`SNAPSHOT_READY_MEMORY_FILE`]), taken as the
    /// guest's memory as it is.
    Ready(File),
}

/// Reads and checks the snapshot in `dir` and opens its memory: the prepared
/// [`SNAPSHOT_READY_MEMORY_FILE`] (read-write) if the directory holds one, else
/// [`SNAPSHOT_MEMORY_FILE`].
pub fn open(dir: &Path) -> Result<(Snapshot, RestoreMemory)> {
    let snap = read_state(dir)?;
    let opening = |path: &Path| {
        let path = path.display().to_string();
        move |source| SnapshotError::Io {
            what: "opening",
            path,
            source,
        }
    };
    let ready = dir.join(SNAPSHOT_READY_MEMORY_FILE);
    let opened = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&ready);
    match opened {
        Ok(f) => return Ok((snap, RestoreMemory::Ready(f))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(opening(&ready)(e).into()),
    }
    let path = dir.join(SNAPSHOT_MEMORY_FILE);
    let memory = File::open(&path).map_err(opening(&path))?;
    Ok((snap, RestoreMemory::Copy(memory)))
}

/// The restored VM's guest memory, `size` bytes: the prepared file mapped, or a new memfd with
/// the snapshot's memory copied in.
pub fn guest_memory(memory: RestoreMemory, size: u64) -> Result<GuestMem> {
    let started = std::time::Instant::now();
    match memory {
        RestoreMemory::Ready(file) => {
            let mem = map_guest_memory(file, size)?;
            tracing::info!("guest memory restored: the prepared file mapped, nothing copied");
            Ok(mem)
        }
        RestoreMemory::Copy(file) => {
            let mem = create_guest_memory(size)?;
            let copied = memory::restore(&mem, &file)
                .map_err(|e| Error::Snapshot(format!("restoring guest memory: {e}")))?;
            tracing::info!(
                "guest memory restored: {} KiB in {} ms",
                copied.bytes >> 10,
                started.elapsed().as_millis()
            );
            Ok(mem)
        }
    }
}

/// Puts the vCPUs' and the VM's KVM state back (vCPUs first, as Firecracker does).
pub fn kvm_state(kvm: &Kvm, vm: &Vm, vcpus: &[VcpuFd], snap: &Snapshot) -> Result<()> {
    // KVM_SET_XSAVE reads KVM's xsave size from a 4 KiB kvm_xsave: only sound when that size
    // (KVM_CAP_XSAVE2; 0 when the capability is absent) is no more.
    let xsave_size = kvm.check_extension_int(Cap::Xsave2);
    let xsave_fits = usize::try_from(xsave_size)
        .is_ok_and(|n| n <= std::mem::size_of::<kvm_bindings::kvm_xsave>());
    for (index, (vcpu, state)) in vcpus.iter().zip(&snap.vcpus).enumerate() {
        restore_vcpu(vcpu, state, xsave_fits)
            .map_err(|e| Error::Snapshot(format!("vCPU {index}: {e}")))?;
    }
    restore_vm(&vm.fd, &snap.vm).map_err(|e| Error::Snapshot(e.to_string()))
}

/// Restores each transport (slot order) and restarts the devices the guest had started.
pub fn devices(transports: &[Arc<Mutex<MmioTransport>>], states: &[TransportState]) -> Result<()> {
    if transports.len() != states.len() {
        return Err(Error::Snapshot(format!(
            "{} devices in the snapshot, {} configured",
            states.len(),
            transports.len()
        )));
    }
    for (slot, (t, state)) in transports.iter().zip(states).enumerate() {
        lock(t)
            .restore(state)
            .map_err(|e| Error::Snapshot(format!("virtio device {slot}: {e}")))?;
    }
    Ok(())
}
