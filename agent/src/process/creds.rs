//! The user and groups a process runs as.
use nix::unistd::{getegid, geteuid, getgid, getgroups, getuid, setgid, setgroups, setuid};
use nix::unistd::{Gid, Uid};

/// The identity asked for a new process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// How the child gets its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredsPlan {
    /// The agent already runs as the asked identity (non-root test mode): change nothing.
    Keep,
    /// The agent is root: set groups, gid and uid in the child before exec.
    Switch {
        uid: Uid,
        gid: Gid,
        groups: Vec<Gid>,
    },
}

impl Credentials {
    /// Decides how to give a child these credentials. Without root, only the agent's own
    /// identity is possible: asking for another one is an error naming it.
    pub fn plan(&self) -> Result<CredsPlan, String> {
        if geteuid().is_root() {
            return Ok(CredsPlan::Switch {
                uid: Uid::from_raw(self.uid),
                gid: Gid::from_raw(self.gid),
                groups: self
                    .additional_gids
                    .iter()
                    .map(|g| Gid::from_raw(*g))
                    .collect(),
            });
        }
        let own_groups = getgroups().unwrap_or_default();
        let same_user = self.uid == getuid().as_raw() && self.uid == geteuid().as_raw();
        let same_group = self.gid == getgid().as_raw() && self.gid == getegid().as_raw();
        let groups_held = self
            .additional_gids
            .iter()
            .all(|g| *g == self.gid || own_groups.contains(&Gid::from_raw(*g)));
        if same_user && same_group && groups_held {
            Ok(CredsPlan::Keep)
        } else {
            Err(format!(
                "cannot run as uid {} gid {} groups {:?}: the agent is not root (uid {}, gid {})",
                self.uid,
                self.gid,
                self.additional_gids,
                getuid(),
                getgid()
            ))
        }
    }
}

impl CredsPlan {
    /// Applies the plan in the forked child. Only async-signal-safe calls (no allocation).
    pub fn apply_in_child(&self) -> nix::Result<()> {
        if let CredsPlan::Switch { uid, gid, groups } = self {
            setgroups(groups)?;
            setgid(*gid)?;
            setuid(*uid)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_identity_is_always_possible() {
        let own = Credentials {
            uid: getuid().as_raw(),
            gid: getgid().as_raw(),
            additional_gids: vec![],
        };
        let plan = own.plan().unwrap();
        if geteuid().is_root() {
            assert!(matches!(plan, CredsPlan::Switch { .. }), "{plan:?}");
        } else {
            assert_eq!(plan, CredsPlan::Keep);
        }
    }

    /// Another identity: root switches to it; without root it is an error saying so. (Checks
    /// whichever applies: it runs everywhere.)
    #[test]
    fn another_identity_needs_root() {
        let other = Credentials {
            uid: getuid().as_raw() + 1,
            gid: getgid().as_raw(),
            additional_gids: vec![],
        };
        if geteuid().is_root() {
            let plan = other.plan().unwrap();
            assert_eq!(
                plan,
                CredsPlan::Switch {
                    uid: Uid::from_raw(other.uid),
                    gid: Gid::from_raw(other.gid),
                    groups: vec![],
                }
            );
        } else {
            let err = other.plan().unwrap_err();
            assert!(err.contains("not root"), "{err}");
        }
    }
}
