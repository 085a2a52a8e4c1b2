//! The `sandpod.agent.v1.Agent` service.
use async_trait::async_trait;
use sandpod_protocol::agent::*;
use sandpod_protocol::agent_ttrpc::Agent;
use sandpod_protocol::LogToken;
use ttrpc::r#async::TtrpcContext;
use ttrpc::Code;

use super::convert;
use super::status::status;
use crate::clone::CloneGate;
use crate::container::{ContainerManager, CreateRequest};
use crate::guest::info::GuestInfo;
use crate::logging::LogAuth;
use crate::network;
use crate::process::ProcessManager;
use crate::sandbox::Sandbox;

/// Implements the API over the process manager and the sandbox.
#[derive(Clone)]
pub struct AgentService {
    pub processes: ProcessManager,
    pub containers: ContainerManager,
    pub sandbox: Sandbox,
    /// Where CreateSandbox's log token goes (the log forwarder).
    pub log_auth: LogAuth,
    /// The guest's line to the host for Docker's DNS ([`crate::dns_relay`]), started when
    /// CreateSandbox asks; None in host test mode (nothing is relayed there).
    pub dns_relay: Option<crate::transport::Transport>,
    /// Whether this guest is a clone of a template still waiting for ResumeClone: then every
    /// RPC but Health and ResumeClone is refused (each handler starts with [`Self::gate`]).
    pub clone_gate: CloneGate,
}

impl AgentService {
    /// The first line of every handler but Health and ResumeClone: FAILED_PRECONDITION while
    /// the guest is a clone that has not been reseeded.
    fn gate(&self) -> ttrpc::Result<()> {
        Ok(self.clone_gate.check()?)
    }
}

/// Runs `fut` as a task of its own and waits for it: a call that the client abandons (or whose
/// deadline passes) drops only the wait, never an ExecProcess or a mount half-way.
async fn detached<T, F>(fut: F) -> ttrpc::Result<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = ttrpc::Result<T>> + Send + 'static,
{
    tokio::spawn(fut)
        .await
        .map_err(|e| status(Code::INTERNAL, format!("agent task failed: {e}")))?
}

#[async_trait]
impl Agent for AgentService {
    async fn health(&self, _: &TtrpcContext, _: HealthRequest) -> ttrpc::Result<HealthResponse> {
        let mut resp = HealthResponse::new();
        resp.ok = true;
        resp.version = crate::VERSION.to_string();
        Ok(resp)
    }

    async fn guest_details(
        &self,
        _: &TtrpcContext,
        _: GuestDetailsRequest,
    ) -> ttrpc::Result<GuestDetailsResponse> {
        self.gate()?;
        let info = GuestInfo::read().map_err(|e| status(Code::INTERNAL, format!("{e:#}")))?;
        let uts = nix::sys::utsname::uname()
            .map_err(|e| status(Code::INTERNAL, format!("uname: {e}")))?;
        let mut resp = GuestDetailsResponse::new();
        resp.kernel_release = uts.release().to_string_lossy().into_owned();
        resp.cpus = info.cpus as u32;
        resp.mem_total_kib = info.mem_total_kib;
        Ok(resp)
    }

