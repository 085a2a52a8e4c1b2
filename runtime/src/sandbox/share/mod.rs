//! The host side of a sandbox's virtio-fs share, the only host directory the guest can write
//! to besides the container's own files:
//! - the share itself is a small tmpfs of its own (size- and inode-capped, nosuid, nodev,
//!   noexec) in a peer group of its own, so what is mounted in it propagates nowhere else;
//! - each container's rootfs and bind-mount sources are attached in it as detached copies
//!   (nosuid, nodev, read-only recursively where asked) — see [`container`];
//! - every host operation below the share's top goes through file descriptors opened without
//!   following symlinks ([`mount_ops`]): the guest can rename anything in it.
//!
//! Teardown detaches the share's top mount, which takes everything below with it: no path the
//! guest could have changed is resolved.
pub mod container;
pub mod mount_ops;
mod mountinfo;

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use thiserror::Error;

pub use container::{add_container, remove_container, ContainerFiles};
pub use mountinfo::mounts_under;

use super::layout::Layout;

/// The share's tmpfs: mount points and empty bind targets only, never data.
pub const SHARE_TMPFS_OPTIONS: &str = "size=1m,nr_inodes=4096,mode=0755";

#[derive(Debug, Error)]
pub enum ShareError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounting {what} at {target}")]
    Mount {
        what: String,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("bind mount source {source_path} (for {destination}) does not exist")]
    MissingSource {
        source_path: PathBuf,
        destination: PathBuf,
    },
    #[error("the rootfs {0} is the host's root directory: refusing to share it with the VM")]
    HostRoot(PathBuf),
    #[error("encoding the rewritten spec")]
    Encode(#[source] serde_json::Error),
}

pub(crate) fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ShareError + 'a {
    move |source| ShareError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn propagation(target: &Path, flags: MsFlags, what: &str) -> Result<(), ShareError> {
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(|source| {
        ShareError::Mount {
            what: what.into(),
            target: target.to_path_buf(),
            source,
        }
    })
}

/// Creates the share: a capped tmpfs with shared propagation in a peer group of its own (made
/// private first: mounted under a shared `/run`, it would otherwise be a peer of its copies in
/// other mount namespaces). The mount is pushed to `mounts` as soon as it exists, so a later
/// failure still undoes it.
pub fn prepare_share(layout: &Layout, mounts: &mut Vec<PathBuf>) -> Result<(), ShareError> {
    let shared = layout.shared();
    std::fs::create_dir_all(&shared).map_err(io("creating", &shared))?;
    mount(
        Some("sandpod-share"),
        &shared,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(SHARE_TMPFS_OPTIONS),
    )
    .map_err(|source| ShareError::Mount {
        what: "the share's tmpfs".into(),
        target: shared.clone(),
        source,
    })?;
    mounts.push(shared.clone());
    propagation(&shared, MsFlags::MS_PRIVATE, "private propagation")?;
    propagation(&shared, MsFlags::MS_SHARED, "shared propagation")
}

/// Detaches `mounts` (host-controlled mount points: the share's top), last first, without
/// following a symlink; everything below each goes with it. A path no longer mounted is not an
/// error.
pub fn unmount_all(mounts: &[PathBuf]) -> Vec<String> {
    let mut errors = Vec::new();
    for m in mounts.iter().rev() {
        match umount2(
            m.as_path(),
            MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW,
        ) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => errors.push(format!("unmounting {}: {e}", m.display())),
        }
    }
    errors
}

#[cfg(test)]
mod share_tests;
