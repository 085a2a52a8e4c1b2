//! The runtime's agent client against `sandpod-fake-vmm` on this host (no KVM): a busybox
//! container's lifecycle, pause/resume, stats, update, the process list, kill --all, and how the
//! fake VMM ends (SIGTERM → 143 with nothing left behind, the agent's death → 2, bad arguments).
//!
//! Needs root (mount namespace, cgroups) and the busybox bundle (`make bundle`): without them
//! the tests FAIL with a message saying so, they never pass silently. The fake VMM runs the agent
//! beside it (target/<profile>/sandpod-agent; `make unit` builds it first) unless
//! SANDPOD_AGENT_BIN names another.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sandpod_protocol::shared::{guest_rootfs, GUEST_SHARED_DIR, VIRTIOFS_TAG};
use sandpod_protocol::ttrpc::Code;
use sandpod_runtime::agent_client::proto::{CreateSandboxRequest, ExecProcessRequest, Mount};
use sandpod_runtime::agent_client::{
    AgentClient, AgentError, ClientConfig, ExitStatus, HybridVsockConnector, StreamKind, StreamSet,
    StreamToken,
};
use sandpod_testhost::fakevm::mounts;
use tokio::io::AsyncReadExt;

const FAKE_VMM: &str = env!("CARGO_BIN_EXE_sandpod-fake-vmm");
const WAIT: Duration = Duration::from_secs(20);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the fake VMM tests need root (mount namespace, cgroups): run them as root"
    );
}

/// The busybox bundle's directory; the test fails (never skips) without it.
fn bundle() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/bundles/busybox");
    assert!(
        dir.join("rootfs/bin/busybox").is_file() && dir.join("config.json").is_file(),
        "no busybox bundle at {}: run `make bundle` first",
        dir.display()
    );
    dir
}

/// `shared/<id>/rootfs` in `dir`, a copy of the bundle's rootfs.
fn add_rootfs(dir: &Path, id: &str) {
    let target = dir.join("shared").join(id);
    std::fs::create_dir_all(&target).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(bundle().join("rootfs"))
        .arg(target.join("rootfs"))
        .status()
        .unwrap();
    assert!(st.success(), "cp -a of the busybox rootfs: {st}");
}

/// The bundle's config.json running `args`.
fn spec(args: &[&str]) -> Vec<u8> {
    let text = std::fs::read_to_string(bundle().join("config.json")).unwrap();
    let mut spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    spec["process"]["args"] = serde_json::json!(args);
    spec["hostname"] = serde_json::json!("fake-vm");
    serde_json::to_vec(&spec).unwrap()
}

/// A running sandpod-fake-vmm on a state directory laid out like the runtime's.
struct FakeVm {
    dir: PathBuf,
    child: Child,
    agent_pid: i32,
    cgroup: PathBuf,
}

impl FakeVm {
    fn command(dir: &Path) -> Command {
        let mut cmd = Command::new(FAKE_VMM);
        cmd.arg("--kernel")
            .arg(dir.join("vmlinux"))
            .arg("--initrd")
            .arg(dir.join("initramfs.cpio"))
            .arg("--mem-mib=256")
            .arg(format!(
                "--console=file:{}",
                dir.join("console.log").display()
            ))
            .arg("--vsock-uds")
            .arg(dir.join("vsock.sock"))
            .arg("--fs")
            .arg(format!(
                "tag={VIRTIOFS_TAG},socket={}",
                dir.join("virtiofsd.sock").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("vmm.stderr")).unwrap());
        cmd
    }

