//! `sandpod-vmm`'s command line: either `--config FILE` (a [`VmConfig`] as JSON, what the
//! runtime writes) or the flags for people (`--kernel …`), never both. Both give the same
//! [`VmConfig`]. `sandpod-fake-vmm` (the tests' stand-in) takes the same [`VmmArgs`].

use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args};

use crate::config::{
    ConfigError, ConsoleConfig, ConsoleLimits, DiskConfig, FsConfig, NetConfig, VmConfig,
    VsockConfig, DEFAULT_CMDLINE, DEFAULT_GUEST_CID, DEFAULT_MEM_MIB, DEFAULT_VCPUS,
};
use crate::seccomp::ThreadKind;

/// The flags `--config` cannot be combined with.
const DEVICE_FLAGS: [&str; 11] = [
    "kernel",
    "initrd",
    "cmdline",
    "mem_mib",
    "vcpus",
    "console",
    "vsock_uds",
    "vsock_cid",
    "fs",
    "disks",
    "net",
];

/// What to boot: a configuration file, or flags.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[command(group(ArgGroup::new("what").required(true).args(["config", "kernel"])))]
pub struct VmmArgs {
    /// The whole VM configuration as a JSON file (sandpod_vmconfig::VmConfig; missing fields
    /// take the flags' defaults, unknown fields are an error). Not combinable with the flags
    /// below.
    #[arg(long, value_name = "FILE", conflicts_with_all = DEVICE_FLAGS)]
    pub config: Option<PathBuf>,
    /// Uncompressed ELF kernel image (vmlinux).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initramfs (cpio archive).
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line, passed unchanged.
    #[arg(long, value_name = "STR", default_value = DEFAULT_CMDLINE)]
    pub cmdline: String,
    /// Guest memory in MiB.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MEM_MIB)]
    pub mem_mib: u32,
    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = u32::from(DEFAULT_VCPUS))]
    pub vcpus: u32,
    /// Guest serial console: stdout, file:PATH or none.
    #[arg(long, value_name = "DEST", default_value = "stdout")]
    pub console: ConsoleConfig,
    /// Add a virtio-vsock device: host clients connect to this Unix socket and send
    /// `CONNECT <port>\n`; guest connections to host port P go to the socket `PATH_P`.
    #[arg(long, value_name = "PATH")]
    pub vsock_uds: Option<PathBuf>,
    /// The guest's vsock CID (with --vsock-uds).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_GUEST_CID, requires = "vsock_uds")]
    pub vsock_cid: u32,
    /// Add a virtio-fs device (repeatable) whose back end is a vhost-user-fs daemon
    /// (virtiofsd) listening on PATH; the guest mounts it with `mount -t virtiofs TAG DIR`.
    /// N request queues (default 1) of queue-size entries (default 1024).
    #[arg(long, value_name = "tag=TAG,socket=PATH[,queues=N,queue-size=N]")]
    pub fs: Vec<FsConfig>,
    /// Add a virtio-blk device on a raw disk image (repeatable: the guest's vda, vdb, ...
    /// after the vsock device); `,ro` makes it read-only. Its serial is the file name.
    #[arg(long = "disk", value_name = "PATH[,ro]")]
    pub disks: Vec<DiskConfig>,
    /// Add a virtio-net device on a tap interface, opened by name (tap=NAME) or already open
    /// and inherited (tap-fd=N, opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR); mac= sets the
    /// guest's MAC address, mtu= the MTU it is told (68 to 65535).
    #[arg(long, value_name = "tap=NAME|tap-fd=N[,mac=MAC,mtu=N]")]
    pub net: Vec<NetConfig>,
    /// Debug only: run without the seccomp filters that confine every VMM thread to the
    /// syscalls it needs (a warning is logged). Also `"no_seccomp": true` in the file.
    #[arg(long)]
    pub no_seccomp: bool,
    /// Template mode: when the guest asks (its agent, with `sandpod.template=1`), save the VM
    /// into DIR (state.bin, memory.bin) and exit with status 4. Also `snapshot_to` in the file.
    #[arg(long, value_name = "DIR", conflicts_with = "restore_from")]
    pub snapshot_to: Option<PathBuf>,
    /// Restore the VM saved in DIR instead of booting the kernel (same vCPUs, memory and
    /// devices; their host sides are this command line's). Also `restore_from` in the file.
    #[arg(long, value_name = "DIR")]
    pub restore_from: Option<PathBuf>,
    /// Debug only: once the filters are installed, a thread of this kind (vcpu, device,
    /// spawner, main) makes a syscall outside its filter, so the VMM dies of SIGSYS.
    #[arg(long, value_name = "KIND", hide = true)]
    pub debug_seccomp_violation: Option<ThreadKind>,
}

/// The command line does not give a usable configuration.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration file cannot be read.
    #[error("cannot read the VM configuration {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not a VM configuration.
    #[error("invalid VM configuration {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why (line and column).
        source: serde_json::Error,
    },
    /// Neither `--config` nor `--kernel` (clap normally catches this).
    #[error("no kernel given: use --kernel PATH or --config FILE")]
    NoKernel,
    /// An invalid value.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl VmmArgs {
    /// The configuration the arguments describe (read from `--config`, or built from the
    /// flags). Not validated yet: [`crate::Vmm::new`] does that.
    pub fn vm_config(self) -> Result<VmConfig, CliError> {
        if let Some(path) = &self.config {
            let mut config = read_config_file(path)?;
            config.no_seccomp |= self.no_seccomp;
            if self.snapshot_to.is_some() {
                config.snapshot_to = self.snapshot_to;
            }
            if self.restore_from.is_some() {
                config.restore_from = self.restore_from;
            }
            return Ok(config);
        }
        Ok(VmConfig {
            kernel: self.kernel.ok_or(CliError::NoKernel)?,
            initrd: self.initrd,
            cmdline: self.cmdline,
            mem_mib: self.mem_mib,
            vcpus: u8::try_from(self.vcpus).map_err(|_| ConfigError::TooManyVcpus(self.vcpus))?,
            console: self.console,
            console_limits: ConsoleLimits::default(),
            vsock: self.vsock_uds.map(|uds_path| VsockConfig {
                guest_cid: self.vsock_cid,
                uds_path,
            }),
            fs: self.fs,
            disks: self.disks,
            net: self.net,
            no_seccomp: self.no_seccomp,
            snapshot_to: self.snapshot_to,
            restore_from: self.restore_from,
        })
    }
}

/// Reads a [`VmConfig`] from a JSON file.
pub fn read_config_file(path: &Path) -> Result<VmConfig, CliError> {
    let text = std::fs::read(path).map_err(|source| CliError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| CliError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
