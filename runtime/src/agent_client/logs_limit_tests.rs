//! The receiver's caps: a rate limit shared by all connections, a bound on connections.
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tracing_subscriber::fmt::MakeWriter;

use super::*;
use crate::agent_client::log_limiter::tests::ManualClock;

/// The host's log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn line(m: &str) -> String {
    format!("{{\"level\":\"info\",\"msg\":\"{m}\",\"target\":\"t\"}}\n")
}

fn limits(burst_lines: u64) -> LogLimits {
    LogLimits {
        lines_per_sec: 100,
        burst_lines,
        max_connections: 8,
        ..LogLimits::default()
    }
}

/// Waits until `kept` lines reached the sink and the limiter counted the rest of `total`.
async fn settle(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<GuestLogLine>,
    limiter: &LogLimiter,
    kept: &mut u64,
    total: u64,
) {
    loop {
        while rx.try_recv().is_ok() {
            *kept += 1;
        }
        if *kept + limiter.dropped() >= total {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_flood_from_several_connections_gets_the_budget_and_is_reported() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sock_1025");
    let clock = ManualClock::new();
    let limiter = Arc::new(LogLimiter::with_clock(limits(10), Arc::new(clock.clone())));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let recv = LogReceiver::bind_limited(
        &path,
        None,
        move |l| {
            let _ = tx.send(l);
        },
        limiter.clone(),
    )
    .unwrap();
    // Five connections, 100 lines each, while no time passes: 10 lines in all get through.
    let mut conns = Vec::new();
    for c in 0..5 {
        let mut s = UnixStream::connect(&path).await.unwrap();
        let text: String = (0..100).map(|i| line(&format!("c{c} l{i}"))).collect();
        s.write_all(text.as_bytes()).await.unwrap();
        conns.push(s);
    }
    let mut kept = 0;
    settle(&mut rx, &limiter, &mut kept, 500).await;
    assert_eq!((kept, limiter.dropped()), (10, 490));
    // The first drop is reported at once, the rest once the interval has passed.
    assert!(
        logs.text()
            .contains("guest log: 1 lines dropped (rate limit)"),
        "{}",
        logs.text()
    );
    assert!(
        !logs.text().contains("489 lines dropped"),
        "{}",
        logs.text()
    );
    clock.advance(limiter.limits().report_interval);
    conns[0].write_all(line("later").as_bytes()).await.unwrap();
    settle(&mut rx, &limiter, &mut kept, 501).await;
    assert_eq!(kept, 11);
    assert!(
        logs.text()
            .contains("guest log: 489 lines dropped (rate limit)"),
        "{}",
        logs.text()
    );
    // Dropping the receiver reports what is left: nothing here, so no third line.
    drop(recv);
    assert_eq!(
        logs.text().matches("lines dropped").count(),
        2,
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn connections_beyond_the_bound_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sock_1025");
    let limiter = Arc::new(LogLimiter::new(LogLimits {
        max_connections: 2,
        ..LogLimits::default()
    }));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _recv = LogReceiver::bind_limited(
        &path,
        None,
        move |l| {
            let _ = tx.send(l);
        },
        limiter,
    )
    .unwrap();
    let mut open = Vec::new();
    for m in ["one", "two"] {
        let mut c = UnixStream::connect(&path).await.unwrap();
        c.write_all(line(m).as_bytes()).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().msg, m);
        open.push(c);
    }
    // A third is closed unread.
    let mut third = UnixStream::connect(&path).await.unwrap();
    let _ = third.write_all(line("three").as_bytes()).await;
    let mut rest = Vec::new();
    let _ = third.read_to_end(&mut rest).await;
    // The first two are still read.
    open[1]
        .write_all(line("two again").as_bytes())
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap().msg, "two again");
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn with_a_token_idle_and_surplus_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sock_1025");
    let token = LogToken::generate().unwrap();
    let limiter = Arc::new(LogLimiter::new(LogLimits {
        max_pending: 1,
        token_deadline: Duration::from_millis(100),
        ..LogLimits::default()
    }));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _recv = LogReceiver::bind_limited(
        &path,
        Some(token.clone()),
        move |l| {
            let _ = tx.send(l);
        },
        limiter,
    )
    .unwrap();
    // An idle connection holds the one pending slot until its deadline, then is closed.
    let mut idle = UnixStream::connect(&path).await.unwrap();
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).await.unwrap();
    // The slot is free again: the agent gets in.
    let mut agent = UnixStream::connect(&path).await.unwrap();
    agent
        .write_all(format!("{}{}", token.log_line(), line("real")).as_bytes())
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap().msg, "real");
}
