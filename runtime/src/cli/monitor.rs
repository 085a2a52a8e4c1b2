//! `sandpod monitor STATE_DIR`: the hidden mode a sandbox's monitor runs in.
use std::path::Path;

use anyhow::Context;

use super::Cli;
use crate::sandbox::monitor::run_monitor;
use crate::sandbox::Layout;

pub async fn monitor(cli: &Cli, state_dir: &Path) -> anyhow::Result<u8> {
    let layout = Layout {
        dir: state_dir.to_path_buf(),
    };
    let log_path = cli.log.clone().unwrap_or_else(|| layout.default_log());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    run_monitor(&layout, &log).await?;
    Ok(0)
}
