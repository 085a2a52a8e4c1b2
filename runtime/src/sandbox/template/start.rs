//! Starting a sandbox's VM from a template, falling back to a cold boot: a restore that fails
//! (the VMM ends early, the agent does not answer within [`restore_timeout`], ResumeClone fails)
//! is logged once as a warning, its template removed (the next start makes it again), the VM
//! stopped, and the same sandbox booted cold; the caller sees a start.
use std::time::Duration;

use anyhow::Context;

use super::store::{Template, TemplateStore};
use crate::agent_client::AgentClient;

/// Longest wait for a restored guest's agent, at most the boot timeout. A restore takes well
/// under a second on hardware, but ten sandboxes starting at once in the nested test host
/// stretch it to tens of seconds, and a timeout here also removes the template: as long as a
/// cold boot may take.
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);
/// Fresh host entropy handed to a restored guest (the RPC takes 32 to 512 bytes).
pub const CLONE_ENTROPY_BYTES: usize = 64;

/// How a sandbox's VM started (the boot phases' `start=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    /// Booted (templates off, not suitable, or no template could be made).
    Cold,
    /// Restored from its template.
    Restored,
    /// Booted after its template failed to restore.
    ColdAfterFailedRestore,
}

impl StartKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StartKind::Cold => "cold",
            StartKind::Restored => "restored",
            StartKind::ColdAfterFailedRestore => "cold_after_failed_restore",
        }
    }
}

/// The wait for a restored guest's agent: [`RESTORE_TIMEOUT`], or the boot timeout if shorter.
pub fn restore_timeout(boot_timeout: Duration) -> Duration {
    boot_timeout.min(RESTORE_TIMEOUT)
}

/// The steps that start one sandbox's VM (lifecycle's; tests fake them).
pub(crate) trait VmStarter {
    type Started;
    /// Starts the VM, restoring `from` if given (vm.json's `restore_from`, the agent told it was
    /// cloned), and reaches its agent.
    async fn start(&mut self, from: Option<&Template>) -> anyhow::Result<Self::Started>;
    /// Stops the VM [`Self::start`] started and removes its files, keeping the rest of the
    /// sandbox (its state directory, share, cgroup) for another start.
    async fn stop(&mut self) -> anyhow::Result<()>;
}

/// Starts the VM from `template` if given, else (or when the restore fails) cold.
pub(crate) async fn start_vm<S: VmStarter>(
    steps: &mut S,
    store: &TemplateStore,
    template: Option<Template>,
) -> anyhow::Result<(S::Started, StartKind)> {
    let Some(t) = template else {
        return Ok((steps.start(None).await?, StartKind::Cold));
    };
    match steps.start(Some(&t)).await {
        Ok(s) => Ok((s, StartKind::Restored)),
        Err(e) => {
            tracing::warn!(
                "restoring the VM from the template {} failed; booting it cold (the template \
                 is removed: the next start makes it again): {e:#}",
                t.dir.display()
            );
            match store.discard(&t).await {
                Ok(true) => {}
                Ok(false) => tracing::debug!("the template was made again meanwhile; kept"),
                Err(e) => tracing::error!("removing the template that failed: {e:#}"),
            }
            steps
                .stop()
                .await
                .context("stopping the VM whose restore failed")?;
            Ok((steps.start(None).await?, StartKind::ColdAfterFailedRestore))
        }
    }
}

/// `n` bytes from the kernel's CSPRNG (getrandom(2)).
pub fn os_random(n: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        let rest = &mut bytes[filled..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`, a live, writable
        // buffer of that length, and touches no other memory.
        let r = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(r) {
            Ok(k) => filled += k,
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(bytes)
}

/// The host's CLOCK_REALTIME in nanoseconds since the epoch.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Tells a restored guest it is a clone: fresh entropy for its RNG, the host's time for its
/// clock. The first call to it; it answers nothing else before.
pub async fn resume_clone(client: &AgentClient) -> anyhow::Result<()> {
    let entropy = os_random(CLONE_ENTROPY_BYTES).context("drawing entropy for the guest")?;
    let step = client
        .resume_clone(&entropy, realtime_ns())
        .await
        .context("telling the restored guest it is a clone (ResumeClone)")?;
    tracing::debug!(
        clock_step_ms = step,
        "the restored guest's clock was stepped"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::template::store_tests::{inputs, template};

    /// Fails to restore; records each step.
    struct FakeSteps {
        calls: Vec<String>,
        restore_fails: bool,
    }

    impl VmStarter for FakeSteps {
        type Started = &'static str;
        async fn start(&mut self, from: Option<&Template>) -> anyhow::Result<&'static str> {
            match from {
                Some(t) => {
                    self.calls.push("restore".into());
                    assert!(t.dir.is_dir());
                    if self.restore_fails {
                        anyhow::bail!("state.bin: bad magic");
                    }
                    Ok("restored vm")
                }
                None => {
                    self.calls.push("cold".into());
                    Ok("cold vm")
                }
            }
        }
        async fn stop(&mut self) -> anyhow::Result<()> {
            self.calls.push("stop".into());
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_restore_removes_the_template_and_boots_cold() {
        let d = tempfile::tempdir().unwrap();
        let (_files, i) = inputs(d.path());
        let store = TemplateStore::new(&d.path().join("root"));
        let t = template(&store, &i).await;
        let mut steps = FakeSteps {
            calls: Vec::new(),
            restore_fails: true,
        };
        let (vm, kind) = start_vm(&mut steps, &store, Some(t.clone())).await.unwrap();
        assert_eq!((vm, kind), ("cold vm", StartKind::ColdAfterFailedRestore));
        assert_eq!(steps.calls, ["restore", "stop", "cold"]);
        assert!(!t.dir.exists(), "the failed template is removed");
        assert!(store.check(&i).is_err());

        // Made again by the next start, and used.
        let t = template(&store, &i).await;
        let mut steps = FakeSteps {
            calls: Vec::new(),
            restore_fails: false,
        };
        let (vm, kind) = start_vm(&mut steps, &store, Some(t)).await.unwrap();
        assert_eq!((vm, kind), ("restored vm", StartKind::Restored));
        assert_eq!(steps.calls, ["restore"]);
        let (vm, kind) = start_vm(&mut steps, &store, None).await.unwrap();
        assert_eq!((vm, kind.as_str()), ("cold vm", "cold"));
    }

    #[tokio::test]
    async fn a_template_rebuilt_meanwhile_is_not_discarded() {
        let d = tempfile::tempdir().unwrap();
        let (_files, i) = inputs(d.path());
        let store = TemplateStore::new(&d.path().join("root"));
        let old = template(&store, &i).await;
        assert!(store.remove(&i).unwrap());
        let new = template(&store, &i).await;
        assert_ne!(old.info, new.info);
        assert!(!store.discard(&old).await.unwrap());
        assert!(store.check(&i).is_ok());
        assert!(store.discard(&new).await.unwrap());
        assert!(store.check(&i).is_err());
    }

    #[test]
    fn entropy_is_fresh_and_the_clock_is_now() {
        let (a, b) = (os_random(64).unwrap(), os_random(64).unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(realtime_ns() > 1_600_000_000 * 1_000_000_000);
        assert_eq!(restore_timeout(Duration::from_secs(300)), RESTORE_TIMEOUT);
        assert_eq!(
            restore_timeout(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
    }
}
