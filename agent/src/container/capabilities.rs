//! The spec's `process.capabilities` and `process.noNewPrivileges`.
//!
//! The container init calls, like runc: `set_keep_caps(true)`, setgroups/setgid/setuid,
//! `apply(caps)` (which also clears keep-caps), later `set_no_new_privs()`. `apply` first raises
//! the effective set to the permitted one (setuid cleared it) so that CAP_SETPCAP allows the
//! bounding-set drops, then sets inheritable, effective and permitted, then ambient.
use std::collections::HashSet;

use anyhow::{anyhow, bail, Context, Result};
use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, LinuxCapabilitiesBuilder};
use tracing::{debug, warn};

/// A capability by name: "CAP_MKNOD" or "MKNOD" (any case); unknown → an error naming it.
pub fn parse_capability(name: &str) -> Result<Cap> {
    let upper = name.trim().to_ascii_uppercase();
    let canonical = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    canonical
        .parse::<Cap>()
        .map_err(|_| anyhow!("unknown capability {name:?}"))
}

/// The five sets, resolved to `caps` capabilities. Capabilities the running kernel does not
/// have are left out with a warning (as runc does).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub permitted: CapsHashSet,
    pub ambient: CapsHashSet,
}

impl CapSets {
    /// Resolves the spec's sets against `supported` (the kernel's capabilities).
    pub fn resolve(spec: &LinuxCapabilities, supported: &CapsHashSet) -> Result<Self> {
        let conv = |which: &str, set: &Option<Capabilities>| -> Result<CapsHashSet> {
            let mut out = HashSet::new();
            for c in set.iter().flatten() {
                let cap = parse_capability(&c.to_string())
                    .with_context(|| format!("capabilities.{which}"))?;
                if supported.contains(&cap) {
                    out.insert(cap);
                } else {
                    warn!(capability = %cap, set = which, "capability unknown to this kernel: ignored");
                }
            }
            Ok(out)
        };
        Ok(Self {
            bounding: conv("bounding", spec.bounding())?,
            effective: conv("effective", spec.effective())?,
            inheritable: conv("inheritable", spec.inheritable())?,
            permitted: conv("permitted", spec.permitted())?,
            ambient: conv("ambient", spec.ambient())?,
        })
    }

    /// Refuses sets the kernel would refuse at capset with a bare EPERM.
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = self.effective.difference(&self.permitted).next() {
            bail!("capability {c} is effective but not permitted");
        }
        for c in &self.ambient {
            if !self.permitted.contains(c) || !self.inheritable.contains(c) {
                bail!("ambient capability {c} must also be permitted and inheritable");
            }
        }
        Ok(())
    }
}

/// Applies the spec's capabilities to the calling thread (see the module doc for the order).
pub fn apply(spec: &LinuxCapabilities) -> Result<()> {
    let supported = caps::runtime::thread_all_supported();
    let sets = CapSets::resolve(spec, &supported)?;
    sets.validate()?;
    let err = |what: &'static str| move |e: caps::errors::CapsError| anyhow!("{what}: {e}");
    raise_effective()?;
    for cap in supported.difference(&sets.bounding) {
        caps::drop(None, CapSet::Bounding, *cap)
            .map_err(|e| anyhow!("drop {cap} from the bounding set: {e}"))?;
    }
    caps::set(None, CapSet::Inheritable, &sets.inheritable).map_err(err("set inheritable"))?;
    caps::set(None, CapSet::Effective, &sets.effective).map_err(err("set effective"))?;
    caps::set(None, CapSet::Permitted, &sets.permitted).map_err(err("set permitted"))?;
    if sets.ambient.is_empty() {
        if let Err(e) = caps::clear(None, CapSet::Ambient) {
            debug!(error = %e, "no ambient set to clear");
        }
    } else {
        caps::set(None, CapSet::Ambient, &sets.ambient).map_err(err("set ambient"))?;
    }
    set_keep_caps(false)?;
    debug!(
        bounding = sets.bounding.len(),
        effective = sets.effective.len(),
        ambient = sets.ambient.len(),
        "capabilities applied"
    );
    Ok(())
}

