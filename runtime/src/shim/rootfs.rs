//! A task's root file system as containerd hands it over: the snapshotter's mounts
//! (CreateTaskRequest.rootfs: one `overlay` mount, or a `bind` of a single-layer view) are
//! mounted on the host at `<bundle>/rootfs`, which the sandbox then shares with the VM. Without
//! mounts the client has already put the rootfs there.
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use thiserror::Error;

/// Longest mount data the kernel takes (one page, NUL included).
const MAX_MOUNT_DATA: usize = 4095;

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("rootfs mount type {0:?} is not supported (overlay and bind are)")]
    UnsupportedType(String),
    #[error("rootfs mount {what}: its data is {len} bytes, more than the kernel's {MAX_MOUNT_DATA} (too many layers)")]
    DataTooLong { what: String, len: usize },
    #[error("mounting the rootfs ({what}) at {target}")]
    Mount {
        what: String,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("unmounting the rootfs at {target}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("creating {target}")]
    Mkdir {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One mount of a rootfs, ready for mount(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    pub fstype: String,
    pub source: String,
    pub flags: MsFlags,
    /// The options that are not flags, comma-separated (overlay's lowerdir=..., ...).
    pub data: String,
}

/// Translates one containerd mount (type, source, options) into mount(2)'s arguments.
pub fn parse(fstype: &str, source: &str, options: &[String]) -> Result<RootfsMount, RootfsError> {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "suid" | "dev" | "exec" | "defaults" => {}
            other => data.push(other.to_string()),
        }
    }
    let fstype = match fstype {
        "overlay" => "overlay",
        "bind" | "none" if flags.contains(MsFlags::MS_BIND) || fstype == "bind" => {
            flags |= MsFlags::MS_BIND;
            "none"
        }
        other => return Err(RootfsError::UnsupportedType(other.to_string())),
    };
    let data = data.join(",");
    if data.len() > MAX_MOUNT_DATA {
        return Err(RootfsError::DataTooLong {
            what: fstype.to_string(),
            len: data.len(),
        });
    }
    Ok(RootfsMount {
        fstype: fstype.to_string(),
        source: source.to_string(),
        flags,
        data,
    })
}

/// Whether containerd's rootfs `mounts` (type, source, options) are one writable overlay with
/// its own upper dir: a snapshot only this container writes to.
pub fn is_own_writable_snapshot(mounts: &[(String, String, Vec<String>)]) -> bool {
    matches!(mounts, [(fstype, _, options)]
        if fstype == "overlay"
            && options.iter().any(|o| o.starts_with("upperdir="))
            && !options.iter().any(|o| o == "ro"))
}

/// Mounts `m` on `target`. A read-only bind is bound first, then remounted read-only (the
/// kernel ignores MS_RDONLY on the first bind).
pub fn mount_one(m: &RootfsMount, target: &Path) -> Result<(), RootfsError> {
    std::fs::create_dir_all(target).map_err(|source| RootfsError::Mkdir {
        target: target.to_path_buf(),
        source,
    })?;
    let err = |source| RootfsError::Mount {
        what: format!("{} from {}", m.fstype, m.source),
        target: target.to_path_buf(),
        source,
    };
    let data = (!m.data.is_empty()).then_some(m.data.as_str());
    mount(
        Some(m.source.as_str()),
        target,
        Some(m.fstype.as_str()),
        m.flags,
        data,
    )
    .map_err(err)?;
    if m.flags.contains(MsFlags::MS_BIND) && m.flags.contains(MsFlags::MS_RDONLY) {
        if let Err(e) = mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        ) {
            let _ = umount2(target, MntFlags::MNT_DETACH);
            return Err(err(e));
        }
    }
    Ok(())
}

/// Whether something is mounted exactly at `path`.
pub fn is_mounted(path: &Path) -> bool {
    crate::sandbox::share::mounts_under(path)
        .iter()
        .any(|p| p == path)
}

/// Unmounts everything at `target` (lazily: a process of the host may still hold it). Nothing
/// mounted is not an error.
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    // Stacked mounts (a retried create) come off one at a time.
    for _ in 0..16 {
        if !is_mounted(target) {
            return Ok(());
        }
        umount2(target, MntFlags::MNT_DETACH).map_err(|source| RootfsError::Unmount {
            target: target.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_a_writable_overlay_with_an_upper_dir_is_an_own_snapshot() {
        let m = |t: &str, o: &[&str]| {
            vec![(
                t.to_string(),
                "src".to_string(),
                o.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )]
        };
        assert!(is_own_writable_snapshot(&m(
            "overlay",
            &["workdir=/s/2/work", "upperdir=/s/2/fs", "lowerdir=/s/1/fs"]
        )));
        assert!(!is_own_writable_snapshot(&m(
            "overlay",
            &["lowerdir=/a:/b"]
        )));
        assert!(!is_own_writable_snapshot(&m(
            "overlay",
            &["ro", "upperdir=/s/2/fs", "lowerdir=/s/1/fs"]
        )));
        assert!(!is_own_writable_snapshot(&m("bind", &["rbind", "rw"])));
        assert!(!is_own_writable_snapshot(&[]));
    }

    #[test]
    fn overlay_options_become_data() {
        let m = parse(
            "overlay",
            "overlay",
            &opts(&[
                "index=off",
                "workdir=/s/2/work",
                "upperdir=/s/2/fs",
                "lowerdir=/s/1/fs",
            ]),
        )
        .unwrap();
        assert_eq!(m.fstype, "overlay");
        assert_eq!(m.flags, MsFlags::empty());
        assert_eq!(
            m.data,
            "index=off,workdir=/s/2/work,upperdir=/s/2/fs,lowerdir=/s/1/fs"
        );
    }

    #[test]
    fn binds_and_flags() {
        let m = parse("bind", "/s/1/fs", &opts(&["ro", "rbind"])).unwrap();
        assert_eq!(m.fstype, "none");
        assert!(m
            .flags
            .contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY));
        assert!(m.data.is_empty());
        let m = parse("none", "/x", &opts(&["bind", "nosuid", "rw"])).unwrap();
        assert!(m.flags.contains(MsFlags::MS_BIND | MsFlags::MS_NOSUID));
        assert!(!m.flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn unsupported_and_oversized_mounts_are_errors() {
        assert!(matches!(
            parse("ext4", "/dev/vdb", &[]),
            Err(RootfsError::UnsupportedType(t)) if t == "ext4"
        ));
        let long = format!("lowerdir={}", "a:".repeat(3000));
        assert!(matches!(
            parse("overlay", "overlay", &[long]),
            Err(RootfsError::DataTooLong { .. })
        ));
    }
}
