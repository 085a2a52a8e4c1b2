//! The header that opens every stdio stream connection.
//!
//! The host connects to the agent's [`STDIO_PORT`](crate::STDIO_PORT) and writes one line,
//! `<exec_id> <kind> <token>\n` (kind: `stdin`, `stdout`, `stderr` or `tty`; token: the
//! [`StreamToken`] the host chose for the process in its ExecProcess/CreateContainer request),
//! then raw bytes flow: host to guest for `stdin`, guest to host for `stdout` and `stderr`, both
//! ways for `tty`. The agent sends no reply; it closes a connection whose header it rejects or
//! whose token is not the process's: an exec id is no secret, the token is.
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::token::{StreamToken, TokenError};

/// Longest accepted header line, newline included.
pub const MAX_HEADER_LEN: usize = 256;
/// Longest accepted exec id.
pub const MAX_EXEC_ID_LEN: usize = 128;

/// Which stdio stream of a process a connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Stdin,
    Stdout,
    Stderr,
    /// The terminal of a terminal-mode process: input and output on one connection.
    Tty,
}

impl StreamKind {
    pub const ALL: [StreamKind; 4] = [Self::Stdin, Self::Stdout, Self::Stderr, Self::Tty];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdin => "stdin",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Tty => "tty",
        }
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StreamKind {
    type Err = StreamHeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| StreamHeaderError::BadKind(s.to_string()))
    }
}

/// Which stdio streams the host attaches to a process: the `stdin`, `stdout` and `stderr` flags
/// of ExecProcess and CreateContainer.
///
/// **A terminal is one stream.** A terminal-mode process has one `tty` connection, which carries
/// its input and its output (stdout and stderr both write to the terminal): there is no separate
/// stderr stream. [`StreamSet::for_stdio`] is what the host asks for, [`StreamSet::kinds`] the
/// connections that follow from a request, on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamSet {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl StreamSet {
    /// All three.
    pub const ALL: StreamSet = StreamSet {
        stdin: true,
        stdout: true,
        stderr: true,
    };

    /// The streams of a process with all its stdio relayed: all three, or with a terminal its
    /// input and output (the terminal; no stderr).
    pub fn for_stdio(terminal: bool) -> StreamSet {
        StreamSet {
            stderr: !terminal,
            ..StreamSet::ALL
        }
    }

    /// The stream connections a process with these flags gets, in the order the host opens
    /// them: with a terminal one [`StreamKind::Tty`] if stdin or stdout is wanted (the stderr
    /// flag does not count: a terminal is one stream), else one per flag.
    pub fn kinds(self, terminal: bool) -> Vec<StreamKind> {
        if terminal {
            return if self.stdin || self.stdout {
                vec![StreamKind::Tty]
            } else {
                vec![]
            };
        }
        [
            (self.stdin, StreamKind::Stdin),
            (self.stdout, StreamKind::Stdout),
            (self.stderr, StreamKind::Stderr),
        ]
        .into_iter()
        .filter_map(|(wanted, kind)| wanted.then_some(kind))
        .collect()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StreamHeaderError {
    #[error("stream header is not one line of at most {MAX_HEADER_LEN} bytes")]
    TooLong,
    #[error("stream header is not UTF-8")]
    NotUtf8,
    #[error("stream header: expected `<exec_id> <stdin|stdout|stderr|tty> <token>`")]
    Malformed,
    #[error("stream kind {0:?}: expected stdin, stdout, stderr or tty")]
    BadKind(String),
    #[error("exec id {0:?}: expected 1 to {MAX_EXEC_ID_LEN} characters out of [A-Za-z0-9._-]")]
    BadExecId(String),
    /// The token's own message says what is wrong (no cause of its own).
    #[error(transparent)]
    BadToken(#[from] TokenError),
}

/// Checks an exec id: 1 to [`MAX_EXEC_ID_LEN`] characters out of `[A-Za-z0-9._-]`.
pub fn validate_exec_id(id: &str) -> Result<(), StreamHeaderError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_EXEC_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StreamHeaderError::BadExecId(id.to_string()))
    }
}

/// A parsed stream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    pub exec_id: String,
    pub kind: StreamKind,
    /// The process's stream token (compared by the agent, in constant time).
    pub token: StreamToken,
}

impl StreamHeader {
    pub fn new(
        exec_id: impl Into<String>,
        kind: StreamKind,
        token: StreamToken,
    ) -> Result<Self, StreamHeaderError> {
        let exec_id = exec_id.into();
        validate_exec_id(&exec_id)?;
        Ok(StreamHeader {
            exec_id,
            kind,
            token,
        })
    }

    /// The header line as sent on the wire, newline included.
    pub fn to_line(&self) -> String {
        format!("{} {} {}\n", self.exec_id, self.kind, self.token)
    }

