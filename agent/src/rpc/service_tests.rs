//! The service's clone gate, through the Agent trait, with fake kernel calls.
use std::sync::atomic::Ordering;

use sandpod_protocol::agent::*;
use sandpod_protocol::agent_ttrpc::Agent;
use ttrpc::r#async::TtrpcContext;
use ttrpc::Code;

use super::AgentService;
use crate::clone::{CloneGate, PENDING_MESSAGE};
use crate::container::ContainerManager;
use crate::logging::LogAuth;
use crate::process::{ProcessManager, Reaper};
use crate::sandbox::{Sandbox, SandboxMode};
use crate::stdio::broker::StreamBroker;

/// A host-test-mode service (resolv.conf in `dir`) with `clone_gate`.
fn service(dir: &tempfile::TempDir, clone_gate: CloneGate) -> AgentService {
    let processes = ProcessManager::new(Reaper::start().unwrap(), StreamBroker::new());
    AgentService {
        containers: ContainerManager::new(processes.clone()),
        processes,
        sandbox: Sandbox::new(SandboxMode::Test {
            resolv_conf: dir.path().join("resolv.conf"),
        }),
        log_auth: LogAuth::unconnected(),
        dns_relay: None,
        clone_gate,
    }
}

fn code_and_message(e: ttrpc::Error) -> (Code, String) {
    match e {
        ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a status: {other:?}"),
    }
}

fn resume_req(len: usize) -> ResumeCloneRequest {
    let mut r = ResumeCloneRequest::new();
    r.entropy = vec![0x5a; len];
    r.realtime_ns = 1_600_000_001_000_000_000;
    r
}

/// Every RPC but Health and ResumeClone, with an empty request: all must be refused.
macro_rules! assert_all_gated {
    ($svc:expr, $($method:ident($req:ty)),+ $(,)?) => {
        let ctx = TtrpcContext::default();
        let mut n = 0;
        $(
            let e = $svc.$method(&ctx, <$req>::new()).await.unwrap_err();
            let (code, msg) = code_and_message(e);
            assert_eq!(code, Code::FAILED_PRECONDITION, "{}", stringify!($method));
            assert_eq!(msg, PENDING_MESSAGE, "{}", stringify!($method));
            n += 1;
        )+
        assert_eq!(n, 17);
    };
}

#[tokio::test]
async fn a_pending_clone_answers_health_and_resume_clone_only() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, calls, resumed) = crate::clone::tests::pending_gate();
    let svc = service(&dir, gate);
    let ctx = TtrpcContext::default();

    assert!(svc.health(&ctx, HealthRequest::new()).await.unwrap().ok);
    assert_all_gated!(
        svc,
        guest_details(GuestDetailsRequest),
        create_sandbox(CreateSandboxRequest),
        destroy_sandbox(DestroySandboxRequest),
        exec_process(ExecProcessRequest),
        wait_process(WaitProcessRequest),
        signal_process(SignalProcessRequest),
        close_stdin(CloseStdinRequest),
        resize_terminal(ResizeTerminalRequest),
        create_container(CreateContainerRequest),
        start_container(StartContainerRequest),
        remove_container(RemoveContainerRequest),
        pause_container(PauseContainerRequest),
        resume_container(ResumeContainerRequest),
        update_container(UpdateContainerRequest),
        stats_container(StatsContainerRequest),
        list_processes(ListProcessesRequest),
        update_network(UpdateNetworkRequest),
    );

    // Bad entropy: INVALID_ARGUMENT, still pending.
    for len in [0, 31, 513] {
        let e = svc.resume_clone(&ctx, resume_req(len)).await.unwrap_err();
        assert_eq!(code_and_message(e).0, Code::INVALID_ARGUMENT, "{len}");
    }
    assert!(!resumed.load(Ordering::SeqCst));

    // fake clock: 1_600_000_000 s before, 1_600_000_001 s after.
    let r = svc.resume_clone(&ctx, resume_req(32)).await.unwrap();
    assert_eq!(r.clock_step_ms, 1000);
    assert!(resumed.load(Ordering::SeqCst), "the log forwarder hook ran");
    assert_eq!(calls.lock().unwrap()[0], "add_entropy 32");

    let e = svc.resume_clone(&ctx, resume_req(32)).await.unwrap_err();
    let (code, msg) = code_and_message(e);
    assert_eq!(code, Code::FAILED_PRECONDITION);
    assert!(msg.contains("resumed already"), "{msg}");

    // Open now; a clone reports no boot times (they were the template's).
    svc.guest_details(&ctx, GuestDetailsRequest::new())
        .await
        .unwrap();
    let r = svc
        .create_sandbox(&ctx, CreateSandboxRequest::new())
        .await
        .unwrap();
    assert_eq!(
        (
            r.boot_ms_init,
            r.switch_root_ms,
            r.boot_ms_ready,
            r.boot_ms_serving
        ),
        (0, 0, 0, 0)
    );
}

#[tokio::test]
async fn a_booted_guest_refuses_resume_clone_and_is_not_gated() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir, CloneGate::off());
    let ctx = TtrpcContext::default();
    let e = svc.resume_clone(&ctx, resume_req(32)).await.unwrap_err();
    let (code, msg) = code_and_message(e);
    assert_eq!(code, Code::FAILED_PRECONDITION);
    assert!(msg.contains("not restored from a template"), "{msg}");
    svc.guest_details(&ctx, GuestDetailsRequest::new())
        .await
        .unwrap();
}
