//! The container RPCs through the runtime's client against `sandpod-agent --test-serve`: the
//! refusals that need no guest (ids, specs, unknown containers). Containers themselves run in
//! the VM-level test (tests/kvm-host/guest/container-check.sh).
mod support;

use sandpod_runtime::agent_client::StreamSet;
use support::{exec_req, token, TestAgent};
use ttrpc::Code;

fn spec_json(args: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": args, "cwd": "/"},
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn create_refuses_bad_ids_specs_and_rootfs() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let json = spec_json(&["true"]);
    let err = client
        .create_container("bad id", json.clone(), "/", StreamSet::default(), token())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::INVALID_ARGUMENT), "{err}");
    let err = client
        .create_container(
            "c1",
            b"{\"process\": 3}".to_vec(),
            "/",
            StreamSet::default(),
            token(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::INVALID_ARGUMENT), "{err}");
    assert!(err.to_string().contains("oci_spec: "), "{err}");
    let err = client
        .create_container(
            "c1",
            json,
            "/nonexistent-rootfs",
            StreamSet::default(),
            token(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
}

#[tokio::test]
async fn unknown_containers_are_not_found() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let err = client.start_container("nope").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NOT_FOUND), "{err}");
    assert!(err.to_string().contains("no container \"nope\""), "{err}");
    let err = client.remove_container("nope").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NOT_FOUND), "{err}");
    let mut req = exec_req("e1", &["true"], [false; 3]);
    req.container_id = "nope".into();
    let err = client.exec_process(&req).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NOT_FOUND), "{err}");
}

#[tokio::test]
async fn cgroup_calls_on_unknown_containers_are_not_found() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let not_found = |r: Result<(), sandpod_runtime::agent_client::AgentError>| {
        let err = r.unwrap_err();
        assert_eq!(err.code(), Some(Code::NOT_FOUND), "{err}");
        assert!(err.to_string().contains("no container \"nope\""), "{err}");
    };
    not_found(client.signal_container_all("nope", 9).await);
    not_found(client.pause_container("nope").await);
    not_found(client.resume_container("nope").await);
    not_found(client.update_container("nope", b"{}".to_vec()).await);
    not_found(client.stats_container("nope").await.map(|_| ()));
    not_found(client.list_processes("nope").await.map(|_| ()));
    // A bad signal is refused as such.
    let err = client.signal_container_all("nope", 0).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::INVALID_ARGUMENT), "{err}");
}

#[tokio::test]
async fn kill_all_needs_a_container_not_a_process() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    client
        .exec_process(&exec_req("p1", &["sleep", "30"], [false; 3]))
        .await
        .unwrap();
    // p1 is a process of the agent, not a container: `all` does not reach it.
    let err = client.signal_container_all("p1", 9).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NOT_FOUND), "{err}");
    assert!(err.to_string().contains("no container \"p1\""), "{err}");
    // It still runs; a plain signal ends it.
    client.signal_process("p1", 9).await.unwrap();
    let status = client.wait_process("p1").await.unwrap();
    assert_eq!(
        status,
        sandpod_runtime::agent_client::ExitStatus::Signaled(9)
    );
}
