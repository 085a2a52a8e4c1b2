//! A container's files in the share: its rootfs at `<share>/<id>/rootfs` and each bind-mount
//! source at `<share>/<id>/mounts/<n>`, with the spec rewritten to the guest paths. Every
//! source is resolved once (a detached mount copy), made nosuid+nodev (+ read-only recursively
//! for a read-only rootfs or an `ro`/`rro` volume) before it is attached, and attached on a
//! target opened beneath the share without following symlinks: the guest may have renamed or
//! replaced anything below the share's top.
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};
use sandpod_protocol::shared::GUEST_SHARED_DIR;

use super::mount_ops::{self, MountAttrs, OFlags};
use super::{io, ShareError};
use crate::sandbox::layout::Layout;

/// `Some(recursive)` for a bind mount, as the agent reads its options.
fn is_bind(m: &Mount) -> Option<bool> {
    sandpod_protocol::mount_options::bind_kind(
        m.options().as_deref().unwrap_or(&[]),
        m.typ().as_deref(),
    )
}

/// The flags a volume gets on the host, by the agent's rule for the option words
/// (`sandpod_protocol::mount_options`): read-only for `ro` or `rro` (the last of ro/rw wins),
/// always recursively, and `noexec` if asked.
fn volume_attrs(m: &Mount) -> MountAttrs {
    use sandpod_protocol::mount_options::{classify, words, MountFlag, MountOption};
    let mut attrs = MountAttrs::default();
    for word in words(m.options().as_deref().unwrap_or(&[])) {
        match classify(word) {
            MountOption::Set(MountFlag::ReadOnly) | MountOption::RecursiveReadOnly(true) => {
                attrs.readonly = true
            }
            MountOption::Clear(MountFlag::ReadOnly) | MountOption::RecursiveReadOnly(false) => {
                attrs.readonly = false
            }
            MountOption::Set(MountFlag::NoExec) => attrs.noexec = true,
            MountOption::Clear(MountFlag::NoExec) => attrs.noexec = false,
            _ => {}
        }
    }
    attrs
}

/// A detached copy of `source` with `attrs` set, ready to attach.
fn prepared_tree(
    source: &Path,
    recursive: bool,
    attrs: MountAttrs,
    what: &str,
) -> Result<OwnedFd, ShareError> {
    let mount_err = |e: std::io::Error| ShareError::Mount {
        what: format!("{what} ({})", source.display()),
        target: source.to_path_buf(),
        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    let tree = mount_ops::clone_tree(source, recursive).map_err(mount_err)?;
    mount_ops::set_attrs(tree.as_fd(), attrs).map_err(mount_err)?;
    Ok(tree)
}

fn attach(tree: &OwnedFd, target: &OwnedFd, at: &Path, what: &str) -> Result<(), ShareError> {
    mount_ops::attach(tree.as_fd(), target.as_fd()).map_err(|e| ShareError::Mount {
        what: what.into(),
        target: at.to_path_buf(),
        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })
}

/// Whether the directory `tree` refers to is the host's `/`.
fn is_host_root(tree: &OwnedFd) -> Result<bool, ShareError> {
    let root = std::fs::metadata("/").map_err(io("reading", Path::new("/")))?;
    let st = rustix::fs::fstat(tree).map_err(|e| ShareError::Io {
        what: "reading",
        path: PathBuf::from("the rootfs"),
        source: e.into(),
    })?;
    use std::os::unix::fs::MetadataExt;
    Ok(st.st_dev == root.dev() && st.st_ino == root.ino())
}

/// What of a container goes into the share.
#[derive(Debug, Clone, Copy)]
pub struct ContainerFiles<'a> {
    pub id: &'a str,
    /// Relative bind sources are resolved against it.
    pub bundle_dir: &'a Path,
    /// root.path, resolved.
    pub rootfs: &'a Path,
    pub spec: &'a Spec,
    pub readonly_rootfs: bool,
}

/// Binds the container's rootfs (read-only if the spec says so) and its bind-mount sources into
/// the share and returns the spec for the agent, whose bind sources now name guest paths. On
/// failure, what was attached for this container is detached again.
pub fn add_container(layout: &Layout, files: &ContainerFiles<'_>) -> Result<Vec<u8>, ShareError> {
    let r = add_container_steps(layout, files);
    if r.is_err() {
        if let Err(e) = remove_container(layout, files.id) {
            tracing::warn!("undoing the share of {}: {e}", files.id);
        }
    }
    r
}

