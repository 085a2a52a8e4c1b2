//! Processes the runtime left running (monitor, VMM, virtiofsd), recorded by pid *and* start
//! time so that a recycled pid is never signalled by mistake.
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// A process as recorded in a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdent {
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat (clock ticks after boot).
    pub start_time: u64,
}

/// The start time of `pid`, if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may hold spaces and parentheses: fields after the last ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts with field 3 (state); start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl ProcessIdent {
    pub fn of(pid: u32) -> Option<ProcessIdent> {
        let pid = i32::try_from(pid).ok()?;
        Some(ProcessIdent {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Whether the recorded process still runs (a zombie counts as gone).
    pub fn alive(&self) -> bool {
        if start_time(self.pid) != Some(self.start_time) {
            return false;
        }
        let state = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                s.rfind(')')
                    .and_then(|i| s[i + 1..].split_whitespace().next().map(str::to_string))
            });
        !matches!(state.as_deref(), Some("Z") | Some("X") | None)
    }

    /// Sends `sig` if the recorded process still runs.
    pub fn signal(&self, sig: Signal) -> bool {
        self.alive() && kill(Pid::from_raw(self.pid), sig).is_ok()
    }

    /// Waits until it is gone, at most `timeout`. True if it is gone. Woken by the process's
    /// pidfd as it ends (polling /proc only where there is no pidfd).
    pub fn wait_gone(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut pidfd = self.pidfd();
        loop {
            if !self.alive() {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            match &pidfd {
                Some(fd) => {
                    // Readable once the process has ended (zombie or reaped); after that (or
                    // an error) /proc decides, polled.
                    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                    let left = PollTimeout::try_from(end - now).unwrap_or(PollTimeout::MAX);
                    if poll(&mut fds, left) != Ok(0) {
                        pidfd = None;
                    }
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// A pidfd of the recorded process: none if the pid now names another process (checked
    /// after the open, so the descriptor cannot be a recycled pid's).
    fn pidfd(&self) -> Option<OwnedFd> {
        let pid = rustix::process::Pid::from_raw(self.pid)?;
        let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
        (start_time(self.pid) == Some(self.start_time)).then_some(fd)
    }

    /// SIGTERM, up to `grace` to go, then SIGKILL (and a last wait). True if it is gone.
    pub fn terminate(&self, grace: Duration) -> bool {
        if !self.signal(Signal::SIGTERM) {
            return !self.alive();
        }
        if self.wait_gone(grace) {
            return true;
        }
        self.signal(Signal::SIGKILL);
        self.wait_gone(Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_a_child_and_ignores_a_recycled_pid() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let ident = ProcessIdent::of(child.id()).unwrap();
        assert!(ident.alive());
        let other = ProcessIdent {
            start_time: ident.start_time + 1,
            ..ident
        };
        assert!(!other.alive(), "a different start time is another process");
        assert!(!other.signal(Signal::SIGKILL));
        assert!(ident.alive());
        // Reap in the background so the zombie disappears.
        let t = std::thread::spawn(move || child.wait());
        assert!(ident.terminate(Duration::from_secs(5)));
        t.join().unwrap().unwrap();
    }
}
