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
