//! The network module's errors.
use std::io;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error("cannot open the network namespace {path}")]
    OpenNetns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot enter the network namespace {path}")]
    Setns {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot start the thread that works in the network namespace")]
    Thread(#[source] io::Error),
    #[error("the thread working in the network namespace panicked")]
    ThreadPanicked,
    #[error("cannot start the netlink thread's tokio runtime")]
    Runtime(#[source] io::Error),
    #[error("cannot open a netlink socket")]
    Connection(#[source] io::Error),
    #[error("netlink: {what}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("tap {name}: {what}")]
    Tap {
        name: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("interface {0} not found")]
    NoSuchInterface(String),
    #[error("cleaning up after a failure failed too ({cleanup}); the failure")]
    CleanupFailed {
        #[source]
        error: Box<NetworkError>,
        cleanup: Box<NetworkError>,
    },
}

/// Maps a netlink error, saying what was being done.
pub(crate) fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Netlink { what, source }
}

/// The errno of a netlink error answer (positive), if it is one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}
