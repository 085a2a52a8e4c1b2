//! The sandbox monitor: owns a sandbox's VM for as long as it runs. It starts virtiofsd and
//! sandpod-vmm as its children (they die with it: PR_SET_PDEATHSIG), receives the guest's logs
//! and writes them to the runtime log with their level, watches the host processes that stand in
//! for guest processes ([`super::standin_watch`]), relays the guest's queries for Docker's
//! embedded DNS when asked ([`super::dns_relay`]), and when the VMM ends — or `stop` completes —
//! stops virtiofsd and records how the VM ended. It is a library function: `sandpod` runs it in a
//! process of its own (so create, start and delete can be separate, short-lived processes), a
//! shim can run it in-process; signal handling is the host binary's.
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::dns_relay::{DnsRelay, PodNetns, DNS_PORT};
use super::jail::JailLaunch;
use super::layout::Layout;
use super::process::ProcessIdent;
use super::standin_watch::StandinWatch;
use super::state::write_json_atomic;
use super::template::hot_pages::RecordPlan;
use crate::agent_client::logs::emit;
use crate::agent_client::{shell_code, ExitStatus, HybridVsockConnector, LogReceiver, LogToken};
use crate::hypervisor::{VirtiofsdCommand, VmmCommand};

/// Lines of the VMM's own error output kept for `vm-exit.json`.
const VMM_STDERR_TAIL: usize = 5;
/// Longest line of a child's output logged (bytes).
const VMM_LINE_MAX: usize = 400;

/// How long the VMM and virtiofsd get after SIGTERM before SIGKILL.
const CHILD_GRACE: Duration = Duration::from_secs(5);

/// What the monitor starts, written by the creator to `monitor.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorPlan {
    /// sandpod-vmm and its configuration file (`vm.json`, written beside `monitor.json`).
    pub vmm: VmmCommand,
    /// virtiofsd (started first, on the socket the monitor binds; the VMM connects to it).
    pub virtiofsd: Option<VirtiofsdCommand>,
    /// Where the VMM forwards the guest's log connections (`<vsock uds>_1025`).
    pub guest_log_socket: PathBuf,
    /// The sandbox's host cgroup: the monitor moves itself there before it starts anything.
    #[serde(default)]
    pub host_cgroup: Option<PathBuf>,
    /// The token the agent's log connections must open with (hex; the creator hands the same to
    /// the agent in CreateSandbox): a guest process other than the agent cannot write "guest"
    /// lines into the host log. monitor.json is in the root-only state directory.
    #[serde(default)]
    pub log_token: Option<String>,
    /// Start the VMM in its jail (`sandpod jail`); None: unjailed (`--no-jail`, debugging).
    #[serde(default)]
    pub jail: Option<JailLaunch>,
    /// The guest NIC's tap, passed by the creator as this fd number (`network::TAP_FD`); the
    /// VMM gets it at the same number (its vm.json says `tap_fd`).
    #[serde(default)]
    pub tap_fd: Option<i32>,
    /// Relay the guest's DNS queries for Docker's embedded DNS to 127.0.0.11:53 in this network
    /// namespace (the pod's; see [`super::dns_relay`]), opened at the monitor's start, while a
    /// `/proc/<pid>/ns/net` path still names it. None: no relay (the guest's queries are
    /// refused).
    #[serde(default)]
    pub dns_relay: Option<PathBuf>,
    /// Record the template's hot pages from the VM's memory once it ends (a restore from a
    /// spare of a template without a list; see [`super::template::hot_pages`]).
    #[serde(default)]
    pub hot_pages: Option<RecordPlan>,
}

/// The VM's processes, as started (`children.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Children {
    pub vmm: Option<ProcessIdent>,
    pub virtiofsd: Option<ProcessIdent>,
    /// Since the monitor started (ms): virtiofsd started on its bound socket, the VMM process
    /// started.
    #[serde(default)]
    pub virtiofsd_ready_ms: Option<u64>,
    #[serde(default)]
    pub vmm_started_ms: Option<u64>,
}

/// How the VMM ended (`vm-exit.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmExit {
    /// sandpod-vmm's exit code (0 power-off, 2 guest reset/panic, ...), if it exited.
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Why the monitor stopped it, if it did.
    pub stopped_because: Option<String>,
    /// The last lines sandpod-vmm wrote to its standard error (its own reason for failing).
    #[serde(default)]
    pub vmm_stderr: Vec<String>,
}

