//! Conventions every Sandpod binary follows (the VMM, the runtime's binaries, the agent), kept
//! here because this is the one crate they all reach (the VMM does not depend on
//! `sandpod-protocol`, which re-exports these).
//!
//! - **The log filter** is read from [`LOG_ENV`] (`SANDPOD_LOG`, tracing's EnvFilter syntax),
//!   else from [`FALLBACK_LOG_ENV`] (`RUST_LOG`): [`log_filter_from_env`].
//! - **Errors** say what failed without repeating their cause: a cause is the error's
//!   `source()` (thiserror's `#[source]`/`#[from]`/a `source` field) and is printed once, by
//!   whoever prints the error, walking the chain ([`ErrorChain`], or anyhow's `{:#}`).
use std::error::Error;
use std::fmt;

/// The variable that sets the log filter (tracing's EnvFilter syntax, e.g. `debug` or
/// `sandpod_vmm=debug,warn`) in every Sandpod binary.
pub const LOG_ENV: &str = "SANDPOD_LOG";
/// Read when [`LOG_ENV`] is not set.
pub const FALLBACK_LOG_ENV: &str = "RUST_LOG";

/// The log filter the environment asks for: [`LOG_ENV`] if set, else [`FALLBACK_LOG_ENV`].
pub fn log_filter_from_env() -> Option<String> {
    log_filter_from(|name| std::env::var(name).ok())
}

fn log_filter_from(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    var(LOG_ENV).or_else(|| var(FALLBACK_LOG_ENV))
}

/// Displays an error and its causes, `outer: cause: root cause` (as anyhow's `{:#}`), skipping
/// a cause whose text is already there (some third-party errors also print their source).
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let c_text = c.to_string();
            if !text.contains(&c_text) {
                text = format!("{text}: {c_text}");
            }
            cause = c.source();
        }
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading x")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chains() {
        let e = Outer(std::io::Error::other("boom"));
        assert_eq!(ErrorChain(&e).to_string(), "reading x: boom");
        let io = std::io::Error::other("alone");
        assert_eq!(ErrorChain(&io).to_string(), "alone");
        // A cause the message already shows is not repeated.
        #[derive(Debug)]
        struct Repeats(std::io::Error);
        impl fmt::Display for Repeats {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "reading y: {}", self.0)
            }
        }
        impl Error for Repeats {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Repeats(std::io::Error::other("boom"));
        assert_eq!(ErrorChain(&e).to_string(), "reading y: boom");
    }

    #[test]
    fn log_filter_precedence() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(log_filter_from(env(&[])), None);
        assert_eq!(
            log_filter_from(env(&[("RUST_LOG", "info")])),
            Some("info".into())
        );
        assert_eq!(
            log_filter_from(env(&[("RUST_LOG", "info"), ("SANDPOD_LOG", "debug")])),
            Some("debug".into())
        );
    }
}
