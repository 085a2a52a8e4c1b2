//! AgentClient against a minimal in-process ttrpc agent behind the fake VMM socket.
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sandpod_protocol::agent::*;
use sandpod_protocol::agent_ttrpc::{create_agent, Agent};
use ttrpc::r#async::TtrpcContext;

use super::*;

/// Answers Health; GuestDetails never answers in time; the rest is "not supported".
struct SlowAgent;

#[async_trait]
impl Agent for SlowAgent {
    async fn health(&self, _: &TtrpcContext, _: HealthRequest) -> ttrpc::Result<HealthResponse> {
        let mut r = HealthResponse::new();
        r.ok = true;
        r.version = "test".into();
        Ok(r)
    }

    async fn guest_details(
        &self,
        _: &TtrpcContext,
        _: GuestDetailsRequest,
    ) -> ttrpc::Result<GuestDetailsResponse> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(GuestDetailsResponse::new())
    }
}

async fn serve_agent(path: &std::path::Path) -> ttrpc::r#async::Server {
    let mut server = ttrpc::r#async::Server::new()
        .bind(&format!("unix://{}", path.display()))
        .unwrap()
        .register_service(create_agent(Arc::new(SlowAgent)));
    server.start().await.unwrap();
    server
}

fn config(deadline_ms: u64, call_ms: u64) -> ClientConfig {
    ClientConfig {
        connect_deadline: Duration::from_millis(deadline_ms),
        call_timeout: Duration::from_millis(call_ms),
        ..Default::default()
    }
}

#[tokio::test]
async fn connect_retries_until_the_agent_listens() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let _vmm = FakeHybridVsock::start(&uds).unwrap();
    let connector = HybridVsockConnector::new(&uds);
    let agent_path = connector.host_port_path(sandpod_protocol::AGENT_PORT);
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        serve_agent(&agent_path).await
    });
    let started = Instant::now();
    let client = AgentClient::connect(connector, config(10_000, 2_000))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(client.health().await.unwrap().version, "test");
    // An unimplemented method comes back as the agent's status, message included.
    let err = client.destroy_sandbox().await.unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::NOT_FOUND));
    assert!(err.to_string().contains("DestroySandbox"), "{err}");
    let _server = late.await.unwrap();
}

#[tokio::test]
async fn connect_gives_up_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let _vmm = FakeHybridVsock::start(&uds).unwrap();
    let started = Instant::now();
    let err = AgentClient::connect(HybridVsockConnector::new(&uds), config(300, 100))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, AgentError::Unreachable { .. }), "{err}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test]
async fn calls_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let _vmm = FakeHybridVsock::start(&uds).unwrap();
    let connector = HybridVsockConnector::new(&uds);
    let _server = serve_agent(&connector.host_port_path(sandpod_protocol::AGENT_PORT)).await;
    let client = AgentClient::connect(connector, config(5_000, 200))
        .await
        .unwrap();
    let started = Instant::now();
    let err = client.guest_details().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    // Either the agent's deadline (DEADLINE_EXCEEDED) or ours fires first.
    assert!(
        matches!(err, AgentError::Timeout { .. })
            || err.code() == Some(ttrpc::Code::DEADLINE_EXCEEDED),
        "{err}"
    );
}

