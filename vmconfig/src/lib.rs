//! The configuration of one Sandpod microVM: what `sandpod-vmm` boots and with which devices.
//!
//! This is the one contract between the VMM and whoever starts it. The runtime writes a
//! [`VmConfig`] as JSON (`sandpod-vmm --config vm.json`, like Firecracker's config file); people
//! use the flags (`--kernel`, `--disk PATH[,ro]`, `--fs tag=…,socket=…`, `--net tap=…`, …), which the VMM turns
//! into the same struct with the `FromStr` impls here. Both go through [`VmConfig::validate`].
//!
//! It also holds the [`conventions`] every Sandpod binary follows (the log-filter variable, how
//! errors print their causes): the one crate all of them depend on.
//!
//! Serde only: no I/O, no KVM. Missing fields take the flags' defaults, unknown fields are
//! refused (a typo in a hand-written file is an error, not a silently ignored setting).

mod console;
pub mod conventions;
mod disk;
mod fs;
mod net;
pub mod rate;
mod vsock;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use console::{
    ConsoleConfig, ConsoleLimits, ConsoleLimitsError, DEFAULT_CONSOLE_BURST_BYTES,
    DEFAULT_CONSOLE_BYTES_PER_SEC, DEFAULT_CONSOLE_MAX_FILE_BYTES, MIN_CONSOLE_BURST_BYTES,
    MIN_CONSOLE_MAX_FILE_BYTES,
};
pub use disk::DiskConfig;
pub use fs::{
    FsConfig, FsConfigError, DEFAULT_QUEUE_SIZE, DEFAULT_REQUEST_QUEUES, MAX_QUEUE_SIZE,
    MAX_REQUEST_QUEUES, MAX_SOCKET_PATH, MAX_TAG_LEN,
};
pub use net::{MacAddr, NetConfig, NetConfigError, MAX_MTU, MAX_TAP_NAME, MIN_MTU};
pub use vsock::{uds_port_path, VsockConfig, DEFAULT_GUEST_CID, MAX_UDS_PATH};

/// Default kernel command line.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";
/// Default guest memory size in MiB.
pub const DEFAULT_MEM_MIB: u32 = 128;
/// Default number of vCPUs.
pub const DEFAULT_VCPUS: u8 = 1;
/// Smallest accepted guest memory size in MiB (room for the boot structures and a kernel).
pub const MIN_MEM_MIB: u32 = 8;
/// Largest accepted guest memory size in MiB (1 TiB).
pub const MAX_MEM_MIB: u32 = 1024 * 1024;
/// Largest vCPU count the VMM supports: APIC ids are 8 bits and the IOAPIC takes the id after
/// the last vCPU. KVM's own limit is checked when the VM is created.
pub const MAX_VCPUS: u8 = 254;
/// Most disks per VM (each takes a virtio-mmio slot and an IRQ: see the IRQ budget in the VMM's
/// `device_manager`).
pub const MAX_DISKS: usize = 15;
/// Most virtio-fs devices per VM.
pub const MAX_FS: usize = 2;
/// Most virtio-net devices per VM (with vsock, 15 disks and 2 virtio-fs devices, the virtio
/// IRQs, 5 to 23, are all taken).
pub const MAX_NET: usize = 1;

