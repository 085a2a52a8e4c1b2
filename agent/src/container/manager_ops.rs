//! What acts on a live container through its cgroup: SignalProcess with `all` (`runc kill
//! --all`), PauseContainer / ResumeContainer (the cgroup v2 freezer), UpdateContainer,
//! StatsContainer and ListProcesses. A child module of `manager`: it reads the containers'
//! private state.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use super::{internal, state_error, Container, ContainerManager, State};
use crate::container::cgroup_stats::CgroupStats;
use crate::container::cgroups::UpdateError;
use crate::container::error::ContainerError;
use crate::container::procinfo::{self, ProcInfo};
use crate::container::security::{self, CgroupHandle};
use crate::process::{parse_signal, ProcessError};

/// How long PauseContainer / ResumeContainer wait for the freezer to settle.
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `resources` JSON UpdateContainer takes (a LinuxResources is a few hundred bytes).
pub const MAX_RESOURCES_JSON: usize = 64 * 1024;

/// runc's words for pausing (or updating) a container that is not running, and for resuming
/// one that is not paused.
const NOT_RUNNING: &str = "container not running";
const NOT_PAUSED: &str = "container not paused";

fn cgroup_error(id: &str, message: String) -> ContainerError {
    ContainerError::Cgroup {
        id: id.to_string(),
        message,
    }
}

/// Runs blocking cgroup or /proc work off the async workers.
async fn blocking<T, F>(id: &str, f: F) -> Result<T, ContainerError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(id, format!("cgroup task: {e}")))
}

/// UpdateContainer's `resources`: the JSON of an OCI `LinuxResources`.
pub fn parse_resources(json: &[u8]) -> Result<LinuxResources, ContainerError> {
    if json.is_empty() {
        return Err(ContainerError::InvalidArgument(
            "resources is empty: want the JSON of an OCI linux.resources".into(),
        ));
    }
    if json.len() > MAX_RESOURCES_JSON {
        return Err(ContainerError::InvalidArgument(format!(
            "resources: {} bytes, more than {MAX_RESOURCES_JSON}",
            json.len()
        )));
    }
    serde_json::from_slice(json)
        .map_err(|e| ContainerError::InvalidArgument(format!("resources: {e}")))
}

