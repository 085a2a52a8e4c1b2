//! UpdateNetwork's errors.
use std::io;

use thiserror::Error;

use super::MacAddr;

#[derive(Debug, Error)]
pub enum NetworkError {
    /// The request is refused (before anything was changed).
    #[error("{0}")]
    InvalidArgument(String),
    /// No link of the guest has the MAC of one of the request's interfaces.
    #[error("no network interface with MAC {0}")]
    NoSuchMac(MacAddr),
    #[error("cannot open a netlink socket: {0}")]
    Connection(#[source] io::Error),
    /// A netlink request failed: `what` says which (`adding route default via 10.88.0.1 dev
    /// eth0`).
    #[error("{what}: {}", describe(source))]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
}

/// A netlink error as the host is shown it: an error answer as its errno's text (`Network is
/// unreachable (os error 101)`), anything else as rtnetlink says it.
fn describe(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
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
