//! mount(8)-style mount options (an OCI mount's `options`, a sandbox mount's), classified word
//! by word: what each one means, without mount(2) itself. The agent maps the classes to its
//! mount flags in one place; the host uses [`bind_kind`] to find the bind mounts it shares.

/// A mount(2) flag that an option sets or clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MountFlag {
    ReadOnly,
    NoSuid,
    NoDev,
    NoExec,
    Synchronous,
    DirSync,
    MandLock,
    NoAtime,
    NoDirAtime,
    RelAtime,
    StrictAtime,
}

/// A propagation type (`shared`, `rslave`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Propagation {
    Private,
    Shared,
    Slave,
    Unbindable,
}

/// What one option word means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOption<'a> {
    /// `defaults`: nothing to change.
    Defaults,
    /// `ro`, `nosuid`, `noatime`, ...
    Set(MountFlag),
    /// `rw`, `suid`, `atime`, ...: the default, clearing the flag an earlier word set.
    Clear(MountFlag),
    /// `rro` (true) and `rrw` (false): read-only for the whole subtree (mount_setattr).
    RecursiveReadOnly(bool),
    /// `bind` or, recursive, `rbind`.
    Bind { recursive: bool },
    /// `remount`.
    Remount,
    /// `private`, `rshared`, ...: a propagation change, recursive with the `r` prefix.
    Propagation { kind: Propagation, recursive: bool },
    /// `tmpcopyup` (Docker's: fill a tmpfs with the image's content first).
    TmpCopyUp,
    /// `idmap`, `ridmap`: an id-mapped mount.
    IdMap { recursive: bool },
    /// Anything else: data for the file system (`mode=755`, `size=64m`).
    Data(&'a str),
}

/// The option words of `options`: each entry may hold several, comma-separated; empty words
/// are skipped.
pub fn words(options: &[String]) -> impl Iterator<Item = &str> {
    options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
}

/// The propagation a word names (`rslave`: slave, recursive), or None.
pub fn propagation(word: &str) -> Option<(Propagation, bool)> {
    let (recursive, base) = match word.strip_prefix('r') {
        Some(b @ ("private" | "shared" | "slave" | "unbindable")) => (true, b),
        _ => (false, word),
    };
    let kind = match base {
        "private" => Propagation::Private,
        "shared" => Propagation::Shared,
        "slave" => Propagation::Slave,
        "unbindable" => Propagation::Unbindable,
        _ => return None,
    };
    Some((kind, recursive))
}

/// What the option word `word` means.
pub fn classify(word: &str) -> MountOption<'_> {
    use MountFlag::*;
    use MountOption::{Clear, Set};
    if let Some((kind, recursive)) = propagation(word) {
        return MountOption::Propagation { kind, recursive };
    }
    match word {
        "defaults" => MountOption::Defaults,
        "bind" => MountOption::Bind { recursive: false },
        "rbind" => MountOption::Bind { recursive: true },
        "remount" => MountOption::Remount,
        "tmpcopyup" => MountOption::TmpCopyUp,
        "idmap" => MountOption::IdMap { recursive: false },
        "ridmap" => MountOption::IdMap { recursive: true },
        "rro" => MountOption::RecursiveReadOnly(true),
        "rrw" => MountOption::RecursiveReadOnly(false),
        "ro" => Set(ReadOnly),
        "rw" => Clear(ReadOnly),
        "nosuid" => Set(NoSuid),
        "suid" => Clear(NoSuid),
        "nodev" => Set(NoDev),
        "dev" => Clear(NoDev),
        "noexec" => Set(NoExec),
        "exec" => Clear(NoExec),
        "sync" => Set(Synchronous),
        "async" => Clear(Synchronous),
        "dirsync" => Set(DirSync),
        "mand" => Set(MandLock),
        "nomand" => Clear(MandLock),
        "noatime" => Set(NoAtime),
        "atime" => Clear(NoAtime),
        "nodiratime" => Set(NoDirAtime),
        "diratime" => Clear(NoDirAtime),
        "relatime" => Set(RelAtime),
        "norelatime" => Clear(RelAtime),
        "strictatime" => Set(StrictAtime),
        "nostrictatime" => Clear(StrictAtime),
        other => MountOption::Data(other),
    }
}

/// Whether a mount with these options and type is a bind mount (a `bind` or `rbind` word, or
/// type `bind`), and if so whether it is recursive (an `rbind` word): `Some(recursive)`.
pub fn bind_kind(options: &[String], typ: Option<&str>) -> Option<bool> {
    let mut bind = typ == Some("bind");
    let mut recursive = false;
    for word in words(options) {
        if let MountOption::Bind { recursive: r } = classify(word) {
            bind = true;
            recursive |= r;
        }
    }
    bind.then_some(recursive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn words_are_split_on_commas() {
        let o = opts(&["ro", "nosuid,,nodev", ""]);
        assert_eq!(words(&o).collect::<Vec<_>>(), ["ro", "nosuid", "nodev"]);
    }

    #[test]
    fn every_class() {
        assert_eq!(classify("defaults"), MountOption::Defaults);
        assert_eq!(classify("ro"), MountOption::Set(MountFlag::ReadOnly));
        assert_eq!(classify("rw"), MountOption::Clear(MountFlag::ReadOnly));
        assert_eq!(classify("atime"), MountOption::Clear(MountFlag::NoAtime));
        assert_eq!(
            classify("strictatime"),
            MountOption::Set(MountFlag::StrictAtime)
        );
        assert_eq!(classify("rro"), MountOption::RecursiveReadOnly(true));
        assert_eq!(classify("rrw"), MountOption::RecursiveReadOnly(false));
        assert_eq!(classify("bind"), MountOption::Bind { recursive: false });
        assert_eq!(classify("rbind"), MountOption::Bind { recursive: true });
        assert_eq!(classify("remount"), MountOption::Remount);
        assert_eq!(classify("tmpcopyup"), MountOption::TmpCopyUp);
        assert_eq!(classify("ridmap"), MountOption::IdMap { recursive: true });
        assert_eq!(
            classify("rslave"),
            MountOption::Propagation {
                kind: Propagation::Slave,
                recursive: true
            }
        );
        assert_eq!(
            classify("unbindable"),
            MountOption::Propagation {
                kind: Propagation::Unbindable,
                recursive: false
            }
        );
        assert_eq!(classify("mode=0755"), MountOption::Data("mode=0755"));
        assert_eq!(classify("r"), MountOption::Data("r"));
    }

    #[test]
    fn propagation_names() {
        assert_eq!(propagation("rshared"), Some((Propagation::Shared, true)));
        assert_eq!(propagation("private"), Some((Propagation::Private, false)));
        assert_eq!(propagation("ro"), None);
        assert_eq!(propagation("r"), None);
        assert_eq!(propagation("rrshared"), None);
    }

    #[test]
    fn bind_mounts_and_their_recursion() {
        assert_eq!(bind_kind(&opts(&["rbind", "ro"]), None), Some(true));
        assert_eq!(bind_kind(&opts(&["bind"]), Some("none")), Some(false));
        assert_eq!(bind_kind(&[], Some("bind")), Some(false));
        assert_eq!(bind_kind(&opts(&["ro,rbind"]), None), Some(true));
        assert_eq!(bind_kind(&opts(&["bind", "rbind"]), None), Some(true));
        assert_eq!(bind_kind(&opts(&["ro"]), Some("tmpfs")), None);
        assert_eq!(bind_kind(&[], None), None);
    }
}
