//! Configuration of one virtio-fs device: `tag=TAG,socket=PATH[,queues=N,queue-size=N]`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// Longest tag: the config space field is 36 bytes (not NUL-terminated when full).
pub const MAX_TAG_LEN: usize = 36;
/// Default number of request queues (virtiofsd serves one).
pub const DEFAULT_REQUEST_QUEUES: u16 = 1;
/// Most request queues accepted (vhost-user allows 256 vrings, one is the hiprio queue).
pub const MAX_REQUEST_QUEUES: u16 = 255;
/// Default size of each queue.
pub const DEFAULT_QUEUE_SIZE: u16 = 1024;
/// Largest queue size (split virtqueues).
pub const MAX_QUEUE_SIZE: u16 = 32768;
/// Longest Unix socket path.
pub const MAX_SOCKET_PATH: usize = 107;

/// An invalid [`FsConfig`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FsConfigError {
    /// Empty or too long tag.
    #[error("tag {0:?} must be 1 to {MAX_TAG_LEN} bytes long")]
    TagLength(String),
    /// A tag with control characters.
    #[error("tag {0:?} contains control characters")]
    TagControl(String),
    /// Empty or too long socket path.
    #[error("tag {0}: socket path must be non-empty and at most {MAX_SOCKET_PATH} bytes")]
    SocketPath(String),
    /// No request queue, or too many.
    #[error("tag {tag}: {queues} request queues: use 1 to {MAX_REQUEST_QUEUES}")]
    RequestQueues {
        /// The device's tag.
        tag: String,
        /// The number asked for.
        queues: u16,
    },
    /// A queue size that is not a power of two, or too large.
    #[error("tag {tag}: queue size {size} is not a power of two up to {MAX_QUEUE_SIZE}")]
    QueueSize {
        /// The device's tag.
        tag: String,
        /// The size asked for.
        size: u16,
    },
}

/// A virtio-fs device whose back end is a vhost-user-fs daemon (virtiofsd) listening on
/// `socket`. The guest mounts it with `mount -t virtiofs TAG /mnt`.
///
/// Cache mode and DAX are the back end's business: the runtime starts virtiofsd with
/// `--cache auto|always|never`, and the device offers no DAX window (no shared memory
/// region), so DAX is always off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// The mount tag the guest sees (1 to 36 bytes of UTF-8, no NUL or control characters).
    pub tag: String,
    /// The back end's vhost-user socket.
    pub socket: PathBuf,
    /// Number of request queues (the device also has one high-priority queue).
    #[serde(default = "default_request_queues")]
    pub request_queues: u16,
    /// Size of each queue (a power of two, at most 32768).
    #[serde(default = "default_queue_size")]
    pub queue_size: u16,
}

fn default_request_queues() -> u16 {
    DEFAULT_REQUEST_QUEUES
}

fn default_queue_size() -> u16 {
    DEFAULT_QUEUE_SIZE
}

impl FsConfig {
    /// A device with the default queues.
    pub fn new(tag: impl Into<String>, socket: impl Into<PathBuf>) -> Self {
        FsConfig {
            tag: tag.into(),
            socket: socket.into(),
            request_queues: DEFAULT_REQUEST_QUEUES,
            queue_size: DEFAULT_QUEUE_SIZE,
        }
    }

    /// Checks the values (not the socket's existence: that is checked on connecting).
    pub fn validate(&self) -> Result<(), FsConfigError> {
        let tag = || self.tag.clone();
        if self.tag.is_empty() || self.tag.len() > MAX_TAG_LEN {
            return Err(FsConfigError::TagLength(tag()));
        }
        if self.tag.chars().any(char::is_control) {
            return Err(FsConfigError::TagControl(tag()));
        }
        let len = self.socket.as_os_str().len();
        if len == 0 || len > MAX_SOCKET_PATH {
            return Err(FsConfigError::SocketPath(tag()));
        }
        if self.request_queues == 0 || self.request_queues > MAX_REQUEST_QUEUES {
            return Err(FsConfigError::RequestQueues {
                tag: tag(),
                queues: self.request_queues,
            });
        }
        if !self.queue_size.is_power_of_two() || self.queue_size > MAX_QUEUE_SIZE {
            return Err(FsConfigError::QueueSize {
                tag: tag(),
                size: self.queue_size,
            });
        }
        Ok(())
    }

    /// All queues: the high-priority queue and the request queues.
    pub fn num_queues(&self) -> usize {
        1 + usize::from(self.request_queues)
    }
}

impl FromStr for FsConfig {
    type Err = ParseError;

