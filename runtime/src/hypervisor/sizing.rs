//! VM size from the spec's linux.resources: memory = the container's limit plus the guest's own
//! needs, vCPUs = the CPU quota rounded up, both bounded.
use oci_spec::runtime::Spec;

/// Guest memory when the spec sets no limit, MiB.
pub const DEFAULT_MEM_MIB: u32 = 256;
/// Added to the container's memory limit for the guest kernel, the agent and page cache, MiB.
pub const GUEST_OVERHEAD_MIB: u32 = 128;
/// Largest VM the runtime makes from a spec, MiB.
pub const MAX_MEM_MIB: u32 = 64 * 1024;
/// Most vCPUs the runtime gives a VM from a spec.
pub const MAX_VCPUS: u8 = 32;

/// vCPUs and memory of a sandbox VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSize {
    pub vcpus: u8,
    pub mem_mib: u32,
}

impl VmSize {
    /// The size when the spec sets no limits.
    pub const DEFAULT: VmSize = VmSize {
        vcpus: 1,
        mem_mib: DEFAULT_MEM_MIB,
    };

    /// The size for a spec, never more than the host has CPUs (`host_cpus`); `defaults` where the
    /// spec sets no memory limit or CPU quota.
    pub fn for_spec(spec: &Spec, host_cpus: usize, defaults: VmSize) -> VmSize {
        let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
        let limit = resources
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|l| *l > 0);
        let mem_mib = match limit {
            Some(bytes) => {
                let mib = u64::try_from(bytes).unwrap_or(0).div_ceil(1024 * 1024);
                let mib = mib.saturating_add(u64::from(GUEST_OVERHEAD_MIB));
                u32::try_from(mib)
                    .unwrap_or(MAX_MEM_MIB)
                    .clamp(64, MAX_MEM_MIB)
            }
            None => defaults.mem_mib,
        };
        let cpu = resources.and_then(|r| r.cpu().as_ref());
        let quota = cpu.and_then(|c| c.quota()).filter(|q| *q > 0);
        let period = cpu
            .and_then(|c| c.period())
            .filter(|p| *p > 0)
            .unwrap_or(100_000);
        let wanted = match quota {
            Some(q) => u64::try_from(q).unwrap_or(1).div_ceil(period),
            None => u64::from(defaults.vcpus),
        };
        let cap = u64::try_from(host_cpus.max(1))
            .unwrap_or(1)
            .min(u64::from(MAX_VCPUS));
        let vcpus = u8::try_from(wanted.clamp(1, cap)).unwrap_or(1);
        VmSize { vcpus, mem_mib }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resources: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"linux":{{"resources":{resources}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn defaults_without_limits() {
        assert_eq!(
            VmSize::for_spec(&spec("{}"), 8, VmSize::DEFAULT),
            VmSize {
                vcpus: 1,
                mem_mib: DEFAULT_MEM_MIB
            }
        );
    }

    #[test]
    fn memory_limit_plus_overhead_and_cpu_quota_rounded_up() {
        let s = spec(r#"{"memory":{"limit":67108864},"cpu":{"quota":150000,"period":100000}}"#);
        assert_eq!(
            VmSize::for_spec(&s, 8, VmSize::DEFAULT),
            VmSize {
                vcpus: 2,
                mem_mib: 64 + GUEST_OVERHEAD_MIB
            }
        );
    }

    #[test]
    fn bounded_by_host_cpus_and_max_memory() {
        let s = spec(
            r#"{"memory":{"limit":9223372036854775807},"cpu":{"quota":6400000,"period":100000}}"#,
        );
        assert_eq!(
            VmSize::for_spec(&s, 2, VmSize::DEFAULT),
            VmSize {
                vcpus: 2,
                mem_mib: MAX_MEM_MIB
            }
        );
        let unlimited = spec(r#"{"memory":{"limit":-1},"cpu":{"quota":-1}}"#);
        assert_eq!(
            VmSize::for_spec(&unlimited, 2, VmSize::DEFAULT).mem_mib,
            DEFAULT_MEM_MIB
        );
    }
}
