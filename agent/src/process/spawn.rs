//! Turning an exec request into a `std::process::Command` (spawned by the reaper).
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::creds::CredsPlan;
use super::process_spec::ProcessSpec;

/// What the host asked to run (ExecProcess, or a container's init: CreateContainer), with the
/// streams it attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    pub exec_id: String,
    pub process: ProcessSpec,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// The host's stream token for this process, as received (checked when streams are
    /// expected: see `ProcessManager::launch`).
    pub stream_token: String,
}

/// The child's stdin, stdout and stderr.
pub struct ChildStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl ExecSpec {
    /// Checks what can be checked before forking a plain exec: the process (see
    /// [`ProcessSpec::check`]), and its cwd is a directory of the guest.
    pub fn check(&self) -> Result<(), String> {
        self.process.check()?;
        if !self.process.cwd.is_dir() {
            return Err(format!("cwd {:?} is not a directory", self.process.cwd));
        }
        Ok(())
    }

    /// Builds the command. `creds` comes from
    /// [`Credentials::plan`](super::creds::Credentials::plan).
    pub fn command(&self, stdio: ChildStdio, creds: CredsPlan) -> Command {
        let p = &self.process;
        let mut cmd = Command::new(&p.args[0]);
        cmd.args(&p.args[1..])
            .env_clear()
            .envs(p.env.iter().filter_map(|kv| kv.split_once('=')))
            .current_dir(&p.cwd)
            .stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        let terminal = p.terminal;
        // std resets the signal mask and SIGPIPE's disposition in the child before this runs, so
        // children start clean whatever the agent's threads block or ignore.
        //
        // SAFETY: the closure runs between fork and exec; it only makes async-signal-safe system
        // calls (setsid, ioctl, setgroups, setgid, setuid) on data prepared before the fork, and
        // neither allocates nor takes locks.
        unsafe {
            cmd.pre_exec(move || {
                if terminal {
                    // A session of its own with the pty (already its stdin) as controlling tty.
                    nix::unistd::setsid()?;
                    rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
                }
                creds
                    .apply_in_child()
                    .map_err(|e| io::Error::from(e.errno()))
            });
        }
        cmd
    }
}

/// The error of a failed spawn, naming the program.
pub fn spawn_error(spec: &ExecSpec, err: &io::Error) -> String {
    format!("cannot run {:?}: {err}", spec.process.args[0])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::process::process_spec::tests::process;

    /// An exec of `args` without streams (see [`process`]).
    pub(crate) fn exec_spec(exec_id: &str, args: &[&str]) -> ExecSpec {
        ExecSpec {
            exec_id: exec_id.into(),
            process: process(args),
            stdin: false,
            stdout: false,
            stderr: false,
            stream_token: String::new(),
        }
    }

    #[test]
    fn a_plain_exec_needs_an_existing_cwd() {
        assert!(exec_spec("t", &["true"]).check().is_ok());
        assert!(exec_spec("t", &[])
            .check()
            .unwrap_err()
            .contains("args is empty"));
        let mut s = exec_spec("t", &["true"]);
        s.process.cwd = "/nonexistent-sandpod-dir".into();
        assert!(s.check().unwrap_err().contains("nonexistent-sandpod-dir"));
        s.process.cwd = "relative".into();
        assert!(s.check().unwrap_err().contains("absolute"));
    }
}
