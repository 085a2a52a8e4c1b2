//! Pairs arriving stream connections with the ExecProcess calls that expect them.
//!
//! Either side may come first: a stream that arrives before its ExecProcess is parked (for at
//! most [`PARKED_STREAM_TTL`]), an ExecProcess that comes first waits (bounded) for its streams.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sandpod_protocol::StreamKind;
use tokio::sync::oneshot;

use super::HostStream;

/// How long a stream may wait for its ExecProcess before it is closed.
pub const PARKED_STREAM_TTL: Duration = Duration::from_secs(30);

type Key = (String, StreamKind);

enum Slot {
    /// An ExecProcess waits for this stream.
    Wanted(oneshot::Sender<HostStream>),
    /// The stream came first; `u64` tells parked streams apart for their expiry.
    Parked(HostStream, u64),
}

#[derive(Default)]
struct Inner {
    slots: HashMap<Key, Slot>,
    next_id: u64,
}

/// See the module docs. Cheap to clone.
#[derive(Clone, Default)]
pub struct StreamBroker {
    inner: Arc<Mutex<Inner>>,
}

/// ExecProcess gave up on streams that did not attach in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingStreams(pub Vec<StreamKind>);

impl StreamBroker {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands an arrived stream to its waiting ExecProcess, or parks it. A second stream for the
    /// same exec id and kind is refused (dropped: the host sees its connection closed).
    pub fn offer(&self, exec_id: &str, kind: StreamKind, stream: HostStream) {
        let key = (exec_id.to_string(), kind);
        let mut inner = self.lock();
        let stream = match inner.slots.remove(&key) {
            Some(Slot::Wanted(tx)) => match tx.send(stream) {
                Ok(()) => return,
                // The ExecProcess gave up meanwhile: park the stream for a retry.
                Err(stream) => stream,
            },
            Some(parked @ Slot::Parked(..)) => {
                inner.slots.insert(key, parked);
                tracing::warn!("refusing a second {kind} stream for exec {exec_id}");
                return;
            }
            None => stream,
        };
        let id = inner.next_id;
        inner.next_id += 1;
        inner.slots.insert(key.clone(), Slot::Parked(stream, id));
        drop(inner);
        let broker = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PARKED_STREAM_TTL).await;
            let mut inner = broker.lock();
            if matches!(inner.slots.get(&key), Some(Slot::Parked(_, i)) if *i == id) {
                inner.slots.remove(&key);
                tracing::warn!(
                    "closing the {} stream of exec {}: no ExecProcess took it",
                    key.1,
                    key.0
                );
            }
        });
    }

    /// Takes the streams `kinds` of `exec_id`, waiting at most `timeout` for those not there yet.
    /// Returned in the order of `kinds`.
    pub async fn take(
        &self,
        exec_id: &str,
        kinds: &[StreamKind],
        timeout: Duration,
    ) -> Result<Vec<HostStream>, MissingStreams> {
        let mut pending = Vec::with_capacity(kinds.len());
        {
            let mut inner = self.lock();
            for &kind in kinds {
                let key = (exec_id.to_string(), kind);
                match inner.slots.remove(&key) {
                    Some(Slot::Parked(stream, _)) => {
                        let (tx, rx) = oneshot::channel();
                        let _ = tx.send(stream);
                        pending.push((kind, rx));
                    }
                    // None, or a waiter left behind by an abandoned call: wait anew.
                    _ => {
                        let (tx, rx) = oneshot::channel();
                        inner.slots.insert(key, Slot::Wanted(tx));
                        pending.push((kind, rx));
                    }
                }
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut streams = Vec::with_capacity(kinds.len());
        let mut missing = Vec::new();
        for (kind, rx) in pending {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(stream)) => streams.push(stream),
                _ => missing.push(kind),
            }
        }
        if missing.is_empty() {
            return Ok(streams);
        }
        let mut inner = self.lock();
        for &kind in &missing {
            let key = (exec_id.to_string(), kind);
            if matches!(inner.slots.get(&key), Some(Slot::Wanted(_))) {
                inner.slots.remove(&key);
            }
        }
        Err(MissingStreams(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pair() -> (HostStream, tokio::io::DuplexStream) {
        let (a, b) = tokio::io::duplex(64);
        (Box::new(a), b)
    }

    #[tokio::test]
    async fn stream_first_then_take() {
        let broker = StreamBroker::new();
        let (s, mut peer) = pair();
        broker.offer("e", StreamKind::Stdout, s);
        let mut got = broker
            .take("e", &[StreamKind::Stdout], Duration::from_millis(10))
            .await
            .unwrap();
        got[0].write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
    }

    #[tokio::test]
    async fn take_first_then_stream() {
        let broker = StreamBroker::new();
        let b2 = broker.clone();
        let waiter = tokio::spawn(async move {
            b2.take(
                "e",
                &[StreamKind::Stdin, StreamKind::Stderr],
                Duration::from_secs(5),
            )
            .await
            .map(|v| v.len())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        broker.offer("e", StreamKind::Stderr, pair().0);
        broker.offer("e", StreamKind::Stdin, pair().0);
        assert_eq!(waiter.await.unwrap(), Ok(2));
    }

    #[tokio::test]
    async fn missing_streams_time_out_and_are_named() {
        let broker = StreamBroker::new();
        broker.offer("e", StreamKind::Stdin, pair().0);
        let err = broker
            .take(
                "e",
                &[StreamKind::Stdin, StreamKind::Stdout],
                Duration::from_millis(20),
            )
            .await
            .err()
            .unwrap();
        assert_eq!(err, MissingStreams(vec![StreamKind::Stdout]));
        // The abandoned wait does not swallow a late stream: it is parked for a retry.
        broker.offer("e", StreamKind::Stdout, pair().0);
        assert!(broker
            .take("e", &[StreamKind::Stdout], Duration::from_millis(10))
            .await
            .is_ok());
    }
}
