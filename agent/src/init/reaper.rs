//! PID 1 inherits every orphan in the guest: reap them so none stays a zombie.
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// Reaps children forever, sleeping in `sigwait(SIGCHLD)` between rounds: no busy polling.
/// SIGCHLD is blocked so that it stays pending until `sigwait` takes it (a blocked signal
/// is inherited by children: whoever spawns processes must unblock it in the child).
pub fn reap_forever() -> ! {
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    // Cannot fail with a valid `how` and set.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None);
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        let _ = chld.wait();
    }
}
