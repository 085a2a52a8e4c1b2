//! The limits of a sandbox's host cgroup ([`super::host_cgroup`]): what the whole sandbox may
//! cost the host, whatever the guest does — its memory (guest RAM plus the host processes'
//! overhead), its tasks and, when the spec sets a CPU quota, its CPU time. Only on a unified
//! cgroup v2 host (on a v1 or hybrid host there is no sandbox cgroup: the runtime says so in its
//! log).
use std::path::Path;

use anyhow::Context;
use oci_spec::runtime::Spec;

use crate::hypervisor::VmSize;

/// Host memory beyond the guest's RAM, MiB: the monitor (~3 MiB), sandpod-vmm (~4 MiB), virtiofsd (~4 MiB), the stand-ins
/// (~2 MiB each), and the kernel's memory charged to the sandbox (KVM's page tables and vCPU
/// state, socket buffers, virtiofsd's open files and the page cache of the files it reads, which
/// is reclaimed before anything is killed).
pub const HOST_MEMORY_OVERHEAD_MIB: u64 = 128;
/// Tasks (threads) of the sandbox's host processes, beyond one per vCPU: the monitor's, the
/// VMM's device threads, virtiofsd's, the stand-ins' (one per exec).
pub const HOST_PIDS_BASE: u64 = 256;
/// cpu.max's period when the spec gives a quota without one, µs (the kernel's default).
const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// The values written to the sandbox's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLimits {
    /// memory.max, bytes.
    pub memory_max: u64,
    /// pids.max.
    pub pids_max: u64,
    /// cpu.max's "quota period" (µs), when the spec sets a CPU quota.
    pub cpu_max: Option<(u64, u64)>,
}

impl HostLimits {
    /// The limits of a sandbox whose VM has `size`, for `spec` (its CPU quota and period).
    pub fn for_sandbox(size: VmSize, spec: &Spec) -> HostLimits {
        let cpu = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.cpu().as_ref());
        let quota = cpu
            .and_then(|c| c.quota())
            .and_then(|q| u64::try_from(q).ok())
            .filter(|q| *q > 0);
        let period = cpu
            .and_then(|c| c.period())
            .filter(|p| *p > 0)
            .unwrap_or(DEFAULT_CPU_PERIOD);
        HostLimits {
            memory_max: (u64::from(size.mem_mib) + HOST_MEMORY_OVERHEAD_MIB) << 20,
            pids_max: HOST_PIDS_BASE + u64::from(size.vcpus),
            cpu_max: quota.map(|q| (q, period)),
        }
    }

    /// The (file, value) pairs, in the order written.
    pub fn files(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("memory.max", self.memory_max.to_string()),
            ("pids.max", self.pids_max.to_string()),
        ];
        if let Some((q, p)) = self.cpu_max {
            v.push(("cpu.max", format!("{q} {p}")));
        }
        v
    }

    /// Writes the limits into the cgroup `path`.
    pub fn apply(&self, path: &Path) -> anyhow::Result<()> {
        for (file, value) in self.files() {
            std::fs::write(path.join(file), &value).with_context(|| {
                format!(
                    "setting {file} = {value} in {} (is the controller enabled there?)",
                    path.display()
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cpu: Option<(i64, Option<u64>)>) -> Spec {
        let mut j = serde_json::json!({"ociVersion": "1.0.2", "linux": {"resources": {}}});
        if let Some((quota, period)) = cpu {
            j["linux"]["resources"]["cpu"] = serde_json::json!({"quota": quota, "period": period});
        }
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn memory_pids_and_cpu() {
        let size = VmSize {
            vcpus: 2,
            mem_mib: 384,
        };
        let l = HostLimits::for_sandbox(size, &spec(None));
        assert_eq!(l.memory_max, (384 + 128) << 20);
        assert_eq!(l.pids_max, 258);
        assert_eq!(l.cpu_max, None);
        assert_eq!(
            l.files(),
            vec![
                ("memory.max", "536870912".to_string()),
                ("pids.max", "258".to_string())
            ]
        );
        let l = HostLimits::for_sandbox(size, &spec(Some((150_000, Some(50_000)))));
        assert_eq!(l.cpu_max, Some((150_000, 50_000)));
        assert_eq!(l.files()[2], ("cpu.max", "150000 50000".to_string()));
        let l = HostLimits::for_sandbox(size, &spec(Some((50_000, None))));
        assert_eq!(l.cpu_max, Some((50_000, 100_000)));
        // -1 (runc's "no quota") and 0 mean none.
        for q in [-1, 0] {
            assert_eq!(
                HostLimits::for_sandbox(size, &spec(Some((q, None)))).cpu_max,
                None
            );
        }
    }

    #[test]
    fn apply_writes_the_files() {
        let d = tempfile::tempdir().unwrap();
        let l = HostLimits {
            memory_max: 1 << 30,
            pids_max: 257,
            cpu_max: Some((100_000, 100_000)),
        };
        l.apply(d.path()).unwrap();
        let r = |f: &str| std::fs::read_to_string(d.path().join(f)).unwrap();
        assert_eq!(r("memory.max"), "1073741824");
        assert_eq!(r("pids.max"), "257");
        assert_eq!(r("cpu.max"), "100000 100000");
        assert!(l.apply(&d.path().join("missing")).is_err());
    }
}
