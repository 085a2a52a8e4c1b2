//! VM snapshots, for templates: a VM saved once "agent ready, nothing sandbox-specific done"
//! (`snapshot_to`), restored by every sandbox that starts from it (`restore_from`).
//!
//! A snapshot is a directory of two files:
//! - [`SNAPSHOT_STATE_FILE`]: a header (magic, format version, payload length, SHA-256 of the
//!   payload) and the payload, a [`Snapshot`] in postcard. Everything in it is checked on load
//!   against the header, the bounds below and the VM configuration: a truncated, corrupt or
//!   foreign file is an error, never a panic or a mapping out of range.
//! - [`SNAPSHOT_MEMORY_FILE`]: guest memory at its memfd offsets, as a sparse file (see
//!   [`memory`]).
//!
//! The guest asks for the snapshot itself (the agent writes [`REQUEST_SNAPSHOT`] to the power
//! port once it serves), so the VM is idle: no vsock connection is open and the devices have
//! finished every chain they took. What the snapshot does not hold: the host sides of the
//! devices (sockets, virtiofsd, disks, taps), which the restoring configuration provides.

pub mod memory;
pub mod restore;
pub mod save;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use sandpod_vmconfig::{
    REQUEST_SNAPSHOT, SNAPSHOT_MEMORY_FILE, SNAPSHOT_READY_MEMORY_FILE, SNAPSHOT_STATE_FILE,
};

use crate::devices::legacy::serial::SavedSerial;
use crate::devices::virtio::mmio::TransportState;
use crate::kvm::vcpu_state::VcpuState;
use crate::kvm::vm_state::{check_vm_state, VmState};

/// The state file's first bytes.
pub const MAGIC: [u8; 8] = *b"SPODSNAP";
/// The payload's format; any change to [`Snapshot`] or what it holds bumps it.
pub const FORMAT_VERSION: u32 = 1;
/// The most a state file's payload may hold (a few vCPUs' state is ~10 KiB each).
pub const MAX_PAYLOAD: u64 = 4 << 20;
const HEADER_LEN: usize = 8 + 4 + 8 + 32;
/// The most MSRs a vCPU's state may hold (KVM lists a few hundred at most).
const MAX_MSRS: usize = 1024;

/// What a snapshot holds besides memory.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// The VMM that made it (`crate::VERSION`): another VMM's snapshot is not restored.
    pub vmm_version: String,
    /// Guest memory size in bytes.
    pub mem_bytes: u64,
    /// The in-kernel irqchips, PIT and clock.
    pub vm: VmState,
    /// One per vCPU, in index order.
    pub vcpus: Vec<VcpuState>,
    /// Each virtio-mmio transport, in slot order.
    pub devices: Vec<TransportState>,
    /// COM1.
    pub serial: SavedSerial,
}

/// Why a snapshot cannot be written or used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing a file.
    #[error("{what} {path}: {source}")]
    Io {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not a snapshot, or damaged.
    #[error("{path} is not a usable snapshot: {why}")]
    Invalid {
        /// The state file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A valid snapshot of another VM.
    #[error("the snapshot does not fit this VM: {0}")]
    Mismatch(String),
}

impl Snapshot {
    /// The payload with its header.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let payload = postcard::to_stdvec(self).map_err(|e| e.to_string())?;
        let len = u64::try_from(payload.len()).map_err(|e| e.to_string())?;
        if len > MAX_PAYLOAD {
            return Err(format!("state of {len} bytes is over {MAX_PAYLOAD}"));
        }
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&Sha256::digest(&payload));
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Parses and checks a state file's bytes (header, digest, structure; not yet against a
    /// configuration: [`Snapshot::check_fits`]).
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or_else(|| format!("{} bytes: shorter than the header", bytes.len()))?;
        let (magic, rest) = header.split_at(8);
        if magic != MAGIC {
            return Err("bad magic".into());
        }
        let (version, rest) = rest.split_at(4);
        let version = u32::from_le_bytes(version.try_into().map_err(|_| "header")?);
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version}, this VMM reads {FORMAT_VERSION}"
            ));
        }
        let (len, digest) = rest.split_at(8);
        let len = u64::from_le_bytes(len.try_into().map_err(|_| "header")?);
        if len > MAX_PAYLOAD {
            return Err(format!("payload of {len} bytes is over {MAX_PAYLOAD}"));
        }
        let payload = &bytes[HEADER_LEN..];
        if u64::try_from(payload.len()).ok() != Some(len) {
            return Err(format!(
                "payload of {} bytes, the header says {len} (truncated?)",
                payload.len()
            ));
        }
        if Sha256::digest(payload).as_slice() != digest {
            return Err("payload digest mismatch (corrupt)".into());
        }
        let snap: Snapshot = postcard::from_bytes(payload).map_err(|e| e.to_string())?;
        check_vm_state(&snap.vm)?;
        if snap.vcpus.is_empty() || snap.vcpus.len() > usize::from(u8::MAX) {
            return Err(format!("{} vCPUs", snap.vcpus.len()));
        }
        if let Some(v) = snap.vcpus.iter().find(|v| v.msrs.len() > MAX_MSRS) {
            return Err(format!("a vCPU with {} MSRs", v.msrs.len()));
        }
        Ok(snap)
    }

    /// Checks the snapshot against the configuration it is restored with: VMM version, vCPUs,
    /// memory and the number of virtio devices (their kinds are checked one by one on restore).
    pub fn check_fits(&self, vcpus: u8, mem_bytes: u64, devices: usize) -> Result<(), String> {
        if self.vmm_version != crate::VERSION {
            return Err(format!(
                "made by sandpod-vmm {}, this is {}",
                self.vmm_version,
                crate::VERSION
            ));
        }
        if self.vcpus.len() != usize::from(vcpus) {
            return Err(format!("{} vCPUs, {vcpus} configured", self.vcpus.len()));
        }
        if self.mem_bytes != mem_bytes {
            return Err(format!(
                "{} MiB of memory, {} MiB configured",
                self.mem_bytes >> 20,
                mem_bytes >> 20
            ));
        }
        if self.devices.len() != devices {
            return Err(format!(
                "{} virtio devices, {devices} configured",
                self.devices.len()
            ));
        }
        Ok(())
    }
}

/// Writes the state file (into a file opened before the guest ran).
pub fn write_state(snap: &Snapshot, mut out: &File, path: &Path) -> Result<(), SnapshotError> {
    let bytes = snap.encode().map_err(|why| SnapshotError::Invalid {
        path: path.display().to_string(),
        why,
    })?;
    out.write_all(&bytes)
        .and_then(|()| out.sync_all())
        .map_err(|source| SnapshotError::Io {
            what: "writing",
            path: path.display().to_string(),
            source,
        })
}

/// Reads and checks the state file of the snapshot directory `dir`.
pub fn read_state(dir: &Path) -> Result<Snapshot, SnapshotError> {
    let path = dir.join(SNAPSHOT_STATE_FILE);
    let shown = path.display().to_string();
    let io = |source| SnapshotError::Io {
        what: "reading",
        path: shown.clone(),
        source,
    };
    let file = File::open(&path).map_err(io)?;
    let mut bytes = Vec::new();
    // One byte over the bound tells a too-long file from a full one.
    let limit = MAX_PAYLOAD + HEADER_LEN as u64 + 1;
    file.take(limit).read_to_end(&mut bytes).map_err(io)?;
    Snapshot::decode(&bytes).map_err(|why| SnapshotError::Invalid { path: shown, why })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
