//! The agent's API end to end on the host: `sandpod-agent --test-serve` behind a fake
//! hybrid-vsock front, driven by the runtime's agent client. No VM, no root needed.
mod support;

use std::time::Duration;

use sandpod_runtime::agent_client::proto::{
    CreateSandboxRequest, IpNet, NetInterface, NetRoute, UpdateNetworkRequest,
};
use sandpod_runtime::agent_client::{ExitStatus, LogReceiver, StreamKind};
use sha2::{Digest, Sha256};
use support::{exec_req, run, token, TestAgent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn health_and_guest_details() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let h = client.health().await.unwrap();
    assert!(h.ok);
    assert_eq!(h.version, env!("CARGO_PKG_VERSION"));
    let d = client.guest_details().await.unwrap();
    assert!(!d.kernel_release.is_empty());
    assert!(d.cpus >= 1);
    assert!(d.mem_total_kib > 0);
}

#[tokio::test]
async fn stdout_stderr_and_exit_code_are_exact() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let out = run(
        &client,
        "echo",
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.status, ExitStatus::Exited(3));
}

#[tokio::test]
async fn ten_mib_through_cat() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let data: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let want = Sha256::digest(&data);
    let out = run(&client, "cat", &["cat"], data).await.unwrap();
    assert_eq!(out.stdout.len(), 10 * 1024 * 1024);
    assert_eq!(Sha256::digest(&out.stdout), want);
    assert_eq!(out.status, ExitStatus::Exited(0));
}

#[tokio::test]
async fn sigterm_is_reported_as_signal_15() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    client
        .exec_process(&exec_req("sleeper", &["sleep", "100"], [false; 3]))
        .await
        .unwrap();
    client.signal_process("sleeper", 15).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), client.wait_process("sleeper"))
        .await
        .expect("sleep did not die")
        .unwrap();
    assert_eq!(status, ExitStatus::Signaled(15));
    // Waited: the process is forgotten, and its id free again.
    let err = client.signal_process("sleeper", 15).await.unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::NOT_FOUND), "{err}");
}

#[tokio::test]
async fn twenty_processes_in_parallel() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let runs = (0..20).map(|i| {
        let client = client.clone();
        async move {
            let id = format!("par-{i}");
            let script = format!("echo {i}; echo e{i} >&2; exit {i}");
            run(&client, &id, &["sh", "-c", &script], vec![]).await
        }
    });
    let outs = futures_join_all(runs).await;
    for (i, out) in outs.into_iter().enumerate() {
        let out = out.unwrap();
        assert_eq!(out.stdout, format!("{i}\n").as_bytes());
        assert_eq!(out.stderr, format!("e{i}\n").as_bytes());
        assert_eq!(out.status, ExitStatus::Exited(i as i32));
    }
}

/// join_all without the futures crate: spawn each, await in order.
async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn nonexistent_binary_error_names_it() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let err = client
        .exec_process(&exec_req("nx", &["sandpod-no-such-binary"], [false; 3]))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("sandpod-no-such-binary"), "{msg}");
    assert!(msg.contains("No such file or directory"), "{msg}");
    // The failed exec released its id.
    client
        .exec_process(&exec_req("nx", &["true"], [false; 3]))
        .await
        .unwrap();
    assert_eq!(
        client.wait_process("nx").await.unwrap(),
        ExitStatus::Exited(0)
    );
}

/// The agent blocks nothing, but its threads might; and Rust ignores SIGPIPE in the agent. A child
/// must start with nothing blocked and SIGPIPE and SIGCHLD at their defaults. (Dispositions the
/// agent itself inherited as ignored pass on: in the guest the kernel starts PID 1 with none.)
#[tokio::test]
async fn children_start_with_a_clean_signal_mask() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let out = run(
        &client,
        "mask",
        &["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"],
        vec![],
    )
    .await
    .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        let line = text.lines().find(|l| l.starts_with(name)).expect(name);
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(field("SigBlk:"), 0, "{text}");
    let bit = |sig: u32| 1u64 << (sig - 1);
    let ignored = field("SigIgn:");
    assert_eq!(
        ignored & (bit(13) | bit(17)),
        0,
        "SIGPIPE or SIGCHLD ignored: {text}"
    );
}

