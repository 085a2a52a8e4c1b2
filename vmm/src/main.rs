//! `sandpod-vmm`: command-line front end of the VMM library.
// A cast that may truncate or lose a sign is a try_from with an error, or an #[allow] with the
// reason it is in range (the rest of the workspace's lints: [workspace.lints] in Cargo.toml).
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use sandpod_vmconfig::conventions::ErrorChain;
use sandpod_vmm::cli::VmmArgs;
use sandpod_vmm::seccomp::ThreadKind;
use sandpod_vmm::{ExitReason, Vmm};

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0    the guest powered off (the agent's request on the power port, I/O port 0x600)
  1    VMM error: bad input, KVM unavailable, KVM internal error
  2    the guest reset without a request (a kernel panic with panic=-1, e.g. the agent died),
       crashed or triple-faulted; also invalid command-line usage (from the argument parser)
  3    the guest asked for a reboot (on the power port)
  130  stopped by SIGINT; 143 stopped by SIGTERM

Logs go to stderr (SANDPOD_LOG=debug, else RUST_LOG, for more); the guest's ttyS0 goes to
--console.";

/// Sandpod microVM monitor: boots a Linux guest (ELF vmlinux + initramfs) on KVM.
#[derive(Parser, Debug)]
#[command(name = "sandpod-vmm", version = sandpod_vmm::VERSION, after_help = EXIT_STATUS_HELP)]
struct Cli {
    #[command(flatten)]
    vm: VmmArgs,
}

fn run(cli: Cli) -> anyhow::Result<ExitReason> {
    let violation = cli.vm.debug_seccomp_violation;
    let config = cli.vm.vm_config()?;
    // Block SIGINT/SIGTERM in every thread (vCPU threads inherit the mask); a dedicated thread
    // waits for them and stops the VM cleanly.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals), None)
        .context("cannot block SIGINT/SIGTERM")?;

    let mut vmm = Vmm::new(config)?;
    vmm.set_debug_seccomp_violation(violation);
    let exit = vmm.exit_state();
    let seccomp = vmm.seccomp();
    let (installed_tx, installed_rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            // The main thread's filter, before the guest runs (Vmm::run waits for none of
            // this thread's work: hence the channel).
            let installed = seccomp.apply(ThreadKind::Main);
            let ok = installed.is_ok();
            let _ = installed_tx.send(installed);
            if ok {
                if let Ok(sig) = signals.wait() {
                    exit.request(ExitReason::Signal(sig as i32));
                }
            }
        })
        .context("cannot start the signal thread")?;
    installed_rx
        .recv()
        .context("the signal thread died at start")?
        .context("signal thread")?;
    let reason = vmm.run()?;
    // The process ends now: no orderly device teardown (see `Vmm::abandon`).
    vmm.abandon();
    Ok(reason)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal (the runtime relays these lines into its log).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            sandpod_vmconfig::conventions::log_filter_from_env()
                .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
                .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn")),
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
            // The error and its causes on one line: the messages name what failed, their causes
            // are their sources.
            eprintln!("sandpod-vmm: {}", ErrorChain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
