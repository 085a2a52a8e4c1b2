//! `sandpod update`: runc's `--resources FILE|-` (a runtime-spec `LinuxResources` JSON) or its
//! single flags, applied to the container's cgroup in the guest.
use std::path::PathBuf;

use anyhow::Context;
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::container::RuntimeOptions;

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// A LinuxResources JSON file, `-` for standard input.
    #[arg(long, short)]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g accepted).
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory plus swap limit.
    #[arg(long)]
    pub memory_swap: Option<String>,
    #[arg(long)]
    pub memory_reservation: Option<String>,
    #[arg(long)]
    pub kernel_memory: Option<String>,
    #[arg(long)]
    pub kernel_memory_tcp: Option<String>,
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    #[arg(long)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    #[arg(long, hide = true)]
    pub l3_cache_schema: Option<String>,
    #[arg(long, hide = true)]
    pub mem_bw_schema: Option<String>,
    pub id: String,
}

/// Bytes from `123`, `64k`, `64m`, `1g` (binary units, as runc's units.RAMInBytes); -1 = max.
fn bytes(s: &str) -> anyhow::Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: i64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    n.checked_mul(mult)
        .with_context(|| format!("size {s:?} is too large"))
}

fn resources(a: &UpdateArgs) -> anyhow::Result<LinuxResources> {
    if let Some(p) = &a.resources {
        let data = super::read_file_or_stdin(p)?;
        return serde_json::from_slice(&data)
            .context("the resources are not a valid LinuxResources JSON");
    }
    let mut r = LinuxResources::default();
    if a.memory.is_some() || a.memory_swap.is_some() || a.memory_reservation.is_some() {
        let mut m = LinuxMemory::default();
        m.set_limit(a.memory.as_deref().map(bytes).transpose()?)
            .set_swap(a.memory_swap.as_deref().map(bytes).transpose()?)
            .set_reservation(a.memory_reservation.as_deref().map(bytes).transpose()?);
        r.set_memory(Some(m));
    }
    if a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpu_shares.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c = LinuxCpu::default();
        c.set_quota(a.cpu_quota)
            .set_period(a.cpu_period)
            .set_shares(a.cpu_shares)
            .set_cpus(a.cpuset_cpus.clone())
            .set_mems(a.cpuset_mems.clone());
        r.set_cpu(Some(c));
    }
    if let Some(l) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(l);
        r.set_pids(Some(p));
    }
    if a.blkio_weight.is_some() {
        anyhow::bail!("--blkio-weight: block I/O limits are not supported in the guest yet");
    }
    Ok(r)
}

pub async fn update(rt: &RuntimeOptions, a: &UpdateArgs) -> anyhow::Result<u8> {
    let r = resources(a)?;
    crate::container::resources::update(rt, &a.id, &r).await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(bytes("64m").unwrap(), 64 << 20);
        assert_eq!(bytes("1G").unwrap(), 1 << 30);
        assert_eq!(bytes("512").unwrap(), 512);
        assert_eq!(bytes("-1").unwrap(), -1);
        assert!(bytes("lots").is_err());
    }
}
