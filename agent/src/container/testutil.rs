//! Runs a test body in a forked child, so that what it applies (seccomp, rlimits, capabilities,
//! mounts) stays out of the test process.
use std::io::{Read, Write};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};

/// Runs `body` in a child process: its Ok or Err (message), or how the child died.
pub fn in_child(body: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let (read_end, write_end) = pipe().expect("pipe");
    // SAFETY: the child only runs `body` and then _exit()s, never returning into the test
    // harness; glibc's fork resets malloc's locks, so allocating in the child is fine.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(read_end);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
                .unwrap_or_else(|_| Err("panicked".to_owned()));
            let mut out = std::fs::File::from(write_end);
            let code = match result {
                Ok(()) => 0,
                Err(msg) => {
                    let _ = out.write_all(msg.as_bytes());
                    1
                }
            };
            drop(out);
            // SAFETY: _exit ends the child at once, without running the parent's atexit state.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut msg = String::new();
            let mut file = std::fs::File::from(read_end);
            let _ = file.read_to_string(&mut msg);
            match waitpid(child, None).expect("waitpid") {
                WaitStatus::Exited(_, 0) => Ok(()),
                WaitStatus::Exited(_, _) => Err(msg),
                WaitStatus::Signaled(_, sig, _) => Err(format!("child killed by {sig:?}")),
                other => Err(format!("child: {other:?}")),
            }
        }
    }
}
