//! The agent's containers: CreateContainer, StartContainer, RemoveContainer and ExecProcess into
//! a container, over the process manager (the init process is the process `container_id`).
//! What acts on a live container's cgroup (kill --all, pause, resume, update, stats, the
//! process list) is in `manager_ops.rs`.
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sandpod_protocol::stream::validate_exec_id;

use super::config::{ExecConfig, HelperConfig, SecurityConfig};
use super::error::ContainerError;
use super::helper_stdio::HelperStdio;
use super::launch::{spawn_helper, HelperLaunch, EXEC_MODE, INIT_MODE};
use super::namespaces::{clone_flags, NsKind};
use super::security::{self, CgroupHandle};
use super::spec::{self, Translated};
use super::sync::{self, Msg, Received, SyncSocket};
use crate::ids::Registry;
use crate::process::{ExecSpec, Launched, ProcessError, ProcessManager, ProcessSpec, Reaper};
use crate::stdio::pty::Pty;

/// How long the helper may take to set a container (or an exec) up. Generous: under nested
/// emulation a mount can take a while.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long RemoveContainer waits for the killed init to be reaped.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// CreateContainer, as the RPC layer hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub id: String,
    pub spec_json: Vec<u8>,
    pub rootfs: String,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// The init's stream token (see ExecProcess).
    pub stream_token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    /// StartContainer failed: the init could not exec.
    Failed,
    Removing,
}

struct Inner {
    state: State,
    /// The agent's end of the init's sync socket, until StartContainer.
    sync: Option<SyncSocket>,
    /// Exec ids of the processes exec'd into the container.
    execs: Vec<String>,
    cgroup: Option<Arc<CgroupHandle>>,
    /// Frozen by PauseContainer (until ResumeContainer).
    paused: bool,
}

struct Container {
    id: String,
    /// The init process (agent's pid namespace).
    pid: i32,
    /// Namespaces an exec joins (pid included if the container has its own).
    namespaces: Vec<NsKind>,
    security: SecurityConfig,
    inner: Mutex<Inner>,
    /// Held across a cgroup change that takes a while (pause, resume, update): one at a time.
    control: tokio::sync::Mutex<()>,
}

