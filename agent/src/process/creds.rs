//! The user and groups a process runs as, and the one step that switches to them (a plain
//! exec's child before exec, a container helper before its final exec).
use nix::errno::Errno;
use nix::unistd::{getegid, geteuid, getgid, getgroups, getuid, setgid, setgroups, setuid};
use nix::unistd::{Gid, Uid};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The identity asked for a new process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The step of [`CredsPlan::apply_in_child`] that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CredsError {
    #[error("setgroups: {0}")]
    Groups(Errno),
    #[error("setgid: {0}")]
    Gid(Errno),
    #[error("setuid: {0}")]
    Uid(Errno),
}

impl CredsError {
    pub fn errno(self) -> Errno {
        match self {
            CredsError::Groups(e) | CredsError::Gid(e) | CredsError::Uid(e) => e,
        }
    }
}

impl Credentials {
    /// Switching to these credentials (as root).
    pub fn switch(&self) -> CredsPlan {
        CredsPlan::Switch {
            uid: Uid::from_raw(self.uid),
            gid: Gid::from_raw(self.gid),
            groups: self
                .additional_gids
                .iter()
                .map(|g| Gid::from_raw(*g))
                .collect(),
        }
    }

    /// The failed step `e` with the ids it set (`setgid 1000`), for messages.
    pub fn failed_step(&self, e: CredsError) -> String {
        match e {
            CredsError::Groups(_) => format!("setgroups {:?}", self.additional_gids),
            CredsError::Gid(_) => format!("setgid {}", self.gid),
            CredsError::Uid(_) => format!("setuid {}", self.uid),
        }
    }

    /// Decides how to give a child these credentials. Without root, only the agent's own
    /// identity is possible: asking for another one is an error naming it.
    pub fn plan(&self) -> Result<CredsPlan, String> {
        if geteuid().is_root() {
            return Ok(self.switch());
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
    /// Applies the plan in the child: groups, gid, uid. Only async-signal-safe calls (no
    /// allocation), so that it can run between fork and exec.
    pub fn apply_in_child(&self) -> Result<(), CredsError> {
        if let CredsPlan::Switch { uid, gid, groups } = self {
            setgroups(groups).map_err(CredsError::Groups)?;
            setgid(*gid).map_err(CredsError::Gid)?;
            setuid(*uid).map_err(CredsError::Uid)?;
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

    #[test]
    fn failed_steps_name_their_ids() {
        let c = Credentials {
            uid: 1000,
            gid: 100,
            additional_gids: vec![10, 11],
        };
        assert_eq!(
            c.failed_step(CredsError::Groups(Errno::EPERM)),
            "setgroups [10, 11]"
        );
        assert_eq!(c.failed_step(CredsError::Gid(Errno::EPERM)), "setgid 100");
        assert_eq!(c.failed_step(CredsError::Uid(Errno::EPERM)), "setuid 1000");
        assert_eq!(CredsError::Uid(Errno::EPERM).errno(), Errno::EPERM);
    }
}
