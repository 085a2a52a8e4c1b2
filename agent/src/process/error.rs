//! Errors of the process layer; the RPC layer maps each to a ttrpc status code.
use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ProcessError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("exec id {0:?} is already in use")]
    AlreadyExists(String),
    #[error("no process with exec id {0:?}")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("exec {exec_id}: {what} did not attach within {secs} s")]
    StreamsMissing {
        exec_id: String,
        what: String,
        secs: u64,
    },
    #[error("exec {exec_id}: {message}")]
    Spawn { exec_id: String, message: String },
    #[error("exec {0}: the process has exited")]
    Exited(String),
    #[error("exec {0}: the process has no terminal")]
    NoTerminal(String),
    #[error("{0}")]
    Internal(String),
}
