//! How long each phase of a sandbox's start took, logged as one line (at info, so `--debug` and
//! any `--log` show it; `make bench` reads it):
//!
//! `boot phases ms: prepare=… template=… monitor=… vm_to_agent=… resume_clone=…
//! create_sandbox=… network=… create_container=… total=… start=… monitor: virtiofsd_ready=…
//! vmm_started=… guest: init=… switch_root=… init_to_serving=…`
//!
//! `template` (finding, or on first use making, the VM template) is there when templates are on,
//! `resume_clone` when the VM was restored from one; `start=` says how the VM started: `cold`,
//! `restored` or `cold_after_failed_restore` (then the phases of the failed restore come first,
//! `monitor` and `vm_to_agent` twice). A restored guest did not boot: its `guest:` figures are
//! the template's.
//!
//! The host's phases are measured here, one after the other from the sandbox's creation on;
//! `vm_to_agent` runs from the monitor's start (VMM and virtiofsd set-up, the guest kernel, the
//! agent) to the first answer on vsock; within it, the monitor's own figures (children.json:
//! virtiofsd started on its bound socket and the VMM process started, since the monitor
//! started). The guest's figures are the agent's own
//! (CreateSandboxResponse, the guest's boot clock): `init` is when the kernel started PID 1,
//! `switch_root` the agent's copy of the initramfs, `init_to_serving` PID 1's start to the API
//! served. They come from the guest, so they are only printed (as numbers, bounded), never used.
use std::fmt::Write;
use std::time::{Duration, Instant};

use crate::agent_client::proto::CreateSandboxResponse;

/// Guest-reported times above this are shown as this (a hostile guest's numbers stay short).
const GUEST_MS_MAX: u64 = 24 * 3600 * 1000;

/// The phases measured so far.
#[derive(Debug, Clone)]
pub struct BootPhases {
    start: Instant,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
    guest: Option<[u64; 4]>,
    monitor: Option<(Option<u64>, Option<u64>)>,
    start_kind: Option<&'static str>,
}

impl Default for BootPhases {
    fn default() -> Self {
        Self::new()
    }
}

impl BootPhases {
    /// Starts measuring now.
    pub fn new() -> BootPhases {
        let now = Instant::now();
        BootPhases {
            start: now,
            last: now,
            phases: Vec::new(),
            guest: None,
            monitor: None,
            start_kind: None,
        }
    }

    /// How the VM started (restored from its template or booted).
    pub fn start_kind(&mut self, kind: crate::sandbox::template::StartKind) {
        self.start_kind = Some(kind.as_str());
    }

    /// Ends the phase `name`: the time since the previous phase ended.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.phases.push((name, now - self.last));
        self.last = now;
    }

    /// The guest's boot times from the agent's CreateSandboxResponse.
    pub fn guest(&mut self, r: &CreateSandboxResponse) {
        self.guest = Some(
            [
                r.boot_ms_init,
                r.switch_root_ms,
                r.boot_ms_ready,
                r.boot_ms_serving,
            ]
            .map(|v| v.min(GUEST_MS_MAX)),
        );
    }

    /// The monitor's own times (since it started): virtiofsd ready, the VMM started.
    pub fn monitor(&mut self, c: &super::monitor::Children) {
        self.monitor = Some((c.virtiofsd_ready_ms, c.vmm_started_ms));
    }

    /// The log line (see the module docs).
    pub fn line(&self) -> String {
        let mut s = String::from("boot phases ms:");
        for (name, d) in &self.phases {
            let _ = write!(s, " {name}={}", d.as_millis());
        }
        let _ = write!(s, " total={}", (self.last - self.start).as_millis());
        if let Some(k) = self.start_kind {
            let _ = write!(s, " start={k}");
        }
        if let Some((fsd, vmm)) = self.monitor {
            let ms = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
            let _ = write!(
                s,
                " monitor: virtiofsd_ready={} vmm_started={}",
                ms(fsd),
                ms(vmm)
            );
        }
        if let Some([init, switch, _ready, serving]) = self.guest {
            let _ = write!(
                s,
                " guest: init={init} switch_root={switch} init_to_serving={}",
                serving.saturating_sub(init)
            );
        }
        s
    }

    /// Logs [`Self::line`] at info.
    pub fn log(&self) {
        tracing::info!(target: "sandpod::boot", "{}", self.line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_each_phase_in_order_and_the_guest_figures_bounded() {
        let mut p = BootPhases::new();
        std::thread::sleep(Duration::from_millis(20));
        p.mark("monitor");
        p.mark("vm_to_agent");
        let mut r = CreateSandboxResponse::new();
        r.boot_ms_init = 900;
        r.switch_root_ms = 150;
        r.boot_ms_ready = 1000;
        r.boot_ms_serving = 1300;
        p.guest(&r);
        let line = p.line();
        assert!(line.starts_with("boot phases ms: monitor="), "{line}");
        let monitor: u128 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("monitor="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(monitor >= 20, "{line}");
        assert!(line.contains(" vm_to_agent="), "{line}");
        assert!(!line.contains(" start="), "{line}");
        p.start_kind(crate::sandbox::template::StartKind::Restored);
        let line = p.line();
        assert!(
            line.contains(" start=restored monitor: ") || line.contains(" start=restored guest: "),
            "{line}"
        );
        assert!(
            line.ends_with(" guest: init=900 switch_root=150 init_to_serving=400"),
            "{line}"
        );
        r.boot_ms_init = u64::MAX;
        r.boot_ms_serving = 5;
        p.guest(&r);
        assert!(p
            .line()
            .ends_with(" guest: init=86400000 switch_root=150 init_to_serving=0"));
    }
}
