//! Mount operations on file descriptors, so that no host path the guest can change is ever
//! resolved: a bind source is resolved once (`open_tree`), its flags set on the detached copy
//! (`mount_setattr`), and it is attached to a target opened beneath the share without following
//! symlinks (`openat2`, `move_mount`). Unmounting goes through the target's fd as well.
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

pub use rustix::fs::OFlags;
use rustix::fs::{openat2, Mode, ResolveFlags, CWD};
use rustix::mount::{
    move_mount, open_tree, unmount, MountAttrFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags,
};

/// Flags set on a mount tree before it is attached (`MOUNT_ATTR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountAttrs {
    pub readonly: bool,
    pub noexec: bool,
}

impl MountAttrs {
    /// Every mount in the share is nosuid and nodev: the guest writes there, the host must not
    /// run a setuid binary or open a device node it planted.
    fn bits(self) -> u64 {
        let mut bits = u64::from(
            (MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV).bits(),
        );
        if self.readonly {
            bits |= u64::from(MountAttrFlags::MOUNT_ATTR_RDONLY.bits());
        }
        if self.noexec {
            bits |= u64::from(MountAttrFlags::MOUNT_ATTR_NOEXEC.bits());
        }
        bits
    }
}

/// `struct mount_attr` of mount_setattr(2) (libc does not define it).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount (tree) at `source`, resolved once.
pub fn clone_tree(source: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    Ok(open_tree(CWD, source, flags)?)
}

/// Sets `attrs` (plus nosuid, nodev) on every mount of a detached tree and makes them private,
/// cutting them from the source's peer group (they join the share's once attached).
pub fn set_attrs(tree: BorrowedFd<'_>, attrs: MountAttrs) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs.bits(),
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: mount_setattr reads `size_of::<MountAttr>()` bytes from `attr`, a live repr(C)
    // struct laid out as the kernel's `struct mount_attr`; `empty` is a NUL-terminated string and
    // `tree` an open fd. The call does not keep either pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Attaches a detached tree on the target `target` (an fd, no path resolved).
pub fn attach(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    Ok(move_mount(
        tree,
        c"",
        target,
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?)
}

/// Resolution that never leaves `dir`, follows no symlink and crosses no mount point.
fn confined() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

/// Opens the directory `name` beneath `dir` (made if missing), confined.
pub fn open_dir_beneath(dir: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::EXIST => {}
        Err(e) => return Err(e.into()),
    }
    open_existing_dir_beneath(dir, name, OFlags::PATH)
}

/// Opens the existing directory `name` beneath `dir`, confined (`OFlags::PATH`, or
/// `OFlags::RDONLY` to list it).
pub fn open_existing_dir_beneath(
    dir: BorrowedFd<'_>,
    name: &str,
    access: OFlags,
) -> io::Result<OwnedFd> {
    Ok(openat2(
        dir,
        name,
        access | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        confined() | ResolveFlags::NO_XDEV,
    )?)
}

/// The names in the directory `dir` (an fd opened for reading).
pub fn names_in(dir: BorrowedFd<'_>) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        if let Ok(name) = entry?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Creates the file `name` beneath `dir` (a bind target for a file source); it must not exist.
pub fn create_file_beneath(dir: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    Ok(openat2(
        dir,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
        confined() | ResolveFlags::NO_XDEV,
    )?)
}

/// Opens the host directory `path` (host-controlled, e.g. the share's mount point) as a base
/// for confined lookups.
pub fn open_base(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Detaches the mount whose root `relative` (beneath `dir`, confined, no symlinks) is: the
/// lookup ends on the mount's root, and it is unmounted through `/proc/self/fd`, so a path the
/// guest renamed or replaced by a symlink cannot point the unmount elsewhere. Not a mount, a
/// symlink or missing: nothing done, `Ok(false)`.
pub fn detach_beneath(dir: BorrowedFd<'_>, relative: &str) -> io::Result<bool> {
    let (parent, name) = match relative.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => (".", relative),
    };
    let open = |at: BorrowedFd<'_>, path: &str, extra: OFlags| {
        openat2(
            at,
            path,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC | extra,
            Mode::empty(),
            confined(),
        )
    };
    let gone = |e: rustix::io::Errno| {
        matches!(
            e,
            rustix::io::Errno::NOENT
                | rustix::io::Errno::XDEV
                | rustix::io::Errno::LOOP
                | rustix::io::Errno::NOTDIR
        )
    };
    let parent = match open(dir, parent, OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(e) if gone(e) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let fd = match open(parent.as_fd(), name, OFlags::empty()) {
        Ok(fd) => fd,
        Err(e) if gone(e) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let kind = rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
    if kind == rustix::fs::FileType::Symlink || mount_id(fd.as_fd())? == mount_id(parent.as_fd())? {
        return Ok(false);
    }
    let proc_path = format!("/proc/thread-self/fd/{}", fd.as_raw_fd());
    match unmount(proc_path.as_str(), UnmountFlags::DETACH) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::INVAL) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The mount id of what `fd` refers to.
pub fn mount_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = rustix::fs::statx(
        fd,
        c"",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::MNT_ID,
    )?;
    Ok(st.stx_mnt_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_share_mount_is_nosuid_nodev() {
        let b = MountAttrs::default().bits();
        assert_ne!(b & u64::from(MountAttrFlags::MOUNT_ATTR_NOSUID.bits()), 0);
        assert_ne!(b & u64::from(MountAttrFlags::MOUNT_ATTR_NODEV.bits()), 0);
        assert_eq!(b & u64::from(MountAttrFlags::MOUNT_ATTR_RDONLY.bits()), 0);
        let ro = MountAttrs {
            readonly: true,
            noexec: true,
        }
        .bits();
        assert_ne!(ro & u64::from(MountAttrFlags::MOUNT_ATTR_RDONLY.bits()), 0);
        assert_ne!(ro & u64::from(MountAttrFlags::MOUNT_ATTR_NOEXEC.bits()), 0);
    }

    #[test]
    fn confined_lookups_refuse_symlinks_and_escapes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("link")).unwrap();
        let base = open_base(d.path()).unwrap();
        assert!(open_dir_beneath(base.as_fd(), "real").is_ok());
        assert!(open_dir_beneath(base.as_fd(), "link").is_err());
        assert!(open_dir_beneath(base.as_fd(), "../..").is_err());
        // A file target is never created through a symlink.
        std::os::unix::fs::symlink("/tmp/sandpod-should-not-exist", d.path().join("f")).unwrap();
        assert!(create_file_beneath(base.as_fd(), "f").is_err());
        assert!(!Path::new("/tmp/sandpod-should-not-exist").exists());
        // Not a mount: nothing is detached.
        assert!(!detach_beneath(base.as_fd(), "real").unwrap());
        assert!(!detach_beneath(base.as_fd(), "missing").unwrap());
    }
}
