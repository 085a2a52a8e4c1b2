//! Facts about the guest the agent runs in (reported to the host).
pub mod info;
