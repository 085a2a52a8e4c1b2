//! Errors of the container layer; the RPC layer maps each to a ttrpc status code.
use thiserror::Error;

use crate::process::ProcessError;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ContainerError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    #[error("no container {0:?}")]
    NotFound(String),
    /// The container is not in a state that allows the call (e.g. started twice).
    #[error("container {id}: {message}")]
    State { id: String, message: String },
    /// The helper failed to set the container (or the exec'd process) up.
    #[error("container {id}: {message}")]
    Setup { id: String, message: String },
    /// The container's process could not exec its binary.
    #[error("container {id}: {message}")]
    Exec { id: String, message: String },
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The container's cgroup refused a change (UpdateContainer, PauseContainer).
    #[error("container {id}: {message}")]
    Cgroup { id: String, message: String },
    /// A bounded wait ran out (the freezer did not settle).
    #[error("container {id}: {message}")]
    Timeout { id: String, message: String },
    #[error("container {id}: {message}")]
    Internal { id: String, message: String },
}
