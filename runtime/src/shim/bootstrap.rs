//! The shim binary's actions, as containerd runs it (in the bundle directory, flags in Go's
//! syntax, parsed by the containerd-shim crate):
//!
//! - `start`: starts the pod's shim server (the crate's [`spawn`], its socket keyed by the
//!   pod's sandbox id) — or, for a container of a pod whose shim runs, finds that shim — and
//!   prints its address. The address is printed bare: containerd 1.6 and 1.7 read it so (2.x
//!   too, taking task API v2).
//! - `delete`: cleans up after a shim that died: the container's rootfs mount and, for a pod's
//!   sandbox, the VM (monitor, VMM, virtiofsd), its mounts and its state; prints a DeleteResponse
//!   (exit status 137, SIGKILL's).
//! - no action: serves the Task API on `-socket` (as `containerd.task.v2.Task` for containerd
//!   1.x and `containerd.task.v3.Task` for 2.x), publishing events to `$TTRPC_ADDRESS`.
//!
//! The crate's own `run` is not used for two reasons found with containerd 1.6: it answers
//! `start` with the JSON of containerd 2.x (1.6 takes the whole output for the address), and it
//! registers only the v3 Task service (1.6 calls v2). Its pieces are: [`parse`], [`spawn`],
//! [`RemotePublisher`], [`ExitSignal`] and the generated service.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{bail, Context};
use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim_async::create_task;
use containerd_shim::protos::ttrpc::r#async::transport::Listener;
use containerd_shim::protos::ttrpc::r#async::{Server, Service as TtrpcService};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{parse, spawn, ExitSignal, Flags, StartOpts, Task};
use tokio::io::AsyncWriteExt;

use super::events::Events;
use super::pod::{self, PodRole};
use super::process::timestamp;
use super::service::Service;
use super::task::{Settings, Tasks};
use crate::config::Config;

/// containerd's name of this runtime.
pub const RUNTIME_ID: &str = "io.containerd.kata.v2";
/// The variable containerd passes its ttrpc address in.
const TTRPC_ADDRESS: &str = "TTRPC_ADDRESS";
/// The exit status reported for a task whose shim died (SIGKILL's).
pub const DEAD_SHIM_STATUS: u32 = 137;

/// Runs the action of this process's command line.
pub async fn run() -> anyhow::Result<()> {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let flags = parse(&args).context("parsing the command line")?;
    if flags.version {
        println!("containerd-shim-kata-v2 (sandpod) {}", crate::VERSION);
        return Ok(());
    }
    if flags.info {
        let mut info = containerd_shim::protos::types::introspection::RuntimeInfo::new();
        info.name = RUNTIME_ID.to_string();
        write_stdout(&info.write_to_bytes()?).await?;
        return Ok(());
    }
    match flags.action.as_str() {
        "start" => {
            let address = start(&flags).await?;
            write_stdout(address.as_bytes()).await
        }
        "delete" => {
            let r = delete(&flags).await;
            write_stdout(&r.write_to_bytes()?).await
        }
        "" => serve(flags).await,
        other => bail!("unknown action {other:?} (start, delete, or none to serve)"),
    }
}

async fn write_stdout(b: &[u8]) -> anyhow::Result<()> {
    let mut out = tokio::io::stdout();
    out.write_all(b).await?;
    out.flush().await?;
    Ok(())
}

/// `unix:///path` → `/path`.
fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// Whether a shim answers at `address`.
async fn socket_alive(address: &str) -> bool {
    tokio::net::UnixStream::connect(socket_path(address))
        .await
        .is_ok()
}

/// containerd reads the shim's address from the bundle's `address` file when it reconnects.
fn write_address(address: &str) -> anyhow::Result<()> {
    std::fs::write("address", address).context("writing the address file")
}

async fn start(flags: &Flags) -> anyhow::Result<String> {
    let bundle = std::env::current_dir().context("the bundle directory")?;
    let role = PodRole::classify(&pod::bundle_annotations(&bundle), &flags.id);
    let group = role.sandbox_id(&flags.id).to_string();
    let opts = StartOpts {
        id: flags.id.clone(),
        publish_binary: flags.publish_binary.clone(),
        address: flags.address.clone(),
        ttrpc_address: std::env::var(TTRPC_ADDRESS).unwrap_or_default(),
        namespace: flags.namespace.clone(),
        debug: flags.debug,
        ..StartOpts::default()
    };
    if opts.ttrpc_address.is_empty() {
        bail!("{TTRPC_ADDRESS} is not set");
    }
    let address = opts.socket_address(&group);
    if !role.boots_vm() {
        // One shim serves the pod: the one its sandbox container started.
        if socket_alive(&address).await {
            write_address(&address)?;
            return Ok(address);
        }
        bail!(
            "container {} belongs to pod {group}, whose shim is not running ({address})",
            flags.id
        );
    }
    let address = spawn(opts, &group, Vec::new())
        .await
        .context("starting the shim server")?;
    write_address(&address)?;
    Ok(address)
}

