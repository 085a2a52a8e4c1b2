//! The CRI connection and the calls the scenarios make (each bounded by --call-timeout).
#![allow(unused_imports)] // one prelude for the parts of the tool
use super::*;

/// The CRI runtime service and what every pod of a run shares.
#[derive(Clone)]
pub(crate) struct Cri {
    pub(crate) rt: RuntimeServiceClient<Channel>,
    pub(crate) handler: String,
    pub(crate) image: String,
    pub(crate) work: PathBuf,
    pub(crate) bundle_root: PathBuf,
    pub(crate) exec_timeout_secs: i64,
    pub(crate) json: bool,
    /// The pid namespace mode (cri::NamespaceMode) of the pods and their containers.
    pub(crate) pid_mode: i32,
}

pub(crate) async fn connect(
    endpoint: &str,
    timeout: Duration,
) -> Result<RuntimeServiceClient<Channel>> {
    let path = endpoint
        .strip_prefix("unix://")
        .with_context(|| format!("--endpoint {endpoint}: only unix:// endpoints are supported"))?
        .to_owned();
    // The URI is not used: the connector dials the socket.
    let channel = Endpoint::try_from("http://[::]:0")?
        .timeout(timeout)
        .connect_timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    Ok(RuntimeServiceClient::new(channel))
}

/// The busybox command lines of the `pod` scenario's containers: distinct arguments, so each
/// container can find the other's process.
pub(crate) const SLEEP_C1: &str = "100001";
pub(crate) const SLEEP_C2: &str = "100002";

impl Cri {
    pub(crate) fn json<T: serde::Serialize>(&self, what: &str, v: &T) {
        if self.json {
            match serde_json::to_string(v) {
                Ok(s) => println!("json {what} {s}"),
                Err(e) => println!("json {what} (not serializable: {e})"),
            }
        }
    }

    pub(crate) fn namespaces(&self) -> cri::NamespaceOption {
        // Pod: the containers share the pod's network, pid and IPC namespaces (pid: Kubernetes'
        // shareProcessNamespace; unless --pid-namespace container).
        cri::NamespaceOption {
            network: cri::NamespaceMode::Pod as i32,
            pid: self.pid_mode,
            ipc: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }

    pub(crate) fn pod_config(&self, name: &str) -> cri::PodSandboxConfig {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_owned(),
                uid: format!("{name}-{}-{nanos}", std::process::id()),
                namespace: POD_NAMESPACE.to_owned(),
                attempt: 0,
            }),
            hostname: name.to_owned(),
            log_directory: self.work.join("logs").join(name).display().to_string(),
            labels: HashMap::from([("sandpod-cri".to_owned(), name.to_owned())]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("/{POD_NAMESPACE}/{name}"),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(self.namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub(crate) fn container_config(
        &self,
        name: &str,
        cmd: &[&str],
        volume: Option<&Path>,
    ) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.to_owned(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| (*s).to_owned()).collect(),
            log_path: format!("{name}.log"),
            mounts: volume
                .map(|v| {
                    vec![cri::Mount {
                        container_path: "/shared".to_owned(),
                        host_path: v.display().to_string(),
                        ..Default::default()
                    }]
                })
                .unwrap_or_default(),
            linux: Some(cri::LinuxContainerConfig {
                resources: None,
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(self.namespaces()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    pub(crate) async fn version(&self) -> Result<cri::VersionResponse, Status> {
        let req = cri::VersionRequest {
            version: "v1".to_owned(),
        };
        let resp = self.rt.clone().version(req).await?.into_inner();
        self.json("VersionResponse", &resp);
        Ok(resp)
    }

    pub(crate) async fn run_pod_with(
        &self,
        config: &cri::PodSandboxConfig,
        handler: &str,
    ) -> Result<String, Status> {
        let log_dir = Path::new(&config.log_directory);
        if !config.log_directory.is_empty() {
            std::fs::create_dir_all(log_dir)
                .map_err(|e| Status::internal(format!("{}: {e}", log_dir.display())))?;
        }
        let req = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_owned(),
        };
        self.json("RunPodSandboxRequest", &req);
        let resp = self.rt.clone().run_pod_sandbox(req).await?.into_inner();
        self.json("RunPodSandboxResponse", &resp);
        Ok(resp.pod_sandbox_id)
    }

    pub(crate) async fn run_pod(&self, config: &cri::PodSandboxConfig) -> Result<String, Status> {
        self.run_pod_with(config, &self.handler).await
    }

    pub(crate) async fn create_container(
        &self,
        pod: &str,
        pod_config: &cri::PodSandboxConfig,
        config: &cri::ContainerConfig,
    ) -> Result<String, Status> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: pod.to_owned(),
            config: Some(config.clone()),
            sandbox_config: Some(pod_config.clone()),
        };
        self.json("CreateContainerRequest", &req);
        let resp = self.rt.clone().create_container(req).await?.into_inner();
        self.json("CreateContainerResponse", &resp);
        Ok(resp.container_id)
    }

    pub(crate) async fn start_container(&self, id: &str) -> Result<(), Status> {
        let req = cri::StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.json("StartContainerRequest", &req);
        self.rt.clone().start_container(req).await?;
        Ok(())
    }

    /// CreateContainer + StartContainer.
    pub(crate) async fn create_and_start(
        &self,
        pod: &str,
        pod_config: &cri::PodSandboxConfig,
        config: &cri::ContainerConfig,
    ) -> Result<String> {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.as_str())
            .unwrap_or_default();
        let id = self
            .create_container(pod, pod_config, config)
            .await
            .map_err(|s| anyhow!("CreateContainer {name}: {}", status_text(&s)))?;
        self.start_container(&id).await.map_err(|s| {
            anyhow!(
                "StartContainer {name} ({}): {}",
                short(&id),
                status_text(&s)
            )
        })?;
        Ok(id)
    }

    pub(crate) async fn pod_status(&self, id: &str) -> Result<cri::PodSandboxStatus, Status> {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        };
        let resp = self.rt.clone().pod_sandbox_status(req).await?.into_inner();
        self.json("PodSandboxStatusResponse", &resp);
        resp.status
            .ok_or_else(|| Status::internal("PodSandboxStatus without a status"))
    }

