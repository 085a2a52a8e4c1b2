use std::sync::{Arc, Mutex};

use super::*;

/// A clock the test moves.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(Instant::now())))
    }

    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

fn limits(max_file_bytes: u64, bytes_per_sec: u64, burst_bytes: u64) -> ConsoleLimits {
    ConsoleLimits {
        max_file_bytes,
        bytes_per_sec,
        burst_bytes,
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Writes `n` bytes one at a time, as the UART does.
fn flood<W: Write>(w: &mut W, n: usize, byte: u8) {
    for _ in 0..n {
        w.write_all(&[byte]).unwrap();
    }
}

#[test]
fn a_flood_writes_at_most_the_burst_and_counts_the_rest() {
    let dir = tempfile_dir();
    let path = dir.join("console.log");
    let clock = ManualClock::new();
    let mut sink =
        ConsoleSink::file_with_clock(&path, &limits(1 << 20, 1024, 4096), clock.clone()).unwrap();
    // 1 MB at one instant: only the burst gets through.
    flood(&mut sink, 1_000_000, b'x');
    sink.flush().unwrap();
    assert_eq!(file_len(&path), 4096);
    assert_eq!(sink.dropped(), 1_000_000 - 4096);

    // A second later, 1024 tokens: the marker line first, then what is left of them.
    clock.advance(Duration::from_secs(1));
    sink.write_all(b"after\n").unwrap();
    sink.flush().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = format!(
        "\n[sandpod: {} bytes of console output dropped]\n",
        1_000_000 - 4096
    );
    assert!(
        text.ends_with(&format!("{marker}after\n")),
        "{:?}",
        &text[4000..]
    );
    assert_eq!(sink.dropped(), 1_000_000 - 4096);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_rate_holds_over_time_markers_included() {
    let dir = tempfile_dir();
    let path = dir.join("console.log");
    let clock = ManualClock::new();
    let mut sink =
        ConsoleSink::file_with_clock(&path, &limits(1 << 30, 1000, 2000), clock.clone()).unwrap();
    // 10 s of a guest writing 10 bytes every millisecond (10 kB/s against 1 kB/s allowed).
    for _ in 0..10_000 {
        clock.advance(Duration::from_millis(1));
        flood(&mut sink, 10, b'y');
    }
    sink.flush().unwrap();
    // Burst + 10 s at the rate, markers included, no more.
    assert!(file_len(&path) <= 2000 + 10 * 1000, "{}", file_len(&path));
    assert!(sink.dropped() >= 100_000 - 12_000, "{}", sink.dropped());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_file_is_rotated_once() {
    let dir = tempfile_dir();
    let path = dir.join("console.log");
    let old = rotated_path(&path);
    std::fs::write(&old, b"an older VM's").unwrap();
    let clock = ManualClock::new();
    let mut sink =
        ConsoleSink::file_with_clock(&path, &limits(4096, 1 << 30, 1 << 30), clock).unwrap();
    // An older PATH.1 goes at start.
    assert!(!old.exists());
    // 10 files' worth: PATH and PATH.1 hold the last of it, each at most the cap.
    for i in 0..10 * 4096 {
        sink.write_all(&[b'a' + u8::try_from(i / 4096).unwrap()])
            .unwrap();
    }
    sink.flush().unwrap();
    assert_eq!(file_len(&path), 4096);
    assert_eq!(file_len(&old), 4096);
    assert_eq!(std::fs::read(&path).unwrap(), vec![b'j'; 4096]);
    assert_eq!(std::fs::read(&old).unwrap(), vec![b'i'; 4096]);
    assert_eq!(sink.dropped(), 0);
    let names = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(names, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stream_is_rate_limited_too() {
    use crate::devices::legacy::serial::Shared;
    let out = Shared::default();
    let clock = ManualClock::new();
    let mut sink = ConsoleSink::new(
        Output::Stream(Box::new(out.clone())),
        &limits(4096, 10, 1024),
        clock,
    );
    // One big write: the burst's worth of it, the rest counted.
    sink.write_all(&[b'z'; 5000]).unwrap();
    assert_eq!(out.0.lock().unwrap().len(), 1024);
    assert_eq!(sink.dropped(), 5000 - 1024);
}

fn tempfile_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sandpod-console-sink-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
