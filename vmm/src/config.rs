//! VM configuration: what to boot and with which resources.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::devices::virtio::fs::FsConfig;

/// Default kernel command line.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";
/// Default guest memory size in MiB.
pub const DEFAULT_MEM_MIB: u32 = 128;
/// Smallest accepted guest memory size in MiB (room for the boot structures and a kernel).
pub const MIN_MEM_MIB: u32 = 8;
/// Largest accepted guest memory size in MiB (1 TiB).
pub const MAX_MEM_MIB: u32 = 1024 * 1024;
/// Largest vCPU count the VMM supports: APIC ids are 8 bits and the IOAPIC takes the id after
/// the last vCPU. KVM's own limit is checked when the VM is created.
pub const MAX_VCPUS: u8 = 254;

/// Where the guest's serial console (ttyS0) goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleConfig {
    /// The VMM's standard output.
    #[default]
    Stdout,
    /// A file, created or truncated.
    File(PathBuf),
    /// Discarded.
    None,
}

impl FromStr for ConsoleConfig {
    type Err = String;

    /// Parses `stdout`, `none` or `file:PATH`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(ConsoleConfig::Stdout),
            "none" => Ok(ConsoleConfig::None),
            _ => match s.strip_prefix("file:") {
                Some("") => Err("console file path is empty (use file:PATH)".to_string()),
                Some(p) => Ok(ConsoleConfig::File(PathBuf::from(p))),
                None => Err(format!(
                    "invalid console {s:?}: expected stdout, none or file:PATH"
                )),
            },
        }
    }
}

impl fmt::Display for ConsoleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleConfig::Stdout => write!(f, "stdout"),
            ConsoleConfig::None => write!(f, "none"),
            ConsoleConfig::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// Everything needed to boot one microVM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// Uncompressed ELF kernel (`vmlinux`).
    pub kernel: PathBuf,
    /// Optional initramfs (newc cpio, possibly compressed).
    pub initrd: Option<PathBuf>,
    /// Kernel command line, passed as is.
    pub cmdline: String,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Serial console destination.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// virtio-vsock device with hybrid vsock on Unix sockets.
    #[serde(default)]
    pub vsock: Option<VsockConfig>,
    /// virtio-fs devices, each backed by a vhost-user-fs daemon (virtiofsd).
    #[serde(default)]
    pub fs: Vec<FsConfig>,
    /// virtio-blk devices, in order (the guest's vda, vdb, ...).
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
}

/// Most disks per VM (each takes a virtio-mmio slot and an IRQ: see the IRQ budget in
/// [`crate::device_manager`]).
pub const MAX_DISKS: usize = 16;
/// Most virtio-fs devices per VM (with vsock and 16 disks, the virtio IRQs, 5 to 23, are all
/// taken).
pub const MAX_FS: usize = 2;

/// A virtio-blk device on a raw image file (or block device).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskConfig {
    /// The image.
    pub path: PathBuf,
    /// The guest may only read (VIRTIO_BLK_F_RO; the image is opened read-only).
    #[serde(default)]
    pub read_only: bool,
}

impl FromStr for DiskConfig {
    type Err = String;

    /// Parses `PATH` or `PATH,ro`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (path, read_only) = match s.rsplit_once(',') {
            Some((path, "ro")) => (path, true),
            Some((_, opt)) => {
                return Err(format!(
                    "invalid disk option {opt:?} in {s:?}: expected PATH or PATH,ro"
                ))
            }
            None => (s, false),
        };
        if path.is_empty() {
            return Err(format!(
                "disk path is empty in {s:?}: expected PATH or PATH,ro"
            ));
        }
        Ok(DiskConfig {
            path: PathBuf::from(path),
            read_only,
        })
    }
}

/// Default guest CID.
pub const DEFAULT_GUEST_CID: u32 = 3;
/// Longest hybrid vsock socket path: `<path>_<port>` must fit a Unix socket address.
pub const MAX_UDS_PATH: usize = 96;

