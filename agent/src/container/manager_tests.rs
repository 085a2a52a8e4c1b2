//! Container ids, unknown containers and refused requests (no container is started here: that
//! needs root and a guest, see tests/kvm-host/guest/container-check.sh).
use super::*;
use crate::process::spawn::tests::exec_spec;
use crate::stdio::broker::StreamBroker;

fn manager() -> ContainerManager {
    ContainerManager::new(ProcessManager::new(
        Reaper::start().unwrap(),
        StreamBroker::new(),
    ))
}

fn request(id: &str, rootfs: &str) -> CreateRequest {
    let mut spec = serde_json::to_value(oci_spec::runtime::Spec::default()).unwrap();
    spec["process"]["args"] = serde_json::json!(["true"]);
    CreateRequest {
        id: id.into(),
        spec_json: serde_json::to_vec(&spec).unwrap(),
        rootfs: rootfs.into(),
        stdin: false,
        stdout: false,
        stderr: false,
        stream_token: String::new(),
    }
}

#[tokio::test]
async fn container_ids_are_validated() {
    let m = manager();
    let long = "x".repeat(129);
    for bad in ["", "bad id", "a/b", "../x", long.as_str()] {
        let err = m.create(request(bad, "/")).await.unwrap_err();
        assert!(
            matches!(err, ContainerError::InvalidArgument(_)),
            "{bad:?}: {err}"
        );
    }
}

#[tokio::test]
async fn bad_rootfs_and_spec_are_refused_before_anything_starts() {
    let m = manager();
    let err = m
        .create(request("c1", "/nonexistent-sandpod-rootfs"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
    let mut req = request("c1", "/");
    req.spec_json = b"{\"process\": 3}".to_vec();
    let err = m.create(req).await.unwrap_err();
    assert!(err.to_string().starts_with("oci_spec: "), "{err}");
    // Nothing was kept: the id is free and unknown.
    assert_eq!(
        m.start("c1").await.unwrap_err(),
        ContainerError::NotFound("c1".into())
    );
}

#[tokio::test]
async fn unknown_containers_are_not_found() {
    let m = manager();
    let nf = |id: &str| ContainerError::NotFound(id.into());
    assert_eq!(m.start("nope").await.unwrap_err(), nf("nope"));
    assert_eq!(m.remove("nope").await.unwrap_err(), nf("nope"));
    let spec = exec_spec("e1", &["true"]);
    assert_eq!(m.exec("nope", spec).await.unwrap_err(), nf("nope"));
    assert!(!m.oom_killed("nope"));
}

#[tokio::test]
async fn cgroup_operations_on_unknown_containers_are_not_found() {
    let m = manager();
    let nf = |id: &str| ContainerError::NotFound(id.into());
    assert_eq!(m.signal_all("nope", 9).await.unwrap_err(), nf("nope"));
    assert_eq!(m.pause("nope").await.unwrap_err(), nf("nope"));
    assert_eq!(m.resume("nope").await.unwrap_err(), nf("nope"));
    assert_eq!(m.update("nope", b"{}").await.unwrap_err(), nf("nope"));
    assert_eq!(m.stats("nope").await.unwrap_err(), nf("nope"));
    assert_eq!(m.processes("nope").await.unwrap_err(), nf("nope"));
    // A bad signal number is refused whatever the container.
    for bad in [0, 65, 1000] {
        let err = m.signal_all("nope", bad).await.unwrap_err();
        assert_eq!(
            err,
            ContainerError::Process(ProcessError::InvalidArgument(format!(
                "{bad} is not a signal"
            )))
        );
    }
}
