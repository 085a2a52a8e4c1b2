//! The agent's settings, read from the kernel command line (`sandpod.<key>=<value>`).
use thiserror::Error;

/// What PID 1 does once the guest is up and the ready line is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfterReady {
    /// Keep running (serve the host). The default.
    #[default]
    Serve,
    /// Power the VM off: used by boot tests and the boot benchmark.
    Poweroff,
    /// Reboot the VM.
    Reboot,
}

/// Agent settings taken from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentConfig {
    pub after_ready: AfterReady,
    /// `sandpod.template=1`: this VM is a template. Once serving, the agent asks the VMM for a
    /// snapshot; every VM restored from it is a clone that must be reseeded with ResumeClone
    /// before it answers anything but Health (see [`crate::clone`]). Needs `after_ready=serve`.
    pub template: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CmdlineError {
    #[error("sandpod.after_ready={0:?}: expected serve, poweroff or reboot")]
    BadAfterReady(String),
    #[error("sandpod.template={0:?}: expected 1 or 0")]
    BadTemplate(String),
    #[error("sandpod.template=1 needs sandpod.after_ready=serve: a template must serve to be snapshotted")]
    TemplateNeedsServe,
}

impl AgentConfig {
    /// Parses the `sandpod.*` parameters of a kernel command line; other words are ignored.
    pub fn from_cmdline(cmdline: &str) -> Result<Self, CmdlineError> {
        let mut cfg = AgentConfig::default();
        for word in cmdline.split_ascii_whitespace() {
            if let Some(v) = word.strip_prefix("sandpod.after_ready=") {
                cfg.after_ready = match v {
                    "serve" => AfterReady::Serve,
                    "poweroff" => AfterReady::Poweroff,
                    "reboot" => AfterReady::Reboot,
                    other => return Err(CmdlineError::BadAfterReady(other.to_string())),
                };
            } else if let Some(v) = word.strip_prefix("sandpod.template=") {
                cfg.template = match v {
                    "1" => true,
                    "0" => false,
                    other => return Err(CmdlineError::BadTemplate(other.to_string())),
                };
            }
        }
        if cfg.template && cfg.after_ready != AfterReady::Serve {
            return Err(CmdlineError::TemplateNeedsServe);
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_serve() {
        let cfg = AgentConfig::from_cmdline("console=ttyS0 quiet").unwrap();
        assert_eq!(cfg.after_ready, AfterReady::Serve);
        assert!(!cfg.template);
    }

    #[test]
    fn reads_template() {
        let cfg = AgentConfig::from_cmdline("console=ttyS0 sandpod.template=1 quiet").unwrap();
        assert!(cfg.template);
        assert_eq!(cfg.after_ready, AfterReady::Serve);
        let cfg =
            AgentConfig::from_cmdline("sandpod.template=1 sandpod.after_ready=serve").unwrap();
        assert!(cfg.template);
        let cfg = AgentConfig::from_cmdline("sandpod.template=0").unwrap();
        assert!(!cfg.template);
    }

    #[test]
    fn rejects_bad_template() {
        for v in ["", "yes", "true", "2", "01"] {
            assert_eq!(
                AgentConfig::from_cmdline(&format!("sandpod.template={v}")),
                Err(CmdlineError::BadTemplate(v.into()))
            );
        }
        assert_eq!(
            AgentConfig::from_cmdline("sandpod.template=1 sandpod.after_ready=poweroff"),
            Err(CmdlineError::TemplateNeedsServe)
        );
        assert_eq!(
            AgentConfig::from_cmdline("sandpod.after_ready=reboot sandpod.template=1"),
            Err(CmdlineError::TemplateNeedsServe)
        );
    }

    #[test]
    fn reads_after_ready() {
        let cfg = AgentConfig::from_cmdline("console=ttyS0 sandpod.after_ready=poweroff").unwrap();
        assert_eq!(cfg.after_ready, AfterReady::Poweroff);
        let cfg = AgentConfig::from_cmdline("sandpod.after_ready=reboot x=y").unwrap();
        assert_eq!(cfg.after_ready, AfterReady::Reboot);
    }

    #[test]
    fn rejects_unknown_after_ready() {
        assert_eq!(
            AgentConfig::from_cmdline("sandpod.after_ready=explode"),
            Err(CmdlineError::BadAfterReady("explode".into()))
        );
    }
}