impl Container {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct ContainerManager {
    processes: ProcessManager,
    containers: Registry<Container>,
}

/// Turns the helper's failure into a spawn error (the RPC layer names the container).
fn helper_failed(exec_id: &str, message: impl Into<String>) -> ProcessError {
    ProcessError::Spawn {
        exec_id: exec_id.to_string(),
        message: message.into(),
    }
}

/// Reads the helper's messages until `Ready` (collecting the pty); with `until_eof`, then on to
/// EOF (the exec happened). An `Error` or an early EOF fails with the helper's message.
fn await_helper(
    exec_id: &str,
    sync: &SyncSocket,
    until_eof: bool,
) -> Result<Option<Pty>, ProcessError> {
    let mut pty = None;
    let mut ready = false;
    loop {
        let received = sync.recv().map_err(|e| {
            helper_failed(exec_id, format!("waiting for the container helper: {e}"))
        })?;
        match received {
            Received::Msg(Msg::Pty, Some(fd)) => {
                pty = Some(Pty::from_master(fd).map_err(|e| {
                    helper_failed(exec_id, format!("taking over the container's pty: {e}"))
                })?)
            }
            Received::Msg(Msg::Ready, _) if !ready => {
                ready = true;
                if !until_eof {
                    return Ok(pty);
                }
            }
            Received::Msg(Msg::Error { message }, _) => {
                return Err(helper_failed(exec_id, message))
            }
            Received::Eof if ready => return Ok(pty),
            Received::Eof => {
                return Err(helper_failed(
                    exec_id,
                    "the container helper exited during setup",
                ))
            }
            Received::Msg(other, _) => {
                return Err(helper_failed(exec_id, format!("unexpected {other:?}")))
            }
        }
    }
}

/// What a helper launch needs besides its config.
struct HelperStart {
    mode: &'static str,
    flags: nix::sched::CloneFlags,
    pid_ns: Option<File>,
    container_id: String,
    resources: Option<oci_spec::runtime::LinuxResources>,
    /// An exec's container cgroup (the process joins it).
    cgroup: Option<Arc<CgroupHandle>>,
}

/// Clones the helper, puts it in the cgroup, sends the config and waits for it (blocking).
fn run_helper(
    reaper: Reaper,
    spec: &ExecSpec,
    start: HelperStart,
    config: HelperConfig,
    until_eof: bool,
) -> Result<(Launched, (SyncSocket, Option<CgroupHandle>)), ProcessError> {
    let id = &spec.exec_id;
    let internal =
        |what: &str, e: &dyn std::fmt::Display| helper_failed(id, format!("{what}: {e}"));
    let (agent_end, helper_end) = sync::pair().map_err(|e| internal("socketpair", &e))?;
    let stdio = HelperStdio::new(spec.process.terminal, spec.stdin, spec.stdout, spec.stderr)
        .map_err(|e| internal("stdio pipes", &e))?;
    let launch = HelperLaunch {
        mode: start.mode,
        flags: start.flags,
        pid_ns: start.pid_ns,
        stdio: stdio.child,
        sync: helper_end,
    };
    let began = Instant::now();
    let (pid, exit) =
        spawn_helper(reaper, launch).map_err(|e| internal("starting the container helper", &e))?;
    let spawned = began.elapsed();
    // Joined first, so that a failure after it removes the cgroup again.
    let mut cgroup = None;
    let setup = || -> Result<_, ProcessError> {
        cgroup = security::join_cgroup(
            &start.container_id,
            start.resources.as_ref(),
            start.cgroup.as_deref(),
            pid,
        )
        .map_err(|e| internal("cgroup", &format!("{e:#}")))?;
        let joined = began.elapsed();
        agent_end
            .set_timeout(Some(SETUP_TIMEOUT))
            .map_err(|e| internal("sync socket", &e))?;
        agent_end
            .send(&Msg::Config(config), None)
            .map_err(|e| internal("sending the config", &e))?;
        let pty = await_helper(id, &agent_end, until_eof)?;
        tracing::debug!(
            spawn_ms = spawned.as_millis(),
            cgroup_ms = (joined - spawned).as_millis(),
            setup_ms = (began.elapsed() - joined).as_millis(),
            "{id}: the container helper is ready"
        );
        Ok(pty)
    };
    match setup() {
        Ok(pty) => Ok((
            Launched {
                pid,
                exit,
                stdio: stdio.parent,
                pty,
            },
            (agent_end, cgroup),
        )),
        Err(e) => {
            let _ = reaper.signal(pid, Signal::SIGKILL);
            // The killed helper leaves the cgroup as it exits; remove waits for that.
            if let Err(rm) = security::remove_cgroup(cgroup.take().map(Arc::new)) {
                tracing::warn!("{id}: removing the cgroup of a failed setup: {rm:#}");
            }
            Err(e)
        }
    }
}

impl ContainerManager {
    pub fn new(processes: ProcessManager) -> Self {
        ContainerManager {
            processes,
            containers: Registry::default(),
        }
    }

    fn get(&self, id: &str) -> Result<Arc<Container>, ContainerError> {
        self.containers
            .get(id)
            .ok_or_else(|| ContainerError::NotFound(id.to_string()))
    }