/// Answers ListProcesses and StatsContainer with far too much, and records what it is asked.
#[derive(Default)]
struct HostileAgent {
    asked: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl Agent for HostileAgent {
    async fn health(&self, _: &TtrpcContext, _: HealthRequest) -> ttrpc::Result<HealthResponse> {
        let mut r = HealthResponse::new();
        r.ok = true;
        Ok(r)
    }

    async fn signal_process(
        &self,
        _: &TtrpcContext,
        req: SignalProcessRequest,
    ) -> ttrpc::Result<SignalProcessResponse> {
        let line = format!("signal {} {} all={}", req.exec_id, req.signal, req.all);
        self.asked.lock().unwrap().push(line);
        Ok(SignalProcessResponse::new())
    }

    async fn update_container(
        &self,
        _: &TtrpcContext,
        req: UpdateContainerRequest,
    ) -> ttrpc::Result<UpdateContainerResponse> {
        let line = format!(
            "update {} {}",
            req.container_id,
            String::from_utf8_lossy(&req.resources)
        );
        self.asked.lock().unwrap().push(line);
        Ok(UpdateContainerResponse::new())
    }

    async fn list_processes(
        &self,
        _: &TtrpcContext,
        req: ListProcessesRequest,
    ) -> ttrpc::Result<ListProcessesResponse> {
        self.asked
            .lock()
            .unwrap()
            .push(format!("ps {}", req.container_id));
        let mut r = ListProcessesResponse::new();
        r.processes = (0..5000)
            .map(|i| {
                let mut p = ProcessInfo::new();
                p.pid = i;
                p.comm = "\u{1b}]0;owned\u{7}".into();
                p.cmdline = "z".repeat(600);
                p
            })
            .collect();
        Ok(r)
    }

    /// Fails with a status message made to forge lines, drive a terminal and fill memory.
    async fn start_container(
        &self,
        _: &TtrpcContext,
        _: StartContainerRequest,
    ) -> ttrpc::Result<StartContainerResponse> {
        let message = format!(
            "exec failed\ntime=\"x\" level=error msg=forged\u{1b}[2J\u{1b}]0;owned\u{7}{}",
            "m".repeat(1 << 20)
        );
        Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
            ttrpc::Code::INTERNAL,
            message,
        )))
    }

    async fn resume_clone(
        &self,
        _: &TtrpcContext,
        req: ResumeCloneRequest,
    ) -> ttrpc::Result<ResumeCloneResponse> {
        let line = format!("resume {} {}", req.entropy.len(), req.realtime_ns);
        self.asked.lock().unwrap().push(line);
        let mut r = ResumeCloneResponse::new();
        r.clock_step_ms = -1500;
        Ok(r)
    }

    async fn stats_container(
        &self,
        _: &TtrpcContext,
        _: StatsContainerRequest,
    ) -> ttrpc::Result<StatsContainerResponse> {
        let mut r = StatsContainerResponse::new();
        r.pids_current = 2;
        for i in 0..1000 {
            r.memory_stat.insert(format!("k{i:04}"), i);
        }
        Ok(r)
    }
}

#[tokio::test]
async fn container_calls_send_their_fields_and_bound_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let _vmm = FakeHybridVsock::start(&uds).unwrap();
    let connector = HybridVsockConnector::new(&uds);
    let agent = Arc::new(HostileAgent::default());
    let mut server = ttrpc::r#async::Server::new()
        .bind(&format!(
            "unix://{}",
            connector
                .host_port_path(sandpod_protocol::AGENT_PORT)
                .display()
        ))
        .unwrap()
        .register_service(create_agent(agent.clone()));
    server.start().await.unwrap();
    let client = AgentClient::connect(connector, config(5_000, 5_000))
        .await
        .unwrap();
    let step = client
        .resume_clone(&[7; 64], 1_700_000_000_123_456_789)
        .await;
    assert_eq!(step.unwrap(), -1500);
    client.signal_container_all("c1", 9).await.unwrap();
    client
        .update_container("c1", br#"{"pids":{"limit":5}}"#.to_vec())
        .await
        .unwrap();
    let procs = client.list_processes("c1").await.unwrap();
    assert_eq!(procs.len(), bounds::MAX_PROCESSES);
    assert_eq!(procs[0].comm, "\\u{1b}]0;owned\\u{7}");
    assert_eq!(procs[0].cmdline.len(), 600);
    let stats = client.stats_container("c1").await.unwrap();
    assert_eq!(stats.pids_current, 2);
    assert_eq!(stats.memory_stat.len(), bounds::MAX_MEMORY_STAT);
    assert_eq!(
        *agent.asked.lock().unwrap(),
        vec![
            "resume 64 1700000000123456789".to_string(),
            "signal c1 9 all=true".to_string(),
            r#"update c1 {"pids":{"limit":5}}"#.to_string(),
            "ps c1".to_string(),
        ]
    );
    // Not implemented by this agent: its status comes back.
    let err = client.pause_container("c1").await.unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::NOT_FOUND), "{err}");
    assert!(err.to_string().contains("PauseContainer"), "{err}");
    // A hostile status message arrives escaped and cut.
    let err = client.start_container("c1").await.unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::INTERNAL));
    let text = err.to_string();
    assert!(
        text.len() <= bounds::MAX_AGENT_MESSAGE + 64,
        "{}",
        text.len()
    );
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(
        text.starts_with(
            "StartContainer: exec failed\\ntime=\"x\" level=error msg=forged\\u{1b}[2J"
        ),
        "{text}"
    );
}
