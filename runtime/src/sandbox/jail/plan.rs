//! The jail's plan: what the VMM's root holds and where each thing comes from, its ids and
//! rlimits, and the VM's configuration as the jailed VMM sees it. Pure: made by the runtime
//! (which writes it to `<state>/jail.json`), carried out by `sandpod jail` ([`super::exec`]).
use std::path::{Path, PathBuf};

use sandpod_vmconfig::{ConsoleConfig, VmConfig};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where the VMM's directory (`<state>/j`: its sockets and console) is in the jail.
pub const JAIL_VM_DIR: &str = "/vm";
/// The VM's configuration in the jail (written by `sandpod jail`, read-only).
pub const JAIL_CONFIG: &str = "/vm.json";
/// The guest kernel and initramfs in the jail (read-only binds).
pub const JAIL_KERNEL: &str = "/kernel";
pub const JAIL_INITRD: &str = "/initrd";
/// KVM's device, made anew in the jail for the jail's uid.
pub const KVM_DEVICE: &str = "/dev/kvm";
/// The VMM's open files (its sockets, eventfds, vsock connections).
pub const RLIMIT_NOFILE: u64 = 4096;
/// Bytes above the largest file the VMM sizes (its guest RAM memfd, the console file).
pub const RLIMIT_FSIZE_SLACK: u64 = 1 << 20;
/// Host directories of shared libraries, bound read-only for a dynamically linked VMM (a
/// symlink among them, like Debian's `/lib -> usr/lib`, is made again as a symlink).
pub const LIBRARY_DIRS: [&str; 4] = ["/lib", "/lib64", "/usr/lib", "/usr/lib64"];

/// The jail's uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailIds {
    pub uid: u32,
    pub gid: u32,
}

/// A host file or directory shown in the jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path in the jail.
    pub target: PathBuf,
    /// Read-write (only the VMM's directory); else read-only.
    #[serde(default)]
    pub writable: bool,
    /// Files may be executed or mapped executable (the shared libraries); else noexec.
    #[serde(default)]
    pub exec: bool,
}

/// A character device made again in the jail: a node with `host`'s device number at `path`,
/// owned by the jail's uid and gid, mode 0600.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The node on the host whose device number is copied.
    pub host: PathBuf,
    /// Absolute path in the jail.
    pub path: PathBuf,
}

/// A symbolic link in the jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symlink {
    pub path: PathBuf,
    pub target: PathBuf,
}

/// What the jail's libraries look like on the host (see [`LIBRARY_DIRS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostLibDir {
    Dir(PathBuf),
    Link(PathBuf, PathBuf),
}

/// The VMM's resource limits (soft = hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimits {
    pub nofile: u64,
    pub core: u64,
    /// Bounds any file it writes: its console (rotated at `console_limits.max_file_bytes`) and
    /// its guest RAM (a memfd of `mem_mib`, sized with ftruncate, which RLIMIT_FSIZE bounds).
    pub fsize: u64,
}

impl Rlimits {
    /// The limits of a VMM running `vm`.
    pub fn for_vm(vm: &VmConfig) -> Rlimits {
        let ram = u64::from(vm.mem_mib) << 20;
        Rlimits {
            nofile: RLIMIT_NOFILE,
            core: 0,
            fsize: ram.max(vm.console_limits.max_file_bytes) + RLIMIT_FSIZE_SLACK,
        }
    }
}

/// Everything `sandpod jail` does, in order: a tmpfs at `root` (the jail's own mount
/// namespace), `devices`, `binds`, `symlinks`, `program` bound read-only (the state root's exec-only
/// copy of the VMM binary, [`super::program_copy`]), `vm_config` as
/// `/vm.json`; the tmpfs made read-only; pivot_root; `rlimits`; `groups`, `gid`, `uid`; every
/// capability dropped, no_new_privs; exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailPlan {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the host's kvm group, if /dev/kvm is group-accessible).
    pub groups: Vec<u32>,
    /// The host directory the jail's tmpfs is mounted on (in the jail's mount namespace only).
    pub root: PathBuf,
    /// The VMM binary on the host: the state root's exec-only copy of it.
    pub program: PathBuf,
    /// Its arguments (`--config /vm.json`).
    pub args: Vec<String>,
    /// Device nodes made again in the jail (the host's /dev/kvm at /dev/kvm).
    pub devices: Vec<Device>,
    pub binds: Vec<Bind>,
    pub symlinks: Vec<Symlink>,
    pub vm_config: VmConfig,
    pub rlimits: Rlimits,
}