    /// CreateContainer: sets the container up, its init blocked before exec; returns its pid.
    pub async fn create(&self, req: CreateRequest) -> Result<i32, ContainerError> {
        let id = req.id.clone();
        validate_exec_id(&id).map_err(|e| ContainerError::InvalidArgument(e.to_string()))?;
        let rootfs = Path::new(&req.rootfs);
        let tr = spec::translate(&id, spec::parse(&req.spec_json)?, rootfs)?;
        if !rootfs.is_dir() {
            return Err(ContainerError::InvalidArgument(format!(
                "rootfs {:?} is not a directory",
                req.rootfs
            )));
        }
        let reservation = self
            .containers
            .reserve(&id)
            .map_err(|_| ContainerError::AlreadyExists(id.clone()))?;
        let Translated {
            init,
            join_pid_ns,
            spec,
        } = tr;
        let pid_ns = join_pid_ns
            .map(|p| {
                File::open(&p).map_err(|e| {
                    ContainerError::InvalidArgument(format!("pid namespace {}: {e}", p.display()))
                })
            })
            .transpose()?;
        let has_pid_ns = pid_ns.is_some() || init.new_namespaces.contains(&NsKind::Pid);
        let mut namespaces: Vec<NsKind> = init.new_namespaces.clone();
        namespaces.extend(init.join_namespaces.iter().map(|j| j.kind));
        if has_pid_ns && !namespaces.contains(&NsKind::Pid) {
            namespaces.push(NsKind::Pid);
        }
        let security_cfg = init.security.clone();
        let exec_spec = exec_spec_of(&id, &init.process, &req);
        let start = HelperStart {
            mode: INIT_MODE,
            flags: clone_flags(&init.new_namespaces),
            pid_ns,
            container_id: id.clone(),
            resources: spec.linux().as_ref().and_then(|l| l.resources().clone()),
            cgroup: None,
        };
        let reaper = self.processes.reaper();
        let config = HelperConfig::Init(Box::new(init));
        let (pid, (sync, cgroup)) = self
            .processes
            .launch(exec_spec, move |spec| {
                run_helper(reaper, spec, start, config, false)
            })
            .await
            .map_err(|e| setup_error(&id, e))?;
        let container = Container {
            id: id.clone(),
            pid,
            namespaces,
            security: security_cfg,
            inner: Mutex::new(Inner {
                state: State::Created,
                sync: Some(sync),
                execs: Vec::new(),
                cgroup: cgroup.map(Arc::new),
                paused: false,
            }),
            control: tokio::sync::Mutex::new(()),
        };
        reservation.fill(Arc::new(container));
        tracing::info!(pid, "container {id} created");
        Ok(pid)
    }

    /// StartContainer: lets the init exec; fails with the exec's error.
    pub async fn start(&self, id: &str) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        let sync = {
            let mut inner = c.lock();
            if inner.paused {
                return Err(state_error(id, "cannot start a paused container"));
            }
            match inner.state {
                State::Created => inner.sync.take(),
                State::Running => return Err(state_error(id, "already started")),
                State::Failed => return Err(state_error(id, "its start failed before")),
                State::Removing => return Err(state_error(id, "is being removed")),
            }
        }
        .ok_or_else(|| state_error(id, "is being started"))?;
        let id_owned = id.to_string();
        let result = tokio::task::spawn_blocking(move || -> Result<(), ContainerError> {
            let fail = |message: String| ContainerError::Exec {
                id: id_owned.clone(),
                message,
            };
            sync.send(&Msg::Start, None)
                .map_err(|e| fail(format!("the init process is gone ({e})")))?;
            let received = sync
                .recv()
                .map_err(|e| fail(format!("waiting for the exec: {e}")))?;
            match received {
                // Close-on-exec: the init's end closes exactly when the exec succeeds.
                Received::Eof => Ok(()),
                Received::Msg(Msg::Error { message }, _) => Err(fail(message)),
                Received::Msg(other, _) => Err(fail(format!("unexpected {other:?}"))),
            }
        })
        .await
        .map_err(|e| internal(id, format!("start task: {e}")))?;
        c.lock().state = if result.is_ok() {
            State::Running
        } else {
            State::Failed
        };
        match &result {
            Ok(()) => tracing::info!(pid = c.pid, "container {id} started"),
            Err(e) => tracing::warn!("{e}"),
        }
        result
    }

