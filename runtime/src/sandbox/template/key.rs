//! The template key: a SHA-256 over everything a template snapshot depends on (see
//! [`KeyInputs`]). A template is used only by sandboxes whose key is its own; any change of an
//! input gives another key, hence another template, made on first use.
//!
//! The kernel, initramfs and VMM are identified by their file's metadata (path, device, inode,
//! size, mtime and ctime, in nanoseconds), not by a hash of their contents: hashing ~30 MiB on
//! every sandbox start would cost ~100 ms, a fair part of what a restore saves. Replacing a file
//! (install, rename) gives a new inode; rewriting it in place changes its ctime, which user space
//! cannot set back.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sandpod_vmconfig::{ConsoleConfig, VmConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version of the template format and of this key's inputs: a change of either (what is
/// hashed, what a template directory holds) bumps it.
pub const FORMAT: u32 = 1;

/// A file's identity (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileIdentity {
    /// The identity of the file at `path` (symlinks followed).
    pub fn of(path: &Path) -> std::io::Result<FileIdentity> {
        let m = std::fs::metadata(path)?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Ok(FileIdentity {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }
}

/// What a template depends on (written to its `template.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// [`FORMAT`].
    pub format: u32,
    /// The runtime's version (it writes the template's VM configuration and jail).
    pub runtime: String,
    pub kernel: FileIdentity,
    pub initrd: Option<FileIdentity>,
    pub vmm: FileIdentity,
    /// The VM as a sandbox's `vm.json` has it, its host sides (paths of the kernel, initramfs,
    /// sockets, console, disks, taps) blanked: vCPUs, memory, command line, every device in
    /// order with its guest-visible settings.
    pub vm: VmConfig,
}

/// Why a sandbox's VM cannot start from a template.
pub fn unsuitable(vm: &VmConfig) -> Option<&'static str> {
    if !vm.net.is_empty() {
        // The NIC's MAC is read by the guest's driver when it probes the device.
        return Some("it has a network device");
    }
    if !vm.disks.is_empty() {
        return Some("it has disks");
    }
    if vm.restore_from.is_some() || vm.snapshot_to.is_some() {
        return Some("its configuration already names a snapshot");
    }
    None
}

/// `vm` without what is this sandbox's own on the host.
fn blank_host_sides(vm: &VmConfig) -> VmConfig {
    let mut v = vm.clone();
    v.kernel = PathBuf::new();
    v.initrd = None;
    if let ConsoleConfig::File(_) = v.console {
        v.console = ConsoleConfig::File(PathBuf::new());
    }
    if let Some(vs) = v.vsock.as_mut() {
        vs.uds_path = PathBuf::new();
    }
    for fs in &mut v.fs {
        fs.socket = PathBuf::new();
    }
    for d in &mut v.disks {
        d.path = PathBuf::new();
    }
    for n in &mut v.net {
        n.tap = None;
        n.tap_fd = None;
    }
    v.snapshot_to = None;
    v.restore_from = None;
    v
}

impl KeyInputs {
    /// The inputs of the VM `vm` (host paths, as written to `vm.json` for a cold boot) run by
    /// the VMM binary `vmm`.
    pub fn of(vm: &VmConfig, vmm: &Path) -> std::io::Result<KeyInputs> {
        Ok(KeyInputs {
            format: FORMAT,
            runtime: crate::VERSION.to_string(),
            kernel: FileIdentity::of(&vm.kernel)?,
            initrd: vm.initrd.as_deref().map(FileIdentity::of).transpose()?,
            vmm: FileIdentity::of(vmm)?,
            vm: blank_host_sides(vm),
        })
    }