#[tokio::test]
async fn close_stdin_ends_cat() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let mut stdin = client
        .open_stream("c", StreamKind::Stdin, token())
        .await
        .unwrap();
    let mut stdout = client
        .open_stream("c", StreamKind::Stdout, token())
        .await
        .unwrap();
    client
        .exec_process(&exec_req("c", &["cat"], [true, true, false]))
        .await
        .unwrap();
    stdin.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    stdout.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    // The host's stdin stream stays open: only CloseStdin ends cat's input.
    client.close_stdin("c").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), client.wait_process("c"))
        .await
        .expect("cat did not see EOF")
        .unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn terminal_mode_echoes_and_resizes() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let mut tty = client
        .open_stream("t", StreamKind::Tty, token())
        .await
        .unwrap();
    let mut req = exec_req(
        "t",
        &[
            "sh",
            "-c",
            "read x; echo got:$x; stty size; test -t 0 && echo tty",
        ],
        [true, true, false],
    );
    req.terminal = true;
    client.exec_process(&req).await.unwrap();
    client.resize_terminal("t", 33, 77).await.unwrap();
    tty.write_all(b"abc\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tty.read_to_end(&mut out))
        .await
        .expect("tty output did not end")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("got:abc"), "{text:?}");
    assert!(text.contains("33 77"), "{text:?}");
    assert!(text.contains("tty"), "{text:?}");
    assert_eq!(
        client.wait_process("t").await.unwrap(),
        ExitStatus::Exited(0)
    );
}

#[tokio::test]
async fn errors_carry_their_message() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let err = client.wait_process("nobody").await.unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::NOT_FOUND));
    assert!(err.to_string().contains("\"nobody\""), "{err}");
    let err = client.resize_terminal("nobody", 1, 1).await.unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::NOT_FOUND));
    let err = client
        .exec_process(&exec_req("bad id", &["true"], [false; 3]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::INVALID_ARGUMENT), "{err}");
    client
        .exec_process(&exec_req("dup", &["sleep", "100"], [false; 3]))
        .await
        .unwrap();
    let err = client
        .exec_process(&exec_req("dup", &["true"], [false; 3]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::ALREADY_EXISTS), "{err}");
    client.signal_process("dup", 9).await.unwrap();
    assert_eq!(
        client.wait_process("dup").await.unwrap(),
        ExitStatus::Signaled(9)
    );
}

#[tokio::test]
async fn create_sandbox_writes_resolv_conf_in_test_mode() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let mut req = CreateSandboxRequest::new();
    req.hostname = "pod-a".into();
    req.dns_servers = vec!["10.96.0.10".into()];
    req.dns_search = vec!["default.svc.cluster.local".into()];
    client.create_sandbox(&req).await.unwrap();
    let text = std::fs::read_to_string(agent.dir.path().join("vsock.sock_resolv.conf")).unwrap();
    assert!(text.contains("nameserver 10.96.0.10\n"), "{text}");
    assert!(
        text.contains("search default.svc.cluster.local\n"),
        "{text}"
    );
    let err = client.create_sandbox(&req).await.unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::ALREADY_EXISTS));
    client.destroy_sandbox().await.unwrap();
}

/// Test mode checks UpdateNetwork's request but leaves the host's network alone.
#[tokio::test]
async fn update_network_is_checked_not_applied_in_test_mode() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let mut iface = NetInterface::new();
    iface.name = "sp-test-eth0".into();
    iface.mac = "02:42:0a:58:00:05".into();
    iface.mtu = 1400;
    let mut addr = IpNet::new();
    addr.address = "10.88.0.5".into();
    addr.prefix_len = 16;
    iface.addresses.push(addr);
    let mut route = NetRoute::new();
    route.gateway = "10.88.0.1".into();
    route.device = "sp-test-eth0".into();
    let mut req = UpdateNetworkRequest::new();
    req.interfaces.push(iface);
    req.routes.push(route);
    // No link of the host has that MAC: applying would fail; test mode only checks.
    client.update_network(&req).await.unwrap();
    assert!(!std::path::Path::new("/sys/class/net/sp-test-eth0").exists());

    req.routes[0].device = "eth9".into();
    let err = client.update_network(&req).await.unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::INVALID_ARGUMENT), "{err}");
    assert!(
        err.to_string()
            .contains("route 0: device \"eth9\" is none of the request's interfaces"),
        "{err}"
    );
}

#[tokio::test]
async fn agent_logs_reach_the_host() {
    let agent = TestAgent::start();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _logs = LogReceiver::bind_with(agent.connector().host_port_path(1025), move |l| {
        let _ = tx.send(l);
    })
    .unwrap();
    let client = agent.client().await;
    client
        .exec_process(&exec_req("logged", &["true"], [false; 3]))
        .await
        .unwrap();
    client.wait_process("logged").await.unwrap();
    // The forwarder retries with backoff until the receiver listens: allow a few seconds.
    let found = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(line) = rx.recv().await {
            if line.msg.contains("exec logged started") {
                return line;
            }
        }
        panic!("log channel closed");
    })
    .await
    .expect("no forwarded log line about the exec");
    assert_eq!(found.level, tracing::Level::INFO);
    assert!(
        found.target.starts_with("sandpod_agent"),
        "{}",
        found.target
    );
}

