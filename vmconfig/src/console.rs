//! Where the guest's serial console goes: `--console stdout|none|file:PATH`.

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
}
