//! Where the guest's serial console goes (`--console stdout|none|file:PATH`) and the caps on
//! what the guest can write there ([`ConsoleLimits`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// Where the guest's serial console (ttyS0) goes. In JSON: `"stdout"`, `"none"` or
/// `{"file": "PATH"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleConfig {
    /// The VMM's standard output.
    #[default]
    Stdout,
    /// A file, created or truncated.
    File(PathBuf),
    /// Discarded.
    None,
}

impl FromStr for ConsoleConfig {
    type Err = ParseError;

    /// Parses `stdout`, `none` or `file:PATH`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(ConsoleConfig::Stdout),
            "none" => Ok(ConsoleConfig::None),
            _ => match s.strip_prefix("file:") {
                Some("") => Err(ParseError(
                    "console file path is empty (use file:PATH)".to_string(),
                )),
                Some(p) => Ok(ConsoleConfig::File(PathBuf::from(p))),
                None => Err(ParseError(format!(
                    "invalid console {s:?}: expected stdout, none or file:PATH"
                ))),
            },
        }
    }
}

impl fmt::Display for ConsoleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleConfig::Stdout => write!(f, "stdout"),
            ConsoleConfig::None => write!(f, "none"),
            ConsoleConfig::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// Default size at which the console file is rotated: 1 MiB.
pub const DEFAULT_CONSOLE_MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Default console rate: 64 KiB/s.
pub const DEFAULT_CONSOLE_BYTES_PER_SEC: u64 = 64 * 1024;
/// Default console burst: 256 KiB.
pub const DEFAULT_CONSOLE_BURST_BYTES: u64 = 256 * 1024;
/// Smallest accepted `max_file_bytes`.
pub const MIN_CONSOLE_MAX_FILE_BYTES: u64 = 4096;
/// Smallest accepted `burst_bytes` (room for the "bytes dropped" marker line).
pub const MIN_CONSOLE_BURST_BYTES: u64 = 1024;

/// Caps on the guest's console output (the guest is untrusted: nothing it writes may fill the
/// host's disk or its logs). In JSON `"console_limits": {"max_file_bytes": N, "bytes_per_sec":
/// N, "burst_bytes": N}`, every field optional.
///
/// * A console file holds at most `max_file_bytes`; when full it is renamed to `PATH.1`
///   (replacing an older one) and a new `PATH` is begun: at most twice that on disk.
/// * Output to a file or stdout is rate-limited by a token bucket (`bytes_per_sec`, up to
///   `burst_bytes` at once). Bytes beyond it are dropped and counted; when output resumes, a
///   line `[sandpod: N bytes of console output dropped]` is written first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleLimits {
    /// Size at which the console file is rotated.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Sustained rate, in bytes a second.
    #[serde(default = "default_bytes_per_sec")]
    pub bytes_per_sec: u64,
    /// Most bytes written at once after a quiet time.
    #[serde(default = "default_burst_bytes")]
    pub burst_bytes: u64,
}

fn default_max_file_bytes() -> u64 {
    DEFAULT_CONSOLE_MAX_FILE_BYTES
}

fn default_bytes_per_sec() -> u64 {
    DEFAULT_CONSOLE_BYTES_PER_SEC
}

fn default_burst_bytes() -> u64 {
    DEFAULT_CONSOLE_BURST_BYTES
}

impl Default for ConsoleLimits {
    fn default() -> Self {
        ConsoleLimits {
            max_file_bytes: DEFAULT_CONSOLE_MAX_FILE_BYTES,
            bytes_per_sec: DEFAULT_CONSOLE_BYTES_PER_SEC,
            burst_bytes: DEFAULT_CONSOLE_BURST_BYTES,
        }
    }
}

/// Invalid [`ConsoleLimits`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConsoleLimitsError {
    /// `max_file_bytes` below the minimum.
    #[error("console max_file_bytes {0} is below the minimum of {MIN_CONSOLE_MAX_FILE_BYTES}")]
    FileTooSmall(u64),
    /// `bytes_per_sec` is zero.
    #[error("console bytes_per_sec must be at least 1")]
    NoRate,
    /// `burst_bytes` below the minimum.
    #[error("console burst_bytes {0} is below the minimum of {MIN_CONSOLE_BURST_BYTES}")]
    BurstTooSmall(u64),
}

impl ConsoleLimits {
    /// Checks the minimums.
    pub fn validate(&self) -> Result<(), ConsoleLimitsError> {
        if self.max_file_bytes < MIN_CONSOLE_MAX_FILE_BYTES {
            return Err(ConsoleLimitsError::FileTooSmall(self.max_file_bytes));
        }
        if self.bytes_per_sec == 0 {
            return Err(ConsoleLimitsError::NoRate);
        }
        if self.burst_bytes < MIN_CONSOLE_BURST_BYTES {
            return Err(ConsoleLimitsError::BurstTooSmall(self.burst_bytes));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("stdout".parse(), Ok(ConsoleConfig::Stdout));
        assert_eq!("none".parse(), Ok(ConsoleConfig::None));
        assert_eq!(
            "file:/tmp/x".parse(),
            Ok(ConsoleConfig::File(PathBuf::from("/tmp/x")))
        );
        assert!("file:".parse::<ConsoleConfig>().is_err());
        let e = "tty".parse::<ConsoleConfig>().unwrap_err();
        assert!(e.to_string().contains("expected stdout, none or file:PATH"));
        assert_eq!(ConsoleConfig::File("/a".into()).to_string(), "file:/a");
        for c in ["stdout", "none", "file:/var/log/c"] {
            assert_eq!(c.parse::<ConsoleConfig>().unwrap().to_string(), c);
        }
    }

    #[test]
    fn json_form() {
        let c = ConsoleConfig::File("/log".into());
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"file":"/log"}"#);
        assert_eq!(
            serde_json::to_string(&ConsoleConfig::None).unwrap(),
            r#""none""#
        );
        let back: ConsoleConfig = serde_json::from_str(r#""stdout""#).unwrap();
        assert_eq!(back, ConsoleConfig::Stdout);
        assert!(serde_json::from_str::<ConsoleConfig>(r#""tty""#).is_err());
    }

    #[test]
    fn limits_default_validate_and_parse() {
        let d = ConsoleLimits::default();
        assert_eq!(d.validate(), Ok(()));
        assert_eq!(serde_json::from_str::<ConsoleLimits>("{}").unwrap(), d);
        let l: ConsoleLimits = serde_json::from_str(r#"{"bytes_per_sec":10}"#).unwrap();
        assert_eq!(
            (l.bytes_per_sec, l.burst_bytes),
            (10, DEFAULT_CONSOLE_BURST_BYTES)
        );
        assert!(serde_json::from_str::<ConsoleLimits>(r#"{"rate":1}"#).is_err());
        let bad = |f: fn(&mut ConsoleLimits)| {
            let mut l = d;
            f(&mut l);
            l.validate().unwrap_err()
        };
        assert_eq!(
            bad(|l| l.max_file_bytes = 100),
            ConsoleLimitsError::FileTooSmall(100)
        );
        assert_eq!(bad(|l| l.bytes_per_sec = 0), ConsoleLimitsError::NoRate);
        assert_eq!(
            bad(|l| l.burst_bytes = 10),
            ConsoleLimitsError::BurstTooSmall(10)
        );
    }
}
