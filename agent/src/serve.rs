//! Serving the host: the ttrpc API, the stdio port, child reaping and log forwarding (the DNS
//! relay starts with CreateSandbox, see `rpc::service`). A template guest asks for its snapshot
//! once listening, and forwards logs only once reseeded (see [`crate::clone`]).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sandpod_protocol::agent_ttrpc::create_agent;
use sandpod_protocol::{AGENT_PORT, STDIO_PORT};
use tracing_subscriber::filter::LevelFilter;

use crate::clone::kernel::KernelOps;
use crate::clone::CloneGate;
use crate::container::{cgroups, ContainerManager};
use crate::logging::LogForwarder;
use crate::process::{ProcessManager, Reaper};
use crate::rpc::AgentService;
use crate::sandbox::{Sandbox, SandboxMode};
use crate::stdio::broker::StreamBroker;
use crate::stdio::listener::accept_streams;
use crate::transport::{StreamListener, Transport};

/// Binds both ports and starts the ttrpc server (which runs as background tasks).
async fn listen(
    transport: &Transport,
    service: &AgentService,
) -> anyhow::Result<(StreamListener, ttrpc::r#async::Server)> {
    let stdio = transport
        .bind(STDIO_PORT)
        .with_context(|| format!("listening on the stdio port {STDIO_PORT}"))?;
    let addr = transport.ttrpc_addr(AGENT_PORT);
    let listener = transport
        .ttrpc_listener(AGENT_PORT)
        .with_context(|| format!("listening on {addr}"))?;
    let mut server = ttrpc::r#async::Server::new()
        .add_listener(listener)
        .register_service(create_agent(Arc::new(service.clone())));
    server
        .start()
        .await
        .with_context(|| format!("serving ttrpc on {addr}"))?;
    crate::boot_times::mark_serving(crate::init::console::ms_since_boot());
    tracing::info!("serving the agent API on {addr}, stdio on port {STDIO_PORT}");
    Ok((stdio, server))
}

/// How the agent came to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// A guest booted for one sandbox (and the host-side test mode).
    Fresh,
    /// A template guest (`sandpod.template=1`, PID 1 only): snapshotted once listening, then
    /// every clone is pending until ResumeClone.
    Template,
}

/// Starts the log forwarder, or (template) leaves it for ResumeClone to start: no log connection
/// before the snapshot, it would be reset in every clone; the lines queue meanwhile.
fn start_logs(boot: Boot, transport: &Transport, logs: LogForwarder) -> anyhow::Result<CloneGate> {
    match boot {
        Boot::Fresh => {
            logs.spawn(transport.clone());
            Ok(CloneGate::off())
        }
        Boot::Template => {
            // Reseeding and setting the clock are for the guest only, never a test host.
            anyhow::ensure!(
                *transport == Transport::Vsock,
                "template mode is for the guest only"
            );
            let t = transport.clone();
            Ok(CloneGate::pending(
                Box::new(KernelOps),
                Box::new(move || logs.spawn(t)),
            ))
        }
    }
}

/// Serves until a fatal error. Must run inside a tokio runtime.
///
/// In the guest, failing to listen (no vsock device yet, say) is not fatal: PID 1 keeps reaping
/// and retries every few seconds, so the VM stays up and the host's connect times out instead.
pub async fn serve(transport: Transport, logs: LogForwarder, boot: Boot) -> anyhow::Result<()> {
    let log_auth = logs.auth();
    let clone_gate = start_logs(boot, &transport, logs)?;
    let reaper = Reaper::start().context("watching SIGCHLD")?;
    let broker = StreamBroker::new();
    let mode = match &transport {
        Transport::Vsock => {
            if std::env::var_os(cgroups::TEST_ROOT_ENV).is_some() {
                tracing::warn!("{} is for test mode only: ignored", cgroups::TEST_ROOT_ENV);
            }
            crate::container::cgroup_parent::prepare();
            SandboxMode::Guest
        }
        Transport::Unix { base } => {
            // Test mode on a host: containers' cgroups under a cgroup2 directory of the caller's
            // choosing (a host rarely has cgroup2 at /sys/fs/cgroup with room for ours).
            if let Some(root) = std::env::var_os(cgroups::TEST_ROOT_ENV) {
                let root = PathBuf::from(root);
                cgroups::set_test_root(&root)?;
                tracing::info!("test mode: container cgroups under {}", root.display());
            }
            // Orphans of the processes we start come to us, as they come to PID 1 in the guest,
            // so test mode reaps orphans too.
            if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
                tracing::warn!("PR_SET_CHILD_SUBREAPER: {e}");
            }
            let mut p = base.as_os_str().to_owned();
            p.push("_resolv.conf");
            SandboxMode::Test {
                resolv_conf: PathBuf::from(p),
            }
        }
    };
    let processes = ProcessManager::new(reaper, broker.clone());
    let service = AgentService {
        containers: ContainerManager::new(processes.clone()),
        processes,
        sandbox: Sandbox::new(mode),
        log_auth,
        // Only the real guest relays DNS, and only once CreateSandbox asks for it.
        dns_relay: matches!(transport, Transport::Vsock).then(|| transport.clone()),
        clone_gate,
    };
    let mut failures = 0u32;
    let (stdio, _server) = loop {
        match listen(&transport, &service).await {
            Ok(listening) => break listening,
            Err(e) if transport == Transport::Vsock => {
                if failures == 0 {
                    tracing::error!("cannot serve the host yet (retrying): {e:#}");
                }
                failures += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e),
        }
    };
    if boot == Boot::Template {
        tracing::info!("template: listening; asking the VMM for a snapshot");
        tokio::task::spawn_blocking(|| {
            match crate::clone::free_memory::zero_free_memory() {
                Ok(n) => tracing::info!("template: {} MiB of free memory zeroed", n >> 20),
                Err(e) => tracing::warn!("template: free memory not zeroed: {e}"),
            }
            crate::init::power::request_snapshot()
        })
        .await
        .context("the snapshot request's task")??;
        // Only a clone (or a VMM that ignored the request) gets here.
        tracing::info!("restored from a template snapshot: waiting for ResumeClone");
    }
    accept_streams(stdio, broker).await;
    anyhow::bail!("the stdio listener stopped")
}

/// Builds the runtime and serves. PID 1 in the guest (vsock), or `--test-serve` (Unix, always
/// [`Boot::Fresh`]).
pub fn run(transport: Transport, boot: Boot) -> anyhow::Result<()> {
    let console_max = match transport {
        Transport::Vsock => LevelFilter::WARN,
        Transport::Unix { .. } => LevelFilter::TRACE,
    };
    let logs = crate::logging::init(console_max);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sandpod-agent")
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(transport, logs, boot))
}
