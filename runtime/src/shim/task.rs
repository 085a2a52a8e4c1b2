//! The tasks of one shim: the containers of its pod, all in the pod's VM, and their processes.
//! Create boots the VM for a pod's first (sandbox or standalone) container, mounts the task's
//! rootfs on the host and shares it with the VM, and creates the container through the agent
//! with its stdio relayed ([`super::io`]); a waiter per process records its exit
//! ([`super::process`]) and publishes TaskExit. Deleting the pod's last container stops the VM.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use oci_spec::runtime::Process as OciProcess;
use sandpod_protocol::ErrorChain;
use thiserror::Error;
use tokio::sync::Mutex;

use super::create::create_in;
use super::events::Events;
use super::io::{self, StdioPaths};
use super::pod::{self, PodRole};
use super::process::{spawn_waiter, Exit, Proc, ProcStatus, UNKNOWN_EXIT};
use super::rootfs;
use crate::agent_client::{AgentClient, AgentError, StreamToken};
use crate::bundle::Bundle;
use crate::config::Config;
use crate::sandbox::{validate_id, Sandbox};

/// How long Delete of a created (never started) task waits for its init to be reaped.
const REMOVE_WAIT: Duration = Duration::from_secs(10);

/// A task call's failure, with the class containerd maps to its error kinds.
#[derive(Debug, Error)]
pub enum TaskError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{}", ErrorChain(.0.as_ref() as &dyn std::error::Error))]
    Other(#[from] anyhow::Error),
}

impl From<AgentError> for TaskError {
    fn from(e: AgentError) -> Self {
        match e.code() {
            Some(ttrpc::Code::NOT_FOUND) => TaskError::NotFound(ErrorChain(&e).to_string()),
            _ => TaskError::Other(e.into()),
        }
    }
}

pub(super) type Result<T> = std::result::Result<T, TaskError>;

/// What Create is given (CreateTaskRequest's fields the shim uses).
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: String,
    /// The rootfs mounts: (type, source, options).
    pub rootfs: Vec<(String, String, Vec<String>)>,
    pub stdio: StdioPaths,
    /// The config file the runtime options name (CRI's `ConfigPath`), used by a VM's boot.
    pub config_path: Option<PathBuf>,
}

/// A container of the pod.
struct Container {
    bundle: PathBuf,
    /// Its rootfs was mounted by the shim (unmounted on delete).
    rootfs_mounted: bool,
    init: Arc<Proc>,
    execs: HashMap<String, Arc<Proc>>,
    /// The specs of execs added but not started.
    pending: HashMap<String, OciProcess>,
}

#[derive(Default)]
struct Pod {
    sandbox: Option<Sandbox>,
    containers: HashMap<String, Container>,
}

/// The shim's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The namespace's state root (sandbox state directories).
    pub root: PathBuf,
    pub config: Config,
    pub debug: bool,
}

/// The tasks of this shim.
pub struct Tasks {
    settings: Settings,
    events: Arc<Events>,
    pod: Mutex<Pod>,
}

/// The agent's id of exec `exec_id` of container `id`: `<id>.<exec_id>` when that is a valid
/// agent id, else `<id>.exec-<random>`.
pub fn agent_exec_id(id: &str, exec_id: &str) -> anyhow::Result<String> {
    let plain = format!("{id}.{exec_id}");
    if sandpod_protocol::stream::validate_exec_id(&plain).is_ok() {
        return Ok(plain);
    }
    let token = StreamToken::generate().context("drawing an exec id")?;
    Ok(format!("{id}.exec-{}", &token.to_string()[..16]))
}

impl Tasks {
    pub fn new(settings: Settings, events: Events) -> Tasks {
        Tasks {
            settings,
            events: Arc::new(events),
            pod: Mutex::new(Pod::default()),
        }
    }

    /// The process `exec_id` ("" for the init) of container `id`, and the agent.
    async fn lookup(&self, id: &str, exec_id: &str) -> Result<(Arc<Proc>, AgentClient)> {
        let pod = self.pod.lock().await;
        let (_, p) = find_proc(&pod, id, exec_id)?;
        let client = pod
            .sandbox
            .as_ref()
            .map(|s| s.client.clone())
            .ok_or_else(|| TaskError::FailedPrecondition("the pod's VM is gone".into()))?;
        Ok((p, client))
    }

    /// Whether this shim serves no container any more.
    pub async fn is_empty(&self) -> bool {
        self.pod.lock().await.containers.is_empty()
    }

    /// The init's pid of container `id` (0 if unknown).
    pub async fn init_pid(&self, id: &str) -> u32 {
        let pod = self.pod.lock().await;
        pod.containers.get(id).map_or(0, |c| c.init.pid())
    }

