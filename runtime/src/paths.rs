//! Where the runtime finds its helpers (sandpod-vmm, virtiofsd) and the guest image (kernel,
//! initramfs), and where it keeps sandbox state.
//!
//! Each is taken from an environment variable if set, else next to the running binary (the layout
//! of `build/`: `bin/` holds the binaries, `guest/` the kernel and initramfs), else from the
//! installed locations (`/usr/libexec/sandpod`, `/usr/share/sandpod`).
use std::path::{Path, PathBuf};

use thiserror::Error;

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
    pub fn discover() -> Result<RuntimePaths, NotFound> {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        Self::discover_from(exe_dir.as_deref(), |k| {
            std::env::var_os(k).map(PathBuf::from)
        })
    }

    /// [`RuntimePaths::discover`] with the binary's directory and the environment given.
    pub fn discover_from(
        exe_dir: Option<&Path>,
        env: impl Fn(&str) -> Option<PathBuf>,
    ) -> Result<RuntimePaths, NotFound> {
        let guest_dir = exe_dir.and_then(Path::parent).map(|p| p.join("guest"));
        let find = |what, var: &'static str, beside: Option<PathBuf>, installed: &str| {
            let mut tried = Vec::new();
            if let Some(p) = env(var) {
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
            for p in beside.into_iter().chain([PathBuf::from(installed)]) {
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
                exe_dir.map(|d| d.join("sandpod-vmm")),
                "/usr/libexec/sandpod/sandpod-vmm",
            )?,
            virtiofsd: find(
                "virtiofsd",
                "SANDPOD_VIRTIOFSD",
                exe_dir.map(|d| d.join("virtiofsd")),
                "/usr/libexec/sandpod/virtiofsd",
            )?,
            kernel: find(
                "the guest kernel",
                "SANDPOD_KERNEL",
                guest_dir.as_ref().map(|d| d.join("vmlinux")),
                "/usr/share/sandpod/vmlinux",
            )?,
            initrd: find(
                "the guest initramfs",
                "SANDPOD_INITRD",
                guest_dir.as_ref().map(|d| d.join("initramfs.cpio")),
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
        let p = RuntimePaths::discover_from(Some(&d.path().join("bin")), |_| None).unwrap();
        assert_eq!(p.kernel, d.path().join("guest/vmlinux"));
        assert_eq!(p.virtiofsd, d.path().join("bin/virtiofsd"));
    }

    #[test]
    fn env_overrides_and_missing_files_are_named() {
        let d = build_dir();
        let missing = d.path().join("nope");
        let err = RuntimePaths::discover_from(Some(&d.path().join("bin")), |k| {
            (k == "SANDPOD_KERNEL").then(|| missing.clone())
        })
        .unwrap_err();
        assert_eq!(err.env, "SANDPOD_KERNEL");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
