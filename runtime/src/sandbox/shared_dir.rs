//! The host side of a sandbox's virtio-fs share: the shared directory (a mount of its own with
//! shared propagation, so mounts added after virtiofsd started still reach it), each container's
//! rootfs bind-mounted under it, and the spec's bind-mount sources bound beside it with the spec
//! rewritten to the guest paths.
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{Mount, Spec};
use sandpod_protocol::shared::GUEST_SHARED_DIR;
use thiserror::Error;

use super::layout::Layout;

#[derive(Debug, Error)]
pub enum ShareError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mounting {what} at {target}: {source}")]
    Mount {
        what: String,
        target: PathBuf,
        source: nix::Error,
    },
    #[error("bind mount source {source_path} (for {destination}) does not exist")]
    MissingSource {
        source_path: PathBuf,
        destination: PathBuf,
    },
    #[error("encoding the rewritten spec: {0}")]
    Encode(serde_json::Error),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ShareError + 'a {
    move |source| ShareError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn bind(source: &Path, target: &Path, recursive: bool, what: &str) -> Result<(), ShareError> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(source), target, None::<&str>, flags, None::<&str>).map_err(|source_err| {
        ShareError::Mount {
            what: format!("{what} ({})", source.display()),
            target: target.to_path_buf(),
            source: source_err,
        }
    })
}

fn remount_readonly(target: &Path) -> Result<(), ShareError> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|source| ShareError::Mount {
        what: "read-only remount".into(),
        target: target.to_path_buf(),
        source,
    })
}

/// Creates the shared directory as a mount of its own with shared propagation. The mount is
/// pushed to `mounts` as soon as it exists, so a later failure still undoes it.
pub fn prepare_share(layout: &Layout, mounts: &mut Vec<PathBuf>) -> Result<(), ShareError> {
    let shared = layout.shared();
    std::fs::create_dir_all(&shared).map_err(io("creating", &shared))?;
    bind(&shared, &shared, false, "the shared directory")?;
    mounts.push(shared.clone());
    mount(
        None::<&str>,
        &shared,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(|source| ShareError::Mount {
        what: "shared propagation".into(),
        target: shared.clone(),
        source,
    })
}

/// `Some(recursive)` for a bind mount, as the agent reads its options.
fn is_bind(m: &Mount) -> Option<bool> {
    sandpod_protocol::mount_options::bind_kind(
        m.options().as_deref().unwrap_or(&[]),
        m.typ().as_deref(),
    )
}

/// Binds the container's rootfs (read-only if the spec says so) and its bind-mount sources into
/// the share and returns the spec for the agent, whose bind sources now name guest paths.
pub fn add_container(
    layout: &Layout,
    container_id: &str,
    bundle_dir: &Path,
    rootfs: &Path,
    spec: &Spec,
    readonly_rootfs: bool,
    mounts: &mut Vec<PathBuf>,
) -> Result<Vec<u8>, ShareError> {
    let base = layout.container_shared(container_id);
    let target = base.join("rootfs");
    std::fs::create_dir_all(&target).map_err(io("creating", &target))?;
    bind(rootfs, &target, true, "the container rootfs")?;
    mounts.push(target.clone());
    if readonly_rootfs {
        remount_readonly(&target)?;
    }

    let mut spec = spec.clone();
    let mut new_mounts = Vec::new();
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
        let meta = std::fs::metadata(&src).map_err(|_| ShareError::MissingSource {
            source_path: src.clone(),
            destination: m.destination().clone(),
        })?;
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_char_device() || meta.file_type().is_block_device() {
            // A device node cannot cross virtio-fs: the guest binds its own node of that path.
            new_mounts.push(m);
            continue;
        }
        let dir = base.join("mounts");
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let host_target = dir.join(n.to_string());
        if meta.is_dir() {
            std::fs::create_dir_all(&host_target).map_err(io("creating", &host_target))?;
        } else {
            std::fs::write(&host_target, b"").map_err(io("creating", &host_target))?;
        }
        bind(&src, &host_target, rbind, "a bind mount source")?;
        mounts.push(host_target.clone());
        if m.options()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .any(|o| o == "ro")
        {
            remount_readonly(&host_target)?;
        }
        let mut m = m;
        m.set_source(Some(
            format!("{GUEST_SHARED_DIR}/{container_id}/mounts/{n}").into(),
        ));
        new_mounts.push(m);
    }
    spec.set_mounts(Some(new_mounts));
    serde_json::to_vec(&spec).map_err(ShareError::Encode)
}

/// Undoes `mounts` innermost first (lazy unmounts: nothing can keep them busy). A path that is
/// no longer mounted is not an error.
pub fn unmount_all(mounts: &[PathBuf]) -> Vec<String> {
    let mut errors = Vec::new();
    for m in mounts.iter().rev() {
        match umount2(m.as_path(), MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => errors.push(format!("unmounting {}: {e}", m.display())),
        }
    }
    errors
}

/// Mount points at or below `dir` in this process's mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescaping() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/x\04"), r"/x\04");
    }

    #[test]
    fn root_is_found_under_slash() {
        assert!(mounts_under(Path::new("/")).contains(&PathBuf::from("/")));
        assert!(mounts_under(Path::new("/nonexistent-dir-xyz")).is_empty());
    }

    #[test]
    fn bind_detection() {
        let m: Mount = serde_json::from_str(
            r#"{"destination":"/etc/hosts","type":"bind","source":"/h","options":["rbind","ro"]}"#,
        )
        .unwrap();
        assert_eq!(is_bind(&m), Some(true));
        let m: Mount =
            serde_json::from_str(r#"{"destination":"/proc","type":"proc","source":"proc"}"#)
                .unwrap();
        assert_eq!(is_bind(&m), None);
    }
}
