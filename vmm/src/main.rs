//! `sandpod-vmm`: command-line front end of the VMM library.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use sandpod_vmm::config::{ConfigError, DEFAULT_CMDLINE, DEFAULT_GUEST_CID, DEFAULT_MEM_MIB};
use sandpod_vmm::{ConsoleConfig, DiskConfig, ExitReason, FsConfig, VmConfig, Vmm, VsockConfig};

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0    the guest powered off (the agent's request on the power port, I/O port 0x600)
  1    VMM error: bad input, KVM unavailable, KVM internal error
  2    the guest reset without a request (a kernel panic with panic=-1, e.g. the agent died),
       crashed or triple-faulted; also invalid command-line usage (from the argument parser)
  3    the guest asked for a reboot (on the power port)
  130  stopped by SIGINT; 143 stopped by SIGTERM

Logs go to stderr (RUST_LOG=debug for more); the guest's ttyS0 goes to --console.";

/// Sandpod microVM monitor: boots a Linux guest (ELF vmlinux + initramfs) on KVM.
#[derive(Parser, Debug)]
#[command(name = "sandpod-vmm", version = sandpod_vmm::VERSION, after_help = EXIT_STATUS_HELP)]
struct Cli {
    /// Uncompressed ELF kernel image (vmlinux).
    #[arg(long, value_name = "PATH")]
    kernel: PathBuf,
    /// Initramfs (cpio archive).
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// Kernel command line, passed unchanged.
    #[arg(long, value_name = "STR", default_value = DEFAULT_CMDLINE)]
    cmdline: String,
    /// Guest memory in MiB.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MEM_MIB)]
    mem_mib: u32,
    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    vcpus: u32,
    /// Guest serial console: stdout, file:PATH or none.
    #[arg(long, value_name = "DEST", default_value = "stdout")]
    console: ConsoleConfig,
    /// Add a virtio-vsock device: host clients connect to this Unix socket and send
    /// `CONNECT <port>\n`; guest connections to host port P go to the socket `PATH_P`.
    #[arg(long, value_name = "PATH")]
    vsock_uds: Option<PathBuf>,
    /// The guest's vsock CID (with --vsock-uds).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_GUEST_CID, requires = "vsock_uds")]
    vsock_cid: u32,
    /// Add a virtio-fs device (repeatable) whose back end is a vhost-user-fs daemon
    /// (virtiofsd) listening on PATH; the guest mounts it with `mount -t virtiofs TAG DIR`.
    /// N request queues (default 1) of queue-size entries (default 1024).
    #[arg(long, value_name = "tag=TAG,socket=PATH[,queues=N,queue-size=N]")]
    fs: Vec<FsConfig>,
    /// Add a virtio-blk device on a raw disk image (repeatable: the guest's vda, vdb, ...
    /// after the vsock device); `,ro` makes it read-only. Its serial is the file name.
    #[arg(long = "disk", value_name = "PATH[,ro]")]
    disks: Vec<DiskConfig>,
}

fn run(cli: Cli) -> anyhow::Result<ExitReason> {
    let config = VmConfig {
        kernel: cli.kernel,
        initrd: cli.initrd,
        cmdline: cli.cmdline,
        mem_mib: cli.mem_mib,
        vcpus: u8::try_from(cli.vcpus).map_err(|_| ConfigError::TooManyVcpus(cli.vcpus))?,
        console: cli.console,
        vsock: cli.vsock_uds.map(|uds_path| VsockConfig {
            guest_cid: cli.vsock_cid,
            uds_path,
        }),
        fs: cli.fs,
        disks: cli.disks,
    };
    // Block SIGINT/SIGTERM in every thread (vCPU threads inherit the mask); a dedicated thread
    // waits for them and stops the VM cleanly.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals), None)
        .context("cannot block SIGINT/SIGTERM")?;

    let vmm = Vmm::new(config)?;
    let exit = vmm.exit_state();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                exit.request(ExitReason::Signal(sig as i32));
            }
        })
        .context("cannot start the signal thread")?;
    Ok(vmm.run()?)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(reason) => {
            let code = reason.exit_code();
            if code != 0 {
                eprintln!("sandpod-vmm: {reason}");
            }
            ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX))
        }
        Err(e) => {
            eprintln!("sandpod-vmm: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes the message already includes (the
/// library's errors embed their source in their message).
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg = format!("{msg}: {c}");
        }
    }
    msg
}