/// A VM configuration the jail cannot show.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{what} {path} is not in the VMM's directory {dir}")]
    OutsideVmDir {
        what: &'static str,
        path: PathBuf,
        dir: PathBuf,
    },
    #[error("the VMM binary {0} has no file name")]
    Program(PathBuf),
}

/// What the plan is made from.
#[derive(Debug, Clone)]
pub struct PlanInputs<'a> {
    pub ids: JailIds,
    /// The VM in host paths (what `vm.json` holds).
    pub vm: &'a VmConfig,
    /// The VMM binary.
    pub program: &'a Path,
    /// The VMM's directory on the host (`<state>/j`): its sockets and console file are there.
    pub vm_dir: &'a Path,
    /// The jail's mount point on the host (`<state>/jail`).
    pub root: &'a Path,
    /// The group of the host's /dev/kvm, if it grants that group read-write access.
    pub kvm_group: Option<u32>,
    /// The library directories to show (empty for a static VMM).
    pub libs: &'a [HostLibDir],
}

fn in_vm_dir(what: &'static str, path: &Path, dir: &Path) -> Result<PathBuf, PlanError> {
    match path.strip_prefix(dir) {
        Ok(rel) if !rel.as_os_str().is_empty() => Ok(Path::new(JAIL_VM_DIR).join(rel)),
        _ => Err(PlanError::OutsideVmDir {
            what,
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
        }),
    }
}

impl JailPlan {
    /// The plan of a VMM running `inputs.vm`.
    pub fn new(inputs: &PlanInputs<'_>) -> Result<JailPlan, PlanError> {
        let host = inputs.vm;
        let mut vm = host.clone();
        let ro = |source: &Path, target: &str| Bind {
            source: source.to_path_buf(),
            target: target.into(),
            writable: false,
            exec: false,
        };
        let mut binds = vec![Bind {
            source: inputs.vm_dir.to_path_buf(),
            target: JAIL_VM_DIR.into(),
            writable: true,
            exec: false,
        }];
        binds.push(ro(&host.kernel, JAIL_KERNEL));
        vm.kernel = JAIL_KERNEL.into();
        if let Some(initrd) = &host.initrd {
            binds.push(ro(initrd, JAIL_INITRD));
            vm.initrd = Some(JAIL_INITRD.into());
        }
        if let ConsoleConfig::File(p) = &host.console {
            vm.console = ConsoleConfig::File(in_vm_dir("the console file", p, inputs.vm_dir)?);
        }
        // A template's snapshot is written to, or restored from, a directory of the VMM's.
        if let Some(p) = &host.snapshot_to {
            vm.snapshot_to = Some(in_vm_dir("the snapshot directory", p, inputs.vm_dir)?);
        }
        if let Some(p) = &host.restore_from {
            vm.restore_from = Some(in_vm_dir("the template directory", p, inputs.vm_dir)?);
        }
        if let (Some(v), Some(host_v)) = (vm.vsock.as_mut(), host.vsock.as_ref()) {
            v.uds_path = in_vm_dir("the vsock socket", &host_v.uds_path, inputs.vm_dir)?;
        }
        for (i, fs) in vm.fs.iter_mut().enumerate() {
            // virtiofsd's socket stays in the state directory (the VMM cannot replace it).
            let target = format!("/fs{i}.sock");
            binds.push(ro(&fs.socket, &target));
            fs.socket = target.into();
        }
        for (i, d) in vm.disks.iter_mut().enumerate() {
            let target = format!("/disk{i}");
            binds.push(Bind {
                writable: !d.read_only,
                ..ro(&d.path, &target)
            });
            d.path = target.into();
        }
        let mut symlinks = Vec::new();
        for lib in inputs.libs {
            match lib {
                HostLibDir::Dir(d) => binds.push(Bind {
                    source: d.clone(),
                    target: d.clone(),
                    writable: false,
                    exec: true,
                }),
                HostLibDir::Link(path, target) => symlinks.push(Symlink {
                    path: path.clone(),
                    target: target.clone(),
                }),
            }
        }
        if inputs.program.file_name().is_none() {
            return Err(PlanError::Program(inputs.program.to_path_buf()));
        }
        Ok(JailPlan {
            uid: inputs.ids.uid,
            gid: inputs.ids.gid,
            groups: inputs.kvm_group.into_iter().collect(),
            root: inputs.root.to_path_buf(),
            program: inputs.program.to_path_buf(),
            args: vec!["--config".into(), JAIL_CONFIG.into()],
            devices: vec![Device {
                host: KVM_DEVICE.into(),
                path: KVM_DEVICE.into(),
            }],
            binds,
            symlinks,
            rlimits: Rlimits::for_vm(host),
            vm_config: vm,
        })
    }

