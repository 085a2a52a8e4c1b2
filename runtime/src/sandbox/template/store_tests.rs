//! Tests of the template store: completeness checks, the build lock, placing the files.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use sandpod_vmconfig::{
    FsConfig, VmConfig, VsockConfig, SNAPSHOT_MEMORY_FILE, SNAPSHOT_STATE_FILE,
};

use super::key::KeyInputs;
use super::store::*;

/// Stands for the kernel, initramfs and VMM (their identities are the key's).
pub(crate) struct Files {
    _dir: tempfile::TempDir,
}

/// Key inputs of an 8 MiB VM over files made in a directory of their own.
pub(crate) fn inputs(_root: &Path) -> (Files, KeyInputs) {
    let d = tempfile::tempdir().unwrap();
    for n in ["vmlinux", "initrd", "vmm"] {
        std::fs::write(d.path().join(n), n).unwrap();
    }
    let vm = VmConfig {
        initrd: Some(d.path().join("initrd")),
        mem_mib: 8,
        vsock: Some(VsockConfig {
            guest_cid: 3,
            uds_path: "/r/c/j/v".into(),
        }),
        fs: vec![FsConfig::new("sandpod", "/r/c/fs.sock")],
        ..VmConfig::new(d.path().join("vmlinux"))
    };
    let i = KeyInputs::of(&vm, &d.path().join("vmm")).unwrap();
    (Files { _dir: d }, i)
}

/// What a VMM leaves in its snapshot directory: a small state, a sparse memory of `mem_mib`.
pub(crate) async fn fake_build(dir: PathBuf, mem_mib: u32) -> anyhow::Result<()> {
    std::fs::write(dir.join(SNAPSHOT_STATE_FILE), b"vcpu state")?;
    let m = std::fs::File::create(dir.join(SNAPSHOT_MEMORY_FILE))?;
    m.set_len(u64::from(mem_mib) << 20)?;
    use std::os::unix::fs::FileExt;
    m.write_all_at(b"kernel text", 1 << 20)?;
    Ok(())
}

/// The template of `i` in `store`, made by [`fake_build`] if there is none.
pub(crate) async fn template(store: &TemplateStore, i: &KeyInputs) -> Template {
    store
        .ensure(i, false, |tmp| fake_build(tmp, i.vm.mem_mib))
        .await
        .unwrap()
}

fn store(d: &Path) -> TemplateStore {
    TemplateStore::new(&d.join("root"))
}

#[tokio::test]
async fn built_once_then_found() {
    let d = tempfile::tempdir().unwrap();
    let (_f, i) = inputs(d.path());
    let s = store(d.path());
    assert!(matches!(s.check(&i), Err(TemplateError::Unusable { .. })));
    let t = s
        .ensure(&i, false, |tmp| fake_build(tmp, i.vm.mem_mib))
        .await
        .unwrap();
    assert_eq!(t.dir, s.dir.join(i.key().as_str()));
    assert_eq!(t.info.inputs, i);
    assert!(s.dir.ends_with(".templates"));
    let m = std::fs::metadata(t.memory_file()).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o444);
    assert_eq!(m.uid(), 0);
    // Sparse: far fewer blocks than its length.
    assert!(m.blocks() * 512 < m.len() / 2, "{} blocks", m.blocks());
    assert!(!s.dir.join(format!("{}.tmp", i.key())).exists());
    // Found, not built again.
    let again = s
        .ensure(&i, false, |_| async { panic!("built twice") })
        .await
        .unwrap();
    assert_eq!(again, t);
}

#[tokio::test]
async fn missing_truncated_oversized_or_foreign_files_are_not_usable() {
    let d = tempfile::tempdir().unwrap();
    let (_f, i) = inputs(d.path());
    let s = store(d.path());
    let t = s
        .ensure(&i, false, |tmp| fake_build(tmp, i.vm.mem_mib))
        .await
        .unwrap();
    let dir = t.dir.clone();
    let saved = d.path().join("saved");
    let copy = |from: &Path, to: &Path| {
        assert!(std::process::Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success());
    };
    copy(&dir, &saved);
    let restore = || {
        std::fs::remove_dir_all(&dir).unwrap();
        copy(&saved, &dir);
        assert!(s.check(&i).is_ok());
    };
    let set_len = |name: &str, len: u64| {
        let p = dir.join(name);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len)
            .unwrap();
    };
    let unusable = |what: &str| {
        let e = s.check(&i).unwrap_err();
        assert!(matches!(e, TemplateError::Unusable { .. }), "{what}: {e:?}");
        e.to_string()
    };

    for name in [SNAPSHOT_STATE_FILE, SNAPSHOT_MEMORY_FILE, TEMPLATE_INFO] {
        std::fs::remove_file(dir.join(name)).unwrap();
        assert!(unusable(name).contains(name));
        restore();
    }
    set_len(SNAPSHOT_MEMORY_FILE, 4 << 20);
    assert!(unusable("truncated memory").contains("4194304 bytes"));
    restore();
    set_len(SNAPSHOT_MEMORY_FILE, 16 << 20);
    unusable("oversized memory");
    restore();
    set_len(SNAPSHOT_STATE_FILE, 0);
    unusable("empty state");
    restore();
    set_len(SNAPSHOT_STATE_FILE, STATE_MAX + 1);
    unusable("oversized state");
    restore();
    std::fs::write(dir.join(TEMPLATE_INFO), b"{not json").unwrap();
    unusable("corrupt template.json");
    restore();
    // A template.json of other inputs (another kernel, say).
    let mut other: TemplateInfo =
        serde_json::from_slice(&std::fs::read(dir.join(TEMPLATE_INFO)).unwrap()).unwrap();
    other.inputs.kernel.size += 1;
    std::fs::write(dir.join(TEMPLATE_INFO), serde_json::to_vec(&other).unwrap()).unwrap();
    assert!(unusable("foreign").contains("another template's"));

    // ensure() replaces an unusable template.
    let calls = AtomicUsize::new(0);
    let t2 = s
        .ensure(&i, false, |tmp| {
            calls.fetch_add(1, Ordering::SeqCst);
            fake_build(tmp, i.vm.mem_mib)
        })
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(t2.info.inputs, i);
}

