use std::pin::Pin;
use std::task::{Context, Poll};

use super::*;

/// A host stream that records the size of every write.
#[derive(Default)]
struct Writes {
    sizes: Vec<usize>,
    data: Vec<u8>,
}

impl AsyncWrite for Writes {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.sizes.push(buf.len());
        self.data.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Output that comes in 4 KiB pieces, each one readable only after the previous was taken
/// (a writer that runs whenever the reader yields).
struct Pieces {
    data: Vec<u8>,
    at: usize,
}

impl Pieces {
    fn piece(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(4096).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        n
    }
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.piece(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl OutputSource for Pieces {
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(Some(self.piece(buf)))
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn small_pieces_go_out_in_full_writes() {
    let data = pattern(300 * 1024 + 5);
    let mut from = Pieces {
        data: data.clone(),
        at: 0,
    };
    let mut to = Writes::default();
    copy_output(&mut from, &mut to).await.unwrap();
    assert!(to.data == data);
    // Full writes, then the rest (the EOF ends the copy without another write).
    let rest = data.len() - 4 * OUTPUT_CHUNK;
    assert_eq!(
        to.sizes,
        [OUTPUT_CHUNK, OUTPUT_CHUNK, OUTPUT_CHUNK, OUTPUT_CHUNK, rest]
    );
}

#[tokio::test]
async fn a_pipe_delivers_every_byte_in_order() {
    let (tx, rx) = pipe::pipe().unwrap();
    let data = pattern(1 << 20);
    let want = data.clone();
    let writer = tokio::spawn(async move {
        let mut tx = tx;
        for piece in data.chunks(4096) {
            tx.write_all(piece).await.unwrap();
        }
    });
    let mut to = Writes::default();
    let mut from = rx;
    copy_output(&mut from, &mut to).await.unwrap();
    writer.await.unwrap();
    assert!(to.data == want);
    assert!(to.sizes.iter().all(|&n| n <= OUTPUT_CHUNK));
}
