//! The runtime's log: standard error, or the `--log` file (appended; shared by the monitor and
//! the guest's forwarded logs), text or JSON.
use std::io::IsTerminal;
use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use super::Cli;

/// Keeps the log set up for the life of the process.
pub struct LogGuard;

/// Sets up `tracing` from the global flags; `SANDPOD_LOG` overrides the filter.
pub fn init(cli: &Cli) -> anyhow::Result<LogGuard> {
    let default = if cli.debug {
        "debug"
    } else if cli.log.is_some() {
        "info"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_env("SANDPOD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let json = match cli.log_format.as_str() {
        "text" => false,
        "json" => true,
        other => anyhow::bail!("invalid --log-format {other:?}: expected text or json"),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match &cli.log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the log file {}", path.display()))?;
            let b = builder.with_ansi(false).with_writer(Mutex::new(file));
            if json {
                b.json().init();
            } else {
                b.init();
            }
        }
        None => {
            let b = builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr);
            if json {
                b.json().init();
            } else {
                b.init();
            }
        }
    }
    Ok(LogGuard)
}
