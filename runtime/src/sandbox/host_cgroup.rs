//! The sandbox's cgroup on the host: the spec's `cgroupsPath` on the host's unified cgroup v2
//! hierarchy, holding what the container costs the host — the stand-in, the monitor, the VMM
//! (with the guest memory it touched) and virtiofsd. Callers that read the host cgroup of the pid
//! in `--pid-file` (containerd's runc shim: `docker stats`) see the VM's real usage there. The
//! container's own limits are its cgroup in the guest; none is set here (yet).
//!
//! Only on a unified (v2-only) host: on a v1 or hybrid host nothing is made and the stand-in
//! stays in the caller's cgroup.
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The host's cgroup v2 mount.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Controllers enabled down to the sandbox's cgroup (so its usage figures exist).
const CONTROLLERS: [&str; 4] = ["cpu", "io", "memory", "pids"];
/// How long removal waits for the cgroup's processes to be gone.
const REMOVE_WAIT: Duration = Duration::from_secs(5);

/// The host path of a spec's `cgroupsPath`: cgroupfs style (`/docker/<id>`, relative paths
/// under the root too), or systemd style (`slice:prefix:name` → `/<slice path>/<prefix>-<name>.scope`).
/// Nothing may lead out of the hierarchy.
pub fn host_path(root: &Path, cgroups_path: &str) -> anyhow::Result<PathBuf> {
    let rel = match cgroups_path.split(':').collect::<Vec<_>>()[..] {
        [slice, prefix, name] => {
            let mut p = PathBuf::new();
            // "a-b-c.slice" lives at a.slice/a-b.slice/a-b-c.slice.
            let slice = if slice.is_empty() {
                "system.slice"
            } else {
                slice
            };
            let stem = slice.strip_suffix(".slice").unwrap_or(slice);
            let parts: Vec<&str> = stem.split('-').collect();
            for i in 1..=parts.len() {
                p.push(format!("{}.slice", parts[..i].join("-")));
            }
            p.push(format!("{prefix}-{name}.scope"));
            p
        }
        [_] => PathBuf::from(cgroups_path.trim_start_matches('/')),
        _ => bail!("cgroupsPath {cgroups_path:?}: expected a path or slice:prefix:name"),
    };
    if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("cgroupsPath {cgroups_path:?} is not a path inside the cgroup hierarchy");
    }
    Ok(root.join(rel))
}

/// Whether the host has the unified hierarchy at [`CGROUP_ROOT`].
pub fn unified_host() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.controllers").is_file()
}

/// Makes the cgroup (and its parents, with the controllers enabled on the way down).
pub fn create(path: &Path) -> anyhow::Result<()> {
    let root = Path::new(CGROUP_ROOT);
    let rel = path
        .strip_prefix(root)
        .context("not under the cgroup root")?;
    let mut dir = root.to_path_buf();
    for c in rel.components() {
        for ctl in CONTROLLERS {
            // Refused controllers only mean fewer figures.
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{ctl}"));
        }
        dir.push(c);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    Ok(())
}

/// Moves process `pid` into the cgroup.
pub fn add(path: &Path, pid: u32) -> anyhow::Result<()> {
    std::fs::write(path.join("cgroup.procs"), pid.to_string())
        .with_context(|| format!("moving pid {pid} into {}", path.display()))
}

/// Removes the (emptied) cgroup, waiting a little for its processes to be reaped.
pub fn remove(path: &Path) -> anyhow::Result<()> {
    let end = Instant::now() + REMOVE_WAIT;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_and_systemd_paths() {
        let r = Path::new("/sys/fs/cgroup");
        assert_eq!(host_path(r, "/docker/abc").unwrap(), r.join("docker/abc"));
        assert_eq!(host_path(r, "default/c1").unwrap(), r.join("default/c1"));
        assert_eq!(
            host_path(r, "system.slice:docker:abc").unwrap(),
            r.join("system.slice/docker-abc.scope")
        );
        assert_eq!(
            host_path(r, "machine-libpod.slice:libpod:x").unwrap(),
            r.join("machine.slice/machine-libpod.slice/libpod-x.scope")
        );
        for bad in ["/docker/../../etc", "", "/", "a:b", "a:b:c:d"] {
            assert!(host_path(r, bad).is_err(), "{bad}");
        }
    }
}