/// A virtio-vsock device. Host clients connect to `uds_path` (and send `CONNECT <port>\n`);
/// guest connections to host port P go to the Unix socket `<uds_path>_<P>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockConfig {
    /// The guest's CID (3 or more).
    pub guest_cid: u32,
    /// The listening socket's path.
    pub uds_path: PathBuf,
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
    /// Reserved guest CID (0, 1, 2 or u32::MAX).
    #[error("vsock guest CID {0} is reserved: use 3 or more (below 4294967295)")]
    BadGuestCid(u32),
    /// Empty or too long vsock socket path.
    #[error("vsock socket path must be non-empty and at most {MAX_UDS_PATH} bytes")]
    BadUdsPath,
    /// An invalid virtio-fs device.
    #[error("virtio-fs: {0}")]
    Fs(String),
    /// A disk without a path.
    #[error("a disk has an empty path")]
    EmptyDiskPath,
    /// More disks than supported.
    #[error("{0} disks given but at most {MAX_DISKS} are supported")]
    TooManyDisks(usize),
}

impl VmConfig {
    /// A configuration with the defaults for everything but the kernel.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        VmConfig {
            kernel: kernel.into(),
            initrd: None,
            cmdline: DEFAULT_CMDLINE.to_string(),
            mem_mib: DEFAULT_MEM_MIB,
            vcpus: 1,
            console: ConsoleConfig::Stdout,
            vsock: None,
            fs: Vec::new(),
            disks: Vec::new(),
        }
    }

    /// Checks the values that can be checked without touching the host. KVM's vCPU limit is
    /// checked when the VM is created.
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
        if let Some(v) = &self.vsock {
            if v.guest_cid < 3 || v.guest_cid == u32::MAX {
                return Err(ConfigError::BadGuestCid(v.guest_cid));
            }
            let len = v.uds_path.as_os_str().len();
            if len == 0 || len > MAX_UDS_PATH {
                return Err(ConfigError::BadUdsPath);
            }
        }
        if self.disks.len() > MAX_DISKS {
            return Err(ConfigError::TooManyDisks(self.disks.len()));
        }
        if self.disks.iter().any(|d| d.path.as_os_str().is_empty()) {
            return Err(ConfigError::EmptyDiskPath);
        }
        if self.fs.len() > MAX_FS {
            return Err(ConfigError::Fs(format!(
                "{} devices given but at most {MAX_FS} are supported",
                self.fs.len()
            )));
        }
        for (i, fs) in self.fs.iter().enumerate() {
            fs.validate().map_err(ConfigError::Fs)?;
            if self.fs[..i].iter().any(|other| other.tag == fs.tag) {
                return Err(ConfigError::Fs(format!("tag {} used twice", fs.tag)));
            }
        }
        Ok(())
    }

    /// Guest memory size in bytes.
    pub fn mem_bytes(&self) -> u64 {
        u64::from(self.mem_mib) << 20
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = VmConfig::new("/vmlinux");
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.mem_bytes(), 128 << 20);
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = VmConfig::new("/vmlinux");
        c.mem_mib = 0;
        assert_eq!(c.validate(), Err(ConfigError::MemTooSmall(0)));
        c.mem_mib = MAX_MEM_MIB + 1;
        assert_eq!(c.validate(), Err(ConfigError::MemTooLarge(MAX_MEM_MIB + 1)));
        c.mem_mib = 128;
        c.vcpus = 0;
        assert_eq!(c.validate(), Err(ConfigError::NoVcpus));
        c.vcpus = 255;
        assert_eq!(c.validate(), Err(ConfigError::TooManyVcpus(255)));
        c.vcpus = 2;
        c.cmdline = "console=ttyS0\0".into();
        assert_eq!(c.validate(), Err(ConfigError::BadCmdline));
        c.cmdline = "a\nb".into();
        assert_eq!(c.validate(), Err(ConfigError::BadCmdline));
        let c = VmConfig::new("");
        assert_eq!(c.validate(), Err(ConfigError::NoKernel));
    }

    #[test]
    fn vsock_config() {
        let mut c = VmConfig::new("/k");
        c.vsock = Some(VsockConfig {
            guest_cid: DEFAULT_GUEST_CID,
            uds_path: "/run/v.sock".into(),
        });
        assert_eq!(c.validate(), Ok(()));
        let s = serde_json::to_string(&c).unwrap();
        assert!(s.contains("\"guest_cid\":3"));
        assert_eq!(serde_json::from_str::<VmConfig>(&s).unwrap(), c);
        for cid in [0, 1, 2, u32::MAX] {
            c.vsock.as_mut().unwrap().guest_cid = cid;
            assert_eq!(c.validate(), Err(ConfigError::BadGuestCid(cid)));
        }
        c.vsock = Some(VsockConfig {
            guest_cid: 3,
            uds_path: "x".repeat(MAX_UDS_PATH + 1).into(),
        });
        assert_eq!(c.validate(), Err(ConfigError::BadUdsPath));
        // Older configurations without the field still parse.
        let old = r#"{"kernel":"/k","initrd":null,"cmdline":"x","mem_mib":128,"vcpus":1}"#;
        assert_eq!(serde_json::from_str::<VmConfig>(old).unwrap().vsock, None);
    }

    #[test]
    fn fs_config() {
        let mut c = VmConfig::new("/k");
        c.fs.push(FsConfig::new("a", "/run/a.sock"));
        c.fs.push(FsConfig::new("b", "/run/b.sock"));
        assert_eq!(c.validate(), Ok(()));
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<VmConfig>(&s).unwrap(), c);
        c.fs[1].tag = "a".into();
        assert_eq!(
            c.validate(),
            Err(ConfigError::Fs("tag a used twice".into()))
        );
        c.fs[1].tag = String::new();
        assert!(matches!(c.validate(), Err(ConfigError::Fs(_))));
        // Older configurations without the field still parse, with no devices.
        let old = r#"{"kernel":"/k","initrd":null,"cmdline":"x","mem_mib":128,"vcpus":1}"#;
        assert!(serde_json::from_str::<VmConfig>(old).unwrap().fs.is_empty());
        c.fs[1].tag = "b".into();
        c.fs.push(FsConfig::new("c", "/run/c.sock"));
        assert_eq!(
            c.validate(),
            Err(ConfigError::Fs(
                "3 devices given but at most 2 are supported".into()
            ))
        );
    }

    #[test]
    fn disk_config() {
        assert_eq!(
            "/a/b.img".parse(),
            Ok(DiskConfig {
                path: "/a/b.img".into(),
                read_only: false
            })
        );
        assert_eq!(
            "/a,b.img,ro".parse(),
            Ok(DiskConfig {
                path: "/a,b.img".into(),
                read_only: true
            })
        );
        let e = "/a.img,rw".parse::<DiskConfig>().unwrap_err();
        assert!(e.contains("invalid disk option \"rw\""), "{e}");
        assert!("".parse::<DiskConfig>().is_err());
        assert!(",ro".parse::<DiskConfig>().is_err());

        let mut c = VmConfig::new("/k");
        c.disks.push("/d.img,ro".parse().unwrap());
        assert_eq!(c.validate(), Ok(()));
        let s = serde_json::to_string(&c).unwrap();
        assert!(
            s.contains(r#""disks":[{"path":"/d.img","read_only":true}]"#),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<VmConfig>(&s).unwrap(), c);
        let d: DiskConfig = serde_json::from_str(r#"{"path":"/x"}"#).unwrap();
        assert!(!d.read_only);
        c.disks = vec![c.disks[0].clone(); MAX_DISKS + 1];
        assert_eq!(c.validate(), Err(ConfigError::TooManyDisks(MAX_DISKS + 1)));
        c.disks = vec![DiskConfig {
            path: "".into(),
            read_only: false,
        }];
        assert_eq!(c.validate(), Err(ConfigError::EmptyDiskPath));
        // Older configurations without the field still parse.
        let old = r#"{"kernel":"/k","initrd":null,"cmdline":"x","mem_mib":128,"vcpus":1}"#;
        assert!(serde_json::from_str::<VmConfig>(old)
            .unwrap()
            .disks
            .is_empty());
    }

    #[test]
    fn error_messages_are_clear() {
        assert_eq!(
            ConfigError::NoVcpus.to_string(),
            "the VM needs at least 1 vCPU"
        );
        assert!(ConfigError::MemTooSmall(0).to_string().contains("0 MiB"));
    }

    #[test]
    fn console_parses() {
        assert_eq!("stdout".parse(), Ok(ConsoleConfig::Stdout));
        assert_eq!("none".parse(), Ok(ConsoleConfig::None));
        assert_eq!(
            "file:/tmp/x".parse(),
            Ok(ConsoleConfig::File(PathBuf::from("/tmp/x")))
        );
        assert!("file:".parse::<ConsoleConfig>().is_err());
        assert!("tty".parse::<ConsoleConfig>().is_err());
        assert_eq!(ConsoleConfig::File("/a".into()).to_string(), "file:/a");
    }

    #[test]
    fn serde_round_trip() {
        let mut c = VmConfig::new("/k");
        c.console = ConsoleConfig::File("/log".into());
        let s = serde_json::to_string(&c).unwrap();
        let back: VmConfig = serde_json::from_str(&s).unwrap();
        assert_eq!(back, c);
    }
}
