//! A sandbox's state on disk (`state.json`), so that create, start, kill and delete can run in
//! separate processes.
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::process::ProcessIdent;

/// What `state.json` of a sandbox holds: the VM's facts only (its containers have their own
/// state files, see `crate::container::state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxState {
    pub id: String,
    /// The monitor process that owns the VM (None until it started).
    pub monitor: Option<ProcessIdent>,
    /// RFC 3339 creation time.
    pub created: String,
    /// Host mount points made for the sandbox outside the guest's reach (the share's top),
    /// last made last; each is detached with all below it.
    pub mounts: Vec<PathBuf>,
    /// The sandbox's cgroup on the host (see `host_cgroup`), removed with it.
    #[serde(default)]
    pub host_cgroup: Option<PathBuf>,
    /// The pod's network namespace mirrored into the VM, when its path outlives the creator
    /// (see `network::recorded`): delete removes what mirroring left there.
    #[serde(default)]
    pub netns: Option<PathBuf>,
}

impl SandboxState {
    /// Reads a state file.
    pub fn load(path: &Path) -> std::io::Result<SandboxState> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    /// Writes the state atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_json_atomic(path, self)
    }
}

/// Writes `value` as JSON to `path` atomically.
pub fn write_json_atomic(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically (a temporary file beside it, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Now as RFC 3339 UTC (seconds), without a date crate.
pub fn now_rfc3339() -> String {
    rfc3339(now_secs_nanos().0)
}

/// Now as RFC 3339 UTC with nanoseconds (runc's `created` and log times).
pub fn now_rfc3339_nanos() -> String {
    let (secs, nanos) = now_secs_nanos();
    let s = rfc3339(secs);
    format!("{}.{nanos:09}Z", s.trim_end_matches('Z'))
}

fn now_secs_nanos() -> (u64, u32) {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .unwrap_or((0, 0))
}

fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        let n = now_rfc3339_nanos();
        assert_eq!(n.len(), "2000-02-29T00:00:00.123456789Z".len(), "{n}");
    }

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        let s = SandboxState {
            id: "c1".into(),
            monitor: Some(ProcessIdent {
                pid: 7,
                start_time: 9,
            }),
            created: now_rfc3339(),
            mounts: vec!["/run/sandpod/c1/shared".into()],
            host_cgroup: None,
            netns: None,
        };
        let p = d.path().join("state.json");
        s.save(&p).unwrap();
        assert_eq!(SandboxState::load(&p).unwrap(), s);
    }
}
