//! How a process ended: the protocol's [`ExitStatus`] (one definition for the agent, which
//! reports it, and the runtime, which reads it and maps it to a shell's status).
pub use sandpod_protocol::exit::ExitStatus;