/// Writes cgroup.freeze and waits (asynchronously, at most `timeout`) until cgroup.events
/// says the cgroup is `frozen`.
pub async fn set_frozen_and_wait(
    id: &str,
    cgroup: &CgroupHandle,
    frozen: bool,
    timeout: Duration,
) -> Result<(), ContainerError> {
    let what = if frozen { "freezing" } else { "thawing" };
    cgroup
        .set_frozen(frozen)
        .map_err(|e| cgroup_error(id, format!("{what}: {e:#}")))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match cgroup.frozen() {
            Ok(now) if now == frozen => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(cgroup_error(id, format!("{what}: {e:#}"))),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ContainerError::Timeout {
                id: id.to_string(),
                message: format!(
                    "{what}: {} still says frozen {} after {timeout:?}",
                    cgroup.path().join("cgroup.events").display(),
                    u8::from(!frozen)
                ),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

impl ContainerManager {
    /// Created or started, and its init has not exited.
    fn is_running(&self, c: &Container) -> bool {
        matches!(c.lock().state, State::Created | State::Running)
            && self
                .processes
                .get(&c.id)
                .is_ok_and(|p| p.exit_status().is_none())
    }

    fn cgroup_of(c: &Container) -> Result<Arc<CgroupHandle>, ContainerError> {
        c.lock()
            .cgroup
            .clone()
            .ok_or_else(|| state_error(&c.id, "has no cgroup (the agent found no cgroup2)"))
    }

    /// SignalProcess with `all`: `signo` to every process of container `id`'s cgroup
    /// (SIGKILL by cgroup.kill where there is one). Without a cgroup, to its init and its execs.
    pub async fn signal_all(&self, id: &str, signo: u32) -> Result<(), ContainerError> {
        let sig = parse_signal(signo)?;
        let c = self.get(id)?;
        let (cgroup, execs) = {
            let inner = c.lock();
            (inner.cgroup.clone(), inner.execs.clone())
        };
        let Some(cgroup) = cgroup else {
            for exec_id in std::iter::once(id).chain(execs.iter().map(String::as_str)) {
                match self.processes.signal(exec_id, signo) {
                    Ok(()) | Err(ProcessError::Exited(_) | ProcessError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            tracing::info!("container {id}: {sig} to its init and execs (no cgroup)");
            return Ok(());
        };
        blocking(id, move || cgroup.signal_all(sig))
            .await?
            .map_err(|e| internal(id, format!("signalling its processes: {e:#}")))?;
        tracing::info!("container {id}: {sig} to every process of its cgroup");
        Ok(())
    }

    /// PauseContainer: freezes the container's cgroup. A freeze that does not settle in time
    /// is undone.
    pub async fn pause(&self, id: &str) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        let _one_at_a_time = c.control.lock().await;
        if c.lock().paused {
            return Err(state_error(id, "container already paused"));
        }
        if !self.is_running(&c) {
            return Err(state_error(id, NOT_RUNNING));
        }
        let cgroup = Self::cgroup_of(&c)?;
        if let Err(e) = set_frozen_and_wait(id, &cgroup, true, FREEZE_TIMEOUT).await {
            if let Err(thaw) = cgroup.set_frozen(false) {
                tracing::warn!("container {id}: thawing after a failed pause: {thaw:#}");
            }
            return Err(e);
        }
        c.lock().paused = true;
        tracing::info!("container {id} paused");
        Ok(())
    }

    /// ResumeContainer: thaws a paused container.
    pub async fn resume(&self, id: &str) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        let _one_at_a_time = c.control.lock().await;
        if !c.lock().paused {
            return Err(state_error(id, NOT_PAUSED));
        }
        let cgroup = Self::cgroup_of(&c)?;
        set_frozen_and_wait(id, &cgroup, false, FREEZE_TIMEOUT).await?;
        c.lock().paused = false;
        tracing::info!("container {id} resumed");
        Ok(())
    }

    /// UpdateContainer: `resources_json` (an OCI LinuxResources) applied to the container's
    /// cgroup, all of it checked before anything is written.
    pub async fn update(&self, id: &str, resources_json: &[u8]) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        let resources = parse_resources(resources_json)?;
        let _one_at_a_time = c.control.lock().await;
        if !self.is_running(&c) {
            return Err(state_error(id, NOT_RUNNING));
        }
        let cgroup = Self::cgroup_of(&c)?;
        let writes = blocking(id, move || security::update_cgroup(&cgroup, &resources))
            .await?
            .map_err(|e| match e {
                UpdateError::Invalid(e) => {
                    ContainerError::InvalidArgument(format!("container {id}: {e:#}"))
                }
                UpdateError::Apply(e) => cgroup_error(id, format!("updating its cgroup: {e:#}")),
            })?;
        tracing::info!("container {id}: cgroup updated ({writes} value(s) written)");
        Ok(())
    }

    /// StatsContainer: the figures of the container's cgroup.
    pub async fn stats(&self, id: &str) -> Result<CgroupStats, ContainerError> {
        let c = self.get(id)?;
        let cgroup = Self::cgroup_of(&c)?;
        blocking(id, move || cgroup.stats()).await
    }

    /// ListProcesses: the processes of the container's cgroup, in pid order.
    pub async fn processes(&self, id: &str) -> Result<Vec<ProcInfo>, ContainerError> {
        let c = self.get(id)?;
        let cgroup = Self::cgroup_of(&c)?;
        let pids = blocking(id, move || {
            let pids = cgroup.pids()?;
            Ok::<_, anyhow::Error>(procinfo::read_processes(Path::new("/proc"), &pids))
        })
        .await?;
        pids.map_err(|e| internal(id, format!("listing its processes: {e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_json_is_checked() {
        let r = parse_resources(br#"{"pids":{"limit":10},"memory":{"limit":-1}}"#).unwrap();
        assert_eq!(r.pids().as_ref().map(|p| p.limit()), Some(10));
        for (bad, want) in [
            (&b""[..], "resources is empty"),
            (&b"{\"pids\": 3}"[..], "resources: "),
            (&b"not json"[..], "resources: "),
        ] {
            let err = parse_resources(bad).unwrap_err();
            assert!(matches!(err, ContainerError::InvalidArgument(_)), "{err}");
            assert!(err.to_string().starts_with(want), "{err}");
        }
        let huge = vec![b' '; MAX_RESOURCES_JSON + 1];
        assert!(parse_resources(&huge)
            .unwrap_err()
            .to_string()
            .contains("bytes"));
    }

    /// The freezer imitated by plain files: the wait ends when cgroup.events agrees, and
    /// times out (bounded) when it never does.
    #[tokio::test]
    async fn freeze_waits_for_cgroup_events() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("cgroup.freeze"), "0").unwrap();
        std::fs::write(d.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        let cg = CgroupHandle::at(d);
        set_frozen_and_wait("c1", &cg, true, Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("cgroup.freeze")).unwrap(),
            "1"
        );

        let started = std::time::Instant::now();
        let err = set_frozen_and_wait("c1", &cg, false, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, ContainerError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("still says frozen 1"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            std::fs::read_to_string(d.join("cgroup.freeze")).unwrap(),
            "0"
        );

        // No `frozen` line (no freezer): an error, not a wait.
        std::fs::write(d.join("cgroup.events"), "populated 1\n").unwrap();
        let err = set_frozen_and_wait("c1", &cg, true, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ContainerError::Cgroup { .. }), "{err}");
        // No cgroup.freeze at all: the write fails, naming the file.
        std::fs::remove_file(d.join("cgroup.freeze")).unwrap();
        let err = set_frozen_and_wait("c1", &cg, true, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cgroup.freeze"), "{err}");
    }
}
