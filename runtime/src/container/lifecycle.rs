//! create, start, kill and delete of a container, as runc's commands do them. The CLI's
//! container owns its sandbox (sandbox id = container id): create boots the VM for it, delete
//! stops it.
//!
//! create, in order: the state directory (the lock on the id); the stand-in (it holds the
//! sandbox's new network namespace and is the pid the hooks and the caller see); createRuntime
//! and prestart hooks; the VM; the container's files shared with it; the stand-in attaches the
//! stdio streams; CreateContainer (the init blocked before exec); the state and `--pid-file`.
//! Any failure undoes every step (nothing is left: no process, mount, socket or directory).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{bail, Context};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use sandpod_protocol::ErrorChain;

use super::hooks;
use super::standin::{exec_standins, Standin, StandinArgs};
use super::state::{ContainerState, Status};
use super::{RuntimeOptions, VmOptions, OPEN_TIMEOUT};
use crate::bundle::Bundle;
use crate::hypervisor::VmSize;
use crate::io::console::HostPty;
use crate::io::{IoConfig, StandinStdio};
use crate::paths::RuntimePaths;
use crate::sandbox::host_limits::HostLimits;
use crate::sandbox::jail::JailIds;
use crate::sandbox::process::ProcessIdent;
use crate::sandbox::state::{now_rfc3339_nanos, write_atomic};
use crate::sandbox::{host_cgroup, reserve, Layout, Sandbox, SandboxConfig};

/// How long delete waits for stand-ins to see their processes end.
const STANDIN_EXIT_WAIT: Duration = Duration::from_secs(5);

/// What `create` is given.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: Bundle,
    pub pid_file: Option<PathBuf>,
    pub io: IoConfig,
    pub vm: VmOptions,
}

/// Whether the spec asks for a new network namespace (no path): the stand-in makes it on the
/// host, for the hooks (Docker's libnetwork-setkey) and the networking to fill.
fn wants_new_netns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none())
        })
}

/// The network namespace the sandbox mirrors into the VM: the spec's by path (Podman's, a CNI
/// plugin's), or the stand-in's new one (filled by Docker's prestart hook); None when the spec
/// has no network namespace (the host's network cannot be given to a VM: the guest gets `lo`
/// only).
fn sandbox_netns(spec: &Spec, standin_pid: i32) -> Option<PathBuf> {
    let ns = spec.linux().as_ref()?.namespaces().as_ref()?;
    let net = ns.iter().find(|n| n.typ() == LinuxNamespaceType::Network)?;
    Some(match net.path() {
        Some(p) => p.clone(),
        None => PathBuf::from(format!("/proc/{standin_pid}/ns/net")),
    })
}

/// The spec the agent gets: the container uses the VM's network namespace (where the sandbox's
/// interfaces are), so the network namespace entry — new or by host path — is dropped.
pub(crate) fn guest_spec(spec: &Spec) -> Spec {
    let mut spec = spec.clone();
    if let Some(linux) = spec.linux_mut() {
        if let Some(ns) = linux.namespaces_mut() {
            ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
        }
    }
    spec
}