    pub async fn create(&self, req: CreateRequest) -> Result<u32> {
        let mut pod = self.pod.lock().await;
        if pod.containers.contains_key(&req.id) {
            return Err(TaskError::AlreadyExists(format!(
                "container {} already exists",
                req.id
            )));
        }
        validate_id(&req.id).map_err(anyhow::Error::from)?;
        let bundle_dir = PathBuf::from(&req.bundle);
        let target = bundle_dir.join("rootfs");
        let mut mounted = false;
        for (fstype, source, options) in &req.rootfs {
            let m = rootfs::parse(fstype, source, options)
                .map_err(|e| TaskError::Other(e.into()))
                .and_then(|m| {
                    rootfs::mount_one(&m, &target).map_err(|e| TaskError::Other(e.into()))
                });
            if let Err(e) = m {
                if mounted {
                    let _ = rootfs::unmount(&target);
                }
                return Err(e);
            }
            mounted = true;
        }
        let r = self.create_mounted(&mut pod, &req, mounted).await;
        if r.is_err() && mounted {
            if let Err(e) = rootfs::unmount(&target) {
                tracing::error!("{}", ErrorChain(&e));
            }
        }
        r
    }

    async fn create_mounted(
        &self,
        pod: &mut Pod,
        req: &CreateRequest,
        mounted: bool,
    ) -> Result<u32> {
        let mut bundle = Bundle::load_unchecked_namespaces(std::path::Path::new(&req.bundle))
            .map_err(anyhow::Error::from)?;
        let annotations: HashMap<String, String> = bundle
            .spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let role = PodRole::classify(&annotations, &req.id);
        match &role {
            // The pod's namespaces are its sandbox container's, in the guest.
            PodRole::Member { sandbox_id } => {
                let sandbox_pid = pod
                    .containers
                    .get(sandbox_id.as_str())
                    .map(|c| c.init.pid());
                let Some(sandbox_pid) = sandbox_pid.filter(|p| *p > 0) else {
                    return Err(TaskError::FailedPrecondition(format!(
                        "the sandbox container {sandbox_id} of container {} is not running in this shim",
                        req.id
                    )));
                };
                pod::join_sandbox_namespaces(&mut bundle.spec, sandbox_pid)
                    .map_err(TaskError::FailedPrecondition)?;
            }
            PodRole::Sandbox | PodRole::Standalone => {
                bundle.check_namespaces().map_err(anyhow::Error::from)?
            }
        }
        let booted_here = pod.sandbox.is_none();
        if booted_here {
            if !role.boots_vm() {
                return Err(TaskError::FailedPrecondition(format!(
                    "the sandbox {} of container {} is not served by this shim",
                    role.sandbox_id(&req.id),
                    req.id
                )));
            }
            let config = match &req.config_path {
                Some(p) => Config::read(p).map_err(anyhow::Error::from)?,
                None => self.settings.config.clone(),
            };
            match super::vm::boot(&self.settings, &req.id, &bundle, &config).await {
                Ok(sb) => pod.sandbox = Some(sb),
                Err(e) => {
                    pod::remove_root_if_empty(&self.settings.root);
                    return Err(e.into());
                }
            }
        }
        let sb = pod.sandbox.as_ref().context("no sandbox")?;
        match create_in(sb, req, &bundle).await {
            Ok((proc, output)) => {
                let pid = proc.pid();
                spawn_waiter(
                    sb.client.clone(),
                    req.id.clone(),
                    proc.clone(),
                    output,
                    self.events.clone(),
                );
                pod.containers.insert(
                    req.id.clone(),
                    Container {
                        bundle: bundle.dir.clone(),
                        rootfs_mounted: mounted,
                        init: proc,
                        execs: HashMap::new(),
                        pending: HashMap::new(),
                    },
                );
                self.events
                    .create(&req.id, &req.bundle, &req.stdio, pid)
                    .await;
                Ok(pid)
            }
            Err(e) => {
                if booted_here {
                    if let Some(sb) = pod.sandbox.take() {
                        if let Err(ce) = sb.destroy().await {
                            tracing::error!("cleaning up after a failed create: {ce:#}");
                        }
                        pod::remove_root_if_empty(&self.settings.root);
                    }
                }
                Err(e)
            }
        }
    }

