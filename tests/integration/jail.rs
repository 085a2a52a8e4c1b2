//! `sandpod jail` on this host, with busybox (static) standing in for sandpod-vmm: the probe
//! runs where the VMM would (its namespaces, its pivoted root, its uid and gid, no capability,
//! no_new_privs, not dumpable, its rlimits), and what it sees is compared with the plan. The
//! lifecycle tests (cli_lifecycle.rs) run the fake VMM unjailed: it runs the real agent on the
//! host, as root, which no jail allows; the real VMM's jail is checked in the KVM test host
//! (tests/kvm-host/guest/vmm-jail-check.sh).
//!
//! Needs root and the busybox bundle. Nothing opens the KVM node: where the host has no /dev/kvm
//! (CI machines without KVM), the plan's device is a stand-in node with KVM's numbers (10, 232)
//! in the test's directory, still made again at /dev/kvm in the jail.
mod cli_env;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_env::{mounts_under, repo, sandpod_bin};
use sandpod_runtime::sandbox::jail::program_copy::exec_only_copy;
use sandpod_runtime::sandbox::jail::{JailIds, JailPlan, PlanInputs, KVM_DEVICE};
use sandpod_vmm::{ConsoleConfig, VmConfig};

const UID: u32 = 65534;
const GID: u32 = 65533;

struct Jail {
    dir: tempfile::TempDir,
}

impl Jail {
    fn new() -> Jail {
        assert!(nix::unistd::geteuid().is_root(), "the jail tests need root");
        let dir = tempfile::Builder::new()
            .prefix("spj")
            .tempdir_in("/tmp")
            .unwrap();
        for d in ["j", "jail", "shared"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("shared/secret"), "host").unwrap();
        std::fs::write(dir.path().join("kernel"), "k").unwrap();
        nix::unistd::chown(
            &dir.path().join("j"),
            Some(nix::unistd::Uid::from_raw(UID)),
            Some(nix::unistd::Gid::from_raw(GID)),
        )
        .unwrap();
        Jail { dir }
    }

