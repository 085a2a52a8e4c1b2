//! sandpod-cri: a CRI client (Kubernetes CRI runtime.v1, as containerd 1.6 serves it) that runs
//! named pod scenarios against containerd's CRI plugin, through the runtime handler under test
//! (`--handler runc`, the control; `kata`, Sandpod's shim). Debian has no crictl: this is the
//! test driver of tests/kvm-host/guest/cri-check.sh.
//!
//! It prints `check NAME ok[: context]` or `check NAME FAIL: why` lines (the convention of
//! tests/kvm-host/guest/lib.sh, which tests/integration/common.rs's assert_checks reads), and
//! exits 1 if any check failed. Scenarios (run in the order given):
//!
//! - `version`: the CRI Version call answers runtime.v1.
//! - `pod`: one pod (shared pid namespace, a host directory mounted in both containers) with two
//!   busybox `sleep` containers: ExecSync output and exit codes, the shared pid namespace and
//!   volume, ContainerStats, UpdateContainerResources seen in the container's cgroup files, one
//!   shim for the pod, the OCI annotations containerd gives the runtime; then StopPodSandbox,
//!   RemovePodSandbox, and nothing listed.
//! - `five`: five pods (one container each) started at once, all ready, then all removed.
//! - `bad-input`: unknown ids, a missing sandbox, malformed configs and a missing binary give
//!   errors (their text is printed in the check line) and leave nothing behind.
//! - `hold`: one pod with one container, left running (for cri-check.sh to prove its leak check
//!   sees a running pod); `remove-all`: every pod listed stopped and removed.
//! - `pod-start`: `--rounds` times RunPodSandbox + CreateContainer + StartContainer timed (the
//!   pod removed after each round): `bench pod_start_ms handler=<h> median=<ms> rounds=[...]`.
//!
//! Every CRI call is bounded by `--call-timeout`. The driver plays kubelet's host-side part: it
//! makes the pods' log directories and volume directories under `--work-dir`, and removes the
//! pod cgroup parents (`/sys/fs/cgroup/sandpod-cri/<pod>`) it asked for once a pod is removed.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Parser, ValueEnum};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

/// The pods' Kubernetes namespace (metadata only) and the cgroup parent directory of their pods.
const POD_NAMESPACE: &str = "sandpod-cri";
/// The cgroup v2 mount on the host, where the pod cgroup parents are.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// A memory limit and CPU quota the `pod` scenario sets with UpdateContainerResources.
const MEMORY_LIMIT: i64 = 64 << 20;
const CPU_PERIOD: i64 = 100_000;
const CPU_QUOTA: i64 = 50_000;