impl VmExit {
    /// The exit status a process standing for the VM reports: the VMM's code, 128+N for signal N.
    pub fn status(&self) -> u8 {
        shell_code(ExitStatus::from_parts(self.code, self.signal))
    }

    /// One sentence: how the VM ended, with the VMM's own last words.
    pub fn describe(&self) -> String {
        let how = match (self.code, self.signal, &self.stopped_because) {
            (_, _, Some(why)) => format!("the runtime stopped it ({why})"),
            (Some(0), _, _) => "the guest powered off".to_string(),
            (Some(2), _, _) => "the guest kernel panicked or reset".to_string(),
            (Some(c), _, _) => format!("sandpod-vmm exited with status {c}"),
            (None, Some(s), _) => format!("sandpod-vmm was killed by signal {s}"),
            (None, None, None) => "sandpod-vmm ended".to_string(),
        };
        match self.vmm_stderr.last() {
            Some(last) => format!("{how}: {last}"),
            None => how,
        }
    }
}

/// What a child may dump: nothing (virtiofsd's memory holds the container's files; the VMM's
/// jail sets its own limits).
fn child_rlimits() -> std::io::Result<()> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .map_err(std::io::Error::from)
}

fn command(argv: &[PathBuf], keep_fd: Option<i32>) -> anyhow::Result<Command> {
    let (prog, args) = argv.split_first().context("empty command line")?;
    let mut c = std::process::Command::new(prog);
    c.args(args).stdin(Stdio::null());
    if let Some(fd) = keep_fd {
        super::network::pass_fd(&mut c, fd, fd);
    }
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2) and
    // setrlimit(2), which are async-signal-safe; it touches no memory of the parent.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            child_rlimits()
        });
    }
    Ok(Command::from(c))
}

/// Starts a child with its stdout and stderr piped: [`relay_output`] puts their lines in the log.
/// `keep_fd`: an fd of this process the child inherits at the same number.
fn spawn(argv: &[PathBuf], keep_fd: Option<i32>) -> anyhow::Result<(Child, ProcessIdent)> {
    let mut c = command(argv, keep_fd)?;
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c
        .spawn()
        .with_context(|| format!("starting {}", argv[0].display()))?;
    let pid = child.id().context("child has no pid")?;
    let ident = ProcessIdent::of(pid).context("reading the child's start time")?;
    Ok((child, ident))
}

/// Binds virtiofsd's vhost-user socket: 0600, the jail's if the VMM runs jailed (it connects as
/// the jail's uid).
fn bind_vhost_user_socket(
    socket: &Path,
    jail: Option<&JailLaunch>,
) -> anyhow::Result<std::os::unix::net::UnixListener> {
    let listener = std::os::unix::net::UnixListener::bind(socket)
        .with_context(|| format!("binding virtiofsd's socket {}", socket.display()))?;
    match jail {
        Some(j) => super::jail::hand_socket(socket, j.ids)?,
        None => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("chmod {}", socket.display()))?
        }
    }
    Ok(listener)
}

async fn stop_child(child: &mut Child, name: &str) -> Option<std::process::ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(CHILD_GRACE, child.wait()).await {
        Ok(st) => st.ok(),
        Err(_) => {
            tracing::warn!("{name} ignored SIGTERM for {CHILD_GRACE:?}; killing it");
            let _ = child.kill().await;
            child.wait().await.ok()
        }
    }
}

/// Re-emits a child's output lines through `tracing` (so a `--log-format json` log holds only
/// JSON lines, as containerd expects), escaped and cut (what the VMM prints may quote the guest);
/// returns the last lines of its standard error.
fn relay_output(child: &mut Child, name: &'static str) -> tokio::task::JoinHandle<Vec<String>> {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    if let Some(out) = stdout {
        tokio::spawn(async move {
            let _ = relay_lines(out, name, false).await;
        });
    }
    tokio::spawn(async move {
        match stderr {
            Some(err) => relay_lines(err, name, true).await,
            None => Vec::new(),
        }
    })
}

