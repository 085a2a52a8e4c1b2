//! A virtio-net device on a tap interface: `tap=NAME|tap-fd=N[,mac=MAC][,mtu=N]`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ParseError;

/// Longest interface name (IFNAMSIZ - 1).
pub const MAX_TAP_NAME: usize = 15;
/// Smallest MTU (IPv4's minimum).
pub const MIN_MTU: u16 = 68;
/// Largest MTU (the header's 16-bit field).
pub const MAX_MTU: u16 = 65535;

/// An invalid [`NetConfig`] or MAC address.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NetConfigError {
    /// Neither or both of `tap` and `tap_fd`.
    #[error("give exactly one of tap (an interface name) and tap_fd (an open tap)")]
    TapChoice,
    /// An interface name that the kernel would refuse.
    #[error(
        "tap name {0:?} must be 1 to {MAX_TAP_NAME} bytes without '/', ':', spaces or control \
         characters"
    )]
    TapName(String),
    /// A negative fd.
    #[error("tap_fd {0} is not a file descriptor")]
    TapFd(i32),
    /// Not `xx:xx:xx:xx:xx:xx`.
    #[error("MAC address {0:?} is not six hex bytes separated by ':'")]
    MacSyntax(String),
    /// A multicast (or broadcast) or all-zero MAC address.
    #[error("MAC address {0} is not a unicast address")]
    MacNotUnicast(MacAddr),
    /// An MTU out of range.
    #[error("MTU {0} is out of range: use {MIN_MTU} to {MAX_MTU}")]
    Mtu(u16),
}

impl From<NetConfigError> for ParseError {
    fn from(e: NetConfigError) -> Self {
        ParseError(e.to_string())
    }
}

/// A MAC address, written `xx:xx:xx:xx:xx:xx` (in JSON too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// From netlink's bytes: `None` unless exactly 6 of them.
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }

    /// Whether frames to it reach one interface (I/G bit clear, not all zero).
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl FromStr for MacAddr {
    type Err = NetConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NetConfigError::MacSyntax(s.to_string());
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut mac {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A virtio-net device whose back end is a tap interface: opened by name (`tap`, the VMM
/// opens /dev/net/tun) or already open (`tap_fd`, inherited from whoever starts the VMM,
/// opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// The tap interface's name.
    #[serde(default)]
    pub tap: Option<String>,
    /// An open tap file descriptor (the VMM duplicates it).
    #[serde(default)]
    pub tap_fd: Option<i32>,
    /// The guest's MAC address (VIRTIO_NET_F_MAC); without it the guest picks a random one.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The MTU the guest is told (VIRTIO_NET_F_MTU); without it the guest uses 1500.
    #[serde(default)]
    pub mtu: Option<u16>,
}

impl NetConfig {
    /// A device on the tap interface `name`, no MAC, no MTU.
    pub fn tap(name: impl Into<String>) -> Self {
        NetConfig {
            tap: Some(name.into()),
            tap_fd: None,
            mac: None,
            mtu: None,
        }
    }

    /// Checks the values (not the tap: the VMM opens it).
    pub fn validate(&self) -> Result<(), NetConfigError> {
        match (&self.tap, self.tap_fd) {
            (Some(name), None) => {
                let bad = |c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control();
                if name.is_empty() || name.len() > MAX_TAP_NAME || name.chars().any(bad) {
                    return Err(NetConfigError::TapName(name.clone()));
                }
            }
            (None, Some(fd)) if fd < 0 => return Err(NetConfigError::TapFd(fd)),
            (None, Some(_)) => {}
            _ => return Err(NetConfigError::TapChoice),
        }
        if let Some(mac) = self.mac.filter(|m| !m.is_unicast()) {
            return Err(NetConfigError::MacNotUnicast(mac));
        }
        if let Some(mtu) = self.mtu.filter(|m| *m < MIN_MTU) {
            return Err(NetConfigError::Mtu(mtu));
        }
        Ok(())
    }
}

impl FromStr for NetConfig {
    type Err = ParseError;

    /// Parses `tap=NAME` or `tap-fd=N`, then `mac=MAC` and `mtu=N`, comma separated.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut c = NetConfig {
            tap: None,
            tap_fd: None,
            mac: None,
            mtu: None,
        };
        for part in s.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| ParseError(format!("{part:?} is not KEY=VALUE (in {s:?})")))?;
            let twice = || ParseError(format!("{key} given twice in {s:?}"));
            let number = || ParseError(format!("{key}={value}: not a number"));
            match key {
                "tap" if c.tap.is_some() => return Err(twice()),
                "tap" => c.tap = Some(value.to_string()),
                "tap-fd" if c.tap_fd.is_some() => return Err(twice()),
                "tap-fd" => c.tap_fd = Some(value.parse().map_err(|_| number())?),
                "mac" if c.mac.is_some() => return Err(twice()),
                "mac" => c.mac = Some(value.parse()?),
                "mtu" if c.mtu.is_some() => return Err(twice()),
                "mtu" => c.mtu = Some(value.parse().map_err(|_| number())?),
                _ => {
                    return Err(ParseError(format!(
                        "unknown key {key:?}: expected tap, tap-fd, mac or mtu"
                    )))
                }
            }
        }
        c.validate()?;
        Ok(c)
    }
}

