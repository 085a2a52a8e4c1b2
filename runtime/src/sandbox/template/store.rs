//! The templates under a state root, `<root>/.templates/` (a name no sandbox id can take: ids do
//! not start with a dot):
//!
//! - `<key>/`: a complete template: `state.bin`, `memory.bin` (sparse) and `template.json`
//!   ([`TemplateInfo`]), root's, read-only;
//! - `<key>.lock`: the lock its builders take (flock), so that of two sandboxes racing one builds
//!   and the other waits, then both use it;
//! - `<key>.tmp/`: a template being built, renamed to `<key>/` once complete;
//! - `<key>.failed`: why its last build failed; starts do not try again for [`FAILED_RETRY`]
//!   (`sandpod template build` does);
//! - `b-<short key>/`: the state directory of the VM a build boots.
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sandpod_vmconfig::{SNAPSHOT_MEMORY_FILE, SNAPSHOT_STATE_FILE};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::key::{KeyInputs, TemplateKey};
use crate::sandbox::layout::Layout;
use crate::sandbox::state::{now_rfc3339_nanos, write_json_atomic};

/// The templates' directory under the state root.
pub const TEMPLATES_DIR: &str = ".templates";
/// A template's description, beside its two files.
pub const TEMPLATE_INFO: &str = "template.json";
/// Largest `state.bin` accepted (vCPU, VM and device state: a few hundred KiB at most).
pub const STATE_MAX: u64 = 64 << 20;
/// How long after a failed build sandbox starts boot cold without trying again.
pub const FAILED_RETRY: Duration = Duration::from_secs(3600);

#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A template directory that is missing, incomplete or not for these inputs.
    #[error("template {dir} is not usable: {why}")]
    Unusable { dir: PathBuf, why: String },
}

pub(super) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TemplateError {
    let path = path.to_path_buf();
    move |source| TemplateError::Io { what, path, source }
}

/// `template.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInfo {
    pub key: String,
    /// When it was made (RFC 3339) and by which process: tells two builds of one key apart.
    pub created: String,
    pub builder_pid: u32,
    pub inputs: KeyInputs,
}

/// A complete template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub key: TemplateKey,
    pub dir: PathBuf,
    pub info: TemplateInfo,
}

/// How a template's files reached a sandbox's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Hard links (the same file system: nothing copied, one page cache).
    Linked,
    /// Copies (another file system), holes kept.
    Copied,
}

impl Template {
    pub fn state_file(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_STATE_FILE)
    }
    pub fn memory_file(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_MEMORY_FILE)
    }

    /// Puts the template's two files into the existing directory `dest`: hard links, else (on
    /// another file system) sparse copies, read-only.
    pub fn place_into(&self, dest: &Path) -> Result<Placed, TemplateError> {
        let mut placed = Placed::Linked;
        for name in [SNAPSHOT_STATE_FILE, SNAPSHOT_MEMORY_FILE] {
            let (src, dst) = (self.dir.join(name), dest.join(name));
            if let Err(e) = std::fs::hard_link(&src, &dst) {
                tracing::debug!("linking {} failed ({e}); copying it", src.display());
                sparse_copy(&src, &dst, 0o444)?;
                placed = Placed::Copied;
            }
        }
        Ok(placed)
    }
}

/// Copies `src` to a new file `dst` of mode `mode`, as long as `src` and with the same holes:
/// `src`'s data extents (SEEK_DATA / SEEK_HOLE) copied by the kernel (copy_file_range, else
/// sendfile). A template's `memory.bin` is sparse (only the pages the guest wrote).
pub fn sparse_copy(src: &Path, dst: &Path, mode: u32) -> Result<(), TemplateError> {
    let from = std::fs::File::open(src).map_err(io("opening", src))?;
    let to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(dst)
        .map_err(io("creating", dst))?;
    copy_extents(&from, &to).map_err(io("copying into", dst))
}

