//! The `sandpod` CLI's container lifecycle on this host, without KVM: `SANDPOD_VMM` is
//! sandpod-fake-vmm (the real agent on the host behind a fake hybrid vsock), virtiofsd is the
//! real one. Every scenario ends with the leak check: no process whose command line names the
//! state root, no mount under it, nothing left in it.
//!
//! Needs root, the busybox bundle and virtiofsd (`make unit` builds them first): without them
//! the tests FAIL saying so.
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const FAKE_VMM: &str = env!("CARGO_BIN_EXE_sandpod-fake-vmm");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `sandpod` binary of this build (target/<profile>/sandpod, beside the test's deps dir).
fn sandpod_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("sandpod");
    assert!(
        p.is_file(),
        "{} is missing: build sandpod-runtime first (make unit does)",
        p.display()
    );
    p
}

fn virtiofsd() -> PathBuf {
    let p = repo().join("build/bin/virtiofsd");
    assert!(
        p.is_file(),
        "{} is missing: run `make virtiofsd` (make unit does)",
        p.display()
    );
    p
}

/// A state root of its own, a private copy of the busybox bundle per container.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
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

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A bundle named `name` running `args`, with `patch` applied to its config.
    fn bundle(
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

    fn cmd(&self) -> Command {
        let mut c = Command::new(sandpod_bin());
        c.env("SANDPOD_VMM", FAKE_VMM)
            .env("SANDPOD_VIRTIOFSD", virtiofsd())
            // The fake VMM boots nothing: any files do for the kernel and initramfs.
            .env("SANDPOD_KERNEL", FAKE_VMM)
            .env("SANDPOD_INITRD", FAKE_VMM)
            .arg("--root")
            .arg(self.root())
            .arg("--log")
            .arg(self.dir.path().join("log.json"))
            .arg("--log-format")
            .arg("json")
            .stdin(Stdio::null());
        c
    }

    fn sandpod(&self, args: &[&str]) -> Output {
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
    fn sandpod_detached(&self, args: &[&str]) -> (std::process::ExitStatus, String) {
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

    fn state(&self, id: &str) -> serde_json::Value {
        let out = self.sandpod(&["state", id]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The last error line of the JSON log (what containerd shows).
    fn last_log_error(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("log.json")).unwrap_or_default();
        text.lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["level"] == "error")
            .map(|v| v["msg"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    /// Nothing of ours left: no process naming the root, no mount under it, an empty root.
    fn assert_nothing_left(&self) {
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

fn processes_naming(needle: &str) -> Vec<String> {
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

fn mounts_under(root: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(root))
        .map(str::to_string)
        .collect()
}

/// Waits for our child (a reaped orphan: we are a subreaper) `pid`; its exit status as a shell
/// reports it.
fn wait_status(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    match waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap() {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        other => panic!("unexpected wait status {other:?}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_prints_and_exits_with_the_containers_status() {
    let env = Env::new();
    let b = env.bundle("b", &["sh", "-c", "echo out; echo err >&2; exit 3"], |_| {});
    let out = env.sandpod(&["run", "--bundle", b.to_str().unwrap(), "r1"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    // The agent's own log lines reached the runtime log (through the monitor, with its token).
    let log = std::fs::read_to_string(env.dir.path().join("log.json")).unwrap();
    assert!(log.contains("guest_target="), "no guest log line in {log}");
    env.assert_nothing_left();
}

#[test]
fn create_start_exec_kill_delete() {
    let env = Env::new();
    let b = env.bundle(
        "b",
        &[
            "sh",
            "-c",
            "trap 'echo got-usr1' USR1; echo started; while true; do sleep 0.1; done",
        ],
        |s| s["annotations"] = serde_json::json!({"org.example/a": "b"}),
    );
    let out_file = env.dir.path().join("c1.out");
    let pid_file = env.dir.path().join("c1.pid");
    let st = env
        .cmd()
        .args(["create", "--bundle", b.to_str().unwrap(), "--pid-file"])
        .arg(&pid_file)
        .arg("c1")
        .stdout(std::fs::File::create(&out_file).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let s = env.state("c1");
    assert_eq!(s["status"], "created");
    assert_eq!(s["pid"], pid);
    assert_eq!(s["bundle"], b.to_str().unwrap());
    assert_eq!(s["annotations"]["org.example/a"], "b");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the stand-in runs"
    );

    // A second create of the id fails and leaves the first alone.
    let (st, err) = env.sandpod_detached(&["create", "--bundle", b.to_str().unwrap(), "c1"]);
    assert!(!st.success());
    assert!(err.contains("container with id exists: c1"), "{err}");
    assert_eq!(env.state("c1")["status"], "created");

    assert!(env.sandpod(&["start", "c1"]).status.success());
    assert_eq!(env.state("c1")["status"], "running");
    let out = env.sandpod(&["start", "c1"]);
    assert!(text(&out.stderr).contains("cannot start an already running container"));

    // exec in the foreground: its output and status; detached: a live stand-in, listed by ps.
    let out = env.sandpod(&["exec", "c1", "sh", "-c", "echo in-exec; exit 4"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(4), "in-exec\n".to_string())
    );
    let epid_file = env.dir.path().join("e.pid");
    let (st, _) = env.sandpod_detached(&[
        "exec",
        "-d",
        "--pid-file",
        epid_file.to_str().unwrap(),
        "c1",
        "sleep",
        "1000",
    ]);
    assert!(st.success());
    let epid: i32 = std::fs::read_to_string(&epid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ps: Vec<i32> =
        serde_json::from_slice(&env.sandpod(&["ps", "--format", "json", "c1"]).stdout).unwrap();
    assert!(ps.contains(&pid) && ps.contains(&epid), "{ps:?}");
    let table = text(&env.sandpod(&["ps", "c1"]).stdout);
    assert!(table.contains("sleep 1000"), "{table}");

    // A signal by name reaches the container's trap.
    assert!(env.sandpod(&["kill", "c1", "USR1"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&out_file)
        .unwrap()
        .contains("got-usr1")
    {
        assert!(Instant::now() < deadline, "USR1 did not arrive");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Pause/resume, stats.
    assert!(env.sandpod(&["pause", "c1"]).status.success());
    assert_eq!(env.state("c1")["status"], "paused");
    assert!(env.sandpod(&["resume", "c1"]).status.success());
    assert_eq!(env.state("c1")["status"], "running");
    let ev: serde_json::Value =
        serde_json::from_slice(&env.sandpod(&["events", "--stats", "c1"]).stdout).unwrap();
    assert_eq!(ev["type"], "stats");
    // cpu.stat is in every cgroup v2 (this host's has no controllers enabled for pids/memory).
    assert!(
        ev["data"]["cpu"]["usage"]["total"].as_u64().unwrap() > 0,
        "{ev}"
    );

    // Killing the exec's stand-in kills the exec in the guest (nothing runs unseen).
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(epid), nix::sys::signal::SIGKILL).unwrap();
    assert_eq!(wait_status(epid), 137);
    let deadline = Instant::now() + Duration::from_secs(10);
    while text(&env.sandpod(&["ps", "c1"]).stdout).contains("sleep 1000") {
        assert!(Instant::now() < deadline, "the exec outlived its stand-in");
        std::thread::sleep(Duration::from_millis(100));
    }

    // delete refuses a running container; SIGKILL ends it with 137 for whoever waits.
    let out = env.sandpod(&["delete", "c1"]);
    assert!(text(&out.stderr).contains("cannot delete container c1 that is not stopped: running"));
    assert!(env.sandpod(&["kill", "c1", "9"]).status.success());
    assert_eq!(wait_status(pid), 137);
    let s = env.state("c1");
    assert_eq!(
        (s["status"].as_str(), s["pid"].as_i64()),
        (Some("stopped"), Some(0))
    );
    let out = env.sandpod(&["kill", "c1", "TERM"]);
    assert!(text(&out.stderr).contains("container not running"));
    assert!(env.sandpod(&["delete", "c1"]).status.success());
    env.assert_nothing_left();
    let out = env.sandpod(&["state", "c1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("container does not exist"));
    assert_eq!(env.last_log_error(), "container does not exist");
}

#[test]
fn console_socket_gets_the_terminal_and_resizes_reach_the_guest() {
    let env = Env::new();
    let b = env.bundle(
        "b",
        &["sh", "-c", "sleep 1; stty size; [ -t 0 ] && echo is-a-tty"],
        |s| s["process"]["terminal"] = serde_json::json!(true),
    );
    let sock = env.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (st, _) = env.sandpod_detached(&[
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        "t1",
    ]);
    assert!(st.success());
    let (conn, _) = listener.accept().unwrap();
    let master = receive_fd(conn.as_raw_fd());
    let ws = libc::winsize {
        ws_row: 33,
        ws_col: 111,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which lives for the call.
    let set = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(set, 0);
    assert!(env.sandpod(&["start", "t1"]).status.success());
    let pid = env.state("t1")["pid"].as_i64().unwrap() as i32;
    let mut master = master;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text(&got).contains("is-a-tty") && Instant::now() < deadline {
        let mut buf = [0u8; 256];
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let t = text(&got);
    assert!(t.contains("33 111"), "the guest terminal's size: {t:?}");
    assert!(t.contains("is-a-tty"), "{t:?}");
    assert_eq!(wait_status(pid), 0);
    let _ = master.write_all(b"");
    assert!(env.sandpod(&["delete", "t1"]).status.success());
    env.assert_nothing_left();
}

fn receive_fd(sock: RawFd) -> std::fs::File {
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

#[test]
fn bad_input_gets_a_clear_error_and_leaves_nothing() {
    let env = Env::new();
    // Unknown ids.
    for args in [
        &["state", "nope"][..],
        &["start", "nope"],
        &["kill", "nope", "9"],
        &["delete", "nope"],
    ] {
        let out = env.sandpod(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains("container does not exist"),
            "{args:?}"
        );
    }
    // A bundle without config.json, one with invalid JSON, one without its rootfs.
    let empty = env.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (_, err) = env.sandpod_detached(&["create", "--bundle", empty.to_str().unwrap(), "x1"]);
    assert!(err.contains("no config.json"), "{err}");
    std::fs::write(empty.join("config.json"), "{broken").unwrap();
    let (_, err) = env.sandpod_detached(&["create", "--bundle", empty.to_str().unwrap(), "x1"]);
    assert!(err.contains("not a valid OCI runtime spec"), "{err}");
    let b = env.bundle("nr", &["true"], |_| {});
    std::fs::remove_dir_all(b.join("rootfs")).unwrap();
    let (_, err) = env.sandpod_detached(&["create", "--bundle", b.to_str().unwrap(), "x1"]);
    assert!(err.contains("missing or not a directory"), "{err}");
    // A missing binary fails create with its name.
    let b = env.bundle("nb", &["/no/such/binary"], |_| {});
    let out = env.sandpod(&["run", "--bundle", b.to_str().unwrap(), "x2"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("/no/such/binary"),
        "{}",
        text(&out.stderr)
    );
    // A failing prestart hook fails create; its stand-in and VM are gone.
    let b = env.bundle("hk", &["true"], |s| {
        s["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-said-no >&2; exit 7"]}]})
    });
    let out = env.sandpod(&["create", "--bundle", b.to_str().unwrap(), "x3"]);
    assert!(
        text(&out.stderr).contains("hook-said-no"),
        "{}",
        text(&out.stderr)
    );
    assert!(env.last_log_error().contains("prestart hook"));
    // A hook that times out.
    let b = env.bundle("ht", &["true"], |s| {
        s["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]})
    });
    let out = env.sandpod(&["create", "--bundle", b.to_str().unwrap(), "x4"]);
    assert!(
        text(&out.stderr).contains("timed out"),
        "{}",
        text(&out.stderr)
    );
    // A VMM that fails: its own reason, once.
    let b = env.bundle("vf", &["true"], |_| {});
    let err_file = env.dir.path().join("x5.err");
    env.cmd()
        .env("SANDPOD_VMM", "/bin/false")
        .args(["create", "--bundle", b.to_str().unwrap(), "x5"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .status()
        .unwrap();
    let e = std::fs::read_to_string(&err_file).unwrap();
    assert!(
        e.contains("the VM stopped while booting: sandpod-vmm exited with status 1"),
        "{e}"
    );
    assert_eq!(e.matches("sandpod-vmm exited").count(), 1, "{e}");
    // Malformed exec --process JSON.
    let out = env.sandpod(&["exec", "--process", "/dev/null", "x6"]);
    assert!(!out.status.success());
    env.assert_nothing_left();
}

#[test]
fn prestart_hooks_see_the_standin_in_the_new_network_namespace() {
    let env = Env::new();
    let seen = env.dir.path().join("hook.txt");
    let b = env.bundle("b", &["true"], |s| {
        s["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c",
            format!("cat > {0}.state; readlink /proc/$(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/' {0}.state)/ns/net > {0}", seen.display())]}],
            "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo poststop > {}.stop", seen.display())]}]});
        s["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "network"}]);
    });
    let out = env.sandpod(&["run", "--bundle", b.to_str().unwrap(), "n1"]);
    assert!(out.status.success());
    let hook_ns = std::fs::read_to_string(&seen).unwrap();
    let own_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(hook_ns.starts_with("net:["), "{hook_ns}");
    assert_ne!(
        hook_ns.trim(),
        own_ns.to_string_lossy(),
        "the stand-in has a namespace of its own"
    );
    assert!(std::fs::read_to_string(format!("{}.stop", seen.display()))
        .unwrap()
        .contains("poststop"));
    env.assert_nothing_left();
}

#[test]
fn sigterm_during_create_undoes_it() {
    let env = Env::new();
    // The hook marks when create is under way (its signal handling is in place by then).
    let mark = env.dir.path().join("hook-started");
    let b = env.bundle("b", &["true"], |s| {
        s["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/sh",
            "args": ["sh", "-c", format!("touch {}; sleep 1", mark.display())]}]})
    });
    let mut child = env
        .cmd()
        .args(["create", "--bundle", b.to_str().unwrap(), "s1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mark.exists() {
        assert!(Instant::now() < deadline, "the prestart hook never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let st = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!st.success());
    assert!(err.contains("interrupted by signal 15"), "{err}");
    env.assert_nothing_left();
}

#[test]
fn two_processes_on_one_container_at_once() {
    let env = Env::new();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    assert!(env
        .sandpod_detached(&["create", "--bundle", b.to_str().unwrap(), "p1"])
        .0
        .success());
    assert!(env.sandpod(&["start", "p1"]).status.success());
    let execs: Vec<_> = (0..4)
        .map(|i| {
            env.cmd()
                .args(["exec", "p1", "sh", "-c", &format!("echo e{i}; exit {i}")])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in execs.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(i as i32));
        assert_eq!(text(&out.stdout), format!("e{i}\n"));
    }
    let pid = env.state("p1")["pid"].as_i64().unwrap() as i32;
    assert!(env.sandpod(&["delete", "--force", "p1"]).status.success());
    assert_eq!(wait_status(pid), 137);
    env.assert_nothing_left();
}
