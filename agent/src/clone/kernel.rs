//! The kernel side of reseeding a clone: crediting the host's entropy to the RNG
//! (`RNDADDENTROPY`), forcing a reseed of the CRNG (`RNDRESEEDCRNG`) and setting CLOCK_REALTIME.
//!
//! Only [`KernelOps`] makes these calls, and only a template guest (PID 1, `sandpod.template=1`)
//! builds one: the host-side test mode and the unit tests never reseed or set the host's clock.
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;

use nix::time::{clock_gettime, clock_settime, ClockId};

use super::CloneOps;

/// The RNG's device: any open file of it takes the ioctls (they need CAP_SYS_ADMIN).
const URANDOM: &str = "/dev/urandom";

// linux/random.h: RNDADDENTROPY = _IOW('R', 0x03, int[2]) (the size is the header's, not the
// whole struct rand_pool_info).
nix::ioctl_write_ptr!(rnd_add_entropy, b'R', 0x03, [libc::c_int; 2]);
// linux/random.h: RNDRESEEDCRNG = _IO('R', 0x07).
nix::ioctl_none!(rnd_reseed_crng, b'R', 0x07);

/// `struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[0]; }` with its buffer,
/// as RNDADDENTROPY reads it: `entropy_count` is the bits credited, `buf_size` the bytes that
/// follow. Held in u32 words so the header is aligned for the kernel's `int` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandPoolInfo {
    words: Vec<u32>,
    len: usize,
}

impl RandPoolInfo {
    /// The struct for `entropy`, crediting 8 bits per byte. None when that many bits do not fit
    /// an `int` (far beyond the 512 bytes ResumeClone takes).
    pub fn new(entropy: &[u8]) -> Option<Self> {
        let buf_size = i32::try_from(entropy.len()).ok()?;
        let entropy_count = buf_size.checked_mul(8)?;
        let mut words = Vec::with_capacity(2 + entropy.len().div_ceil(4));
        words.push(u32::from_ne_bytes(entropy_count.to_ne_bytes()));
        words.push(u32::from_ne_bytes(buf_size.to_ne_bytes()));
        for chunk in entropy.chunks(4) {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            words.push(u32::from_ne_bytes(w));
        }
        Some(RandPoolInfo {
            words,
            len: entropy.len(),
        })
    }

    /// The bytes the kernel reads: header (8 bytes) then the buffer (`buf_size` bytes).
    pub fn bytes(&self) -> Vec<u8> {
        let mut b: Vec<u8> = self.words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        b.truncate(8 + self.len);
        b
    }

    fn as_ptr(&self) -> *const [libc::c_int; 2] {
        self.words.as_ptr().cast()
    }
}

/// The real calls, for a clone guest.
pub struct KernelOps;

impl CloneOps for KernelOps {
    fn add_entropy(&self, entropy: &[u8]) -> io::Result<()> {
        let info = RandPoolInfo::new(entropy)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too much entropy"))?;
        let dev = OpenOptions::new().write(true).open(URANDOM)?;
        // SAFETY: `info` holds a complete rand_pool_info (header plus `buf_size` bytes, u32
        // aligned) that outlives the call; the kernel only reads it; `dev` is an open fd.
        unsafe { rnd_add_entropy(dev.as_raw_fd(), info.as_ptr()) }?;
        Ok(())
    }

    fn reseed_crng(&self) -> io::Result<()> {
        let dev = OpenOptions::new().write(true).open(URANDOM)?;
        // SAFETY: RNDRESEEDCRNG takes no argument and touches no memory of ours; `dev` is open.
        unsafe { rnd_reseed_crng(dev.as_raw_fd()) }?;
        Ok(())
    }

    fn realtime_ns(&self) -> io::Result<i128> {
        let ts = clock_gettime(ClockId::CLOCK_REALTIME)?;
        Ok(i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec()))
    }

    fn set_realtime_ns(&self, ns: u64) -> io::Result<()> {
        let secs = libc::time_t::try_from(ns / 1_000_000_000)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "time out of range"))?;
        // (< 10^9: fits any tv_nsec type.)
        let nanos = (ns % 1_000_000_000) as libc::c_long;
        clock_settime(
            ClockId::CLOCK_REALTIME,
            nix::sys::time::TimeSpec::new(secs, nanos),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // (The request type is c_ulong with glibc but c_int with musl, the agent's static build.)
    #[allow(clippy::unnecessary_cast)]
    #[test]
    fn ioctl_numbers_match_linux_random_h() {
        // RNDADDENTROPY 0x40085203, RNDRESEEDCRNG 0x5207 (x86_64, as the headers expand).
        assert_eq!(nix::request_code_write!(b'R', 0x03, 8) as u64, 0x4008_5203);
        assert_eq!(nix::request_code_none!(b'R', 0x07) as u64, 0x5207);
    }

    #[test]
    fn rand_pool_info_layout() {
        let entropy: Vec<u8> = (1..=37).collect();
        let info = RandPoolInfo::new(&entropy).unwrap();
        let b = info.bytes();
        assert_eq!(b.len(), 8 + 37);
        assert_eq!(&b[0..4], &(37i32 * 8).to_ne_bytes());
        assert_eq!(&b[4..8], &37i32.to_ne_bytes());
        assert_eq!(&b[8..], &entropy[..]);
        // Whole words for the kernel, the padding zeroed.
        assert_eq!(info.words.len(), 2 + 10);
        assert_eq!(info.words[11].to_ne_bytes(), [37, 0, 0, 0]);
        assert_eq!(
            info.as_ptr() as usize % std::mem::align_of::<libc::c_int>(),
            0
        );
    }

    #[test]
    fn rand_pool_info_of_exact_words_and_empty() {
        let info = RandPoolInfo::new(&[0xAA; 32]).unwrap();
        assert_eq!(info.words.len(), 2 + 8);
        assert_eq!(
            info.bytes()[..8],
            [256i32.to_ne_bytes(), 32i32.to_ne_bytes()].concat()
        );
        let empty = RandPoolInfo::new(&[]).unwrap();
        assert_eq!(empty.bytes(), vec![0; 8]);
    }

    /// The real calls, made without the capabilities they need (in a child that dropped to
    /// `nobody`): the kernel must answer EPERM, which it does only for a request number it knows
    /// (an unknown one is EINVAL). Nothing is reseeded and the host's clock is not set.
    #[test]
    fn the_kernel_knows_the_requests_and_refuses_them_unprivileged() {
        use caps::{CapSet, Capability};
        crate::container::testutil::in_child(|| {
            if nix::unistd::geteuid().is_root() {
                let nobody = nix::unistd::Uid::from_raw(65534);
                nix::unistd::setresuid(nobody, nobody, nobody)
                    .map_err(|e| format!("setresuid: {e}"))?;
            }
            for cap in [Capability::CAP_SYS_ADMIN, Capability::CAP_SYS_TIME] {
                if caps::has_cap(None, CapSet::Effective, cap).unwrap_or(true) {
                    return Err(format!("still has {cap}: not calling"));
                }
            }
            let eperm = |what: &str, r: io::Result<()>| match r {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
                other => Err(format!("{what}: {other:?}, expected EPERM")),
            };
            eperm("RNDADDENTROPY", KernelOps.add_entropy(&[0; 32]))?;
            eperm("RNDRESEEDCRNG", KernelOps.reseed_crng())?;
            eperm("clock_settime", KernelOps.set_realtime_ns(1))?;
            KernelOps.realtime_ns().map_err(|e| e.to_string())?;
            Ok(())
        })
        .unwrap();
    }
}