/// `(pid, state, comm)` of `parent`'s children.
fn children_of(parent: u32) -> Vec<(u32, String, String)> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split at the last ')'.
        let (Some((head, rest)), Some(open)) = (stat.rsplit_once(')'), stat.find('(')) else {
            continue;
        };
        let comm = head[open + 1..].to_string();
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("").to_string();
        if fields.next().and_then(|p| p.parse().ok()) == Some(parent) {
            children.push((pid, state, comm));
        }
    }
    children
}

#[tokio::test]
async fn orphans_are_reaped() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    // The shell exits at once; its background children are orphaned to the agent (a child
    // subreaper in test mode, as PID 1 is in the guest) and exit a moment later.
    client
        .exec_process(&exec_req(
            "orphans",
            &["sh", "-c", "for i in 1 2 3 4 5; do sleep 1 & done; exit 0"],
            [false; 3],
        ))
        .await
        .unwrap();
    assert_eq!(
        client.wait_process("orphans").await.unwrap(),
        ExitStatus::Exited(0)
    );
    // (A sleep may not have exec'd yet: count children whatever their name.)
    let orphans = children_of(agent.pid());
    assert_eq!(orphans.len(), 5, "not reparented to the agent: {orphans:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let left = children_of(agent.pid());
        if left.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "unreaped: {left:?}");
    }
    // The agent still serves, and still tells exit statuses apart from orphans.
    let out = run(&client, "after", &["sh", "-c", "exit 4"], vec![])
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Exited(4));
}

#[tokio::test]
async fn exec_fails_when_requested_streams_never_attach() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let started = std::time::Instant::now();
    let err = client
        .exec_process(&exec_req("lonely", &["true"], [false, true, false]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::DEADLINE_EXCEEDED), "{err}");
    assert!(err.to_string().contains("stdout stream"), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(9));
    // The id is free again, and a late stream is used by the retry.
    let mut stdout = client
        .open_stream("lonely", StreamKind::Stdout, token())
        .await
        .unwrap();
    client
        .exec_process(&exec_req("lonely", &["echo", "late"], [false, true, false]))
        .await
        .unwrap();
    let mut out = String::new();
    stdout.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "late\n");
    assert_eq!(
        client.wait_process("lonely").await.unwrap(),
        ExitStatus::Exited(0)
    );
}

/// With CreateSandbox's log token, the agent reconnects presenting it and resends what it
/// logged before; a connection without it (what a guest process with vsock could open) is not
/// read by the host.
#[tokio::test]
async fn agent_logs_with_the_log_token() {
    let agent = TestAgent::start();
    let token = sandpod_runtime::agent_client::LogToken::generate().unwrap();
    let path = agent.connector().host_port_path(1025);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _logs = LogReceiver::bind_with_token(&path, token.clone(), move |l| {
        let _ = tx.send(l);
    })
    .unwrap();
    let client = agent.client().await;
    // Before the token: the agent logs (the API is up), the host reads nothing of it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.try_recv().is_err(), "read a line before the token");
    // A forger on the same port.
    let mut forger = tokio::net::UnixStream::connect(&path).await.unwrap();
    forger
        .write_all(b"{\"level\":\"error\",\"msg\":\"forged\",\"target\":\"t\"}\n")
        .await
        .unwrap();
    let mut req = CreateSandboxRequest::new();
    req.log_token = token.to_string();
    client.create_sandbox(&req).await.unwrap();
    // A malformed token is refused.
    let mut other = CreateSandboxRequest::new();
    other.log_token = "not hex".into();
    let err = client.create_sandbox(&other).await.unwrap_err();
    assert!(err.to_string().contains("log_token"), "{err}");
    let lines = tokio::time::timeout(Duration::from_secs(15), async {
        let mut seen = Vec::new();
        while let Some(l) = rx.recv().await {
            let done = l.msg.contains("serving the agent API");
            seen.push(l.msg);
            if done {
                return seen;
            }
        }
        panic!("log channel closed");
    })
    .await
    .expect("the lines logged before the token were not resent with it");
    assert!(!lines.iter().any(|m| m.contains("forged")), "{lines:?}");
}
