//! One command in the test host: stage the share disk, boot the L2, stream the command's output,
//! return its exit status. Hard timeouts; a hang is retried; QEMU never outlives the run.
use std::collections::VecDeque;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::console::{spawn_reader, ConsoleEvent};
use crate::{qemu, share, TestHostConfig};

const BOOTED_MARKER: &[u8] = b"SANDPOD-TESTHOST-BOOTED";
const CONSOLE_TAIL_LINES: usize = 60;
/// Without a heartbeat for this long (8 missed), the test host is frozen: the run is a hang.
const FROZEN_AFTER: Duration = Duration::from_secs(8 * share::HEARTBEAT_SECS);

/// The result of a command that ran to its end in the test host.
#[derive(Debug)]
pub struct Outcome {
    /// The command's exit status (0–255; 128+N for a signal, as sh reports it).
    pub code: i32,
    /// What the command printed (stdout and stderr, interleaved as on a terminal).
    pub output: Vec<u8>,
    /// From QEMU start to the L2's "booted" line, for the run that completed.
    pub boot_time: Duration,
    /// Runs it took (1, or more after a hang).
    pub attempts: u32,
}

#[derive(Debug, Error)]
pub enum TestHostError {
    #[error("the test host did not boot within {0:?}; console tail:\n{1}")]
    BootTimeout(Duration, String),
    #[error("the command did not finish within {0:?}; the last lines it printed:\n{1}")]
    CommandTimeout(Duration, String),
    #[error(
        "the test host froze (no heartbeat for {0:?}); the last lines the command printed:\n{1}"
    )]
    Frozen(Duration, String),
    #[error("QEMU ended before the command reported its exit status; QEMU said: {qemu}\nconsole tail:\n{console}")]
    NoExitStatus { qemu: String, console: String },
    #[error("starting QEMU ({0}): {1}")]
    Spawn(String, std::io::Error),
    #[error(transparent)]
    Setup(#[from] anyhow::Error),
    #[error("writing the command's output: {0}")]
    Output(std::io::Error),
}

impl TestHostError {
    /// A hang: worth one more try.
    fn is_hang(&self) -> bool {
        matches!(
            self,
            TestHostError::BootTimeout(..)
                | TestHostError::CommandTimeout(..)
                | TestHostError::Frozen(..)
        )
    }
}

/// Kills and reaps QEMU and removes the run directory, whatever way the run ends.
struct RunGuard {
    child: Option<Child>,
    run_dir: PathBuf,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.run_dir);
    }
}

/// The test host, ready to run commands.
pub struct TestHost {
    pub config: TestHostConfig,
}

impl TestHost {
    pub fn new(config: TestHostConfig) -> Self {
        TestHost { config }
    }

