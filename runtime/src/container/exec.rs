//! `exec`: a new process in a running container, from a runtime-spec `process` (runc's
//! `--process` JSON, or built from the command line). A stand-in stands for it as for the init;
//! with `--detach` the caller gets the stand-in's pid, otherwise this process waits for it.
use std::path::PathBuf;

use anyhow::{bail, Context};
use oci_spec::runtime::Process;

use super::foreground::{self, Signals};
use super::lifecycle::open_running;
use super::standin::{record_exec_standin, Standin, StandinArgs};
use super::state::Status;
use super::RuntimeOptions;
use crate::agent_client::proto::ExecProcessRequest;
use crate::io::console::HostPty;
use crate::io::{IoConfig, StandinStdio};
use crate::sandbox::state::write_atomic;

/// What `exec` is given.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub id: String,
    pub process: Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub io: IoConfig,
}

/// A fresh exec id: the container's id and 64 random bits.
fn new_exec_id(container: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
    Ok(format!("{container}.exec-{}", u64::from_le_bytes(b)))
}

/// The agent's request for `process` in container `id`.
pub fn request(id: &str, exec_id: &str, process: &Process) -> anyhow::Result<ExecProcessRequest> {
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        bail!("process.args must not be empty");
    }
    let terminal = process.terminal().unwrap_or(false);
    let streams = crate::agent_client::StreamSet::for_stdio(terminal);
    let mut req = ExecProcessRequest::new();
    req.exec_id = exec_id.to_string();
    req.container_id = id.to_string();
    req.args = args;
    req.env = process.env().clone().unwrap_or_default();
    req.cwd = process.cwd().display().to_string();
    req.uid = process.user().uid();
    req.gid = process.user().gid();
    req.additional_gids = process.user().additional_gids().clone().unwrap_or_default();
    req.terminal = terminal;
    req.stdin = streams.stdin;
    req.stdout = streams.stdout;
    req.stderr = streams.stderr;
    if process.capabilities().is_some() || process.no_new_privileges().is_some() {
        tracing::info!(
            "exec into {id}: the process gets the container's capabilities and no_new_privileges"
        );
    }
    Ok(req)
}

/// Runs the exec; returns its exit status, or 0 once started with `detach`.
pub async fn exec(rt: &RuntimeOptions, opts: ExecOptions) -> anyhow::Result<u8> {
    let terminal = opts.process.terminal().unwrap_or(false);
    if terminal && opts.detach && opts.io == IoConfig::Inherit {
        bail!("cannot allocate tty if runc will detach without setting console socket");
    }
    let (layout, state, sb) = open_running(rt, &opts.id).await?;
    if state.status(&layout) != Status::Running {
        bail!(
            "cannot exec in a container that is {}",
            state.status(&layout).as_str()
        );
    }
    let exec_id = new_exec_id(&opts.id)?;
    let mut req = request(&opts.id, &exec_id, &opts.process)?;
    let token = crate::agent_client::StreamToken::generate().context("drawing a stream token")?;
    req.stream_token = token.to_string();
    let stdio = match &opts.io {
        IoConfig::ConsoleSocket(sock) if terminal => {
            StandinStdio::Pty(HostPty::open()?.send_master(sock)?)
        }
        IoConfig::ConsoleSocket(_) => {
            bail!("--console-socket is for a terminal (process.terminal is false)")
        }
        IoConfig::Inherit => StandinStdio::Inherit,
    };
    // Signals are caught before the stand-in exists, so none is lost to the default action.
    let mut signals = if opts.detach {
        None
    } else {
        Some(Signals::new()?)
    };
    let streams = opts.io.streams(terminal);
    (req.stdin, req.stdout, req.stderr) = (streams.stdin, streams.stdout, streams.stderr);
    let args = StandinArgs {
        sandbox: state.sandbox_id.clone(),
        container: opts.id.clone(),
        exec_id: exec_id.clone(),
        tty: terminal,
        ..StandinArgs::default()
    }
    .with_streams(streams);
    let mut standin = Standin::spawn(rt, &layout, &args, stdio)?;
    let started = async {
        standin.attach(&token).await?;
        sb.client
            .exec_process(&req)
            .await
            .context("starting the process")
    }
    .await;
    if let Err(e) = started {
        standin.abort();
        return Err(e);
    }
    let pid = standin.ident.pid;
    record_exec_standin(&layout, &opts.id, &exec_id, standin.ident);
    let child = standin.go().await?;
    if let Some(p) = &opts.pid_file {
        write_atomic(p, pid.to_string().as_bytes())
            .with_context(|| format!("writing the pid file {}", p.display()))?;
    }
    match signals.as_mut() {
        None => Ok(0),
        Some(signals) => foreground::wait(child, signals, None).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_from_a_process() {
        let p: Process = serde_json::from_str(
            r#"{"terminal":true,"user":{"uid":1000,"gid":100,"additionalGids":[5]},"args":["sh","-c","id"],"env":["A=b"],"cwd":"/tmp"}"#,
        )
        .unwrap();
        let r = request("c1", "c1.exec-1", &p).unwrap();
        assert_eq!(r.args, ["sh", "-c", "id"]);
        assert_eq!(
            (r.uid, r.gid, r.additional_gids.clone()),
            (1000, 100, vec![5])
        );
        assert!(r.terminal && r.stdin && r.stdout && !r.stderr);
        assert_eq!(r.cwd, "/tmp");
        let id = new_exec_id("c1").unwrap();
        assert!(
            sandpod_protocol::stream::validate_exec_id(&id).is_ok(),
            "{id}"
        );
        let empty: Process =
            serde_json::from_str(r#"{"user":{"uid":0,"gid":0},"args":[],"cwd":"/"}"#).unwrap();
        assert!(request("c1", "x", &empty).is_err());
    }
}