fn oci_state(id: &str, bundle: &Bundle, pid: i32, status: Status) -> super::OciState {
    super::OciState {
        oci_version: super::state::OCI_VERSION.into(),
        id: id.to_string(),
        pid,
        status: status.as_str().into(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: String::new(),
        annotations: annotations(&bundle.spec),
        owner: String::new(),
    }
}

fn annotations(spec: &Spec) -> BTreeMap<String, String> {
    spec.annotations()
        .as_ref()
        .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Creates container `opts.id` in a new sandbox; returns its stand-in (the caller may wait for
/// it: `run`; or leave it: `create`, whose caller reaps it).
pub async fn create(rt: &RuntimeOptions, opts: CreateOptions) -> anyhow::Result<Child> {
    let terminal = opts.bundle.terminal();
    hooks::check_supported(opts.bundle.spec.hooks().as_ref())?;
    let paths = RuntimePaths::discover(&rt.config.hypervisor)?;
    let layout = reserve(&rt.root, &opts.id)?;
    let mut standin: Option<Standin> = None;
    let mut sandbox: Option<Sandbox> = None;
    let mut cgroup: Option<PathBuf> = None;
    let r = create_steps(
        rt,
        &opts,
        &layout,
        paths,
        terminal,
        (&mut standin, &mut sandbox, &mut cgroup),
    )
    .await;
    match r {
        Ok(()) => {
            let s = standin.context("no stand-in")?;
            s.go().await
        }
        Err(e) => {
            if let Some(s) = standin {
                s.abort();
            }
            match sandbox {
                Some(sb) => {
                    if let Err(ce) = sb.destroy().await {
                        tracing::error!("cleaning up after a failed create: {ce:#}");
                    }
                }
                None => {
                    let _ = std::fs::remove_dir_all(&layout.dir);
                    if let Some(cg) = cgroup {
                        if let Err(ce) = host_cgroup::remove(&cg) {
                            tracing::warn!("{ce:#}");
                        }
                    }
                }
            }
            Err(e)
        }
    }
}

async fn create_steps(
    rt: &RuntimeOptions,
    opts: &CreateOptions,
    layout: &Layout,
    paths: RuntimePaths,
    terminal: bool,
    (standin, sandbox, cgroup): (
        &mut Option<Standin>,
        &mut Option<Sandbox>,
        &mut Option<PathBuf>,
    ),
) -> anyhow::Result<()> {
    let spec = &opts.bundle.spec;
    let size = VmSize::for_sandbox(spec, &rt.config.hypervisor)?;
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    match (cgroups_path, host_cgroup::unified_host()) {
        (Some(p), true) => {
            let path =
                host_cgroup::host_path(Path::new(host_cgroup::CGROUP_ROOT), &p.to_string_lossy())?;
            host_cgroup::create(&path)?;
            *cgroup = Some(path.clone());
            let limits = HostLimits::for_sandbox(size, spec);
            limits.apply(&path)?;
            tracing::debug!(cgroup = %path.display(), ?limits, "host cgroup limits set");
        }
        (Some(p), false) => tracing::info!(
            "cgroupsPath {} ignored: this host's cgroup hierarchy is not unified (cgroup v1 or \
             hybrid), so the sandbox has no host cgroup and no host limits",
            p.display()
        ),
        (None, _) => {}
    }
    let stdio = match (&opts.io, terminal) {
        (IoConfig::ConsoleSocket(sock), true) => {
            StandinStdio::Pty(HostPty::open()?.send_master(sock)?)
        }
        (IoConfig::ConsoleSocket(_), false) => {
            bail!("--console-socket is for a terminal (process.terminal is false)")
        }
        (IoConfig::Inherit, _) => StandinStdio::Inherit,
    };
    let streams = opts.io.streams(terminal);
    let args = StandinArgs {
        sandbox: opts.id.clone(),
        container: opts.id.clone(),
        exec_id: opts.id.clone(),
        tty: terminal,
        new_netns: wants_new_netns(spec),
        ..StandinArgs::default()
    }
    .with_streams(streams);
    let s = standin.insert(Standin::spawn(rt, layout, &args, stdio)?);
    s.ready().await?;
    let pid = s.ident.pid;
    if let Some(cg) = cgroup.as_deref() {
        host_cgroup::add(cg, s.child.id())?;
    }

    let state = oci_state(&opts.id, &opts.bundle, pid, Status::Creating);
    let spec_hooks = spec.hooks().as_ref();
    hooks::run(spec_hooks, "createRuntime", &state)?;
    hooks::run(spec_hooks, "prestart", &state)?;

    let cfg = SandboxConfig {
        root: rt.root.clone(),
        id: opts.id.clone(),
        size,
        hostname: spec.hostname().clone(),
        paths,
        log: rt.log.clone(),
        log_format: rt.log_format.clone(),
        debug: rt.debug,
        cache: opts.vm.cache,
        boot_timeout: opts.vm.boot_timeout,
        self_exe: rt.self_exe.clone(),
        host_cgroup: cgroup.clone(),
        jail: rt.config.jail.enabled.then_some(JailIds {
            uid: rt.config.jail.uid,
            gid: rt.config.jail.gid,
        }),
        netns: sandbox_netns(spec, pid),
        dns_relay: crate::sandbox::dns_relay::uses_docker_dns(spec),
        template: rt.config.template(),
    };
    let sb = sandbox.insert(Sandbox::create(&cfg, layout.clone()).await?);
    let step = std::time::Instant::now();
    let (guest_spec, guest_rootfs) =
        sb.share_container(&opts.id, &opts.bundle, &guest_spec(spec))?;
    let shared = step.elapsed();

    let s = standin.as_mut().context("no stand-in")?;
    let token = crate::agent_client::StreamToken::generate().context("drawing a stream token")?;
    s.attach(&token).await?;
    tracing::debug!(
        share_ms = shared.as_millis(),
        attach_ms = (step.elapsed() - shared).as_millis(),
        "rootfs shared, stdio attached"
    );
    let guest_pid = sb
        .client
        .create_container(&opts.id, guest_spec, &guest_rootfs, streams, &token)
        .await
        .context("creating the container")?;
    sb.boot.mark("create_container");
    sb.started_up();
    let cs = ContainerState {
        id: opts.id.clone(),
        sandbox_id: opts.id.clone(),
        bundle: opts.bundle.dir.clone(),
        rootfs: opts.bundle.rootfs.clone(),
        status: Status::Created,
        standin: Some(s.ident),
        guest_pid: Some(guest_pid),
        created: now_rfc3339_nanos(),
        annotations: annotations(spec),
        owner: String::new(),
        hooks: spec.hooks().clone(),
    };
    cs.save(layout)?;
    if let Some(p) = &opts.pid_file {
        write_atomic(p, pid.to_string().as_bytes())
            .with_context(|| format!("writing the pid file {}", p.display()))?;
    }
    Ok(())
}

/// Loads container `id` (the CLI's container and sandbox share the id).
pub fn load(rt: &RuntimeOptions, id: &str) -> anyhow::Result<(Layout, ContainerState)> {
    crate::sandbox::validate_id(id)?;
    let layout = Layout::new(&rt.root, id);
    if !ContainerState::path(&layout, id).is_file() {
        bail!("container does not exist");
    }
    let state = ContainerState::load(&layout, id)?;
    Ok((layout, state))
}

/// Opens the sandbox of a container that is not stopped (runc's "container not running" if it
/// is).
pub async fn open_running(
    rt: &RuntimeOptions,
    id: &str,
) -> anyhow::Result<(Layout, ContainerState, Sandbox)> {
    let (layout, state) = load(rt, id)?;
    if state.status(&layout) == Status::Stopped {
        bail!("container not running");
    }
    let sb = Sandbox::open(&rt.root, &state.sandbox_id, OPEN_TIMEOUT).await?;
    Ok((layout, state, sb))
}

/// Lets a created container's init run; then the poststart hooks (a failure is a warning).
pub async fn start(rt: &RuntimeOptions, id: &str) -> anyhow::Result<()> {
    let (layout, mut state) = load(rt, id)?;
    match state.status(&layout) {
        Status::Created => {}
        Status::Running => bail!("cannot start an already running container"),
        Status::Paused => bail!("cannot start an already paused container"),
        Status::Stopped => bail!("cannot start a container that has stopped"),
        Status::Creating => bail!("cannot start a container that is still being created"),
    }
    let sb = Sandbox::open(&rt.root, &state.sandbox_id, OPEN_TIMEOUT).await?;
    sb.client
        .start_container(id)
        .await
        .context("starting the container")?;
    state.status = Status::Running;
    state.save(&layout)?;
    if let Err(e) = hooks::run(state.hooks.as_ref(), "poststart", &state.oci(&layout)) {
        tracing::warn!("{}", ErrorChain(&e));
    }
    Ok(())
}

/// Sends `signal` to the container's init, or with `all` to every process of it.
pub async fn kill(rt: &RuntimeOptions, id: &str, signal: u32, all: bool) -> anyhow::Result<()> {
    let (_, _, sb) = open_running(rt, id).await?;
    if all {
        sb.client.signal_container_all(id, signal).await?;
    } else {
        sb.client.signal_process(id, signal).await?;
    }
    Ok(())
}

/// Deletes container `id`: refused while it runs unless `force` (a created container is killed
/// as runc does); stops its VM, removes its state, then runs the poststop hooks.
pub async fn delete(rt: &RuntimeOptions, id: &str, force: bool) -> anyhow::Result<()> {
    crate::sandbox::validate_id(id)?;
    let layout = Layout::new(&rt.root, id);
    if !layout.dir.is_dir() {
        bail!("container does not exist");
    }
    let state = ContainerState::load(&layout, id).ok();
    if let Some(st) = &state {
        let status = st.status(&layout);
        if !force && matches!(status, Status::Running | Status::Paused) {
            bail!(
                "cannot delete container {id} that is not stopped: {}",
                status.as_str()
            );
        }
        if status != Status::Stopped {
            if let Ok(sb) = Sandbox::open(&rt.root, &st.sandbox_id, OPEN_TIMEOUT).await {
                if let Err(e) = sb.client.remove_container(id).await {
                    tracing::warn!("removing the container in the guest: {}", ErrorChain(&e));
                }
            }
        }
        // Stand-ins end once their processes did; never leave one behind.
        let mut standins: Vec<ProcessIdent> = st.standin.into_iter().collect();
        standins.extend(exec_standins(&layout, id));
        for s in standins {
            if !s.wait_gone(STANDIN_EXIT_WAIT) {
                s.terminate(Duration::from_secs(1));
            }
        }
    }
    let sandbox_id = state.as_ref().map_or(id, |s| s.sandbox_id.as_str());
    crate::sandbox::destroy(&rt.root, sandbox_id)?;
    if let Some(st) = &state {
        let mut oci = st.oci(&layout);
        oci.status = Status::Stopped.as_str().into();
        if let Err(e) = hooks::run(st.hooks.as_ref(), "poststop", &oci) {
            tracing::warn!("{}", ErrorChain(&e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_namespace_is_the_hosts_then_the_vms() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"pid"},{"type":"network"}]}}"#,
        )
        .unwrap();
        assert!(wants_new_netns(&spec));
        let g = guest_spec(&spec);
        let ns = g.linux().as_ref().unwrap().namespaces().as_ref().unwrap();
        assert_eq!(ns.len(), 1);
        assert_eq!(ns[0].typ(), LinuxNamespaceType::Pid);
        let by_path: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"network","path":"/run/netns/x"}]}}"#,
        )
        .unwrap();
        assert!(!wants_new_netns(&by_path));
    }
}
