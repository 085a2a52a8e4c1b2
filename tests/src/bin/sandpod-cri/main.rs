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
//! - `net`: two pods on the CNI bridge serving a page each: the pod IP is the address of the
//!   container's eth0, the host and the other pod fetch the page from it.
//! - `five`: five pods (one container each) started at once, all ready, then all removed.
//! - `bad-input`: unknown ids, a missing sandbox, malformed configs and a missing binary give
//!   errors (their text is printed in the check line) and leave nothing behind.
//! - `hold`: one pod with one container, left running (for cri-check.sh to prove its leak check
//!   sees a running pod); `remove-all`: every pod listed stopped and removed.
//! - `pod-start`: `--rounds` times RunPodSandbox + CreateContainer + StartContainer timed (the
//!   pod removed after each round), through the handler and runc's alternating: `pod_start <h>
//!   <ms>` per round, `bench pod_start_ms handler=<h> median=<ms> rounds=[...]` per handler.
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
mod client;
mod host;
mod scenario_net;
mod scenario_pod;
mod scenarios;

use client::*;
use host::*;
use scenario_net::*;
use scenario_pod::*;
use scenarios::*;

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
pub(crate) struct Args {
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
pub(crate) enum PidNamespace {
    Pod,
    Container,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Scenario {
    Version,
    Pod,
    Net,
    Five,
    BadInput,
    PodStart,
    Hold,
    RemoveAll,
}

/// The check lines and the count of failed ones.
#[derive(Default)]
pub(crate) struct Report {
    failed: usize,
}

impl Report {
    /// Prints `check NAME ok[: context]` or `check NAME FAIL: error` (counted).
    pub(crate) fn check(&mut self, name: &str, result: Result<String>) {
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
    pub(crate) fn need<T>(&mut self, name: &str, result: Result<(T, String)>) -> Option<T> {
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

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An id's first 12 characters (all of it if shorter, or not ASCII).
pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

pub(crate) fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// An error status as `Code: message` (what the check lines print).
pub(crate) fn status_text(s: &Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
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
            Scenario::Net => scenario_net(&cri, &mut report).await,
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
