//! The fake VM's cgroup: `<cgroup2>/<name>/`, holding `agent/` (the agent process, which the fake
//! VMM puts there before it execs) and `containers/` (given to the agent as
//! `SANDPOD_AGENT_CGROUP_ROOT`: it makes `sandpod/<id>` there). Stopping the fake VM kills the
//! whole tree, as the end of a real VM ends everything in it, and removes it. Each fake VM has its
//! own, so that two of them can run containers of the same id.
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long `destroy` waits for the killed processes to leave.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct VmCgroup {
    dir: PathBuf,
}

fn write(file: &Path, value: &str) -> anyhow::Result<()> {
    fs::write(file, value).with_context(|| format!("write {value:?} to {}", file.display()))
}

/// Every directory of the tree at `dir`, deepest first.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(subtree(&e.path()));
            }
        }
    }
    out.push(dir.to_owned());
    out
}

/// `populated` of a cgroup.events text.
pub fn parse_populated(events: &str) -> Option<bool> {
    events
        .lines()
        .find_map(|l| l.strip_prefix("populated "))
        .map(|v| v.trim() == "1")
}

impl VmCgroup {
    /// Creates `<cgroup2>/<name>/{agent,containers}`, with every controller the new cgroup has
    /// passed on to its children (it holds no process itself).
    pub fn create(cgroup2: &Path, name: &str) -> anyhow::Result<VmCgroup> {
        let dir = cgroup2.join(name);
        fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let vm = VmCgroup { dir };
        let made = (|| {
            let controllers = fs::read_to_string(vm.dir.join("cgroup.controllers"))
                .context("reading cgroup.controllers")?;
            for c in controllers.split_whitespace() {
                // One that cannot be enabled only means the limits that need it fail later,
                // with the agent's error naming it.
                if let Err(e) = write(&vm.dir.join("cgroup.subtree_control"), &format!("+{c}")) {
                    eprintln!("sandpod-fake-vmm: warning: {e:#}");
                }
            }
            fs::create_dir(vm.agent()).context("mkdir agent")?;
            fs::create_dir(vm.containers()).context("mkdir containers")?;
            Ok::<_, anyhow::Error>(())
        })();
        if let Err(e) = made {
            let _ = vm.destroy();
            return Err(e.context(format!("setting up the cgroup {}", vm.dir.display())));
        }
        Ok(vm)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the agent runs.
    pub fn agent(&self) -> PathBuf {
        self.dir.join("agent")
    }

    /// The agent's cgroup root (`SANDPOD_AGENT_CGROUP_ROOT`).
    pub fn containers(&self) -> PathBuf {
        self.dir.join("containers")
    }

    /// Whether any process is left in the tree.
    pub fn populated(&self) -> anyhow::Result<bool> {
        let file = self.dir.join("cgroup.events");
        let text = fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        parse_populated(&text).with_context(|| format!("{}: no populated line", file.display()))
    }

    /// SIGKILLs every process of the tree (cgroup.kill, else each pid), waits (bounded) for
    /// them to go and removes the tree. Already gone is fine.
    pub fn destroy(&self) -> anyhow::Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        let kill = self.dir.join("cgroup.kill");
        let started = Instant::now();
        if kill.exists() {
            write(&kill, "1")?;
        }
        while self.populated().unwrap_or(false) {
            if started.elapsed() > EMPTY_TIMEOUT {
                bail!(
                    "{}: processes still there {EMPTY_TIMEOUT:?} after SIGKILL",
                    self.dir.display()
                );
            }
            if !kill.exists() {
                for dir in subtree(&self.dir) {
                    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for dir in subtree(&self.dir) {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("rmdir {}", dir.display())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populated_line() {
        assert_eq!(parse_populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(parse_populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(parse_populated("frozen 0\n"), None);
    }

    #[test]
    fn subtree_is_deepest_first() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("a/b")).unwrap();
        fs::create_dir_all(d.path().join("c")).unwrap();
        fs::write(d.path().join("a/file"), "").unwrap();
        let dirs = subtree(d.path());
        assert_eq!(dirs.len(), 4, "{dirs:?}");
        let pos = |p: &Path| dirs.iter().position(|x| x == p).unwrap();
        assert!(pos(&d.path().join("a/b")) < pos(&d.path().join("a")));
        assert_eq!(dirs.last().unwrap(), d.path());
    }
}
