//! Creating and destroying a sandbox. Creation: check the id, make the state directory, set up the
//! virtio-fs share with the container's rootfs, start the monitor (which starts virtiofsd and the
//! VMM), reach the agent, set the sandbox up in the guest. Any failure undoes every step done so
//! far; [`destroy`] undoes them for a sandbox made by another process.
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use sandpod_protocol::shared::{guest_rootfs, GUEST_SHARED_DIR, VIRTIOFS_TAG};
use tokio::process::Child;

use super::layout::{validate_id, Layout};
use super::monitor::{Children, MonitorPlan};
use super::process::ProcessIdent;
use super::shared_dir::{add_container, mounts_under, prepare_share, unmount_all};
use super::state::{now_rfc3339, write_json_atomic, SandboxState, Status};
use crate::agent_client::proto::{CreateSandboxRequest, Mount};
use crate::agent_client::{AgentClient, ClientConfig, HybridVsockConnector};
use crate::bundle::Bundle;
use crate::hypervisor::{CacheMode, VirtiofsdCommand, VmSize, VmmCommand};
use crate::paths::RuntimePaths;

/// How long the monitor gets to stop the VM before it is killed.
const MONITOR_GRACE: Duration = Duration::from_secs(10);
/// Lines of the guest console shown when the VM dies while booting.
const CONSOLE_TAIL_LINES: usize = 15;

/// What a sandbox is created from.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// State root (`--root`), e.g. /run/sandpod.
    pub root: PathBuf,
    /// The sandbox id; its first container has the same id.
    pub id: String,
    pub bundle: Bundle,
    pub paths: RuntimePaths,
    /// The runtime log the monitor writes (guest logs included); None: `<state>/sandpod.log`.
    pub log: Option<PathBuf>,
    pub cache: CacheMode,
    /// How long to wait for the agent after the VM started.
    pub boot_timeout: Duration,
    /// The runtime's own executable (re-executed as the monitor).
    pub self_exe: PathBuf,
}

/// A created sandbox whose agent answers, with its container's rootfs shared.
pub struct Sandbox {
    pub layout: Layout,
    pub state: SandboxState,
    pub client: AgentClient,
    /// The spec for the agent (bind sources rewritten to guest paths).
    pub guest_spec: Vec<u8>,
    /// The container rootfs as the guest sees it.
    pub guest_rootfs: String,
    /// The monitor, when this process started it (reaped by [`Sandbox::destroy`]).
    monitor: Option<Child>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("state", &self.state)
            .finish()
    }
}

fn console_tail(layout: &Layout) -> String {
    let text = std::fs::read_to_string(layout.console_log()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(CONSOLE_TAIL_LINES)..].join("\n")
}

impl Sandbox {
    /// Creates the sandbox (see the module docs). On error nothing is left behind.
    pub async fn create(opts: SandboxOptions) -> anyhow::Result<Sandbox> {
        validate_id(&opts.id)?;
        std::fs::create_dir_all(&opts.root)
            .with_context(|| format!("creating the state root {}", opts.root.display()))?;
        let layout = Layout::new(&opts.root, &opts.id);
        match std::fs::create_dir(&layout.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("container {:?} already exists", opts.id)
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", layout.dir.display())),
        }
        let mut state = SandboxState {
            id: opts.id.clone(),
            bundle: opts.bundle.dir.clone(),
            status: Status::Creating,
            monitor: None,
            guest_pid: None,
            created: now_rfc3339(),
            mounts: Vec::new(),
        };
        let mut monitor = None;
        match create_steps(&opts, &layout, &mut state, &mut monitor).await {
            Ok((client, guest_spec)) => Ok(Sandbox {
                layout,
                state,
                client,
                guest_spec,
                guest_rootfs: guest_rootfs(&opts.id),
                monitor,
            }),
            Err(e) => {
                if let Err(ce) = teardown(&layout, &state) {
                    tracing::error!("cleaning up after a failed create: {ce:#}");
                }
                if let Some(mut m) = monitor {
                    let _ = m.wait().await;
                }
                Err(e)
            }
        }
    }

    /// Records a new status.
    pub fn set_status(&mut self, status: Status) -> anyhow::Result<()> {
        self.state.status = status;
        self.state.save(&self.layout.state())?;
        Ok(())
    }

    /// Stops the VM and removes everything of the sandbox.
    pub async fn destroy(mut self) -> anyhow::Result<()> {
        let r = teardown(&self.layout, &self.state);
        if let Some(m) = self.monitor.as_mut() {
            let _ = m.wait().await;
        }
        r
    }
}

