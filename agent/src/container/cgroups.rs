//! A container's cgroup (v2, mounted at /sys/fs/cgroup in the guest): /sys/fs/cgroup/sandpod/<id>.
//!
//! The spec's `linux.resources` become interface-file writes, converted and checked like runc's
//! cgroup v2 driver does (-1 = "max", 0 = unset, other negatives rejected), all computed before
//! anything is written so a bad spec leaves no cgroup behind; `linux.resources.devices` (with
//! runc's default allow-list) becomes the device program attached to the new cgroup before any
//! process is in it (`device_rules`, `device_filter`).
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};
use tracing::{debug, warn};

use super::cgroup_parent;
use super::cgroup_stats::{self, CgroupStats};
use super::device_filter;
use super::device_rules::DeviceRules;

/// Where the guest mounts cgroup2.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Test mode only (`--test-serve`): the cgroup2 directory to use instead of [`CGROUP_ROOT`].
pub const TEST_ROOT_ENV: &str = "SANDPOD_AGENT_CGROUP_ROOT";
/// The parent of all container cgroups, under the root.
pub const SANDPOD_GROUP: &str = "sandpod";
/// Controllers enabled for the containers, when the kernel has them.
pub(super) const CONTROLLERS: [&str; 5] = ["cpuset", "cpu", "io", "memory", "pids"];
/// How long `remove` waits for the cgroup to empty.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// One interface-file write: (file name, value).
pub type CgroupWrite = (String, String);

static TEST_ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Test mode: puts the containers' cgroups under `root` (a cgroup2 directory) instead of
/// /sys/fs/cgroup. Once per process; the guest never calls it.
pub fn set_test_root(root: &Path) -> Result<()> {
    if !root.is_absolute() || !root.join("cgroup.controllers").is_file() {
        bail!(
            "{TEST_ROOT_ENV}={}: not a cgroup2 directory (no cgroup.controllers)",
            root.display()
        );
    }
    TEST_ROOT
        .set(root.to_owned())
        .map_err(|_| anyhow!("the cgroup root is already set"))
}

/// The cgroup2 directory the containers' cgroups go under.
pub fn root() -> &'static Path {
    TEST_ROOT
        .get()
        .map(PathBuf::as_path)
        .unwrap_or(Path::new(CGROUP_ROOT))
}

/// UpdateContainer's failures: the request (nothing written) or the kernel's refusal.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    #[error("{0:#}")]
    Apply(anyhow::Error),
}

/// A container's cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    path: PathBuf,
}

impl ContainerCgroup {
    /// Creates /sys/fs/cgroup/sandpod/<container_id> with the spec's resources applied.
    pub fn create(container_id: &str, resources: Option<&LinuxResources>) -> Result<Self> {
        Self::create_in(root(), container_id, resources)
    }