#[test]
fn the_lock_lets_one_of_two_racing_starts_build() {
    let d = tempfile::tempdir().unwrap();
    let (_f, i) = inputs(d.path());
    let s = store(d.path());
    let builds = Arc::new(AtomicUsize::new(0));
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let (s, i, builds) = (s.clone(), i.clone(), builds.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(s.ensure(&i, false, |tmp| {
                    let builds = builds.clone();
                    let mem = i.vm.mem_mib;
                    async move {
                        builds.fetch_add(1, Ordering::SeqCst);
                        // Long enough for the other racer to reach the lock.
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        fake_build(tmp, mem).await
                    }
                }))
                .unwrap()
            })
        })
        .collect();
    let got: Vec<Template> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(builds.load(Ordering::SeqCst), 1);
    assert_eq!(got[0], got[1]);
}

#[tokio::test]
async fn a_failed_build_leaves_nothing_but_its_record() {
    let d = tempfile::tempdir().unwrap();
    let (_f, i) = inputs(d.path());
    let s = store(d.path());
    let e = s
        .ensure(&i, false, |tmp| async move {
            std::fs::write(tmp.join(SNAPSHOT_STATE_FILE), b"partial")?;
            anyhow::bail!("sandpod-vmm exited with status 1")
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("status 1"));
    let key = i.key();
    assert!(!s.template_dir(&key).exists());
    assert!(!s.dir.join(format!("{key}.tmp")).exists());
    assert!(s.recently_failed(&key).unwrap().contains("status 1"));
    // Starts do not try again for a while...
    let e = s
        .ensure(&i, false, |_| async { panic!("tried again") })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("status 1"), "{e}");
    // ...`sandpod template build` does. A build that succeeds clears the record; remove() and
    // clear() take the template away.
    s.ensure(&i, true, |tmp| fake_build(tmp, i.vm.mem_mib))
        .await
        .unwrap();
    assert_eq!(s.recently_failed(&key), None);
    assert!(s.remove(&i).unwrap());
    assert!(!s.remove(&i).unwrap());
    s.ensure(&i, false, |tmp| fake_build(tmp, i.vm.mem_mib))
        .await
        .unwrap();
    assert_eq!(s.clear().unwrap(), 1);
    assert!(s.check(&i).is_err());
}

#[tokio::test]
async fn placed_by_hard_link_or_sparse_copy() {
    let d = tempfile::tempdir().unwrap();
    let (_f, i) = inputs(d.path());
    let s = store(d.path());
    let t = s
        .ensure(&i, false, |tmp| fake_build(tmp, i.vm.mem_mib))
        .await
        .unwrap();
    let dest = d.path().join("root/c/j/t");
    std::fs::create_dir_all(&dest).unwrap();
    assert_eq!(t.place_into(&dest).unwrap(), Placed::Linked);
    let (a, b) = (
        std::fs::metadata(t.memory_file()).unwrap(),
        std::fs::metadata(dest.join(SNAPSHOT_MEMORY_FILE)).unwrap(),
    );
    assert_eq!((a.ino(), a.dev()), (b.ino(), b.dev()));

    // The copy another file system gets: same bytes, holes kept, read-only.
    let copy = d.path().join("memory.copy");
    sparse_copy(&t.memory_file(), &copy, 0o444).unwrap();
    let m = std::fs::metadata(&copy).unwrap();
    assert_eq!(m.len(), 8 << 20);
    assert!(m.blocks() * 512 <= 2 << 20, "{} blocks", m.blocks());
    assert_eq!(m.permissions().mode() & 0o777, 0o444);
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(t.memory_file()).unwrap()
    );
    assert!(
        sparse_copy(&t.memory_file(), &copy, 0o444).is_err(),
        "never over a file"
    );
}

#[tokio::test]
async fn found_by_key_only_when_its_inputs_hash_to_it() {
    let d = tempfile::tempdir().unwrap();
    let (_f, i) = inputs(d.path());
    let s = store(d.path());
    let t = template(&s, &i).await;
    assert_eq!(s.check_key(&t.key).unwrap(), t);
    // A template.json naming other inputs under this key (the key field kept) is refused.
    let mut info = t.info.clone();
    info.inputs.runtime = "another runtime".into();
    let p = t.dir.join(TEMPLATE_INFO);
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, serde_json::to_vec(&info).unwrap()).unwrap();
    assert!(matches!(
        s.check_key(&t.key),
        Err(TemplateError::Unusable { .. })
    ));
}
