//! Secrets the host shares with the agent over the (host-only) API connection, so that a
//! connection on another port can prove it comes from the host (stdio streams) or from the
//! agent (its log connection): 128 random bits, written as 32 lowercase hex digits.
//!
//! A [`Token`] compares in constant time (`==`), prints as its hex digits (`Display`: the host
//! passes a stream token on to the process that opens the streams) and never in `Debug` output.
use std::fmt;
use std::io;
use std::str::FromStr;

use thiserror::Error;

/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 16;
/// Length of a token's text: two lowercase hex digits per byte.
pub const TOKEN_HEX_LEN: usize = 2 * TOKEN_BYTES;

/// The per-process secret of ExecProcess/CreateContainer, presented in each stream header.
pub type StreamToken = Token;
/// The secret of CreateSandbox that the agent presents on its log connections.
pub type LogToken = Token;

/// A 128-bit secret; see the module docs.
#[derive(Clone)]
pub struct Token {
    hex: [u8; TOKEN_HEX_LEN],
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token: expected {TOKEN_HEX_LEN} lowercase hex digits (got {0} bytes)")]
    Malformed(usize),
}

/// Compares two byte strings in time that depends on their length only (the length of a token
/// is public), so that the time a comparison takes tells nothing about where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

impl Token {
    /// A fresh token from the kernel's CSPRNG (getrandom(2), which blocks until it is seeded).
    pub fn generate() -> io::Result<Token> {
        let mut bytes = [0u8; TOKEN_BYTES];
        let mut filled = 0;
        while filled < bytes.len() {
            let rest = &mut bytes[filled..];
            // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`, a live, writable
            // buffer of that length, and touches no other memory.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            match usize::try_from(n) {
                Ok(n) => filled += n,
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(Token::from_bytes(bytes))
    }

    /// The token of these bytes (tests, or bytes drawn elsewhere).
    pub fn from_bytes(bytes: [u8; TOKEN_BYTES]) -> Token {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; TOKEN_HEX_LEN];
        for (i, b) in bytes.iter().enumerate() {
            hex[2 * i] = DIGITS[usize::from(b >> 4)];
            hex[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        Token { hex }
    }

    /// Parses the text form: exactly [`TOKEN_HEX_LEN`] lowercase hex digits, nothing else.
    pub fn parse(text: &str) -> Result<Token, TokenError> {
        let bytes = text.as_bytes();
        let ok = bytes.len() == TOKEN_HEX_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        if !ok {
            return Err(TokenError::Malformed(bytes.len()));
        }
        let mut hex = [0u8; TOKEN_HEX_LEN];
        hex.copy_from_slice(bytes);
        Ok(Token { hex })
    }

    /// The text form (what the peer must present).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.hex).expect("hex digits are ASCII")
    }

    /// Whether `presented` is this token's text (constant time).
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(&self.hex, presented.as_bytes())
    }
}

/// What starts the first line of an authenticated log connection: `log-token <token>\n`.
pub const LOG_TOKEN_PREFIX: &str = "log-token ";

impl Token {
    /// The first line the agent sends on a log connection once it has the log token.
    pub fn log_line(&self) -> String {
        format!("{LOG_TOKEN_PREFIX}{self}\n")
    }

    /// Whether `line` (without its newline) is this token's [`Token::log_line`] (constant time
    /// in the token part).
    pub fn matches_log_line(&self, line: &str) -> bool {
        line.strip_prefix(LOG_TOKEN_PREFIX)
            .is_some_and(|t| self.matches(t))
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        constant_time_eq(&self.hex, &other.hex)
    }
}

impl Eq for Token {}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Token {
    /// Never the secret: `Debug` output ends up in logs and error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl FromStr for Token {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Token, TokenError> {
        Token::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_hex_and_differ() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_eq!(a.as_str().len(), TOKEN_HEX_LEN);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(Token::parse(a.as_str()).unwrap(), a);
        // Two draws of 128 bits are equal with probability 2^-128: a failure here means the
        // generator does not draw.
        assert_ne!(a, b);
        assert_ne!(a.as_str(), "0".repeat(TOKEN_HEX_LEN));
    }

    #[test]
    fn text_form_of_bytes() {
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[0] = 0xa5;
        bytes[15] = 0x0f;
        let t = Token::from_bytes(bytes);
        assert_eq!(t.as_str(), "a500000000000000000000000000000f");
        assert_eq!(t.to_string(), t.as_str());
        assert!(t.matches("a500000000000000000000000000000f"));
        assert!(!t.matches("a500000000000000000000000000000e"));
        assert!(!t.matches("a500000000000000000000000000000"));
        assert!(!t.matches(""));
    }

    #[test]
    fn parse_is_strict() {
        let good = "0123456789abcdef0123456789abcdef";
        assert!(Token::parse(good).is_ok());
        for bad in [
            "",
            "0123456789abcdef0123456789abcde",   // 31
            "0123456789abcdef0123456789abcdef0", // 33
            "0123456789ABCDEF0123456789abcdef",  // upper case
            "0123456789abcdef0123456789abcdeg",  // not hex
            " 123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcde\n",
            "ä123456789abcdef0123456789abcde", // 32 bytes, not ASCII
        ] {
            assert!(Token::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn log_lines() {
        let t = Token::parse("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(t.log_line(), "log-token 0123456789abcdef0123456789abcdef\n");
        assert!(t.matches_log_line(t.log_line().trim_end()));
        for bad in [
            "log-token 0123456789abcdef0123456789abcdee",
            "log-token  0123456789abcdef0123456789abcdef",
            "log-token 0123456789abcdef0123456789abcdef ",
            "0123456789abcdef0123456789abcdef",
            "{\"level\":\"info\",\"msg\":\"log-token 0123456789abcdef0123456789abcdef\"}",
            "",
        ] {
            assert!(!t.matches_log_line(bad), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = Token::parse("0123456789abcdef0123456789abcdef").unwrap();
        let shown = format!("{t:?} {:?}", Some(&t));
        assert!(!shown.contains("0123456789"), "{shown}");
    }

    #[test]
    fn constant_time_eq_compares_everything() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
