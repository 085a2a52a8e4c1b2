//! Creating, opening and destroying a sandbox. Creation: reserve the state directory (the lock
//! on the id), prepare the virtio-fs share, start the monitor (which starts virtiofsd and the
//! VMM), reach the agent, set the sandbox up in the guest. Any failure undoes every step done so
//! far; [`destroy`] undoes them for a sandbox made by another process. Containers are added to a
//! sandbox by `crate::container`.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use sandpod_protocol::shared::{guest_rootfs, GUEST_SHARED_DIR, VIRTIOFS_TAG};
use tokio::process::Child;

use super::layout::{validate_id, Layout};
use super::monitor::Children;
use super::share::{add_container, mounts_under, prepare_share, unmount_all, ContainerFiles};
use super::state::{now_rfc3339, SandboxState};
use super::template::spare::PendingRefill;
use super::template::start::start_vm;
use super::template::TemplateStore;
use super::vm_start::{sandbox_vm, VmSteps};
use crate::agent_client::proto::{CreateSandboxRequest, Mount};
use crate::agent_client::{AgentClient, ClientConfig, HybridVsockConnector, LogToken};
use crate::bundle::Bundle;
use crate::hypervisor::{CacheMode, VmSize};
use crate::paths::RuntimePaths;

/// How long the monitor gets to stop the VM before it is killed.
const MONITOR_GRACE: Duration = Duration::from_secs(10);
/// Lines of the guest console shown when the VM dies while booting.
const CONSOLE_TAIL_LINES: usize = 15;

/// What a sandbox is created from: the VM only (its containers come later, see
/// `crate::container`).
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// State root (`--root`), e.g. /run/sandpod.
    pub root: PathBuf,
    /// The sandbox id (the CLI's container id; the pod's id for the shim).
    pub id: String,
    pub size: VmSize,
    /// The guest's hostname (the spec's), if any.
    pub hostname: Option<String>,
    pub paths: RuntimePaths,
    /// The runtime log the monitor writes (guest logs included); None: `<state>/sandpod.log`.
    pub log: Option<PathBuf>,
    /// The log format and level the monitor uses (the caller's `--log-format`, `--debug`).
    pub log_format: String,
    pub debug: bool,
    pub cache: CacheMode,
    /// How long to wait for the agent after the VM started.
    pub boot_timeout: Duration,
    /// The runtime's own executable (re-executed as the monitor).
    pub self_exe: PathBuf,
    /// The sandbox's host cgroup, made by the caller (its processes go there; removed with it).
    pub host_cgroup: Option<PathBuf>,
    /// The VMM's jail (its uid and gid); None runs it unjailed (`--no-jail`: debugging only).
    pub jail: Option<super::jail::JailIds>,
    /// The pod's network namespace (a path on the host, as the process that made it sees it),
    /// mirrored into the VM; None: the guest has only `lo`.
    pub netns: Option<PathBuf>,
    /// Relay the guest's DNS queries to Docker's embedded DNS in `netns` (the container's
    /// resolv.conf names it: [`super::dns_relay::uses_docker_dns`]); ignored without `netns`.
    pub dns_relay: bool,
    /// Start the VM from its template (made on first use) when it can (see
    /// [`super::template`]); false: always boot it.
    pub template: bool,
}

/// A running sandbox whose agent answers.
pub struct Sandbox {
    pub layout: Layout,
    pub state: SandboxState,
    pub client: AgentClient,
    /// How long the start's phases took (only those of a sandbox this process created).
    pub boot: super::boot_phases::BootPhases,
    /// The monitor, when this process started it (reaped by [`Sandbox::destroy`]).
    monitor: Option<Child>,
    /// The template's spare refill this sandbox's restore owes ([`Sandbox::started_up`]).
    refill: Option<PendingRefill>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("state", &self.state)
            .finish()
    }
}

/// The last lines of the guest console (the file is read from its last 64 KiB only: the guest
/// writes it), escaped.
pub(crate) fn console_tail(layout: &Layout) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = Vec::new();
    if let Ok(mut f) = std::fs::File::open(layout.console_log()) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let _ = f.take(64 * 1024).read_to_end(&mut text);
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            l.chars()
                .take(300)
                .collect::<String>()
                .escape_debug()
                .to_string()
        })
        .collect();
    lines[lines.len().saturating_sub(CONSOLE_TAIL_LINES)..].join("\n")
}

