//! The agent's one parser of mount options (a sandbox mount's, a container spec's): the
//! protocol's classification of each word ([`sandpod_protocol::mount_options`]) mapped to
//! mount(2) flags, propagation changes and file-system data.
use nix::mount::MsFlags;
use sandpod_protocol::mount_options::{classify, words, MountFlag, MountOption, Propagation};

/// A mount's options, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// mount(2) flags, without the propagation ones.
    pub flags: MsFlags,
    /// Propagation changes, applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Comma-joined words that are not flags, passed to the file system.
    pub data: String,
    /// A `bind` or `rbind` word.
    pub bind: bool,
}

/// The mount(2) flag of `f`.
pub fn flag(f: MountFlag) -> MsFlags {
    match f {
        MountFlag::ReadOnly => MsFlags::MS_RDONLY,
        MountFlag::NoSuid => MsFlags::MS_NOSUID,
        MountFlag::NoDev => MsFlags::MS_NODEV,
        MountFlag::NoExec => MsFlags::MS_NOEXEC,
        MountFlag::Synchronous => MsFlags::MS_SYNCHRONOUS,
        MountFlag::DirSync => MsFlags::MS_DIRSYNC,
        MountFlag::MandLock => MsFlags::MS_MANDLOCK,
        MountFlag::NoAtime => MsFlags::MS_NOATIME,
        MountFlag::NoDirAtime => MsFlags::MS_NODIRATIME,
        MountFlag::RelAtime => MsFlags::MS_RELATIME,
        MountFlag::StrictAtime => MsFlags::MS_STRICTATIME,
    }
}

/// The mount(2) flags of a propagation change.
pub fn propagation_flags(kind: Propagation, recursive: bool) -> MsFlags {
    let base = match kind {
        Propagation::Private => MsFlags::MS_PRIVATE,
        Propagation::Shared => MsFlags::MS_SHARED,
        Propagation::Slave => MsFlags::MS_SLAVE,
        Propagation::Unbindable => MsFlags::MS_UNBINDABLE,
    };
    if recursive {
        base | MsFlags::MS_REC
    } else {
        base
    }
}

/// The flags of a propagation word (`rslave`, `private`, ...), or None.
pub fn propagation(word: &str) -> Option<MsFlags> {
    sandpod_protocol::mount_options::propagation(word).map(|(k, r)| propagation_flags(k, r))
}

/// Parses mount(8)-style options; later words win (`ro,rw` is read-write). Recursive
/// read-only (`rro`) is approximated by read-only. Options Sandpod cannot honour (id-mapped
/// mounts) are an error; Docker's `tmpcopyup` (needs the image's content) is ignored.
pub fn parse(options: &[String]) -> Result<MountOptions, String> {
    let mut p = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: String::new(),
        bind: false,
    };
    let mut data = Vec::new();
    for word in words(options) {
        let (set, clear) = match classify(word) {
            MountOption::Defaults => continue,
            MountOption::Set(f) => (flag(f), MsFlags::empty()),
            MountOption::Clear(f) => (MsFlags::empty(), flag(f)),
            MountOption::RecursiveReadOnly(true) => (MsFlags::MS_RDONLY, MsFlags::empty()),
            MountOption::RecursiveReadOnly(false) => (MsFlags::empty(), MsFlags::MS_RDONLY),
            MountOption::Bind { recursive } => {
                p.bind = true;
                let rec = if recursive {
                    MsFlags::MS_REC
                } else {
                    MsFlags::empty()
                };
                (MsFlags::MS_BIND | rec, MsFlags::empty())
            }
            MountOption::Remount => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            MountOption::Propagation { kind, recursive } => {
                p.propagation.push(propagation_flags(kind, recursive));
                continue;
            }
            MountOption::TmpCopyUp => {
                tracing::debug!("ignoring mount option tmpcopyup");
                continue;
            }
            MountOption::IdMap { .. } => {
                return Err(format!("mount option {word:?} is not supported"))
            }
            MountOption::Data(d) => {
                data.push(d);
                continue;
            }
        };
        p.flags = (p.flags | set) & !clear;
    }
    p.data = data.join(",");
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_data_and_propagation_are_separated() {
        let p = parse(&opts(&[
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
        assert_eq!(p.data, "mode=755,size=1m");
    }

    #[test]
    fn splits_flags_from_data() {
        let m = parse(&opts(&["ro", "nosuid,nodev", "mode=0755", "size=64m"])).unwrap();
        assert_eq!(
            m.flags,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        );
        assert_eq!(m.data, "mode=0755,size=64m");
        assert!(!m.bind);
    }

    #[test]
    fn later_options_win_and_plain_bind_is_not_recursive() {
        let p = parse(&opts(&["ro", "rw", "bind", "private"])).unwrap();
        assert_eq!(p.flags, MsFlags::MS_BIND);
        assert_eq!(p.propagation, vec![MsFlags::MS_PRIVATE]);
        let p = parse(&opts(&["ro", "rw", "rbind"])).unwrap();
        assert_eq!(p.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(p.data, "");
        assert_eq!(parse(&[]).unwrap().flags, MsFlags::empty());
        let p = parse(&opts(&["rro", "defaults", "remount"])).unwrap();
        assert_eq!(p.flags, MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT);
    }

    #[test]
    fn tmpcopyup_is_ignored_and_idmap_refused() {
        assert_eq!(parse(&opts(&["tmpcopyup"])).unwrap().data, "");
        assert!(parse(&opts(&["idmap"])).unwrap_err().contains("idmap"));
    }

    #[test]
    fn propagation_words() {
        assert_eq!(
            propagation("rshared"),
            Some(MsFlags::MS_SHARED | MsFlags::MS_REC)
        );
        assert_eq!(propagation("unbindable"), Some(MsFlags::MS_UNBINDABLE));
        assert_eq!(propagation("ro"), None);
        assert_eq!(propagation("r"), None);
    }
}
