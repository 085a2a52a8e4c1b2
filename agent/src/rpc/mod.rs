//! The agent's ttrpc API (`sandpod.agent.v1.Agent`).
pub mod convert;
pub mod service;
pub mod status;

pub use service::AgentService;
