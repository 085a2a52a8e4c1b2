//! Agent errors as ttrpc statuses: a code and the error's message, which the host shows.
use ttrpc::{get_status, Code};

use crate::clone::CloneError;
use crate::container::ContainerError;
use crate::network::NetworkError;
use crate::process::ProcessError;
use crate::sandbox::SandboxError;

/// A ttrpc error carrying `code` and `message` back to the host.
pub fn status(code: Code, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(get_status(code, message.into()))
}

impl From<ProcessError> for ttrpc::Error {
    fn from(e: ProcessError) -> Self {
        let code = match &e {
            ProcessError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ProcessError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ProcessError::NotFound(_) => Code::NOT_FOUND,
            ProcessError::PermissionDenied(_) => Code::PERMISSION_DENIED,
            ProcessError::StreamsMissing { .. } => Code::DEADLINE_EXCEEDED,
            ProcessError::Spawn { .. } => Code::FAILED_PRECONDITION,
            ProcessError::Exited(_) | ProcessError::NoTerminal(_) => Code::FAILED_PRECONDITION,
            ProcessError::Internal(_) => Code::INTERNAL,
        };
        status(code, e.to_string())
    }
}

impl From<SandboxError> for ttrpc::Error {
    fn from(e: SandboxError) -> Self {
        let code = match &e {
            SandboxError::AlreadyExists => Code::ALREADY_EXISTS,
            SandboxError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            SandboxError::Failed(_) => Code::INTERNAL,
        };
        status(code, e.to_string())
    }
}

impl From<ContainerError> for ttrpc::Error {
    fn from(e: ContainerError) -> Self {
        let code = match &e {
            ContainerError::Process(p) => return p.clone().into(),
            ContainerError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ContainerError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ContainerError::NotFound(_) => Code::NOT_FOUND,
            ContainerError::State { .. } => Code::FAILED_PRECONDITION,
            ContainerError::Setup { .. } | ContainerError::Exec { .. } => Code::FAILED_PRECONDITION,
            ContainerError::Cgroup { .. } => Code::FAILED_PRECONDITION,
            ContainerError::Timeout { .. } => Code::DEADLINE_EXCEEDED,
            ContainerError::Internal { .. } => Code::INTERNAL,
        };
        status(code, e.to_string())
    }
}

impl From<NetworkError> for ttrpc::Error {
    fn from(e: NetworkError) -> Self {
        let code = match &e {
            NetworkError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            NetworkError::NoSuchMac(_) => Code::NOT_FOUND,
            NetworkError::Connection(_) | NetworkError::Netlink { .. } => Code::INTERNAL,
        };
        status(code, e.to_string())
    }
}

impl From<CloneError> for ttrpc::Error {
    fn from(e: CloneError) -> Self {
        let code = match &e {
            CloneError::Pending | CloneError::NotPending(_) => Code::FAILED_PRECONDITION,
            CloneError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            CloneError::Failed { .. } => Code::INTERNAL,
        };
        status(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_code_and_message() {
        let e: ttrpc::Error = ProcessError::NotFound("x".into()).into();
        match e {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), Code::NOT_FOUND);
                assert_eq!(s.message(), "no process with exec id \"x\"");
            }
            other => panic!("{other:?}"),
        }
    }
}
