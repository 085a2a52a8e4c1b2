//! The harness of the `sandpod` lifecycle tests (cli_lifecycle.rs): a state root of its own, the
//! CLI with sandpod-fake-vmm behind it, and the leak check.
#![allow(dead_code)]
use std::io::IoSliceMut;
use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const FAKE_VMM: &str = env!("CARGO_BIN_EXE_sandpod-fake-vmm");

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `sandpod` binary of this build (target/<profile>/sandpod, beside the test's deps dir).
pub fn sandpod_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("sandpod");
    assert!(
        p.is_file(),
        "{} is missing: build sandpod-runtime first (make unit does)",
        p.display()
    );
    p
}

pub fn virtiofsd() -> PathBuf {
    let p = repo().join("build/bin/virtiofsd");
    assert!(
        p.is_file(),
        "{} is missing: run `make virtiofsd` (make unit does)",
        p.display()
    );
    p
}

/// A state root of its own, a private copy of the busybox bundle per container.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the lifecycle tests need root"
        );
        // The test process reaps the stand-ins, as containerd's shim and conmon do.
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        Env {
            dir: tempfile::Builder::new()
                .prefix("sp")
                .tempdir_in("/tmp")
                .unwrap(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A bundle named `name` running `args`, with `patch` applied to its config.
    pub fn bundle(
        &self,
        name: &str,
        args: &[&str],
        patch: impl FnOnce(&mut serde_json::Value),
    ) -> PathBuf {
        let src = repo().join("build/bundles/busybox");
        assert!(
            src.join("rootfs/bin/busybox").is_file(),
            "no busybox bundle: run `make bundle`"
        );
        let b = self.dir.path().join(name);
        std::fs::create_dir_all(&b).unwrap();
        let st = Command::new("cp")
            .arg("-a")
            .arg(src.join("rootfs"))
            .arg(&b)
            .status()
            .unwrap();
        assert!(st.success());
        let mut spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap())
                .unwrap();
        spec["process"]["args"] = serde_json::json!(args);
        patch(&mut spec);
        std::fs::write(b.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
        b
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(sandpod_bin());
        c.env("SANDPOD_VMM", FAKE_VMM)
            .env("SANDPOD_VIRTIOFSD", virtiofsd())
            // The fake VMM boots nothing: any files do for the kernel and initramfs.
            .env("SANDPOD_KERNEL", FAKE_VMM)
            .env("SANDPOD_INITRD", FAKE_VMM)
            // The fake VMM runs the real agent on the host, as root (mounts, cgroups,
            // containers): no jail allows that. The jail is tested by jail.rs (here) and
            // tests/kvm-host/guest/vmm-jail-check.sh (the real VMM).
            .arg("--no-jail")
            // The fake VMM saves no snapshot: a template's build would wait the whole boot
            // timeout before the cold boot. cli_lifecycle's template test turns them on.
            .env("SANDPOD_TEMPLATE", "0")
            .arg("--root")
            .arg(self.root())
            .arg("--log")
            .arg(self.dir.path().join("log.json"))
            .arg("--log-format")
            .arg("json")
            .stdin(Stdio::null());
        c
    }

    pub fn sandpod(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().unwrap();
        eprintln!(
            "sandpod {args:?}: {} stdout {:?} stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs a command whose stand-in keeps the stdio it is given (create, exec -d): its output
    /// goes to files, so nothing waits for the stand-in's end (as containerd's shim does not).
    pub fn sandpod_detached(&self, args: &[&str]) -> (std::process::ExitStatus, String) {
        let err = self.dir.path().join("detached.err");
        let st = self
            .cmd()
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        let e = std::fs::read_to_string(&err).unwrap();
        eprintln!("sandpod {args:?}: {st} stderr {e:?}");
        (st, e)
    }

    pub fn state(&self, id: &str) -> serde_json::Value {
        let out = self.sandpod(&["state", id]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The last error line of the JSON log (what containerd shows).
    pub fn last_log_error(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("log.json")).unwrap_or_default();
        text.lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["level"] == "error")
            .map(|v| v["msg"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    /// Nothing of ours left: no process naming the root, no mount under it, an empty root.
    pub fn assert_nothing_left(&self) {
        let root = self.root();
        let needle = root.to_string_lossy().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs = processes_naming(&needle);
            let mounts = mounts_under(&root);
            let entries: Vec<_> = std::fs::read_dir(&root)
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            if procs.is_empty() && mounts.is_empty() && entries.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left behind: processes {procs:?}, mounts {mounts:?}, state {entries:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn processes_naming(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            out.push(format!("{pid}: {cmd}"));
        }
    }
    out
}

pub fn mounts_under(root: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(root))
        .map(str::to_string)
        .collect()
}

/// Waits for our child (a reaped orphan: we are a subreaper) `pid`; its exit status as a shell
/// reports it.
pub fn wait_status(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    match waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap() {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        other => panic!("unexpected wait status {other:?}"),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn receive_fd(sock: RawFd) -> std::fs::File {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::empty()).unwrap();
    let fd = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            ControlMessageOwned::ScmRights(f) => f.first().copied(),
            _ => None,
        })
        .expect("a pty master over the console socket");
    // SAFETY: the fd was just received with SCM_RIGHTS; nothing else owns it.
    unsafe { std::fs::File::from_raw_fd(fd) }
}