    /// Starts it and waits for its console line.
    fn start(dir: &Path) -> FakeVm {
        let child = Self::command(dir)
            .spawn()
            .expect("starting sandpod-fake-vmm");
        let mut vm = FakeVm {
            dir: dir.to_owned(),
            child,
            agent_pid: 0,
            cgroup: PathBuf::new(),
        };
        let started = Instant::now();
        let line = loop {
            if let Some(l) = vm
                .console()
                .lines()
                .find(|l| l.starts_with("sandpod-fake-vmm: agent_pid="))
            {
                break l.to_owned();
            }
            if let Ok(Some(st)) = vm.child.try_wait() {
                panic!("sandpod-fake-vmm ended ({st}) early:\n{}", vm.logs());
            }
            assert!(started.elapsed() < WAIT, "no console line:\n{}", vm.logs());
            std::thread::sleep(Duration::from_millis(20));
        };
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(k))
                .unwrap_or_else(|| panic!("{k} in {line:?}"))
                .to_owned()
        };
        vm.agent_pid = field("agent_pid=").parse().unwrap();
        vm.cgroup = PathBuf::from(field("cgroup="));
        vm
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let stderr = std::fs::read_to_string(self.dir.join("vmm.stderr")).unwrap_or_default();
        format!("--- console:\n{}--- stderr:\n{stderr}", self.console())
    }

    async fn client(&self) -> AgentClient {
        let config = ClientConfig {
            connect_deadline: WAIT,
            ..Default::default()
        };
        let connector = HybridVsockConnector::new(self.dir.join("vsock.sock"));
        match AgentClient::connect(connector, config).await {
            Ok(c) => c,
            Err(e) => panic!("connecting to the agent: {e}\n{}", self.logs()),
        }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// Its exit code, waiting at most WAIT.
    fn wait(&mut self) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(
                started.elapsed() < WAIT,
                "the fake VMM did not end:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeVm {
    fn drop(&mut self) {
        // A failed test still stops everything the fake VM ran (SIGTERM: its own cleanup).
        if let Ok(None) = self.child.try_wait() {
            self.signal(nix::sys::signal::Signal::SIGTERM);
            let started = Instant::now();
            while started.elapsed() < WAIT {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The cgroup v2 directory of host process `pid`.
fn cgroup_of(pid: u32) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line");
    mounts::cgroup2_mount()
        .unwrap()
        .join(rel.trim_start_matches('/'))
}

fn frozen(cgroup: &Path) -> bool {
    let events = std::fs::read_to_string(cgroup.join("cgroup.events")).unwrap();
    events.lines().any(|l| l == "frozen 1")
}

fn assert_code(r: Result<(), AgentError>, code: Code, text: &str) {
    let err = r.unwrap_err();
    assert_eq!(err.code(), Some(code), "{err}");
    assert!(err.to_string().contains(text), "{err:?} lacks {text:?}");
}

async fn wait(client: &AgentClient, id: &str) -> ExitStatus {
    client
        .wait_process_timeout(id, Some(WAIT))
        .await
        .unwrap_or_else(|e| panic!("waiting for {id}: {e}"))
}

#[tokio::test]
async fn containers_run_pause_and_die_behind_the_fake_vmm() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    add_rootfs(dir, "c1");
    add_rootfs(dir, "c2");
    let mut vm = FakeVm::start(dir);
    assert!(vm.cgroup.starts_with(mounts::cgroup2_mount().unwrap()));
    let client = vm.client().await;

    // The sandbox, as the runtime asks for it (the agent's test mode leaves the mount to us).
    let mut req = CreateSandboxRequest::new();
    req.hostname = "fake-vm".into();
    let mut share = Mount::new();
    share.source = VIRTIOFS_TAG.into();
    share.target = GUEST_SHARED_DIR.into();
    share.fstype = "virtiofs".into();
    req.mounts.push(share);
    client.create_sandbox(&req).await.unwrap();

    // c1: echo hi, its stdout read through the fake vsock.
    let token = StreamToken::generate().unwrap();
    let mut stdout = client
        .open_stream("c1", StreamKind::Stdout, &token)
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).await.map(|_| out)
    });
    let streams = StreamSet {
        stdout: true,
        ..Default::default()
    };
    let create = client
        .create_container(
            "c1",
            spec(&["echo", "hi"]),
            &guest_rootfs("c1"),
            streams,
            &token,
        )
        .await;
    if let Err(e) = create {
        panic!("CreateContainer c1: {e}\n{}", vm.logs());
    }
    client.start_container("c1").await.unwrap();
    assert_eq!(wait(&client, "c1").await, ExitStatus::Exited(0));
    let out = reader.await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "hi\n");
    // Stopped: no pause, no update (runc's words).
    assert_code(
        client.pause_container("c1").await,
        Code::FAILED_PRECONDITION,
        "container not running",
    );
    assert_code(
        client.update_container("c1", b"{}".to_vec()).await,
        Code::FAILED_PRECONDITION,
        "container not running",
    );
    client.remove_container("c1").await.unwrap();

    // c2: a sleeping container, and a second process exec'd into it.
    let pid = client
        .create_container(
            "c2",
            spec(&["sleep", "1000"]),
            &guest_rootfs("c2"),
            StreamSet::default(),
            &token,
        )
        .await
        .unwrap();
    client.start_container("c2").await.unwrap();
    let cg = cgroup_of(pid);
    assert!(
        cg.starts_with(&vm.cgroup),
        "{} not in {}",
        cg.display(),
        vm.cgroup.display()
    );
    let mut exec = ExecProcessRequest::new();
    exec.exec_id = "e1".into();
    exec.container_id = "c2".into();
    exec.args = vec!["sleep".into(), "2000".into()];
    exec.env = vec!["PATH=/bin".into()];
    let exec_pid = client.exec_process(&exec).await.unwrap();

    // Pause: the cgroup freezes; no exec, start or second pause meanwhile. Resume thaws.
    client.pause_container("c2").await.unwrap();
    assert!(
        frozen(&cg),
        "{} not frozen after PauseContainer",
        cg.display()
    );
    assert_code(
        client.pause_container("c2").await,
        Code::FAILED_PRECONDITION,
        "already paused",
    );
    exec.exec_id = "e2".into();
    assert_code(
        client.exec_process(&exec).await.map(|_| ()),
        Code::FAILED_PRECONDITION,
        "paused",
    );
    client.resume_container("c2").await.unwrap();
    assert!(
        !frozen(&cg),
        "{} still frozen after ResumeContainer",
        cg.display()
    );
    assert_code(
        client.resume_container("c2").await,
        Code::FAILED_PRECONDITION,
        "container not paused",
    );

    // Stats and update: what this host's cgroup2 allows (no controllers on a hybrid host's
    // cgroup2: then limits are a clear error and the pids figures 0).
    let controllers = std::fs::read_to_string(cg.join("cgroup.controllers")).unwrap();
    let has_pids = controllers.split_whitespace().any(|c| c == "pids");
    let stats = client.stats_container("c2").await.unwrap();
    assert!(stats.cpu_usage_usec > 0, "{stats:?}");
    let update = client
        .update_container("c2", br#"{"pids":{"limit":10}}"#.to_vec())
        .await;
    if has_pids {
        assert!(stats.pids_current >= 2, "{stats:?}");
        update.unwrap();
        assert_eq!(client.stats_container("c2").await.unwrap().pids_max, 10);
    } else {
        eprintln!(
            "note: no pids controller in {}: checking the refusal",
            cg.display()
        );
        assert_eq!(stats.pids_current, 0, "{stats:?}");
        assert_code(
            update,
            Code::INVALID_ARGUMENT,
            "pids controller is not available",
        );
    }
    assert_code(
        client
            .update_container("c2", b"{\"memory\":".to_vec())
            .await,
        Code::INVALID_ARGUMENT,
        "resources: ",
    );

    // The process list: the init (child of the agent) and the exec.
    let ps = client.list_processes("c2").await.unwrap();
    let init = ps
        .iter()
        .find(|p| p.pid == pid)
        .unwrap_or_else(|| panic!("no init {pid} in {ps:?}"));
    assert_eq!(
        (init.comm.as_str(), init.cmdline.as_str()),
        ("sleep", "sleep 1000")
    );
    assert_eq!((init.uid, init.ppid), (0, vm.agent_pid as u32), "{init:?}");
    // Sleeping, or running still just after the thaw.
    assert!(matches!(init.state.as_str(), "S" | "R"), "{init:?}");
    assert!(
        ps.iter()
            .any(|p| p.pid == exec_pid && p.cmdline == "sleep 2000"),
        "{ps:?}"
    );

    // kill --all, while paused (SIGKILL reaches frozen processes): the init and the exec.
    client.pause_container("c2").await.unwrap();
    client.signal_container_all("c2", 9).await.unwrap();
    assert_eq!(wait(&client, "c2").await, ExitStatus::Signaled(9));
    assert_eq!(wait(&client, "e1").await, ExitStatus::Signaled(9));
    client.remove_container("c2").await.unwrap();

    // SIGTERM: exit 143, the agent and the fake VM's cgroup gone, no mount on the host.
    drop(client);
    vm.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(vm.wait(), Some(143), "{}", vm.logs());
    assert!(
        !Path::new(&format!("/proc/{}", vm.agent_pid)).exists(),
        "the agent {} is still there",
        vm.agent_pid
    );
    assert!(!vm.cgroup.exists(), "{} left behind", vm.cgroup.display());
    assert!(
        !dir.join("vsock.sock").exists(),
        "the vsock socket left behind"
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left = [
        mounts::mounts_under(&mountinfo, dir),
        mounts::mounts_under(&mountinfo, Path::new(GUEST_SHARED_DIR)),
    ]
    .concat();
    assert!(left.is_empty(), "mounts left on the host: {left:#?}");
}

#[tokio::test]
async fn the_agent_dying_is_exit_2_and_sigint_is_130() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("shared")).unwrap();
    let mut vm = FakeVm::start(tmp.path());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(vm.agent_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(vm.wait(), Some(2), "{}", vm.logs());
    assert!(!vm.cgroup.exists(), "{} left behind", vm.cgroup.display());

    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("shared")).unwrap();
    let mut vm = FakeVm::start(tmp.path());
    // The agent answers behind it before the signal.
    vm.client().await.health().await.unwrap();
    vm.signal(nix::sys::signal::Signal::SIGINT);
    assert_eq!(vm.wait(), Some(130), "{}", vm.logs());
    assert!(!Path::new(&format!("/proc/{}", vm.agent_pid)).exists());
}

