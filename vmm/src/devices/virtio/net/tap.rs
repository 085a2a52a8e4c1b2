//! The host end of a virtio-net device: a tap interface, opened by name on /dev/net/tun or
//! taken already open from whoever started the VMM.
//!
//! Either way the fd is set up the same: a tap (IFF_TAP) without packet information
//! (IFF_NO_PI) that carries a virtio-net header before each frame (IFF_VNET_HDR), the header
//! being the 12-byte `virtio_net_hdr_v1` the guest uses (TUNSETVNETHDRSZ), non-blocking, no
//! offload until the driver negotiates some (TUNSETOFFLOAD, on activation). The device
//! reaches it through [`TapBackend`], so the tests can put a socket pair in its place.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
};

use super::frame::HDR_LEN;

/// The tun/tap control device.
pub const TUN_PATH: &str = "/dev/net/tun";
/// The flags a usable tap has.
const TAP_FLAGS: libc::c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;

/// A tap that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// /dev/net/tun cannot be opened.
    #[error("cannot open {TUN_PATH}")]
    Open(#[source] io::Error),
    /// The interface name does not fit `ifr_name`.
    #[error("interface name {0:?} is empty, too long or holds a NUL byte")]
    Name(String),
    /// The given fd is not open.
    #[error("tap fd {fd} cannot be duplicated")]
    BadFd {
        /// The fd.
        fd: RawFd,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The given fd is not a tap with a virtio-net header.
    #[error("the fd is not a tap opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (flags {0:#x})")]
    NotVnetTap(libc::c_int),
    /// An ioctl failed.
    #[error("{what} failed")]
    Ioctl {
        /// Which.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What the device needs from its host end: an fd carrying one frame (virtio-net header
/// first) per read and write, and a way to tell it the offloads the driver accepted.
pub trait TapBackend: Send {
    /// The fd the device thread reads frames from and writes frames to (non-blocking).
    fn fd(&self) -> BorrowedFd<'_>;
    /// Sets the offloads (TUN_F_* bits) the guest can take in received frames.
    fn set_offload(&self, tun_flags: libc::c_uint) -> io::Result<()>;
    /// For the logs.
    fn name(&self) -> &str;
}

/// The TUN_F_* offloads matching the driver's features: checksum offload if it takes
/// partial checksums (GUEST_CSUM), TSO4/TSO6 if it takes those segments (and partial
/// checksums, which they need). Never UFO or ECN: not offered.
pub fn tun_offloads(features: u64) -> libc::c_uint {
    let has = |bit: u32| features & (1u64 << bit) != 0;
    if !has(VIRTIO_NET_F_GUEST_CSUM) {
        return 0;
    }
    let mut flags = libc::TUN_F_CSUM;
    if has(VIRTIO_NET_F_GUEST_TSO4) {
        flags |= libc::TUN_F_TSO4;
    }
    if has(VIRTIO_NET_F_GUEST_TSO6) {
        flags |= libc::TUN_F_TSO6;
    }
    flags
}

/// A tap interface.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Opens (or creates: that needs CAP_NET_ADMIN) the tap interface `name`.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        let bad_name = || TapError::Name(name.to_string());
        let mut req = ifreq_named(name).ok_or_else(bad_name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(TapError::Open)?;
        let fd = OwnedFd::from(file);
        // TAP_FLAGS (0x5002) fits a c_short.
        req.ifr_ifru.ifru_flags = libc::c_short::try_from(TAP_FLAGS).unwrap_or(0);
        // SAFETY: TUNSETIFF reads a struct ifreq, and `req` is one, alive for the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        check(rc, "TUNSETIFF")?;
        let tap = Tap {
            fd,
            name: name.to_string(),
        };
        tap.setup()?;
        Ok(tap)
    }

    /// A tap opened by someone else (the runtime, which passes the fd down): duplicated (the
    /// original fd stays open, and stays the caller's), checked to be a tap with IFF_NO_PI and
    /// IFF_VNET_HDR, made non-blocking. O_NONBLOCK, the header size and the offloads belong to
    /// the open file, so the original sees them too: it is meant for the VMM only.
    pub fn from_fd(fd: RawFd) -> Result<Tap, TapError> {
        // SAFETY: F_DUPFD_CLOEXEC takes an integer argument and touches no memory; on an fd
        // that is not open it fails with EBADF.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(TapError::BadFd {
                fd,
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `dup` was just returned by fcntl: an open fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(dup) };
        let mut req = ifreq_named("").ok_or_else(|| TapError::Name(String::new()))?;
        // SAFETY: TUNGETIFF writes a struct ifreq, and `req` is one, alive for the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut req) };
        check(rc, "TUNGETIFF (is the fd a tap?)")?;
        // SAFETY: TUNGETIFF filled the flags member of the union (an integer: any bits are a
        // valid value).
        let flags = libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags });
        if flags & TAP_FLAGS != TAP_FLAGS || flags & libc::IFF_TUN != 0 {
            return Err(TapError::NotVnetTap(flags));
        }
        let name_bytes: Vec<u8> = req
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c.to_ne_bytes()[0])
            .collect();
        let name = String::from_utf8_lossy(&name_bytes).into_owned();
        let tap = Tap { fd, name };
        tap.set_nonblocking()?;
        tap.setup()?;
        Ok(tap)
    }

    /// The 12-byte header, no offload yet.
    fn setup(&self) -> Result<(), TapError> {
        let size = libc::c_int::try_from(HDR_LEN).unwrap_or(12);
        // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer; `size` lives for the call.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) };
        check(rc, "TUNSETVNETHDRSZ")?;
        self.set_offload(0).map_err(|source| TapError::Ioctl {
            what: "TUNSETOFFLOAD",
            source,
        })
    }

    fn set_nonblocking(&self) -> Result<(), TapError> {
        let fcntl = |source| TapError::Ioctl {
            what: "fcntl(O_NONBLOCK)",
            source,
        };
        let flags = nix::fcntl::fcntl(&self.fd, nix::fcntl::FcntlArg::F_GETFL)
            .map_err(|e| fcntl(e.into()))?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&self.fd, nix::fcntl::FcntlArg::F_SETFL(flags))
            .map_err(|e| fcntl(e.into()))?;
        Ok(())
    }
}

