//! A virtio-blk device: `--disk PATH[,ro]`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// A virtio-blk device on a raw image file (or block device).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// The image.
    pub path: PathBuf,
    /// The guest may only read (VIRTIO_BLK_F_RO; the image is opened read-only).
    #[serde(default)]
    pub read_only: bool,
}

impl FromStr for DiskConfig {
    type Err = ParseError;

    /// Parses `PATH` or `PATH,ro` (the path may hold commas: only a last `,ro` is an option).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (path, read_only) = match s.rsplit_once(',') {
            Some((path, "ro")) => (path, true),
            Some((_, opt)) => {
                return Err(ParseError(format!(
                    "invalid disk option {opt:?} in {s:?}: expected PATH or PATH,ro"
                )))
            }
            None => (s, false),
        };
        if path.is_empty() {
            return Err(ParseError(format!(
                "disk path is empty in {s:?}: expected PATH or PATH,ro"
            )));
        }
        Ok(DiskConfig {
            path: PathBuf::from(path),
            read_only,
        })
    }
}

impl fmt::Display for DiskConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.read_only {
            write!(f, ",ro")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!(
            "/a/b.img".parse(),
            Ok(DiskConfig {
                path: "/a/b.img".into(),
                read_only: false
            })
        );
        let d: DiskConfig = "/a,b.img,ro".parse().unwrap();
        assert_eq!(
            d,
            DiskConfig {
                path: "/a,b.img".into(),
                read_only: true
            }
        );
        assert_eq!(d.to_string(), "/a,b.img,ro");
        assert_eq!(d.to_string().parse::<DiskConfig>().unwrap(), d);
        let e = "/a.img,rw".parse::<DiskConfig>().unwrap_err();
        assert!(e.to_string().contains("invalid disk option \"rw\""), "{e}");
        assert!("".parse::<DiskConfig>().is_err());
        assert!(",ro".parse::<DiskConfig>().is_err());
    }

    #[test]
    fn json_form() {
        let d: DiskConfig = serde_json::from_str(r#"{"path":"/x"}"#).unwrap();
        assert!(!d.read_only);
        let e = serde_json::from_str::<DiskConfig>(r#"{"path":"/x","readonly":true}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `readonly`"), "{e}");
    }
}
