//! A template's hot pages: the guest pages a restored clone allocated that the template's memory
//! left as holes (the guest's free memory, zeroed before the snapshot), recorded once from a
//! clone's memory file when its VM ends ([`record`], by the sandbox's monitor) into
//! [`HOT_PAGES_FILE`] in the template's directory. The background refill allocates them in the
//! next spare ([`preallocate`]): a clone's guest takes pages from its free lists in the order the
//! template left them, so the next clone allocates nearly the same ones, and the host's work of
//! giving them memory (allocating and zeroing a tmpfs page each, on the vCPU's or virtiofsd's
//! fault: ~660 pages for `true` in busybox) is done before the start instead of during it.
//!
//! The list is a hint, read as untrusted (a clone's guest chose which pages it touched): it is
//! validated (page-aligned, inside the memory, sorted, at most [`HOT_PAGES_MAX`] bytes in all)
//! and a bad one is ignored with a warning. What it can cost is bounded: at most
//! [`HOT_PAGES_MAX`] bytes of zeroed memory more in a spare. A clone that allocated more than
//! that is not recorded (a long-lived or large workload says nothing about the next start).
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sandpod_vmconfig::SNAPSHOT_MEMORY_FILE;
use serde::{Deserialize, Serialize};

use super::extents::data_extents;

/// The list, in a template's directory.
pub const HOT_PAGES_FILE: &str = "hot-pages.json";
/// Most bytes of hot pages recorded or preallocated.
pub const HOT_PAGES_MAX: u64 = 8 << 20;
/// Most ranges in a list.
const RANGES_MAX: usize = 4096;
/// Largest list file read.
const FILE_MAX: u64 = 256 << 10;
const PAGE: u64 = 4096;

/// [`HOT_PAGES_FILE`]: `(offset, length)` ranges of the guest memory file, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotPages {
    pub ranges: Vec<(u64, u64)>,
}

impl HotPages {
    /// Bytes in all ranges.
    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.1).sum()
    }

    /// The pages that are data in `clone` and not in `template` (both `len` bytes long).
    pub fn new_in(template: &File, clone: &File, len: u64) -> std::io::Result<HotPages> {
        let before = data_extents(template, len)?;
        let after = data_extents(clone, len)?;
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut b = before.iter().peekable();
        for &(start, end) in &after {
            // Whole pages of [start, end) outside every extent of `before`.
            let mut pos = start / PAGE * PAGE;
            let end = end.div_ceil(PAGE) * PAGE;
            while pos < end {
                while b.peek().is_some_and(|&&(_, e)| e <= pos) {
                    b.next();
                }
                let next = match b.peek() {
                    Some(&&(s, e)) if s <= pos => {
                        // Inside a template extent: skip to its end (page-rounded).
                        pos = e.div_ceil(PAGE) * PAGE;
                        continue;
                    }
                    Some(&&(s, _)) => (s / PAGE * PAGE).min(end),
                    None => end,
                };
                if next > pos {
                    match ranges.last_mut() {
                        Some(last) if last.0 + last.1 == pos => last.1 += next - pos,
                        _ => ranges.push((pos, next - pos)),
                    }
                }
                pos = next;
            }
        }
        Ok(HotPages { ranges })
    }

    /// Checks the list against a memory of `len` bytes.
    pub fn validate(&self, len: u64) -> Result<(), String> {
        if self.ranges.len() > RANGES_MAX {
            return Err(format!(
                "{} ranges (at most {RANGES_MAX})",
                self.ranges.len()
            ));
        }
        let mut prev_end = 0u64;
        let mut total = 0u64;
        for &(off, n) in &self.ranges {
            let end = off
                .checked_add(n)
                .ok_or_else(|| format!("range {off}+{n} overflows"))?;
            if off % PAGE != 0 || n % PAGE != 0 || n == 0 {
                return Err(format!("range {off}+{n} is not whole pages"));
            }
            if off < prev_end || end > len {
                return Err(format!(
                    "range {off}+{n} overlaps, is out of order or past the memory ({len} bytes)"
                ));
            }
            total += n;
            prev_end = end;
        }
        if total > HOT_PAGES_MAX {
            return Err(format!("{total} bytes (at most {HOT_PAGES_MAX})"));
        }
        Ok(())
    }
}