fn copy_extents(from: &std::fs::File, to: &std::fs::File) -> std::io::Result<()> {
    let len = from.metadata()?.len();
    to.set_len(len)?;
    for (start, end) in super::extents::data_extents(from, len)? {
        (&*from).seek(SeekFrom::Start(start))?;
        (&*to).seek(SeekFrom::Start(start))?;
        if std::io::copy(&mut from.take(end - start), &mut &*to)? != end - start {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while copied",
            ));
        }
    }
    Ok(())
}

/// The exclusive lock of one key (released when dropped).
#[derive(Debug)]
pub struct KeyLock {
    _file: std::fs::File,
}

/// The templates of one state root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateStore {
    pub dir: PathBuf,
}

impl TemplateStore {
    pub fn new(root: &Path) -> TemplateStore {
        TemplateStore {
            dir: root.join(TEMPLATES_DIR),
        }
    }

    pub fn template_dir(&self, key: &TemplateKey) -> PathBuf {
        self.dir.join(key.as_str())
    }
    fn lock_path(&self, key: &TemplateKey) -> PathBuf {
        self.dir.join(format!("{key}.lock"))
    }
    fn tmp_dir(&self, key: &TemplateKey) -> PathBuf {
        self.dir.join(format!("{key}.tmp"))
    }
    fn failed_path(&self, key: &TemplateKey) -> PathBuf {
        self.dir.join(format!("{key}.failed"))
    }
    /// The state directory of the VM that builds the template `key`.
    pub fn build_layout(&self, key: &TemplateKey) -> Layout {
        Layout {
            dir: self.dir.join(format!("b-{}", key.short())),
        }
    }

