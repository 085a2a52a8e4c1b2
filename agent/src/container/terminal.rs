//! Terminal mode in the helper: a pty opened inside the container (its /dev/ptmx, i.e. the
//! container's devpts, so that `tty` and ttyname() work there), the master handed to the agent
//! over the sync socket (the agent pumps it like any pty, `stdio::pty`), the slave made the
//! controlling terminal and stdin/stdout/stderr of the process.
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::Context;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::Mode;

use super::sync::{Msg, SyncSocket};

/// Opens the pty, sends the master, and makes the slave this process's terminal and stdio.
pub fn setup(sync: &SyncSocket) -> anyhow::Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .context("opening /dev/ptmx in the container")?;
    grantpt(&master).context("grantpt")?;
    unlockpt(&master).context("unlockpt")?;
    let slave_path = ptsname_r(&master).context("ptsname")?;
    let slave: OwnedFd = open(
        Path::new(&slave_path),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {slave_path}"))?;
    sync.send(&Msg::Pty, Some(master.as_raw_fd()))
        .context("handing the pty to the agent")?;
    drop(master);
    // A session of its own with the pty as controlling terminal.
    nix::unistd::setsid().context("setsid")?;
    rustix::process::ioctl_tiocsctty(&slave).context("TIOCSCTTY")?;
    for target in 0..3 {
        // SAFETY: dup2 of a descriptor we own onto stdio; std's stdio handles are not in use.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error()).context("dup2 pty slave");
        }
    }
    // /dev/console, as runc does, when the container's /dev has one to bind over.
    if Path::new("/dev/console").exists() {
        let _ = mount(
            Some(Path::new(&slave_path)),
            "/dev/console",
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        );
    }
    Ok(())
}