    async fn create_sandbox(
        &self,
        _: &TtrpcContext,
        req: CreateSandboxRequest,
    ) -> ttrpc::Result<CreateSandboxResponse> {
        self.gate()?;
        let sandbox = self.sandbox.clone();
        let log_token = match req.log_token.as_str() {
            "" => None,
            t => Some(
                LogToken::parse(t)
                    .map_err(|e| status(Code::INVALID_ARGUMENT, format!("log_token: {e}")))?,
            ),
        };
        let relay = match (req.dns_relay, &self.dns_relay) {
            (true, Some(t)) => Some(t.clone()),
            (true, None) => {
                tracing::info!("test mode: Docker's DNS is not relayed");
                None
            }
            (false, _) => None,
        };
        let spec = convert::sandbox_spec(req);
        let log_auth = self.log_auth.clone();
        let clone_gate = self.clone_gate.clone();
        detached(async move {
            tokio::task::spawn_blocking(move || sandbox.create(&spec))
                .await
                .map_err(|e| status(Code::INTERNAL, e.to_string()))??;
            if let Some(t) = log_token {
                log_auth
                    .set(t)
                    .map_err(|e| status(Code::FAILED_PRECONDITION, e))?;
            }
            // (After the create succeeded: CreateSandbox succeeds once per sandbox.)
            if let Some(t) = relay {
                crate::dns_relay::spawn(t);
            }
            // (A clone reports 0s, "not known": its recorded times are the template's boot.)
            let t = clone_gate.boot_times();
            let mut resp = CreateSandboxResponse::new();
            resp.boot_ms_init = t.init_ms;
            resp.switch_root_ms = t.switch_root_ms;
            resp.boot_ms_ready = t.ready_ms;
            resp.boot_ms_serving = t.serving_ms;
            Ok(resp)
        })
        .await
    }

