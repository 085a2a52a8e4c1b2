//! The file systems every guest needs before anything else runs.
use std::path::Path;

use anyhow::Context;
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

struct BasicMount {
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// In mount order: parents before children.
const BASIC_MOUNTS: &[BasicMount] = &[
    BasicMount {
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    BasicMount {
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    BasicMount {
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    BasicMount {
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("gid=5,mode=620,ptmxmode=666"),
    },
    BasicMount {
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("mode=1777"),
    },
    BasicMount {
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
    BasicMount {
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    BasicMount {
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some(CGROUP2_OPTIONS),
    },
];

/// cgroup2's options. `favordynmods` (Linux ≥ 6.0) trades a little fork/exit speed for fast
/// cgroup moves: without it every move of a process (a container's helper into its cgroup)
/// waits for an RCU grace period. A kernel without it refuses it (EINVAL): then without.
const CGROUP2_OPTIONS: &str = "nsdelegate,favordynmods";
const CGROUP2_FALLBACK: &str = "nsdelegate";

/// Mounts /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /run, /tmp and cgroup2.
/// A file system that is already mounted (EBUSY) is left as it is.
pub fn mount_basics() -> anyhow::Result<()> {
    for m in BASIC_MOUNTS {
        std::fs::create_dir_all(m.target).with_context(|| format!("mkdir {}", m.target))?;
        let mounted = match mount_with(m, m.data) {
            Err(Errno::EINVAL) if m.data == Some(CGROUP2_OPTIONS) => {
                eprintln!("sandpod-agent: cgroup2 without favordynmods");
                mount_with(m, Some(CGROUP2_FALLBACK))
            }
            other => other,
        };
        match mounted {
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(e) => return Err(e).with_context(|| format!("mount {} on {}", m.fstype, m.target)),
        }
    }
    Ok(())
}

/// Mounts `m` with the options `data`.
fn mount_with(m: &BasicMount, data: Option<&str>) -> nix::Result<()> {
    mount(
        Some(m.fstype),
        Path::new(m.target),
        Some(m.fstype),
        m.flags,
        data,
    )
}
