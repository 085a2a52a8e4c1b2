//! The one "process to run" of the agent: what a plain exec runs, what a container's init and an
//! exec into a container run (handed to the container helper inside its config), checked in one
//! place.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::creds::Credentials;

/// A program with its environment, working directory and identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs: the whole environment (in a container, its PATH finds args[0]).
    pub env: Vec<String>,
    /// Absolute (the API's empty cwd is `/`); a container's is inside the container.
    pub cwd: PathBuf,
    pub creds: Credentials,
    /// The umask of a container process (None: 0o022); a plain exec keeps the agent's.
    pub umask: Option<u32>,
    /// Runs on a terminal (a pty the agent holds the master of).
    pub terminal: bool,
}

impl ProcessSpec {
    /// Checks args, env and cwd (the one check of every way of starting a process), so that
    /// errors name their cause (a bad cwd and a missing program both fail exec with ENOENT
    /// otherwise). Messages name the field first, so that callers can prefix them.
    pub fn check(&self) -> Result<(), String> {
        if self.args.is_empty() || self.args[0].is_empty() {
            return Err("args is empty: nothing to run".into());
        }
        if let Some(bad) = self.env.iter().find(|e| !e.contains('=')) {
            return Err(format!("env entry {bad:?} is not KEY=VALUE"));
        }
        if !self.cwd.is_absolute() {
            return Err(format!("cwd {:?} is not an absolute path", self.cwd));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `args` run as root in `/` with PATH only: what the tests of every layer start.
    pub(crate) fn process(args: &[&str]) -> ProcessSpec {
        ProcessSpec {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/usr/bin:/bin".into()],
            cwd: "/".into(),
            creds: Credentials {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
            },
            umask: None,
            terminal: false,
        }
    }

    #[test]
    fn checks_args_env_and_cwd() {
        assert!(process(&["true"]).check().is_ok());
        assert!(process(&[]).check().unwrap_err().contains("args is empty"));
        assert!(process(&[""])
            .check()
            .unwrap_err()
            .contains("args is empty"));
        let mut p = process(&["true"]);
        p.env.push("NOEQUALS".into());
        assert!(p.check().unwrap_err().contains("NOEQUALS"));
        let mut p = process(&["true"]);
        p.cwd = "relative".into();
        assert_eq!(
            p.check().unwrap_err(),
            "cwd \"relative\" is not an absolute path"
        );
        p.cwd = "".into();
        assert!(p.check().unwrap_err().contains("absolute"));
    }
}
