//! /dev inside the container: the default devices (bound from the guest's /dev: the guest's
//! kernel has the very same devices), the spec's `linux.devices` (mknod), and the standard
//! symlinks. Runs before pivot_root, with the guest's /dev still reachable.
use std::os::unix::fs::symlink;
use std::path::Path;

use anyhow::Context;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chown, Gid, Uid};

use super::config::DeviceConfig;
use super::securejoin::secure_join;

/// Every container gets these (OCI runtime spec, "Default Devices").
pub const DEFAULT_DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// /dev symlinks (name, target).
const SYMLINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Creates /dev's content under `rootfs`.
pub fn populate(rootfs: &Path, spec_devices: &[DeviceConfig]) -> anyhow::Result<()> {
    let dev = secure_join(rootfs, Path::new("/dev"))?;
    std::fs::create_dir_all(&dev).with_context(|| format!("creating {}", dev.display()))?;
    for d in spec_devices {
        create_node(rootfs, d)?;
    }
    for name in DEFAULT_DEVICES {
        let in_spec = spec_devices
            .iter()
            .any(|d| d.path == Path::new("/dev").join(name));
        if !in_spec {
            bind_from_guest(rootfs, name)?;
        }
    }
    for (name, target) in SYMLINKS {
        let link = dev.join(name);
        // /dev/ptmx must be the container's devpts one: replace whatever the image has.
        if name == "ptmx" {
            let _ = std::fs::remove_file(&link);
        }
        match symlink(target, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("symlink {}", link.display())),
        }
    }
    Ok(())
}

fn bind_from_guest(rootfs: &Path, name: &str) -> anyhow::Result<()> {
    // Resolved inside the rootfs, and never a symlink of the image's: a bind mount follows
    // symlinks, and before pivot_root that would land outside the rootfs.
    let target = secure_join(rootfs, &Path::new("/dev").join(name))?;
    match std::fs::symlink_metadata(&target) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            std::fs::remove_file(&target)
                .with_context(|| format!("replacing the image's {}", target.display()))?;
            std::fs::File::create(&target)
                .with_context(|| format!("creating {}", target.display()))?;
        }
        Err(_) => {
            std::fs::File::create(&target)
                .with_context(|| format!("creating {}", target.display()))?;
        }
    }
    let source = Path::new("/dev").join(name);
    mount(
        Some(&source),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("binding {} to {}", source.display(), target.display()))
}

fn create_node(rootfs: &Path, d: &DeviceConfig) -> anyhow::Result<()> {
    let path = secure_join(rootfs, &d.path)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let kind = match d.kind {
        'c' | 'u' => SFlag::S_IFCHR,
        'b' => SFlag::S_IFBLK,
        'p' => SFlag::S_IFIFO,
        other => anyhow::bail!("device {}: unknown type {other:?}", d.path.display()),
    };
    let _ = std::fs::remove_file(&path);
    mknod(
        &path,
        kind,
        Mode::from_bits_truncate(d.mode as _),
        makedev(d.major, d.minor),
    )
    .with_context(|| format!("mknod {}", d.path.display()))?;
    chown(
        &path,
        Some(Uid::from_raw(d.uid)),
        Some(Gid::from_raw(d.gid)),
    )
    .with_context(|| format!("chown {}", d.path.display()))?;
    Ok(())
}
