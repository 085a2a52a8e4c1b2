//! The taps the VMM uses as the guest's NICs: made on the namespace's thread (a tap belongs to
//! the network namespace `/dev/net/tun` was opened in), not persistent (the interface goes
//! away when the last fd on it is closed), with the VMM's flags (IFF_TAP | IFF_NO_PI |
//! IFF_VNET_HDR) and its 12-byte `virtio_net_hdr_v1` header, so the VMM's `--net tap-fd=`
//! takes the fd as it is.
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::error::NetworkError;

const TUN_PATH: &str = "/dev/net/tun";
const TAP_FLAGS: libc::c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
/// The virtio-net header before each frame on the tap (`virtio_net_hdr_v1`, what the VMM
/// sets too).
pub const VNET_HDR_LEN: usize = 12;
const TAP_PREFIX: &str = "tap";
const TAP_SUFFIX: &str = "_kata";

/// The name of the tap for the plan's `n`th interface: `tap0_kata`, Kata's names.
pub fn tap_name(n: usize) -> String {
    format!("{TAP_PREFIX}{n}{TAP_SUFFIX}")
}

/// Whether `name` is one [`tap_name`] makes (such interfaces are never scanned, and teardown
/// removes them).
pub fn is_our_tap_name(name: &str) -> bool {
    name.strip_prefix(TAP_PREFIX)
        .and_then(|rest| rest.strip_suffix(TAP_SUFFIX))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Creates the tap `name` in the calling thread's network namespace. The fd is blocking and
/// close-on-exec (the VMM duplicates it and sets its own copy's flags).
pub(crate) fn create_tap(name: &str) -> Result<OwnedFd, NetworkError> {
    let err = |what: &'static str| {
        move |source: io::Error| NetworkError::Tap {
            name: name.to_string(),
            what,
            source,
        }
    };
    // SAFETY: ifreq is plain data (integers, arrays and a union of them): all zeroes is a
    // valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= req.ifr_name.len() || name.bytes().any(|b| b == 0) {
        return Err(err("bad interface name")(io::Error::from(
            io::ErrorKind::InvalidInput,
        )));
    }
    for (dst, b) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = libc::c_char::from_ne_bytes([b]);
    }
    // TAP_FLAGS (0x5002) fits a c_short.
    req.ifr_ifru.ifru_flags = libc::c_short::try_from(TAP_FLAGS).unwrap_or(0);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(TUN_PATH)
        .map_err(err("opening /dev/net/tun"))?;
    let fd = OwnedFd::from(file);
    // SAFETY: TUNSETIFF reads (and may write back) a struct ifreq; `req` is one, alive and
    // exclusively borrowed for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    check(rc).map_err(err("TUNSETIFF"))?;
    // Not persistent: the interface is removed when the last fd is closed (the default for a
    // new tap; said explicitly in case the name belonged to a persistent one).
    // SAFETY: TUNSETPERSIST takes its argument by value and touches no memory.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, 0 as libc::c_ulong) };
    check(rc).map_err(err("TUNSETPERSIST"))?;
    let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer; `size` lives for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) };
    check(rc).map_err(err("TUNSETVNETHDRSZ"))?;
    Ok(fd)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_are_kata_style_and_recognized() {
        assert_eq!(tap_name(0), "tap0_kata");
        assert_eq!(tap_name(12), "tap12_kata");
        assert!(is_our_tap_name("tap0_kata"));
        assert!(is_our_tap_name(&tap_name(7)));
        for other in [
            "tap_kata",
            "tapx_kata",
            "tap0",
            "eth0",
            "tap0_kata0",
            "mytap0_kata",
        ] {
            assert!(!is_our_tap_name(other), "{other}");
        }
    }
}