/// Every set empty, the bounding set included: what a process gets without
/// `process.capabilities`.
pub fn no_capabilities() -> LinuxCapabilities {
    LinuxCapabilitiesBuilder::default()
        .bounding(HashSet::new())
        .effective(HashSet::new())
        .inheritable(HashSet::new())
        .permitted(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .expect("every field set")
}

/// Raises the effective set to the whole permitted set (setuid with keep-caps cleared it):
/// what CAP_SETPCAP-guarded drops and a seccomp filter without no_new_privs need.
pub fn raise_effective() -> Result<()> {
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(|e| anyhow!("read permitted set: {e}"))?;
    caps::set(None, CapSet::Effective, &permitted)
        .map_err(|e| anyhow!("raise the effective set: {e}"))
}

/// PR_SET_KEEPCAPS: keep the permitted set across the setuid away from root.
pub fn set_keep_caps(keep: bool) -> Result<()> {
    nix::sys::prctl::set_keepcaps(keep).with_context(|| format!("prctl(PR_SET_KEEPCAPS, {keep})"))
}

/// PR_SET_NO_NEW_PRIVS (the spec's `process.noNewPrivileges`); cannot be undone.
pub fn set_no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::testutil::in_child;

    fn spec(json: &str) -> LinuxCapabilities {
        serde_json::from_str(json).expect("capabilities json")
    }

    #[test]
    fn names() {
        assert_eq!(parse_capability("CAP_MKNOD").unwrap(), Cap::CAP_MKNOD);
        assert_eq!(parse_capability("mknod").unwrap(), Cap::CAP_MKNOD);
        assert_eq!(
            parse_capability("CAP_SYS_ADMIN").unwrap(),
            Cap::CAP_SYS_ADMIN
        );
        let err = parse_capability("CAP_FLY").unwrap_err();
        assert!(err.to_string().contains("CAP_FLY"), "{err}");
        // Every name oci-spec knows, caps knows too.
        for c in caps::all() {
            let name = c.to_string();
            let oci: oci_spec::runtime::Capability =
                serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(parse_capability(&oci.to_string()).unwrap(), c, "{name}");
        }
        // An unknown name in a spec fails at parsing, naming it.
        let err =
            serde_json::from_str::<LinuxCapabilities>(r#"{"bounding":["CAP_FLY"]}"#).unwrap_err();
        assert!(err.to_string().contains("FLY"), "{err}");
    }

    #[test]
    fn resolve_and_validate() {
        let all = caps::all();
        let s = CapSets::resolve(
            &spec(r#"{"bounding":["CAP_KILL","CAP_CHOWN"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"]}"#),
            &all,
        )
        .unwrap();
        assert_eq!(
            s.bounding,
            [Cap::CAP_KILL, Cap::CAP_CHOWN].into_iter().collect()
        );
        assert!(s.inheritable.is_empty() && s.ambient.is_empty());
        s.validate().unwrap();
        // Unsupported by the kernel: left out.
        let only_kill: CapsHashSet = [Cap::CAP_KILL].into_iter().collect();
        let s =
            CapSets::resolve(&spec(r#"{"bounding":["CAP_KILL","CAP_BPF"]}"#), &only_kill).unwrap();
        assert_eq!(s.bounding, only_kill);

        let bad = CapSets::resolve(&spec(r#"{"effective":["CAP_KILL"]}"#), &all).unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("CAP_KILL"));
        let bad = CapSets::resolve(
            &spec(r#"{"permitted":["CAP_KILL"],"ambient":["CAP_KILL"]}"#),
            &all,
        )
        .unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("ambient"));
    }

    /// Root without a capabilities spec ends with nothing: every set empty, bounding included.
    /// Needs root (a full permitted set): ignored unless run with `--include-ignored` (`make
    /// unit` does as root), and then fails without it.
    #[test]
    #[ignore = "needs root: run by `make unit` as root (--include-ignored), as in CI"]
    fn no_capabilities_leaves_root_with_none() {
        assert!(nix::unistd::geteuid().is_root(), "needs root");
        let result = in_child(|| {
            apply(&no_capabilities()).map_err(|e| format!("{e:#}"))?;
            for set in [
                CapSet::Bounding,
                CapSet::Effective,
                CapSet::Permitted,
                CapSet::Inheritable,
                CapSet::Ambient,
            ] {
                let held = caps::read(None, set).map_err(|e| e.to_string())?;
                if !held.is_empty() {
                    return Err(format!("{set:?} still holds {held:?}"));
                }
            }
            // Still uid 0, yet chown (CAP_CHOWN) of a file of another user is refused.
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let f = dir.path().join("f");
            std::fs::write(&f, "x").map_err(|e| e.to_string())?;
            match nix::unistd::chown(&f, Some(nix::unistd::Uid::from_raw(1234)), None) {
                Err(nix::errno::Errno::EPERM) => Ok(()),
                other => Err(format!("chown without CAP_CHOWN: {other:?}")),
            }
        });
        assert_eq!(result, Ok(()));
    }

    /// Needs root (a full permitted set): ignored unless run with `--include-ignored` (`make
    /// unit` does as root), and then fails without it.
    #[test]
    #[ignore = "needs root: run by `make unit` as root (--include-ignored), as in CI"]
    fn apply_in_a_child_drops_mknod() {
        assert!(nix::unistd::geteuid().is_root(), "needs root");
        let result = in_child(|| {
            let keep =
                r#"["CAP_CHOWN","CAP_KILL","CAP_SETUID","CAP_SETGID","CAP_NET_BIND_SERVICE"]"#;
            let s = spec(&format!(
                r#"{{"bounding":{keep},"effective":{keep},"permitted":{keep},"inheritable":[],"ambient":[]}}"#
            ));
            apply(&s).map_err(|e| format!("{e:#}"))?;
            let has = |set, cap| caps::has_cap(None, set, cap).map_err(|e| e.to_string());
            if has(CapSet::Bounding, Cap::CAP_MKNOD)? || has(CapSet::Permitted, Cap::CAP_MKNOD)? {
                return Err("CAP_MKNOD still held".into());
            }
            if !has(CapSet::Effective, Cap::CAP_KILL)? {
                return Err("CAP_KILL lost".into());
            }
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let node = dir.path().join("null");
            match nix::sys::stat::mknod(
                &node,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                nix::sys::stat::makedev(1, 3),
            ) {
                Err(nix::errno::Errno::EPERM) => Ok(()),
                other => Err(format!("mknod without CAP_MKNOD: {other:?}")),
            }
        });
        assert_eq!(result, Ok(()));
    }
}
