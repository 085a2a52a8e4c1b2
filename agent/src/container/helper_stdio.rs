//! The container helper's stdio, made by the agent: a pipe per stream the host attaches,
//! /dev/null for the others. In terminal mode the helper starts on /dev/null and moves to the pty
//! it opens inside the container (see `terminal`).
use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;

use crate::process::ParentStdio;

/// The helper's ends and the agent's ends.
pub struct HelperStdio {
    pub child: [OwnedFd; 3],
    pub parent: ParentStdio,
}

fn dev_null() -> io::Result<OwnedFd> {
    // std opens with O_CLOEXEC: only the dup2 in the helper's child makes it inheritable.
    Ok(OwnedFd::from(
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?,
    ))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

impl HelperStdio {
    pub fn new(terminal: bool, stdin: bool, stdout: bool, stderr: bool) -> io::Result<Self> {
        let mut parent = ParentStdio::default();
        if terminal {
            return Ok(HelperStdio {
                child: [dev_null()?, dev_null()?, dev_null()?],
                parent,
            });
        }
        let child_in = if stdin {
            let (r, w) = pipe()?;
            parent.stdin = Some(w);
            r
        } else {
            dev_null()?
        };
        let output = |wanted: bool, slot: &mut Option<OwnedFd>| -> io::Result<OwnedFd> {
            if !wanted {
                return dev_null();
            }
            let (r, w) = pipe()?;
            *slot = Some(r);
            Ok(w)
        };
        let child_out = output(stdout, &mut parent.stdout)?;
        let child_err = output(stderr, &mut parent.stderr)?;
        Ok(HelperStdio {
            child: [child_in, child_out, child_err],
            parent,
        })
    }
}
