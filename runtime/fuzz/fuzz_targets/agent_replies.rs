//! The host's handling of the agent's replies (the guest is untrusted): arbitrary bytes decoded
//! as each reply the client post-processes (the protobuf decoding ttrpc does), then the
//! client's own checks and bounds. Checks that nothing panics, that a signal the client accepts
//! is in Linux's range, that what it keeps of ListProcesses/StatsContainer is bounded and has no
//! control character left, and that an error status from the agent becomes a bounded,
//! printable message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protobuf::Message;
use sandpod_protocol::agent::{ListProcessesResponse, StatsContainerResponse, WaitProcessResponse};
use sandpod_runtime::agent_client::bounds::{
    bound_processes, bound_stats, MAX_AGENT_MESSAGE, MAX_CMDLINE, MAX_COMM, MAX_MEMORY_STAT,
    MAX_PROCESSES, MAX_STATE, MAX_STAT_KEY,
};
use sandpod_runtime::agent_client::error::AgentError;
use sandpod_protocol::ExitStatus;

fn no_controls(s: &str) {
    assert!(
        !s.chars().any(|c| c.is_control()),
        "control character kept: {s:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => {
            let Ok(r) = WaitProcessResponse::parse_from_bytes(bytes) else {
                return;
            };
            if let Ok(status) = ExitStatus::from_wait_response(&r) {
                if let ExitStatus::Signaled(sig) = status {
                    assert!((1..=64).contains(&sig), "signal {sig} accepted");
                }
                let _ = status.shell_code();
            }
        }
        1 => {
            let Ok(r) = StatsContainerResponse::parse_from_bytes(bytes) else {
                return;
            };
            let (kept, dropped) = bound_stats(&r);
            assert!(kept.memory_stat.len() <= MAX_MEMORY_STAT);
            assert!(kept.memory_stat.len() + dropped >= r.memory_stat.len().min(MAX_MEMORY_STAT));
            for k in kept.memory_stat.keys() {
                assert!(k.len() <= MAX_STAT_KEY);
                no_controls(k);
            }
            assert!(kept.special_fields.unknown_fields().iter().next().is_none());
        }
        2 => {
            let Ok(r) = ListProcessesResponse::parse_from_bytes(bytes) else {
                return;
            };
            let (kept, dropped) = bound_processes(&r.processes);
            assert!(kept.len() <= MAX_PROCESSES);
            assert_eq!(kept.len() + dropped, r.processes.len());
            for p in &kept {
                assert!(p.cmdline.len() <= MAX_CMDLINE);
                assert!(p.comm.len() <= MAX_COMM);
                assert!(p.state.len() <= MAX_STATE);
                no_controls(&p.cmdline);
                no_controls(&p.comm);
                no_controls(&p.state);
            }
        }
        _ => {
            let Ok(status) = ttrpc::proto::Status::parse_from_bytes(bytes) else {
                return;
            };
            let e = AgentError::from_ttrpc("StartContainer", ttrpc::Error::RpcStatus(status));
            let text = e.to_string();
            no_controls(&text);
            // The method, the escaped and cut message, " […N more bytes]" and the code.
            assert!(text.len() <= MAX_AGENT_MESSAGE + 128, "{} bytes", text.len());
        }
    }
});
