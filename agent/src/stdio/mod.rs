//! Process stdio over dedicated stream connections (vsock port 1026), not RPCs.
//!
//! The host opens one connection per stream and names it with a header line (see
//! `sandpod_protocol::stream`); the [`broker::StreamBroker`] pairs connections with the
//! ExecProcess that expects them, whichever comes first; [`pump`] moves the bytes.
pub mod broker;
pub mod header;
pub mod listener;
pub mod pty;
pub mod pump;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to or from the host (a vsock connection, or a Unix one in test mode).
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Duplex for T {}

/// A boxed host connection.
pub type HostStream = Box<dyn Duplex>;
