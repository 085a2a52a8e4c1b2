//! Vectored I/O between the image file and guest memory: a request's buffers become host
//! iovecs over the mapped guest pages (vm-memory's volatile slices; buffers adjacent in host
//! memory merged) and move with one preadv(2)/pwritev(2) per IOV_MAX of them, short transfers
//! resumed: no bounce buffer, no seek, one syscall for a typical request however many
//! segments it has.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use vm_memory::GuestMemoryError;

use super::request::Segment;
use crate::devices::virtio::guest_iovecs::{advance, Access, GuestIovecs};
use crate::kvm::memory::GuestMem;

/// Most iovecs one preadv/pwritev takes (Linux's UIO_MAXIOV).
pub const IOV_MAX: usize = 1024;

/// Which way the data goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Image to guest memory (preadv).
    Read,
    /// Guest memory to image (pwritev).
    Write,
}

/// The iovecs of a request's buffers (as many as it has: `transfer` passes IOV_MAX per call).
fn iovecs(
    mem: &GuestMem,
    data: &[Segment],
    dir: Direction,
) -> Result<GuestIovecs, GuestMemoryError> {
    let access = match dir {
        Direction::Read => Access::KernelWrites,
        Direction::Write => Access::KernelReads,
    };
    let mut iov = GuestIovecs::new(access, usize::MAX);
    for s in data {
        iov.push(mem, s.addr, s.len as usize)?;
    }
    Ok(iov)
}

/// Moves `data` (guest buffers, checked to be in guest memory) from or to byte `offset` of
/// `file`. A file ending before the data does is an `UnexpectedEof` error.
pub fn transfer(
    file: &File,
    mem: &GuestMem,
    offset: u64,
    data: &[Segment],
    dir: Direction,
) -> Result<(), super::disk::IoError> {
    let mut iov = iovecs(mem, data, dir)?;
    let mut todo = iov.len();
    let mut left: &mut [libc::iovec] = iov.iovecs();
    let mut pos = offset;
    while todo > 0 && !left.is_empty() {
        let count = left.len().min(IOV_MAX);
        let off = libc::off_t::try_from(pos)
            .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // <= IOV_MAX
        let cnt = count as libc::c_int;
        // SAFETY: the iovecs point into guest memory regions that stay mapped while `mem` is
        // borrowed (their guards are alive in `iov`), each within a slice vm-memory checked;
        // `count` of them are valid; the fd is the open image. Reads write only into those
        // ranges (guest memory, which the guest may change concurrently: volatile, no Rust
        // reference to it exists).
        let n = unsafe {
            match dir {
                Direction::Read => libc::preadv(file.as_raw_fd(), left.as_ptr(), cnt, off),
                Direction::Write => libc::pwritev(file.as_raw_fd(), left.as_ptr(), cnt, off),
            }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        #[allow(clippy::cast_sign_loss)] // n >= 0
        let n = n as usize;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        todo -= n;
        pos += n as u64;
        left = advance(left, n);
    }
    Ok(())
}

#[cfg(test)]
#[path = "iov_tests.rs"]
mod tests;
