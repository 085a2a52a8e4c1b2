//! Where the runtime finds its helpers (sandpod-vmm, virtiofsd) and the guest image (kernel,
//! initramfs), and where it keeps sandbox state.
//!
//! Each is taken from an environment variable if set, else from the config file, else next to
//! the running binary (the layout of `build/`: `bin/` holds the binaries, `guest/` the kernel and
//! initramfs), else from the installed layout relative to the binary (`make install`:
//! `$PREFIX/bin`, `$PREFIX/libexec/sandpod`, `$PREFIX/share/sandpod`), else `/usr`'s.
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::HypervisorConfig;

/// The default root of the sandboxes' state directories (runc uses /run/runc).
pub const DEFAULT_ROOT: &str = "/run/sandpod";

/// A required file was not found anywhere it is looked for.
#[derive(Debug, Error)]
#[error("{what} not found (looked at {}); set {env} to its path", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
pub struct NotFound {
    pub what: &'static str,
    pub env: &'static str,
    pub tried: Vec<PathBuf>,
}

/// The files a sandbox needs from the installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimePaths {
    pub vmm: PathBuf,
    pub virtiofsd: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

impl RuntimePaths {
    /// Resolves every path; the first missing one is the error.
    pub fn discover(config: &HypervisorConfig) -> Result<RuntimePaths, NotFound> {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        Self::discover_from(exe_dir.as_deref(), config, |k| {
            std::env::var_os(k).map(PathBuf::from)
        })
    }

    /// [`RuntimePaths::discover`] with the binary's directory and the environment given.
    pub fn discover_from(
        exe_dir: Option<&Path>,
        config: &HypervisorConfig,
        env: impl Fn(&str) -> Option<PathBuf>,
    ) -> Result<RuntimePaths, NotFound> {
        let prefix = exe_dir.and_then(Path::parent);
        let guest_dir = prefix.map(|p| p.join("guest"));
        let libexec = prefix.map(|p| p.join("libexec/sandpod"));
        let share = prefix.map(|p| p.join("share/sandpod"));
        let find = |what,
                    var: &'static str,
                    configured: &Option<PathBuf>,
                    beside: Option<PathBuf>,
                    relative: Option<PathBuf>,
                    installed: &str| {
            let mut tried = Vec::new();
            if let Some(p) = env(var).or_else(|| configured.clone()) {
                // An explicit setting is used as is or fails: no silent fallback.
                return if p.is_file() {
                    Ok(p)
                } else {
                    Err(NotFound {
                        what,
                        env: var,
                        tried: vec![p],
                    })
                };
            }
            for p in beside
                .into_iter()
                .chain(relative)
                .chain([PathBuf::from(installed)])
            {
                if p.is_file() {
                    return Ok(p);
                }
                tried.push(p);
            }
            Err(NotFound {
                what,
                env: var,
                tried,
            })
        };
        Ok(RuntimePaths {
            vmm: find(
                "sandpod-vmm",
                "SANDPOD_VMM",
                &config.vmm,
                exe_dir.map(|d| d.join("sandpod-vmm")),
                libexec.as_ref().map(|d| d.join("sandpod-vmm")),
                "/usr/libexec/sandpod/sandpod-vmm",
            )?,
            virtiofsd: find(
                "virtiofsd",
                "SANDPOD_VIRTIOFSD",
                &config.virtiofsd,
                exe_dir.map(|d| d.join("virtiofsd")),
                libexec.as_ref().map(|d| d.join("virtiofsd")),
                "/usr/libexec/sandpod/virtiofsd",
            )?,
            kernel: find(
                "the guest kernel",
                "SANDPOD_KERNEL",
                &config.kernel,
                guest_dir.as_ref().map(|d| d.join("vmlinux")),
                share.as_ref().map(|d| d.join("vmlinux")),
                "/usr/share/sandpod/vmlinux",
            )?,
            initrd: find(
                "the guest initramfs",
                "SANDPOD_INITRD",
                &config.initrd,
                guest_dir.as_ref().map(|d| d.join("initramfs.cpio")),
                share.as_ref().map(|d| d.join("initramfs.cpio")),
                "/usr/share/sandpod/initramfs.cpio",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory laid out like build/: bin/{sandpod-vmm,virtiofsd}, guest/{vmlinux,initramfs.cpio}.
    fn build_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "bin/sandpod-vmm",
            "bin/virtiofsd",
            "guest/vmlinux",
            "guest/initramfs.cpio",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        d
    }

    #[test]
    fn finds_files_beside_the_binary() {
        let d = build_dir();
        let none = HypervisorConfig::default();
        let p = RuntimePaths::discover_from(Some(&d.path().join("bin")), &none, |_| None).unwrap();
        assert_eq!(p.kernel, d.path().join("guest/vmlinux"));
        assert_eq!(p.virtiofsd, d.path().join("bin/virtiofsd"));
    }

    #[test]
    fn finds_the_installed_layout_and_the_config_wins_over_it() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "bin/sandpod",
            "libexec/sandpod/sandpod-vmm",
            "libexec/sandpod/virtiofsd",
            "share/sandpod/vmlinux",
            "share/sandpod/initramfs.cpio",
            "other/vmlinux",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let bin = d.path().join("bin");
        let none = HypervisorConfig::default();
        let p = RuntimePaths::discover_from(Some(&bin), &none, |_| None).unwrap();
        assert_eq!(p.vmm, d.path().join("libexec/sandpod/sandpod-vmm"));
        assert_eq!(p.initrd, d.path().join("share/sandpod/initramfs.cpio"));
        let cfg = HypervisorConfig {
            kernel: Some(d.path().join("other/vmlinux")),
            ..HypervisorConfig::default()
        };
        let p = RuntimePaths::discover_from(Some(&bin), &cfg, |_| None).unwrap();
        assert_eq!(p.kernel, d.path().join("other/vmlinux"));
    }

    #[test]
    fn env_overrides_and_missing_files_are_named() {
        let d = build_dir();
        let missing = d.path().join("nope");
        let none = HypervisorConfig::default();
        let err = RuntimePaths::discover_from(Some(&d.path().join("bin")), &none, |k| {
            (k == "SANDPOD_KERNEL").then(|| missing.clone())
        })
        .unwrap_err();
        assert_eq!(err.env, "SANDPOD_KERNEL");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
