//! The library's error type.

use std::io;
use std::path::PathBuf;

use crate::arch::x86_64::BootError;
use crate::config::ConfigError;
use crate::kvm::memory::MemoryError;
use crate::kvm::KvmError;
use crate::seccomp::spawner::StartError;
use crate::seccomp::SeccompError;

/// Everything that can go wrong setting up or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A snapshot cannot be read, does not fit, or cannot be restored or written.
    #[error(transparent)]
    SnapshotFile(#[from] crate::snapshot::SnapshotError),
    /// Restoring or saving a snapshot's state failed.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// Invalid configuration.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// The kernel file cannot be opened or read.
    #[error("cannot read kernel {}", path.display())]
    KernelOpen {
        /// Path.
        path: PathBuf,
        /// Error.
        source: io::Error,
    },
    /// The kernel is not an ELF image.
    #[error("kernel {} is not an ELF vmlinux{hint}", path.display())]
    KernelNotElf {
        /// Path.
        path: PathBuf,
        /// Extra advice.
        hint: &'static str,
    },
    /// The kernel's segments end beyond guest RAM.
    #[error("kernel {} needs at least {need_mib} MiB of guest memory; {mem_mib} MiB given", path.display())]
    KernelTooLarge {
        /// Path.
        path: PathBuf,
        /// Guest memory size.
        mem_mib: u32,
        /// Memory the kernel image needs.
        need_mib: u64,
    },
    /// The ELF kernel cannot be loaded.
    #[error("cannot load kernel {} into {mem_mib} MiB of guest memory", path.display())]
    KernelLoad {
        /// Path.
        path: PathBuf,
        /// Guest memory size.
        mem_mib: u32,
        /// Error.
        source: linux_loader::loader::Error,
    },
    /// The initrd file cannot be opened or read.
    #[error("cannot read initrd {}", path.display())]
    InitrdOpen {
        /// Path.
        path: PathBuf,
        /// Error.
        source: io::Error,
    },
    /// The initrd is larger than guest memory.
    #[error("initrd {} ({size} bytes) is larger than guest memory ({mem_mib} MiB)", path.display())]
    InitrdTooLarge {
        /// Path.
        path: PathBuf,
        /// Initrd size.
        size: u64,
        /// Guest memory size.
        mem_mib: u32,
    },
    /// The initrd does not fit between the kernel and the top of low memory.
    #[error("initrd {} ({size} bytes) does not fit in {mem_mib} MiB of guest memory: {avail} bytes free above the kernel", path.display())]
    InitrdNoRoom {
        /// Path.
        path: PathBuf,
        /// Initrd size.
        size: u64,
        /// Free space.
        avail: u64,
        /// Guest memory size.
        mem_mib: u32,
    },
    /// Copying the initrd into guest memory failed.
    #[error("cannot copy initrd {} into guest memory", path.display())]
    InitrdLoad {
        /// Path.
        path: PathBuf,
        /// Error.
        source: io::Error,
    },
    /// The kernel command line is too long.
    #[error("kernel command line is too long ({len} bytes; at most {max})")]
    CmdlineTooLong {
        /// Length.
        len: usize,
        /// Maximum.
        max: usize,
    },
    /// The kernel command line is rejected by the loader.
    #[error("invalid kernel command line: {0}")]
    Cmdline(String),
    /// KVM.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// Boot structures.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// The console output cannot be opened.
    #[error("cannot open console output {}", path.display())]
    Console {
        /// Path.
        path: PathBuf,
        /// Error.
        source: io::Error,
    },
    /// A device cannot be set up.
    #[error("cannot set up {what}")]
    Device {
        /// Which device.
        what: &'static str,
        /// Error.
        source: io::Error,
    },
    /// A virtio-fs device cannot be set up (its back end is missing or refuses).
    #[error("virtio-fs {tag}")]
    Fs {
        /// The device's tag.
        tag: String,
        /// Error.
        source: crate::devices::virtio::fs::FsError,
    },
    /// A net device's tap cannot be used.
    #[error("cannot use the tap of virtio-net {tap}")]
    Net {
        /// The device, as configured.
        tap: String,
        /// Error.
        source: crate::devices::virtio::net::tap::TapError,
    },
    /// A disk image cannot be used.
    #[error("cannot use disk image {}", path.display())]
    Disk {
        /// Path.
        path: PathBuf,
        /// Error.
        source: crate::devices::virtio::block::disk::DiskError,
    },
    /// More virtio devices than the IRQ budget has room for (the configuration's limits keep
    /// within it).
    #[error("{count} virtio devices given but IRQs for at most {max}")]
    TooManyDevices {
        /// Devices.
        count: usize,
        /// Room.
        max: usize,
    },
    /// A vCPU thread cannot be started.
    #[error("cannot start vCPU thread: {0}")]
    Thread(io::Error),
    /// A seccomp filter cannot be built or installed.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// The device thread spawner cannot be started.
    #[error(transparent)]
    Spawner(#[from] StartError),
    /// The process cannot be made non-dumpable.
    #[error("cannot make the VMM non-dumpable: {0}")]
    Dumpable(io::Error),
}

/// Library result.
pub type Result<T> = std::result::Result<T, Error>;
