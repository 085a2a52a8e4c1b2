//! `sandpod monitor STATE_DIR`: the process a sandbox's monitor runs in; it stops the VM on
//! SIGTERM, SIGINT or SIGHUP and exits with the VMM's status.
use std::path::Path;

use tokio::signal::unix::{signal, SignalKind};

use super::Cli;
use crate::sandbox::monitor::run_monitor;
use crate::sandbox::Layout;

pub async fn monitor(_cli: &Cli, state_dir: &Path) -> anyhow::Result<u8> {
    let layout = Layout {
        dir: state_dir.to_path_buf(),
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM".to_string(),
            _ = int.recv() => "SIGINT".to_string(),
            _ = hup.recv() => "SIGHUP".to_string(),
        }
    };
    let exit = run_monitor(&layout, stop).await?;
    Ok(if exit.stopped_because.is_some() {
        0
    } else {
        exit.status()
    })
}
