//! The host's client of the guest agent: hybrid-vsock connections ([`HybridVsockConnector`]),
//! the ttrpc API ([`AgentClient`]), stdio streams ([`open_stream`]) and the agent's logs
//! ([`LogReceiver`]). [`fake_vmm`] stands in for the VMM in host-side tests.
pub mod bounds;
pub mod client;
#[cfg(test)]
mod client_tests;
pub mod connector;
pub mod error;
pub mod fake_vmm;
pub mod log_limiter;
pub mod logs;
pub mod stdio;

pub use client::{AgentClient, ClientConfig};
pub use connector::HybridVsockConnector;
pub use error::{AgentError, ConnectError};
pub use fake_vmm::FakeHybridVsock;
pub use logs::{parse_log_line, GuestLogLine, LogLimiter, LogLimits, LogReceiver};
pub use sandpod_protocol::exit::shell_code;
pub use sandpod_protocol::{
    agent as proto, ExitStatus, LogToken, StreamKind, StreamSet, StreamToken,
};
pub use stdio::{attach_stdio, open_stream};