    /// Parses `tag=TAG,socket=PATH[,queues=N][,queue-size=N]` (the socket path cannot hold
    /// a comma).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mut tag, mut socket) = (None, None);
        let mut request_queues = DEFAULT_REQUEST_QUEUES;
        let mut queue_size = DEFAULT_QUEUE_SIZE;
        for part in s.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| ParseError(format!("{part:?} is not KEY=VALUE (in {s:?})")))?;
            let number = |v: &str| {
                v.parse::<u16>()
                    .map_err(|_| ParseError(format!("{key}={v}: not a number from 0 to 65535")))
            };
            let dup = |seen: bool| {
                if seen {
                    Err(ParseError(format!("{key} given twice in {s:?}")))
                } else {
                    Ok(())
                }
            };
            match key {
                "tag" => {
                    dup(tag.is_some())?;
                    tag = Some(value.to_string());
                }
                "socket" => {
                    dup(socket.is_some())?;
                    socket = Some(PathBuf::from(value));
                }
                "queues" => request_queues = number(value)?,
                "queue-size" => queue_size = number(value)?,
                _ => {
                    return Err(ParseError(format!(
                        "unknown key {key:?}: expected tag, socket, queues or queue-size"
                    )))
                }
            }
        }
        let config = FsConfig {
            tag: tag.ok_or_else(|| ParseError("tag=TAG is missing".into()))?,
            socket: socket.ok_or_else(|| ParseError("socket=PATH is missing".into()))?,
            request_queues,
            queue_size,
        };
        config.validate()?;
        Ok(config)
    }
}

impl fmt::Display for FsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tag={},socket={},queues={},queue-size={}",
            self.tag,
            self.socket.display(),
            self.request_queues,
            self.queue_size
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let c: FsConfig = "tag=shared,socket=/run/vfs.sock".parse().unwrap();
        assert_eq!(c, FsConfig::new("shared", "/run/vfs.sock"));
        assert_eq!(c.num_queues(), 2);
        let c: FsConfig = "socket=/s,queue-size=256,tag=t,queues=2".parse().unwrap();
        assert_eq!((c.request_queues, c.queue_size), (2, 256));
        assert_eq!(c.num_queues(), 3);
        assert_eq!(c.to_string(), "tag=t,socket=/s,queues=2,queue-size=256");
        assert_eq!(c.to_string().parse::<FsConfig>().unwrap(), c);
    }

    #[test]
    fn rejects_bad_options() {
        for (s, why) in [
            ("socket=/s", "tag=TAG is missing"),
            ("tag=t", "socket=PATH is missing"),
            ("tag=t,socket=/s,cache=auto", "unknown key \"cache\""),
            ("tag=t,socket=/s,queues", "is not KEY=VALUE"),
            ("tag=t,tag=u,socket=/s", "tag given twice"),
            ("tag=,socket=/s", "1 to 36 bytes"),
            ("tag=t,socket=", "socket path must be non-empty"),
            ("tag=t,socket=/s,queues=0", "0 request queues"),
            ("tag=t,socket=/s,queues=x", "queues=x: not a number"),
            ("tag=t,socket=/s,queue-size=1000", "not a power of two"),
            ("tag=t,socket=/s,queue-size=65536", "not a number"),
            ("", "is not KEY=VALUE"),
        ] {
            let e = s.parse::<FsConfig>().unwrap_err().to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
        let long = format!("tag={},socket=/s", "x".repeat(37));
        assert!(long.parse::<FsConfig>().is_err());
        let ok = format!("tag={},socket=/s", "x".repeat(36));
        assert!(ok.parse::<FsConfig>().is_ok());
        assert!("tag=a\tb,socket=/s".parse::<FsConfig>().is_err());
        let path = format!("tag=t,socket=/{}", "p".repeat(MAX_SOCKET_PATH));
        assert!(path.parse::<FsConfig>().is_err());
    }

    #[test]
    fn serde_defaults() {
        let c: FsConfig = serde_json::from_str(r#"{"tag":"t","socket":"/s"}"#).unwrap();
        assert_eq!(c, FsConfig::new("t", "/s"));
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<FsConfig>(&s).unwrap(), c);
        let e = serde_json::from_str::<FsConfig>(r#"{"tag":"t","socket":"/s","cache":"auto"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `cache`"), "{e}");
    }

    #[test]
    fn typed_validation_errors() {
        let mut c = FsConfig::new("t", "/s");
        c.queue_size = 1000;
        assert_eq!(
            c.validate(),
            Err(FsConfigError::QueueSize {
                tag: "t".into(),
                size: 1000
            })
        );
        c.queue_size = 1024;
        c.request_queues = MAX_REQUEST_QUEUES + 1;
        assert_eq!(
            c.validate(),
            Err(FsConfigError::RequestQueues {
                tag: "t".into(),
                queues: MAX_REQUEST_QUEUES + 1
            })
        );
    }
}
