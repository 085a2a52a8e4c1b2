//! The agent's ttrpc API from the host, over hybrid vsock.
use std::time::Duration;

use sandpod_protocol::agent::*;
use sandpod_protocol::agent_ttrpc;
use sandpod_protocol::{
    ErrorChain, ExitStatus, StreamHeader, StreamKind, StreamSet, StreamToken, Token, AGENT_PORT,
};
use tokio::net::UnixStream;

use super::bounds::{bound_processes, bound_stats};
use super::connector::HybridVsockConnector;
use super::error::{AgentError, ConnectError};
use super::stdio::open_stream;

/// Longest pause between connection attempts the VMM forwards to the guest: the agent answers
/// within milliseconds of listening, and an attempt while the guest boots costs the VMM and the
/// guest one refused connection.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_millis(50);
/// Pause between attempts while the VMM's socket is not there yet (the VMM is starting): such
/// an attempt costs a failed connect(2) on the host only.
const SOCKET_POLL: Duration = Duration::from_millis(5);

/// Timeouts of an [`AgentClient`].
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// How long [`AgentClient::connect`] keeps retrying (the VM may still be booting).
    pub connect_deadline: Duration,
    /// Limit of each call, except ExecProcess and WaitProcess.
    pub call_timeout: Duration,
    /// Limit of ExecProcess, which waits up to 10 s for its streams in the agent.
    pub exec_timeout: Duration,
    /// Limit of CreateContainer, StartContainer and RemoveContainer: the agent waits for the
    /// streams (10 s) and up to 60 s for the container's setup.
    pub container_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_deadline: Duration::from_secs(30),
            call_timeout: Duration::from_secs(10),
            exec_timeout: Duration::from_secs(20),
            container_timeout: Duration::from_secs(90),
        }
    }
}

/// A connected agent. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct AgentClient {
    inner: agent_ttrpc::AgentClient,
    connector: HybridVsockConnector,
    config: ClientConfig,
}

