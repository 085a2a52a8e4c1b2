//! The spec's `process.rlimits`: setrlimit for each, in the container init before exec.
use anyhow::{bail, Context, Result};
use nix::sys::resource::{setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};
use tracing::debug;

/// Applies every rlimit; the first failure is an error naming the limit and its values.
pub fn apply(rlimits: &[PosixRlimit]) -> Result<()> {
    for rl in rlimits {
        let name = rl.typ().to_string();
        let resource = resource(rl.typ());
        if rl.soft() > rl.hard() {
            bail!(
                "{name}: soft limit {} is above the hard limit {}",
                rl.soft(),
                rl.hard()
            );
        }
        setrlimit(resource, rl.soft(), rl.hard())
            .with_context(|| format!("setrlimit {name} soft {} hard {}", rl.soft(), rl.hard()))?;
        debug!(limit = %name, soft = rl.soft(), hard = rl.hard(), "rlimit set");
    }
    Ok(())
}

/// An rlimit by its spec name ("RLIMIT_NOFILE"); an unknown name is an error naming it.
pub fn parse_type(name: &str) -> Result<PosixRlimitType> {
    name.parse::<PosixRlimitType>()
        .ok()
        .filter(|t| t.to_string() == name)
        .with_context(|| format!("unknown rlimit type {name:?}"))
}

fn resource(typ: PosixRlimitType) -> Resource {
    use PosixRlimitType as T;
    match typ {
        T::RlimitCpu => Resource::RLIMIT_CPU,
        T::RlimitFsize => Resource::RLIMIT_FSIZE,
        T::RlimitData => Resource::RLIMIT_DATA,
        T::RlimitStack => Resource::RLIMIT_STACK,
        T::RlimitCore => Resource::RLIMIT_CORE,
        T::RlimitRss => Resource::RLIMIT_RSS,
        T::RlimitNproc => Resource::RLIMIT_NPROC,
        T::RlimitNofile => Resource::RLIMIT_NOFILE,
        T::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        T::RlimitAs => Resource::RLIMIT_AS,
        T::RlimitLocks => Resource::RLIMIT_LOCKS,
        T::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        T::RlimitNice => Resource::RLIMIT_NICE,
        T::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        T::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::testutil::in_child;
    use nix::sys::resource::getrlimit;

    fn rlimits(json: &str) -> Vec<PosixRlimit> {
        serde_json::from_str(json).expect("rlimits json")
    }

    #[test]
    fn names_parse_and_unknown_is_named() {
        assert_eq!(
            parse_type("RLIMIT_NOFILE").unwrap(),
            PosixRlimitType::RlimitNofile
        );
        assert_eq!(
            parse_type("RLIMIT_RTTIME").unwrap(),
            PosixRlimitType::RlimitRttime
        );
        let err = parse_type("RLIMIT_BOGUS").unwrap_err();
        assert!(err.to_string().contains("RLIMIT_BOGUS"), "{err}");
        // The spec's JSON with an unknown type does not even parse.
        assert!(serde_json::from_str::<Vec<PosixRlimit>>(
            r#"[{"type":"RLIMIT_BOGUS","hard":1,"soft":1}]"#
        )
        .is_err());
    }

    #[test]
    fn applied_in_a_child() {
        let code = in_child(|| {
            let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
            let hard = hard.min(4096);
            let json = format!(
                r#"[{{"type":"RLIMIT_NOFILE","hard":{hard},"soft":77}},{{"type":"RLIMIT_CORE","hard":0,"soft":0}}]"#
            );
            apply(&rlimits(&json)).map_err(|e| format!("{e:#}"))?;
            let got = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
            if got != (77, hard) {
                return Err(format!("NOFILE is {got:?}, want (77, {hard})"));
            }
            if getrlimit(Resource::RLIMIT_CORE).map_err(|e| e.to_string())? != (0, 0) {
                return Err("CORE not 0".into());
            }
            // The limit bites: opening past it fails with EMFILE.
            let mut files = Vec::new();
            loop {
                match std::fs::File::open("/dev/null") {
                    Ok(f) => files.push(f),
                    Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
                    Err(e) => return Err(format!("open: {e}")),
                }
                if files.len() > 100 {
                    return Err("opened more than 100 files under a soft limit of 77".into());
                }
            }
            Ok(())
        });
        assert_eq!(code, Ok(()));
    }

    #[test]
    fn soft_above_hard_is_an_error() {
        let err = apply(&rlimits(r#"[{"type":"RLIMIT_CORE","hard":1,"soft":2}]"#)).unwrap_err();
        assert!(err.to_string().contains("RLIMIT_CORE"), "{err}");
    }
}
