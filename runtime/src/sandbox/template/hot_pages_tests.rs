//! Tests of [`super::hot_pages`]: which pages a clone allocated, the list's validation (it is
//! read as untrusted), and the spare's preallocation.
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};

use super::hot_pages::{load, preallocate, record, HotPages, HOT_PAGES_FILE, HOT_PAGES_MAX};

const PAGE: u64 = 4096;
const LEN: u64 = 16 << 20;

/// A sparse file of LEN bytes on tmpfs-like storage with `pages` written (non-zero).
fn memory(dir: &std::path::Path, name: &str, pages: &[u64]) -> File {
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.join(name))
        .unwrap();
    f.set_len(LEN).unwrap();
    for &p in pages {
        f.write_all_at(&[0xa5; PAGE as usize], p * PAGE).unwrap();
    }
    f
}

fn tmp() -> tempfile::TempDir {
    // /dev/shm: tmpfs, which keeps holes page by page, as the templates' /run does.
    tempfile::tempdir_in("/dev/shm").unwrap()
}

#[test]
fn the_pages_new_in_a_clone_are_found_and_merged_into_ranges() {
    let d = tmp();
    let template = memory(d.path(), "t", &[0, 1, 2, 10, 100]);
    let clone = memory(d.path(), "c", &[0, 1, 2, 3, 4, 10, 11, 50, 100, 101, 4095]);
    let hot = HotPages::new_in(&template, &clone, LEN).unwrap();
    assert_eq!(
        hot.ranges,
        vec![
            (3 * PAGE, 2 * PAGE),
            (11 * PAGE, PAGE),
            (50 * PAGE, PAGE),
            (101 * PAGE, PAGE),
            (4095 * PAGE, PAGE)
        ]
    );
    assert_eq!(hot.bytes(), 6 * PAGE);
    assert!(hot.validate(LEN).is_ok());
}

#[test]
fn recorded_once_then_loaded_and_a_spare_gets_them_allocated() {
    let d = tmp();
    let template = memory(d.path(), "memory.bin", &[0, 7]);
    let clone = memory(d.path(), "c", &[0, 7, 8, 9, 300]);
    let hot = record(&template, &clone, d.path()).unwrap().unwrap();
    assert_eq!(hot.ranges, vec![(8 * PAGE, 2 * PAGE), (300 * PAGE, PAGE)]);
    // Recorded once: a second clone does not replace it.
    let other = memory(d.path(), "c2", &[0, 7, 1000]);
    assert!(record(&template, &other, d.path()).unwrap().is_none());
    assert_eq!(load(d.path(), LEN).unwrap(), Some(hot.clone()));

    let spare = memory(d.path(), "spare", &[0, 7]);
    let before = spare.metadata().unwrap().blocks();
    preallocate(&spare, &hot).unwrap();
    assert_eq!(spare.metadata().unwrap().len(), LEN);
    assert_eq!(
        (spare.metadata().unwrap().blocks() - before) * 512,
        3 * PAGE
    );
    let mut b = [1u8; PAGE as usize];
    spare.read_exact_at(&mut b, 8 * PAGE).unwrap();
    assert!(b.iter().all(|&x| x == 0));
}

#[test]
fn a_clone_that_allocated_nothing_or_too_much_is_not_recorded() {
    let d = tmp();
    let template = memory(d.path(), "memory.bin", &[0]);
    let same = memory(d.path(), "same", &[0]);
    assert!(record(&template, &same, d.path()).unwrap().is_none());
    let big: Vec<u64> = (1..=(HOT_PAGES_MAX / PAGE + 1)).collect();
    let large = memory(d.path(), "large", &big);
    assert!(record(&template, &large, d.path()).unwrap().is_none());
    assert!(!d.path().join(HOT_PAGES_FILE).exists());
}

#[test]
fn a_hostile_or_broken_list_is_refused() {
    let d = tmp();
    let write = |json: &str| std::fs::write(d.path().join(HOT_PAGES_FILE), json).unwrap();
    assert_eq!(load(d.path(), LEN).unwrap(), None);
    for bad in [
        r#"{"ranges":[[1,4096]]}"#,                    // not page-aligned
        r#"{"ranges":[[0,0]]}"#,                       // empty
        r#"{"ranges":[[16773120,8192]]}"#,             // past the memory
        r#"{"ranges":[[8192,4096],[0,4096]]}"#,        // out of order
        r#"{"ranges":[[0,8192],[4096,4096]]}"#,        // overlapping
        r#"{"ranges":[[18446744073709547520,8192]]}"#, // overflowing
        r#"{"ranges":[[0,16777216]]}"#,                // more than HOT_PAGES_MAX
        r#"{"ranges":"#,                               // truncated
    ] {
        write(bad);
        assert!(load(d.path(), LEN).is_err(), "{bad} accepted");
    }
    write(&format!("{{\"ranges\":[{}]}}", "[0,4096],".repeat(100_000)));
    assert!(load(d.path(), LEN).is_err(), "a huge file accepted");
}
