//! The runtime's log: standard error, or the `--log` file (appended; shared with the monitor,
//! the stand-ins and the guest's forwarded logs). `--log-format json` writes runc's JSON lines,
//! `{"level":"error","msg":"…","time":"…"}`, which containerd and Docker read the error from.
use std::io::IsTerminal;
use std::sync::Mutex;

use anyhow::Context;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use super::Cli;
use crate::sandbox::state::now_rfc3339_nanos;

/// Keeps the log set up for the life of the process.
pub struct LogGuard;

/// Sets up `tracing` from the global flags; `configured` is the config file's log level.
pub fn init(cli: &Cli, configured: Option<&str>) -> anyhow::Result<LogGuard> {
    let default = if cli.debug {
        "debug"
    } else if let Some(l) = configured {
        l
    } else if cli.log.is_some() {
        "info"
    } else {
        "warn"
    };
    let filter = env_filter(default);
    let json = match cli.log_format.as_str() {
        "text" => false,
        "json" => true,
        other => anyhow::bail!("invalid --log-format {other:?}: expected text or json"),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match &cli.log {
        Some(path) => {
            let file = crate::log_file::open_append(path, true)
                .with_context(|| format!("opening the log file {}", path.display()))?;
            let b = builder.with_ansi(false).with_writer(Mutex::new(file));
            if json {
                b.event_format(RuncJson).init();
            } else {
                b.init();
            }
        }
        None => {
            let b = builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr);
            if json {
                b.event_format(RuncJson).init();
            } else {
                b.init();
            }
        }
    }
    Ok(LogGuard)
}

/// The filter from `SANDPOD_LOG` ([`sandpod_protocol::LOG_ENV`], as in every Sandpod binary; else
/// `RUST_LOG`), or `default` if neither is set or valid. The
/// monitor's children (sandpod-vmm) inherit the variable.
pub fn env_filter(default: &str) -> EnvFilter {
    sandpod_protocol::conventions::log_filter_from_env()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default))
}

/// runc's log line format.
struct RuncJson;

/// runc's level names (logrus): "warning", not "warn".
fn level_name(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warning",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    }
}

impl<S, N> FormatEvent<S, N> for RuncJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let text = sandpod_protocol::log_text::event_text(event);
        let line = runc_line(level_name(event.metadata().level()), &text);
        writeln!(writer, "{line}")
    }
}

/// One runc JSON log line.
pub fn runc_line(level: &str, msg: &str) -> String {
    serde_json::json!({"level": level, "msg": msg, "time": now_rfc3339_nanos()}).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn runc_lines_parse_as_containerd_reads_them() {
        let l = super::runc_line("error", "container does not exist");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container does not exist");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}
