//! Reading the L2's serial console: a thread turns QEMU's stdout into lines (CR stripped) and
//! sends them over a channel, so the runner can wait with timeouts.
use std::io::Read;
use std::sync::mpsc::{channel, Receiver};
use std::thread;

/// What the console reader reports.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// One line, without its line ending.
    Line(Vec<u8>),
    /// The stream ended (QEMU exited or closed its stdout).
    Eof,
}

/// Splits a byte stream into lines; a trailing partial line is kept until more data arrives.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; returns the complete lines found.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for &b in data {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.pending);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                lines.push(line);
            } else {
                self.pending.push(b);
            }
        }
        lines
    }

    /// The partial line left at the end of the stream, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Starts a thread that reads `source` to its end and reports lines, then `Eof`.
pub fn spawn_reader<R: Read + Send + 'static>(mut source: R) -> Receiver<ConsoleEvent> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        let mut splitter = LineSplitter::default();
        let mut buf = [0u8; 8192];
        loop {
            match source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for line in splitter.push(&buf[..n]) {
                        if tx.send(ConsoleEvent::Line(line)).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if let Some(rest) = splitter.finish() {
            let _ = tx.send(ConsoleEvent::Line(rest));
        }
        let _ = tx.send(ConsoleEvent::Eof);
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks_and_strips_cr() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"hel").is_empty());
        assert_eq!(s.push(b"lo\r\nwor"), vec![b"hello".to_vec()]);
        assert_eq!(s.push(b"ld\n\n"), vec![b"world".to_vec(), Vec::new()]);
        assert_eq!(s.finish(), None);
        s.push(b"tail");
        assert_eq!(s.finish(), Some(b"tail".to_vec()));
    }

    #[test]
    fn reader_reports_lines_then_eof() {
        let rx = spawn_reader(&b"a\r\nb\nc"[..]);
        let got: Vec<ConsoleEvent> = rx.iter().collect();
        assert_eq!(
            got,
            vec![
                ConsoleEvent::Line(b"a".to_vec()),
                ConsoleEvent::Line(b"b".to_vec()),
                ConsoleEvent::Line(b"c".to_vec()),
                ConsoleEvent::Eof
            ]
        );
    }
}
