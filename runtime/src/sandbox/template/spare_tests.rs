//! Tests of a template's spare memory: made as a copy of `memory.bin` (holes kept), claimed by
//! one sandbox only, never another build's, made by one refill at a time.
use std::os::unix::fs::{FileExt, MetadataExt};

use sandpod_vmconfig::SNAPSHOT_READY_MEMORY_FILE;

use super::spare::{claim, refill, Refill, SPARE_FILE, SPARE_TMP};
use super::store::TemplateStore;
use super::store_tests::{inputs, template};

#[tokio::test]
async fn a_spare_is_the_templates_memory_and_goes_to_one_sandbox() {
    let d = tempfile::tempdir().unwrap();
    let (_f, i) = inputs(d.path());
    let store = TemplateStore::new(&d.path().join("root"));
    let t = template(&store, &i).await;
    assert_eq!(store.check_key(&t.key).unwrap(), t);

    let sandbox = d.path().join("sandbox");
    std::fs::create_dir(&sandbox).unwrap();
    assert!(!claim(&t, &sandbox, None).unwrap(), "no spare yet");
    assert_eq!(refill(&store, &t).unwrap(), Refill::Made);
    assert_eq!(refill(&store, &t).unwrap(), Refill::Present);
    let spare = t.dir.join(SPARE_FILE);
    assert!(!t.dir.join(SPARE_TMP).exists());
    let m = std::fs::metadata(&spare).unwrap();
    assert_eq!(m.len(), 8 << 20, "as long as the VM's memory");
    assert_eq!(m.mode() & 0o777, 0o600);
    assert!(m.blocks() * 512 <= 64 << 10, "the holes stay holes");
    let f = std::fs::File::open(&spare).unwrap();
    let mut b = [0u8; 11];
    f.read_exact_at(&mut b, 1 << 20).unwrap();
    assert_eq!(&b, b"kernel text");

    assert!(claim(&t, &sandbox, None).unwrap());
    assert!(sandbox.join(SNAPSHOT_READY_MEMORY_FILE).is_file());
    assert!(!spare.exists());
    let other = d.path().join("other");
    std::fs::create_dir(&other).unwrap();
    assert!(!claim(&t, &other, None).unwrap(), "taken once only");
    assert!(!other.join(SNAPSHOT_READY_MEMORY_FILE).exists());
    // The sandbox's copy is its own: the template's memory is not written through it.
    std::fs::OpenOptions::new()
        .write(true)
        .open(sandbox.join(SNAPSHOT_READY_MEMORY_FILE))
        .unwrap()
        .write_all_at(b"guest wrote", 1 << 20)
        .unwrap();
    std::fs::File::open(t.memory_file())
        .unwrap()
        .read_exact_at(&mut b, 1 << 20)
        .unwrap();
    assert_eq!(&b, b"kernel text");
}

#[tokio::test]
async fn a_refill_waits_for_nobody_and_never_fills_another_build() {
    let d = tempfile::tempdir().unwrap();
    let (_f, i) = inputs(d.path());
    let store = TemplateStore::new(&d.path().join("root"));
    let old = template(&store, &i).await;
    {
        let _held = store.lock(&old.key).unwrap();
        assert_eq!(refill(&store, &old).unwrap(), Refill::Busy);
    }
    // A refill that died left its file: the next one starts again.
    std::fs::write(old.dir.join(SPARE_TMP), b"half").unwrap();
    assert_eq!(refill(&store, &old).unwrap(), Refill::Made);
    assert!(!old.dir.join(SPARE_TMP).exists());

    // Rebuilt: the old build's spare went with it, and a refill for it does nothing.
    assert!(store.remove(&i).unwrap());
    let new = template(&store, &i).await;
    assert!(!new.dir.join(SPARE_FILE).exists());
    assert_eq!(refill(&store, &old).unwrap(), Refill::Stale);
    assert!(!new.dir.join(SPARE_FILE).exists());
    assert_eq!(refill(&store, &new).unwrap(), Refill::Made);
    assert!(
        store.check(&i).is_ok(),
        "a spare leaves the template usable"
    );
    store.clear().unwrap();
    assert_eq!(
        std::fs::read_dir(store.template_dir(&new.key).parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with(new.key.as_str())
                && !e.file_name().to_string_lossy().ends_with(".lock"))
            .count(),
        0
    );
}
