//! Reading a stream connection's header line.
use std::io;

use sandpod_protocol::stream::{StreamHeader, MAX_HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads the header line byte by byte, so that not one byte of the payload after it is consumed,
/// and parses it. At most [`MAX_HEADER_LEN`] bytes are read.
pub async fn read_header<R: AsyncRead + Unpin>(stream: &mut R) -> io::Result<StreamHeader> {
    let mut line = Vec::with_capacity(64);
    loop {
        let b = stream.read_u8().await?;
        line.push(b);
        if b == b'\n' {
            break;
        }
        if line.len() >= MAX_HEADER_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "stream header too long",
            ));
        }
    }
    StreamHeader::parse(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandpod_protocol::StreamKind;

    #[tokio::test]
    async fn reads_header_and_leaves_payload() {
        let mut input: &[u8] = b"e1 stdin 00112233445566778899aabbccddeeff\npayload";
        let h = read_header(&mut input).await.unwrap();
        assert_eq!(h.exec_id, "e1");
        assert_eq!(h.kind, StreamKind::Stdin);
        assert_eq!(h.token.as_str(), "00112233445566778899aabbccddeeff");
        assert_eq!(input, b"payload");
    }

    #[tokio::test]
    async fn rejects_eof_and_garbage() {
        let mut input: &[u8] = b"e1 std";
        let err = read_header(&mut input).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // The header of before tokens: refused.
        let mut input: &[u8] = b"e1 stdin\n";
        let err = read_header(&mut input).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut input: &[u8] = b"e1 nope 00112233445566778899aabbccddeeff\n";
        let err = read_header(&mut input).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let long = vec![b'x'; 1000];
        let err = read_header(&mut &long[..]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