    fn create_dir(&self) -> Result<(), TemplateError> {
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("chmod", &self.dir))
    }

    /// Takes the lock of `key`, waiting for another holder (blocking).
    pub fn lock(&self, key: &TemplateKey) -> Result<KeyLock, TemplateError> {
        self.take_lock(key, true)?.ok_or_else(|| TemplateError::Io {
            what: "locking",
            path: self.lock_path(key),
            source: std::io::ErrorKind::WouldBlock.into(),
        })
    }

    /// The key's lock if nobody holds it, else None (no wait). Creates neither the templates'
    /// directory nor, if that is gone, the lock file.
    pub fn try_lock(&self, key: &TemplateKey) -> Result<Option<KeyLock>, TemplateError> {
        self.take_lock(key, false)
    }

    /// (Only a waiting caller creates the templates' directory: one that does not wait is never
    /// the first there.)
    fn take_lock(&self, key: &TemplateKey, wait: bool) -> Result<Option<KeyLock>, TemplateError> {
        if wait {
            self.create_dir()?;
        }
        let path = self.lock_path(key);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("opening", &path))?;
        let op = if wait {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::NonBlockingLockExclusive
        };
        match rustix::fs::flock(&file, op) {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) if !wait => Ok(None),
            Err(e) => Err(io("locking", &path)(e.into())),
        }
    }

    async fn lock_async(&self, key: &TemplateKey) -> Result<KeyLock, TemplateError> {
        let (store, k) = (self.clone(), key.clone());
        tokio::task::spawn_blocking(move || store.lock(&k))
            .await
            .unwrap_or_else(|e| {
                Err(TemplateError::Io {
                    what: "locking",
                    path: self.lock_path(key),
                    source: std::io::Error::other(e),
                })
            })
    }

    /// The complete template of `inputs` (its key), if there is one: its files present with
    /// sane sizes (`memory.bin` exactly the VM's memory, `state.bin` not empty and at most
    /// [`STATE_MAX`]) and its `template.json` naming these inputs.
    pub fn check(&self, inputs: &KeyInputs) -> Result<Template, TemplateError> {
        self.load(inputs.key(), Some(inputs))
    }

    /// The complete template of `key`, as [`Self::check`] finds it for the inputs its
    /// `template.json` names (they must hash to `key`).
    pub fn check_key(&self, key: &TemplateKey) -> Result<Template, TemplateError> {
        self.load(key.clone(), None)
    }

    fn load(
        &self,
        key: TemplateKey,
        inputs: Option<&KeyInputs>,
    ) -> Result<Template, TemplateError> {
        let dir = self.template_dir(&key);
        let unusable = |why: String| TemplateError::Unusable {
            dir: dir.clone(),
            why,
        };
        let info_path = dir.join(TEMPLATE_INFO);
        let bytes =
            std::fs::read(&info_path).map_err(|e| unusable(format!("{TEMPLATE_INFO}: {e}")))?;
        let info: TemplateInfo = serde_json::from_slice(&bytes)
            .map_err(|e| unusable(format!("{TEMPLATE_INFO}: {e}")))?;
        let theirs = match inputs {
            Some(i) => info.inputs != *i,
            None => info.inputs.key() != key,
        };
        if info.key != key.as_str() || theirs {
            return Err(unusable(format!("{TEMPLATE_INFO} is another template's")));
        }
        let size = |name: &str| -> Result<u64, TemplateError> {
            let m = std::fs::symlink_metadata(dir.join(name))
                .map_err(|e| unusable(format!("{name}: {e}")))?;
            if !m.file_type().is_file() {
                return Err(unusable(format!("{name} is not a regular file")));
            }
            Ok(m.size())
        };
        let mem = size(SNAPSHOT_MEMORY_FILE)?;
        let want = u64::from(info.inputs.vm.mem_mib) << 20;
        if mem != want {
            return Err(unusable(format!(
                "{SNAPSHOT_MEMORY_FILE} has {mem} bytes, the VM's memory {want}"
            )));
        }
        let state = size(SNAPSHOT_STATE_FILE)?;
        if state == 0 || state > STATE_MAX {
            return Err(unusable(format!(
                "{SNAPSHOT_STATE_FILE} has {state} bytes (1 to {STATE_MAX})"
            )));
        }
        Ok(Template { key, dir, info })
    }

    /// Why the last build of `key` failed, if it did less than [`FAILED_RETRY`] ago.
    pub fn recently_failed(&self, key: &TemplateKey) -> Option<String> {
        let p = self.failed_path(key);
        let age = std::fs::metadata(&p)
            .ok()?
            .modified()
            .ok()?
            .elapsed()
            .ok()?;
        (age < FAILED_RETRY).then(|| std::fs::read_to_string(&p).unwrap_or_default())
    }

    /// The template of `inputs`: the complete one there is, else one made now by `build`
    /// (under the key's lock; `build` gets an empty directory to write the snapshot's two
    /// files into, renamed into place with `template.json` once it succeeded). A template
    /// there that is not usable is removed first (warning). A failed build is recorded
    /// ([`Self::recently_failed`]); a successful one clears that record. Without `retry`, a
    /// recent failure is the error (no build).
    pub async fn ensure<F, Fut>(
        &self,
        inputs: &KeyInputs,
        retry: bool,
        build: F,
    ) -> anyhow::Result<Template>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        if let Ok(t) = self.check(inputs) {
            return Ok(t);
        }
        let key = inputs.key();
        let _lock = self.lock_async(&key).await?;
        // Made by the builder this one waited for?
        match self.check(inputs) {
            Ok(t) => return Ok(t),
            Err(e) if self.template_dir(&key).exists() => {
                tracing::warn!("{e}; removing it and making it again");
                remove_tree(&self.template_dir(&key))?;
            }
            Err(_) => {}
        }
        if let Some(why) = self.recently_failed(&key).filter(|_| !retry) {
            anyhow::bail!(
                "the last build of the template {key} failed less than {FAILED_RETRY:?} ago \
                 (`sandpod template build` tries again): {why}"
            );
        }
        let tmp = self.tmp_dir(&key);
        // Left by a build that died (this process holds the lock: nobody else writes it).
        remove_tree(&tmp)?;
        std::fs::create_dir(&tmp).map_err(io("creating", &tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))
            .map_err(io("chmod", &tmp))?;
        let built = match build(tmp.clone()).await {
            Ok(()) => self.finish(inputs, &key, &tmp),
            Err(e) => Err(e),
        };
        match built {
            Ok(t) => {
                let _ = std::fs::remove_file(self.failed_path(&key));
                Ok(t)
            }
            Err(e) => {
                let _ = remove_tree(&tmp);
                let _ = std::fs::write(self.failed_path(&key), format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// Makes the built files root's and read-only, writes `template.json`, syncs, renames the
    /// directory into place and checks the result.
    fn finish(
        &self,
        inputs: &KeyInputs,
        key: &TemplateKey,
        tmp: &Path,
    ) -> anyhow::Result<Template> {
        for name in [SNAPSHOT_STATE_FILE, SNAPSHOT_MEMORY_FILE] {
            let p = tmp.join(name);
            std::os::unix::fs::lchown(&p, Some(0), Some(0)).map_err(io("chown", &p))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444))
                .map_err(io("chmod", &p))?;
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(io("syncing", &p))?;
        }
        let info = TemplateInfo {
            key: key.to_string(),
            created: now_rfc3339_nanos(),
            builder_pid: std::process::id(),
            inputs: inputs.clone(),
        };
        let info_path = tmp.join(TEMPLATE_INFO);
        write_json_atomic(&info_path, &info).map_err(io("writing", &info_path))?;
        let dir = self.template_dir(key);
        std::fs::rename(tmp, &dir).map_err(io("renaming into place", &dir))?;
        Ok(self.check(inputs)?)
    }

    /// Removes `t` (after it failed to restore), unless it was replaced meanwhile by another
    /// build (then that one stays). Returns whether it removed it.
    pub async fn discard(&self, t: &Template) -> Result<bool, TemplateError> {
        let _lock = self.lock_async(&t.key).await?;
        match self.check(&t.info.inputs) {
            Ok(now) if now.info != t.info => Ok(false),
            _ => {
                remove_tree(&t.dir)?;
                Ok(true)
            }
        }
    }

    /// Removes every template and record (each under its key's lock); returns how many
    /// templates there were.
    pub fn clear(&self) -> Result<usize, TemplateError> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        let mut n = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(key) = TemplateKey::parse(name.split('.').next().unwrap_or("")) else {
                continue;
            };
            let _lock = self.lock(&key)?;
            if self.template_dir(&key).exists() {
                n += 1;
            }
            remove_tree(&self.template_dir(&key))?;
            remove_tree(&self.tmp_dir(&key))?;
            let _ = std::fs::remove_file(self.failed_path(&key));
        }
        Ok(n)
    }

    /// Removes the template of `inputs` and its failure record; returns whether it existed.
    pub fn remove(&self, inputs: &KeyInputs) -> Result<bool, TemplateError> {
        let key = inputs.key();
        let _lock = self.lock(&key)?;
        let dir = self.template_dir(&key);
        let existed = dir.exists();
        remove_tree(&dir)?;
        let _ = std::fs::remove_file(self.failed_path(&key));
        Ok(existed)
    }
}

/// Removes a directory tree that may not exist, through a rename first (a reader never sees a
/// half-removed template under its name).
fn remove_tree(dir: &Path) -> Result<(), TemplateError> {
    let mut dead = dir.as_os_str().to_owned();
    dead.push(format!(".dead-{}", std::process::id()));
    let dead = PathBuf::from(dead);
    match std::fs::rename(dir, &dead) {
        Ok(()) => std::fs::remove_dir_all(&dead).map_err(io("removing", &dead)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("removing", dir)(e)),
    }
}