/// Runs one call with a deadline both in the agent (ttrpc timeout) and here.
async fn call<T, F>(method: &'static str, timeout: Option<Duration>, f: F) -> Result<T, AgentError>
where
    F: std::future::Future<Output = ttrpc::Result<T>>,
{
    let Some(timeout) = timeout else {
        return f.await.map_err(|e| AgentError::from_ttrpc(method, e));
    };
    match tokio::time::timeout(timeout + Duration::from_millis(500), f).await {
        // ttrpc's own client-side deadline (it has no dedicated error variant).
        Ok(Err(ttrpc::Error::Others(m))) if m == "Request deadline elapsed" => {
            Err(AgentError::Timeout { method, timeout })
        }
        Ok(r) => r.map_err(|e| AgentError::from_ttrpc(method, e)),
        Err(_) => Err(AgentError::Timeout { method, timeout }),
    }
}

fn ctx(timeout: Option<Duration>) -> ttrpc::context::Context {
    match timeout {
        Some(t) => ttrpc::context::with_duration(t),
        None => ttrpc::context::Context::default(),
    }
}

impl AgentClient {
    /// Connects to the agent, retrying with backoff until `config.connect_deadline`: a
    /// connection counts once the agent answers Health.
    pub async fn connect(
        connector: HybridVsockConnector,
        config: ClientConfig,
    ) -> Result<AgentClient, AgentError> {
        let start = tokio::time::Instant::now();
        let deadline = start + config.connect_deadline;
        let mut backoff = Duration::from_millis(10);
        // (Each kind of failure is logged once in a row, not at every poll.)
        let mut logged = String::new();
        loop {
            let (last, pause) = match Self::connect_once(&connector, config).await {
                Ok(client) => return Ok(client),
                Err(e @ AgentError::Connect(ConnectError::Socket { .. })) => {
                    (ErrorChain(&e).to_string(), SOCKET_POLL)
                }
                Err(e) => {
                    let pause = backoff;
                    backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
                    (ErrorChain(&e).to_string(), pause)
                }
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(AgentError::Unreachable {
                    waited: now - start,
                    last,
                });
            }
            if last != logged {
                tracing::debug!("agent not reachable yet: {last}");
                logged = last;
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
        }
    }

    async fn connect_once(
        connector: &HybridVsockConnector,
        config: ClientConfig,
    ) -> Result<AgentClient, AgentError> {
        let stream = connector.connect(AGENT_PORT).await?;
        let client = AgentClient {
            inner: agent_ttrpc::AgentClient::new(ttrpc::r#async::Client::new(
                ttrpc::r#async::transport::Socket::new(stream),
            )),
            connector: connector.clone(),
            config,
        };
        client.health().await?;
        Ok(client)
    }

    /// The generated ttrpc client, for calls with a custom context.
    pub fn raw(&self) -> &agent_ttrpc::AgentClient {
        &self.inner
    }

    pub fn connector(&self) -> &HybridVsockConnector {
        &self.connector
    }

    pub async fn health(&self) -> Result<HealthResponse, AgentError> {
        let t = Some(self.config.call_timeout);
        call(
            "Health",
            t,
            self.inner.health(ctx(t), &HealthRequest::new()),
        )
        .await
    }

    pub async fn guest_details(&self) -> Result<GuestDetailsResponse, AgentError> {
        let t = Some(self.config.call_timeout);
        let req = GuestDetailsRequest::new();
        call("GuestDetails", t, self.inner.guest_details(ctx(t), &req)).await
    }

    /// CreateSandbox. With `req.log_token` set (a [`LogToken`](sandpod_protocol::LogToken)'s
    /// text), the agent presents that token on its log connections from then on: listen with
    /// [`LogReceiver::listen_with_token`](super::LogReceiver::listen_with_token).
    /// Returns the guest's boot times the agent reports (informational).
    pub async fn create_sandbox(
        &self,
        req: &CreateSandboxRequest,
    ) -> Result<CreateSandboxResponse, AgentError> {
        if !req.log_token.is_empty() {
            Token::parse(&req.log_token).map_err(|source| AgentError::Token {
                what: "CreateSandbox log_token",
                source,
            })?;
        }
        let t = Some(self.config.call_timeout);
        call("CreateSandbox", t, self.inner.create_sandbox(ctx(t), req)).await
    }

    pub async fn destroy_sandbox(&self) -> Result<(), AgentError> {
        let t = Some(self.config.call_timeout);
        let req = DestroySandboxRequest::new();
        call(
            "DestroySandbox",
            t,
            self.inner.destroy_sandbox(ctx(t), &req),
        )
        .await?;
        Ok(())
    }

    /// UpdateNetwork: the guest's interfaces (found by MAC, renamed, MTU, addresses, up), then
    /// its routes and permanent neighbours. The agent checks the whole request before changing
    /// anything (INVALID_ARGUMENT otherwise).
    pub async fn update_network(&self, req: &UpdateNetworkRequest) -> Result<(), AgentError> {
        let t = Some(self.config.call_timeout);
        call("UpdateNetwork", t, self.inner.update_network(ctx(t), req)).await?;
        Ok(())
    }

    /// ResumeClone: the first call to a guest restored from a VM template (it answers only
    /// Health and this until it succeeds): reseeds its RNG with `entropy` (32 to 512 fresh bytes
    /// from the host) and sets its clock to `realtime_ns` (the host's CLOCK_REALTIME). Returns how
    /// far the guest's clock moved, in milliseconds (informational: the guest says it).
    pub async fn resume_clone(&self, entropy: &[u8], realtime_ns: u64) -> Result<i64, AgentError> {
        let t = Some(self.config.call_timeout);
        let mut req = ResumeCloneRequest::new();
        req.entropy = entropy.to_vec();
        req.realtime_ns = realtime_ns;
        let resp = call("ResumeClone", t, self.inner.resume_clone(ctx(t), &req)).await?;
        Ok(resp.clock_step_ms)
    }

    /// Starts a process; returns its guest pid. Open the streams the request asks for with
    /// [`AgentClient::open_stream`] before or while this runs: the agent waits for them. A
    /// request that asks for a stream must carry a stream token (`req.stream_token =
    /// token.to_string()`, the token from [`StreamToken::generate`]), the one the streams present.
    pub async fn exec_process(&self, req: &ExecProcessRequest) -> Result<u32, AgentError> {
        if req.stdin || req.stdout || req.stderr {
            StreamToken::parse(&req.stream_token).map_err(|source| AgentError::Token {
                what: "ExecProcess stream_token",
                source,
            })?;
        }
        let t = Some(self.config.exec_timeout);
        let resp = call("ExecProcess", t, self.inner.exec_process(ctx(t), req)).await?;
        checked_pid("ExecProcess", resp.pid)
    }

    /// Waits for a process to end, without limit (see [`AgentClient::wait_process_timeout`]).
    pub async fn wait_process(&self, exec_id: &str) -> Result<ExitStatus, AgentError> {
        self.wait_process_timeout(exec_id, None).await
    }

    pub async fn wait_process_timeout(
        &self,
        exec_id: &str,
        timeout: Option<Duration>,
    ) -> Result<ExitStatus, AgentError> {
        Ok(self.wait_container(exec_id, timeout).await?.0)
    }

    /// Like [`AgentClient::wait_process_timeout`], with whether the container's cgroup saw an
    /// OOM kill (always false for a plain process).
    pub async fn wait_container(
        &self,
        exec_id: &str,
        timeout: Option<Duration>,
    ) -> Result<(ExitStatus, bool), AgentError> {
        let mut req = WaitProcessRequest::new();
        req.exec_id = exec_id.to_string();
        let resp = call(
            "WaitProcess",
            timeout,
            self.inner.wait_process(ctx(timeout), &req),
        )
        .await?;
        // The agent is untrusted: a signal number outside Linux's range is a protocol error
        // (callers compute 128 + signal).
        let status =
            ExitStatus::from_wait_response(&resp).map_err(|message| AgentError::Protocol {
                method: "WaitProcess",
                message,
            })?;
        Ok((status, resp.oom_killed))
    }

    pub async fn signal_process(&self, exec_id: &str, signal: u32) -> Result<(), AgentError> {
        let t = Some(self.config.call_timeout);
        let mut req = SignalProcessRequest::new();
        req.exec_id = exec_id.to_string();
        req.signal = signal;
        call("SignalProcess", t, self.inner.signal_process(ctx(t), &req)).await?;
        Ok(())
    }

    pub async fn close_stdin(&self, exec_id: &str) -> Result<(), AgentError> {
        let t = Some(self.config.call_timeout);
        let mut req = CloseStdinRequest::new();
        req.exec_id = exec_id.to_string();
        call("CloseStdin", t, self.inner.close_stdin(ctx(t), &req)).await?;
        Ok(())
    }

    pub async fn resize_terminal(
        &self,
        exec_id: &str,
        rows: u32,
        cols: u32,
    ) -> Result<(), AgentError> {
        let t = Some(self.config.call_timeout);
        let mut req = ResizeTerminalRequest::new();
        req.exec_id = exec_id.to_string();
        req.rows = rows;
        req.cols = cols;
        call(
            "ResizeTerminal",
            t,
            self.inner.resize_terminal(ctx(t), &req),
        )
        .await?;
        Ok(())
    }

    /// Creates container `id` from its OCI spec (config.json bytes) with its root at the guest
    /// path `rootfs`; its init process is left blocked before exec. Returns the init's guest
    /// pid. Open the streams in `streams` (exec id = `id`, presenting `token`) before or while
    /// this runs; in terminal mode (the spec's process.terminal) that is one `tty` stream.
    pub async fn create_container(
        &self,
        id: &str,
        spec_json: Vec<u8>,
        rootfs: &str,
        streams: StreamSet,
        token: &StreamToken,
    ) -> Result<u32, AgentError> {
        let t = Some(self.config.container_timeout);
        let mut req = CreateContainerRequest::new();
        req.container_id = id.to_string();
        req.oci_spec = spec_json;
        req.rootfs = rootfs.to_string();
        req.stdin = streams.stdin;
        req.stdout = streams.stdout;
        req.stderr = streams.stderr;
        req.stream_token = token.to_string();
        let resp = call(
            "CreateContainer",
            t,
            self.inner.create_container(ctx(t), &req),
        )
        .await?;
        checked_pid("CreateContainer", resp.pid)
    }

    /// Lets container `id`'s init process exec; an exec failure is an error naming the binary.
    pub async fn start_container(&self, id: &str) -> Result<(), AgentError> {
        let t = Some(self.config.container_timeout);
        let mut req = StartContainerRequest::new();
        req.container_id = id.to_string();
        call(
            "StartContainer",
            t,
            self.inner.start_container(ctx(t), &req),
        )
        .await?;
        Ok(())
    }

    /// Kills what is left of container `id` and forgets it.
    pub async fn remove_container(&self, id: &str) -> Result<(), AgentError> {
        let t = Some(self.config.container_timeout);
        let mut req = RemoveContainerRequest::new();
        req.container_id = id.to_string();
        call(
            "RemoveContainer",
            t,
            self.inner.remove_container(ctx(t), &req),
        )
        .await?;
        Ok(())
    }

    /// `runc kill --all`: `signal` to every process of container `id` (its cgroup's).
    pub async fn signal_container_all(&self, id: &str, signal: u32) -> Result<(), AgentError> {
        let t = Some(self.config.call_timeout);
        let mut req = SignalProcessRequest::new();
        req.exec_id = id.to_string();
        req.signal = signal;
        req.all = true;
        call("SignalProcess", t, self.inner.signal_process(ctx(t), &req)).await?;
        Ok(())
    }

    /// Freezes container `id` (the agent waits up to 5 s for the freezer).
    pub async fn pause_container(&self, id: &str) -> Result<(), AgentError> {
        let t = Some(self.config.call_timeout);
        let mut req = PauseContainerRequest::new();
        req.container_id = id.to_string();
        call(
            "PauseContainer",
            t,
            self.inner.pause_container(ctx(t), &req),
        )
        .await?;
        Ok(())
    }

    /// Thaws paused container `id`.
    pub async fn resume_container(&self, id: &str) -> Result<(), AgentError> {
        let t = Some(self.config.call_timeout);
        let mut req = ResumeContainerRequest::new();
        req.container_id = id.to_string();
        call(
            "ResumeContainer",
            t,
            self.inner.resume_container(ctx(t), &req),
        )
        .await?;
        Ok(())
    }

    /// New limits for container `id`: `resources_json` is the JSON of an OCI
    /// `LinuxResources` (what config.json has at linux.resources).
    pub async fn update_container(
        &self,
        id: &str,
        resources_json: Vec<u8>,
    ) -> Result<(), AgentError> {
        let t = Some(self.config.call_timeout);
        let mut req = UpdateContainerRequest::new();
        req.container_id = id.to_string();
        req.resources = resources_json;
        call(
            "UpdateContainer",
            t,
            self.inner.update_container(ctx(t), &req),
        )
        .await?;
        Ok(())
    }

    /// The figures of container `id`'s cgroup, bounded (see [`bound_stats`]).
    pub async fn stats_container(&self, id: &str) -> Result<StatsContainerResponse, AgentError> {
        let t = Some(self.config.call_timeout);
        let mut req = StatsContainerRequest::new();
        req.container_id = id.to_string();
        let resp = call(
            "StatsContainer",
            t,
            self.inner.stats_container(ctx(t), &req),
        )
        .await?;
        let (stats, dropped) = bound_stats(&resp);
        if dropped > 0 {
            tracing::warn!("StatsContainer {id}: {dropped} memory.stat entries dropped");
        }
        Ok(stats)
    }

    /// The processes of container `id`, bounded and printable (see [`bound_processes`]).
    pub async fn list_processes(&self, id: &str) -> Result<Vec<ProcessInfo>, AgentError> {
        let t = Some(self.config.call_timeout);
        let mut req = ListProcessesRequest::new();
        req.container_id = id.to_string();
        let resp = call("ListProcesses", t, self.inner.list_processes(ctx(t), &req)).await?;
        let (processes, dropped) = bound_processes(&resp.processes);
        if dropped > 0 {
            tracing::warn!(
                "ListProcesses {id}: {dropped} processes beyond the first {} dropped",
                processes.len()
            );
        }
        Ok(processes)
    }

    /// Opens the `kind` stream of `exec_id`, presenting `token` (see [`open_stream`]).
    pub async fn open_stream(
        &self,
        exec_id: &str,
        kind: StreamKind,
        token: &StreamToken,
    ) -> Result<UnixStream, AgentError> {
        let header = StreamHeader::new(exec_id, kind, token.clone())?;
        open_stream(&self.connector, &header).await
    }
}

/// The guest pid of an answer, or a protocol error if it is out of Linux's range.
fn checked_pid(method: &'static str, pid: u32) -> Result<u32, AgentError> {
    super::bounds::guest_pid(pid).ok_or_else(|| AgentError::Protocol {
        method,
        message: format!(
            "pid {pid} out of range 1..={}",
            super::bounds::PID_MAX_LIMIT
        ),
    })
}
