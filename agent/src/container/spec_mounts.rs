//! The spec's mounts: OCI mount options parsed into mount(2) flags, propagation changes and
//! file-system data (in the agent, by `spec`), and mounted under the rootfs (in the helper).
use std::path::Path;

use anyhow::Context;
use nix::mount::{mount, MsFlags};

use super::config::MountConfig;
use super::securejoin::secure_join;
use crate::sandbox::mount_options::flag_change;

/// An OCI mount's options, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedOptions {
    pub flags: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: Vec<String>,
    pub bind: bool,
}

/// Flags that a bind mount only gets through a second, remounting call.
const REMOUNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// Parses OCI (mount(8)-style) options. Unknown words are file-system data; options Sandpod
/// cannot honour (id-mapped mounts) are an error.
pub fn parse_options(options: &[String]) -> Result<ParsedOptions, String> {
    let mut p = ParsedOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: Vec::new(),
        bind: false,
    };
    for opt in options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        let (set, clear) = match opt {
            "bind" => {
                p.bind = true;
                (MsFlags::MS_BIND, MsFlags::empty())
            }
            "rbind" => {
                p.bind = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                p.propagation.push(propagation(opt).expect("listed"));
                continue;
            }
            // Docker's tmpfs copy-up needs the image's content: not supported, harmless.
            "tmpcopyup" => {
                tracing::debug!("ignoring mount option tmpcopyup");
                continue;
            }
            "idmap" | "ridmap" => return Err(format!("mount option {opt:?} is not supported")),
            other => match flag_change(other) {
                Some(change) => change,
                None => {
                    p.data.push(other.to_string());
                    continue;
                }
            },
        };
        p.flags = (p.flags | set) & !clear;
    }
    Ok(p)
}

/// The flags of a propagation option (`rslave`, `private`, ...), or None.
pub fn propagation(opt: &str) -> Option<MsFlags> {
    let (rec, base) = match opt.strip_prefix('r') {
        Some(b @ ("private" | "shared" | "slave" | "unbindable")) => (MsFlags::MS_REC, b),
        _ => (MsFlags::empty(), opt),
    };
    let flag = match base {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(flag | rec)
}

/// Mounts `m` under `rootfs` (before pivot_root): creates the target (a file for a bind mount
/// of a file), mounts, remounts a bind mount for its flags, then applies propagation changes.
pub fn mount_one(rootfs: &Path, m: &MountConfig) -> anyhow::Result<()> {
    let target = secure_join(rootfs, &m.destination)
        .with_context(|| format!("mount destination {}", m.destination.display()))?;
    let flags = MsFlags::from_bits_truncate(m.flags as _);
    let what = || {
        format!(
            "mount {} ({}) on {}",
            m.source,
            if m.bind { "bind" } else { &m.fstype },
            m.destination.display()
        )
    };
    let source_is_dir = !m.bind || Path::new(&m.source).is_dir();
    if source_is_dir {
        std::fs::create_dir_all(&target)
            .with_context(|| format!("creating mount point {}", target.display()))?;
    } else if !target.exists() {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::File::create(&target)
            .with_context(|| format!("creating mount point {}", target.display()))?;
    }
    if m.bind {
        let first = flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
        mount(
            Some(m.source.as_str()),
            &target,
            None::<&str>,
            first,
            None::<&str>,
        )
        .with_context(what)?;
        let rest = flags & REMOUNT_FLAGS;
        if !rest.is_empty() {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rest,
                None::<&str>,
            )
            .with_context(|| format!("{}: remounting with {rest:?}", what()))?;
        }
    } else {
        let data = m.data.as_str();
        mount(
            Some(m.source.as_str()),
            &target,
            Some(m.fstype.as_str()),
            flags,
            (!data.is_empty()).then_some(data),
        )
        .with_context(what)?;
    }
    for p in &m.propagation {
        let p = MsFlags::from_bits_truncate(*p as _);
        mount(None::<&str>, &target, None::<&str>, p, None::<&str>)
            .with_context(|| format!("{}: propagation {p:?}", what()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_data_and_propagation_are_separated() {
        let p = parse_options(&opts(&[
            "rbind",
            "ro",
            "nosuid,rslave",
            "mode=755",
            "size=1m",
        ]))
        .unwrap();
        assert!(p.bind);
        assert_eq!(
            p.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        );
        assert_eq!(p.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(p.data, vec!["mode=755", "size=1m"]);
    }

    #[test]
    fn later_options_win_and_plain_bind_is_not_recursive() {
        let p = parse_options(&opts(&["ro", "rw", "bind", "private"])).unwrap();
        assert_eq!(p.flags, MsFlags::MS_BIND);
        assert_eq!(p.propagation, vec![MsFlags::MS_PRIVATE]);
        assert!(parse_options(&opts(&["tmpcopyup"]))
            .unwrap()
            .data
            .is_empty());
    }

    #[test]
    fn idmap_is_refused() {
        assert!(parse_options(&opts(&["idmap"]))
            .unwrap_err()
            .contains("idmap"));
    }

    #[test]
    fn propagation_names() {
        assert_eq!(
            propagation("rshared"),
            Some(MsFlags::MS_SHARED | MsFlags::MS_REC)
        );
        assert_eq!(propagation("unbindable"), Some(MsFlags::MS_UNBINDABLE));
        assert_eq!(propagation("ro"), None);
        assert_eq!(propagation("r"), None);
    }
}
