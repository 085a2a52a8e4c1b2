//! The protocol between Sandpod's host runtime and its guest agent: the ttrpc API (generated from
//! `protos/agent.proto`), the vsock ports and their hybrid-vsock socket paths, the stdio streams
//! (their header, and which streams a process has: a terminal is one stream), the DNS relay's
//! framing ([`dns`]), how a process
//! ended ([`ExitStatus`]), the tokens that authenticate stream and log connections, what mount
//! options mean (`mount_options`), and the log-filter variable every Sandpod binary reads
//! ([`LOG_ENV`]).
pub mod dns;
pub mod exit;
pub mod log_text;
pub mod mount_options;
pub mod ports;
pub mod shared;
pub mod stream;
pub mod token;

/// Messages of `sandpod.agent.v1` (rust-protobuf).
#[allow(
    clippy::all,
    dead_code,
    missing_docs,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unknown_lints,
    unused_attributes,
    unused_mut,
    unused_results
)]
#[rustfmt::skip]
pub mod agent {
    include!(concat!(env!("OUT_DIR"), "/agent.rs"));
}

/// The async ttrpc client (`AgentClient`) and service trait (`Agent`, `create_agent`).
#[allow(
    clippy::all,
    dead_code,
    missing_docs,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unknown_lints,
    unused_imports,
    unused_results
)]
#[rustfmt::skip]
pub mod agent_ttrpc {
    include!(concat!(env!("OUT_DIR"), "/agent_ttrpc.rs"));
}

pub use exit::ExitStatus;
pub use ports::{uds_port_path, AGENT_PORT, DNS_PORT, LOG_PORT, STDIO_PORT};
pub use stream::{StreamHeader, StreamHeaderError, StreamKind, StreamSet};
pub use token::{LogToken, StreamToken, Token, TokenError};

/// The conventions every Sandpod binary follows (the log-filter variable, error chains), from
/// `sandpod-vmconfig`, the one crate the VMM shares with the rest.
pub use sandpod_vmconfig::conventions::{self, ErrorChain, LOG_ENV};

/// Re-exported so that users of the protocol need not depend on these crates themselves.
pub use {protobuf, ttrpc};
