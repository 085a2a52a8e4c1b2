//! The fake VM's mount namespace and what the host's mount table says.
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// The sandbox's share, by the runtime's layout convention (runtime/src/sandbox/layout.rs):
/// the state directory holds `shared/` (what virtiofsd would serve) and the VMM's directory `j/`
/// with the vsock socket (the VMM's --vsock-uds), so the share is `<dir of --vsock-uds>/../shared`;
/// a socket directly in a directory holding `shared/` (tests of the fake VMM alone) has it
/// beside it.
pub fn share_of(vsock_uds: &Path) -> PathBuf {
    let dir = vsock_uds.parent().unwrap_or(Path::new("/"));
    if dir.file_name() == Some("j".as_ref()) && !dir.join("shared").is_dir() {
        return dir.parent().unwrap_or(Path::new("/")).join("shared");
    }
    dir.join("shared")
}

/// Moves the calling process (single-threaded: call it before any thread starts) into a mount
/// namespace of its own, where nothing propagates back to the host (every mount a slave), and
/// bind-mounts `share` (recursively) at `target`, as a slave too so that what the runtime mounts
/// under the share later (another container's rootfs) shows up here.
///
/// The mount point is created on the host's file system if missing (mkdir is not
/// namespaced): an empty directory is all the host may keep from this.
pub fn enter_private_namespace(share: &Path, target: &Path) -> anyhow::Result<()> {
    if !share.is_dir() {
        bail!(
            "no share directory {} (the runtime makes <dir of --vsock-uds>/shared)",
            share.display()
        );
    }
    unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS) (the fake VMM needs root)")?;
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_SLAVE | MsFlags::MS_REC, none)
        .context("making every mount a slave (mount --make-rslave /)")?;
    fs::create_dir_all(target).with_context(|| format!("mkdir -p {}", target.display()))?;
    mount(
        Some(share),
        target,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .with_context(|| format!("mount --rbind {} {}", share.display(), target.display()))?;
    mount(
        none,
        target,
        none,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        none,
    )
    .with_context(|| format!("mount --make-rslave {}", target.display()))?;
    Ok(())
}

/// The mount point of the first cgroup2 file system in a mountinfo text.
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next() == Some("cgroup2"))
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}

/// The host's cgroup2 mount (/sys/fs/cgroup on a pure cgroup v2 host, /sys/fs/cgroup/unified on
/// a hybrid one), if any.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_cgroup2_mount(&text)
}

/// The lines of a mountinfo text whose mount point or root is `path` or under it.
pub fn mounts_under(mountinfo: &str, path: &Path) -> Vec<String> {
    let p = path.to_string_lossy();
    let under = |field: &str| field == p || field.starts_with(&format!("{p}/"));
    mountinfo
        .lines()
        .filter(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.len() > 4 && (under(fields[3]) || under(fields[4]))
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 30 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 22 0:21 /tmp/x/shared /run/sandpod/shared rw,relatime master:1 - ext4 /dev/vda rw
";

    #[test]
    fn finds_the_cgroup2_mount() {
        assert_eq!(
            parse_cgroup2_mount(MOUNTINFO),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            parse_cgroup2_mount("22 1 0:21 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }

    #[test]
    fn finds_mounts_under_a_path() {
        let m = mounts_under(MOUNTINFO, Path::new("/run/sandpod/shared"));
        assert_eq!(m.len(), 1);
        // By root too: a bind of the share shows its source there.
        assert_eq!(mounts_under(MOUNTINFO, Path::new("/tmp/x")).len(), 1);
        assert!(mounts_under(MOUNTINFO, Path::new("/tmp/xy")).is_empty());
        assert!(mounts_under(MOUNTINFO, Path::new("/run/sandpod/share")).is_empty());
    }

    #[test]
    fn the_share_is_beside_the_vsock_socket() {
        assert_eq!(
            share_of(Path::new("/run/sandpod/c1/vsock.sock")),
            PathBuf::from("/run/sandpod/c1/shared")
        );
        assert_eq!(
            share_of(Path::new("/run/sandpod/c1/j/v")),
            PathBuf::from("/run/sandpod/c1/shared")
        );
    }
}
