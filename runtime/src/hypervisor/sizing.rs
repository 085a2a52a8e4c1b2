//! VM size from the spec's linux.resources: memory = the container's limit plus the guest's own
//! needs, vCPUs = the CPU quota rounded up, both bounded. Where the spec sets none, the config's
//! defaults, which the sandbox's annotations (Kata's names, e.g. passed by containerd's CRI
//! `pod_annotations`) may override.
use oci_spec::runtime::Spec;

use crate::config::HypervisorConfig;

/// Annotation: the VM's vCPUs when the spec sets no CPU quota (Kata's name; a number, a
/// fraction rounded up).
pub const VCPUS_ANNOTATION: &str = "io.katacontainers.config.hypervisor.default_vcpus";
/// Annotation: the VM's memory in MiB when the spec sets no memory limit (Kata's name).
pub const MEMORY_ANNOTATION: &str = "io.katacontainers.config.hypervisor.default_memory";

/// An annotation the VM's size cannot come from.
#[derive(Debug, thiserror::Error)]
#[error("invalid annotation {name}={value:?}: {why}")]
pub struct SizingError {
    pub name: &'static str,
    pub value: String,
    pub why: String,
}

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

    /// The VM for a sandbox's spec: the config's defaults (`[hypervisor]` default_vcpus and
    /// default_memory_mib), overridden by the spec's annotations, where the spec's own limits
    /// do not decide; at most this host's CPUs.
    pub fn for_sandbox(spec: &Spec, h: &HypervisorConfig) -> Result<VmSize, SizingError> {
        let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let defaults = VmSize {
            vcpus: h.default_vcpus.unwrap_or(VmSize::DEFAULT.vcpus),
            mem_mib: h.default_memory_mib.unwrap_or(VmSize::DEFAULT.mem_mib),
        };
        let defaults = VmSize::annotated(spec, defaults)?;
        Ok(VmSize::for_spec(spec, host_cpus, defaults))
    }

    /// `defaults` with the spec's sizing annotations applied ([`VCPUS_ANNOTATION`]: 1 to
    /// [`MAX_VCPUS`]; [`MEMORY_ANNOTATION`]: 64 to [`MAX_MEM_MIB`] MiB). A value outside those
    /// bounds or not a number is an error, not silently replaced.
    pub fn annotated(spec: &Spec, defaults: VmSize) -> Result<VmSize, SizingError> {
        let mut size = defaults;
        let Some(annotations) = spec.annotations().as_ref() else {
            return Ok(size);
        };
        if let Some(v) = annotations.get(VCPUS_ANNOTATION) {
            let err = |why: &str| SizingError {
                name: VCPUS_ANNOTATION,
                value: v.chars().take(64).collect(),
                why: why.to_string(),
            };
            let n: f64 = v.trim().parse().map_err(|_| err("not a number"))?;
            if !(n > 0.0 && n <= f64::from(MAX_VCPUS)) {
                return Err(err(&format!(
                    "vCPUs must be more than 0 and at most {MAX_VCPUS}"
                )));
            }
            // In range (checked above): the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let vcpus = n.ceil() as u8;
            size.vcpus = vcpus;
        }
        if let Some(v) = annotations.get(MEMORY_ANNOTATION) {
            let err = |why: &str| SizingError {
                name: MEMORY_ANNOTATION,
                value: v.chars().take(64).collect(),
                why: why.to_string(),
            };
            let mib: u32 = v
                .trim()
                .parse()
                .map_err(|_| err("not a whole number of MiB"))?;
            if !(64..=MAX_MEM_MIB).contains(&mib) {
                return Err(err(&format!("memory must be 64 to {MAX_MEM_MIB} MiB")));
            }
            size.mem_mib = mib;
        }
        Ok(size)
    }

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

    fn annotated(a: &str) -> Result<VmSize, SizingError> {
        let spec: Spec = serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"annotations":{{{a}}}}}"#
        ))
        .unwrap();
        VmSize::annotated(&spec, VmSize::DEFAULT)
    }

    #[test]
    fn annotations_override_the_defaults_within_bounds() {
        assert_eq!(annotated("").unwrap(), VmSize::DEFAULT);
        let a = format!(r#""{VCPUS_ANNOTATION}":"1.5","{MEMORY_ANNOTATION}":"512""#);
        assert_eq!(
            annotated(&a).unwrap(),
            VmSize {
                vcpus: 2,
                mem_mib: 512
            }
        );
        for bad in [
            format!(r#""{VCPUS_ANNOTATION}":"0""#),
            format!(r#""{VCPUS_ANNOTATION}":"-1""#),
            format!(r#""{VCPUS_ANNOTATION}":"33""#),
            format!(r#""{VCPUS_ANNOTATION}":"NaN""#),
            format!(r#""{VCPUS_ANNOTATION}":"two""#),
            format!(r#""{MEMORY_ANNOTATION}":"63""#),
            format!(r#""{MEMORY_ANNOTATION}":"1e3""#),
            format!(r#""{MEMORY_ANNOTATION}":"99999999999""#),
        ] {
            let e = annotated(&bad).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid annotation io.katacontainers."),
                "{e}"
            );
        }
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
