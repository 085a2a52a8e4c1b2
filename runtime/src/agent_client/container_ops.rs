//! The container calls behind pause/resume/update/stats/ps/kill --all.
//! (Temporary home until the agent-rpcs branch's client methods land.)
use std::time::Duration;

use sandpod_protocol::agent::*;

use super::client::AgentClient;
use super::error::AgentError;

impl AgentClient {
    pub async fn signal_container_all(&self, id: &str, signal: u32) -> Result<(), AgentError> {
        let mut req = SignalProcessRequest::new();
        req.exec_id = id.to_string();
        req.signal = signal;
        req.all = true;
        self.raw()
            .signal_process(Self::ctx(), &req)
            .await
            .map_err(|e| AgentError::from_ttrpc("SignalProcess", e))?;
        Ok(())
    }

    fn ctx() -> ttrpc::context::Context {
        ttrpc::context::with_duration(Duration::from_secs(10))
    }

    pub async fn pause_container(&self, id: &str) -> Result<(), AgentError> {
        let mut req = PauseContainerRequest::new();
        req.container_id = id.to_string();
        self.raw()
            .pause_container(Self::ctx(), &req)
            .await
            .map_err(|e| AgentError::from_ttrpc("PauseContainer", e))?;
        Ok(())
    }

    pub async fn resume_container(&self, id: &str) -> Result<(), AgentError> {
        let mut req = ResumeContainerRequest::new();
        req.container_id = id.to_string();
        self.raw()
            .resume_container(Self::ctx(), &req)
            .await
            .map_err(|e| AgentError::from_ttrpc("ResumeContainer", e))?;
        Ok(())
    }

    pub async fn update_container(&self, id: &str, resources: Vec<u8>) -> Result<(), AgentError> {
        let mut req = UpdateContainerRequest::new();
        req.container_id = id.to_string();
        req.resources = resources;
        self.raw()
            .update_container(Self::ctx(), &req)
            .await
            .map_err(|e| AgentError::from_ttrpc("UpdateContainer", e))?;
        Ok(())
    }

    pub async fn stats_container(&self, id: &str) -> Result<StatsContainerResponse, AgentError> {
        let mut req = StatsContainerRequest::new();
        req.container_id = id.to_string();
        self.raw()
            .stats_container(Self::ctx(), &req)
            .await
            .map_err(|e| AgentError::from_ttrpc("StatsContainer", e))
    }

    pub async fn list_processes(&self, id: &str) -> Result<Vec<ProcessInfo>, AgentError> {
        let mut req = ListProcessesRequest::new();
        req.container_id = id.to_string();
        let resp = self
            .raw()
            .list_processes(Self::ctx(), &req)
            .await
            .map_err(|e| AgentError::from_ttrpc("ListProcesses", e))?;
        Ok(resp.processes)
    }
}
