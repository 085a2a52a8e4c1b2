//! Socket I/O straight between a chain's guest buffers and a host socket: one `sendmsg` or
//! `recvmsg` whose iovecs are the buffers' host mappings, so the data is copied once (by the
//! kernel), with no intermediate buffer in the VMM.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use vm_memory::GuestAddress;

use super::ChainBytes;
use crate::devices::virtio::guest_iovecs::{Access, GuestIovecs};

/// Most iovecs in one call (a packet has a handful of buffers; more are left for the next call).
const MAX_IOVECS: usize = 16;

/// The iovecs of up to `max` bytes of `segs` (each checked to be in guest memory when the chain
/// was mapped).
fn iovecs(
    mem: &crate::kvm::memory::GuestMem,
    segs: &VecDeque<(GuestAddress, usize)>,
    max: usize,
    access: Access,
) -> io::Result<GuestIovecs> {
    let mut v = GuestIovecs::new(access, MAX_IOVECS);
    let mut left = max;
    for &(addr, len) in segs {
        let len = len.min(left);
        if len == 0 {
            break;
        }
        let added = v
            .push(mem, addr, len)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        left -= added;
        if added < len {
            break;
        }
    }
    Ok(v)
}

/// A message header over `iov`'s iovecs (valid while `iov` lives and is not changed).
fn msghdr(iov: &mut GuestIovecs) -> libc::msghdr {
    let iovs = iov.iovecs();
    // SAFETY: msghdr is plain old data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iovs.as_mut_ptr();
    // At most MAX_IOVECS.
    #[allow(clippy::cast_possible_truncation, clippy::useless_conversion)]
    {
        msg.msg_iovlen = iovs.len() as _;
    }
    msg
}

/// A syscall's byte count, or its error.
fn sys_result(n: isize) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

impl ChainBytes<'_> {
    /// Drops all but the first `len` bytes (e.g. past a packet's payload length).
    pub fn truncate(&mut self, len: usize) {
        let mut keep = len.min(self.left);
        self.left = keep;
        let mut n = 0;
        for seg in &mut self.segs {
            if keep == 0 {
                break;
            }
            seg.1 = seg.1.min(keep);
            keep -= seg.1;
            n += 1;
        }
        self.segs.truncate(n);
    }

    /// Sends the next bytes to the socket `fd` with one `sendmsg` (non-blocking, no SIGPIPE)
    /// and consumes what it took. `Ok(0)` only when nothing is left.
    pub fn send_to(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let mut iov = iovecs(self.mem, &self.segs, self.left, Access::KernelReads)?;
        let msg = msghdr(&mut iov);
        let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
        // SAFETY: `fd` is a valid descriptor (BorrowedFd); the iovecs point into guest memory
        // mapped for the lifetime of `self.mem` (checked ranges, guards held by `iov`), and the
        // kernel only reads them.
        let sent = sys_result(unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) })?;
        self.consume(sent);
        Ok(sent)
    }

    /// Receives at most `max` bytes from the socket `fd` into the next buffers with one
    /// `recvmsg` (non-blocking) and consumes them. `Ok(0)`: end of stream (or `max` 0).
    pub fn recv_from(&mut self, fd: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        let max = max.min(self.left);
        if max == 0 {
            return Ok(0);
        }
        let mut iov = iovecs(self.mem, &self.segs, max, Access::KernelWrites)?;
        let mut msg = msghdr(&mut iov);
        // SAFETY: `fd` is a valid descriptor (BorrowedFd); the iovecs point into writable guest
        // memory mapped for the lifetime of `self.mem` (checked ranges, guards held by `iov`),
        // `max` bytes at most: the kernel writes only there.
        let got =
            sys_result(unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) })?;
        self.consume(got);
        Ok(got)
    }

    /// Appends every byte left to `dst` (which grows by exactly that much) and consumes them.
    pub fn append_to(&mut self, dst: &mut VecDeque<u8>) -> Result<(), super::BadChain> {
        let start = dst.len();
        let len = self.left;
        dst.resize(start + len, 0);
        let (a, b) = dst.as_mut_slices();
        if start >= a.len() {
            let from = start - a.len();
            return self.read_exact(&mut b[from..from + len]);
        }
        let in_a = a.len() - start;
        self.read_exact(&mut a[start..])?;
        self.read_exact(&mut b[..len - in_a])
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), super::BadChain> {
        self.advance(n, |_, _, _| Ok(()))
    }

    /// Skips `n` bytes the kernel moved.
    fn consume(&mut self, n: usize) {
        // n <= left: the iovecs covered at most `left` bytes.
        let _ = self.skip(n);
    }
}
