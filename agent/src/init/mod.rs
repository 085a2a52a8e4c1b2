//! Guest bring-up as PID 1: mounts, console, the ready line, then serve (possibly as a template,
//! see [`crate::clone`]) / power off.
//!
//! Serving includes reaping: as PID 1 the agent inherits every orphan of the guest, and
//! `process::reaper` reaps them along with the processes it starts.
pub mod console;
pub mod loopback;
pub mod mounts;
pub mod power;
pub mod switch_root;

use anyhow::Context;

use crate::cmdline::{AfterReady, AgentConfig};
use crate::guest::info::GuestInfo;
use crate::serve::Boot;
use crate::transport::Transport;

/// Runs PID 1 (`args`: argv without argv[0]). Returns only on a fatal error.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let switch_ms = switch_root::switched(args);
    let now = console::ms_since_boot();
    // (Re-executed after the switch: PID 1 first started about the switch's duration ago.)
    crate::boot_times::mark_init(
        now.saturating_sub(switch_ms.unwrap_or(0)),
        switch_ms.unwrap_or(0),
    );
    if switch_ms.is_none() {
        // Only returns on failure: go on without it (containers then cannot pivot_root).
        let err = switch_root::switch_root().unwrap_err();
        eprintln!("sandpod-agent: switch_root failed, staying on the initramfs: {err:#}");
    }
    mounts::mount_basics().context("mounting the basic file systems")?;
    console::ensure_stdio();
    if let Err(e) = loopback::bring_up() {
        eprintln!("sandpod-agent: cannot set lo up: {e}");
    }
    if let Some(ms) = switch_ms {
        println!("sandpod-agent switch_root ms={ms}");
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let config = AgentConfig::from_cmdline(&cmdline)?;
    // The host waits for exactly this line: keep its format stable.
    let ready = console::ms_since_boot();
    crate::boot_times::mark_ready(ready);
    println!("sandpod-agent ready {ready}");
    match GuestInfo::read() {
        Ok(info) => println!(
            "sandpod-agent guest cpus={} mem_total_kib={}",
            info.cpus, info.mem_total_kib
        ),
        Err(e) => eprintln!("sandpod-agent: reading guest details: {e:#}"),
    }
    match config.after_ready {
        AfterReady::Poweroff => power::power_off(),
        AfterReady::Reboot => power::reboot(),
        AfterReady::Serve => {
            let boot = if config.template {
                Boot::Template
            } else {
                Boot::Fresh
            };
            crate::serve::run(Transport::Vsock, boot)
        }
    }
}
