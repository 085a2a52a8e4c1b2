//! Where the test host's pieces are and how it is sized; defaults overridable from the
//! environment (`SANDPOD_TESTHOST_*`).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

/// Everything a test-host run needs.
#[derive(Debug, Clone)]
pub struct TestHostConfig {
    /// Directory with `vmlinuz`, `initrd.img` and `rootfs.ext4` (from build-image.sh).
    pub image_dir: PathBuf,
    /// Directory shown read-only at `/sandpod` inside (the build outputs, `build/`).
    pub share_dir: PathBuf,
    /// Scratch space for per-run files (share disk); same file system as `share_dir` if possible.
    pub work_dir: PathBuf,
    pub qemu: PathBuf,
    pub mem_mib: u32,
    pub smp: u32,
    /// Time allowed from QEMU start to the L2's "booted" line.
    pub boot_timeout: Duration,
    /// Time allowed for the command itself.
    pub timeout: Duration,
    /// Runs in all: a hang (boot or command timeout) is retried until this many.
    pub attempts: u32,
    /// Show the L2's console (kernel messages) on stderr.
    pub verbose: bool,
}

fn env_num(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// The repository root (this crate lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Builds the test host image if needed (cached) and returns its directory.
pub fn ensure_image() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("SANDPOD_TESTHOST_IMAGE") {
        return Ok(PathBuf::from(dir));
    }
    let script = repo_root().join("tests/kvm-host/build-image.sh");
    let out = Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(dir) if !dir.trim().is_empty() => Ok(PathBuf::from(dir.trim())),
        _ => bail!("{} printed no image directory", script.display()),
    }
}

impl TestHostConfig {
    /// Defaults, with overrides from `SANDPOD_TESTHOST_{IMAGE,MEM_MIB,SMP,TIMEOUT,BOOT_TIMEOUT,
    /// ATTEMPTS,VERBOSE}`, `SANDPOD_BUILD_DIR` and `SANDPOD_QEMU`.
    pub fn from_env() -> anyhow::Result<Self> {
        let root = repo_root();
        let share_dir = std::env::var_os("SANDPOD_BUILD_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("build"));
        Ok(TestHostConfig {
            image_dir: ensure_image()?,
            work_dir: root.join("target/testhost"),
            share_dir,
            qemu: std::env::var_os("SANDPOD_QEMU")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64")),
            mem_mib: env_num("SANDPOD_TESTHOST_MEM_MIB", 3072)? as u32,
            smp: env_num("SANDPOD_TESTHOST_SMP", 1)? as u32,
            boot_timeout: Duration::from_secs(env_num("SANDPOD_TESTHOST_BOOT_TIMEOUT", 120)?),
            timeout: Duration::from_secs(env_num("SANDPOD_TESTHOST_TIMEOUT", 1800)?),
            attempts: env_num("SANDPOD_TESTHOST_ATTEMPTS", 2)?.max(1) as u32,
            verbose: env_num("SANDPOD_TESTHOST_VERBOSE", 0)? != 0,
        })
    }
}
