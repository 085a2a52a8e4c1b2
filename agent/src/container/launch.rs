//! Starting a container helper from the (multithreaded) agent: clone with the container's
//! namespace flags and exec `/proc/self/exe` in helper mode at once. Nothing but `dup2` and
//! `execve` runs between the clone and the exec (as between fork and exec): the setup itself
//! runs in the helper, a fresh single-threaded process.
//!
//! Joining a container's pid namespace (exec into a container, or a spec naming a pid namespace
//! path) cannot happen in the helper: setns on a pid namespace only moves the caller's future
//! children. So a short-lived thread of the agent does setns(CLONE_NEWPID) (per thread), clones
//! the helper (which starts inside the namespace, as a direct child of the agent, reaped like any
//! other) and ends; the rest of the agent never sees the changed namespace.
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use super::sync::{SyncSocket, HELPER_SYNC_FD};
use crate::process::{ExitStatus, Reaper};

/// argv[1] of the helper modes (see `main.rs`).
pub const INIT_MODE: &str = "--container-init";
pub const EXEC_MODE: &str = "--container-exec";

/// A helper to start.
pub struct HelperLaunch {
    /// [`INIT_MODE`] or [`EXEC_MODE`].
    pub mode: &'static str,
    /// Namespaces to create.
    pub flags: CloneFlags,
    /// A pid namespace to start the helper in.
    pub pid_ns: Option<File>,
    /// The helper's stdin, stdout and stderr.
    pub stdio: [OwnedFd; 3],
    /// The helper's end of the sync socket (becomes its fd 3).
    pub sync: SyncSocket,
}

/// Lowest descriptor the child parks its inherited descriptors at before dup2'ing them into
/// place, so that no source is overwritten by an earlier target.
const PARK_FD: RawFd = 10;

const CLONE_STACK: usize = 256 * 1024;

/// Clones and execs the helper; returns its pid (agent's namespace) and exit receiver.
/// Blocking; call it from a blocking context.
pub fn spawn_helper(
    reaper: Reaper,
    launch: HelperLaunch,
) -> io::Result<(i32, oneshot::Receiver<ExitStatus>)> {
    let Some(pid_ns) = launch.pid_ns else {
        return reaper.spawn_with(|| clone_helper(&launch));
    };
    // A thread of its own: the pid namespace it enters dies with it.
    let launch = HelperLaunch {
        pid_ns: None,
        ..launch
    };
    std::thread::Builder::new()
        .name("container-spawn".into())
        .spawn(move || -> io::Result<_> {
            let own = File::open("/proc/thread-self/ns/pid")?;
            nix::sched::setns(&pid_ns, CloneFlags::CLONE_NEWPID)?;
            let spawned = reaper.spawn_with(|| clone_helper(&launch));
            if let Err(e) = nix::sched::setns(&own, CloneFlags::CLONE_NEWPID) {
                // Harmless: this thread ends now.
                tracing::warn!("leaving the container's pid namespace: {e}");
            }
            spawned
        })?
        .join()
        .map_err(|_| io::Error::other("the helper spawn thread panicked"))?
}

fn clone_helper(launch: &HelperLaunch) -> io::Result<i32> {
    // Everything the child needs, prepared (allocated) before the clone.
    let exe = c"/proc/self/exe";
    let arg0 = CString::new("sandpod-container-helper").expect("no NUL");
    let mode = CString::new(launch.mode).expect("no NUL");
    let argv: [*const libc::c_char; 3] = [arg0.as_ptr(), mode.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let sources: [RawFd; 4] = [
        launch.stdio[0].as_raw_fd(),
        launch.stdio[1].as_raw_fd(),
        launch.stdio[2].as_raw_fd(),
        launch.sync.fd().as_raw_fd(),
    ];
    let mut stack = vec![0u8; CLONE_STACK];
    let child = move || -> isize { child_main(exe, &argv, &envp, &sources) };
    // SAFETY: no CLONE_VM: the child runs on `stack` in a copy of our address space, and
    // `child_main` only makes async-signal-safe system calls (fcntl, dup2, execve, _exit) on
    // data prepared above; it neither allocates nor takes locks, so the other threads' state
    // (absent in the child) cannot matter. SIGCHLD reports its end to the reaper.
    let pid = unsafe {
        nix::sched::clone(
            Box::new(child),
            &mut stack,
            launch.flags,
            Some(Signal::SIGCHLD as i32),
        )
    }?;
    Ok(pid.as_raw())
}

/// Runs in the cloned child: stdio and sync socket into place, then exec.
fn child_main(
    exe: &CStr,
    argv: &[*const libc::c_char; 3],
    envp: &[*const libc::c_char; 1],
    sources: &[RawFd; 4],
) -> isize {
    let mut parked = [0 as RawFd; 4];
    for (i, src) in sources.iter().enumerate() {
        // SAFETY: fcntl on a descriptor we own; async-signal-safe.
        let fd = unsafe { libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, PARK_FD) };
        if fd < 0 {
            return 126;
        }
        parked[i] = fd;
    }
    for (target, fd) in [0, 1, 2, HELPER_SYNC_FD].into_iter().zip(parked) {
        // SAFETY: dup2 onto a low descriptor; the new one is not close-on-exec.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return 126;
        }
    }
    // SAFETY: argv and envp are NULL-terminated arrays of valid C strings that outlive the
    // call; execve only returns on failure.
    unsafe { libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    127
}