#[derive(Parser)]
#[command(about = "Runs CRI pod scenarios against containerd's CRI plugin")]
struct Args {
    /// containerd's CRI endpoint (a Unix socket).
    #[arg(long, default_value = "unix:///run/containerd/containerd.sock")]
    endpoint: String,
    /// The CRI runtime handler of every pod (containerd's `runtimes.<name>`).
    #[arg(long, default_value = "runc")]
    handler: String,
    /// The containers' image (present in containerd's k8s.io namespace: nothing is pulled).
    #[arg(long, default_value = "docker.io/sandpod-test/busybox:latest")]
    image: String,
    /// Seconds one CRI call may take.
    #[arg(long, default_value_t = 240)]
    call_timeout: u64,
    /// Where the pods' log and volume directories are made (a fresh directory under it).
    #[arg(long, default_value = "/tmp")]
    work_dir: PathBuf,
    /// Where containerd keeps the OCI bundles of the k8s.io namespace (to read their specs).
    #[arg(
        long,
        default_value = "/run/containerd/io.containerd.runtime.v2.task/k8s.io"
    )]
    bundle_root: PathBuf,
    /// pod-start: how many rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Print every CRI request and response as a `json` line.
    #[arg(long)]
    print_json: bool,
    /// The pods' pid namespace: pod (shared by the pod's containers, the scenarios' premise) or
    /// container (each its own: the control that `pod-shared-pid-namespace` fails).
    #[arg(long, value_enum, default_value_t = PidNamespace::Pod)]
    pid_namespace: PidNamespace,
    /// The scenarios, in order.
    #[arg(required = true)]
    scenarios: Vec<Scenario>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PidNamespace {
    Pod,
    Container,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scenario {
    Version,
    Pod,
    Five,
    BadInput,
    PodStart,
    Hold,
    RemoveAll,
}

/// The check lines and the count of failed ones.
#[derive(Default)]
struct Report {
    failed: usize,
}

impl Report {
    /// Prints `check NAME ok[: context]` or `check NAME FAIL: error` (counted).
    fn check(&mut self, name: &str, result: Result<String>) {
        match result {
            Ok(ctx) if ctx.is_empty() => println!("check {name} ok"),
            Ok(ctx) => println!("check {name} ok: {}", one_line(&ctx)),
            Err(e) => {
                println!("check {name} FAIL: {}", one_line(&format!("{e:#}")));
                self.failed += 1;
            }
        }
    }

    /// A check whose value the scenario needs further on: Some(value) if it passed.
    fn need<T>(&mut self, name: &str, result: Result<(T, String)>) -> Option<T> {
        match result {
            Ok((v, ctx)) => {
                self.check(name, Ok(ctx));
                Some(v)
            }
            Err(e) => {
                self.check(name, Err(e));
                None
            }
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An id's first 12 characters (all of it if shorter, or not ASCII).
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// An error status as `Code: message` (what the check lines print).
fn status_text(s: &Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// The CRI runtime service and what every pod of a run shares.
#[derive(Clone)]
struct Cri {
    rt: RuntimeServiceClient<Channel>,
    handler: String,
    image: String,
    work: PathBuf,
    bundle_root: PathBuf,
    exec_timeout_secs: i64,
    json: bool,
    /// The pid namespace mode (cri::NamespaceMode) of the pods and their containers.
    pid_mode: i32,
}

async fn connect(endpoint: &str, timeout: Duration) -> Result<RuntimeServiceClient<Channel>> {
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
const SLEEP_C1: &str = "100001";
const SLEEP_C2: &str = "100002";

impl Cri {
    fn json<T: serde::Serialize>(&self, what: &str, v: &T) {
        if self.json {
            match serde_json::to_string(v) {
                Ok(s) => println!("json {what} {s}"),
                Err(e) => println!("json {what} (not serializable: {e})"),
            }
        }
    }

    fn namespaces(&self) -> cri::NamespaceOption {
        // Pod: the containers share the pod's network, pid and IPC namespaces (pid: Kubernetes'
        // shareProcessNamespace; unless --pid-namespace container).
        cri::NamespaceOption {
            network: cri::NamespaceMode::Pod as i32,
            pid: self.pid_mode,
            ipc: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }

    fn pod_config(&self, name: &str) -> cri::PodSandboxConfig {
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

    fn container_config(
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

    async fn version(&self) -> Result<cri::VersionResponse, Status> {
        let req = cri::VersionRequest {
            version: "v1".to_owned(),
        };
        let resp = self.rt.clone().version(req).await?.into_inner();
        self.json("VersionResponse", &resp);
        Ok(resp)
    }

    async fn run_pod_with(
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

    async fn run_pod(&self, config: &cri::PodSandboxConfig) -> Result<String, Status> {
        self.run_pod_with(config, &self.handler).await
    }

    async fn create_container(
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

    async fn start_container(&self, id: &str) -> Result<(), Status> {
        let req = cri::StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.json("StartContainerRequest", &req);
        self.rt.clone().start_container(req).await?;
        Ok(())
    }

    /// CreateContainer + StartContainer.
    async fn create_and_start(
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

    async fn pod_status(&self, id: &str) -> Result<cri::PodSandboxStatus, Status> {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        };
        let resp = self.rt.clone().pod_sandbox_status(req).await?.into_inner();
        self.json("PodSandboxStatusResponse", &resp);
        resp.status
            .ok_or_else(|| Status::internal("PodSandboxStatus without a status"))
    }

    async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus, Status> {
        let req = cri::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        let resp = self.rt.clone().container_status(req).await?.into_inner();
        self.json("ContainerStatusResponse", &resp);
        resp.status
            .ok_or_else(|| Status::internal("ContainerStatus without a status"))
    }

    async fn exec_sync(&self, id: &str, cmd: &[&str]) -> Result<cri::ExecSyncResponse, Status> {
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
    async fn sh(&self, id: &str, script: &str) -> Result<String> {
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

    async fn list_pods(&self) -> Result<Vec<cri::PodSandbox>, Status> {
        let resp = self
            .rt
            .clone()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await?
            .into_inner();
        self.json("ListPodSandboxResponse", &resp);
        Ok(resp.items)
    }

    async fn list_containers(&self, pod: Option<&str>) -> Result<Vec<cri::Container>, Status> {
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

    async fn stop_pod(&self, id: &str) -> Result<(), Status> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.json("StopPodSandboxRequest", &req);
        self.rt.clone().stop_pod_sandbox(req).await?;
        Ok(())
    }

    async fn remove_pod(&self, id: &str) -> Result<(), Status> {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.json("RemovePodSandboxRequest", &req);
        self.rt.clone().remove_pod_sandbox(req).await?;
        Ok(())
    }

    /// StopPodSandbox + RemovePodSandbox, then the pod's cgroup parent removed (kubelet's part:
    /// it fails while a container's cgroup is left in it).
    async fn teardown(&self, id: &str, name: &str) -> Result<()> {
        self.stop_pod(id)
            .await
            .map_err(|s| anyhow!("StopPodSandbox {}: {}", short(id), status_text(&s)))?;
        self.remove_pod(id)
            .await
            .map_err(|s| anyhow!("RemovePodSandbox {}: {}", short(id), status_text(&s)))?;
        remove_pod_cgroup(name).await
    }
}

/// Removes the cgroup parent directory of pod `name` (and the common parent once empty), if it
/// exists; retried for 10 s (a runtime may still be removing the containers' cgroups).
async fn remove_pod_cgroup(name: &str) -> Result<()> {
    let dir = Path::new(CGROUP_ROOT).join(POD_NAMESPACE).join(name);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::remove_dir(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) if Instant::now() >= deadline => {
                let left: Vec<String> = std::fs::read_dir(&dir)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .filter(|e| e.path().is_dir())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                bail!(
                    "pod cgroup {} not removable ({e}): cgroups left in it: {left:?}",
                    dir.display()
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    // The common parent: only once no other pod's is in it.
    let _ = std::fs::remove_dir(Path::new(CGROUP_ROOT).join(POD_NAMESPACE));
    Ok(())
}

/// The containerd shims running (processes whose argv[0]'s file name starts with
/// `containerd-shim`), as their command lines.
fn shims() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_shim = argv
            .first()
            .and_then(|a0| Path::new(a0).file_name())
            .is_some_and(|n| n.to_string_lossy().starts_with("containerd-shim"));
        if is_shim {
            out.push(argv);
        }
    }
    out
}

/// The shims serving `ids` (`-id <one of ids>` on their command line).
fn shims_of(ids: &[&str]) -> Vec<Vec<String>> {
    shims()
        .into_iter()
        .filter(|argv| {
            argv.windows(2)
                .any(|w| w[0] == "-id" && ids.contains(&w[1].as_str()))
        })
        .collect()
}

/// Checks that each pod of `pods` has exactly one shim (`-id <pod id>`) and that no container of
/// theirs has one of its own.
fn one_shim_per_pod(pods: &[&str], containers: &[&str]) -> Result<String> {
    for p in pods {
        let n = shims_of(&[p]).len();
        ensure!(n == 1, "{n} shims for pod {}: {:?}", short(p), shims());
    }
    let own = shims_of(containers);
    ensure!(
        own.is_empty(),
        "containers with a shim of their own: {own:?}"
    );
    let example = shims_of(&pods[..1])
        .first()
        .map(|a| a.join(" "))
        .unwrap_or_default();
    Ok(format!(
        "{} pod(s), one shim each, e.g. `{example}`",
        pods.len()
    ))
}

/// The annotations of the OCI spec containerd wrote for `id` (its bundle's config.json).
fn spec_annotations(
    bundle_root: &Path,
    id: &str,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let path = bundle_root.join(id).join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let spec: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(spec
        .get("annotations")
        .and_then(|a| a.as_object())
        .cloned()
        .unwrap_or_default())
}

fn annotation<'a>(a: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> &'a str {
    a.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

fn state_name(s: i32) -> String {
    cri::ContainerState::try_from(s)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("state {s}"))
}

fn pod_state_name(s: i32) -> String {
    cri::PodSandboxState::try_from(s)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("state {s}"))
}

/// Fails unless the call failed with code `want`; the context: the error's code and text.
fn expect_error<T: std::fmt::Debug>(
    r: Result<T, Status>,
    want: Option<Code>,
    mentions: &str,
) -> Result<String> {
    match r {
        Ok(v) => bail!("succeeded: {v:?}"),
        Err(s) => {
            if let Some(want) = want {
                ensure!(
                    s.code() == want,
                    "wanted code {want:?}, got {}",
                    status_text(&s)
                );
            }
            ensure!(
                s.message().contains(mentions),
                "the error does not mention {mentions:?}: {}",
                status_text(&s)
            );
            Ok(format!("error {}", status_text(&s)))
        }
    }
}

// --- scenarios ---------------------------------------------------------------------------------

async fn scenario_version(cri: &Cri, r: &mut Report) {
    let res = cri.version().await;
    r.check(
        "cri-version-v1",
        res.map_err(|s| anyhow!("Version: {}", status_text(&s)))
            .and_then(|v| {
                ensure!(
                    v.runtime_api_version == "v1",
                    "runtime_api_version {:?}",
                    v.runtime_api_version
                );
                Ok(format!(
                    "{} {}, CRI {}",
                    v.runtime_name, v.runtime_version, v.runtime_api_version
                ))
            }),
    );
}

async fn scenario_pod(cri: &Cri, r: &mut Report) {
    let name = "sp-pod";
    let volume = cri.work.join("pod-volume");
    if let Err(e) = std::fs::create_dir_all(&volume) {
        r.check("pod-volume-dir", Err(anyhow!("{}: {e}", volume.display())));
        return;
    }
    let pcfg = cri.pod_config(name);
    let t = Instant::now();
    let Some(pod) = r.need(
        "pod-run-pod-sandbox",
        async {
            let id = cri
                .run_pod(&pcfg)
                .await
                .map_err(|s| anyhow!("RunPodSandbox: {}", status_text(&s)))?;
            let st = cri
                .pod_status(&id)
                .await
                .map_err(|s| anyhow!("PodSandboxStatus: {}", status_text(&s)))?;
            ensure!(
                st.state == cri::PodSandboxState::SandboxReady as i32,
                "pod {} is {}",
                short(&id),
                pod_state_name(st.state)
            );
            let ip = st.network.map(|n| n.ip).unwrap_or_default();
            let ctx = format!(
                "pod {} ready in {} ms, ip {ip:?}",
                short(&id),
                ms(t.elapsed())
            );
            Ok((id, ctx))
        }
        .await,
    ) else {
        return;
    };
    pod_body(cri, r, &pod, &pcfg, &volume).await;

    // Teardown, whatever happened above.
    r.check(
        "pod-stop-pod-sandbox",
        async {
            let containers = cri.list_containers(Some(&pod)).await?;
            cri.stop_pod(&pod).await?;
            let st = cri.pod_status(&pod).await?;
            let mut states = vec![format!("pod {}", pod_state_name(st.state))];
            let mut ok = st.state == cri::PodSandboxState::SandboxNotready as i32;
            for c in &containers {
                let cs = cri.container_status(&c.id).await?;
                ok &= cs.state == cri::ContainerState::ContainerExited as i32;
                states.push(format!(
                    "{} {} exit {}",
                    short(&c.id),
                    state_name(cs.state),
                    cs.exit_code
                ));
            }
            Ok::<_, Status>((ok, states.join(", ")))
        }
        .await
        .map_err(|s| anyhow!("{}", status_text(&s)))
        .and_then(|(ok, states)| {
            ensure!(ok, "not all stopped: {states}");
            Ok(states)
        }),
    );
    r.check(
        "pod-remove-pod-sandbox",
        async {
            let containers = cri
                .list_containers(Some(&pod))
                .await
                .map_err(|s| anyhow!("{}", status_text(&s)))?;
            cri.remove_pod(&pod)
                .await
                .map_err(|s| anyhow!("RemovePodSandbox: {}", status_text(&s)))?;
            let gone = expect_error(cri.pod_status(&pod).await, Some(Code::NotFound), "")
                .context("PodSandboxStatus after RemovePodSandbox")?;
            for c in &containers {
                expect_error(cri.container_status(&c.id).await, Some(Code::NotFound), "")
                    .with_context(|| {
                        format!("ContainerStatus {} after RemovePodSandbox", short(&c.id))
                    })?;
            }
            remove_pod_cgroup(name).await?;
            Ok(format!(
                "pod and its {} containers gone (PodSandboxStatus: {gone})",
                containers.len()
            ))
        }
        .await,
    );
    r.check("pod-list-empty", nothing_listed(cri).await);
    let _ = std::fs::remove_dir_all(&volume);
}

/// ListPodSandbox and ListContainers list nothing.
async fn nothing_listed(cri: &Cri) -> Result<String> {
    let pods = cri
        .list_pods()
        .await
        .map_err(|s| anyhow!("ListPodSandbox: {}", status_text(&s)))?;
    let containers = cri
        .list_containers(None)
        .await
        .map_err(|s| anyhow!("ListContainers: {}", status_text(&s)))?;
    ensure!(
        pods.is_empty() && containers.is_empty(),
        "listed: pods {:?}, containers {:?}",
        pods.iter()
            .map(|p| (short(&p.id), pod_state_name(p.state)))
            .collect::<Vec<_>>(),
        containers
            .iter()
            .map(|c| (short(&c.id), state_name(c.state)))
            .collect::<Vec<_>>()
    );
    Ok(String::new())
}

/// The `pod` scenario's checks between RunPodSandbox and StopPodSandbox.
async fn pod_body(
    cri: &Cri,
    r: &mut Report,
    pod: &str,
    pcfg: &cri::PodSandboxConfig,
    volume: &Path,
) {
    let t = Instant::now();
    let Some((c1, c2)) = r.need(
        "pod-create-and-start-two-containers",
        async {
            let c1cfg = cri.container_config("c1", &["sleep", SLEEP_C1], Some(volume));
            let c2cfg = cri.container_config("c2", &["sleep", SLEEP_C2], Some(volume));
            let c1 = cri.create_and_start(pod, pcfg, &c1cfg).await?;
            let c2 = cri.create_and_start(pod, pcfg, &c2cfg).await?;
            for id in [&c1, &c2] {
                let st = cri
                    .container_status(id)
                    .await
                    .map_err(|s| anyhow!("ContainerStatus: {}", status_text(&s)))?;
                ensure!(
                    st.state == cri::ContainerState::ContainerRunning as i32,
                    "container {} is {}",
                    short(id),
                    state_name(st.state)
                );
            }
            let ctx = format!(
                "c1 {} c2 {} running in {} ms",
                short(&c1),
                short(&c2),
                ms(t.elapsed())
            );
            Ok(((c1, c2), ctx))
        }
        .await,
    ) else {
        return;
    };

    r.check(
        "pod-one-shim-for-the-pod",
        one_shim_per_pod(&[pod], &[&c1, &c2]),
    );

    // What containerd tells the runtime (its shim) about each container: the OCI annotations.
    r.check(
        "pod-spec-annotations",
        (|| {
            let sandbox = spec_annotations(&cri.bundle_root, pod)?;
            println!("spec sandbox annotations {}", serde_json::Value::Object(sandbox.clone()));
            ensure!(
                annotation(&sandbox, "io.kubernetes.cri.container-type") == "sandbox",
                "sandbox spec: container-type {:?}",
                annotation(&sandbox, "io.kubernetes.cri.container-type")
            );
            for c in [&c1, &c2] {
                let a = spec_annotations(&cri.bundle_root, c)?;
                println!("spec container {} annotations {}", short(c), serde_json::Value::Object(a.clone()));
                ensure!(
                    annotation(&a, "io.kubernetes.cri.container-type") == "container"
                        && annotation(&a, "io.kubernetes.cri.sandbox-id") == pod,
                    "container {} spec: container-type {:?}, sandbox-id {:?}",
                    short(c),
                    annotation(&a, "io.kubernetes.cri.container-type"),
                    annotation(&a, "io.kubernetes.cri.sandbox-id")
                );
            }
            Ok("sandbox: container-type=sandbox; containers: container-type=container, sandbox-id=<pod>".to_owned())
        })(),
    );

    r.check(
        "pod-exec-sync-exact-stdout",
        async {
            let x = cri
                .exec_sync(&c1, &["echo", "hello from c1"])
                .await
                .map_err(|s| anyhow!("ExecSync: {}", status_text(&s)))?;
            ensure!(
                x.exit_code == 0 && x.stdout == b"hello from c1\n" && x.stderr.is_empty(),
                "exit {}, stdout {:?}, stderr {:?}",
                x.exit_code,
                String::from_utf8_lossy(&x.stdout),
                String::from_utf8_lossy(&x.stderr)
            );
            Ok("exit 0, stdout \"hello from c1\\n\"".to_owned())
        }
        .await,
    );
    r.check(
        "pod-exec-sync-exit-code-3",
        async {
            let x = cri
                .exec_sync(&c2, &["sh", "-c", "echo out; echo err >&2; exit 3"])
                .await
                .map_err(|s| anyhow!("ExecSync: {}", status_text(&s)))?;
            ensure!(
                x.exit_code == 3 && x.stdout == b"out\n" && x.stderr == b"err\n",
                "exit {}, stdout {:?}, stderr {:?}",
                x.exit_code,
                String::from_utf8_lossy(&x.stdout),
                String::from_utf8_lossy(&x.stderr)
            );
            Ok("exit 3, stdout \"out\\n\", stderr \"err\\n\"".to_owned())
        }
        .await,
    );

    // Shared pid namespace: each container sees the other's sleep.
    let procs = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <$f; echo; done";
    r.check(
        "pod-shared-pid-namespace",
        async {
            let in_c1 = cri.sh(&c1, procs).await?;
            let in_c2 = cri.sh(&c2, procs).await?;
            let sees = |out: &str, arg: &str| out.lines().any(|l| l.trim() == format!("sleep {arg}"));
            ensure!(
                sees(&in_c1, SLEEP_C2) && sees(&in_c2, SLEEP_C1),
                "c1 sees {:?}; c2 sees {:?}",
                in_c1.lines().collect::<Vec<_>>(),
                in_c2.lines().collect::<Vec<_>>()
            );
            Ok(format!(
                "c1 sees c2's `sleep {SLEEP_C2}` and c2 sees c1's `sleep {SLEEP_C1}` ({} processes)",
                in_c1.lines().filter(|l| !l.trim().is_empty()).count()
            ))
        }
        .await,
    );

    // The volume: written in c1, read in c2 and on the host.
    let token = format!(
        "token-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    );
    r.check(
        "pod-shared-volume",
        async {
            cri.sh(&c1, &format!("echo {token} >/shared/from-c1"))
                .await?;
            let in_c2 = cri.sh(&c2, "cat /shared/from-c1").await?;
            let host_path = volume.join("from-c1");
            let on_host = std::fs::read_to_string(&host_path)
                .with_context(|| format!("{}", host_path.display()))?;
            ensure!(
                in_c2.trim_end() == token && on_host.trim_end() == token,
                "wrote {token:?} in c1; c2 read {in_c2:?}, the host {on_host:?}"
            );
            Ok(format!("{token} written in c1, read in c2 and on the host"))
        }
        .await,
    );

    r.check(
        "pod-container-stats-memory",
        async {
            let resp = cri
                .rt
                .clone()
                .container_stats(cri::ContainerStatsRequest {
                    container_id: c1.clone(),
                })
                .await
                .map_err(|s| anyhow!("ContainerStats: {}", status_text(&s)))?
                .into_inner();
            cri.json("ContainerStatsResponse", &resp);
            let stats = resp.stats.context("no stats")?;
            let id = stats
                .attributes
                .as_ref()
                .map(|a| a.id.as_str())
                .unwrap_or_default();
            ensure!(id == c1, "stats of {id:?}, not c1");
            let mem = stats.memory.context("no memory stats")?;
            let ws = mem.working_set_bytes.map(|v| v.value).unwrap_or_default();
            let usage = mem.usage_bytes.map(|v| v.value).unwrap_or_default();
            ensure!(ws > 0, "working set {ws} bytes (usage {usage})");
            let cpu = stats
                .cpu
                .and_then(|c| c.usage_core_nano_seconds)
                .map(|v| v.value);
            Ok(format!(
                "working set {ws} bytes, usage {usage} bytes, cpu {cpu:?} ns"
            ))
        }
        .await,
    );

    // Resources: the container's own cgroup files, before and after the update. (Its cgroup
    // v2 path, from /proc/self/cgroup, under /sys/fs/cgroup: with a cgroup namespace the path is
    // `/`; without one, runc may mount the container's own cgroup at /sys/fs/cgroup.)
    let cg = "p=$(sed -n 's/^0:://p' /proc/self/cgroup); d=/sys/fs/cgroup$p; \
              [ -f $d/memory.max ] || d=/sys/fs/cgroup; cat $d/memory.max $d/cpu.max";
    r.check(
        "pod-update-resources-in-cgroup",
        async {
            let before = cri.sh(&c1, cg).await?;
            let req = cri::UpdateContainerResourcesRequest {
                container_id: c1.clone(),
                linux: Some(cri::LinuxContainerResources {
                    cpu_period: CPU_PERIOD,
                    cpu_quota: CPU_QUOTA,
                    memory_limit_in_bytes: MEMORY_LIMIT,
                    ..Default::default()
                }),
                ..Default::default()
            };
            cri.json("UpdateContainerResourcesRequest", &req);
            cri.rt
                .clone()
                .update_container_resources(req)
                .await
                .map_err(|s| anyhow!("UpdateContainerResources: {}", status_text(&s)))?;
            let after = cri.sh(&c1, cg).await?;
            let want = format!("{MEMORY_LIMIT}\n{CPU_QUOTA} {CPU_PERIOD}\n");
            ensure!(
                before != want && after == want,
                "memory.max, cpu.max before {before:?}, after {after:?}, wanted {want:?}"
            );
            Ok(format!(
                "memory.max, cpu.max: {:?} -> {:?}",
                before.trim(),
                after.trim()
            ))
        }
        .await,
    );
}

async fn scenario_five(cri: &Cri, r: &mut Report) {
    const N: usize = 5;
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..N {
        let cri = cri.clone();
        set.spawn(async move {
            let name = format!("sp-five-{i}");
            let pcfg = cri.pod_config(&name);
            let started = Instant::now();
            let pod = cri.run_pod(&pcfg).await.map_err(|s| {
                (
                    name.clone(),
                    None,
                    anyhow!("RunPodSandbox: {}", status_text(&s)),
                )
            });
            let pod = match pod {
                Ok(p) => p,
                Err(e) => return Err(e),
            };
            let arg = format!("{}", 200_000 + i);
            let ccfg = cri.container_config("c", &["sleep", &arg], None);
            match cri.create_and_start(&pod, &pcfg, &ccfg).await {
                Ok(c) => Ok((name, pod, c, started.elapsed())),
                Err(e) => Err((name, Some(pod), e)),
            }
        });
    }
    // (name, pod id) of every pod that exists, for the teardown.
    let mut pods: Vec<(String, String)> = Vec::new();
    let mut running = Vec::new();
    let mut errors = Vec::new();
    while let Some(res) = set.join_next().await {
        match res {
            Ok(Ok((name, pod, c, took))) => {
                pods.push((name.clone(), pod.clone()));
                running.push((name, pod, c, took));
            }
            Ok(Err((name, pod, e))) => {
                if let Some(p) = pod {
                    pods.push((name.clone(), p));
                }
                errors.push(format!("{name}: {e:#}"));
            }
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    let all = ms(t.elapsed());
    r.check(
        "five-pods-ready",
        async {
            ensure!(errors.is_empty(), "{}", errors.join("; "));
            let mut ips = Vec::new();
            for (name, pod, c, _) in &running {
                let st = cri
                    .pod_status(pod)
                    .await
                    .map_err(|s| anyhow!("{name}: {}", status_text(&s)))?;
                ensure!(
                    st.state == cri::PodSandboxState::SandboxReady as i32,
                    "{name} is {}",
                    pod_state_name(st.state)
                );
                let cs = cri
                    .container_status(c)
                    .await
                    .map_err(|s| anyhow!("{name}: {}", status_text(&s)))?;
                ensure!(
                    cs.state == cri::ContainerState::ContainerRunning as i32,
                    "{name}'s container is {}",
                    state_name(cs.state)
                );
                ips.push(st.network.map(|n| n.ip).unwrap_or_default());
            }
            let mut distinct = ips.clone();
            distinct.sort();
            distinct.dedup();
            ensure!(
                running.len() == N && distinct.len() == N && !distinct.iter().any(String::is_empty),
                "{} pods running, ips {ips:?}",
                running.len()
            );
            let mut times: Vec<u128> = running.iter().map(|x| ms(x.3)).collect();
            times.sort_unstable();
            Ok(format!(
                "{N} pods ready in {all} ms (each {times:?} ms), ips {ips:?}"
            ))
        }
        .await,
    );
    let ids: Vec<&str> = pods.iter().map(|(_, p)| p.as_str()).collect();
    let cids: Vec<&str> = running.iter().map(|x| x.2.as_str()).collect();
    if !ids.is_empty() {
        r.check("five-one-shim-per-pod", one_shim_per_pod(&ids, &cids));
    }

    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (name, pod) in pods.clone() {
        let cri = cri.clone();
        set.spawn(async move {
            cri.teardown(&pod, &name)
                .await
                .map_err(|e| format!("{name}: {e:#}"))
        });
    }
    let mut errors = Vec::new();
    while let Some(res) = set.join_next().await {
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    let took = ms(t.elapsed());
    r.check(
        "five-pods-stopped-and-removed",
        async {
            ensure!(errors.is_empty(), "{}", errors.join("; "));
            nothing_listed(cri).await?;
            Ok(format!(
                "{} pods stopped and removed in {took} ms",
                pods.len()
            ))
        }
        .await,
    );
}

async fn scenario_bad_input(cri: &Cri, r: &mut Report) {
    const NO_SUCH: &str = "sandpod-no-such-id-0123456789";
    r.check(
        "bad-container-status-unknown-id",
        expect_error(
            cri.container_status(NO_SUCH).await,
            Some(Code::NotFound),
            NO_SUCH,
        ),
    );
    r.check(
        "bad-exec-sync-unknown-id",
        expect_error(
            cri.exec_sync(NO_SUCH, &["true"]).await,
            Some(Code::NotFound),
            NO_SUCH,
        ),
    );
    r.check(
        "bad-stop-pod-unknown-id",
        expect_error(cri.stop_pod(NO_SUCH).await, Some(Code::NotFound), NO_SUCH),
    );
    let pcfg = cri.pod_config("sp-bad");
    let ccfg = cri.container_config("c", &["sleep", "300000"], None);
    r.check(
        "bad-create-in-missing-sandbox",
        expect_error(
            cri.create_container(NO_SUCH, &pcfg, &ccfg).await,
            Some(Code::NotFound),
            NO_SUCH,
        ),
    );
    r.check(
        "bad-run-pod-unknown-handler",
        async {
            let ctx = expect_error(
                cri.run_pod_with(&cri.pod_config("sp-bad-handler"), "no-such-handler")
                    .await,
                None,
                "no-such-handler",
            )?;
            nothing_listed(cri)
                .await
                .context("after the failed RunPodSandbox")?;
            let _ = remove_pod_cgroup("sp-bad-handler").await;
            Ok(ctx)
        }
        .await,
    );
    r.check(
        "bad-run-pod-without-metadata",
        async {
            let mut cfg = cri.pod_config("sp-bad-meta");
            cfg.metadata = None;
            let ctx = expect_error(cri.run_pod(&cfg).await, None, "metadata")?;
            nothing_listed(cri)
                .await
                .context("after the failed RunPodSandbox")?;
            Ok(ctx)
        }
        .await,
    );

    // In a real pod: malformed containers and a missing binary.
    let Some(pod) = r.need(
        "bad-pod-runs",
        cri.run_pod(&pcfg)
            .await
            .map(|id| {
                let ctx = format!("pod {}", short(&id));
                (id, ctx)
            })
            .map_err(|s| anyhow!("RunPodSandbox: {}", status_text(&s))),
    ) else {
        return;
    };
    let mut empty = ccfg.clone();
    empty.image = Some(cri::ImageSpec::default());
    r.check(
        "bad-create-empty-image",
        async {
            let ctx = expect_error(cri.create_container(&pod, &pcfg, &empty).await, None, "")?;
            let left = cri
                .list_containers(Some(&pod))
                .await
                .map_err(|s| anyhow!("{}", status_text(&s)))?;
            ensure!(left.is_empty(), "containers left: {left:?}");
            Ok(ctx)
        }
        .await,
    );
    let mut no_meta = ccfg.clone();
    no_meta.metadata = None;
    r.check(
        "bad-create-without-metadata",
        async {
            let ctx = expect_error(
                cri.create_container(&pod, &pcfg, &no_meta).await,
                None,
                "metadata",
            )?;
            let left = cri
                .list_containers(Some(&pod))
                .await
                .map_err(|s| anyhow!("{}", status_text(&s)))?;
            ensure!(left.is_empty(), "containers left: {left:?}");
            Ok(ctx)
        }
        .await,
    );
    r.check(
        "bad-exec-missing-binary",
        async {
            let c = cri.create_and_start(&pod, &pcfg, &ccfg).await?;
            let missing = "/no/such/binary";
            let ctx = match cri.exec_sync(&c, &[missing]).await {
                Err(s) => {
                    ensure!(
                        s.message().contains(missing),
                        "the error does not name {missing}: {}",
                        status_text(&s)
                    );
                    format!("error {}", status_text(&s))
                }
                Ok(x) => {
                    let err = String::from_utf8_lossy(&x.stderr);
                    ensure!(
                        x.exit_code != 0 && err.contains(missing),
                        "exit {}, stderr {err:?}",
                        x.exit_code
                    );
                    format!("exit {}, stderr {err:?}", x.exit_code)
                }
            };
            // The container is unharmed.
            let out = cri.sh(&c, "echo still-here").await?;
            ensure!(out == "still-here\n", "after the failed exec: {out:?}");
            Ok(ctx)
        }
        .await,
    );
    r.check(
        "bad-pod-removed",
        async {
            cri.teardown(&pod, "sp-bad").await?;
            nothing_listed(cri).await
        }
        .await,
    );
}

async fn scenario_hold(cri: &Cri, r: &mut Report) {
    let name = "sp-hold";
    let pcfg = cri.pod_config(name);
    let ccfg = cri.container_config("c", &["sleep", "500000"], None);
    r.check(
        "hold-pod-running",
        async {
            let pod = cri
                .run_pod(&pcfg)
                .await
                .map_err(|s| anyhow!("RunPodSandbox: {}", status_text(&s)))?;
            let c = cri.create_and_start(&pod, &pcfg, &ccfg).await?;
            Ok(format!(
                "pod {} with container {} left running",
                short(&pod),
                short(&c)
            ))
        }
        .await,
    );
}

async fn scenario_remove_all(cri: &Cri, r: &mut Report) {
    r.check(
        "remove-all-pods",
        async {
            let pods = cri
                .list_pods()
                .await
                .map_err(|s| anyhow!("ListPodSandbox: {}", status_text(&s)))?;
            for p in &pods {
                let name = p
                    .metadata
                    .as_ref()
                    .map(|m| m.name.as_str())
                    .unwrap_or_default();
                cri.teardown(&p.id, name).await?;
            }
            nothing_listed(cri).await?;
            Ok(format!("{} pod(s) stopped and removed", pods.len()))
        }
        .await,
    );
}

async fn scenario_pod_start(cri: &Cri, r: &mut Report, rounds: usize) {
    let mut times = Vec::new();
    let mut errors = Vec::new();
    for i in 0..rounds {
        let name = format!("sp-bench-{i}");
        let pcfg = cri.pod_config(&name);
        let ccfg = cri.container_config("c", &["sleep", "400000"], None);
        let t = Instant::now();
        let pod = match cri.run_pod(&pcfg).await {
            Ok(p) => p,
            Err(s) => {
                errors.push(format!("round {i}: RunPodSandbox: {}", status_text(&s)));
                continue;
            }
        };
        match cri.create_and_start(&pod, &pcfg, &ccfg).await {
            Ok(_) => times.push(ms(t.elapsed())),
            Err(e) => errors.push(format!("round {i}: {e:#}")),
        }
        if let Err(e) = cri.teardown(&pod, &name).await {
            errors.push(format!("round {i}: teardown: {e:#}"));
        }
    }
    let mut sorted = times.clone();
    sorted.sort_unstable();
    if let Some(median) = sorted.get(sorted.len() / 2) {
        println!(
            "bench pod_start_ms handler={} median={median} rounds={times:?}",
            cri.handler
        );
    }
    r.check(
        "pod-start-bench",
        async {
            ensure!(errors.is_empty(), "{}", errors.join("; "));
            ensure!(
                times.len() == rounds && rounds > 0,
                "{} rounds timed",
                times.len()
            );
            nothing_listed(cri).await?;
            Ok(format!("{rounds} rounds"))
        }
        .await,
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let timeout = Duration::from_secs(args.call_timeout);
    let rt = connect(&args.endpoint, timeout).await?;
    let work = args
        .work_dir
        .join(format!("sandpod-cri.{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let cri = Cri {
        rt,
        handler: args.handler.clone(),
        image: args.image.clone(),
        work: work.clone(),
        bundle_root: args.bundle_root.clone(),
        // ExecSync's own timeout: under the call's.
        exec_timeout_secs: i64::try_from(args.call_timeout.saturating_sub(10).max(10))
            .unwrap_or(i64::MAX),
        json: args.print_json,
        pid_mode: match args.pid_namespace {
            PidNamespace::Pod => cri::NamespaceMode::Pod as i32,
            PidNamespace::Container => cri::NamespaceMode::Container as i32,
        },
    };
    let mut report = Report::default();
    for s in &args.scenarios {
        let t = Instant::now();
        println!("=== scenario {s:?} (handler {})", args.handler);
        match s {
            Scenario::Version => scenario_version(&cri, &mut report).await,
            Scenario::Pod => scenario_pod(&cri, &mut report).await,
            Scenario::Five => scenario_five(&cri, &mut report).await,
            Scenario::BadInput => scenario_bad_input(&cri, &mut report).await,
            Scenario::PodStart => scenario_pod_start(&cri, &mut report, args.rounds).await,
            Scenario::Hold => scenario_hold(&cri, &mut report).await,
            Scenario::RemoveAll => scenario_remove_all(&cri, &mut report).await,
        }
        println!("=== scenario {s:?} took {} ms", ms(t.elapsed()));
    }
    let _ = std::fs::remove_dir_all(&work);
    println!("sandpod-cri: {} failed", report.failed);
    if report.failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
