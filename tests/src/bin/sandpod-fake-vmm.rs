//! `sandpod-fake-vmm`: a TEST-ONLY stand-in for `sandpod-vmm`. Instead of booting a guest it runs
//! the real agent on the host (`sandpod-agent --test-serve`), so that the runtime's lifecycle
//! (create/start/exec/kill/delete) can be tested on a host without KVM. It never isolates
//! anything: the "containers" run on the host, as root.
//!
//! It takes sandpod-vmm's arguments, parsed and validated by the VMM's own code (`--config FILE`
//! or the flags; unknown ones are an error, exit 2), ignores what only a guest needs (kernel,
//! initrd, cmdline, memory, vCPUs, disks, virtio-fs sockets) and then:
//!
//! 1. enters a mount namespace of its own (every mount a slave: nothing leaks to the host) and
//!    bind-mounts the sandbox's share (`<dir of the vsock socket>/shared`, the runtime's layout)
//!    at the guest's `/run/sandpod/shared`, where the agent finds the containers' rootfs;
//! 2. makes the fake VM's cgroup under the host's cgroup2 (`<cgroup2>/sandpod-fake-vmm-<pid>`),
//!    runs the agent in its `agent/` and gives it `containers/` as `SANDPOD_AGENT_CGROUP_ROOT`
//!    (unless the caller set that variable: then the caller's value goes to the agent as is);
//!    without cgroup2 on the host there is no cgroup and the agent runs containers without one;
//! 3. serves the hybrid vsock on the vsock socket (`CONNECT <port>` spliced to `<uds>_<port>`,
//!    where the agent listens) and runs the agent (`SANDPOD_AGENT_BIN`, else `sandpod-agent`
//!    beside this executable) with `--test-serve unix://<uds>`, its output on the console;
//! 4. writes one line to the console: `sandpod-fake-vmm: agent_pid=N cgroup=DIR vsock=UDS
//!    share=DIR`.
//!
//! It ends like the real VMM: SIGTERM → 143, SIGINT → 130, the agent dying → 2 (a guest whose
//! PID 1 dies panics and resets); each time the agent and every process of the fake VM's cgroup
//! are killed and the cgroup removed. It gets SIGTERM when its parent dies (PR_SET_PDEATHSIG),
//! and the agent gets SIGKILL when the fake VMM dies.
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use anyhow::Context;
use clap::Parser;
use nix::sys::signal::Signal;
use sandpod_protocol::shared::GUEST_SHARED_DIR;
use sandpod_runtime::agent_client::FakeHybridVsock;
use sandpod_testhost::fakevm::{mounts, VmCgroup};
use sandpod_vmm::cli::VmmArgs;
use sandpod_vmm::devices::virtio::vsock::unix::bind_listener;
use sandpod_vmm::{ConsoleConfig, VmConfig};

/// The agent binary to run (else `sandpod-agent` beside this executable).
const AGENT_BIN_ENV: &str = "SANDPOD_AGENT_BIN";
/// The agent's cgroup root in test mode (see the agent's container::cgroups).
const CGROUP_ROOT_ENV: &str = "SANDPOD_AGENT_CGROUP_ROOT";

/// TEST ONLY: sandpod-vmm's command line (its own [`VmmArgs`]: `--config FILE` or the flags),
/// running the agent on the host instead of a guest.
#[derive(Parser, Debug)]
#[command(name = "sandpod-fake-vmm", version)]
struct Cli {
    #[command(flatten)]
    vm: VmmArgs,
}

/// How the fake VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Signal(Signal),
    AgentDied,
}

impl End {
    fn exit_code(self) -> u8 {
        match self {
            End::Signal(s) => 128 + s as u8,
            End::AgentDied => 2,
        }
    }
}

fn agent_bin() -> anyhow::Result<PathBuf> {
    let bin = match std::env::var_os(AGENT_BIN_ENV) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .context("locating this executable")?
            .with_file_name("sandpod-agent"),
    };
    anyhow::ensure!(
        bin.is_file(),
        "no agent binary at {} (build it: cargo build -p sandpod-agent; or set {AGENT_BIN_ENV})",
        bin.display()
    );
    Ok(bin)
}

/// The console: a file (created or truncated, shared with the agent), stdout or nothing.
fn open_console(console: &ConsoleConfig) -> anyhow::Result<Option<File>> {
    match console {
        ConsoleConfig::File(p) => Ok(Some(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)
                .with_context(|| format!("console file {}", p.display()))?,
        )),
        ConsoleConfig::Stdout | ConsoleConfig::None => Ok(None),
    }
}