    /// ExecProcess with a container_id: runs `spec` in the container.
    pub async fn exec(&self, container_id: &str, spec: ExecSpec) -> Result<i32, ContainerError> {
        let c = self.get(container_id)?;
        {
            let inner = c.lock();
            if !matches!(inner.state, State::Created | State::Running) {
                return Err(state_error(container_id, "is not running"));
            }
            // Its helper would join the frozen cgroup and hang until the setup timeout.
            if inner.paused {
                return Err(state_error(
                    container_id,
                    "cannot exec in a paused container",
                ));
            }
        }
        match self.processes.get(container_id) {
            Ok(init) if init.exit_status().is_none() => {}
            _ => return Err(state_error(container_id, "its init process has exited")),
        }
        spec.process
            .check()
            .map_err(ContainerError::InvalidArgument)?;
        let pid_ns = if c.namespaces.contains(&NsKind::Pid) {
            let p = format!("/proc/{}/ns/pid", c.pid);
            Some(File::open(&p).map_err(|e| internal(container_id, format!("{p}: {e}")))?)
        } else {
            None
        };
        let config = HelperConfig::Exec(Box::new(ExecConfig {
            exec_id: spec.exec_id.clone(),
            init_pid: c.pid,
            namespaces: c.namespaces.clone(),
            process: spec.process.clone(),
            security: c.security.clone(),
        }));
        let start = HelperStart {
            mode: EXEC_MODE,
            flags: nix::sched::CloneFlags::empty(),
            pid_ns,
            container_id: container_id.to_string(),
            resources: None,
            cgroup: c.lock().cgroup.clone(),
        };
        let reaper = self.processes.reaper();
        let exec_id = spec.exec_id.clone();
        let (pid, _) = self
            .processes
            .launch(spec, move |spec| {
                run_helper(reaper, spec, start, config, true)
            })
            .await
            .map_err(|e| setup_error(container_id, e))?;
        c.lock().execs.push(exec_id);
        Ok(pid)
    }

    /// WaitProcess of `exec_id`: did it run as a container's init whose cgroup saw an OOM kill?
    pub fn oom_killed(&self, exec_id: &str) -> bool {
        self.get(exec_id)
            .map(|c| security::oom_killed(c.lock().cgroup.as_deref()))
            .unwrap_or(false)
    }

    /// RemoveContainer: kills what is left, waits for the init, forgets the container. Its
    /// mounts live in its own mount namespace, which goes with its last process.
    pub async fn remove(&self, id: &str) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        let execs = {
            let mut inner = c.lock();
            if inner.state == State::Removing {
                return Err(state_error(id, "is being removed"));
            }
            inner.state = State::Removing;
            // Unblocks an init still waiting for StartContainer (it exits on EOF).
            inner.sync = None;
            std::mem::take(&mut inner.execs)
        };
        let has_pid_ns = c.namespaces.contains(&NsKind::Pid);
        // cgroup.kill reaches every process at once; without it, with a pid namespace the kernel
        // kills every process in it when its init dies, else each exec is signalled.
        if !security::kill_all(c.lock().cgroup.as_deref()) && !has_pid_ns {
            for exec_id in &execs {
                let _ = self.processes.signal(exec_id, Signal::SIGKILL as u32);
            }
        }
        if let Ok(init) = self.processes.get(id) {
            let _ = self.processes.signal(id, Signal::SIGKILL as u32);
            if tokio::time::timeout(KILL_TIMEOUT, init.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    pid = c.pid,
                    "container {id}: init not reaped {KILL_TIMEOUT:?} after SIGKILL"
                );
            }
            self.processes.forget(&init);
        }
        let cgroup = c.lock().cgroup.take();
        if let Err(e) = security::remove_cgroup(cgroup) {
            tracing::warn!("container {id}: removing its cgroup: {e:#}");
        }
        self.containers.remove(id);
        tracing::info!("container {} removed", c.id);
        Ok(())
    }

    /// Removes every container (DestroySandbox).
    pub async fn remove_all(&self) {
        for (id, _) in self.containers.all() {
            if let Err(e) = self.remove(&id).await {
                tracing::warn!("{e}");
            }
        }
    }
}

fn state_error(id: &str, message: &str) -> ContainerError {
    ContainerError::State {
        id: id.to_string(),
        message: message.to_string(),
    }
}

fn internal(id: &str, message: String) -> ContainerError {
    ContainerError::Internal {
        id: id.to_string(),
        message,
    }
}

/// The helper's setup errors name the container; the others stay process errors.
fn setup_error(id: &str, e: ProcessError) -> ContainerError {
    match e {
        ProcessError::Spawn { message, .. } => ContainerError::Setup {
            id: id.to_string(),
            message,
        },
        other => ContainerError::Process(other),
    }
}

/// The process-table view of a container's init.
fn exec_spec_of(id: &str, process: &ProcessSpec, req: &CreateRequest) -> ExecSpec {
    ExecSpec {
        exec_id: id.to_string(),
        process: process.clone(),
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
        stream_token: req.stream_token.clone(),
    }
}

#[path = "manager_ops.rs"]
mod ops;

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
