//! The spec's mounts, mounted under the rootfs by the helper (their options were parsed in the
//! agent, by `spec` with `crate::mount_flags`).
use std::path::Path;

use anyhow::Context;
use nix::mount::{mount, MsFlags};

use super::config::MountConfig;
use super::securejoin::secure_join;

/// Flags that a bind mount only gets through a second, remounting call.
const REMOUNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// Mounts `m` under `rootfs` (before pivot_root): creates the target (a file for a bind mount
/// of a file), mounts, remounts a bind mount for its flags, then applies propagation changes.
pub fn mount_one(rootfs: &Path, m: &MountConfig) -> anyhow::Result<()> {
    let target = secure_join(rootfs, &m.destination)
        .with_context(|| format!("mount destination {}", m.destination.display()))?;
    let flags = MsFlags::from_bits_truncate(m.flags as _);
    let what = || {
        format!(
            "mount {} ({}) on {}",
            m.source,
            if m.bind { "bind" } else { &m.fstype },
            m.destination.display()
        )
    };
    let source_is_dir = !m.bind || Path::new(&m.source).is_dir();
    if source_is_dir {
        std::fs::create_dir_all(&target)
            .with_context(|| format!("creating mount point {}", target.display()))?;
    } else if !target.exists() {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::File::create(&target)
            .with_context(|| format!("creating mount point {}", target.display()))?;
    }
    if m.bind {
        let first = flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
        mount(
            Some(m.source.as_str()),
            &target,
            None::<&str>,
            first,
            None::<&str>,
        )
        .with_context(what)?;
        let rest = flags & REMOUNT_FLAGS;
        if !rest.is_empty() {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rest,
                None::<&str>,
            )
            .with_context(|| format!("{}: remounting with {rest:?}", what()))?;
        }
    } else {
        let data = m.data.as_str();
        mount(
            Some(m.source.as_str()),
            &target,
            Some(m.fstype.as_str()),
            flags,
            (!data.is_empty()).then_some(data),
        )
        .with_context(what)?;
    }
    for p in &m.propagation {
        let p = MsFlags::from_bits_truncate(*p as _);
        mount(None::<&str>, &target, None::<&str>, p, None::<&str>)
            .with_context(|| format!("{}: propagation {p:?}", what()))?;
    }
    Ok(())
}
