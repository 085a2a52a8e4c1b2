//! Errors of the agent client.
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

// The messages name what failed, never their cause: the cause is the error's source, printed once
// by whoever prints the error with its chain (anyhow's `{:#}`, `sandpod_protocol::ErrorChain`).

/// The hybrid-vsock handshake failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("connecting to the VMM's vsock socket {path}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("hybrid vsock handshake for port {port}")]
    Io { port: u32, source: io::Error },
    #[error("hybrid vsock refused port {port}: {reply:?}")]
    Refused { port: u32, reply: String },
    #[error("no hybrid vsock reply for port {port} within {timeout:?}")]
    Timeout { port: u32, timeout: Duration },
    #[error("the VMM closed the connection during the handshake for port {port}")]
    Closed { port: u32 },
}

/// An agent call failed.
#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("the agent did not answer within {waited:?}: {last}")]
    Unreachable { waited: Duration, last: String },
    /// The agent answered with an error status; `message` is the agent's own.
    #[error("{method}: {message} ({code:?})")]
    Rpc {
        method: &'static str,
        code: ttrpc::Code,
        message: String,
    },
    #[error("{method}: no answer within {timeout:?}")]
    Timeout {
        method: &'static str,
        timeout: Duration,
    },
    #[error("{method}: {message}")]
    Transport {
        method: &'static str,
        message: String,
    },
    #[error("{method}: malformed answer: {message}")]
    Protocol {
        method: &'static str,
        message: String,
    },
    #[error(transparent)]
    Stream(#[from] sandpod_protocol::StreamHeaderError),
    #[error("writing the stream header")]
    StreamIo(#[source] io::Error),
    /// A request asks for streams without a valid stream token (or has a malformed log token).
    #[error("{what}")]
    Token {
        what: &'static str,
        source: sandpod_protocol::TokenError,
    },
}

impl AgentError {
    /// Classifies a ttrpc error of `method`.
    pub fn from_ttrpc(method: &'static str, e: ttrpc::Error) -> Self {
        match e {
            ttrpc::Error::RpcStatus(s) => AgentError::Rpc {
                method,
                code: s.code(),
                message: s.message().to_string(),
            },
            other => AgentError::Transport {
                method,
                message: other.to_string(),
            },
        }
    }

    /// The agent's status code, when the agent answered with an error.
    pub fn code(&self) -> Option<ttrpc::Code> {
        match self {
            AgentError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}
