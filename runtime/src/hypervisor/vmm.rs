//! sandpod-vmm for a sandbox VM: the VM's configuration (a [`VmConfig`], written to the state
//! directory's `vm.json`) and the command that boots it (`sandpod-vmm --config vm.json`).
use std::ffi::OsString;
use std::path::PathBuf;

use sandpod_vmconfig::{ConsoleConfig, FsConfig, NetConfig, VmConfig, VsockConfig};
use serde::{Deserialize, Serialize};

use super::sizing::VmSize;

/// The guest kernel command line of a sandbox VM: serial console, reboot through the keyboard
/// controller, no reboot on panic (the VMM reports it), the initrd's pages kept reserved once
/// unpacked (the VMM gives them back to the host when the agent answers: one copy of the agent
/// in guest RAM, not two), the agent serving its API.
pub const SANDBOX_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=-1 quiet retain_initrd sandpod.after_ready=serve";
/// Appended to the command line with `--debug`: the kernel hands it to the agent (PID 1) as an
/// environment variable, its log filter.
pub const GUEST_DEBUG_CMDLINE: &str = "SANDPOD_LOG=debug";
/// Appended to the command line of a VM that makes a template: the agent asks the VMM for a
/// snapshot once it listens, before any host connection.
pub const TEMPLATE_CMDLINE_FLAG: &str = "sandpod.template=1";
/// The guest's vsock CID (any value ≥ 3: each VM has its own vsock device).
pub const GUEST_CID: u32 = 3;
/// The VM's configuration file in the sandbox's state directory.
pub const VM_CONFIG_FILE: &str = "vm.json";

/// What a sandbox VM is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxVm {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub size: VmSize,
    /// The hybrid-vsock socket.
    pub vsock_uds: PathBuf,
    /// The guest's serial console goes to this file.
    pub console_log: PathBuf,
    /// virtio-fs devices (each with its virtiofsd's socket).
    pub fs: Vec<FsConfig>,
    /// The guest's NIC (the tap mirroring the pod's network namespace), if any.
    pub net: Option<NetConfig>,
    /// The agent logs at debug level (`--debug`): [`GUEST_DEBUG_CMDLINE`] on its command line,
    /// so a template made with it is another template.
    pub guest_debug: bool,
}

impl SandboxVm {
    /// The VMM's configuration.
    pub fn vm_config(&self) -> VmConfig {
        VmConfig {
            initrd: Some(self.initrd.clone()),
            cmdline: if self.guest_debug {
                format!("{SANDBOX_CMDLINE} {GUEST_DEBUG_CMDLINE}")
            } else {
                SANDBOX_CMDLINE.to_string()
            },
            mem_mib: self.size.mem_mib,
            vcpus: self.size.vcpus,
            console: ConsoleConfig::File(self.console_log.clone()),
            vsock: Some(VsockConfig {
                guest_cid: GUEST_CID,
                uds_path: self.vsock_uds.clone(),
            }),
            fs: self.fs.clone(),
            net: self.net.iter().cloned().collect(),
            ..VmConfig::new(self.kernel.clone())
        }
    }
}

/// How sandpod-vmm is started: the program and its configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmmCommand {
    /// The sandpod-vmm binary.
    pub program: PathBuf,
    /// The VM's configuration (JSON, a [`VmConfig`]).
    pub config: PathBuf,
}

impl VmmCommand {
    /// The program's arguments.
    pub fn args(&self) -> Vec<OsString> {
        vec!["--config".into(), self.config.clone().into()]
    }

    /// The whole command line: the program, then [`Self::args`].
    pub fn argv(&self) -> Vec<PathBuf> {
        std::iter::once(self.program.clone())
            .chain(self.args().into_iter().map(PathBuf::from))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> SandboxVm {
        SandboxVm {
            kernel: "/g/vmlinux".into(),
            initrd: "/g/initramfs.cpio".into(),
            size: VmSize {
                vcpus: 2,
                mem_mib: 384,
            },
            vsock_uds: "/run/s/v".into(),
            console_log: "/run/s/console.log".into(),
            fs: vec![FsConfig::new("sandpod", "/run/s/fs.sock")],
            net: None,
            guest_debug: false,
        }
    }

    #[test]
    fn vm_config() {
        let c = vm().vm_config();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!((c.mem_mib, c.vcpus), (384, 2));
        assert_eq!(c.kernel, PathBuf::from("/g/vmlinux"));
        assert_eq!(c.initrd, Some(PathBuf::from("/g/initramfs.cpio")));
        assert_eq!(c.cmdline, SANDBOX_CMDLINE);
        let debug = SandboxVm {
            guest_debug: true,
            ..vm()
        };
        assert_eq!(
            debug.vm_config().cmdline,
            format!("{SANDBOX_CMDLINE} {}=debug", sandpod_protocol::LOG_ENV)
        );
        assert_eq!(c.console, ConsoleConfig::File("/run/s/console.log".into()));
        assert_eq!(
            c.vsock,
            Some(VsockConfig {
                guest_cid: GUEST_CID,
                uds_path: "/run/s/v".into()
            })
        );
        assert_eq!(c.fs, vec![FsConfig::new("sandpod", "/run/s/fs.sock")]);
        assert!(c.disks.is_empty());
        assert!(c.net.is_empty());
        let mut with_net = vm();
        let nic = NetConfig {
            tap: None,
            tap_fd: Some(3),
            mac: Some("02:42:ac:11:00:02".parse().unwrap()),
            mtu: Some(1500),
        };
        with_net.net = Some(nic.clone());
        let c = with_net.vm_config();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.net, vec![nic]);
    }

    #[test]
    fn invalid_sizes_are_caught_by_validation() {
        let mut v = vm();
        v.size.vcpus = 0;
        assert!(v.vm_config().validate().is_err());
    }

    #[test]
    fn arguments() {
        let c = VmmCommand {
            program: "/b/sandpod-vmm".into(),
            config: "/run/s/vm.json".into(),
        };
        assert_eq!(
            c.argv(),
            ["/b/sandpod-vmm", "--config", "/run/s/vm.json"].map(PathBuf::from)
        );
    }
}
