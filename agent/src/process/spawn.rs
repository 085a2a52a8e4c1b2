//! Turning an exec request into a `std::process::Command` (spawned by the reaper).
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::creds::{Credentials, CredsPlan};

/// What the host asked to run (ExecProcess, checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    pub exec_id: String,
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs: the whole environment.
    pub env: Vec<String>,
    /// Empty means `/`.
    pub cwd: String,
    pub creds: Credentials,
    pub terminal: bool,
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
    /// The working directory, `/` when none was given.
    pub fn cwd(&self) -> &str {
        if self.cwd.is_empty() {
            "/"
        } else {
            &self.cwd
        }
    }

    /// Checks what can be checked before forking, so that errors name their cause (a missing
    /// cwd and a missing program both fail exec with ENOENT otherwise).
    pub fn check(&self) -> Result<(), String> {
        if self.args.is_empty() || self.args[0].is_empty() {
            return Err("args is empty: nothing to run".into());
        }
        if let Some(bad) = self.env.iter().find(|e| !e.contains('=')) {
            return Err(format!("env entry {bad:?} is not KEY=VALUE"));
        }
        let cwd = Path::new(self.cwd());
        if !cwd.is_absolute() {
            return Err(format!("cwd {:?} is not an absolute path", self.cwd()));
        }
        if !cwd.is_dir() {
            return Err(format!("cwd {:?} is not a directory", self.cwd()));
        }
        Ok(())
    }

    /// Builds the command. `creds` comes from [`Credentials::plan`].
    pub fn command(&self, stdio: ChildStdio, creds: CredsPlan) -> Command {
        let mut cmd = Command::new(&self.args[0]);
        cmd.args(&self.args[1..])
            .env_clear()
            .envs(self.env.iter().filter_map(|kv| kv.split_once('=')))
            .current_dir(self.cwd())
            .stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        let terminal = self.terminal;
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
                creds.apply_in_child()?;
                Ok(())
            });
        }
        cmd
    }
}

/// The error of a failed spawn, naming the program.
pub fn spawn_error(spec: &ExecSpec, err: &io::Error) -> String {
    format!("cannot run {:?}: {err}", spec.args[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(args: &[&str]) -> ExecSpec {
        ExecSpec {
            exec_id: "t".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/usr/bin:/bin".into()],
            cwd: String::new(),
            creds: Credentials {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
            },
            terminal: false,
            stdin: false,
            stdout: false,
            stderr: false,
            stream_token: String::new(),
        }
    }

    #[test]
    fn checks_args_env_and_cwd() {
        assert!(spec(&["true"]).check().is_ok());
        assert!(spec(&[]).check().unwrap_err().contains("args is empty"));
        let mut s = spec(&["true"]);
        s.env.push("NOEQUALS".into());
        assert!(s.check().unwrap_err().contains("NOEQUALS"));
        let mut s = spec(&["true"]);
        s.cwd = "/nonexistent-sandpod-dir".into();
        assert!(s.check().unwrap_err().contains("nonexistent-sandpod-dir"));
        s.cwd = "relative".into();
        assert!(s.check().unwrap_err().contains("absolute"));
    }
}
