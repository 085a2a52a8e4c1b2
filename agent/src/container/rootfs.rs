//! The container's root: its mount tree made private/slave, the rootfs bound onto itself (so it
//! is a mount point pivot_root accepts), pivot_root into it, and the read-only remount.
use std::path::Path;

use anyhow::Context;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{fchdir, pivot_root};

/// runc's default: mounts of the guest still propagate in, none propagates out.
pub const DEFAULT_PROPAGATION: MsFlags = MsFlags::MS_SLAVE.union(MsFlags::MS_REC);

/// Before the spec's mounts: sets the propagation of the whole (copied) mount tree, then binds
/// the rootfs onto itself.
pub fn prepare(rootfs: &Path, propagation: MsFlags) -> anyhow::Result<()> {
    mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .with_context(|| format!("making the mount tree {propagation:?}"))?;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("binding the rootfs {} onto itself", rootfs.display()))?;
    Ok(())
}

/// pivot_root into `rootfs` and detach the old root (runc's way: no put_old directory needed,
/// the old root is stacked under the new one and unmounted at once).
pub fn pivot(rootfs: &Path) -> anyhow::Result<()> {
    let dir = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let old_root = open("/", dir, Mode::empty()).context("opening /")?;
    let new_root = open(rootfs, dir, Mode::empty())
        .with_context(|| format!("opening the rootfs {}", rootfs.display()))?;
    fchdir(&new_root).context("chdir to the rootfs")?;
    pivot_root(".", ".").with_context(|| format!("pivot_root to {}", rootfs.display()))?;
    fchdir(&old_root).context("chdir to the old root")?;
    // The old root must not propagate its unmount back to the guest.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("making the old root a slave")?;
    umount2(".", MntFlags::MNT_DETACH).context("detaching the old root")?;
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// Remounts `/` read-only (after pivot_root, once nothing needs writing any more).
pub fn make_readonly() -> anyhow::Result<()> {
    let current = nix::sys::statvfs::statvfs("/").context("statvfs /")?;
    // Keep the flags the mount has (a remount replaces them all).
    let keep = [
        (nix::sys::statvfs::FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (nix::sys::statvfs::FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (nix::sys::statvfs::FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ]
    .into_iter()
    .filter(|(st, _)| current.flags().contains(*st))
    .fold(MsFlags::empty(), |acc, (_, ms)| acc | ms);
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
        None::<&str>,
    )
    .context("remounting / read-only")
}