/// Everything needed to boot one microVM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Uncompressed ELF kernel (`vmlinux`).
    pub kernel: PathBuf,
    /// Optional initramfs (newc cpio, possibly compressed).
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line, passed as is (the VMM appends its virtio-mmio announcements).
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
    /// Guest memory in MiB.
    #[serde(default = "default_mem_mib")]
    pub mem_mib: u32,
    /// Number of vCPUs.
    #[serde(default = "default_vcpus")]
    pub vcpus: u8,
    /// Serial console destination.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Caps on the console's output (size of the file, rate).
    #[serde(default)]
    pub console_limits: ConsoleLimits,
    /// virtio-vsock device with hybrid vsock on Unix sockets.
    #[serde(default)]
    pub vsock: Option<VsockConfig>,
    /// virtio-fs devices, each backed by a vhost-user-fs daemon (virtiofsd).
    #[serde(default)]
    pub fs: Vec<FsConfig>,
    /// virtio-blk devices, in order (the guest's vda, vdb, ...).
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    /// virtio-net devices on tap interfaces (at most [`MAX_NET`]).
    #[serde(default)]
    pub net: Vec<NetConfig>,
    /// Debug only: run the VMM without its seccomp filters (it logs a warning). Default false:
    /// every VMM thread is confined to the syscalls it needs.
    #[serde(default)]
    pub no_seccomp: bool,
    /// Template mode: when the guest asks (value [`REQUEST_SNAPSHOT`] on the power port), the
    /// VMM saves the VM into this directory ([`SNAPSHOT_STATE_FILE`], [`SNAPSHOT_MEMORY_FILE`])
    /// and exits with [`EXIT_SNAPSHOT_SAVED`]. Without it the request is ignored.
    #[serde(default)]
    pub snapshot_to: Option<PathBuf>,
    /// Restore the VM saved in this directory instead of booting `kernel`/`initrd`: the same
    /// vCPUs, memory and device kinds in the same order; the devices' host sides (sockets,
    /// virtiofsd, taps, console) are this configuration's. If the directory also holds
    /// [`SNAPSHOT_READY_MEMORY_FILE`], that file becomes the guest's memory as it is (nothing
    /// copied).
    #[serde(default)]
    pub restore_from: Option<PathBuf>,
}

/// Value the guest agent writes to the power port to ask for a snapshot (template mode).
pub const REQUEST_SNAPSHOT: u8 = 2;
/// `sandpod-vmm`'s exit status once it has saved a snapshot (`snapshot_to`).
pub const EXIT_SNAPSHOT_SAVED: i32 = 4;
/// The snapshot's vCPU, VM and device state, in a snapshot directory.
pub const SNAPSHOT_STATE_FILE: &str = "state.bin";
/// The snapshot's guest memory (a sparse file: holes where the guest never wrote).
pub const SNAPSHOT_MEMORY_FILE: &str = "memory.bin";
/// Optional, in a `restore_from` directory: [`SNAPSHOT_MEMORY_FILE`] already copied into a file
/// of its own, as long as the VM's memory, that the restored VM takes as its guest memory
/// (mapped shared, written by the guest) instead of copying the snapshot's. The runtime prepares
/// it ahead of time for one VM only (a template's spare, see the runtime's
/// `sandbox::template::spare`).
pub const SNAPSHOT_READY_MEMORY_FILE: &str = "memory.ready";

fn default_cmdline() -> String {
    DEFAULT_CMDLINE.to_string()
}

fn default_mem_mib() -> u32 {
    DEFAULT_MEM_MIB
}

fn default_vcpus() -> u8 {
    DEFAULT_VCPUS
}

