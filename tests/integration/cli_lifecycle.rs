//! The `sandpod` CLI's container lifecycle on this host, without KVM: `SANDPOD_VMM` is
//! sandpod-fake-vmm (the real agent on the host behind a fake hybrid vsock), virtiofsd is the
//! real one. Every scenario ends with the leak check: no process whose command line names the
//! state root, no mount under it, nothing left in it.
//!
//! Needs root, the busybox bundle and virtiofsd (`make unit` builds them first): without them
//! the tests FAIL saying so.
mod cli_env;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cli_env::{receive_fd, text, wait_status, Env};

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
fn templates_on_with_a_vmm_that_saves_no_snapshot_boot_cold_and_leave_nothing() {
    // sandpod-fake-vmm saves no snapshot: the template's build gives up after three boot timeouts,
    // is recorded as failed, and the sandbox boots cold; the next start does not try again.
    let env = Env::new();
    let b = env.bundle("b", &["sh", "-c", "echo hi"], |_| {});
    for id in ["t1", "t2"] {
        let out = env
            .cmd()
            .env("SANDPOD_TEMPLATE", "1")
            .args(["run", "--boot-timeout", "10", "--bundle"])
            .arg(&b)
            .arg(id)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "hi\n");
    }
    let log = std::fs::read_to_string(env.dir.path().join("log.json")).unwrap();
    assert_eq!(log.matches("making the VM template").count(), 1, "{log}");
    assert!(log.contains("no VM template, booting cold"), "{log}");
    assert!(log.contains("start=cold"), "{log}");
    // Of the build, only its key's lock and failure record are left.
    let templates = env.root().join(".templates");
    let mut names: Vec<String> = std::fs::read_dir(&templates)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].ends_with(".failed") && names[1].ends_with(".lock"),
        "{names:?}"
    );
    std::fs::remove_dir_all(&templates).unwrap();
    env.assert_nothing_left();
}

#[test]
fn a_template_that_fails_to_restore_is_removed_and_the_sandbox_boots_cold() {
    use sandpod_runtime::hypervisor::{CacheMode, VmSize};
    use sandpod_runtime::sandbox::template::{build, TemplateStore};
    use sandpod_runtime::sandbox::SandboxConfig;
    let env = Env::new();
    let b = env.bundle("b", &["sh", "-c", "echo hi"], |_| {});
    // A template of this sandbox's VM (the bundle sets no limits: the default size) whose
    // snapshot is garbage. sandpod-fake-vmm ignores restore_from and starts its agent, which,
    // not being a clone, refuses ResumeClone: the restore fails as a corrupt snapshot's would.
    let fake = std::path::PathBuf::from(cli_env::FAKE_VMM);
    let cfg = SandboxConfig {
        root: env.root(),
        id: "r1".into(),
        size: VmSize::DEFAULT,
        hostname: None,
        paths: sandpod_runtime::paths::RuntimePaths {
            vmm: fake.clone(),
            virtiofsd: cli_env::virtiofsd(),
            kernel: fake.clone(),
            initrd: fake,
        },
        log: None,
        log_format: "text".into(),
        debug: false,
        cache: CacheMode::Auto,
        boot_timeout: Duration::from_secs(30),
        self_exe: cli_env::sandpod_bin(),
        host_cgroup: None,
        jail: None,
        netns: None,
        dns_relay: false,
        template: true,
    };
    let inputs = build::inputs_for(&cfg).unwrap();
    let store = TemplateStore::new(&env.root());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = rt
        .block_on(store.ensure(&inputs, true, |dir| async move {
            std::fs::write(dir.join("state.bin"), b"not a snapshot")?;
            std::fs::File::create(dir.join("memory.bin"))?.set_len(256 << 20)?;
            Ok(())
        }))
        .unwrap();
    let out = env
        .cmd()
        .env("SANDPOD_TEMPLATE", "1")
        .args(["run", "--bundle"])
        .arg(&b)
        .arg("r1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    let log = std::fs::read_to_string(env.dir.path().join("log.json")).unwrap();
    assert_eq!(
        log.matches("restoring the VM from the template").count(),
        1,
        "{log}"
    );
    assert!(log.contains("ResumeClone"), "{log}");
    assert!(log.contains("start=cold_after_failed_restore"), "{log}");
    assert!(!t.dir.exists(), "the template that failed is removed");
    // Left: the key's lock (no build was tried).
    let templates = env.root().join(".templates");
    let names: Vec<_> = std::fs::read_dir(&templates).unwrap().flatten().collect();
    assert_eq!(names.len(), 1, "{names:?}");
    std::fs::remove_dir_all(&templates).unwrap();
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

/// A fatal error is printed once, with its cause once: on stderr, and with `--log` also as the
/// log's one error line (the messages name what failed; the printer adds the cause chain).
#[test]
fn a_fatal_error_and_its_cause_are_printed_once() {
    let env = Env::new();
    let missing = env.dir.path().join("no-such-bundle");
    let missing = missing.to_str().unwrap();
    let cause = "No such file or directory";
    // With --log --log-format json (as Env runs it, like containerd).
    let out = env.sandpod(&["create", "--bundle", missing, "m1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(
        err,
        format!("sandpod: bundle {missing}: {cause} (os error 2)\n")
    );
    let log = std::fs::read_to_string(env.dir.path().join("log.json")).unwrap();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""level":"error""#))
        .collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert_eq!(errors[0].matches(cause).count(), 1, "{log}");
    // Without --log: stderr only, once.
    let bare = |args: &[&str]| {
        std::process::Command::new(cli_env::sandpod_bin())
            .arg("--root")
            .arg(env.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = bare(&["create", "--bundle", missing, "m2"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches(cause).count(), 1, "{err}");
    // A config file that is not there (reported before the log is set up).
    let out = bare(&["--config", missing, "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(
        err,
        format!("sandpod: reading the config file {missing}: {cause} (os error 2)\n")
    );
    env.assert_nothing_left();
}

/// `--debug` reaches the VM's processes: sandpod-vmm through SANDPOD_LOG (it has no --debug),
/// virtiofsd through its --log-level.
#[test]
fn debug_reaches_the_vmm_and_virtiofsd() {
    let env = Env::new();
    let b = env.bundle("b", &["sleep", "30"], |_| {});
    let st = env
        .cmd()
        .env_remove("SANDPOD_LOG")
        .env_remove("RUST_LOG")
        .args(["--debug", "create", "--bundle", b.to_str().unwrap(), "d1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let children: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.root().join("d1").join("children.json")).unwrap(),
    )
    .unwrap();
    let proc_file = |who: &str, file: &str| {
        let pid = children[who]["pid"].as_i64().unwrap();
        let raw = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
        raw.split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
    };
    let vmm_env = proc_file("vmm", "environ");
    let fsd = proc_file("virtiofsd", "cmdline").join(" ");
    // Deleted before the checks: a failed check leaves nothing running.
    assert!(env.sandpod(&["delete", "--force", "d1"]).status.success());
    env.assert_nothing_left();
    assert!(
        vmm_env.iter().any(|v| v == "SANDPOD_LOG=debug"),
        "sandpod-vmm's environment: {vmm_env:?}"
    );
    assert!(fsd.contains("--log-level debug"), "{fsd}");
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
