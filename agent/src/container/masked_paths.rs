//! The spec's `linux.maskedPaths` and `linux.readonlyPaths`, applied like runc does inside the
//! container's mount namespace after pivot_root (paths are the container's).
use std::io;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use tracing::debug;

/// Makes the read-only paths read-only, then masks (runc's order). Missing paths are skipped.
pub fn apply(masked: &[String], readonly: &[String]) -> Result<()> {
    for p in readonly {
        make_readonly(Path::new(check(p)?)).with_context(|| format!("read-only path {p}"))?;
    }
    for p in masked {
        mask(Path::new(check(p)?)).with_context(|| format!("masking {p}"))?;
    }
    Ok(())
}

fn check(p: &str) -> Result<&str> {
    if !p.starts_with('/') {
        bail!("path {p:?} is not absolute");
    }
    Ok(p)
}

/// runc's maskPath: /dev/null bound over a file; a read-only empty tmpfs over a directory.
pub fn mask(path: &Path) -> Result<()> {
    match mount(
        Some("/dev/null"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        Ok(()) => {
            debug!(path = %path.display(), "masked with /dev/null");
            Ok(())
        }
        Err(Errno::ENOENT) => {
            debug!(path = %path.display(), "masked path missing: skipped");
            Ok(())
        }
        Err(Errno::ENOTDIR) => {
            mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(io::Error::from)
            .context("mount a read-only tmpfs over the directory")?;
            debug!(path = %path.display(), "masked with a read-only tmpfs");
            Ok(())
        }
        Err(e) => Err(io::Error::from(e)).context("bind /dev/null over it"),
    }
}

/// runc's readonlyPath: bind (recursive) on itself, then remount read-only, keeping the
/// nosuid/nodev/noexec flags it had (a remount cannot clear locked ones).
pub fn make_readonly(path: &Path) -> Result<()> {
    match mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(Errno::ENOENT) => {
            debug!(path = %path.display(), "read-only path missing: skipped");
            return Ok(());
        }
        Err(e) => return Err(io::Error::from(e)).context("bind it on itself"),
    }
    let st = statvfs(path).map_err(io::Error::from).context("statvfs")?;
    let flags = remount_flags(st.flags());
    mount(Some(path), path, None::<&str>, flags, None::<&str>)
        .map_err(io::Error::from)
        .context("remount read-only")?;
    debug!(path = %path.display(), "made read-only");
    Ok(())
}

/// The remount flags for a read-only path whose file system has `current` flags.
fn remount_flags(current: FsFlags) -> MsFlags {
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if current.contains(fs) {
            flags |= ms;
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::testutil::in_child;
    use nix::sched::{unshare, CloneFlags};

    #[test]
    fn remount_keeps_locked_flags() {
        let f = remount_flags(FsFlags::ST_NOSUID | FsFlags::ST_NOEXEC);
        assert!(f.contains(MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT | MsFlags::MS_BIND));
        assert!(f.contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC));
        assert!(!f.contains(MsFlags::MS_NODEV));
        assert!(!remount_flags(FsFlags::empty()).contains(MsFlags::MS_NOSUID));
    }

    #[test]
    fn relative_paths_are_refused() {
        let err = apply(&["proc/kcore".to_owned()], &[]).unwrap_err();
        assert!(err.to_string().contains("not absolute"), "{err}");
    }

    /// Needs root (a private mount namespace): ignored unless run with `--include-ignored`
    /// (`make unit` does as root), and then fails without it.
    #[test]
    #[ignore = "needs root: run by `make unit` as root (--include-ignored), as in CI"]
    fn mask_and_readonly_in_a_mount_namespace() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root for a mount namespace"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_owned();
        std::fs::write(d.join("secret"), "key").unwrap();
        std::fs::create_dir(d.join("secretdir")).unwrap();
        std::fs::write(d.join("secretdir/inner"), "x").unwrap();
        std::fs::create_dir(d.join("ro")).unwrap();
        let result = in_child(|| {
            unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| format!("make / private: {e}"))?;
            let s = |p: &str| d.join(p).to_string_lossy().into_owned();
            apply(
                &[s("secret"), s("secretdir"), s("missing")],
                &[s("ro"), s("missing-ro")],
            )
            .map_err(|e| format!("{e:#}"))?;
            let read = std::fs::read_to_string(d.join("secret")).map_err(|e| e.to_string())?;
            if !read.is_empty() {
                return Err(format!("masked file reads {read:?}"));
            }
            if d.join("secretdir/inner").exists() {
                return Err("masked dir still shows its files".into());
            }
            if std::fs::write(d.join("secretdir/new"), "x").is_ok() {
                return Err("masked dir is writable".into());
            }
            match std::fs::write(d.join("ro/new"), "x") {
                Err(e) if e.raw_os_error() == Some(libc::EROFS) => Ok(()),
                other => Err(format!("write into read-only path: {other:?}")),
            }
        });
        assert_eq!(result, Ok(()));
        // The parent's view is untouched.
        assert_eq!(std::fs::read_to_string(d.join("secret")).unwrap(), "key");
        std::fs::write(d.join("ro/new"), "x").unwrap();
    }
}
