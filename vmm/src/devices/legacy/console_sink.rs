//! Where the serial port's bytes go, capped: the guest is untrusted and writes its console as
//! fast as it likes, so nothing it writes there may fill the host's disk or flood its logs
//! ([`ConsoleLimits`]).
//!
//! * Rate: a token bucket (`bytes_per_sec`, `burst_bytes`). Bytes beyond it are dropped and
//!   counted (the guest's UART never stalls); when output resumes, the line
//!   `[sandpod: N bytes of console output dropped]` comes first (it takes tokens too, so the
//!   markers cannot multiply the output). A warning goes to the VMM's log at most every
//!   [`WARN_INTERVAL`].
//! * Size (file only): the file holds at most `max_file_bytes`; when full it is renamed to
//!   `PATH.1` (replacing an older one) and a new `PATH` is begun: at most twice that on disk.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, LineWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use sandpod_vmconfig::rate::{Clock, MonotonicClock};
use sandpod_vmconfig::rate::{IntervalGate, TokenBucket};

use crate::config::ConsoleLimits;

/// Least time between two warnings about dropped console output.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The file `PATH.1` a full console file `PATH` is renamed to.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".1");
    PathBuf::from(name)
}

/// A console file that is rotated once full.
struct RotatingFile {
    path: PathBuf,
    file: LineWriter<File>,
    written: u64,
    max: u64,
}

impl RotatingFile {
    /// Creates (or truncates) `path`; an older `PATH.1` is removed.
    fn create(path: &Path, max: u64) -> io::Result<Self> {
        let file = create_file(path)?;
        match std::fs::remove_file(rotated_path(path)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file: LineWriter::new(file),
            written: 0,
            max,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        std::fs::rename(&self.path, rotated_path(&self.path))?;
        self.file = LineWriter::new(create_file(&self.path)?);
        self.written = 0;
        Ok(())
    }

    fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.written >= self.max {
                self.rotate()?;
            }
            let room = usize::try_from(self.max - self.written).unwrap_or(usize::MAX);
            let (now, rest) = data.split_at(room.min(data.len()));
            self.file.write_all(now)?;
            self.written += now.len() as u64;
            data = rest;
        }
        Ok(())
    }
}

fn create_file(path: &Path) -> io::Result<File> {
    File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

enum Output {
    File(RotatingFile),
    Stream(Box<dyn Write + Send>),
}

impl Output {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Output::File(f) => f.write_all(data),
            Output::Stream(w) => w.write_all(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::File(f) => f.file.flush(),
            Output::Stream(w) => w.flush(),
        }
    }
}

/// The console output with its caps (see the module docs). Writes never fail for dropped
/// bytes; they fail only when the file cannot be written.
pub struct ConsoleSink<C: Clock = MonotonicClock> {
    out: Output,
    bucket: TokenBucket,
    clock: C,
    /// Bytes dropped since the last marker line.
    unmarked: u64,
    /// Bytes dropped since the last warning.
    unwarned: u64,
    /// Bytes dropped in all.
    dropped: u64,
    warn_gate: IntervalGate,
    /// Whether the last byte written ended a line (a marker starts on a line of its own).
    at_line_start: bool,
}

impl ConsoleSink<MonotonicClock> {
    /// A sink writing to the file `path` (created or truncated).
    pub fn file(path: &Path, limits: &ConsoleLimits) -> io::Result<Self> {
        Self::file_with_clock(path, limits, MonotonicClock)
    }

    /// A rate-limited sink writing to `out` (stdout): no size cap.
    pub fn stream(out: Box<dyn Write + Send>, limits: &ConsoleLimits) -> Self {
        Self::new(Output::Stream(out), limits, MonotonicClock)
    }
}

impl<C: Clock> ConsoleSink<C> {
    /// Like [`ConsoleSink::file`], with `clock` for the rate limit.
    pub fn file_with_clock(path: &Path, limits: &ConsoleLimits, clock: C) -> io::Result<Self> {
        let file = RotatingFile::create(path, limits.max_file_bytes.max(1))?;
        Ok(Self::new(Output::File(file), limits, clock))
    }

    fn new(out: Output, limits: &ConsoleLimits, clock: C) -> Self {
        let now = clock.now();
        ConsoleSink {
            out,
            bucket: TokenBucket::new(limits.bytes_per_sec, limits.burst_bytes, now),
            clock,
            unmarked: 0,
            unwarned: 0,
            dropped: 0,
            warn_gate: IntervalGate::new(WARN_INTERVAL),
            at_line_start: true,
        }
    }

    /// Bytes dropped so far (over the rate limit).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn drop_bytes(&mut self, n: u64, now: Instant) {
        self.unmarked += n;
        self.unwarned += n;
        self.dropped += n;
        if self.warn_gate.ready(now) {
            self.warn();
        }
    }

    fn warn(&mut self) {
        tracing::warn!(
            "guest console: {} bytes dropped (rate limit; {} in all)",
            self.unwarned,
            self.dropped
        );
        self.unwarned = 0;
    }

    fn emit(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(&last) = data.last() {
            self.out.write_all(data)?;
            self.at_line_start = last == b'\n';
        }
        Ok(())
    }
}

impl<C: Clock> Write for ConsoleSink<C> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let now = self.clock.now();
        if self.unmarked > 0 {
            let marker = format!(
                "{}[sandpod: {} bytes of console output dropped]\n",
                if self.at_line_start { "" } else { "\n" },
                self.unmarked
            );
            if !self.bucket.try_take(marker.len() as u64, now) {
                self.drop_bytes(buf.len() as u64, now);
                return Ok(buf.len());
            }
            self.emit(marker.as_bytes())?;
            self.unmarked = 0;
        }
        let granted = self.bucket.take_up_to(buf.len() as u64, now);
        let (kept, over) = buf.split_at(usize::try_from(granted).unwrap_or(buf.len()));
        self.emit(kept)?;
        if !over.is_empty() {
            self.drop_bytes(over.len() as u64, now);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<C: Clock> Drop for ConsoleSink<C> {
    fn drop(&mut self) {
        if self.unwarned > 0 {
            self.warn();
        }
        let _ = self.out.flush();
    }
}

#[cfg(test)]
#[path = "console_sink_tests.rs"]
mod tests;