    async fn destroy_sandbox(
        &self,
        _: &TtrpcContext,
        _: DestroySandboxRequest,
    ) -> ttrpc::Result<DestroySandboxResponse> {
        self.gate()?;
        self.containers.remove_all().await;
        let killed = self.processes.kill_all();
        if self.sandbox.is_guest() {
            // Also what the agent did not start itself (their children, daemons). PID 1 and the
            // caller are spared by kill(-1).
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(-1),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        tracing::info!("destroying the sandbox: killed {killed} process(es)");
        let sandbox = self.sandbox.clone();
        tokio::task::spawn_blocking(move || sandbox.destroy())
            .await
            .map_err(|e| status(Code::INTERNAL, e.to_string()))??;
        Ok(DestroySandboxResponse::new())
    }

    async fn exec_process(
        &self,
        _: &TtrpcContext,
        req: ExecProcessRequest,
    ) -> ttrpc::Result<ExecProcessResponse> {
        self.gate()?;
        let processes = self.processes.clone();
        let containers = self.containers.clone();
        let container_id = req.container_id.clone();
        let spec = convert::exec_spec(req);
        let pid = detached(async move {
            if container_id.is_empty() {
                Ok(processes.exec(spec).await?)
            } else {
                Ok(containers.exec(&container_id, spec).await?)
            }
        })
        .await?;
        let mut resp = ExecProcessResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    async fn wait_process(
        &self,
        _: &TtrpcContext,
        req: WaitProcessRequest,
    ) -> ttrpc::Result<WaitProcessResponse> {
        self.gate()?;
        let status = self.processes.wait(&req.exec_id).await?;
        let mut resp = convert::wait_response(status);
        resp.oom_killed = self.containers.oom_killed(&req.exec_id);
        Ok(resp)
    }

    async fn signal_process(
        &self,
        _: &TtrpcContext,
        req: SignalProcessRequest,
    ) -> ttrpc::Result<SignalProcessResponse> {
        self.gate()?;
        if req.all {
            let containers = self.containers.clone();
            detached(async move { Ok(containers.signal_all(&req.exec_id, req.signal).await?) })
                .await?;
        } else {
            self.processes.signal(&req.exec_id, req.signal)?;
        }
        Ok(SignalProcessResponse::new())
    }

    async fn close_stdin(
        &self,
        _: &TtrpcContext,
        req: CloseStdinRequest,
    ) -> ttrpc::Result<CloseStdinResponse> {
        self.gate()?;
        self.processes.close_stdin(&req.exec_id).await?;
        Ok(CloseStdinResponse::new())
    }

    async fn resize_terminal(
        &self,
        _: &TtrpcContext,
        req: ResizeTerminalRequest,
    ) -> ttrpc::Result<ResizeTerminalResponse> {
        self.gate()?;
        self.processes.resize(&req.exec_id, req.rows, req.cols)?;
        Ok(ResizeTerminalResponse::new())
    }

    async fn create_container(
        &self,
        _: &TtrpcContext,
        req: CreateContainerRequest,
    ) -> ttrpc::Result<CreateContainerResponse> {
        self.gate()?;
        let containers = self.containers.clone();
        let req = CreateRequest {
            id: req.container_id,
            spec_json: req.oci_spec,
            rootfs: req.rootfs,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            stream_token: req.stream_token,
        };
        let pid = detached(async move { Ok(containers.create(req).await?) }).await?;
        let mut resp = CreateContainerResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    async fn start_container(
        &self,
        _: &TtrpcContext,
        req: StartContainerRequest,
    ) -> ttrpc::Result<StartContainerResponse> {
        self.gate()?;
        let containers = self.containers.clone();
        detached(async move { Ok(containers.start(&req.container_id).await?) }).await?;
        Ok(StartContainerResponse::new())
    }

    async fn remove_container(
        &self,
        _: &TtrpcContext,
        req: RemoveContainerRequest,
    ) -> ttrpc::Result<RemoveContainerResponse> {
        self.gate()?;
        let containers = self.containers.clone();
        detached(async move { Ok(containers.remove(&req.container_id).await?) }).await?;
        Ok(RemoveContainerResponse::new())
    }

    async fn pause_container(
        &self,
        _: &TtrpcContext,
        req: PauseContainerRequest,
    ) -> ttrpc::Result<PauseContainerResponse> {
        self.gate()?;
        let containers = self.containers.clone();
        detached(async move { Ok(containers.pause(&req.container_id).await?) }).await?;
        Ok(PauseContainerResponse::new())
    }

    async fn resume_container(
        &self,
        _: &TtrpcContext,
        req: ResumeContainerRequest,
    ) -> ttrpc::Result<ResumeContainerResponse> {
        self.gate()?;
        let containers = self.containers.clone();
        detached(async move { Ok(containers.resume(&req.container_id).await?) }).await?;
        Ok(ResumeContainerResponse::new())
    }

    async fn update_container(
        &self,
        _: &TtrpcContext,
        req: UpdateContainerRequest,
    ) -> ttrpc::Result<UpdateContainerResponse> {
        self.gate()?;
        let containers = self.containers.clone();
        detached(async move { Ok(containers.update(&req.container_id, &req.resources).await?) })
            .await?;
        Ok(UpdateContainerResponse::new())
    }

    async fn stats_container(
        &self,
        _: &TtrpcContext,
        req: StatsContainerRequest,
    ) -> ttrpc::Result<StatsContainerResponse> {
        self.gate()?;
        let stats = self.containers.stats(&req.container_id).await?;
        Ok(convert::stats_response(stats))
    }

    async fn list_processes(
        &self,
        _: &TtrpcContext,
        req: ListProcessesRequest,
    ) -> ttrpc::Result<ListProcessesResponse> {
        self.gate()?;
        let processes = self.containers.processes(&req.container_id).await?;
        Ok(convert::processes_response(processes))
    }

    async fn update_network(
        &self,
        _: &TtrpcContext,
        req: UpdateNetworkRequest,
    ) -> ttrpc::Result<UpdateNetworkResponse> {
        self.gate()?;
        let config = network::check(&req)?;
        if !self.sandbox.is_guest() {
            tracing::info!(
                plan = ?config.summary(),
                "test mode: the network request is valid; not applying it to the host"
            );
            return Ok(UpdateNetworkResponse::new());
        }
        detached(async move { Ok(network::apply(&config).await?) }).await?;
        Ok(UpdateNetworkResponse::new())
    }

    async fn resume_clone(
        &self,
        _: &TtrpcContext,
        req: ResumeCloneRequest,
    ) -> ttrpc::Result<ResumeCloneResponse> {
        // A few quick syscalls: inline (the hook it runs spawns the log forwarder's task).
        let step = self.clone_gate.resume(&req.entropy, req.realtime_ns)?;
        let mut resp = ResumeCloneResponse::new();
        resp.clock_step_ms = step;
        Ok(resp)
    }
}