/// Removes what a dead shim left of container `id` (bundle `bundle`) in `root`: its rootfs
/// mount, and if it was a pod's sandbox the VM with its mounts and state.
pub fn cleanup(root: &Path, id: &str, bundle: &Path) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    if crate::sandbox::validate_id(id).is_ok() && root.join(id).is_dir() {
        if let Err(e) = crate::sandbox::destroy(root, id) {
            errors.push(format!("{e:#}"));
        }
        pod::remove_root_if_empty(root);
    }
    if let Err(e) = super::rootfs::unmount(&bundle.join("rootfs")) {
        errors.push(sandpod_protocol::ErrorChain(&e).to_string());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}

async fn delete(flags: &Flags) -> DeleteResponse {
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir().unwrap_or_default()
    } else {
        PathBuf::from(&flags.bundle)
    };
    let root = pod::state_root(&flags.namespace);
    if let Err(e) = cleanup(&root, &flags.id, &bundle) {
        eprintln!("cleaning up after the shim of {}: {e:#}", flags.id);
    }
    let mut r = DeleteResponse::new();
    r.exit_status = DEAD_SHIM_STATUS;
    r.exited_at = Some(timestamp(SystemTime::now())).into();
    r
}

/// Logs to containerd's `log` FIFO in the bundle directory (containerd copies it to its own
/// log), else to stderr.
fn init_logging(debug: bool) {
    let filter = sandpod_protocol::conventions::log_filter_from_env()
        .unwrap_or_else(|| if debug { "debug" } else { "info" }.to_string());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false);
    let fifo = crate::log_file::open_append(std::path::Path::new("log"), false);
    let _ = match fifo {
        Ok(f) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
        Err(_) => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// The Task service under both names containerd uses: v2 (containerd 1.x) and v3 (2.x).
fn task_services(
    task: Arc<dyn Task + Send + Sync>,
) -> std::collections::HashMap<String, TtrpcService> {
    let mut all = create_task(task.clone());
    for (name, service) in create_task(task) {
        all.insert(name.replace(".task.v3.", ".task.v2."), service);
    }
    all
}

fn listen(socket: &str) -> std::io::Result<std::os::unix::net::UnixListener> {
    let path = Path::new(socket_path(socket));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::os::unix::net::UnixListener::bind(path)
}

async fn serve(flags: Flags) -> anyhow::Result<()> {
    if flags.socket.is_empty() {
        bail!("no -socket to serve on");
    }
    init_logging(flags.debug);
    let listener = match listen(&flags.socket) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if socket_alive(&flags.socket).await {
                // Another server of this pod is up (a racing start): use it.
                write_address(&flags.socket)?;
                signal_started();
                return Ok(());
            }
            std::fs::remove_file(socket_path(&flags.socket))?;
            listen(&flags.socket)?
        }
        Err(e) => return Err(e).with_context(|| format!("listening on {}", flags.socket)),
    };
    let ttrpc_address = std::env::var(TTRPC_ADDRESS).context("TTRPC_ADDRESS is not set")?;
    let publisher = RemotePublisher::new(&ttrpc_address)
        .await
        .context("connecting to containerd's events")?;
    let config = Config::load(None)?;
    let settings = Settings {
        root: pod::state_root(&flags.namespace),
        config,
        debug: flags.debug,
    };
    let exit = Arc::new(ExitSignal::default());
    let tasks = Arc::new(Tasks::new(
        settings,
        Events::new(Some(publisher), &flags.namespace),
    ));
    let service: Arc<dyn Task + Send + Sync> = Arc::new(Service::new(tasks, exit.clone()));
    let listener = Listener::try_from(listener).context("the ttrpc listener")?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(task_services(service));
    server.start().await.context("starting the ttrpc server")?;
    signal_started();
    tracing::info!(
        id = flags.id,
        namespace = flags.namespace,
        "shim serving on {}",
        flags.socket
    );
    exit.wait().await;
    let _ = server.shutdown().await;
    let _ = std::fs::remove_file(socket_path(&flags.socket));
    Ok(())
}

/// Tells `start` (reading our stdout until EOF) that the server is up: stdout becomes stderr
/// (/dev/null).
fn signal_started() {
    if let Err(e) = rustix::stdio::dup2_stdout(std::io::stderr()) {
        tracing::warn!("closing stdout: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_task_api_versions_are_served() {
        struct Nothing;
        #[async_trait::async_trait]
        impl Task for Nothing {}
        let s = task_services(Arc::new(Nothing));
        let mut names: Vec<_> = s.keys().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            ["containerd.task.v2.Task", "containerd.task.v3.Task"]
        );
    }

    #[test]
    fn cleanup_of_nothing_is_fine() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root/default");
        cleanup(&root, "c1", &d.path().join("bundle")).unwrap();
        assert_eq!(socket_path("unix:///run/x"), "/run/x");
    }
}
