//! `sandpod check`: whether this host can run Sandpod's microVMs, and why not — one line per
//! check, `ok` or `FAIL` with the reason and what to do. Exit status 0 only if all pass.
use std::path::Path;

use crate::container::RuntimeOptions;
use crate::paths::RuntimePaths;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &'static str, r: Result<String, String>) -> Check {
    match r {
        Ok(detail) => Check {
            name,
            ok: true,
            detail,
        },
        Err(detail) => Check {
            name,
            ok: false,
            detail,
        },
    }
}

/// /dev/kvm: present, openable, a KVM that runs ordinary guests.
fn kvm(dev: &Path, modules: &Path) -> Result<String, String> {
    if !dev.exists() {
        return Err(format!(
            "{} does not exist: enable virtualization (VT-x/AMD-V) and load kvm_intel or kvm_amd",
            dev.display()
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        return Err(format!(
            "cannot open {}: {e} (run as root or add the user to the kvm group)",
            dev.display()
        ));
    }
    if modules.join("kvm_pvm").exists() {
        return Err(
            "this host runs PVM (kvm_pvm): it only runs PVM-patched guest kernels, and Sandpod's \
             guest kernel is not one; use a host with hardware KVM (kvm_intel/kvm_amd)"
                .into(),
        );
    }
    let vendor = ["kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| modules.join(m).exists())
        .unwrap_or("kvm");
    Ok(format!("{} ({vendor})", dev.display()))
}

fn file(what: &str, p: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(p) {
        Ok(m) if what == "binary" && m.permissions().mode() & 0o111 == 0 => {
            Err(format!("{} is not executable", p.display()))
        }
        Ok(m) if m.len() == 0 => Err(format!("{} is empty", p.display())),
        Ok(_) => Ok(p.display().to_string()),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

fn cgroups() -> Result<String, String> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return Ok("cgroup v2 (unified)".into());
    }
    if root.join("unified/cgroup.procs").exists() {
        return Ok("cgroup v1 + v2 (hybrid); containers' cgroups are the guest's (v2)".into());
    }
    if root.join("memory").exists() {
        return Ok("cgroup v1; containers' cgroups are the guest's (v2)".into());
    }
    Err("no cgroup file system at /sys/fs/cgroup".into())
}

fn state_root(root: &Path) -> Result<String, String> {
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let probe = root.join(".sandpod-check");
    std::fs::write(&probe, b"").map_err(|e| format!("{} is not writable: {e}", root.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(root.display().to_string())
}

/// Runs every check.
pub fn checks(rt: &RuntimeOptions) -> Vec<Check> {
    let mut out = vec![
        check(
            "root",
            if rustix::process::geteuid().is_root() {
                Ok("running as root".into())
            } else {
                Err("sandpod needs root (mounts, namespaces, the VM's devices)".into())
            },
        ),
        check("kvm", kvm(Path::new("/dev/kvm"), Path::new("/sys/module"))),
    ];
    match RuntimePaths::discover(&rt.config.hypervisor) {
        Ok(p) => {
            out.push(check("sandpod-vmm", file("binary", &p.vmm)));
            out.push(check("virtiofsd", file("binary", &p.virtiofsd)));
            out.push(check("guest kernel", file("file", &p.kernel)));
            out.push(check("guest initramfs", file("file", &p.initrd)));
        }
        Err(e) => out.push(check("installation", Err(e.to_string()))),
    }
    out.push(check("cgroups", cgroups()));
    out.push(check("state root", state_root(&rt.root)));
    out
}

/// Prints the checks; 0 if all passed, 1 otherwise.
pub fn run(rt: &RuntimeOptions) -> u8 {
    let all = checks(rt);
    for c in &all {
        println!(
            "{:<4} {}: {}",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    u8::from(all.iter().any(|c| !c.ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_reasons() {
        let d = tempfile::tempdir().unwrap();
        let dev = d.path().join("kvm");
        let modules = d.path().join("module");
        std::fs::create_dir_all(modules.join("kvm_amd")).unwrap();
        assert!(kvm(&dev, &modules).unwrap_err().contains("does not exist"));
        std::fs::write(&dev, b"").unwrap();
        assert!(kvm(&dev, &modules).unwrap().contains("kvm_amd"));
        std::fs::create_dir_all(modules.join("kvm_pvm")).unwrap();
        assert!(kvm(&dev, &modules).unwrap_err().contains("PVM"));
    }

    #[test]
    fn files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        assert!(file("binary", &f).unwrap_err().contains("not executable"));
        assert!(file("file", &f).is_ok());
        assert!(file("file", &d.path().join("nope")).is_err());
    }
}
