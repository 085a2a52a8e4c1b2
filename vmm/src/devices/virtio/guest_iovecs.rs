//! Host iovecs over guest buffers, for syscalls that move data straight between guest memory and
//! a host file or socket (the block device's preadv/pwritev, vsock's sendmsg/recvmsg): each
//! buffer is split into vm-memory's volatile slices (so every byte is checked to be guest
//! memory), slices adjacent in host memory are merged, and the slices' guards are held as long
//! as the iovecs are.

use vm_memory::bitmap::BitmapSlice;
use vm_memory::volatile_memory::{PtrGuard, PtrGuardMut};
use vm_memory::{GuestAddress, GuestMemory, GuestMemoryError, Permissions, VolatileSlice};

use crate::kvm::memory::GuestMem;

/// What the syscall does with the buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The kernel writes them (preadv, recvmsg): the guest's memory is written.
    KernelWrites,
    /// The kernel reads them (pwritev, sendmsg).
    KernelReads,
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

/// The iovecs of some guest buffers, with their guards.
pub struct GuestIovecs {
    iovs: Vec<libc::iovec>,
    _guards: Vec<Guard>,
    len: usize,
    access: Access,
    max_iovecs: usize,
}

impl GuestIovecs {
    /// Empty, for buffers the kernel accesses as `access`, at most `max_iovecs` iovecs.
    pub fn new(access: Access, max_iovecs: usize) -> Self {
        GuestIovecs {
            iovs: Vec::new(),
            _guards: Vec::new(),
            len: 0,
            access,
            max_iovecs,
        }
    }

    /// Adds `len` bytes of guest memory at `addr`, or as many of them as fit in the iovec limit.
    /// Returns how many were added; an address outside guest memory is an error.
    pub fn push(
        &mut self,
        mem: &GuestMem,
        addr: GuestAddress,
        len: usize,
    ) -> Result<usize, GuestMemoryError> {
        let perm = match self.access {
            Access::KernelWrites => Permissions::Write,
            Access::KernelReads => Permissions::Read,
        };
        let mut added = 0;
        for slice in mem.get_slices(addr, len, perm)? {
            let slice = slice?;
            if !self.push_slice(&slice) {
                break;
            }
            added += slice.len();
        }
        Ok(added)
    }

    /// Adds one slice unless the iovecs are full (false).
    fn push_slice<B: BitmapSlice>(&mut self, slice: &VolatileSlice<'_, B>) -> bool {
        if slice.is_empty() {
            return true;
        }
        let guard = match self.access {
            // Guest memory is written: marked dirty (a no-op without a dirty bitmap).
            Access::KernelWrites => {
                slice.bitmap().mark_dirty(0, slice.len());
                Guard::Write(slice.ptr_guard_mut())
            }
            Access::KernelReads => Guard::Read(slice.ptr_guard()),
        };
        let base = guard.as_ptr();
        if let Some(last) = self.iovs.last_mut() {
            if last.iov_base.cast::<u8>().wrapping_add(last.iov_len) == base {
                last.iov_len += slice.len();
                self.len += slice.len();
                self._guards.push(guard);
                return true;
            }
        }
        if self.iovs.len() == self.max_iovecs {
            return false;
        }
        self.iovs.push(libc::iovec {
            iov_base: base.cast(),
            iov_len: slice.len(),
        });
        self.len += slice.len();
        self._guards.push(guard);
        true
    }

    /// Bytes covered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No bytes covered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The iovecs (valid while `self` lives).
    pub fn iovecs(&mut self) -> &mut [libc::iovec] {
        &mut self.iovs
    }
}

/// Drops the first `n` bytes of `iovs` (whole iovecs, then the front of the next one).
pub fn advance(iovs: &mut [libc::iovec], mut n: usize) -> &mut [libc::iovec] {
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

#[cfg(test)]
mod tests {
    use vm_memory::GuestMemoryMmap;

    use super::*;

    fn mem() -> GuestMem {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn the_iovec_limit_stops_new_buffers_but_not_adjacent_ones() {
        let mem = mem();
        let mut v = GuestIovecs::new(Access::KernelReads, 2);
        assert_eq!(v.push(&mem, GuestAddress(0x1000), 100).unwrap(), 100);
        assert_eq!(v.push(&mem, GuestAddress(0x3000), 200).unwrap(), 200);
        // Full: a third, separate buffer is not taken...
        assert_eq!(v.push(&mem, GuestAddress(0x5000), 300).unwrap(), 0);
        // ...but one right after the last is merged into it.
        assert_eq!(v.push(&mem, GuestAddress(0x3000 + 200), 50).unwrap(), 50);
        let lens: Vec<usize> = v.iovecs().iter().map(|i| i.iov_len).collect();
        assert_eq!(lens, [100, 250]);
        assert_eq!(v.len(), 350);
    }

    #[test]
    fn memory_outside_the_guest_is_an_error() {
        let mem = mem();
        let mut v = GuestIovecs::new(Access::KernelWrites, 16);
        assert!(v.push(&mem, GuestAddress((1 << 20) - 10), 20).is_err());
        assert!(v.push(&mem, GuestAddress(1 << 30), 1).is_err());
    }
}