    pub async fn start(&self, id: &str, exec_id: &str) -> Result<u32> {
        if !exec_id.is_empty() {
            return self.start_exec(id, exec_id).await;
        }
        let (proc, client) = self.lookup(id, "").await?;
        if proc.status() != ProcStatus::Created {
            return Err(TaskError::FailedPrecondition(format!(
                "container {id} is not in the created state"
            )));
        }
        client
            .start_container(id)
            .await
            .context("starting the container")?;
        proc.set_status(ProcStatus::Running);
        let pid = proc.pid();
        self.events.start(id, pid).await;
        Ok(pid)
    }

    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        stdio: StdioPaths,
        spec_json: &[u8],
    ) -> Result<()> {
        let process: OciProcess =
            serde_json::from_slice(spec_json).context("the exec's spec is not an OCI process")?;
        {
            let mut pod = self.pod.lock().await;
            let c = pod
                .containers
                .get_mut(id)
                .ok_or_else(|| TaskError::NotFound(format!("container {id} not found")))?;
            if c.execs.contains_key(exec_id) {
                return Err(TaskError::AlreadyExists(format!(
                    "exec {exec_id} of {id} already exists"
                )));
            }
            if c.init.status() == ProcStatus::Stopped {
                return Err(TaskError::FailedPrecondition(format!(
                    "container {id} is stopped"
                )));
            }
            let agent_id = agent_exec_id(id, exec_id)?;
            c.execs.insert(
                exec_id.to_string(),
                Arc::new(Proc::new(exec_id, &agent_id, stdio)),
            );
            c.pending.insert(exec_id.to_string(), process);
        }
        self.events.exec_added(id, exec_id).await;
        Ok(())
    }

    async fn start_exec(&self, id: &str, exec_id: &str) -> Result<u32> {
        let (proc, client, spec) = {
            let mut pod = self.pod.lock().await;
            let client = pod.sandbox.as_ref().map(|s| s.client.clone());
            let c = pod
                .containers
                .get_mut(id)
                .ok_or_else(|| TaskError::NotFound(format!("container {id} not found")))?;
            let proc =
                c.execs.get(exec_id).cloned().ok_or_else(|| {
                    TaskError::NotFound(format!("exec {exec_id} of {id} not found"))
                })?;
            let spec = c.pending.remove(exec_id).ok_or_else(|| {
                TaskError::FailedPrecondition(format!("exec {exec_id} was already started"))
            })?;
            (
                proc,
                client
                    .ok_or_else(|| TaskError::FailedPrecondition("the pod's VM is gone".into()))?,
                spec,
            )
        };
        let started = async {
            let mut req = crate::container::exec::request(id, &proc.agent_id, &spec)?;
            let streams = proc.stdio.streams();
            req.terminal = proc.stdio.terminal;
            req.stdin = streams.stdin;
            req.stdout = streams.stdout;
            req.stderr = streams.stderr;
            let token = StreamToken::generate().context("drawing a stream token")?;
            req.stream_token = token.to_string();
            let relay = io::start(&client, &proc.agent_id, &proc.stdio, &token).await?;
            let pid = client
                .exec_process(&req)
                .await
                .context("starting the process")?;
            anyhow::Ok((pid, relay))
        }
        .await;
        let (pid, relay) = match started {
            Ok(x) => x,
            Err(e) => {
                // Whoever waits for it is told it ended.
                proc.exited(UNKNOWN_EXIT, None).await;
                return Err(e.into());
            }
        };
        proc.set_pid(pid);
        proc.set_status(ProcStatus::Running);
        let output = proc.attach(relay);
        spawn_waiter(client, id.to_string(), proc, output, self.events.clone());
        self.events.exec_started(id, exec_id, pid).await;
        Ok(pid)
    }

    pub async fn state(&self, id: &str, exec_id: &str) -> Result<(Arc<Proc>, PathBuf)> {
        let pod = self.pod.lock().await;
        let (c, p) = find_proc(&pod, id, exec_id)?;
        Ok((p, c.bundle.clone()))
    }

    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<Exit> {
        let (proc, _) = self.state(id, exec_id).await?;
        Ok(proc.wait().await)
    }

    pub async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let (proc, client) = self.lookup(id, exec_id).await?;
        match proc.status() {
            ProcStatus::Stopped => {
                return Err(TaskError::NotFound("process already finished".into()))
            }
            ProcStatus::Created if !exec_id.is_empty() => {
                return Err(TaskError::FailedPrecondition(format!(
                    "exec {exec_id} is not started"
                )))
            }
            _ => {}
        }
        if all && exec_id.is_empty() {
            client.signal_container_all(id, signal).await?;
        } else {
            client.signal_process(&proc.agent_id, signal).await?;
        }
        Ok(())
    }

    pub async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        let (proc, _) = self.state(id, exec_id).await?;
        proc.close_stdin();
        Ok(())
    }

    pub async fn resize(&self, id: &str, exec_id: &str, cols: u32, rows: u32) -> Result<()> {
        let (proc, client) = self.lookup(id, exec_id).await?;
        if !proc.stdio.terminal {
            return Ok(());
        }
        client.resize_terminal(&proc.agent_id, rows, cols).await?;
        Ok(())
    }

    pub async fn pause(&self, id: &str) -> Result<()> {
        let (proc, client) = self.lookup(id, "").await?;
        client.pause_container(id).await?;
        proc.set_status(ProcStatus::Paused);
        self.events.paused(id).await;
        Ok(())
    }

    pub async fn resume(&self, id: &str) -> Result<()> {
        let (proc, client) = self.lookup(id, "").await?;
        client.resume_container(id).await?;
        proc.set_status(ProcStatus::Running);
        self.events.resumed(id).await;
        Ok(())
    }

    pub async fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let (_, client) = self.lookup(id, "").await?;
        Ok(client
            .list_processes(id)
            .await?
            .into_iter()
            .map(|p| p.pid)
            .collect())
    }

    pub async fn update(&self, id: &str, resources_json: Vec<u8>) -> Result<()> {
        let (_, client) = self.lookup(id, "").await?;
        client.update_container(id, resources_json).await?;
        Ok(())
    }

    pub async fn stats(
        &self,
        id: &str,
    ) -> Result<crate::agent_client::proto::StatsContainerResponse> {
        let (_, client) = self.lookup(id, "").await?;
        Ok(client.stats_container(id).await?)
    }

    /// Deletes an exec (stopped or never started) or a container (not running); the pod's last
    /// container takes the VM with it. Returns the process's pid and exit.
    pub async fn delete(&self, id: &str, exec_id: &str) -> Result<(u32, Exit)> {
        let mut pod = self.pod.lock().await;
        let c = pod
            .containers
            .get_mut(id)
            .ok_or_else(|| TaskError::NotFound(format!("container {id} not found")))?;
        if !exec_id.is_empty() {
            let p = c
                .execs
                .get(exec_id)
                .ok_or_else(|| TaskError::NotFound(format!("exec {exec_id} of {id} not found")))?;
            let exit = match (p.status(), p.exit()) {
                (ProcStatus::Created, _) => Exit {
                    status: 0,
                    at: std::time::SystemTime::now(),
                },
                (_, Some(e)) => e,
                _ => {
                    return Err(TaskError::FailedPrecondition(format!(
                        "exec {exec_id} of {id} is running"
                    )))
                }
            };
            let pid = p.pid();
            c.execs.remove(exec_id);
            c.pending.remove(exec_id);
            return Ok((pid, exit));
        }
        let init = c.init.clone();
        if matches!(init.status(), ProcStatus::Running | ProcStatus::Paused) {
            return Err(TaskError::FailedPrecondition(format!(
                "cannot delete container {id}: it is running"
            )));
        }
        let (rootfs_mounted, bundle) = (c.rootfs_mounted, c.bundle.clone());
        if let Some(sb) = pod.sandbox.as_ref() {
            if let Err(e) = sb.client.remove_container(id).await {
                tracing::warn!("removing {id} in the guest: {}", ErrorChain(&e));
            }
            if let Err(e) = crate::sandbox::share::remove_container(&sb.layout, id) {
                tracing::warn!("unsharing {id}: {}", ErrorChain(&e));
            }
        }
        let exit = match init.exit() {
            Some(e) => e,
            None => tokio::time::timeout(REMOVE_WAIT, init.wait())
                .await
                .unwrap_or(Exit {
                    status: UNKNOWN_EXIT,
                    at: std::time::SystemTime::now(),
                }),
        };
        if rootfs_mounted {
            if let Err(e) = rootfs::unmount(&bundle.join("rootfs")) {
                tracing::error!("{}", ErrorChain(&e));
            }
        }
        pod.containers.remove(id);
        if pod.containers.is_empty() {
            self.stop_vm(&mut pod).await;
        }
        drop(pod);
        let pid = init.pid();
        self.events.delete(id, pid, exit).await;
        Ok((pid, exit))
    }

    async fn stop_vm(&self, pod: &mut Pod) {
        if let Some(sb) = pod.sandbox.take() {
            tracing::info!(sandbox = sb.state.id, "stopping the pod's VM");
            if let Err(e) = sb.destroy().await {
                tracing::error!("stopping the pod's VM: {e:#}");
            }
            pod::remove_root_if_empty(&self.settings.root);
        }
    }

    /// Shutdown: true if the shim may exit (no container left; the VM is stopped).
    pub async fn shutdown(&self) -> bool {
        let mut pod = self.pod.lock().await;
        if !pod.containers.is_empty() {
            return false;
        }
        self.stop_vm(&mut pod).await;
        true
    }
}

/// Container `id` of the pod and its process `exec_id` ("" for the init).
fn find_proc<'a>(pod: &'a Pod, id: &str, exec_id: &str) -> Result<(&'a Container, Arc<Proc>)> {
    let c = pod
        .containers
        .get(id)
        .ok_or_else(|| TaskError::NotFound(format!("container {id} not found")))?;
    let p = if exec_id.is_empty() {
        c.init.clone()
    } else {
        c.execs
            .get(exec_id)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(format!("exec {exec_id} of {id} not found")))?
    };
    Ok((c, p))
}