impl fmt::Display for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.tap, self.tap_fd) {
            (Some(name), _) => write!(f, "tap={name}")?,
            (None, Some(fd)) => write!(f, "tap-fd={fd}")?,
            (None, None) => {}
        }
        if let Some(mac) = self.mac {
            write!(f, ",mac={mac}")?;
        }
        if let Some(mtu) = self.mtu {
            write!(f, ",mtu={mtu}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses() {
        let m: MacAddr = "02:00:0a:FF:00:01".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0xa, 0xff, 0, 1]);
        assert_eq!(m.to_string(), "02:00:0a:ff:00:01");
        assert!(m.is_unicast());
        assert!(!"01:00:5e:00:00:01".parse::<MacAddr>().unwrap().is_unicast());
        assert!(!"ff:ff:ff:ff:ff:ff".parse::<MacAddr>().unwrap().is_unicast());
        assert!(!"00:00:00:00:00:00".parse::<MacAddr>().unwrap().is_unicast());
        for bad in [
            "",
            "02:00:0a:ff:00",
            "02:00:0a:ff:00:01:02",
            "02:00:0a:ff:00:1",
            "02-00-0a-ff-00-01",
            "02:00:0a:ff:00:0g",
            "+2:00:0a:ff:00:01",
        ] {
            assert_eq!(
                bad.parse::<MacAddr>(),
                Err(NetConfigError::MacSyntax(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_options() {
        let c: NetConfig = "tap=tap0,mac=02:00:00:00:00:01,mtu=9000".parse().unwrap();
        assert_eq!(c.tap.as_deref(), Some("tap0"));
        assert_eq!(c.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(c.mtu, Some(9000));
        assert_eq!(c.to_string(), "tap=tap0,mac=02:00:00:00:00:01,mtu=9000");
        assert_eq!(c.to_string().parse::<NetConfig>().unwrap(), c);
        let c: NetConfig = "tap-fd=7".parse().unwrap();
        assert_eq!((c.tap, c.tap_fd), (None, Some(7)));
        assert_eq!(NetConfig::tap("t").to_string(), "tap=t");
    }

    #[test]
    fn rejects_bad_options() {
        for (s, why) in [
            ("mac=02:00:00:00:00:01", "exactly one of tap"),
            ("tap=a,tap-fd=3", "exactly one of tap"),
            ("tap=", "tap name \"\""),
            ("tap=a/b", "tap name"),
            ("tap=a b", "tap name"),
            ("tap=0123456789abcdef", "tap name"),
            ("tap-fd=-1", "tap_fd -1"),
            ("tap-fd=x", "tap-fd=x: not a number"),
            ("tap=t,mac=01:00:00:00:00:01", "not a unicast"),
            ("tap=t,mac=zz", "not six hex bytes"),
            ("tap=t,mtu=67", "MTU 67 is out of range"),
            ("tap=t,mtu=65536", "not a number"),
            ("tap=t,tap=u", "tap given twice"),
            ("tap=t,speed=10", "unknown key \"speed\""),
            ("tap", "is not KEY=VALUE"),
        ] {
            let e = s.parse::<NetConfig>().unwrap_err().to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
        assert!("tap=0123456789abcde,mtu=68,mtu=65535"
            .parse::<NetConfig>()
            .is_err());
        assert!("tap=0123456789abcde,mtu=65535".parse::<NetConfig>().is_ok());
    }

    #[test]
    fn json_form() {
        let c: NetConfig =
            serde_json::from_str(r#"{"tap":"tap0","mac":"02:00:00:00:00:01"}"#).unwrap();
        assert_eq!(c.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(c.validate(), Ok(()));
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(
            s,
            r#"{"tap":"tap0","tap_fd":null,"mac":"02:00:00:00:00:01","mtu":null}"#
        );
        assert_eq!(serde_json::from_str::<NetConfig>(&s).unwrap(), c);
        assert!(serde_json::from_str::<NetConfig>(r#"{"tap":"t","mac":"bad"}"#).is_err());
        let e = serde_json::from_str::<NetConfig>(r#"{"tap":"t","ip":"10.0.0.2"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `ip`"), "{e}");
        let c: NetConfig = serde_json::from_str(r#"{"tap_fd":5,"mtu":1400}"#).unwrap();
        assert_eq!((c.tap_fd, c.mtu), (Some(5), Some(1400)));
    }
}
