//! The agent's ttrpc API (`sandpod.agent.v1.Agent`).
pub mod convert;
pub mod service;
#[cfg(test)]
mod service_tests;
pub mod status;

pub use service::AgentService;