/// Records into `dir`/[`HOT_PAGES_FILE`], unless it exists, the pages `clone` (the guest memory
/// of a VM restored from the template whose memory is `template`, both as long) allocated: a
/// new file beside it, renamed into place. Returns the list, or None when nothing was written
/// (already recorded, nothing allocated, or more than [`HOT_PAGES_MAX`]).
pub fn record(template: &File, clone: &File, dir: &Path) -> std::io::Result<Option<HotPages>> {
    let out = dir.join(HOT_PAGES_FILE);
    if out.exists() {
        return Ok(None);
    }
    let len = template.metadata()?.len();
    if clone.metadata()?.len() != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the clone's memory is not as long as the template's",
        ));
    }
    let hot = HotPages::new_in(template, clone, len)?;
    if hot.ranges.is_empty() {
        return Ok(None);
    }
    // The list the refills would refuse (too many bytes or ranges) is not written.
    if let Err(why) = hot.validate(len) {
        tracing::debug!("hot pages not recorded: {why}");
        return Ok(None);
    }
    let tmp = dir.join(format!("{HOT_PAGES_FILE}.{}.tmp", std::process::id()));
    let bytes = serde_json::to_vec(&hot).map_err(std::io::Error::other)?;
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &out));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| Some(hot))
}

/// Reads and checks `dir`/[`HOT_PAGES_FILE`] for a memory of `len` bytes: None if there is
/// none; an error (the caller warns and goes on without) if it is unreadable or invalid.
pub fn load(dir: &Path, len: u64) -> Result<Option<HotPages>, String> {
    let path = dir.join(HOT_PAGES_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("opening {}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if bytes.len() as u64 > FILE_MAX {
        return Err(format!("{} is over {FILE_MAX} bytes", path.display()));
    }
    let hot: HotPages =
        serde_json::from_slice(&bytes).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    hot.validate(len)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(hot))
}

/// Allocates `hot`'s ranges in `file` (fallocate, its length unchanged): zeroed pages the guest
/// finds ready.
pub fn preallocate(file: &File, hot: &HotPages) -> std::io::Result<()> {
    for &(off, n) in &hot.ranges {
        rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, off, n)?;
    }
    Ok(())
}

/// What the sandbox's monitor records the hot pages from (`monitor.json`): set by the creator
/// for a restore that took the template's spare, while the template has no list yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPlan {
    /// The VM's memory: the claimed spare, in the VM's restore directory.
    pub vm_memory: PathBuf,
    /// The template's directory: its memory file, and where the list goes.
    pub template_dir: PathBuf,
}

impl RecordPlan {
    /// Opens both memory files: before the VMM starts (the creator unlinks the VM's once the
    /// VMM has it open).
    pub fn open(&self) -> std::io::Result<Recorder> {
        Ok(Recorder {
            template: File::open(self.template_dir.join(SNAPSHOT_MEMORY_FILE))?,
            clone: File::open(&self.vm_memory)?,
            dir: self.template_dir.clone(),
        })
    }
}

/// The open memory files of a [`RecordPlan`], recorded from once the VM has ended.
#[derive(Debug)]
pub struct Recorder {
    template: File,
    clone: File,
    dir: PathBuf,
}

impl Recorder {
    /// Records the list (see [`record`]); a clone that allocated nothing (it never ran) is not
    /// recorded. Only an optimisation: a failure is logged.
    pub fn finish(self) {
        match record(&self.template, &self.clone, &self.dir) {
            Ok(Some(hot)) => tracing::debug!(
                bytes = hot.bytes(),
                ranges = hot.ranges.len(),
                "the template's hot pages recorded"
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!("recording {}'s hot pages: {e}", self.dir.display()),
        }
    }
}
