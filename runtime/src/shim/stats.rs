//! Task metrics: the agent's figures of a container's cgroup (cgroup v2 in the guest) as
//! containerd's cgroup v2 `Metrics` (`io.containerd.cgroups.v2.Metrics`), what `ctr task metrics`
//! and the CRI read.
use containerd_shim::protos::cgroups_v2::metrics::{
    CPUStat, MemoryEvents, MemoryStat, Metrics, PidsStat,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageFull;

use crate::agent_client::proto::StatsContainerResponse;

/// The agent's stats as containerd's cgroup v2 metrics.
pub fn metrics(s: &StatsContainerResponse) -> Metrics {
    let stat = |k: &str| s.memory_stat.get(k).copied().unwrap_or(0);
    let mut cpu = CPUStat::new();
    cpu.usage_usec = s.cpu_usage_usec;
    cpu.user_usec = s.cpu_user_usec;
    cpu.system_usec = s.cpu_system_usec;
    cpu.nr_periods = s.cpu_nr_periods;
    cpu.nr_throttled = s.cpu_nr_throttled;
    cpu.throttled_usec = s.cpu_throttled_usec;
    let mut mem = MemoryStat::new();
    mem.anon = stat("anon");
    mem.file = stat("file");
    mem.kernel_stack = stat("kernel_stack");
    mem.slab = stat("slab");
    mem.sock = stat("sock");
    mem.shmem = stat("shmem");
    mem.file_mapped = stat("file_mapped");
    mem.file_dirty = stat("file_dirty");
    mem.file_writeback = stat("file_writeback");
    mem.anon_thp = stat("anon_thp");
    mem.inactive_anon = stat("inactive_anon");
    mem.active_anon = stat("active_anon");
    mem.inactive_file = stat("inactive_file");
    mem.active_file = stat("active_file");
    mem.unevictable = stat("unevictable");
    mem.slab_reclaimable = stat("slab_reclaimable");
    mem.slab_unreclaimable = stat("slab_unreclaimable");
    mem.pgfault = stat("pgfault");
    mem.pgmajfault = stat("pgmajfault");
    mem.usage = s.memory_current;
    // "max" (0 from the agent) is containerd's u64::MAX.
    mem.usage_limit = if s.memory_max == 0 {
        u64::MAX
    } else {
        s.memory_max
    };
    mem.swap_usage = s.memory_swap_current;
    let mut events = MemoryEvents::new();
    events.oom = s.memory_oom;
    events.oom_kill = s.memory_oom_kill;
    let mut pids = PidsStat::new();
    pids.current = s.pids_current;
    pids.limit = s.pids_max;
    let mut m = Metrics::new();
    m.cpu = Some(cpu).into();
    m.memory = Some(mem).into();
    m.memory_events = Some(events).into();
    m.pids = Some(pids).into();
    m
}

/// `msg` packed the way containerd's typeurl reads it: the bare message name as the type URL.
pub fn to_any<M: MessageFull>(msg: &M) -> Result<Any, containerd_shim::protos::protobuf::Error> {
    let mut any = Any::new();
    any.type_url = M::descriptor().full_name().to_string();
    any.value = msg.write_to_bytes()?;
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::Message;

    #[test]
    fn agent_stats_become_cgroup_v2_metrics() {
        let mut s = StatsContainerResponse::new();
        s.cpu_usage_usec = 1234;
        s.memory_current = 4096;
        s.memory_stat.insert("anon".into(), 100);
        s.pids_current = 3;
        let m = metrics(&s);
        assert_eq!(m.cpu.usage_usec, 1234);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.memory.usage_limit, u64::MAX);
        assert_eq!(m.memory.anon, 100);
        assert_eq!(m.pids.current, 3);
        let any = to_any(&m).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        assert_eq!(Metrics::parse_from_bytes(&any.value).unwrap(), m);
    }
}