/// An invalid [`VmConfig`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `mem_mib` below the minimum.
    #[error("guest memory of {0} MiB is too small: at least {MIN_MEM_MIB} MiB is needed")]
    MemTooSmall(u32),
    /// `mem_mib` above the maximum.
    #[error("guest memory of {0} MiB is too large: at most {MAX_MEM_MIB} MiB is supported")]
    MemTooLarge(u32),
    /// `vcpus` is zero.
    #[error("the VM needs at least 1 vCPU")]
    NoVcpus,
    /// `vcpus` above what the VMM supports.
    #[error("{0} vCPUs requested but at most {MAX_VCPUS} are supported")]
    TooManyVcpus(u32),
    /// Empty kernel path.
    #[error("no kernel given")]
    NoKernel,
    /// Command line with a NUL byte or non-ASCII characters.
    #[error("the kernel command line must be printable ASCII without NUL bytes")]
    BadCmdline,
    /// Both `snapshot_to` and `restore_from`.
    #[error(
        "snapshot_to and restore_from cannot be combined (a template is booted, not restored)"
    )]
    SnapshotAndRestore,
    /// Reserved guest CID (0, 1, 2 or u32::MAX).
    #[error("vsock guest CID {0} is reserved: use 3 or more (below 4294967295)")]
    BadGuestCid(u32),
    /// Invalid console limits.
    #[error(transparent)]
    ConsoleLimits(#[from] ConsoleLimitsError),
    /// Empty or too long vsock socket path.
    #[error("vsock socket path must be non-empty and at most {MAX_UDS_PATH} bytes")]
    BadUdsPath,
    /// An invalid virtio-fs device.
    #[error("virtio-fs")]
    Fs(#[from] FsConfigError),
    /// More virtio-fs devices than supported.
    #[error("virtio-fs: {0} devices given but at most {MAX_FS} are supported")]
    TooManyFs(usize),
    /// Two virtio-fs devices with one tag.
    #[error("virtio-fs: tag {0} used twice")]
    DuplicateFsTag(String),
    /// A disk without a path.
    #[error("a disk has an empty path")]
    EmptyDiskPath,
    /// More disks than supported.
    #[error("{0} disks given but at most {MAX_DISKS} are supported")]
    TooManyDisks(usize),
    /// An invalid virtio-net device.
    #[error("virtio-net")]
    Net(#[from] NetConfigError),
    /// More virtio-net devices than supported.
    #[error("virtio-net: {0} devices given but at most {MAX_NET} are supported")]
    TooManyNet(usize),
}

/// A command-line value (`--console`, `--disk`, `--fs`) that does not parse.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ParseError(pub String);

impl From<FsConfigError> for ParseError {
    fn from(e: FsConfigError) -> Self {
        ParseError(e.to_string())
    }
}

impl VmConfig {
    /// A configuration with the defaults for everything but the kernel.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        VmConfig {
            kernel: kernel.into(),
            initrd: None,
            cmdline: default_cmdline(),
            mem_mib: DEFAULT_MEM_MIB,
            vcpus: DEFAULT_VCPUS,
            console: ConsoleConfig::Stdout,
            console_limits: ConsoleLimits::default(),
            vsock: None,
            fs: Vec::new(),
            disks: Vec::new(),
            net: Vec::new(),
            no_seccomp: false,
            snapshot_to: None,
            restore_from: None,
        }
    }

    /// Checks the values that can be checked without touching the host. KVM's vCPU limit is
    /// checked when the VM is created, files and sockets when they are opened.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kernel.as_os_str().is_empty() {
            return Err(ConfigError::NoKernel);
        }
        if self.mem_mib < MIN_MEM_MIB {
            return Err(ConfigError::MemTooSmall(self.mem_mib));
        }
        if self.mem_mib > MAX_MEM_MIB {
            return Err(ConfigError::MemTooLarge(self.mem_mib));
        }
        if self.vcpus == 0 {
            return Err(ConfigError::NoVcpus);
        }
        if self.vcpus > MAX_VCPUS {
            return Err(ConfigError::TooManyVcpus(u32::from(self.vcpus)));
        }
        if !self.cmdline.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(ConfigError::BadCmdline);
        }
        self.console_limits.validate()?;
        if let Some(v) = &self.vsock {
            v.validate()?;
        }
        if self.disks.len() > MAX_DISKS {
            return Err(ConfigError::TooManyDisks(self.disks.len()));
        }
        if self.disks.iter().any(|d| d.path.as_os_str().is_empty()) {
            return Err(ConfigError::EmptyDiskPath);
        }
        if self.fs.len() > MAX_FS {
            return Err(ConfigError::TooManyFs(self.fs.len()));
        }
        for (i, fs) in self.fs.iter().enumerate() {
            fs.validate()?;
            if self.fs[..i].iter().any(|other| other.tag == fs.tag) {
                return Err(ConfigError::DuplicateFsTag(fs.tag.clone()));
            }
        }
        if self.net.len() > MAX_NET {
            return Err(ConfigError::TooManyNet(self.net.len()));
        }
        for net in &self.net {
            net.validate()?;
        }
        if self.snapshot_to.is_some() && self.restore_from.is_some() {
            return Err(ConfigError::SnapshotAndRestore);
        }
        Ok(())
    }

    /// Guest memory size in bytes.
    pub fn mem_bytes(&self) -> u64 {
        u64::from(self.mem_mib) << 20
    }
}

#[cfg(test)]
mod tests;
