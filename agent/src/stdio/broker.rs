//! Pairs arriving stream connections with the ExecProcess calls that expect them.
//!
//! Either side may come first: a stream that arrives before its ExecProcess is parked (for at
//! most [`PARKED_STREAM_TTL`]), an ExecProcess that comes first waits (bounded) for its streams.
//! A stream is handed over only if the token of its header is the process's stream token
//! (compared in constant time): the exec id is no secret, so without the token anyone who can
//! reach the stdio port could take another process's stdin or output. A stream with a wrong
//! token is closed and logged; it cannot push out the right one (up to
//! [`MAX_PARKED_PER_STREAM`] candidates wait per exec id and kind).
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sandpod_protocol::{StreamKind, StreamToken};
use tokio::sync::oneshot;

use super::HostStream;

/// How long a stream may wait for its ExecProcess before it is closed.
pub const PARKED_STREAM_TTL: Duration = Duration::from_secs(30);
/// Streams parked at most for one exec id and kind; more are refused.
pub const MAX_PARKED_PER_STREAM: usize = 4;

type Key = (String, StreamKind);

/// A stream that came before its ExecProcess; `id` tells parked streams apart for their expiry.
struct Parked {
    stream: HostStream,
    token: StreamToken,
    id: u64,
}

enum Slot {
    /// An ExecProcess waits for this stream, with this token.
    Wanted(oneshot::Sender<HostStream>, StreamToken),
    /// Streams came first (at most MAX_PARKED_PER_STREAM).
    Parked(Vec<Parked>),
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

fn refuse_wrong_token(exec_id: &str, kind: StreamKind) {
    tracing::warn!("refused a {kind} stream for exec {exec_id}: wrong stream token");
}

impl StreamBroker {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands an arrived stream to its waiting ExecProcess if `token` is the one it expects
    /// (closes it otherwise), or parks it.
    pub fn offer(&self, exec_id: &str, kind: StreamKind, token: StreamToken, stream: HostStream) {
        let key = (exec_id.to_string(), kind);
        let mut inner = self.lock();
        let parked = match inner.slots.remove(&key) {
            Some(Slot::Wanted(tx, expected)) => {
                if expected != token {
                    inner.slots.insert(key, Slot::Wanted(tx, expected));
                    drop(inner);
                    refuse_wrong_token(exec_id, kind);
                    return;
                }
                match tx.send(stream) {
                    Ok(()) => return,
                    // The ExecProcess gave up meanwhile: park the stream for a retry.
                    Err(stream) => {
                        self.park(inner, key, Vec::new(), stream, token);
                        return;
                    }
                }
            }
            Some(Slot::Parked(parked)) => parked,
            None => Vec::new(),
        };
        if parked.len() >= MAX_PARKED_PER_STREAM {
            inner.slots.insert(key, Slot::Parked(parked));
            drop(inner);
            tracing::warn!("refused a {kind} stream for exec {exec_id}: too many waiting");
            return;
        }
        self.park(inner, key, parked, stream, token);
    }