    /// The key: SHA-256 of the inputs' JSON.
    pub fn key(&self) -> TemplateKey {
        // Serialising plain structs (no maps) cannot fail and is deterministic.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&json);
        TemplateKey(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// A template's key: 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateKey(String);

impl TemplateKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Its first 16 digits (names that must stay short: the build's state directory).
    pub fn short(&self) -> &str {
        &self.0[..16]
    }
    /// A key read back from a directory name: 64 lowercase hex digits.
    pub fn parse(s: &str) -> Option<TemplateKey> {
        (s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| TemplateKey(s.to_string()))
    }
}

impl std::fmt::Display for TemplateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandpod_vmconfig::{FsConfig, NetConfig, VsockConfig};

    struct Files {
        _dir: tempfile::TempDir,
        kernel: PathBuf,
        initrd: PathBuf,
        vmm: PathBuf,
    }

    fn files() -> Files {
        let d = tempfile::tempdir().unwrap();
        let f = |n: &str| {
            let p = d.path().join(n);
            std::fs::write(&p, n).unwrap();
            p
        };
        Files {
            kernel: f("vmlinux"),
            initrd: f("initramfs.cpio"),
            vmm: f("sandpod-vmm"),
            _dir: d,
        }
    }

    fn vm(f: &Files, state_dir: &str) -> VmConfig {
        VmConfig {
            initrd: Some(f.initrd.clone()),
            cmdline: crate::hypervisor::vmm::SANDBOX_CMDLINE.into(),
            mem_mib: 256,
            vcpus: 1,
            console: ConsoleConfig::File(format!("{state_dir}/j/console.log").into()),
            vsock: Some(VsockConfig {
                guest_cid: 3,
                uds_path: format!("{state_dir}/j/v").into(),
            }),
            fs: vec![FsConfig::new("sandpod", format!("{state_dir}/fs.sock"))],
            ..VmConfig::new(f.kernel.clone())
        }
    }

    fn key(f: &Files, vm: &VmConfig) -> TemplateKey {
        KeyInputs::of(vm, &f.vmm).unwrap().key()
    }

    #[test]
    fn stable_across_sandboxes_and_changed_by_every_input() {
        let f = files();
        let base = key(&f, &vm(&f, "/run/sandpod/a"));
        assert_eq!(base.as_str().len(), 64);
        assert_eq!(TemplateKey::parse(base.as_str()), Some(base.clone()));
        // Another sandbox (other sockets and console) and another computation: the same key.
        assert_eq!(key(&f, &vm(&f, "/run/sandpod/b")), base);
        assert_eq!(key(&f, &vm(&f, "/run/sandpod/a")), base);

        let mut changed = Vec::new();
        let mut v = vm(&f, "/a");
        v.vcpus = 2;
        changed.push(("vcpus", key(&f, &v)));
        let mut v = vm(&f, "/a");
        v.mem_mib = 512;
        changed.push(("mem_mib", key(&f, &v)));
        let mut v = vm(&f, "/a");
        v.cmdline.push_str(" debug");
        changed.push(("cmdline", key(&f, &v)));
        let mut v = vm(&f, "/a");
        v.fs.push(FsConfig::new("other", "/a/fs2.sock"));
        changed.push(("devices", key(&f, &v)));
        let mut v = vm(&f, "/a");
        v.vsock.as_mut().unwrap().guest_cid = 4;
        changed.push(("vsock cid", key(&f, &v)));
        let mut v = vm(&f, "/a");
        v.initrd = None;
        changed.push(("no initrd", key(&f, &v)));
        for (what, path) in [
            ("kernel", &f.kernel),
            ("initrd", &f.initrd),
            ("vmm", &f.vmm),
        ] {
            // Rewritten in place, same size: the ctime (and mtime) move.
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::fs::write(path, std::fs::read(path).unwrap()).unwrap();
            changed.push((what, key(&f, &vm(&f, "/a"))));
        }
        let mut seen = vec![base];
        for (what, k) in changed {
            assert!(!seen.contains(&k), "{what} did not change the key");
            seen.push(k);
        }
        // A file moved to another path with the same metadata is another input too.
        let moved = f.kernel.with_file_name("vmlinux2");
        std::fs::rename(&f.kernel, &moved).unwrap();
        let mut v = vm(&f, "/a");
        v.kernel = moved;
        assert!(!seen.contains(&key(&f, &v)));
        assert!(
            KeyInputs::of(&vm(&f, "/a"), &f.vmm).is_err(),
            "a missing kernel"
        );
    }

    #[test]
    fn only_vms_without_a_nic_or_disks_qualify() {
        let f = files();
        let mut v = vm(&f, "/a");
        assert_eq!(unsuitable(&v), None);
        v.net.push(NetConfig {
            tap: None,
            tap_fd: Some(3),
            mac: None,
            mtu: None,
        });
        assert!(unsuitable(&v).unwrap().contains("network"));
        assert_eq!(TemplateKey::parse("abc"), None);
        assert_eq!(TemplateKey::parse(&"A".repeat(64)), None);
    }
}
