//! mount(8)-style options split into mount(2) flags and file-system data.
use nix::mount::MsFlags;

/// Flags and data of one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Comma-joined options that are not flags, passed to the file system.
    pub data: String,
}

/// Splits `options` into flags and data. `defaults`, `rw`, `suid`, `dev`, `exec`, `async`,
/// `atime` clear their flag (they are the defaults).
pub fn parse(options: &[String]) -> MountOptions {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        let (set, clear) = match opt {
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "private" => (MsFlags::MS_PRIVATE, MsFlags::empty()),
            "rprivate" => (MsFlags::MS_PRIVATE | MsFlags::MS_REC, MsFlags::empty()),
            "shared" => (MsFlags::MS_SHARED, MsFlags::empty()),
            "rshared" => (MsFlags::MS_SHARED | MsFlags::MS_REC, MsFlags::empty()),
            "slave" => (MsFlags::MS_SLAVE, MsFlags::empty()),
            "rslave" => (MsFlags::MS_SLAVE | MsFlags::MS_REC, MsFlags::empty()),
            other => match flag_change(other) {
                Some(change) => change,
                None => {
                    data.push(other);
                    continue;
                }
            },
        };
        flags = (flags | set) & !clear;
    }
    MountOptions {
        flags,
        data: data.join(","),
    }
}

/// What a plain flag option does: (flags it sets, flags it clears); None for anything else
/// (bind, propagation and file-system data are the caller's). `defaults`, `rw`, `suid`, `dev`,
/// `exec`, `async`, `atime`, ... clear their flag; recursive read-only (`rro`, mount_setattr) is
/// approximated by read-only.
pub fn flag_change(opt: &str) -> Option<(MsFlags, MsFlags)> {
    let none = MsFlags::empty();
    Some(match opt {
        "defaults" => (none, none),
        "ro" | "rro" => (MsFlags::MS_RDONLY, none),
        "rw" | "rrw" => (none, MsFlags::MS_RDONLY),
        "nosuid" => (MsFlags::MS_NOSUID, none),
        "suid" => (none, MsFlags::MS_NOSUID),
        "nodev" => (MsFlags::MS_NODEV, none),
        "dev" => (none, MsFlags::MS_NODEV),
        "noexec" => (MsFlags::MS_NOEXEC, none),
        "exec" => (none, MsFlags::MS_NOEXEC),
        "sync" => (MsFlags::MS_SYNCHRONOUS, none),
        "async" => (none, MsFlags::MS_SYNCHRONOUS),
        "dirsync" => (MsFlags::MS_DIRSYNC, none),
        "mand" => (MsFlags::MS_MANDLOCK, none),
        "nomand" => (none, MsFlags::MS_MANDLOCK),
        "noatime" => (MsFlags::MS_NOATIME, none),
        "atime" => (none, MsFlags::MS_NOATIME),
        "nodiratime" => (MsFlags::MS_NODIRATIME, none),
        "diratime" => (none, MsFlags::MS_NODIRATIME),
        "relatime" => (MsFlags::MS_RELATIME, none),
        "norelatime" => (none, MsFlags::MS_RELATIME),
        "strictatime" => (MsFlags::MS_STRICTATIME, none),
        "nostrictatime" => (none, MsFlags::MS_STRICTATIME),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_flags_from_data() {
        let m = parse(&opts(&["ro", "nosuid,nodev", "mode=0755", "size=64m"]));
        assert_eq!(
            m.flags,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        );
        assert_eq!(m.data, "mode=0755,size=64m");
    }

    #[test]
    fn later_options_win() {
        let m = parse(&opts(&["ro", "rw", "rbind"]));
        assert_eq!(m.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(m.data, "");
        assert_eq!(parse(&[]).flags, MsFlags::empty());
    }
}