    /// Parks `stream` beside `parked` under `key` and arms its expiry.
    fn park(
        &self,
        mut inner: MutexGuard<'_, Inner>,
        key: Key,
        mut parked: Vec<Parked>,
        stream: HostStream,
        token: StreamToken,
    ) {
        let id = inner.next_id;
        inner.next_id += 1;
        parked.push(Parked { stream, token, id });
        inner.slots.insert(key.clone(), Slot::Parked(parked));
        drop(inner);
        let broker = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PARKED_STREAM_TTL).await;
            let mut inner = broker.lock();
            if let Some(Slot::Parked(list)) = inner.slots.get_mut(&key) {
                let before = list.len();
                list.retain(|p| p.id != id);
                let expired = list.len() < before;
                if list.is_empty() {
                    inner.slots.remove(&key);
                }
                if expired {
                    tracing::warn!(
                        "closing the {} stream of exec {}: no ExecProcess took it",
                        key.1,
                        key.0
                    );
                }
            }
        });
    }

    /// Takes the streams `kinds` of `exec_id` that present `token`, waiting at most `timeout`
    /// for those not there yet. Returned in the order of `kinds`. Parked streams of these kinds
    /// with another token are closed.
    pub async fn take(
        &self,
        exec_id: &str,
        kinds: &[StreamKind],
        token: &StreamToken,
        timeout: Duration,
    ) -> Result<Vec<HostStream>, MissingStreams> {
        let mut pending = Vec::with_capacity(kinds.len());
        let mut refused = Vec::new();
        {
            let mut inner = self.lock();
            for &kind in kinds {
                let key = (exec_id.to_string(), kind);
                let mut found = None;
                if let Some(Slot::Parked(list)) = inner.slots.remove(&key) {
                    for p in list {
                        if p.token != *token {
                            refused.push(kind);
                        } else if found.is_none() {
                            found = Some(p.stream);
                        } else {
                            tracing::warn!("refused a second {kind} stream for exec {exec_id}");
                        }
                    }
                }
                let (tx, rx) = oneshot::channel();
                match found {
                    Some(stream) => {
                        let _ = tx.send(stream);
                    }
                    // None, or a waiter left behind by an abandoned call: wait anew.
                    None => {
                        inner.slots.insert(key, Slot::Wanted(tx, token.clone()));
                    }
                }
                pending.push((kind, rx));
            }
        }
        for kind in refused {
            refuse_wrong_token(exec_id, kind);
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
            if matches!(inner.slots.get(&key), Some(Slot::Wanted(..))) {
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

    fn tok(n: u8) -> StreamToken {
        StreamToken::from_bytes([n; 16])
    }

    /// Takes `kinds` of exec `id` with token 1, waiting `ms` at most.
    async fn take(
        broker: &StreamBroker,
        id: &str,
        kinds: &[StreamKind],
        ms: u64,
    ) -> Result<Vec<HostStream>, MissingStreams> {
        broker
            .take(id, kinds, &tok(1), Duration::from_millis(ms))
            .await
    }

    /// Writes `data` into `from` and reads it back out of `to`.
    async fn passes(
        from: &mut (impl AsyncWriteExt + Unpin),
        to: &mut (impl AsyncReadExt + Unpin),
        data: &[u8],
    ) {
        from.write_all(data).await.unwrap();
        let mut buf = vec![0u8; data.len()];
        to.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, data);
    }

    /// Whether the host end sees its stream closed by the agent (EOF), rather than kept.
    async fn closed(peer: &mut tokio::io::DuplexStream) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_millis(200), peer.read(&mut b)).await,
            Ok(Ok(0))
        )
    }

    #[tokio::test]
    async fn stream_first_then_take() {
        let broker = StreamBroker::new();
        let (s, mut peer) = pair();
        broker.offer("e", StreamKind::Stdout, tok(1), s);
        let mut got = take(&broker, "e", &[StreamKind::Stdout], 10).await.unwrap();
        passes(&mut got[0], &mut peer, b"hi").await;
    }

    #[tokio::test]
    async fn take_first_then_stream() {
        let broker = StreamBroker::new();
        let b2 = broker.clone();
        let waiter = tokio::spawn(async move {
            b2.take(
                "e",
                &[StreamKind::Stdin, StreamKind::Stderr],
                &tok(1),
                Duration::from_secs(5),
            )
            .await
            .map(|v| v.len())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        broker.offer("e", StreamKind::Stderr, tok(1), pair().0);
        broker.offer("e", StreamKind::Stdin, tok(1), pair().0);
        assert_eq!(waiter.await.unwrap(), Ok(2));
    }

    #[tokio::test]
    async fn missing_streams_time_out_and_are_named() {
        let broker = StreamBroker::new();
        broker.offer("e", StreamKind::Stdin, tok(1), pair().0);
        let err = take(&broker, "e", &[StreamKind::Stdin, StreamKind::Stdout], 20)
            .await
            .err()
            .unwrap();
        assert_eq!(err, MissingStreams(vec![StreamKind::Stdout]));
        // The abandoned wait does not swallow a late stream: it is parked for a retry.
        broker.offer("e", StreamKind::Stdout, tok(1), pair().0);
        assert!(take(&broker, "e", &[StreamKind::Stdout], 10).await.is_ok());
    }

    #[tokio::test]
    async fn a_waiting_exec_refuses_a_stream_with_the_wrong_token() {
        let broker = StreamBroker::new();
        let b2 = broker.clone();
        let waiter = tokio::spawn(async move {
            b2.take("e", &[StreamKind::Stdout], &tok(1), Duration::from_secs(5))
                .await
                .map(|mut v| v.pop().unwrap())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (thief, mut thief_peer) = pair();
        broker.offer("e", StreamKind::Stdout, tok(2), thief);
        assert!(
            closed(&mut thief_peer).await,
            "the wrong token's stream stays open"
        );
        let (real, mut real_peer) = pair();
        broker.offer("e", StreamKind::Stdout, tok(1), real);
        let mut got = waiter.await.unwrap().unwrap();
        passes(&mut got, &mut real_peer, b"ok").await;
    }

    #[tokio::test]
    async fn a_parked_stream_with_the_wrong_token_is_closed_not_handed_over() {
        let broker = StreamBroker::new();
        let (thief, mut thief_peer) = pair();
        broker.offer("e", StreamKind::Stdin, tok(2), thief);
        let (real, mut real_peer) = pair();
        broker.offer("e", StreamKind::Stdin, tok(1), real);
        let mut got = take(&broker, "e", &[StreamKind::Stdin], 10).await.unwrap();
        assert!(closed(&mut thief_peer).await);
        passes(&mut real_peer, &mut got[0], b"x").await;
        // Only the wrong token parked: nothing is handed over.
        let (thief, mut thief_peer) = pair();
        broker.offer("f", StreamKind::Stdout, tok(2), thief);
        let err = take(&broker, "f", &[StreamKind::Stdout], 20)
            .await
            .err()
            .unwrap();
        assert_eq!(err, MissingStreams(vec![StreamKind::Stdout]));
        assert!(closed(&mut thief_peer).await);
    }

    #[tokio::test]
    async fn parked_candidates_are_bounded() {
        let broker = StreamBroker::new();
        let mut peers = Vec::new();
        for _ in 0..MAX_PARKED_PER_STREAM {
            let (s, p) = pair();
            broker.offer("e", StreamKind::Stdout, tok(2), s);
            peers.push(p);
        }
        let (extra, mut extra_peer) = pair();
        broker.offer("e", StreamKind::Stdout, tok(1), extra);
        assert!(
            closed(&mut extra_peer).await,
            "one more than the bound was parked"
        );
        for p in &mut peers {
            assert!(!closed(p).await, "a parked stream was closed early");
        }
    }
}
