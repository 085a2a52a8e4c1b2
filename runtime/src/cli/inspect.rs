//! `ps`, `list` and `events`: what runs, in runc's output shapes.
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use crate::agent_client::proto::StatsContainerResponse;
use crate::container::lifecycle::load;
use crate::container::standin::exec_standins;
use crate::container::state::{self, Status};
use crate::container::RuntimeOptions;

#[derive(clap::Args, Debug)]
pub struct PsArgs {
    /// table (the guest's view of the processes) or json (the host pids that stand for them).
    #[arg(long, short, default_value = "table")]
    pub format: String,
    pub id: String,
    /// Accepted for runc compatibility (ps(1) options).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `ps --format json` lists host pids (callers such as `docker top` look them up on the host):
/// the stand-ins of the container's init and execs. The table shows the guest's processes.
pub async fn ps(rt: &RuntimeOptions, a: &PsArgs) -> anyhow::Result<u8> {
    match a.format.as_str() {
        "json" => {
            let (layout, st) = load(rt, &a.id)?;
            let mut pids: Vec<i32> = Vec::new();
            if st.status(&layout) != Status::Stopped {
                pids.extend(st.standin.map(|s| s.pid));
                pids.extend(exec_standins(&layout, &a.id).iter().map(|s| s.pid));
            }
            println!("{}", serde_json::to_string(&pids)?);
        }
        "table" => {
            let procs = crate::container::resources::processes(rt, &a.id).await?;
            println!("{:>7} {:>7} {:>6} {:1} CMD", "PID", "PPID", "UID", "S");
            for p in procs {
                let cmd = if p.cmdline.is_empty() {
                    format!("[{}]", p.comm)
                } else {
                    p.cmdline.clone()
                };
                println!(
                    "{:>7} {:>7} {:>6} {:1} {}",
                    p.pid, p.ppid, p.uid, p.state, cmd
                );
            }
        }
        f => anyhow::bail!("invalid format option {f:?}: expected table or json"),
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// table or json.
    #[arg(long, short, default_value = "table")]
    pub format: String,
    /// Only the ids.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn list(rt: &RuntimeOptions, a: &ListArgs) -> anyhow::Result<u8> {
    let mut states = Vec::new();
    for (layout, id) in state::list(&rt.root) {
        if let Ok(s) = state::ContainerState::load(&layout, &id) {
            states.push(s.oci(&layout));
        }
    }
    if a.quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&states)?),
        "table" => {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<31} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &states {
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<31} {}",
                    s.id,
                    s.pid,
                    s.status,
                    s.bundle.display(),
                    s.created,
                    if s.owner.is_empty() { "root" } else { &s.owner }
                );
            }
        }
        f => anyhow::bail!("invalid format option {f:?}: expected table or json"),
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Seconds between statistics events (runc takes a duration such as `5s`).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Print the statistics once and exit.
    #[arg(long)]
    pub stats: bool,
    pub id: String,
}

fn parse_interval(s: &str) -> anyhow::Result<Duration> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid interval {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => anyhow::bail!("invalid interval {s:?}: expected e.g. 500ms, 5s or 1m"),
    };
    if !(secs > 0.0 && secs < 86_400.0) {
        anyhow::bail!("invalid interval {s:?}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// runc's `types.Stats` from the guest's cgroup figures (CPU times in nanoseconds).
pub fn runc_stats(s: &StatsContainerResponse) -> serde_json::Value {
    let limit = |v: u64| if v == 0 { u64::MAX } else { v };
    json!({
        "cpu": {
            "usage": {
                "total": s.cpu_usage_usec.saturating_mul(1000),
                "kernel": s.cpu_system_usec.saturating_mul(1000),
                "user": s.cpu_user_usec.saturating_mul(1000)
            },
            "throttling": {
                "periods": s.cpu_nr_periods,
                "throttledPeriods": s.cpu_nr_throttled,
                "throttledTime": s.cpu_throttled_usec.saturating_mul(1000)
            }
        },
        "memory": {
            "usage": {"usage": s.memory_current, "limit": limit(s.memory_max), "max": 0, "failcnt": s.memory_oom},
            "swap": {"usage": s.memory_swap_current, "limit": 0},
            "raw": s.memory_stat
        },
        "pids": {"current": s.pids_current, "limit": s.pids_max},
        "blkio": {},
        "hugetlb": {}
    })
}

pub async fn events(rt: &RuntimeOptions, a: &EventsArgs) -> anyhow::Result<u8> {
    let interval = parse_interval(&a.interval)?;
    let event = |t: &str, data: Option<serde_json::Value>| {
        let mut e = json!({"type": t, "id": a.id});
        if let Some(d) = data {
            e["data"] = d;
        }
        println!("{e}");
    };
    let s = crate::container::resources::stats(rt, &a.id).await?;
    event("stats", Some(runc_stats(&s)));
    if a.stats {
        return Ok(0);
    }
    let mut oom_kills = s.memory_oom_kill;
    loop {
        tokio::time::sleep(interval).await;
        let Ok(s) = crate::container::resources::stats(rt, &a.id).await else {
            // The container stopped (or its VM did): the stream ends, as runc's does.
            return Ok(0);
        };
        if s.memory_oom_kill > oom_kills {
            event("oom", None);
        }
        oom_kills = s.memory_oom_kill;
        event("stats", Some(runc_stats(&s)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("5h").is_err());
    }

    #[test]
    fn stats_shape() {
        let mut s = StatsContainerResponse::new();
        s.cpu_usage_usec = 3;
        s.memory_current = 4096;
        s.pids_current = 2;
        let v = runc_stats(&s);
        assert_eq!(v["cpu"]["usage"]["total"], 3000);
        assert_eq!(v["memory"]["usage"]["usage"], 4096);
        assert_eq!(v["memory"]["usage"]["limit"], u64::MAX);
        assert_eq!(v["pids"]["current"], 2);
    }
}