async fn create_steps(
    opts: &SandboxOptions,
    layout: &Layout,
    state: &mut SandboxState,
    monitor: &mut Option<Child>,
) -> anyhow::Result<(AgentClient, Vec<u8>)> {
    state.save(&layout.state())?;
    // Record every mount as soon as it exists, so teardown finds it whatever fails next.
    let shared = prepare_share(layout, &mut state.mounts).and_then(|()| {
        add_container(
            layout,
            &opts.id,
            &opts.bundle.dir,
            &opts.bundle.rootfs,
            &opts.bundle.spec,
            opts.bundle.readonly_rootfs(),
            &mut state.mounts,
        )
    });
    state.save(&layout.state())?;
    let guest_spec = shared.context("sharing the container's files with the VM")?;

    let child = start_monitor(opts, layout)?;
    state.monitor = child.id().and_then(ProcessIdent::of);
    *monitor = Some(child);
    state.save(&layout.state())?;

    let connector = HybridVsockConnector::new(layout.vsock());
    let config = ClientConfig {
        connect_deadline: opts.boot_timeout,
        ..ClientConfig::default()
    };
    let child = monitor.as_mut().context("monitor not started")?;
    let client = tokio::select! {
        c = AgentClient::connect(connector, config) => c.with_context(|| {
            format!("the VM's agent did not answer; guest console:\n{}", console_tail(layout))
        })?,
        st = child.wait() => bail!(
            "the VM stopped while booting (monitor {st:?}); see {}; guest console:\n{}",
            opts.log.clone().unwrap_or_else(|| layout.default_log()).display(),
            console_tail(layout)
        ),
    };

    let mut req = CreateSandboxRequest::new();
    if let Some(h) = opts.bundle.spec.hostname() {
        req.hostname = h.clone();
    }
    let mut share = Mount::new();
    share.source = VIRTIOFS_TAG.into();
    share.target = GUEST_SHARED_DIR.into();
    share.fstype = "virtiofs".into();
    req.mounts.push(share);
    client
        .create_sandbox(&req)
        .await
        .context("setting up the sandbox in the guest")?;
    Ok((client, guest_spec))
}

/// Writes monitor.json and starts `sandpod` as the sandbox's monitor, in its own process group
/// (a Ctrl-C meant for the caller does not reach it), output to the runtime log.
fn start_monitor(opts: &SandboxOptions, layout: &Layout) -> anyhow::Result<Child> {
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let vmm = VmmCommand {
        vmm: opts.paths.vmm.clone(),
        kernel: opts.paths.kernel.clone(),
        initrd: opts.paths.initrd.clone(),
        size: VmSize::for_spec(&opts.bundle.spec, host_cpus),
        vsock_uds: layout.vsock(),
        console_log: layout.console_log(),
        fs: vec![(VIRTIOFS_TAG.to_string(), layout.virtiofsd_socket())],
    };
    let fsd = VirtiofsdCommand {
        virtiofsd: opts.paths.virtiofsd.clone(),
        socket: layout.virtiofsd_socket(),
        shared_dir: layout.shared(),
        cache: opts.cache,
    };
    let plan = MonitorPlan {
        vmm: vmm.argv(),
        virtiofsd: Some((fsd.argv(), fsd.socket.clone())),
        guest_log_socket: PathBuf::from(format!(
            "{}_{}",
            layout.vsock().display(),
            sandpod_protocol::LOG_PORT
        )),
    };
    write_json_atomic(&layout.monitor_plan(), &plan)?;
    let log_path = opts.log.clone().unwrap_or_else(|| layout.default_log());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening the log {}", log_path.display()))?;
    let mut cmd = tokio::process::Command::new(&opts.self_exe);
    cmd.arg("--log")
        .arg(&log_path)
        .arg("monitor")
        .arg(&layout.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    cmd.spawn()
        .with_context(|| format!("starting the monitor {}", opts.self_exe.display()))
}

/// Stops the VM and removes a sandbox's mounts and state directory. Safe to repeat.
fn teardown(layout: &Layout, state: &SandboxState) -> anyhow::Result<()> {
    if let Some(m) = state.monitor {
        if !m.terminate(MONITOR_GRACE) {
            tracing::error!(pid = m.pid, "the sandbox monitor does not go away");
        }
    }
    // The VM's processes die with the monitor (PR_SET_PDEATHSIG); make sure of it.
    if let Ok(bytes) = std::fs::read(layout.children()) {
        if let Ok(children) = serde_json::from_slice::<Children>(&bytes) {
            for c in [children.vmm, children.virtiofsd].into_iter().flatten() {
                c.terminate(Duration::from_secs(5));
            }
        }
    }
    let mut errors = unmount_all(&state.mounts);
    // Anything else still mounted there (unmount_all goes innermost, i.e. last, first).
    let mut left = mounts_under(&layout.dir);
    left.sort_by_key(|p| p.components().count());
    errors.extend(unmount_all(&left));
    let left = mounts_under(&layout.dir);
    if !left.is_empty() {
        // Never delete through a mount: that would delete the container's files on the host.
        bail!(
            "{} still has mounts ({}); not removing it: {}",
            layout.dir.display(),
            left.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            errors.join("; ")
        );
    }
    match std::fs::remove_dir_all(&layout.dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", layout.dir.display())),
    }
}

/// Deletes the sandbox `id` under `root`, whoever created it.
pub fn destroy(root: &std::path::Path, id: &str) -> anyhow::Result<()> {
    validate_id(id)?;
    let layout = Layout::new(root, id);
    if !layout.dir.is_dir() {
        bail!("container {id:?} does not exist");
    }
    let state = match SandboxState::load(&layout.state()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{}: {e}; removing what is there", layout.state().display());
            SandboxState {
                id: id.into(),
                bundle: PathBuf::new(),
                status: Status::Stopped,
                monitor: None,
                guest_pid: None,
                created: String::new(),
                mounts: Vec::new(),
            }
        }
    };
    teardown(&layout, &state)
}
