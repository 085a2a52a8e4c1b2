//! The guest console: PID 1's stdio and the boot clock.
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::time::{clock_gettime, ClockId};

/// Makes sure fds 0, 1 and 2 exist: when the initramfs has no /dev/console the kernel starts
/// init without stdio, so open the console from devtmpfs (mounted by then) instead.
pub fn ensure_stdio() {
    if nix::fcntl::fcntl(std::io::stdout(), nix::fcntl::FcntlArg::F_GETFD).is_ok() {
        return;
    }
    // Lowest free fds are taken first, so this fills 0, 1 and 2 in order.
    for _ in 0..3 {
        if open(
            "/dev/console",
            OFlag::O_RDWR | OFlag::O_NOCTTY,
            Mode::empty(),
        )
        .is_err()
        {
            return;
        }
    }
}

/// Milliseconds since the guest kernel started (CLOCK_BOOTTIME).
pub fn ms_since_boot() -> u64 {
    match clock_gettime(ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => (ts.tv_sec() as u64) * 1000 + (ts.tv_nsec() as u64) / 1_000_000,
        Err(_) => 0,
    }
}