    /// `create` under another cgroup2 root (tests).
    pub fn create_in(
        root: &Path,
        container_id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Self> {
        Self::create_at(root, container_id, resources, true)
    }

    /// Tests on a plain directory imitating a cgroup2 root, where no BPF program can attach.
    #[cfg(test)]
    pub(crate) fn create_without_device_program(
        root: &Path,
        container_id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Self> {
        Self::create_at(root, container_id, resources, false)
    }

    fn create_at(
        root: &Path,
        container_id: &str,
        resources: Option<&LinuxResources>,
        device_program: bool,
    ) -> Result<Self> {
        validate_id(container_id)?;
        // The device rules: the spec's then runc's defaults, enforced even without a spec.
        let device_rules = DeviceRules::from_spec(
            resources
                .and_then(|r| r.devices().as_deref())
                .unwrap_or_default(),
        )
        .with_context(|| format!("container {container_id}"))?;
        let available = read_controllers(root)?;
        let writes = match resources {
            Some(r) => plan(r, &available).with_context(|| {
                format!(
                    "container {container_id}: linux.resources (cgroup2 at {}, controllers: {})",
                    root.display(),
                    controller_list(&available)
                )
            })?,
            None => Vec::new(),
        };
        let began = std::time::Instant::now();
        let parent = cgroup_parent::ensure(root, &available)?;
        let enabled = began.elapsed();
        let path = parent.join(container_id);
        fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        let made = began.elapsed();
        let cgroup = Self { path };
        let applied = apply_writes(&cgroup.path, &writes)
            .context("cgroup limits")
            .and_then(|()| match device_program {
                true => device_filter::attach(&cgroup.path, &device_rules),
                false => Ok(()),
            });
        if let Err(e) = applied {
            if let Err(rm) = fs::remove_dir(&cgroup.path) {
                warn!(path = %cgroup.path.display(), error = %rm, "cannot remove a half-made cgroup");
            }
            return Err(e.context(format!("container {container_id}")));
        }
        debug!(
            path = %cgroup.path.display(),
            writes = writes.len(),
            controllers_ms = enabled.as_millis(),
            mkdir_ms = (made - enabled).as_millis(),
            limits_devices_ms = (began.elapsed() - made).as_millis(),
            "container cgroup created"
        );
        Ok(cgroup)
    }

    /// A cgroup directory that exists already (tests: a plain directory imitating one).
    #[cfg(test)]
    pub(crate) fn at(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves a process (its whole thread group) into the cgroup.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        if pid <= 0 {
            bail!("cannot add pid {pid} to {}", self.path.display());
        }
        write_file(&self.path, "cgroup.procs", &pid.to_string())
    }

    /// UpdateContainer: converts and checks `resources` against the controllers this cgroup
    /// has, then writes them. Nothing is written when the check fails. Returns the writes made.
    pub fn update(&self, resources: &LinuxResources) -> Result<usize, UpdateError> {
        let available = read_controllers(&self.path).map_err(UpdateError::Invalid)?;
        let writes = plan(resources, &available)
            .with_context(|| {
                format!(
                    "resources ({} has controllers: {})",
                    self.path.display(),
                    controller_list(&available)
                )
            })
            .map_err(UpdateError::Invalid)?;
        apply_writes(&self.path, &writes).map_err(UpdateError::Apply)?;
        debug!(path = %self.path.display(), writes = writes.len(), "cgroup updated");
        Ok(writes.len())
    }

    /// Asks the freezer to freeze (or thaw) the cgroup: cgroup.freeze. The kernel finishes
    /// asynchronously; see [`ContainerCgroup::frozen`].
    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        write_file(&self.path, "cgroup.freeze", if frozen { "1" } else { "0" })
    }

    /// Whether the cgroup is frozen now (cgroup.events `frozen`).
    pub fn frozen(&self) -> Result<bool> {
        let file = self.path.join("cgroup.events");
        let text = fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        cgroup_stats::parse_frozen(&text)
            .ok_or_else(|| anyhow!("{}: no `frozen` line (no freezer)", file.display()))
    }

    /// The cgroup's figures (StatsContainer).
    pub fn stats(&self) -> CgroupStats {
        cgroup_stats::read_stats(&self.path)
    }

    /// Sends `sig` to every process of the cgroup (`runc kill --all`): SIGKILL through
    /// [`ContainerCgroup::kill_all`], others to each pid of cgroup.procs. Returns how many
    /// processes were signalled (0 for cgroup.kill, which does not say).
    pub fn signal_all(&self, sig: Signal) -> Result<usize> {
        if sig == Signal::SIGKILL {
            self.kill_all()?;
            return Ok(0);
        }
        let mut sent = 0;
        for pid in self.pids()? {
            match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
                Ok(()) => sent += 1,
                // Gone since cgroup.procs was read.
                Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => bail!("kill({pid}, {sig}): {e}"),
            }
        }
        Ok(sent)
    }

    /// Whether the kernel OOM-killed a process of this cgroup (memory.events `oom_kill` > 0).
    pub fn oom_killed(&self) -> bool {
        let file = self.path.join("memory.events");
        match fs::read_to_string(&file) {
            Ok(text) => parse_oom_kills(&text) > 0,
            Err(e) => {
                debug!(file = %file.display(), error = %e, "no memory.events");
                false
            }
        }
    }

    /// SIGKILLs every process in the cgroup: cgroup.kill (Linux 5.14+), else each pid of
    /// cgroup.procs.
    pub fn kill_all(&self) -> Result<()> {
        let kill = self.path.join("cgroup.kill");
        if kill.exists() {
            return write_file(&self.path, "cgroup.kill", "1");
        }
        for _ in 0..10 {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// The pids in cgroup.procs.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let file = self.path.join("cgroup.procs");
        let text = fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        text.lines()
            .map(|l| {
                l.trim()
                    .parse::<i32>()
                    .with_context(|| format!("{}: bad pid {l:?}", file.display()))
            })
            .collect()
    }

    /// Removes the cgroup, waiting up to 2 s for its processes to go (rmdir is EBUSY until
    /// then). Already gone is fine.
    pub fn remove(&self) -> Result<()> {
        let start = Instant::now();
        loop {
            match fs::remove_dir(&self.path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        && start.elapsed() < REMOVE_TIMEOUT =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e).with_context(|| format!("rmdir {}", self.path.display())),
            }
        }
    }
}

fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        bail!("invalid container id {id:?} for a cgroup name");
    }
    Ok(())
}

fn controller_list(available: &[String]) -> String {
    if available.is_empty() {
        "none".to_owned()
    } else {
        available.join(" ")
    }
}

pub(super) fn read_controllers(root: &Path) -> Result<Vec<String>> {
    let file = root.join("cgroup.controllers");
    let text = fs::read_to_string(&file)
        .with_context(|| format!("read {} (is cgroup2 mounted?)", file.display()))?;
    Ok(text.split_whitespace().map(str::to_owned).collect())
}

/// Writes `value` to an existing interface file (a missing one is an error naming it, not a
/// new file).
pub(super) fn write_file(dir: &Path, name: &str, value: &str) -> Result<()> {
    let file = dir.join(name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&file)
        .with_context(|| format!("open {}", file.display()))?;
    f.write_all(value.as_bytes())
        .with_context(|| format!("write {value:?} to {}", file.display()))
}

fn apply_writes(dir: &Path, writes: &[CgroupWrite]) -> Result<()> {
    for (name, value) in writes {
        if name == "memory.swap.max" && !dir.join(name).exists() {
            warn!(
                value,
                "memory.swap.max missing (no swap in the guest kernel): swap limit ignored"
            );
            continue;
        }
        write_file(dir, name, value)?;
        debug!(file = %name, value, "cgroup limit set");
    }
    Ok(())
}

/// The number after `oom_kill` in memory.events.
pub fn parse_oom_kills(events: &str) -> u64 {
    events
        .lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|v| v.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

/// The interface-file writes for `resources`, validated. `available` is cgroup.controllers.
pub fn plan(resources: &LinuxResources, available: &[String]) -> Result<Vec<CgroupWrite>> {
    let has = |c: &str| available.iter().any(|a| a == c);
    let mut writes = Vec::new();
    if let Some(mem) = resources.memory() {
        let w = memory_writes(mem)?;
        if !w.is_empty() && !has("memory") {
            bail!("memory limits asked but the memory controller is not available");
        }
        writes.extend(w);
    }
    if let Some(cpu) = resources.cpu() {
        let (w, cpuset) = cpu_writes(cpu)?;
        if !w.is_empty() && !has("cpu") {
            bail!("cpu limits asked but the cpu controller is not available");
        }
        if !cpuset.is_empty() && !has("cpuset") {
            bail!("cpuset asked but the cpuset controller is not available");
        }
        writes.extend(w);
        writes.extend(cpuset);
    }
    if let Some(pids) = resources.pids() {
        let limit = pids.limit();
        // runc: 0 is unset, any negative is "max".
        if limit != 0 {
            if !has("pids") {
                bail!("pids.limit asked but the pids controller is not available");
            }
            let v = if limit > 0 {
                limit.to_string()
            } else {
                "max".to_owned()
            };
            writes.push(("pids.max".to_owned(), v));
        }
    }
    // linux.resources.devices: the device program, made at creation (`device_filter`); an
    // update does not change it (neither does runc's).
    if resources.block_io().is_some() || resources.hugepage_limits().is_some() {
        warn!("linux.resources blockIO/hugepageLimits are not supported: ignored");
    }
    if let Some(unified) = resources.unified() {
        let mut keys: Vec<_> = unified.iter().collect();
        keys.sort();
        for (key, value) in keys {
            validate_unified_key(key)?;
            if value.contains('\n') {
                bail!("linux.resources.unified[{key}]: value has a newline");
            }
            writes.push((key.clone(), value.clone()));
        }
    }
    Ok(writes)
}

fn validate_unified_key(key: &str) -> Result<()> {
    let ok = !key.contains('/')
        && !key.starts_with("cgroup.")
        && key
            .split_once('.')
            .is_some_and(|(c, f)| !c.is_empty() && !f.is_empty());
    if !ok {
        bail!("linux.resources.unified: invalid key {key:?} (want <controller>.<file>)");
    }
    Ok(())
}

/// runc's numToStr for memory values: -1 → "max", 0 → unset, > 0 → bytes, else an error.
fn memory_value(what: &str, v: Option<i64>) -> Result<Option<String>> {
    match v {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some("max".to_owned())),
        Some(n) if n > 0 => Ok(Some(n.to_string())),
        Some(n) => bail!("memory.{what} {n} is invalid (want > 0, or -1 for unlimited)"),
    }
}