async fn relay_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    name: &'static str,
    keep_tail: bool,
) -> Vec<String> {
    use tokio::io::AsyncReadExt;
    let mut tail = VecDeque::new();
    let mut reader = BufReader::new(stream);
    loop {
        let mut buf = Vec::new();
        // A line longer than the limit is cut; its rest is read as the next lines.
        match (&mut reader)
            .take(VMM_LINE_MAX as u64)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end().escape_debug().to_string();
        tracing::info!(target: "sandpod::vm", process = name, "{line}");
        if keep_tail {
            if tail.len() == VMM_STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    tail.into_iter().collect()
}

/// Runs the sandbox's VM until it ends or `stop` completes (its output says why); the children's
/// output goes to this process's `tracing` log. Records and returns how the VM ended.
pub async fn run_monitor(
    layout: &Layout,
    stop: impl Future<Output = String>,
) -> anyhow::Result<VmExit> {
    let started = Instant::now();
    let plan: MonitorPlan = serde_json::from_slice(
        &std::fs::read(layout.monitor_plan()).context("reading monitor.json")?,
    )
    .context("parsing monitor.json")?;
    // First: a `/proc/<pid>/ns/net` path names the pod's namespace only while that process
    // lives. Without it names on Docker's networks do not resolve; the VM still runs.
    let dns_netns = plan.dns_relay.as_deref().and_then(|ns| {
        PodNetns::open(ns)
            .map_err(|e| tracing::warn!("no DNS relay for Docker's embedded DNS: {e}"))
            .ok()
    });
    if let Some(cg) = &plan.host_cgroup {
        if let Err(e) = super::host_cgroup::add(cg, std::process::id()) {
            tracing::warn!("{e:#}");
        }
    }

    let _guest_logs = match &plan.log_token {
        Some(t) => {
            let token = LogToken::parse(t).context("monitor.json: log_token")?;
            LogReceiver::bind_with_token(&plan.guest_log_socket, token, |l| emit(&l))
        }
        None => LogReceiver::bind(&plan.guest_log_socket),
    }
    .with_context(|| format!("listening on {}", plan.guest_log_socket.display()))?;
    if let Some(j) = &plan.jail {
        super::jail::hand_socket(&plan.guest_log_socket, j.ids)?;
    } else {
        tracing::warn!("sandpod-vmm runs WITHOUT its jail (as root, in the host's namespaces): a debugging setting");
    }
    let _dns_relay = match dns_netns {
        Some(ns) => {
            let path = HybridVsockConnector::new(layout.vsock()).host_port_path(DNS_PORT);
            let relay = DnsRelay::start(&path, ns)
                .context("starting the DNS relay for Docker's embedded DNS")?;
            if let Some(j) = &plan.jail {
                super::jail::hand_socket(&path, j.ids)?;
            }
            Some(relay)
        }
        None => None,
    };
    // Before any child starts: only the VMM may inherit it.
    let tap = match plan.tap_fd {
        Some(n) if n == super::network::TAP_FD => Some(super::network::claim_inherited_tap()?),
        Some(n) => bail!(
            "monitor.json: tap_fd {n} (the creator passes it as {})",
            super::network::TAP_FD
        ),
        None => None,
    };
    let _standins = StandinWatch::bind(layout)?;
    let mut children = Children::default();
    let mut fsd = None;
    if let Some(virtiofsd) = &plan.virtiofsd {
        // The socket is bound here and virtiofsd gets the listening descriptor: the VMM, started
        // right after, may connect before virtiofsd serves (its handshake waits in the backlog),
        // so the two start side by side.
        let listener = bind_vhost_user_socket(&virtiofsd.socket, plan.jail.as_ref())?;
        let fd = listener.as_raw_fd();
        let (mut child, ident) = spawn(&virtiofsd.argv(fd), Some(fd))?;
        // Only virtiofsd accepts on it.
        drop(listener);
        relay_output(&mut child, "virtiofsd");
        children.virtiofsd = Some(ident);
        write_json_atomic(&layout.children(), &children)?;
        fsd = Some(child);
        children.virtiofsd_ready_ms = Some(started.elapsed().as_millis() as u64);
    }
    let vmm_argv = match &plan.jail {
        Some(j) => j.argv(),
        None => plan.vmm.argv(),
    };
    // Before the VMM starts: the creator unlinks the VM's memory once the VMM has it open.
    let hot_pages = plan.hot_pages.as_ref().and_then(|p| {
        p.open()
            .map_err(|e| tracing::warn!("no hot pages recorded: {e}"))
            .ok()
    });
    let keep = tap.as_ref().map(|_| super::network::TAP_FD);
    let (mut vmm, ident) = match spawn(&vmm_argv, keep) {
        Ok(v) => v,
        Err(e) => {
            if let Some(c) = fsd.as_mut() {
                stop_child(c, "virtiofsd").await;
            }
            return Err(e);
        }
    };
    let stderr_tail = relay_output(&mut vmm, "sandpod-vmm");
    children.vmm = Some(ident);
    children.vmm_started_ms = Some(started.elapsed().as_millis() as u64);
    write_json_atomic(&layout.children(), &children)?;
    tracing::info!(vmm_pid = ident.pid, "VM started");

    tokio::pin!(stop);
    let mut stopped_because = None;
    let status = loop {
        let fsd_exit = async {
            match fsd.as_mut() {
                Some(c) => c.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            st = vmm.wait() => break st.ok(),
            st = fsd_exit => {
                tracing::error!("virtiofsd exited while the VM runs ({st:?}); stopping the VM");
                fsd = None;
                stopped_because = Some("virtiofsd exited".to_string());
            }
            why = &mut stop => stopped_because = Some(why),
        }
        if let Some(why) = &stopped_because {
            tracing::info!("stopping the VM ({why})");
            break stop_child(&mut vmm, "sandpod-vmm").await;
        }
    };
    if let Some(c) = fsd.as_mut() {
        stop_child(c, "virtiofsd").await;
    }
    use std::os::unix::process::ExitStatusExt;
    let vmm_stderr = tokio::time::timeout(Duration::from_secs(2), stderr_tail)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let exit = VmExit {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stopped_because,
        vmm_stderr,
    };
    tracing::info!(code = ?exit.code, signal = ?exit.signal, "VM ended");
    write_json_atomic(&layout.vm_exit(), &exit)?;
    if let Some(r) = hot_pages {
        r.finish();
    }
    Ok(exit)
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use crate::hypervisor::CacheMode;

    #[test]
    fn monitor_json_has_named_fields() {
        let plan = MonitorPlan {
            vmm: VmmCommand {
                program: "/b/sandpod-vmm".into(),
                config: "/run/sandpod/c/vm.json".into(),
            },
            virtiofsd: Some(VirtiofsdCommand {
                virtiofsd: "/b/virtiofsd".into(),
                socket: "/run/sandpod/c/fs.sock".into(),
                shared_dir: "/run/sandpod/c/shared".into(),
                cache: CacheMode::Auto,
                debug: false,
            }),
            guest_log_socket: "/run/sandpod/c/v_1025".into(),
            host_cgroup: Some("/sys/fs/cgroup/docker/c".into()),
            log_token: None,
            tap_fd: Some(3),
            dns_relay: Some("/proc/42/ns/net".into()),
            hot_pages: Some(RecordPlan {
                vm_memory: "/run/sandpod/c/vm/r/memory.ready".into(),
                template_dir: "/run/sandpod/.templates/k".into(),
            }),
            jail: Some(JailLaunch {
                helper: "/b/sandpod".into(),
                plan: "/run/sandpod/c/jail.json".into(),
                ids: crate::sandbox::jail::JailIds {
                    uid: 65534,
                    gid: 65534,
                },
            }),
        };
        let json: serde_json::Value = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["vmm"]["program"], "/b/sandpod-vmm");
        assert_eq!(json["vmm"]["config"], "/run/sandpod/c/vm.json");
        assert_eq!(json["virtiofsd"]["socket"], "/run/sandpod/c/fs.sock");
        assert_eq!(json["virtiofsd"]["cache"], "auto");
        assert_eq!(json["jail"]["plan"], "/run/sandpod/c/jail.json");
        assert_eq!(json["dns_relay"], "/proc/42/ns/net");
        assert_eq!(
            json["hot_pages"]["template_dir"],
            "/run/sandpod/.templates/k"
        );
        assert_eq!(
            plan.jail.as_ref().unwrap().argv(),
            ["/b/sandpod", "jail", "/run/sandpod/c/jail.json"].map(PathBuf::from)
        );
        let back: MonitorPlan = serde_json::from_value(json).unwrap();
        assert_eq!(back, plan);
    }
}