/// Makes the sandbox's state directory; an existing one is runc's "already exists" error. This is
/// the lock that makes two creates of one id exclusive.
pub fn reserve(root: &Path, id: &str) -> anyhow::Result<Layout> {
    validate_id(id)?;
    std::fs::create_dir_all(root)
        .with_context(|| format!("creating the state root {}", root.display()))?;
    let layout = Layout::new(root, id);
    layout.check_socket_paths()?;
    match std::fs::create_dir(&layout.dir) {
        Ok(()) => {
            // Root only: it holds the sockets to the VM, the log token and the share's mounts.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&layout.dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("chmod 0700 {}", layout.dir.display()))?;
            Ok(layout)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("container with id exists: {id}")
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", layout.dir.display())),
    }
}

impl Sandbox {
    /// Boots the sandbox's VM in the reserved `layout` (see the module docs). On error everything
    /// is undone, the state directory included.
    pub async fn create(cfg: &SandboxConfig, layout: Layout) -> anyhow::Result<Sandbox> {
        let mut state = SandboxState {
            id: cfg.id.clone(),
            monitor: None,
            created: now_rfc3339(),
            mounts: Vec::new(),
            host_cgroup: cfg.host_cgroup.clone(),
            netns: super::network::recorded(cfg.netns.as_deref()),
        };
        let mut monitor = None;
        let mut boot = super::boot_phases::BootPhases::new();
        let mut refill = None;
        let created = create_steps(
            cfg,
            &layout,
            &mut state,
            &mut monitor,
            &mut boot,
            &mut refill,
        )
        .await;
        match created {
            Ok(client) => Ok(Sandbox {
                layout,
                state,
                client,
                boot,
                monitor,
                refill,
            }),
            Err(e) => {
                if let Err(ce) = teardown(&layout, &state) {
                    tracing::error!("cleaning up after a failed create: {ce:#}");
                }
                if let Some(mut m) = monitor {
                    let _ = m.wait().await;
                }
                // A `/proc/PID/ns/net` path is not in the state: the namespace is still the
                // one it names while the creator runs.
                if let Some(ns) = cfg.netns.clone() {
                    let _ =
                        tokio::task::spawn_blocking(move || super::network::teardown(&ns)).await;
                }
                Err(e)
            }
        }
    }

    /// The sandbox is up (its first container created): logs the start's phases and starts the
    /// refill of the template's spare its restore took, if it owes one. The refill runs at the
    /// idle class, but during the start it would still fill each of the start's pauses and be
    /// preempted at each wake-up: after it, the start has the CPU to itself.
    pub fn started_up(&mut self) {
        self.boot.log();
        if let Some(r) = self.refill.take() {
            r.spawn();
        }
    }

    /// Opens the running sandbox `id` made by any process: its monitor must be alive and its
    /// agent reachable within `timeout`.
    pub async fn open(root: &Path, id: &str, timeout: Duration) -> anyhow::Result<Sandbox> {
        validate_id(id)?;
        let layout = Layout::new(root, id);
        let state = SandboxState::load(&layout.state())
            .with_context(|| format!("reading the state of {id}"))?;
        if !state.monitor.is_some_and(|m| m.alive()) {
            bail!("the VM of {id} is not running");
        }
        let config = ClientConfig {
            connect_deadline: timeout,
            ..ClientConfig::default()
        };
        let client = AgentClient::connect(HybridVsockConnector::new(layout.vsock()), config)
            .await
            .with_context(|| format!("reaching the agent in the VM of {id}"))?;
        Ok(Sandbox {
            layout,
            state,
            client,
            boot: super::boot_phases::BootPhases::new(),
            monitor: None,
            refill: None,
        })
    }

    /// Shares a container's rootfs and bind-mount sources with the VM (attached below the
    /// share's top, so the sandbox's teardown takes them whatever fails next). Returns the spec
    /// for the agent and the guest path of the rootfs.
    pub fn share_container(
        &self,
        container_id: &str,
        bundle: &Bundle,
        spec: &oci_spec::runtime::Spec,
    ) -> anyhow::Result<(Vec<u8>, String)> {
        let shared = add_container(
            &self.layout,
            &ContainerFiles {
                id: container_id,
                bundle_dir: &bundle.dir,
                rootfs: &bundle.rootfs,
                spec,
                readonly_rootfs: bundle.readonly_rootfs(),
            },
        );
        let guest_spec = shared.context("sharing the container's files with the VM")?;
        Ok((guest_spec, guest_rootfs(container_id)))
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
    cfg: &SandboxConfig,
    layout: &Layout,
    state: &mut SandboxState,
    monitor: &mut Option<Child>,
    boot: &mut super::boot_phases::BootPhases,
    refill: &mut Option<PendingRefill>,
) -> anyhow::Result<AgentClient> {
    state.save(&layout.state())?;
    // Record every mount as soon as it exists, so teardown finds it whatever fails next.
    let shared = prepare_share(layout, &mut state.mounts);
    state.save(&layout.state())?;
    shared.context("preparing the directory shared with the VM")?;

    let mut net = match &cfg.netns {
        Some(ns) => Some(super::network::mirror(ns).await?),
        None => None,
    };
    let log_token = LogToken::generate().context("drawing the log token")?;
    boot.mark("prepare");
    let store = TemplateStore::new(&cfg.root);
    let template = if cfg.template {
        let vm = sandbox_vm(cfg, layout, net.as_ref()).vm_config();
        let t = super::template::build::template_for(cfg, &vm).await;
        boot.mark("template");
        t
    } else {
        None
    };
    let mut steps = VmSteps {
        cfg,
        layout,
        state,
        monitor,
        log_token: &log_token,
        net: &mut net,
        boot,
        refill,
    };
    let (client, kind) = start_vm(&mut steps, &store, template).await?;
    boot.start_kind(kind);
    let mut req = CreateSandboxRequest::new();
    req.log_token = log_token.to_string();
    if let Some(h) = &cfg.hostname {
        req.hostname = h.clone();
    }
    req.dns_relay = cfg.dns_relay && cfg.netns.is_some();
    let mut share = Mount::new();
    share.source = VIRTIOFS_TAG.into();
    share.target = GUEST_SHARED_DIR.into();
    share.fstype = "virtiofs".into();
    req.mounts.push(share);
    let resp = client
        .create_sandbox(&req)
        .await
        .context("setting up the sandbox in the guest")?;
    boot.mark("create_sandbox");
    boot.guest(&resp);
    if let Some(n) = net.filter(|n| !n.plan.is_empty()) {
        client
            .update_network(&super::network::agent_request(&n.plan))
            .await
            .context("configuring the guest's network")?;
        boot.mark("network");
    }
    Ok(client)
}

/// Stops the sandbox's monitor and the VM's processes.
pub(crate) fn stop_vm_processes(layout: &Layout, state: &SandboxState) {
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
}

/// Stops the VM and removes a sandbox's mounts and state directory. Safe to repeat.
pub(crate) fn teardown(layout: &Layout, state: &SandboxState) -> anyhow::Result<()> {
    stop_vm_processes(layout, state);
    // Detaching the share's top takes everything attached below it: no path below it (which
    // the guest may have renamed or replaced by a symlink) is resolved.
    let mut errors = unmount_all(&state.mounts);
    errors.extend(unmount_all(&[layout.shared()]));
    // Anything else still mounted in the state directory, outside the share (deepest last, so
    // undone first).
    let mut left: Vec<_> = mounts_under(&layout.dir)
        .into_iter()
        .filter(|p| !p.starts_with(layout.shared()))
        .collect();
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
    if let Some(ns) = &state.netns {
        super::network::teardown(ns);
    }
    if let Some(cg) = &state.host_cgroup {
        // What is left in it is a stand-in still ending: not worth failing the delete for.
        if let Err(e) = super::host_cgroup::remove(cg) {
            tracing::warn!("{e:#}");
        }
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
        bail!("container does not exist");
    }
    let state = match SandboxState::load(&layout.state()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{}: {e}; removing what is there", layout.state().display());
            SandboxState {
                id: id.into(),
                monitor: None,
                created: String::new(),
                mounts: Vec::new(),
                host_cgroup: None,
                netns: None,
            }
        }
    };
    teardown(&layout, &state)
}