impl TapBackend for Tap {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn set_offload(&self, tun_flags: libc::c_uint) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long) and touches no
        // memory of ours.
        let rc = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(tun_flags),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// A zeroed `ifreq` named `name` (None if it does not fit with its NUL).
fn ifreq_named(name: &str) -> Option<libc::ifreq> {
    // SAFETY: ifreq is plain data (integers, arrays and a union of them): all zeroes is a
    // valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() || name.bytes().any(|b| b == 0) {
        return None;
    }
    for (dst, b) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = libc::c_char::from_ne_bytes([b]);
    }
    Some(req)
}

fn check(rc: libc::c_int, what: &'static str) -> Result<(), TapError> {
    if rc < 0 {
        return Err(TapError::Ioctl {
            what,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::virtio_net::{VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_UFO};

    #[test]
    fn offloads_follow_the_guest_features() {
        let f = |bits: &[u32]| bits.iter().fold(0u64, |a, b| a | (1 << b));
        assert_eq!(tun_offloads(0), 0);
        assert_eq!(tun_offloads(f(&[VIRTIO_NET_F_CSUM])), 0);
        // TSO without partial checksums is not usable (the kernel refuses it too).
        assert_eq!(tun_offloads(f(&[VIRTIO_NET_F_GUEST_TSO4])), 0);
        assert_eq!(
            tun_offloads(f(&[VIRTIO_NET_F_GUEST_CSUM])),
            libc::TUN_F_CSUM
        );
        let all = f(&[
            VIRTIO_NET_F_GUEST_CSUM,
            VIRTIO_NET_F_GUEST_TSO4,
            VIRTIO_NET_F_GUEST_TSO6,
            VIRTIO_NET_F_GUEST_UFO,
        ]);
        assert_eq!(
            tun_offloads(all),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
        );
    }

    #[test]
    fn interface_names() {
        assert!(ifreq_named("tap0").is_some());
        assert!(ifreq_named(&"x".repeat(15)).is_some());
        assert!(ifreq_named(&"x".repeat(16)).is_none());
        assert!(ifreq_named("a\0b").is_none());
        assert!(matches!(Tap::open(&"x".repeat(16)), Err(TapError::Name(_))));
    }

    #[test]
    fn a_non_tap_fd_is_refused() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let e = Tap::from_fd(r.as_raw_fd()).unwrap_err();
        assert!(matches!(e, TapError::Ioctl { what, .. } if what.starts_with("TUNGETIFF")));
        assert!(matches!(
            Tap::from_fd(-1),
            Err(TapError::BadFd { fd: -1, .. })
        ));
    }

    /// Needs /dev/net/tun and CAP_NET_ADMIN: `make unit` runs it as root (`--include-ignored`);
    /// without them it fails, never passes unexercised.
    #[test]
    #[ignore = "needs root and /dev/net/tun (a real tap): run by `make unit` as root (--include-ignored), as in CI"]
    fn opens_a_tap_and_takes_its_fd() {
        let name = format!("spn{}", std::process::id() % 100_000);
        let tap = match Tap::open(&name) {
            Ok(t) => t,
            Err(e) => panic!("cannot open a tap (needs root and {TUN_PATH}): {e}"),
        };
        assert_eq!(tap.name(), name);
        tap.set_offload(libc::TUN_F_CSUM | libc::TUN_F_TSO4)
            .unwrap();
        let again = Tap::from_fd(tap.fd().as_raw_fd()).unwrap();
        assert_eq!(again.name(), name);
        // Nothing to read yet: non-blocking.
        let mut buf = [0u8; 64];
        assert_eq!(
            nix::unistd::read(again.fd(), &mut buf),
            Err(nix::errno::Errno::EAGAIN)
        );
    }
}