    /// The VMM in the jail: `/<its file name>`.
    pub fn program_in_jail(&self) -> PathBuf {
        Path::new("/").join(self.program.file_name().unwrap_or("sandpod-vmm".as_ref()))
    }

    /// The VMM's command line in the jail.
    pub fn argv(&self) -> Vec<PathBuf> {
        std::iter::once(self.program_in_jail())
            .chain(self.args.iter().map(PathBuf::from))
            .collect()
    }
}

/// Whether the ELF executable `bytes` (its first few KiB) names a program interpreter: a
/// dynamically linked program needs the host's libraries in the jail.
pub fn elf_is_dynamic(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    // 64-bit little-endian ELF only (x86_64); anything else: assume dynamic (binds the libs).
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return true;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return true;
    };
    (0..usize::from(phnum)).any(|i| {
        let o = usize::try_from(phoff)
            .ok()
            .and_then(|p| p.checked_add(i * usize::from(phentsize)));
        // A header past what was read: assume dynamic.
        o.and_then(u32_at).is_none_or(|t| t == PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandpod_vmconfig::{DiskConfig, FsConfig, VsockConfig};

    fn host_vm() -> VmConfig {
        VmConfig {
            initrd: Some("/usr/share/sandpod/initramfs.cpio".into()),
            mem_mib: 384,
            console: ConsoleConfig::File("/run/sandpod/c/j/console.log".into()),
            vsock: Some(VsockConfig {
                guest_cid: 3,
                uds_path: "/run/sandpod/c/j/v".into(),
            }),
            fs: vec![FsConfig::new("sandpod", "/run/sandpod/c/fs.sock")],
            ..VmConfig::new("/usr/share/sandpod/vmlinux")
        }
    }

    fn inputs<'a>(vm: &'a VmConfig, libs: &'a [HostLibDir]) -> PlanInputs<'a> {
        PlanInputs {
            ids: JailIds {
                uid: 65534,
                gid: 65534,
            },
            vm,
            program: Path::new("/usr/libexec/sandpod/sandpod-vmm"),
            vm_dir: Path::new("/run/sandpod/c/j"),
            root: Path::new("/run/sandpod/c/jail"),
            kvm_group: Some(993),
            libs,
        }
    }

    #[test]
    fn binds_and_the_vm_in_jail_paths() {
        let host = host_vm();
        let libs = [
            HostLibDir::Link("/lib".into(), "usr/lib".into()),
            HostLibDir::Dir("/usr/lib".into()),
        ];
        let p = JailPlan::new(&inputs(&host, &libs)).unwrap();
        let b = |s: &str, t: &str, writable, exec| Bind {
            source: s.into(),
            target: t.into(),
            writable,
            exec,
        };
        assert_eq!(
            p.binds,
            vec![
                b("/run/sandpod/c/j", "/vm", true, false),
                b("/usr/share/sandpod/vmlinux", "/kernel", false, false),
                b("/usr/share/sandpod/initramfs.cpio", "/initrd", false, false),
                b("/run/sandpod/c/fs.sock", "/fs0.sock", false, false),
                b("/usr/lib", "/usr/lib", false, true),
            ]
        );
        assert_eq!(
            p.symlinks,
            vec![Symlink {
                path: "/lib".into(),
                target: "usr/lib".into()
            }]
        );
        // Nothing of the state directory but the VMM's own directory and virtiofsd's socket.
        assert!(!p.binds.iter().any(|b| b.source.ends_with("shared")));
        assert_eq!(
            p.devices,
            vec![Device {
                host: "/dev/kvm".into(),
                path: "/dev/kvm".into()
            }]
        );
        assert_eq!(
            (p.uid, p.gid, p.groups.as_slice()),
            (65534, 65534, &[993][..])
        );
        let vm = &p.vm_config;
        assert_eq!(vm.kernel, PathBuf::from("/kernel"));
        assert_eq!(vm.initrd, Some("/initrd".into()));
        assert_eq!(vm.console, ConsoleConfig::File("/vm/console.log".into()));
        assert_eq!(vm.vsock.as_ref().unwrap().uds_path, PathBuf::from("/vm/v"));
        assert_eq!(vm.fs[0].socket, PathBuf::from("/fs0.sock"));
        assert_eq!(
            (vm.mem_mib, vm.cmdline.as_str()),
            (384, host.cmdline.as_str())
        );
        assert_eq!(vm.validate(), Ok(()));
        assert_eq!(
            p.argv(),
            ["/sandpod-vmm", "--config", "/vm.json"].map(PathBuf::from)
        );
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<JailPlan>(&json).unwrap(), p);
    }

    #[test]
    fn dockers_long_state_directories_fit_in_the_jail() {
        // Docker 20.10's state root for a runtime named "kata", and a 64-character id.
        let dir = PathBuf::from("/var/run/docker/runtime-kata/moby").join("f".repeat(64));
        let j = dir.join("j");
        let mut host = host_vm();
        host.console = ConsoleConfig::File(j.join("console.log"));
        host.vsock.as_mut().unwrap().uds_path = j.join("v");
        host.fs[0].socket = dir.join("fs.sock");
        // The host's path is too long for the VMM's vsock limit (room for `_<5-digit port>`)...
        assert!(host.validate().is_err());
        let p = JailPlan::new(&PlanInputs {
            vm_dir: &j,
            ..inputs(&host, &[])
        })
        .unwrap();
        // ...the jail's is not.
        assert_eq!(p.vm_config.validate(), Ok(()));
    }

    #[test]
    fn disks_keep_their_mode() {
        let mut host = host_vm();
        host.disks = vec![
            DiskConfig {
                path: "/img/a".into(),
                read_only: true,
            },
            DiskConfig {
                path: "/img/b".into(),
                read_only: false,
            },
        ];
        let p = JailPlan::new(&inputs(&host, &[])).unwrap();
        let disks: Vec<_> = p
            .binds
            .iter()
            .filter(|b| b.source.starts_with("/img"))
            .collect();
        assert_eq!(disks.len(), 2);
        assert!(!disks[0].writable && disks[1].writable);
        assert_eq!(p.vm_config.disks[1].path, PathBuf::from("/disk1"));
    }

    #[test]
    fn sockets_outside_the_vmm_directory_are_refused() {
        let mut host = host_vm();
        host.vsock.as_mut().unwrap().uds_path = "/run/sandpod/c/v".into();
        let e = JailPlan::new(&inputs(&host, &[])).unwrap_err();
        assert!(matches!(e, PlanError::OutsideVmDir { .. }), "{e}");
        let mut host = host_vm();
        host.console = ConsoleConfig::File("/run/sandpod/c/j".into());
        assert!(JailPlan::new(&inputs(&host, &[])).is_err());
    }

    #[test]
    fn a_templates_snapshot_and_restore_directories_are_the_jails_view() {
        let mut host = host_vm();
        host.restore_from = Some("/run/sandpod/c/j/t".into());
        let p = JailPlan::new(&inputs(&host, &[])).unwrap();
        assert_eq!(p.vm_config.restore_from, Some(PathBuf::from("/vm/t")));
        assert_eq!(p.vm_config.snapshot_to, None);
        // Reached through the VMM's own directory: no bind of its own.
        assert!(!p.binds.iter().any(|b| b.source.ends_with("t")));
        let mut host = host_vm();
        host.snapshot_to = Some("/run/sandpod/c/j/s".into());
        let p = JailPlan::new(&inputs(&host, &[])).unwrap();
        assert_eq!(p.vm_config.snapshot_to, Some(PathBuf::from("/vm/s")));
        // Anywhere else the jail cannot show it.
        host.snapshot_to = Some("/run/sandpod/templates/x".into());
        let e = JailPlan::new(&inputs(&host, &[])).unwrap_err();
        assert!(e.to_string().contains("snapshot directory"), "{e}");
        let mut host = host_vm();
        host.restore_from = Some("/run/sandpod/c/j".into());
        assert!(JailPlan::new(&inputs(&host, &[])).is_err());
    }

    #[test]
    fn rlimits() {
        let host = host_vm();
        let r = Rlimits::for_vm(&host);
        assert_eq!(r.nofile, 4096);
        assert_eq!(r.core, 0);
        // Above the guest RAM memfd (384 MiB) and the console cap (1 MiB).
        assert_eq!(r.fsize, (384 << 20) + (1 << 20));
        assert!(r.fsize > host.console_limits.max_file_bytes);
    }

    #[test]
    fn static_and_dynamic_elf() {
        let me = std::fs::read("/proc/self/exe").unwrap();
        // The test binary is linked dynamically (glibc).
        assert!(elf_is_dynamic(&me[..me.len().min(8192)]));
        // A 64-bit ELF header with one PT_LOAD program header and no PT_INTERP.
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes());
        assert!(!elf_is_dynamic(&elf));
        elf[0x40..0x44].copy_from_slice(&3u32.to_le_bytes());
        assert!(elf_is_dynamic(&elf));
        assert!(elf_is_dynamic(b"#!/bin/sh\n"));
    }
}