    /// The host node the jail's /dev/kvm is made from: /dev/kvm, or a stand-in with its numbers.
    fn kvm_node(&self) -> PathBuf {
        let host = Path::new(KVM_DEVICE);
        if host.exists() {
            return host.to_path_buf();
        }
        let stand_in = self.path("kvm-node");
        if !stand_in.exists() {
            nix::sys::stat::mknod(
                &stand_in,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                nix::sys::stat::makedev(10, 232),
            )
            .unwrap();
        }
        stand_in
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The plan the runtime would make, with busybox running `script` in place of the VMM.
    fn plan(&self, kernel: &Path, script: &str) -> PathBuf {
        let busybox = repo().join("build/bundles/busybox/rootfs/bin/busybox");
        assert!(busybox.is_file(), "no busybox bundle: run `make bundle`");
        let vm = VmConfig {
            console: ConsoleConfig::File(self.path("j/console.log")),
            ..VmConfig::new(kernel)
        };
        let libs = sandpod_runtime::sandbox::jail::host_libs(&busybox).unwrap();
        assert!(libs.is_empty(), "busybox is static: no library in its jail");
        // As the runtime does: the jail runs the state root's exec-only copy.
        let program = exec_only_copy(self.dir.path(), &busybox).unwrap();
        let mut plan = JailPlan::new(&PlanInputs {
            ids: JailIds { uid: UID, gid: GID },
            vm: &vm,
            program: &program,
            vm_dir: &self.path("j"),
            root: &self.path("jail"),
            kvm_group: None,
            libs: &libs,
        })
        .unwrap();
        plan.args = vec!["sh".into(), "-c".into(), script.into()];
        assert_eq!(plan.devices.len(), 1, "{:?}", plan.devices);
        assert_eq!(plan.devices[0].path, Path::new(KVM_DEVICE));
        plan.devices[0].host = self.kvm_node();
        let p = self.path("jail.json");
        std::fs::write(&p, serde_json::to_vec(&plan).unwrap()).unwrap();
        p
    }

    fn start(&self, plan: &Path) -> std::process::Child {
        Command::new(sandpod_bin())
            .arg("jail")
            .arg(plan)
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn no_mounts_on_the_host(&self) {
        assert_eq!(mounts_under(self.dir.path()), Vec::<String>::new());
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_field(pid: u32, name: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn ns(pid: &str, kind: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap()
}

#[test]
fn the_jailed_program_is_confined() {
    let j = Jail::new();
    let plan = j.plan(
        &j.path("kernel"),
        "echo $$ > /vm/pid; ls -a / > /vm/root; ls -l /dev/kvm > /vm/kvm; \
         touch /x 2>/vm/ro; touch /kernel 2>/vm/kernel_ro; exec /busybox sleep 60",
    );
    let mut parent = j.start(&plan);
    wait_for("the probe", || {
        j.path("j/pid").is_file() && j.path("j/kvm").is_file()
    });
    let pid_in_ns = std::fs::read_to_string(j.path("j/pid")).unwrap();
    assert_eq!(
        pid_in_ns.trim(),
        "1",
        "the probe is PID 1 of its own PID namespace"
    );
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", parent.id())).unwrap();
    let child: u32 = children.trim().parse().unwrap();
    // Its root holds only the jail's entries: no share, no host /etc.
    let mut root: Vec<String> = std::fs::read_to_string(j.path("j/root"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    root.sort();
    assert_eq!(
        root,
        [".", "..", "busybox", "dev", "kernel", "vm", "vm.json"]
    );
    // The KVM node is the jail's own, for its uid.
    let kvm = std::fs::read_to_string(j.path("j/kvm")).unwrap();
    assert!(
        kvm.starts_with("crw-------") && kvm.contains(&format!(" {UID} ")),
        "{kvm}"
    );
    let rdev = std::fs::metadata(j.kvm_node()).unwrap().rdev();
    let numbers = format!(
        " {}, {:>3} ",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    );
    assert!(kvm.contains(&numbers), "{kvm} has not{numbers}");
    assert!(
        !std::fs::read_to_string(j.path("j/ro")).unwrap().is_empty(),
        "/ is writable"
    );
    assert!(!std::fs::read_to_string(j.path("j/kernel_ro"))
        .unwrap()
        .is_empty());
    for (f, want) in [
        ("CapEff", "0000000000000000"),
        ("CapPrm", "0000000000000000"),
        ("CapInh", "0000000000000000"),
        ("CapBnd", "0000000000000000"),
        ("CapAmb", "0000000000000000"),
        ("NoNewPrivs", "1"),
        ("Uid", &format!("{UID}\t{UID}\t{UID}\t{UID}")),
        ("Gid", &format!("{GID}\t{GID}\t{GID}\t{GID}")),
        ("Groups", ""),
    ] {
        assert_eq!(status_field(child, f), want, "{f}");
    }
    // Not dumpable: its /proc files stay root's.
    let st = std::fs::metadata(format!("/proc/{child}/status")).unwrap();
    assert_eq!(st.uid(), 0, "the probe is dumpable");
    let limits = std::fs::read_to_string(format!("/proc/{child}/limits")).unwrap();
    let line = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(line("Max open files").contains("4096 4096"), "{limits}");
    assert!(line("Max core file size").contains("0 0"), "{limits}");
    assert!(
        line("Max file size").contains("135266304 135266304"),
        "{limits}"
    );
    for kind in ["mnt", "net", "pid", "ipc", "uts"] {
        let child_ns = if kind == "pid" {
            // The probe's own PID namespace is the one its parent made for its children.
            ns(&parent.id().to_string(), "pid_for_children")
        } else {
            ns(&child.to_string(), kind)
        };
        assert_ne!(
            child_ns,
            ns("self", kind),
            "{kind} namespace shared with the host"
        );
    }
    j.no_mounts_on_the_host();
    // The jail dies with its parent (PR_SET_PDEATHSIG after the uid change).
    parent.kill().unwrap();
    parent.wait().unwrap();
    wait_for("the probe to die with its parent", || {
        !Path::new(&format!("/proc/{child}")).exists()
    });
    j.no_mounts_on_the_host();
    assert_eq!(
        std::fs::read_to_string(j.path("shared/secret")).unwrap(),
        "host"
    );
}

#[test]
fn the_exit_status_is_the_programs() {
    let j = Jail::new();
    let plan = j.plan(&j.path("kernel"), "exit 7");
    let st = j.start(&plan).wait().unwrap();
    assert_eq!(st.code(), Some(7));
    j.no_mounts_on_the_host();
}

/// `sandpod jail PLAN`, to its end.
fn run_jail(plan: &Path) -> std::process::Output {
    Command::new(sandpod_bin())
        .arg("jail")
        .arg(plan)
        .output()
        .unwrap()
}

#[test]
fn a_bad_plan_leaves_nothing() {
    let j = Jail::new();
    let plan = j.plan(&j.path("missing-kernel"), "exit 0");
    let out = run_jail(&plan);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sandpod jail: stat") && err.contains("missing-kernel"),
        "{err}"
    );
    j.no_mounts_on_the_host();
    assert!(std::fs::read_dir(j.path("jail")).unwrap().next().is_none());
    // A program the jail's uid could read (so the VMM would be dumpable) is refused.
    let plan = j.plan(&j.path("kernel"), "exit 0");
    let mut readable: JailPlan = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    readable.program = repo().join("build/bundles/busybox/rootfs/bin/busybox");
    std::fs::write(&plan, serde_json::to_vec(&readable).unwrap()).unwrap();
    let out = run_jail(&plan);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not an exec-only copy"), "{err}");
    j.no_mounts_on_the_host();
    assert!(std::fs::read_dir(j.path("jail")).unwrap().next().is_none());
    let out = run_jail(&j.path("no-plan.json"));
    assert_eq!(out.status.code(), Some(1));
}
