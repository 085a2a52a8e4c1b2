//! The sandpod-vmm command line of a sandbox VM.
use std::ffi::OsString;
use std::path::PathBuf;

use super::sizing::VmSize;

/// The guest kernel command line of a sandbox VM: serial console, reboot through the keyboard
/// controller, no reboot on panic (the VMM reports it), the agent serving its API.
pub const SANDBOX_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 quiet sandpod.after_ready=serve";
/// The guest's vsock CID (any value ≥ 3: each VM has its own vsock device).
pub const GUEST_CID: u32 = 3;

/// Everything sandpod-vmm is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmmCommand {
    pub vmm: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub size: VmSize,
    /// The hybrid-vsock socket.
    pub vsock_uds: PathBuf,
    /// The guest's serial console goes to this file.
    pub console_log: PathBuf,
    /// virtio-fs devices: (tag, vhost-user socket).
    pub fs: Vec<(String, PathBuf)>,
}

impl VmmCommand {
    /// The program's arguments.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--kernel".into(),
            self.kernel.clone().into(),
            "--initrd".into(),
            self.initrd.clone().into(),
            "--cmdline".into(),
            SANDBOX_CMDLINE.into(),
            "--mem-mib".into(),
            self.size.mem_mib.to_string().into(),
            "--vcpus".into(),
            self.size.vcpus.to_string().into(),
            "--console".into(),
            {
                let mut c = OsString::from("file:");
                c.push(&self.console_log);
                c
            },
            "--vsock-uds".into(),
            self.vsock_uds.clone().into(),
            "--vsock-cid".into(),
            GUEST_CID.to_string().into(),
        ];
        for (tag, socket) in &self.fs {
            let mut v = OsString::from(format!("tag={tag},socket="));
            v.push(socket);
            a.push("--fs".into());
            a.push(v);
        }
        a
    }

    /// The whole command line: the program, then [`Self::args`].
    pub fn argv(&self) -> Vec<PathBuf> {
        std::iter::once(self.vmm.clone())
            .chain(self.args().into_iter().map(PathBuf::from))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let c = VmmCommand {
            vmm: "/b/sandpod-vmm".into(),
            kernel: "/g/vmlinux".into(),
            initrd: "/g/initramfs.cpio".into(),
            size: VmSize {
                vcpus: 2,
                mem_mib: 384,
            },
            vsock_uds: "/run/s/vsock.sock".into(),
            console_log: "/run/s/console.log".into(),
            fs: vec![("sandpod".into(), "/run/s/virtiofsd.sock".into())],
        };
        let a: Vec<String> = c
            .args()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let joined = a.join(" ");
        assert!(joined.contains("--mem-mib 384 --vcpus 2"), "{joined}");
        assert!(
            joined.contains("--console file:/run/s/console.log"),
            "{joined}"
        );
        assert!(
            joined.ends_with("--fs tag=sandpod,socket=/run/s/virtiofsd.sock"),
            "{joined}"
        );
        assert!(a.contains(&SANDBOX_CMDLINE.to_string()));
    }
}
