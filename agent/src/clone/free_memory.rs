//! Before a template's snapshot: the guest's free memory is made all zeros, so that the
//! snapshot (which leaves zero pages out, see sandpod-vmm's `snapshot::memory`) holds the memory
//! in use, not whatever freed pages last held (the initramfs the kernel unpacked and
//! `switch_root` copied, the page cache of boot). Every clone copies the snapshot's memory, so
//! this is restore time saved in every sandbox.
//!
//! How: clean caches are dropped, then most of the free memory is taken by a private anonymous
//! mapping populated for writing (the kernel hands out zeroed pages) and given back at once:
//! the pages return to the free lists still zero.

use std::num::NonZeroUsize;

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

/// Free memory left untouched, so that nothing in the guest runs short meanwhile.
const RESERVE_KIB: u64 = 16 * 1024;

/// A `/proc/meminfo` field in KiB.
fn meminfo_kib(meminfo: &str, field: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// How many bytes to take of `free_kib` KiB free: all but the reserve (and a sixteenth).
fn bytes_to_zero(free_kib: u64) -> u64 {
    let reserve = RESERVE_KIB.max(free_kib / 16);
    free_kib.saturating_sub(reserve) * 1024
}

/// Zeroes most free guest memory; returns the bytes zeroed. Template guests only (PID 1).
pub fn zero_free_memory() -> std::io::Result<u64> {
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
        tracing::debug!("drop_caches: {e}");
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let free = meminfo_kib(&meminfo, "MemFree:").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no MemFree in /proc/meminfo",
        )
    })?;
    let Some(len) = usize::try_from(bytes_to_zero(free))
        .ok()
        .and_then(NonZeroUsize::new)
    else {
        return Ok(0);
    };
    // SAFETY: a new private anonymous mapping: it aliases nothing, and nothing but the munmap
    // below uses it.
    let p = unsafe {
        mmap_anonymous(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_POPULATE,
        )
    }?;
    // SAFETY: exactly the mapping made above, with its length; no reference into it exists.
    unsafe { munmap(p, len.get()) }?;
    Ok(len.get() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meminfo_and_keeps_a_reserve() {
        let m = "MemTotal:  246228 kB\nMemFree:   200000 kB\nMemAvailable: 210000 kB\n";
        assert_eq!(meminfo_kib(m, "MemFree:"), Some(200_000));
        assert_eq!(meminfo_kib(m, "Cached:"), None);
        assert_eq!(bytes_to_zero(200_000), (200_000 - 16_384) * 1024);
        assert_eq!(bytes_to_zero(1_000_000), (1_000_000 - 62_500) * 1024);
        assert_eq!(bytes_to_zero(10_000), 0);
    }
}
