//! The DNS relay's framing on [`crate::DNS_PORT`]: each DNS message (a query from the guest, the
//! reply from the host) is sent as a 16-bit big-endian length followed by that many bytes, as
//! DNS over TCP frames them (RFC 1035 4.2.2). Both sides refuse a frame shorter than a DNS
//! header or longer than [`MAX_MESSAGE`] (the connection is closed).

/// The longest DNS message relayed (a larger query datagram is dropped, a larger frame closes
/// the connection). 4096 bytes is the EDNS buffer size resolvers commonly advertise.
pub const MAX_MESSAGE: usize = 4096;
/// A DNS header's length: the shortest message relayed.
pub const HEADER_LEN: usize = 12;

/// Whether a message (or a frame announcing it) of `len` bytes may be relayed.
pub fn valid_len(len: usize) -> bool {
    (HEADER_LEN..=MAX_MESSAGE).contains(&len)
}

/// A message's DNS id (its first two bytes), if it has them.
pub fn message_id(msg: &[u8]) -> Option<[u8; 2]> {
    Some([*msg.first()?, *msg.get(1)?])
}

/// `msg` framed: its length (big-endian u16) and its bytes. None if its length is not
/// [`valid_len`].
pub fn frame(msg: &[u8]) -> Option<Vec<u8>> {
    if !valid_len(msg.len()) {
        return None;
    }
    let len = u16::try_from(msg.len()).ok()?;
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_between_a_header_and_the_maximum_are_valid() {
        assert!(!valid_len(0));
        assert!(!valid_len(HEADER_LEN - 1));
        assert!(valid_len(HEADER_LEN));
        assert!(valid_len(MAX_MESSAGE));
        assert!(!valid_len(MAX_MESSAGE + 1));
    }

    #[test]
    fn frames_carry_the_length_big_endian() {
        let msg: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
        let f = frame(&msg).unwrap();
        assert_eq!(&f[..2], &[1, 44]);
        assert_eq!(&f[2..], &msg[..]);
        assert_eq!(frame(&[0; 11]), None);
        assert_eq!(frame(&vec![0; MAX_MESSAGE + 1]), None);
        assert_eq!(message_id(&msg), Some([0, 1]));
        assert_eq!(message_id(&[7]), None);
    }
}
