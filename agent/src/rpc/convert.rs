//! Protobuf requests to the agent's own types, and back.
use sandpod_protocol::agent::{
    CreateSandboxRequest, ExecProcessRequest, ListProcessesResponse, ProcessInfo,
    StatsContainerResponse, WaitProcessResponse,
};

use crate::container::cgroup_stats::CgroupStats;
use crate::container::procinfo::ProcInfo;
use crate::process::creds::Credentials;
use crate::process::{ExecSpec, ExitStatus, ProcessSpec};
use crate::sandbox::{MountSpec, SandboxSpec};

/// ExecProcess; an empty cwd is `/`.
pub fn exec_spec(req: ExecProcessRequest) -> ExecSpec {
    let cwd = if req.cwd.is_empty() {
        "/".into()
    } else {
        req.cwd
    };
    ExecSpec {
        exec_id: req.exec_id,
        process: ProcessSpec {
            args: req.args,
            env: req.env,
            cwd: cwd.into(),
            creds: Credentials {
                uid: req.uid,
                gid: req.gid,
                additional_gids: req.additional_gids,
            },
            umask: None,
            terminal: req.terminal,
        },
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
        stream_token: req.stream_token,
    }
}

pub fn sandbox_spec(req: CreateSandboxRequest) -> SandboxSpec {
    SandboxSpec {
        hostname: req.hostname,
        dns_servers: req.dns_servers,
        dns_search: req.dns_search,
        mounts: req
            .mounts
            .into_iter()
            .map(|m| MountSpec {
                source: m.source,
                target: m.target,
                fstype: m.fstype,
                options: m.options,
            })
            .collect(),
    }
}

pub fn wait_response(status: ExitStatus) -> WaitProcessResponse {
    let mut resp = WaitProcessResponse::new();
    match status {
        ExitStatus::Exited(code) => resp.set_exit_code(code),
        ExitStatus::Signaled(sig) => resp.set_signal(sig),
    }
    resp
}

pub fn stats_response(s: CgroupStats) -> StatsContainerResponse {
    let mut r = StatsContainerResponse::new();
    r.cpu_usage_usec = s.cpu_usage_usec;
    r.cpu_user_usec = s.cpu_user_usec;
    r.cpu_system_usec = s.cpu_system_usec;
    r.cpu_nr_periods = s.cpu_nr_periods;
    r.cpu_nr_throttled = s.cpu_nr_throttled;
    r.cpu_throttled_usec = s.cpu_throttled_usec;
    r.memory_current = s.memory_current;
    r.memory_max = s.memory_max;
    r.memory_swap_current = s.memory_swap_current;
    r.memory_stat = s.memory_stat;
    r.memory_oom = s.memory_oom;
    r.memory_oom_kill = s.memory_oom_kill;
    r.pids_current = s.pids_current;
    r.pids_max = s.pids_max;
    r
}

pub fn processes_response(procs: Vec<ProcInfo>) -> ListProcessesResponse {
    let mut r = ListProcessesResponse::new();
    r.processes = procs
        .into_iter()
        .map(|p| {
            let mut info = ProcessInfo::new();
            info.pid = p.pid;
            info.ppid = p.ppid;
            info.uid = p.uid;
            info.state = p.state;
            info.comm = p.comm;
            info.cmdline = p.cmdline;
            info
        })
        .collect();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_and_exit_are_distinct() {
        let r = wait_response(ExitStatus::Signaled(15));
        assert!(r.has_signal() && !r.has_exit_code());
        assert_eq!(r.signal(), 15);
        let r = wait_response(ExitStatus::Exited(0));
        assert!(r.has_exit_code() && !r.has_signal());
        assert_eq!(r.exit_code(), 0);
    }
}
