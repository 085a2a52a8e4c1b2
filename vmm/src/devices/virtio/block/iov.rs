//! Vectored I/O between the image file and guest memory: a request's buffers become host
//! iovecs over the mapped guest pages (vm-memory's volatile slices; buffers adjacent in host
//! memory merged) and move with one preadv(2)/pwritev(2) per IOV_MAX of them, short transfers
//! resumed: no bounce buffer, no seek, one syscall for a typical request however many
//! segments it has.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use vm_memory::bitmap::BitmapSlice;
use vm_memory::volatile_memory::{PtrGuard, PtrGuardMut};
use vm_memory::{GuestMemory, GuestMemoryError, Permissions, VolatileSlice};

use super::request::Segment;
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

/// What keeps a slice's host pointer valid while the syscall uses it (a no-op for plain mmap
/// regions, a mapping for Xen-style ones).
enum Guard {
    Read(PtrGuard),
    Write(PtrGuardMut),
}

impl Guard {
    fn as_ptr(&self) -> *mut u8 {
        match self {
            Guard::Read(g) => g.as_ptr().cast_mut(),
            Guard::Write(g) => g.as_ptr(),
        }
    }
}

/// The host iovecs of a request's buffers, with their guards.
struct Iovecs {
    iovs: Vec<libc::iovec>,
    _guards: Vec<Guard>,
    len: usize,
}

fn push<B: BitmapSlice>(iov: &mut Iovecs, slice: &VolatileSlice<'_, B>, dir: Direction) {
    if slice.is_empty() {
        return;
    }
    let guard = match dir {
        // Guest memory is written: marked dirty (a no-op without a dirty bitmap).
        Direction::Read => {
            slice.bitmap().mark_dirty(0, slice.len());
            Guard::Write(slice.ptr_guard_mut())
        }
        Direction::Write => Guard::Read(slice.ptr_guard()),
    };
    let base = guard.as_ptr();
    iov.len += slice.len();
    if let Some(last) = iov.iovs.last_mut() {
        if last.iov_base.cast::<u8>().wrapping_add(last.iov_len) == base {
            last.iov_len += slice.len();
            iov._guards.push(guard);
            return;
        }
    }
    iov.iovs.push(libc::iovec {
        iov_base: base.cast(),
        iov_len: slice.len(),
    });
    iov._guards.push(guard);
}

fn iovecs(mem: &GuestMem, data: &[Segment], dir: Direction) -> Result<Iovecs, GuestMemoryError> {
    let mut iov = Iovecs {
        iovs: Vec::with_capacity(data.len()),
        _guards: Vec::with_capacity(data.len()),
        len: 0,
    };
    let access = match dir {
        Direction::Read => Permissions::Write,
        Direction::Write => Permissions::Read,
    };
    for s in data {
        for slice in mem.get_slices(s.addr, s.len as usize, access)? {
            push(&mut iov, &slice?, dir);
        }
    }
    Ok(iov)
}

/// Drops the first `n` bytes of `iovs` (whole iovecs, then the front of the next one).
fn advance(iovs: &mut [libc::iovec], mut n: usize) -> &mut [libc::iovec] {
    let mut skip = 0;
    while skip < iovs.len() && n >= iovs[skip].iov_len {
        n -= iovs[skip].iov_len;
        skip += 1;
    }
    let rest = &mut iovs[skip..];
    if let Some(first) = rest.first_mut() {
        first.iov_base = first.iov_base.cast::<u8>().wrapping_add(n).cast();
        first.iov_len -= n;
    }
    rest
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
    let mut left: &mut [libc::iovec] = &mut iov.iovs;
    let mut pos = offset;
    let mut todo = iov.len;
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
