//! Taking the snapshot: once every vCPU has stopped and saved itself (see `run_vcpu`), the
//! main thread saves the VM's KVM state, the devices and memory into files it opened before
//! the guest ran (its seccomp filter allows no `open`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;

use super::SNAPSHOT_STATE_FILE;
use super::{memory, write_state, Snapshot, SnapshotError, SNAPSHOT_MEMORY_FILE};
use crate::devices::bus::lock;
use crate::devices::legacy::SerialDevice;
use crate::devices::virtio::MmioTransport;
use crate::kvm::memory::{discard, GuestMem, GuestRange};
use crate::kvm::vcpu::VcpuEnd;
use crate::kvm::vm_state::save_vm;

/// Where a template VM's snapshot goes: its two files, created empty when the VM is set up.
#[derive(Debug)]
pub struct SnapshotTarget {
    dir: PathBuf,
    state: File,
    memory: File,
}

impl SnapshotTarget {
    /// Creates (or truncates) the two files in `dir`, readable by their owner only.
    pub fn create(dir: &Path) -> Result<SnapshotTarget, SnapshotError> {
        let open = |name: &str| {
            let path = dir.join(name);
            std::os::unix::fs::OpenOptionsExt::mode(
                File::options()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true),
                0o600,
            )
            .open(&path)
            .map_err(|source| SnapshotError::Io {
                what: "creating",
                path: path.display().to_string(),
                source,
            })
        };
        Ok(SnapshotTarget {
            dir: dir.to_path_buf(),
            state: open(SNAPSHOT_STATE_FILE)?,
            memory: open(SNAPSHOT_MEMORY_FILE)?,
        })
    }
}

/// What the snapshot is taken from.
pub struct SaveInputs<'a> {
    /// The VM.
    pub vm: &'a VmFd,
    /// Guest memory.
    pub mem: &'a GuestMem,
    /// The virtio transports, in slot order.
    pub transports: &'a [Arc<Mutex<MmioTransport>>],
    /// COM1.
    pub serial: &'a Mutex<SerialDevice>,
    /// Guest memory the guest no longer uses (the retained initrd): left out.
    pub release: Option<GuestRange>,
}

/// Saves the VM; `vcpus` are what the vCPU threads returned, in index order.
pub fn save(
    target: &SnapshotTarget,
    inputs: &SaveInputs<'_>,
    vcpus: Vec<VcpuEnd>,
) -> Result<(), String> {
    let vcpus = vcpus
        .into_iter()
        .enumerate()
        .map(|(i, end)| end.unwrap_or_else(|| Err(format!("vCPU {i} did not stop for it"))))
        .collect::<Result<Vec<_>, _>>()?;
    let vm = save_vm(inputs.vm).map_err(|e| e.to_string())?;
    let devices = inputs.transports.iter().map(|t| lock(t).save()).collect();
    let serial = lock(inputs.serial).save();
    if let Some(range) = inputs.release {
        // The guest's PID 1 runs (it asked for the snapshot): the initrd is not needed again.
        let n =
            discard(inputs.mem, range).map_err(|e| format!("dropping the retained initrd: {e}"))?;
        tracing::info!(
            "snapshot: left the retained initrd ({} KiB at {:#x}) out",
            n >> 10,
            range.addr
        );
    }
    let (_, mem_bytes) = memory::memory_file(inputs.mem).map_err(|e| e.to_string())?;
    let snap = Snapshot {
        vmm_version: crate::VERSION.to_string(),
        mem_bytes,
        vm,
        vcpus,
        devices,
        serial,
    };
    let mem_path = target.dir.join(SNAPSHOT_MEMORY_FILE);
    let copied = memory::save(inputs.mem, &target.memory)
        .map_err(|e| format!("writing {}: {e}", mem_path.display()))?;
    write_state(&snap, &target.state, &target.dir.join(SNAPSHOT_STATE_FILE))
        .map_err(|e| e.to_string())?;
    tracing::info!(
        "snapshot saved in {}: {} vCPUs, {} devices, {} KiB of {} MiB memory",
        target.dir.display(),
        snap.vcpus.len(),
        snap.devices.len(),
        copied.bytes >> 10,
        mem_bytes >> 20
    );
    Ok(())
}
