//! Test harness: the agent in `--test-serve` mode behind a fake hybrid-vsock front.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sandpod_runtime::agent_client::proto::ExecProcessRequest;
use sandpod_runtime::agent_client::{
    AgentClient, AgentError, ClientConfig, ExitStatus, FakeHybridVsock, HybridVsockConnector,
    StreamKind, StreamToken,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The agent process, its directory and the fake front.
pub struct TestAgent {
    pub dir: tempfile::TempDir,
    pub uds: PathBuf,
    child: Child,
    _front: FakeHybridVsock,
}

impl TestAgent {
    /// Starts the front and the agent (`<dir>/vsock.sock` is both the front's socket and the
    /// agent's base, so the agent's ports are `<uds>_<port>` as behind a real VMM).
    pub fn start() -> TestAgent {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("vsock.sock");
        let front = FakeHybridVsock::start(&uds).expect("binding the fake vsock socket");
        let log = std::fs::File::create(dir.path().join("agent.stderr")).unwrap();
        // SANDPOD_AGENT_BIN runs the tests against another build (say, the static release one).
        let bin = std::env::var_os("SANDPOD_AGENT_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sandpod-agent")));
        let child = Command::new(bin)
            .arg("--test-serve")
            .arg(format!("unix://{}", uds.display()))
            .env(sandpod_protocol::LOG_ENV, "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting sandpod-agent --test-serve");
        TestAgent {
            dir,
            uds,
            child,
            _front: front,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connector(&self) -> HybridVsockConnector {
        HybridVsockConnector::new(&self.uds)
    }

    pub async fn client(&self) -> AgentClient {
        let config = ClientConfig {
            connect_deadline: Duration::from_secs(20),
            ..Default::default()
        };
        match AgentClient::connect(self.connector(), config).await {
            Ok(c) => c,
            Err(e) => panic!(
                "connecting to the agent: {e}\nagent stderr:\n{}",
                self.stderr()
            ),
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.stderr")).unwrap_or_default()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stream token of the tests' requests (one per test process, drawn like the host's).
pub fn token() -> &'static StreamToken {
    static TOKEN: std::sync::OnceLock<StreamToken> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| StreamToken::generate().expect("getrandom"))
}

/// An ExecProcess request as the current user, with the tests' stream [`token`].
pub fn exec_req(exec_id: &str, args: &[&str], streams: [bool; 3]) -> ExecProcessRequest {
    let mut req = ExecProcessRequest::new();
    req.exec_id = exec_id.into();
    req.args = args.iter().map(|s| s.to_string()).collect();
    req.env = vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()];
    req.uid = nix::unistd::getuid().as_raw();
    req.gid = nix::unistd::getgid().as_raw();
    [req.stdin, req.stdout, req.stderr] = streams;
    req.stream_token = token().to_string();
    req
}

/// What a finished process gave.
#[derive(Debug)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

/// Runs `args` with all three streams: streams opened first, `input` written then closed, output
/// read to EOF, exit status awaited.
pub async fn run(
    client: &AgentClient,
    exec_id: &str,
    args: &[&str],
    input: Vec<u8>,
) -> Result<Output, AgentError> {
    let mut stdin = client
        .open_stream(exec_id, StreamKind::Stdin, token())
        .await?;
    let mut stdout = client
        .open_stream(exec_id, StreamKind::Stdout, token())
        .await?;
    let mut stderr = client
        .open_stream(exec_id, StreamKind::Stderr, token())
        .await?;
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        let _ = stdin.shutdown().await;
        // Keep the connection until the agent closes it (process gone or stdin done).
        let mut sink = Vec::new();
        let _ = stdin.read_to_end(&mut sink).await;
    });
    let out = tokio::spawn(async move {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).await.map(|_| v)
    });
    let err = tokio::spawn(async move {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).await.map(|_| v)
    });
    client
        .exec_process(&exec_req(exec_id, args, [true, true, true]))
        .await?;
    let status = client.wait_process(exec_id).await?;
    let stdout = out.await.unwrap().expect("reading stdout");
    let stderr = err.await.unwrap().expect("reading stderr");
    writer.await.unwrap();
    Ok(Output {
        stdout,
        stderr,
        status,
    })
}
