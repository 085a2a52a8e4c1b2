//! Keeping guest memory out of reach: the process is not dumpable (no core dump; its
//! `/proc/<pid>/mem`, `environ`, `maps`... belong to root and ptrace needs CAP_SYS_PTRACE),
//! and guest RAM is left out of core dumps anyway (MADV_DONTDUMP, in case the process is made
//! dumpable again).

use std::io;

/// `prctl(PR_SET_DUMPABLE, 0)` for the whole process.
pub fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the process is dumpable (`prctl(PR_GET_DUMPABLE)`).
pub fn is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE only returns a value.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 }
}

/// `madvise(MADV_DONTDUMP)` on the mapping at `addr` of `len` bytes.
///
/// `addr` must be the start of a live mapping of at least `len` bytes owned by the caller
/// (page aligned, as mmap returns it).
pub fn dont_dump(addr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: MADV_DONTDUMP only sets a flag on the pages' VMAs (VM_DONTDUMP); it neither
    // reads, writes nor unmaps them, so it is sound on any range; the caller passes one of
    // its own mappings.
    let rc = unsafe { libc::madvise(addr.cast(), len, libc::MADV_DONTDUMP) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
