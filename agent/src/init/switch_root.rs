//! Classic switch_root: the initramfs's contents moved into a tmpfs that becomes `/`, then
//! `/init` re-executed there (same PID 1).
//!
//! Why: the initramfs is the kernel's `rootfs`, the root of the initial mount namespace, which
//! pivot_root(2) refuses to move (EINVAL): container setup needs a root that is an ordinary
//! mount. Copying is the only way to "move" files between file systems; the originals are
//! deleted afterwards so that their memory is freed. Runs first thing, before anything is
//! mounted: the tree holds only the cpio's files.
use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use nix::mount::{mount, MsFlags};

/// argv[1] of the re-executed agent; `=<ms>` carries how long the switch took.
pub const SWITCHED_ARG: &str = "--switched-root";

const NEW_ROOT: &str = "/newroot";

/// The switch's duration in ms if `args` shows it happened already.
pub fn switched(args: &[String]) -> Option<u64> {
    args.iter().find_map(|a| {
        a.strip_prefix(SWITCHED_ARG)
            .map(|rest| rest.trim_start_matches('=').parse().unwrap_or(0))
    })
}

/// Makes /init a read-only bind mount of itself. Container helpers are the agent binary
/// (`/proc/self/exe`); a container process that gets hold of it (e.g. `#!/proc/self/exe`, then
/// `/proc/<pid>/exe` — CVE-2019-5736) must not be able to rewrite the agent for the whole VM.
fn protect_agent_binary() -> anyhow::Result<()> {
    mount(
        Some("/init"),
        "/init",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context("bind-mounting /init")?;
    mount(
        None::<&str>,
        "/init",
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .context("making /init read-only")
}

/// Copies `/` into a tmpfs, deletes the originals, moves the tmpfs onto `/`, chroots and
/// re-executes `/init`. Returns only on failure.
pub fn switch_root() -> anyhow::Result<Infallible> {
    let start = Instant::now();
    let root_dev = std::fs::metadata("/").context("stat /")?.dev();
    std::fs::create_dir_all(NEW_ROOT).context("mkdir /newroot")?;
    mount(
        Some("tmpfs"),
        NEW_ROOT,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .context("mounting the new root tmpfs")?;
    let mut entries = Vec::new();
    for entry in std::fs::read_dir("/").context("reading /")? {
        let entry = entry?;
        if entry.file_name() == "newroot" {
            continue;
        }
        let src = entry.path();
        copy_tree(&src, &Path::new(NEW_ROOT).join(entry.file_name()), root_dev)?;
        entries.push(src);
    }
    // Only once everything is copied: the originals go, freeing their memory.
    for src in entries {
        let m = std::fs::symlink_metadata(&src)?;
        let removed = if m.is_dir() && m.dev() == root_dev {
            std::fs::remove_dir_all(&src)
        } else if m.is_dir() {
            Ok(())
        } else {
            std::fs::remove_file(&src)
        };
        if let Err(e) = removed {
            eprintln!(
                "sandpod-agent: switch_root: removing {}: {e}",
                src.display()
            );
        }
    }
    nix::unistd::chdir(NEW_ROOT).context("chdir /newroot")?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .context("moving the new root onto /")?;
    nix::unistd::chroot(".").context("chroot into the new root")?;
    nix::unistd::chdir("/").context("chdir /")?;
    protect_agent_binary()?;
    let ms = start.elapsed().as_millis();
    let argv = [
        CString::new("/init")?,
        CString::new(format!("{SWITCHED_ARG}={ms}"))?,
    ];
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let err = nix::unistd::execve(c"/init", &argv, &env).unwrap_err();
    Err(err).context("re-executing /init in the new root")
}

/// Copies `src` to `dst` (files, directories, symlinks, device nodes), staying on `dev`.
fn copy_tree(src: &Path, dst: &Path, dev: u64) -> anyhow::Result<()> {
    let m = std::fs::symlink_metadata(src).with_context(|| format!("stat {}", src.display()))?;
    let ft = m.file_type();
    let ctx = || format!("copying {}", src.display());
    if ft.is_dir() {
        std::fs::create_dir_all(dst).with_context(ctx)?;
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .with_context(ctx)?;
        if m.dev() != dev {
            // Something mounted there already: leave it, keep the (empty) mount point.
            return Ok(());
        }
        for entry in std::fs::read_dir(src).with_context(ctx)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()), dev)?;
        }
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst).with_context(ctx)?;
    } else if ft.is_file() {
        std::fs::copy(src, dst).with_context(ctx)?;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        let kind = nix::sys::stat::SFlag::from_bits_truncate(m.mode() & libc::S_IFMT);
        let perm = nix::sys::stat::Mode::from_bits_truncate(m.mode() & 0o7777);
        nix::sys::stat::mknod(dst, kind, perm, m.rdev()).with_context(ctx)?;
    }
    Ok(())
}