/// Whether process `pid` is gone (a zombie counts as gone: it runs nothing).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

#[tokio::test]
async fn it_dies_with_its_parent_and_takes_the_agent_along() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("shared")).unwrap();
    // A parent shell that starts the fake VMM, says its pid, and is then SIGKILLed.
    let cmd = FakeVm::command(dir);
    let mut line = vec![FAKE_VMM.to_string()];
    line.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let mut parent = Command::new("sh")
        .arg("-c")
        .arg(format!("{} 2>/dev/null & echo $!; wait", line.join(" ")))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let stdout = parent.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut out).unwrap();
    let fake_pid: i32 = out.trim().parse().unwrap();
    let started = Instant::now();
    let console = loop {
        let text = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
        if let Some(l) = text
            .lines()
            .find(|l| l.starts_with("sandpod-fake-vmm: agent_pid="))
        {
            break l.to_owned();
        }
        assert!(started.elapsed() < WAIT, "no console line: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let agent_pid: i32 = console
        .split_whitespace()
        .find_map(|f| f.strip_prefix("agent_pid="))
        .unwrap()
        .parse()
        .unwrap();
    parent.kill().unwrap();
    parent.wait().unwrap();
    let started = Instant::now();
    while !(gone(fake_pid) && gone(agent_pid)) {
        assert!(
            started.elapsed() < WAIT,
            "the fake VMM {fake_pid} or its agent {agent_pid} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let cgroup = console
        .split_whitespace()
        .find_map(|f| f.strip_prefix("cgroup="))
        .unwrap()
        .to_owned();
    // Its cleanup ran (SIGTERM from PR_SET_PDEATHSIG, not a plain death).
    let started = Instant::now();
    while Path::new(&cgroup).exists() {
        assert!(started.elapsed() < WAIT, "{cgroup} left behind");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_arguments_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |extra: &[&str], vsock: bool| {
        let mut cmd = Command::new(FAKE_VMM);
        cmd.arg("--kernel")
            .arg(tmp.path().join("vmlinux"))
            .args(extra);
        if vsock {
            cmd.arg("--vsock-uds").arg(tmp.path().join("vsock.sock"));
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Usage errors: 2, from the argument parser, as sandpod-vmm.
    let (code, err) = run(&["--no-such-flag"], true);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--no-such-flag"), "{err}");
    let (code, err) = run(&["--console", "bogus"], true);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["--fs", "socket=/x"], true);
    assert_eq!(code, Some(2), "{err}");
    // Valid for sandpod-vmm, not enough for the fake: 1 with the reason.
    let (code, err) = run(&[], false);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("needs --vsock-uds"), "{err}");
    let (code, err) = run(&[], true);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no share directory"), "{err}");

    // The same through --config (what the runtime passes), parsed by sandpod-vmm's own code.
    let config = |name: &str, json: serde_json::Value| {
        let p = tmp.path().join(name);
        std::fs::write(&p, json.to_string()).unwrap();
        p
    };
    let run_config = |path: &Path, extra: &[&str]| {
        let out = Command::new(FAKE_VMM)
            .arg("--config")
            .arg(path)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let kernel = tmp.path().join("vmlinux");
    let no_vsock = config("novsock.json", serde_json::json!({ "kernel": kernel }));
    let (code, err) = run_config(&no_vsock, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("needs --vsock-uds"), "{err}");
    let vsock = serde_json::json!({ "uds_path": tmp.path().join("vsock.sock") });
    let with_vsock = config(
        "vsock.json",
        serde_json::json!({ "kernel": kernel, "vsock": vsock }),
    );
    let (code, err) = run_config(&with_vsock, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no share directory"), "{err}");
    // A file or flags, not both; unknown fields are refused.
    let (code, err) = run_config(&with_vsock, &["--vcpus", "2"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    let typo = config(
        "typo.json",
        serde_json::json!({ "kernel": kernel, "vsock_uds": "/x" }),
    );
    let (code, err) = run_config(&typo, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("unknown field `vsock_uds`"), "{err}");
}
