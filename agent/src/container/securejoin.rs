//! Joining an untrusted path onto a root directory the way the container will see it: symlinks
//! are resolved as if the root were `/` (an absolute link restarts at the root, `..` stops at
//! it), so a mount target or device path in a hostile image cannot point outside the rootfs.
//! (Like Go's securejoin.SecureJoin, which runc uses.) A race with a process changing the
//! rootfs meanwhile is out of scope: nothing of the container runs yet.
use std::io;
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may follow (Linux's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// `root` joined with `unsafe_path`, every symlink on the way resolved inside `root`. The last
/// component need not exist (it is then taken as is).
pub fn secure_join(root: &Path, unsafe_path: &Path) -> io::Result<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = components(unsafe_path);
    pending.reverse();
    // The resolved path below root, as components.
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate: PathBuf = root.join(resolved.iter().collect::<PathBuf>()).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "too many symlinks resolving {}",
                        unsafe_path.display()
                    )));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            _ => resolved.push(part),
        }
    }
    Ok(root.join(resolved.iter().collect::<PathBuf>()))
}

/// The normal and `..` components of `p` (`/` and `.` dropped).
fn components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_and_dotdot_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        symlink("/usr/bin", root.join("bin")).unwrap();
        symlink("../../../../etc", root.join("usr/escape")).unwrap();
        symlink("/", root.join("rootlink")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/bin/sh")).unwrap(),
            root.join("usr/bin/sh")
        );
        assert_eq!(
            secure_join(root, Path::new("/usr/escape/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            secure_join(root, Path::new("../../x")).unwrap(),
            root.join("x")
        );
        assert_eq!(
            secure_join(root, Path::new("/rootlink/rootlink/a")).unwrap(),
            root.join("a")
        );
    }

    #[test]
    fn symlink_loops_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        assert!(secure_join(dir.path(), Path::new("/a/x")).is_err());
    }
}
