//! A template's spare memory: its `memory.bin` already copied into a file as long as the VM's
//! memory, kept in the template's directory as [`SPARE_FILE`]. The next sandbox restored from
//! the template takes it (a rename, so one sandbox only) into its restore directory as
//! [`SNAPSHOT_READY_MEMORY_FILE`], and its VMM maps it as the guest's memory instead of copying
//! the template's: the copy, most of a restore in the nested test host, is then off the start's
//! path. A new spare is made in the background once the sandbox a restore started is up
//! ([`PendingRefill`], [`spawn_refill`]: `sandpod template refill`, at the idle scheduling
//! class, so it takes only CPU time nothing else wants), with the template's
//! [`hot_pages`](super::hot_pages) allocated in it.
//!
//! The spare lives inside the template's directory: removing or rebuilding the template removes
//! it too, so a spare is never another build's memory. It is written under the key's lock (as
//! builds and removals are) into [`SPARE_TMP`], then renamed into place; what holds the lock
//! sees either no spare or a complete one. It is root's, mode 0600, until claimed; then it is
//! the claiming sandbox's VM's memory (given to the jail's ids) and goes with the sandbox's
//! state directory.
use std::path::{Path, PathBuf};

use sandpod_vmconfig::SNAPSHOT_READY_MEMORY_FILE;

use super::hot_pages;
use super::store::{io, sparse_copy, Template, TemplateError, TemplateStore};

/// The spare, in a template's directory.
pub const SPARE_FILE: &str = "memory.spare";
/// A spare being written, in a template's directory.
pub const SPARE_TMP: &str = "memory.spare.tmp";

/// Moves `t`'s spare, if it has one, into the directory `dest` as
/// [`SNAPSHOT_READY_MEMORY_FILE`], owned by `owner` (the jail's uid and gid; None: root's).
/// Returns whether there was one.
pub fn claim(t: &Template, dest: &Path, owner: Option<(u32, u32)>) -> Result<bool, TemplateError> {
    let (spare, ready) = (
        t.dir.join(SPARE_FILE),
        dest.join(SNAPSHOT_READY_MEMORY_FILE),
    );
    match std::fs::rename(&spare, &ready) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io("claiming", &spare)(e)),
    }
    if let Some((uid, gid)) = owner {
        if let Err(e) = std::os::unix::fs::chown(&ready, Some(uid), Some(gid)) {
            // Left root's, the jailed VMM could not open it: it copies the template's instead.
            let _ = std::fs::remove_file(&ready);
            return Err(io("chown", &ready)(e));
        }
    }
    Ok(true)
}

/// Removes the name of a spare claimed into `restore_dir` (once its VMM has it open).
pub fn unlink_claimed(restore_dir: &Path) {
    let p = restore_dir.join(SNAPSHOT_READY_MEMORY_FILE);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!("removing {}: {e}", p.display());
        }
        _ => {}
    }
}

/// What [`refill`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refill {
    /// Made a spare.
    Made,
    /// The template already has one.
    Present,
    /// Another process holds the key's lock (a refill, a build or a removal): nothing done.
    Busy,
    /// The template is gone or was made again since `t` was read: nothing done.
    Stale,
}

/// Makes `t`'s spare if it has none, under the key's lock (not waiting for it).
pub fn refill(store: &TemplateStore, t: &Template) -> Result<Refill, TemplateError> {
    let Some(_lock) = store.try_lock(&t.key)? else {
        return Ok(Refill::Busy);
    };
    match store.check(&t.info.inputs) {
        Ok(now) if now == *t => {}
        _ => return Ok(Refill::Stale),
    }
    let spare = t.dir.join(SPARE_FILE);
    if spare.exists() {
        return Ok(Refill::Present);
    }
    let tmp = t.dir.join(SPARE_TMP);
    // Left by a refill that died (this process holds the lock: nobody else writes it).
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("removing", &tmp)(e)),
        _ => {}
    }
    let written = sparse_copy(&t.memory_file(), &tmp, 0o600).and_then(|()| {
        preallocate_hot_pages(t, &tmp);
        std::fs::rename(&tmp, &spare).map_err(io("renaming into place", &spare))
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| Refill::Made)
}

/// Allocates the template's hot pages (if it has a valid list) in the new spare `tmp`. Only an
/// optimisation: what fails is logged and the spare stays as it is.
fn preallocate_hot_pages(t: &Template, tmp: &Path) {
    let allocated = std::fs::OpenOptions::new()
        .write(true)
        .open(tmp)
        .and_then(|f| Ok((f.metadata()?.len(), f)))
        .map_err(|e| e.to_string())
        .and_then(|(len, f)| match hot_pages::load(&t.dir, len)? {
            Some(hot) => hot_pages::preallocate(&f, &hot)
                .map(|()| Some(hot.bytes()))
                .map_err(|e| format!("allocating them: {e}")),
            None => Ok(None),
        });
    match allocated {
        Ok(Some(bytes)) => tracing::debug!(bytes, "the spare's hot pages allocated"),
        Ok(None) => {}
        Err(e) => tracing::warn!("{}: the hot pages are left out: {e}", t.dir.display()),
    }
}

/// The refill of a template's spare, owed by the sandbox that took it: started by
/// [`PendingRefill::spawn`] once that sandbox is up (its first container created).
#[derive(Debug)]
pub struct PendingRefill {
    self_exe: PathBuf,
    root: PathBuf,
    log: Option<PathBuf>,
    template: Template,
}

impl PendingRefill {
    /// The refill of `t`'s spare, by `self_exe` in the state root `root`, logging to `log`.
    pub fn new(self_exe: &Path, root: &Path, log: Option<&Path>, t: &Template) -> PendingRefill {
        PendingRefill {
            self_exe: self_exe.to_path_buf(),
            root: root.to_path_buf(),
            log: log.map(Path::to_path_buf),
            template: t.clone(),
        }
    }

    /// Starts it ([`spawn_refill`]).
    pub fn spawn(self) {
        spawn_refill(
            &self.self_exe,
            &self.root,
            self.log.as_deref(),
            &self.template,
        );
    }
}

/// Starts `sandpod template refill <key>` for `t` in the background (its own process group,
/// logging to `log`, the runtime's log if it has one: never a sandbox's), not waited for: it
/// outlives a `sandpod run` that started it.
pub fn spawn_refill(self_exe: &Path, root: &Path, log: Option<&Path>, t: &Template) {
    let mut cmd = tokio::process::Command::new(self_exe);
    cmd.arg("--root").arg(root);
    if let Some(log) = log {
        cmd.arg("--log").arg(log);
    }
    cmd.args(["template", "refill"])
        .arg(t.key.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and makes one syscall
    // (sched_setscheduler, async-signal-safe), allocating nothing: the refill is at the idle
    // class from its exec on, never competing with the start that spawned it.
    unsafe {
        // (Refused, it stays at the normal class rather than not starting.)
        cmd.pre_exec(|| {
            let _ = schedule_idle();
            Ok(())
        });
    }
    match cmd.spawn() {
        // Not waited for: tokio reaps it once it exits (or init does, after this process).
        Ok(child) => drop(child),
        Err(e) => tracing::warn!("starting the refill of {}'s spare: {e}", t.dir.display()),
    }
}

/// Puts the calling process in the idle scheduling class (SCHED_IDLE): it runs only when no
/// other task wants the CPU.
fn schedule_idle() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads the sched_param it is given (a live local) and changes
    // only this process's scheduling policy.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