/// In the forked agent, before exec: dies with the fake VMM, and joins the fake VM's cgroup.
/// Only async-signal-safe calls (prctl, getppid, open, write, close); `procs` is prepared
/// before the fork.
fn child_setup(parent: u32, procs: Option<&CString>) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The fake VMM died between the fork and the prctl: nobody would kill the agent.
    if nix::unistd::getppid().as_raw() as u32 != parent {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    if let Some(procs) = procs {
        // SAFETY: `procs` is a valid NUL-terminated path; open(2) is async-signal-safe.
        let fd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is the descriptor just opened and the buffer is one valid byte ("0": the
        // writing process itself); write(2) and close(2) are async-signal-safe.
        let (written, err) = unsafe {
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            (n, err)
        };
        if written != 1 {
            return Err(err);
        }
    }
    Ok(())
}

fn spawn_agent(
    uds: &Path,
    console: &ConsoleConfig,
    console_file: Option<&File>,
    cgroup: Option<&VmCgroup>,
) -> anyhow::Result<tokio::process::Child> {
    let bin = agent_bin()?;
    let mut cmd = std::process::Command::new(&bin);
    cmd.arg("--test-serve")
        .arg(format!("unix://{}", uds.display()))
        .stdin(Stdio::null());
    match (console, console_file) {
        (ConsoleConfig::File(_), Some(f)) => {
            cmd.stdout(f.try_clone()?).stderr(f.try_clone()?);
        }
        (ConsoleConfig::None, _) => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        _ => {}
    }
    if let Some(cg) = cgroup {
        if std::env::var_os(CGROUP_ROOT_ENV).is_none() {
            cmd.env(CGROUP_ROOT_ENV, cg.containers());
        }
    }
    let procs = cgroup
        .map(|cg| CString::new(cg.agent().join("cgroup.procs").as_os_str().as_bytes()))
        .transpose()?;
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // async-signal-safe calls of `child_setup`, on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || child_setup(parent, procs.as_ref()));
    }
    tokio::process::Command::from(cmd)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// Serves until a signal or the agent's end; the agent is killed and reaped before it returns.
async fn serve(
    config: &VmConfig,
    uds: &Path,
    share: &Path,
    cgroup: Option<&VmCgroup>,
) -> anyhow::Result<End> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    // The real VMM's own binding: a stale socket file is replaced, a live one refused, and the
    // file removed at the end.
    let (listener, _remove_at_end) =
        bind_listener(uds).with_context(|| format!("vsock socket {}", uds.display()))?;
    let _front = FakeHybridVsock::from_std(listener, uds)?;
    let mut console_file = open_console(&config.console)?;
    let mut agent = spawn_agent(uds, &config.console, console_file.as_ref(), cgroup)?;
    let line = format!(
        "sandpod-fake-vmm: agent_pid={} cgroup={} vsock={} share={}\n",
        agent.id().unwrap_or(0),
        cgroup.map_or("none".into(), |c| c.dir().display().to_string()),
        uds.display(),
        share.display()
    );
    match (&config.console, console_file.as_mut()) {
        (ConsoleConfig::File(_), Some(f)) => f.write_all(line.as_bytes())?,
        (ConsoleConfig::Stdout, _) => std::io::stdout().write_all(line.as_bytes())?,
        _ => {}
    }
    let end = tokio::select! {
        _ = term.recv() => End::Signal(Signal::SIGTERM),
        _ = int.recv() => End::Signal(Signal::SIGINT),
        status = agent.wait() => {
            eprintln!("sandpod-fake-vmm: the agent exited ({status:?}): like a guest reset");
            End::AgentDied
        }
    };
    let _ = agent.start_kill();
    let _ = agent.wait().await;
    Ok(end)
}

fn run(cli: Cli) -> anyhow::Result<End> {
    // Never outlive the parent: its death is a SIGTERM, handled as any (everything stopped).
    let parent = nix::unistd::getppid();
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).context("PR_SET_PDEATHSIG")?;
    if nix::unistd::getppid() != parent {
        return Ok(End::Signal(Signal::SIGTERM));
    }
    let config = cli.vm.vm_config()?;
    config.validate()?;
    let uds = config.vsock.as_ref().map(|v| v.uds_path.clone()).context(
        "the fake VMM needs --vsock-uds (or \"vsock\" in --config): its agent is reached only \
         through it",
    )?;
    let share = mounts::share_of(&uds);
    // Single-threaded still, as unshare(CLONE_NEWNS) requires.
    mounts::enter_private_namespace(&share, Path::new(GUEST_SHARED_DIR))?;
    let cgroup = match mounts::cgroup2_mount() {
        Some(root) => Some(VmCgroup::create(
            &root,
            &format!("sandpod-fake-vmm-{}", std::process::id()),
        )?),
        None => {
            eprintln!("sandpod-fake-vmm: warning: no cgroup2 on this host: containers get none");
            None
        }
    };
    // One thread: the agent's PR_SET_PDEATHSIG follows the thread that forked it.
    let served = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
        .and_then(|rt| rt.block_on(serve(&config, &uds, &share, cgroup.as_ref())));
    if let Some(cg) = &cgroup {
        if let Err(e) = cg.destroy() {
            eprintln!("sandpod-fake-vmm: removing the fake VM's cgroup: {e:#}");
        }
    }
    served
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(end) => {
            if let End::Signal(s) = end {
                eprintln!("sandpod-fake-vmm: stopped by signal {}", s as i32);
            }
            ExitCode::from(end.exit_code())
        }
        Err(e) => {
            eprintln!("sandpod-fake-vmm: {e:#}");
            ExitCode::FAILURE
        }
    }
}