fn add_container_steps(layout: &Layout, files: &ContainerFiles<'_>) -> Result<Vec<u8>, ShareError> {
    let ContainerFiles {
        id: container_id,
        bundle_dir,
        rootfs,
        spec,
        readonly_rootfs,
    } = *files;
    let shared = layout.shared();
    let base_path = layout.container_shared(container_id);
    let share = mount_ops::open_base(&shared).map_err(io("opening", &shared))?;
    let base = mount_ops::open_dir_beneath(share.as_fd(), container_id)
        .map_err(io("creating", &base_path))?;

    let target_path = base_path.join("rootfs");
    let tree = prepared_tree(
        rootfs,
        true,
        MountAttrs {
            readonly: readonly_rootfs,
            noexec: false,
        },
        "the container rootfs",
    )?;
    if is_host_root(&tree)? {
        return Err(ShareError::HostRoot(rootfs.to_path_buf()));
    }
    let target = mount_ops::open_dir_beneath(base.as_fd(), "rootfs")
        .map_err(io("creating", &target_path))?;
    attach(&tree, &target, &target_path, "the container rootfs")?;

    let mut spec = spec.clone();
    let mut new_mounts = Vec::new();
    let mut mounts_dir = None;
    for (n, m) in spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let (Some(rbind), Some(src)) = (is_bind(&m), m.source().clone()) else {
            new_mounts.push(m);
            continue;
        };
        let src = if src.is_absolute() {
            src
        } else {
            bundle_dir.join(src)
        };
        let missing = || ShareError::MissingSource {
            source_path: src.clone(),
            destination: m.destination().clone(),
        };
        // Resolved once: the checks below are on the copy that gets attached.
        let tree = prepared_tree(&src, rbind, volume_attrs(&m), "a bind mount source").map_err(
            |e| match e {
                ShareError::Mount {
                    source: nix::Error::ENOENT,
                    ..
                } => missing(),
                e => e,
            },
        )?;
        let st = rustix::fs::fstat(&tree).map_err(|_| missing())?;
        let file_type = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if matches!(
            file_type,
            rustix::fs::FileType::CharacterDevice | rustix::fs::FileType::BlockDevice
        ) {
            // A device node cannot cross virtio-fs: the guest binds its own node of that path.
            new_mounts.push(m);
            continue;
        }
        let mounts_path = base_path.join("mounts");
        if mounts_dir.is_none() {
            mounts_dir = Some(
                mount_ops::open_dir_beneath(base.as_fd(), "mounts")
                    .map_err(io("creating", &mounts_path))?,
            );
        }
        let dir = mounts_dir.as_ref().map(|d| d.as_fd()).ok_or_else(missing)?;
        let name = n.to_string();
        let host_target = mounts_path.join(&name);
        let target = if file_type == rustix::fs::FileType::Directory {
            mount_ops::open_dir_beneath(dir, &name)
        } else {
            mount_ops::create_file_beneath(dir, &name)
        }
        .map_err(io("creating", &host_target))?;
        attach(&tree, &target, &host_target, "a bind mount source")?;
        let mut m = m;
        m.set_source(Some(
            format!("{GUEST_SHARED_DIR}/{container_id}/mounts/{n}").into(),
        ));
        new_mounts.push(m);
    }
    spec.set_mounts(Some(new_mounts));
    serde_json::to_vec(&spec).map_err(ShareError::Encode)
}

/// Detaches a container's rootfs and volumes from the share (e.g. after a failed create in a
/// running sandbox). Lookups are confined to the share and follow no symlink, so whatever the
/// guest renamed, only this sandbox's mounts can be hit.
pub fn remove_container(layout: &Layout, container_id: &str) -> Result<(), ShareError> {
    let shared = layout.shared();
    let share = mount_ops::open_base(&shared).map_err(io("opening", &shared))?;
    let base = mount_ops::open_existing_dir_beneath(share.as_fd(), container_id, OFlags::PATH)
        .map_err(io("opening", &layout.container_shared(container_id)))?;
    let mut names = vec!["rootfs".to_string()];
    // Listed through a confined fd: the guest may have made `mounts` a symlink.
    if let Ok(mounts) = mount_ops::open_existing_dir_beneath(base.as_fd(), "mounts", OFlags::RDONLY)
    {
        names.extend(
            mount_ops::names_in(mounts.as_fd())
                .unwrap_or_default()
                .into_iter()
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .map(|n| format!("mounts/{n}")),
        );
    }
    for name in names {
        mount_ops::detach_beneath(base.as_fd(), &name)
            .map_err(io("unmounting", &layout.container_shared(container_id)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(json: &str) -> Mount {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn bind_detection() {
        let m = mount(
            r#"{"destination":"/etc/hosts","type":"bind","source":"/h","options":["rbind","ro"]}"#,
        );
        assert_eq!(is_bind(&m), Some(true));
        let m = mount(r#"{"destination":"/proc","type":"proc","source":"proc"}"#);
        assert_eq!(is_bind(&m), None);
        let m = mount(r#"{"destination":"/d","source":"/h","options":["nosuid,bind"]}"#);
        assert_eq!(is_bind(&m), Some(false));
    }

    #[test]
    fn read_only_volumes() {
        let ro = |opts: &str| {
            volume_attrs(&mount(&format!(
                r#"{{"destination":"/d","type":"bind","source":"/h","options":{opts}}}"#
            )))
            .readonly
        };
        assert!(ro(r#"["rbind","ro"]"#));
        assert!(ro(r#"["rbind","rro"]"#));
        assert!(ro(r#"["nosuid,ro"]"#));
        assert!(!ro(r#"["ro","rw"]"#));
        assert!(!ro(r#"["rbind"]"#));
        assert!(ro(r#"["rw","ro"]"#));
    }
}