    /// Parses a header line (with or without its trailing `\n`).
    pub fn parse(line: &[u8]) -> Result<Self, StreamHeaderError> {
        if line.len() > MAX_HEADER_LEN {
            return Err(StreamHeaderError::TooLong);
        }
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.contains(&b'\n') {
            return Err(StreamHeaderError::TooLong);
        }
        let text = std::str::from_utf8(line).map_err(|_| StreamHeaderError::NotUtf8)?;
        // Not echoed in the error: the line may hold a token.
        let mut words = text.split(' ');
        let (Some(id), Some(kind), Some(token), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(StreamHeaderError::Malformed);
        };
        StreamHeader::new(id, kind.parse()?, StreamToken::parse(token)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TOKEN_HEX_LEN;

    const T: &str = "00112233445566778899aabbccddeeff";

    fn token() -> StreamToken {
        StreamToken::parse(T).unwrap()
    }

    #[test]
    fn a_terminal_is_one_stream() {
        use StreamKind::*;
        assert_eq!(StreamSet::for_stdio(false), StreamSet::ALL);
        assert_eq!(StreamSet::ALL.kinds(false), vec![Stdin, Stdout, Stderr]);
        let tty = StreamSet::for_stdio(true);
        assert!(tty.stdin && tty.stdout && !tty.stderr);
        assert_eq!(tty.kinds(true), vec![Tty]);
        // With a terminal the stderr flag adds nothing; without stdin and stdout, no stream.
        assert_eq!(StreamSet::ALL.kinds(true), vec![Tty]);
        let only_err = StreamSet {
            stderr: true,
            ..StreamSet::default()
        };
        assert_eq!(only_err.kinds(true), vec![]);
        assert_eq!(only_err.kinds(false), vec![Stderr]);
        let out = StreamSet {
            stdout: true,
            ..StreamSet::default()
        };
        assert_eq!(out.kinds(true), vec![Tty]);
        assert_eq!(out.kinds(false), vec![Stdout]);
    }

    fn line(rest: &str) -> Vec<u8> {
        rest.replace("TOK", T).into_bytes()
    }

    #[test]
    fn round_trips_every_kind() {
        for kind in StreamKind::ALL {
            let h = StreamHeader::new("exec-1.a_b", kind, token()).unwrap();
            assert_eq!(StreamHeader::parse(h.to_line().as_bytes()).unwrap(), h);
        }
        assert_eq!(
            StreamHeader::new("e1", StreamKind::Tty, token())
                .unwrap()
                .to_line(),
            format!("e1 tty {T}\n")
        );
    }

    #[test]
    fn parses_without_newline() {
        let h = StreamHeader::parse(&line("abc stdout TOK")).unwrap();
        assert_eq!(h.exec_id, "abc");
        assert_eq!(h.kind, StreamKind::Stdout);
        assert_eq!(h.token, token());
    }

    #[test]
    fn rejects_bad_kind() {
        assert_eq!(
            StreamHeader::parse(&line("abc stdio TOK\n")),
            Err(StreamHeaderError::BadKind("stdio".into()))
        );
        assert_eq!(
            StreamHeader::parse(&line("abc STDIN TOK\n")),
            Err(StreamHeaderError::BadKind("STDIN".into()))
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "\n",
            "abc\n",
            "abc stdin\n",
            "abc stdin TOK extra\n",
            "abc  stdin TOK\n",
            "abc stdin  TOK\n",
            "abc stdin TOK \n",
            "abc\tstdin TOK\n",
        ] {
            assert_eq!(
                StreamHeader::parse(&line(bad)),
                Err(StreamHeaderError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_tokens() {
        for bad in [
            "abc stdin 00112233445566778899aabbccddeef\n", // 31 digits
            "abc stdin 00112233445566778899aabbccddeeff0\n", // 33 digits
            "abc stdin 00112233445566778899AABBCCDDEEFF\n", // upper case
            "abc stdin 0011223344556677-899aabbccddeeff\n",
            "abc stdin x\n",
            "abc stdin \n",
        ] {
            assert!(
                matches!(
                    StreamHeader::parse(bad.as_bytes()),
                    Err(StreamHeaderError::BadToken(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn errors_do_not_echo_the_line() {
        let e = StreamHeader::parse(&line("abc stdin TOK extra\n")).unwrap_err();
        assert!(!e.to_string().contains(T), "{e}");
    }

    #[test]
    fn rejects_bad_exec_ids() {
        assert!(matches!(
            StreamHeader::parse(&line(" stdin TOK\n")),
            Err(StreamHeaderError::BadExecId(_))
        ));
        assert!(matches!(
            StreamHeader::parse(&line("a/b stdin TOK\n")),
            Err(StreamHeaderError::BadExecId(_))
        ));
        let long = format!("{} stdin {T}\n", "x".repeat(MAX_EXEC_ID_LEN + 1));
        assert!(matches!(
            StreamHeader::parse(long.as_bytes()),
            Err(StreamHeaderError::BadExecId(_))
        ));
        // The longest valid header fits the line limit.
        let max = format!("{} stdout {T}\n", "x".repeat(MAX_EXEC_ID_LEN));
        assert!(max.len() <= MAX_HEADER_LEN);
        assert!(StreamHeader::parse(max.as_bytes()).is_ok());
        assert_eq!(
            max.len(),
            MAX_EXEC_ID_LEN + " stdout ".len() + TOKEN_HEX_LEN + 1
        );
    }

    #[test]
    fn rejects_non_utf8_and_overlong() {
        assert_eq!(
            StreamHeader::parse(&line("\u{fffd} stdin TOK\n")[..]).map(|_| ()),
            Err(StreamHeaderError::BadExecId("\u{fffd}".into()))
        );
        assert_eq!(
            StreamHeader::parse(b"\xff\xfe stdin 00112233445566778899aabbccddeeff\n"),
            Err(StreamHeaderError::NotUtf8)
        );
        let huge = vec![b'a'; MAX_HEADER_LEN + 1];
        assert_eq!(StreamHeader::parse(&huge), Err(StreamHeaderError::TooLong));
        assert_eq!(
            StreamHeader::parse(&line("a stdin TOK\nb stdout TOK\n")),
            Err(StreamHeaderError::TooLong)
        );
    }
}
