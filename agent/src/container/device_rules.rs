//! The device rules of a container: the spec's `linux.resources.devices` followed by runc's
//! default allow-list, reduced the way the cgroup v1 device controller (and runc's emulator of
//! it, which runc uses for cgroup v2 too) reads such a list, into a default action and the
//! exceptions to it. `device_filter` turns the result into the cgroup v2 BPF program.
//!
//! Reading the list in order, starting from "deny everything":
//! - a rule of type `a` (all devices; the OCI default when `type` is absent) resets the state:
//!   allow or deny everything, no exceptions (major, minor and access are ignored, as by v1);
//! - a rule whose action is not the default adds an exception (or widens the access of one for
//!   the same type, major and minor);
//! - a rule whose action is the default takes its access away from the exception for the same
//!   type, major and minor (exact match, as v1: it does not punch holes in wildcard exceptions).
//!
//! With default deny, an access is allowed when some exception grants all of it (read+write
//! needs one exception with `rw`); with default allow, it is denied when some exception
//! covers any part of it.
use anyhow::{bail, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// Device type of a rule (never "all": that is a reset, see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DevType {
    Char,
    Block,
}

/// Access bits, as the BPF context encodes them (BPF_DEVCG_ACC_*).
pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
pub const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One exception: a device (None: any major / any minor) and the access it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    pub typ: DevType,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

/// The reduced rules: the default action and the exceptions, which all have the other action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRules {
    pub default_allow: bool,
    pub exceptions: Vec<Exception>,
}

/// runc's default allow-list (libcontainer/specconv `AllowedDevices`), appended after the
/// spec's rules: mknod of any device node, /dev/null, random, full, tty, zero, urandom, the
/// ptys (136:*) and /dev/ptmx.
pub fn runc_defaults() -> Vec<(DevType, Option<u32>, Option<u32>, u32)> {
    use DevType::{Block, Char};
    vec![
        (Char, None, None, ACC_MKNOD),
        (Block, None, None, ACC_MKNOD),
        (Char, Some(1), Some(3), ACC_ALL),
        (Char, Some(1), Some(8), ACC_ALL),
        (Char, Some(1), Some(7), ACC_ALL),
        (Char, Some(5), Some(0), ACC_ALL),
        (Char, Some(1), Some(5), ACC_ALL),
        (Char, Some(1), Some(9), ACC_ALL),
        (Char, Some(136), None, ACC_ALL),
        (Char, Some(5), Some(2), ACC_ALL),
    ]
}

/// Parses an access string (`r`, `w`, `m`, in any combination; empty: none).
pub fn parse_access(access: &str) -> Result<u32> {
    access.chars().try_fold(0, |acc, c| {
        Ok(acc
            | match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                other => bail!("access {access:?}: {other:?} is not r, w or m"),
            })
    })
}

/// A major or minor number of the spec: absent or -1 is the wildcard.
fn number(what: &str, v: Option<i64>) -> Result<Option<u32>> {
    match v {
        None | Some(-1) => Ok(None),
        Some(n) => match u32::try_from(n) {
            Ok(n) => Ok(Some(n)),
            Err(_) => bail!("{what} {n} is out of range"),
        },
    }
}