fn memory_writes(mem: &LinuxMemory) -> Result<Vec<CgroupWrite>> {
    let mut writes = Vec::new();
    let limit = mem.limit();
    if let Some(swap) = mem.swap() {
        if let Some(v) = swap_value(swap, limit.unwrap_or(0))? {
            writes.push(("memory.swap.max".to_owned(), v));
        }
    }
    if let Some(v) = memory_value("limit", limit)? {
        writes.push(("memory.max".to_owned(), v));
    }
    if let Some(v) = memory_value("reservation", mem.reservation())? {
        writes.push(("memory.low".to_owned(), v));
    }
    Ok(writes)
}

/// OCI's swap is memory+swap; cgroup v2's memory.swap.max is swap alone (runc's
/// ConvertMemorySwapToCgroupV2Value). None: nothing to write.
fn swap_value(swap: i64, memory: i64) -> Result<Option<String>> {
    let v = match (swap, memory) {
        (0, -1) => -1,
        (-1, _) => -1,
        (0, _) => return Ok(None),
        (s, _) if s < -1 => bail!("memory.swap {s} is invalid"),
        (s, -1) => s,
        (_, 0) => bail!("memory.swap cannot be set without memory.limit"),
        (_, m) if m < 0 => bail!("memory.limit {m} is invalid"),
        (s, m) if s < m => bail!("memory.swap {s} is below memory.limit {m} (swap is memory+swap)"),
        (s, m) => s - m,
    };
    Ok(Some(if v == -1 {
        "max".to_owned()
    } else {
        v.to_string()
    }))
}

/// runc's (>= 1.3.2) shares → weight: 2 → 1, 1024 → 100, 262144 → 10000; 0 is unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1 | 2 => 1,
        s if s >= 262_144 => 10_000,
        s => {
            let l = (s as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            10f64.powf(exponent).ceil() as u64
        }
    }
}

fn cpu_writes(cpu: &LinuxCpu) -> Result<(Vec<CgroupWrite>, Vec<CgroupWrite>)> {
    let mut writes = Vec::new();
    if let Some(shares) = cpu.shares() {
        let weight = shares_to_weight(shares);
        if weight != 0 {
            writes.push(("cpu.weight".to_owned(), weight.to_string()));
        }
    }
    let quota = cpu.quota().unwrap_or(0);
    let period = cpu.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        if period != 0 && !(1_000..=1_000_000).contains(&period) {
            bail!("cpu.period {period} is out of range (1000..=1000000 us)");
        }
        let mut v = if quota > 0 {
            if quota < 1_000 {
                bail!("cpu.quota {quota} is below the kernel's minimum of 1000 us");
            }
            quota.to_string()
        } else {
            // runc: a negative (or zero, with a period) quota is unlimited.
            "max".to_owned()
        };
        if period != 0 {
            v.push_str(&format!(" {period}"));
        }
        writes.push(("cpu.max".to_owned(), v));
    }
    if cpu.realtime_runtime().is_some_and(|r| r != 0)
        || cpu.realtime_period().is_some_and(|p| p != 0)
    {
        warn!("cpu realtime limits are not supported with cgroup v2: ignored");
    }
    let mut cpuset = Vec::new();
    for (file, value) in [("cpuset.cpus", cpu.cpus()), ("cpuset.mems", cpu.mems())] {
        if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            validate_cpu_list(v).with_context(|| format!("{file} {v:?}"))?;
            cpuset.push((file.to_owned(), v.to_owned()));
        }
    }
    Ok((writes, cpuset))
}

/// A kernel list: "0-3,5,7-8".
fn validate_cpu_list(list: &str) -> Result<()> {
    for part in list.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| anyhow!("not a number list: {part:?}"))
        };
        if parse(a)? > parse(b)? {
            bail!("reversed range {part:?}");
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "cgroups_tests.rs"]
mod tests;