    pub(crate) async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus, Status> {
        let req = cri::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        let resp = self.rt.clone().container_status(req).await?.into_inner();
        self.json("ContainerStatusResponse", &resp);
        resp.status
            .ok_or_else(|| Status::internal("ContainerStatus without a status"))
    }

    pub(crate) async fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
    ) -> Result<cri::ExecSyncResponse, Status> {
        let req = cri::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout: self.exec_timeout_secs,
        };
        self.json("ExecSyncRequest", &req);
        let resp = self.rt.clone().exec_sync(req).await?.into_inner();
        self.json("ExecSyncResponse", &resp);
        Ok(resp)
    }

    /// `sh -c SCRIPT` in the container; fails unless it exits 0. Its stdout.
    pub(crate) async fn sh(&self, id: &str, script: &str) -> Result<String> {
        let r = self
            .exec_sync(id, &["sh", "-c", script])
            .await
            .map_err(|s| anyhow!("ExecSync sh -c '{script}': {}", status_text(&s)))?;
        let out = String::from_utf8_lossy(&r.stdout).into_owned();
        ensure!(
            r.exit_code == 0,
            "sh -c '{script}' exited {}: stdout {out:?} stderr {:?}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        );
        Ok(out)
    }

    pub(crate) async fn list_pods(&self) -> Result<Vec<cri::PodSandbox>, Status> {
        let resp = self
            .rt
            .clone()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await?
            .into_inner();
        self.json("ListPodSandboxResponse", &resp);
        Ok(resp.items)
    }

    pub(crate) async fn list_containers(
        &self,
        pod: Option<&str>,
    ) -> Result<Vec<cri::Container>, Status> {
        let filter = pod.map(|p| cri::ContainerFilter {
            pod_sandbox_id: p.to_owned(),
            ..Default::default()
        });
        let resp = self
            .rt
            .clone()
            .list_containers(cri::ListContainersRequest { filter })
            .await?
            .into_inner();
        self.json("ListContainersResponse", &resp);
        Ok(resp.containers)
    }

    pub(crate) async fn stop_pod(&self, id: &str) -> Result<(), Status> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.json("StopPodSandboxRequest", &req);
        self.rt.clone().stop_pod_sandbox(req).await?;
        Ok(())
    }

    pub(crate) async fn remove_pod(&self, id: &str) -> Result<(), Status> {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.json("RemovePodSandboxRequest", &req);
        self.rt.clone().remove_pod_sandbox(req).await?;
        Ok(())
    }

    /// StopPodSandbox + RemovePodSandbox, then the pod's cgroup parent removed (kubelet's part:
    /// it fails while a container's cgroup is left in it).
    pub(crate) async fn teardown(&self, id: &str, name: &str) -> Result<()> {
        self.stop_pod(id)
            .await
            .map_err(|s| anyhow!("StopPodSandbox {}: {}", short(id), status_text(&s)))?;
        self.remove_pod(id)
            .await
            .map_err(|s| anyhow!("RemovePodSandbox {}: {}", short(id), status_text(&s)))?;
        remove_pod_cgroup(name).await
    }
}