impl DeviceRules {
    /// The rules of `spec_rules` (the spec's, in order) followed by [`runc_defaults`].
    pub fn from_spec(spec_rules: &[LinuxDeviceCgroup]) -> Result<DeviceRules> {
        let mut rules = DeviceRules {
            default_allow: false,
            exceptions: Vec::new(),
        };
        for (i, r) in spec_rules.iter().enumerate() {
            let fail = |e: anyhow::Error| e.context(format!("linux.resources.devices[{i}]"));
            let access = parse_access(r.access().as_deref().unwrap_or("")).map_err(fail)?;
            let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
                LinuxDeviceType::A => None,
                LinuxDeviceType::C | LinuxDeviceType::U => Some(DevType::Char),
                LinuxDeviceType::B => Some(DevType::Block),
                LinuxDeviceType::P => {
                    return Err(fail(anyhow::anyhow!(
                        "type p (fifo) is not a device the cgroup controls"
                    )))
                }
            };
            match typ {
                None => rules.reset(r.allow()),
                Some(typ) => {
                    let major = number("major", r.major()).map_err(fail)?;
                    let minor = number("minor", r.minor()).map_err(fail)?;
                    rules.apply(r.allow(), typ, major, minor, access);
                }
            }
        }
        for (typ, major, minor, access) in runc_defaults() {
            rules.apply(true, typ, major, minor, access);
        }
        Ok(rules)
    }

    fn reset(&mut self, allow: bool) {
        self.default_allow = allow;
        self.exceptions.clear();
    }

    fn apply(
        &mut self,
        allow: bool,
        typ: DevType,
        major: Option<u32>,
        minor: Option<u32>,
        access: u32,
    ) {
        if access == 0 {
            return;
        }
        let same = |e: &Exception| e.typ == typ && e.major == major && e.minor == minor;
        if allow != self.default_allow {
            match self.exceptions.iter_mut().find(|e| same(e)) {
                Some(e) => e.access |= access,
                None => self.exceptions.push(Exception {
                    typ,
                    major,
                    minor,
                    access,
                }),
            }
        } else {
            for e in self.exceptions.iter_mut().filter(|e| same(e)) {
                e.access &= !access;
            }
            self.exceptions.retain(|e| e.access != 0);
        }
    }

    /// Whether `access` (ACC_* bits) to a `typ` device `major:minor` is allowed: what the BPF
    /// program must answer (the reference for its tests).
    pub fn allows(&self, typ: DevType, major: u32, minor: u32, access: u32) -> bool {
        let covers = |e: &&Exception| {
            e.typ == typ
                && !matches!(e.major, Some(m) if m != major)
                && !matches!(e.minor, Some(m) if m != minor)
        };
        if self.default_allow {
            !self
                .exceptions
                .iter()
                .filter(covers)
                .any(|e| e.access & access != 0)
        } else {
            self.exceptions
                .iter()
                .filter(covers)
                .any(|e| access & !e.access == 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Result<DeviceRules> {
        let list: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).expect("devices json");
        DeviceRules::from_spec(&list)
    }

    const RW: u32 = ACC_READ | ACC_WRITE;

    #[test]
    fn the_usual_spec_allows_only_runc_defaults() {
        // What `runc spec` and Docker write: deny all first.
        let r = rules(r#"[{"allow": false, "access": "rwm"}]"#).unwrap();
        assert!(!r.default_allow);
        assert_eq!(r.exceptions.len(), runc_defaults().len());
        for (maj, min) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 2),
            (136, 0),
        ] {
            assert!(r.allows(DevType::Char, maj, min, RW), "{maj}:{min}");
        }
        assert!(r.allows(DevType::Char, 136, 4711, RW));
        // mknod of anything, but not its use.
        assert!(r.allows(DevType::Block, 8, 0, ACC_MKNOD));
        assert!(!r.allows(DevType::Block, 8, 0, ACC_READ));
        for (maj, min) in [(1, 1), (1, 2), (1, 11), (10, 200), (5, 1), (4, 0), (7, 0)] {
            assert!(!r.allows(DevType::Char, maj, min, ACC_READ), "{maj}:{min}");
        }
        assert!(
            !r.allows(DevType::Block, 1, 3, ACC_READ),
            "a block 1:3 is not /dev/null"
        );
    }

    #[test]
    fn no_rules_still_deny_by_default() {
        let r = rules("[]").unwrap();
        assert!(!r.default_allow);
        assert!(!r.allows(DevType::Char, 1, 1, ACC_READ), "/dev/mem");
        assert!(r.allows(DevType::Char, 1, 3, ACC_WRITE));
    }

    #[test]
    fn spec_exceptions_and_partial_access() {
        let r = rules(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                {"allow": true, "type": "b", "major": 8, "access": "r"}]"#,
        )
        .unwrap();
        assert!(r.allows(DevType::Char, 10, 229, RW));
        assert!(!r.allows(DevType::Char, 10, 228, ACC_READ));
        assert!(r.allows(DevType::Block, 8, 17, ACC_READ));
        // Read was granted, not read+write: all of the access must be covered.
        assert!(!r.allows(DevType::Block, 8, 17, RW));
        assert!(!r.allows(DevType::Block, 8, 17, ACC_WRITE));
    }

    #[test]
    fn a_deny_rule_takes_access_away_exactly() {
        let r = rules(
            r#"[{"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
                {"allow": false, "type": "c", "major": 10, "minor": 229, "access": "w"},
                {"allow": false, "type": "c", "major": 10, "access": "r"}]"#,
        )
        .unwrap();
        // w taken from 10:229; the wildcard deny does not punch into the exact exception.
        assert!(r.allows(DevType::Char, 10, 229, ACC_READ));
        assert!(!r.allows(DevType::Char, 10, 229, ACC_WRITE));
    }

    #[test]
    fn allow_all_then_deny_some() {
        let r = rules(
            r#"[{"allow": true, "access": "rwm"},
                {"allow": false, "type": "c", "major": 1, "minor": 1, "access": "w"},
                {"allow": false, "type": "b", "access": "rwm"}]"#,
        )
        .unwrap();
        assert!(r.default_allow);
        assert!(r.allows(DevType::Char, 1, 1, ACC_READ));
        // Any part of the access denied denies it.
        assert!(!r.allows(DevType::Char, 1, 1, RW));
        assert!(!r.allows(DevType::Block, 8, 0, ACC_READ));
        assert!(r.allows(DevType::Char, 4, 1, RW));
        // runc's defaults are allow rules: in allow-all mode they take their access away from
        // the exactly matching denial (b *:* m), as cgroup v1 does, and from nothing else.
        assert!(r.allows(DevType::Block, 8, 0, ACC_MKNOD));
        assert!(!r.allows(DevType::Block, 1, 3, ACC_READ));
    }

    #[test]
    fn a_later_reset_forgets_earlier_rules() {
        let r = rules(
            r#"[{"allow": true, "type": "c", "major": 1, "minor": 1, "access": "rwm"},
                {"allow": false, "type": "a"}]"#,
        )
        .unwrap();
        assert!(!r.allows(DevType::Char, 1, 1, ACC_READ));
    }

    #[test]
    fn bad_rules_are_refused_by_index() {
        let err = rules(r#"[{"allow": true, "type": "c", "access": "rx"}]"#).unwrap_err();
        assert!(format!("{err:#}").contains("devices[0]"), "{err:#}");
        assert!(format!("{err:#}").contains("'x'"), "{err:#}");
        let err = rules(r#"[{"allow": true, "type": "c", "major": 4294967296, "access": "r"}]"#)
            .unwrap_err();
        assert!(format!("{err:#}").contains("out of range"), "{err:#}");
        assert!(rules(r#"[{"allow": true, "type": "p", "access": "r"}]"#).is_err());
    }
}
