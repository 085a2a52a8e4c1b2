//! The VMM binary the jails run: one exec-only copy per VMM binary under the state root,
//! `<root>/.vmm/<key>/<name>` (root's, mode 0111), bind-mounted read-only into every jail.
//!
//! The jail's uid cannot read it, so the kernel makes the VMM non-dumpable at exec (no ptrace,
//! no /proc/<pid>/mem by its own uid, no core), and it cannot write it (root's, and read-only in
//! the jail). This used to be a copy into each jail's tmpfs. Each copy took 0.3–0.6 s of a start in
//! the test host and 3.5 MiB per sandbox. One shared copy also shares the VMM's text between
//! sandboxes (page cache), so it counts once, not per pod.
//!
//! `<key>` is a SHA-256 over the binary's identity (path, device, inode, size, mtime, ctime:
//! [`FileIdentity`], as the template key has it). Installing a new binary gives a new key, hence
//! a new copy. An old copy (3.5 MiB) stays until a reboot (the state root is a tmpfs) or until
//! removed by hand: a start may be about to bind it. Two starts that race each make a copy in a directory of their own and rename it into
//! place. The loser uses the winner's copy after checking it.
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::sandbox::template::key::FileIdentity;

/// The directory of the copies under a state root (no sandbox id starts with a dot).
pub const PROGRAM_COPIES_DIR: &str = ".vmm";
/// The copies' mode: execute only.
const EXEC_ONLY: u32 = 0o111;

/// The exec-only copy of `program` under `root`, made if there is none (see the module docs).
pub fn exec_only_copy(root: &Path, program: &Path) -> anyhow::Result<PathBuf> {
    let name = program
        .file_name()
        .with_context(|| format!("the VMM binary {} has no file name", program.display()))?;
    let before = FileIdentity::of(program)
        .with_context(|| format!("reading the VMM binary {}", program.display()))?;
    let key = key_of(&before)?;
    let dir = root.join(PROGRAM_COPIES_DIR);
    let final_dir = dir.join(&key);
    let copy = final_dir.join(name);
    if is_sound_copy(&copy, before.size) {
        return Ok(copy);
    }
    make_private_dir(&dir)?;
    // A copy that is not as made here (another mode, owner or size) is replaced.
    if final_dir.exists() {
        tracing::warn!(
            "{} is not a sound copy of {}: replacing it",
            copy.display(),
            program.display()
        );
        std::fs::remove_dir_all(&final_dir)
            .with_context(|| format!("removing {}", final_dir.display()))?;
    }
    // Staged in a directory of this process's own, removed whatever fails.
    let staging = dir.join(format!(".tmp-{}-{}", std::process::id(), nanos()));
    make_private_dir_new(&staging)?;
    let staged = stage(program, &staging.join(name), &before).and_then(|()| {
        match std::fs::rename(&staging, &final_dir) {
            Ok(()) => Ok(()),
            // Another start renamed its copy into place first.
            Err(e) if final_dir.is_dir() => {
                tracing::debug!("{} made by another start ({e})", final_dir.display());
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("renaming into {}", final_dir.display())),
        }
    });
    let _ = std::fs::remove_dir_all(&staging);
    staged?;
    if !is_sound_copy(&copy, before.size) {
        bail!(
            "{} is not a sound copy of {}",
            copy.display(),
            program.display()
        );
    }
    Ok(copy)
}

/// Whether `copy` is what [`exec_only_copy`] makes: a regular file (not a symlink), root's,
/// mode 0111, `size` bytes.
pub fn is_sound_copy(copy: &Path, size: u64) -> bool {
    std::fs::symlink_metadata(copy).is_ok_and(|m| {
        m.file_type().is_file()
            && m.uid() == 0
            && m.permissions().mode() & 0o7777 == EXEC_ONLY
            && m.len() == size
    })
}

/// Copies `program` to `to`, exec-only; fails if `program` changed meanwhile (the copy could
/// mix two versions).
fn stage(program: &Path, to: &Path, before: &FileIdentity) -> anyhow::Result<()> {
    std::fs::copy(program, to)
        .with_context(|| format!("copying {} to {}", program.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(EXEC_ONLY))
        .with_context(|| format!("chmod {}", to.display()))?;
    if FileIdentity::of(program).ok().as_ref() != Some(before) {
        bail!(
            "the VMM binary {} changed while it was copied",
            program.display()
        );
    }
    Ok(())
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn key_of(identity: &FileIdentity) -> anyhow::Result<String> {
    let bytes = serde_json::to_vec(identity)?;
    let digest = Sha256::digest(&bytes);
    Ok(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// Makes `dir` (root's, 0700); it must not exist.
fn make_private_dir_new(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", dir.display()))
}

/// Makes `dir` (root's, 0700) if it is not there.
fn make_private_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod {}", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("mkdir {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(d: &Path, bytes: &[u8]) -> PathBuf {
        let p = d.join("bin").join("sandpod-vmm");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    #[ignore = "needs root (the copy must be root's): run by `make unit` as root (--include-ignored), as in CI"]
    fn one_exec_only_copy_per_binary_reused_and_replaced_when_tampered_with() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let prog = program(d.path(), b"\x7fELF version one");
        let copy = exec_only_copy(&root, &prog).unwrap();
        assert!(copy.starts_with(root.join(PROGRAM_COPIES_DIR)));
        assert_eq!(copy.file_name().unwrap(), "sandpod-vmm");
        assert_eq!(std::fs::read(&copy).unwrap(), b"\x7fELF version one");
        let m = std::fs::metadata(&copy).unwrap();
        assert_eq!((m.uid(), m.permissions().mode() & 0o7777), (0, 0o111));
        let dir = std::fs::metadata(root.join(PROGRAM_COPIES_DIR)).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);

        // Reused: the same file, not copied again.
        let again = exec_only_copy(&root, &prog).unwrap();
        assert_eq!(again, copy);
        assert_eq!(std::fs::metadata(&again).unwrap().ino(), m.ino());

        // A copy made readable (or otherwise changed) is replaced by a sound one.
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let replaced = exec_only_copy(&root, &prog).unwrap();
        assert_eq!(replaced, copy);
        assert!(is_sound_copy(&replaced, m.len()));

        // Another binary (installed anew): another copy, with its bytes.
        std::fs::remove_file(&prog).unwrap();
        let prog = program(d.path(), b"\x7fELF version two, longer");
        let other = exec_only_copy(&root, &prog).unwrap();
        assert_ne!(other, copy);
        assert_eq!(
            std::fs::read(&other).unwrap(),
            b"\x7fELF version two, longer"
        );
        // No staging directory left behind.
        let names: Vec<_> = std::fs::read_dir(root.join(PROGRAM_COPIES_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with(".tmp-")), "{names:?}");
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_symlink_or_a_readable_file_is_not_a_sound_copy() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"1234").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!is_sound_copy(&f, 4));
        let l = d.path().join("l");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        assert!(!is_sound_copy(&l, 4));
        assert!(!is_sound_copy(&d.path().join("missing"), 4));
    }
}
