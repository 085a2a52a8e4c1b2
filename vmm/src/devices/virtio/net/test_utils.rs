//! What the net device's tests share (here and in the seccomp tests): a socket pair standing
//! in for the tap, frames as they travel on it, and a [`TapBackend`] on the pair.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::frame::{HDR_LEN, MAX_FRAME_LEN};
use super::tap::TapBackend;

/// A non-blocking datagram socket pair: the worker's "tap" end and the test's end.
pub fn tap_pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    )
    .unwrap()
}

/// A frame as it travels on the tap: a header without offload, then `len` bytes of `fill`.
pub fn frame(len: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![0u8; HDR_LEN];
    f.extend(std::iter::repeat_n(fill, len));
    f
}

/// Reads one frame from the test's end of the tap (None: nothing there).
pub fn peer_read(peer: &OwnedFd) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; MAX_FRAME_LEN + 100];
    match nix::unistd::read(peer, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(Errno::EAGAIN) => None,
        Err(e) => panic!("{e}"),
    }
}

/// A tap made of a socket pair's end, recording the offloads it is given.
pub struct FakeTap {
    sock: OwnedFd,
    offloads: Arc<Mutex<Vec<libc::c_uint>>>,
}

impl TapBackend for FakeTap {
    fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
    fn set_offload(&self, tun_flags: libc::c_uint) -> std::io::Result<()> {
        self.offloads.lock().unwrap().push(tun_flags);
        Ok(())
    }
    fn name(&self) -> &str {
        "fake"
    }
}

impl FakeTap {
    /// A fake tap, the test's end of it and the log of the offloads it is given.
    pub fn new() -> (FakeTap, OwnedFd, Arc<Mutex<Vec<libc::c_uint>>>) {
        let (sock, peer) = tap_pair();
        let offloads = Arc::new(Mutex::new(Vec::new()));
        let tap = FakeTap {
            sock,
            offloads: offloads.clone(),
        };
        (tap, peer, offloads)
    }
}
