//! The arguments of runc's lifecycle commands (create, kill, delete, spec, checkpoint/restore)
//! and their translation onto [`crate::container`].
use std::path::PathBuf;

use anyhow::bail;

use super::{signal, VmArgs};
use crate::bundle::Bundle;
use crate::container::foreground::{create_or_undo, Signals};
use crate::container::{CreateOptions, RuntimeOptions};
use crate::io::IoConfig;

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The bundle directory (config.json and the rootfs it names).
    #[arg(long, short, default_value = ".")]
    pub bundle: PathBuf,
    /// Where to send the master of the container's terminal (SCM_RIGHTS).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Write the pid of the process that stands for the container's init to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility (the container's root is set up in the VM).
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility (keyrings are the guest kernel's).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Passing extra fds into a container in a VM is not possible: only 0 is accepted.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    #[command(flatten)]
    pub vm: VmArgs,
    /// The container id.
    pub id: String,
}

pub async fn create(rt: &RuntimeOptions, a: &CreateArgs) -> anyhow::Result<u8> {
    if a.preserve_fds > 0 {
        bail!("--preserve-fds: host fds cannot be passed into a container in a microVM");
    }
    crate::sandbox::validate_id(&a.id)?;
    let bundle = Bundle::load(&a.bundle)?;
    if bundle.terminal() && a.console_socket.is_none() {
        bail!("cannot allocate tty if runc will detach without setting console socket");
    }
    let io = match &a.console_socket {
        Some(s) => IoConfig::ConsoleSocket(s.clone()),
        None => IoConfig::Inherit,
    };
    let opts = CreateOptions {
        id: a.id.clone(),
        bundle,
        pid_file: a.pid_file.clone(),
        io,
        vm: a.vm.options(&rt.config),
    };
    // SIGINT/SIGTERM/SIGHUP during create undo it (never a half-made container).
    let mut signals = Signals::new()?;
    // The stand-in is left to the caller (a subreaper: containerd's shim, conmon) to reap.
    drop(create_or_undo(rt, opts, &mut signals).await?);
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// Signal every process of the container, not only its init.
    #[arg(long, short)]
    pub all: bool,
    pub id: String,
    /// Name (KILL, SIGKILL) or number; default SIGTERM.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

pub async fn kill(rt: &RuntimeOptions, a: &KillArgs) -> anyhow::Result<u8> {
    let sig = signal::parse(&a.signal)?;
    crate::container::kill(rt, &a.id, sig, a.all).await?;
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// Kill the container first if it still runs.
    #[arg(long, short)]
    pub force: bool,
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub struct SpecArgs {
    /// Where to write config.json.
    #[arg(long, short, default_value = ".")]
    pub bundle: PathBuf,
}

/// Whatever runc's checkpoint/restore take: refused before it matters.
#[derive(clap::Args, Debug)]
pub struct Unsupported {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}