    /// From the environment (see [`TestHostConfig::from_env`]); builds the image if needed.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(TestHost::new(TestHostConfig::from_env()?))
    }

    /// Runs `argv` in the test host, streaming its output to `out` as it comes.
    pub fn run_streaming(
        &self,
        argv: &[String],
        out: &mut dyn Write,
    ) -> Result<Outcome, TestHostError> {
        let mut attempt = 1;
        loop {
            match self.run_once(argv, out) {
                Ok(mut outcome) => {
                    outcome.attempts = attempt;
                    return Ok(outcome);
                }
                Err(e) if e.is_hang() && attempt < self.config.attempts => {
                    eprintln!("[testhost] attempt {attempt} hung ({e}); retrying");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `argv` in the test host and collects its output.
    pub fn run(&self, argv: &[&str]) -> Result<Outcome, TestHostError> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.run_streaming(&argv, &mut std::io::sink())
    }

    fn run_once(&self, argv: &[String], out: &mut dyn Write) -> Result<Outcome, TestHostError> {
        let cfg = &self.config;
        fs::create_dir_all(&cfg.work_dir).map_err(anyhow::Error::from)?;
        let run_dir = cfg
            .work_dir
            .join(format!("run-{}-{}", std::process::id(), share::nonce()));
        let mut guard = RunGuard {
            child: None,
            run_dir: run_dir.clone(),
        };
        fs::create_dir_all(&run_dir).map_err(anyhow::Error::from)?;
        let nonce = share::nonce();
        let share_img = share::make_share_disk(
            &cfg.share_dir,
            &run_dir,
            &share::command_script(argv, &nonce),
        )?;

        let mut cmd = qemu::command(cfg, &share_img);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
        // which is async-signal-safe; it asks the kernel to kill QEMU if this process dies, so
        // QEMU never outlives the runner.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| TestHostError::Spawn(cfg.qemu.display().to_string(), e))?;
        let console = spawn_reader(child.stdout.take().expect("stdout is piped"));
        let mut qemu_stderr = child.stderr.take().expect("stderr is piped");
        let stderr_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = qemu_stderr.read_to_string(&mut s);
            s
        });
        guard.child = Some(child);

        let exit_marker = share::exit_marker(&nonce).into_bytes();
        let heartbeat = share::heartbeat_marker(&nonce).into_bytes();
        let mut alive_at = Instant::now();
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut booted_at: Option<Instant> = None;
        let mut output = Vec::new();
        let mut code = None;
        loop {
            let deadline = match booted_at {
                None => started + cfg.boot_timeout,
                Some(t) => (t + cfg.timeout).min(alive_at + FROZEN_AFTER),
            };
            let wait = deadline.saturating_duration_since(Instant::now());
            match console.recv_timeout(wait) {
                Ok(ConsoleEvent::Line(line))
                    if booted_at.is_some() && find(&line, &heartbeat).is_some() =>
                {
                    alive_at = Instant::now();
                    // A heartbeat that landed after a partial line: keep the command's part.
                    let rest = strip(&line, &heartbeat);
                    if !rest.is_empty() {
                        emit(out, &mut output, &rest, true)?;
                    }
                }
                Ok(ConsoleEvent::Line(line)) => {
                    if booted_at.is_none() {
                        if cfg.verbose {
                            eprintln!("[L2] {}", String::from_utf8_lossy(&line));
                        }
                        if line.starts_with(BOOTED_MARKER) {
                            booted_at = Some(Instant::now());
                        } else {
                            if tail.len() == CONSOLE_TAIL_LINES {
                                tail.pop_front();
                            }
                            tail.push_back(String::from_utf8_lossy(&line).into_owned());
                        }
                        continue;
                    }
                    // The marker may follow output that did not end in a newline.
                    if let Some(pos) = find(&line, &exit_marker) {
                        let status = &line[pos + exit_marker.len()..];
                        code = std::str::from_utf8(status)
                            .ok()
                            .and_then(|s| s.trim().parse().ok());
                        emit(out, &mut output, &line[..pos], false)?;
                        break;
                    }
                    emit(out, &mut output, &line, true)?;
                }
                Ok(ConsoleEvent::Eof) => break,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(match booted_at {
                        None => TestHostError::BootTimeout(cfg.boot_timeout, join_tail(&tail)),
                        Some(_) if alive_at.elapsed() >= FROZEN_AFTER => {
                            TestHostError::Frozen(FROZEN_AFTER, output_tail(&output))
                        }
                        Some(_) => TestHostError::CommandTimeout(cfg.timeout, output_tail(&output)),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let boot_time = booted_at.map(|t| t - started).unwrap_or_default();
        // The L2 powers itself off after the marker; give it a moment, the guard kills it otherwise.
        if let Some(child) = guard.child.as_mut() {
            let stop_by = Instant::now() + Duration::from_secs(20);
            while Instant::now() < stop_by {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let qemu_said = stderr_reader.join().unwrap_or_default();
        match code {
            Some(code) => Ok(Outcome {
                code,
                output,
                boot_time,
                attempts: 1,
            }),
            None => Err(TestHostError::NoExitStatus {
                qemu: qemu_said.trim().to_string(),
                console: join_tail(&tail),
            }),
        }
    }
}

fn emit(
    out: &mut dyn Write,
    acc: &mut Vec<u8>,
    data: &[u8],
    newline: bool,
) -> Result<(), TestHostError> {
    acc.extend_from_slice(data);
    out.write_all(data).map_err(TestHostError::Output)?;
    if newline {
        acc.push(b'\n');
        out.write_all(b"\n").map_err(TestHostError::Output)?;
    }
    out.flush().map_err(TestHostError::Output)
}

/// `line` without any occurrence of `marker`.
fn strip(line: &[u8], marker: &[u8]) -> Vec<u8> {
    let mut rest = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i..].starts_with(marker) {
            i += marker.len();
        } else {
            rest.push(line[i]);
            i += 1;
        }
    }
    rest
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The last [`CONSOLE_TAIL_LINES`] lines of what the command printed (where a hang was).
fn output_tail(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(CONSOLE_TAIL_LINES)..].join("\n")
}

fn join_tail(tail: &VecDeque<String>) -> String {
    tail.iter().cloned().collect::<Vec<_>>().join("\n")
}
