//! Errors of the agent client.
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::bounds::agent_message;

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
    /// The agent answered with an error status; `message` is the agent's own, escaped and cut
    /// ([`agent_message`]).
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
    /// Classifies a ttrpc error of `method`. The agent is untrusted: the text of the error (its
    /// status message, or ttrpc's own text, which may quote what the agent sent) is escaped and
    /// cut with [`agent_message`] before it reaches a message someone reads.
    pub fn from_ttrpc(method: &'static str, e: ttrpc::Error) -> Self {
        match e {
            ttrpc::Error::RpcStatus(s) => AgentError::Rpc {
                method,
                code: s.code(),
                message: agent_message(s.message()),
            },
            other => AgentError::Transport {
                method,
                message: agent_message(&other.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_status_message_is_escaped_and_cut() {
        let hostile = format!(
            "failed\n[sandpod] forged line\u{1b}[2J\u{1b}]0;title\u{7}{}",
            "A".repeat(1 << 20)
        );
        let e = AgentError::from_ttrpc(
            "StartContainer",
            ttrpc::Error::RpcStatus(ttrpc::get_status(ttrpc::Code::INTERNAL, hostile)),
        );
        let text = e.to_string();
        assert!(text.len() < 4096, "{}", text.len());
        assert!(
            !text.chars().any(|c| c.is_control()),
            "a control character got through: {text:?}"
        );
        assert!(
            text.starts_with("StartContainer: failed\\n[sandpod] forged line\\u{1b}[2J"),
            "{text}"
        );
        assert!(text.ends_with("more bytes] (INTERNAL)"), "{text}");
        assert_eq!(e.code(), Some(ttrpc::Code::INTERNAL));
        // ttrpc's own text is bounded the same way.
        let e = AgentError::from_ttrpc(
            "Health",
            ttrpc::Error::Others(format!("\u{1b}[1m{}", "b".repeat(1 << 20))),
        );
        let text = e.to_string();
        assert!(
            text.len() < 4096 && !text.contains('\u{1b}'),
            "{}",
            text.len()
        );
    }
}
