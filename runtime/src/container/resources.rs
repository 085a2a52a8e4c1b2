//! pause, resume, update, stats and the process list of a running container: all of them act
//! on the container's cgroup in the guest, through the agent.
use anyhow::{bail, Context};
use oci_spec::runtime::LinuxResources;

use super::lifecycle::open_running;
use super::state::Status;
use super::RuntimeOptions;
use crate::agent_client::proto::{ProcessInfo, StatsContainerResponse};

/// Freezes the container's processes.
pub async fn pause(rt: &RuntimeOptions, id: &str) -> anyhow::Result<()> {
    let (layout, mut state, sb) = open_running(rt, id).await?;
    match state.status(&layout) {
        Status::Running => {}
        Status::Paused => bail!("container already paused"),
        _ => bail!("container not running"),
    }
    sb.client.pause_container(id).await?;
    state.status = Status::Paused;
    state.save(&layout)
}

/// Thaws a paused container.
pub async fn resume(rt: &RuntimeOptions, id: &str) -> anyhow::Result<()> {
    let (layout, mut state, sb) = open_running(rt, id).await?;
    if state.status(&layout) != Status::Paused {
        bail!("container not paused");
    }
    sb.client.resume_container(id).await?;
    state.status = Status::Running;
    state.save(&layout)
}

/// Applies new limits to the container's cgroup in the guest.
pub async fn update(
    rt: &RuntimeOptions,
    id: &str,
    resources: &LinuxResources,
) -> anyhow::Result<()> {
    let (_, _, sb) = open_running(rt, id).await?;
    let json = serde_json::to_vec(resources).context("encoding the resources")?;
    sb.client.update_container(id, json).await?;
    Ok(())
}

/// The container's cgroup figures.
pub async fn stats(rt: &RuntimeOptions, id: &str) -> anyhow::Result<StatsContainerResponse> {
    let (_, _, sb) = open_running(rt, id).await?;
    Ok(sb.client.stats_container(id).await?)
}

/// The container's processes as the guest sees them.
pub async fn processes(rt: &RuntimeOptions, id: &str) -> anyhow::Result<Vec<ProcessInfo>> {
    let (_, _, sb) = open_running(rt, id).await?;
    Ok(sb.client.list_processes(id).await?)
}
