//! UpdateNetwork: the guest's interfaces, routes and neighbours, as the pod's network namespace
//! has them.
//!
//! The host mirrors each interface of the pod's namespace into the VM as a virtio-net NIC with
//! the veth's MAC. The request says, per MAC, the name, MTU and addresses the guest's NIC
//! takes, then the routes and permanent neighbours to add. [`check`] turns the request into a
//! [`NetworkConfig`] (or refuses it whole: nothing is changed on a bad request); [`apply`]
//! configures the guest through netlink. Host-side test mode only checks.
pub mod apply;
pub mod check;
pub mod error;

#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod check_tests;

use std::fmt;
use std::net::IpAddr;

pub use apply::apply;
pub use check::check;
pub use error::NetworkError;

/// UpdateNetwork's request, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkConfig {
    pub interfaces: Vec<Interface>,
    /// Added in order.
    pub routes: Vec<Route>,
    /// Added as permanent entries.
    pub neighbours: Vec<Neighbour>,
}

impl NetworkConfig {
    /// What applying it does, one line per step as `ip` would take it (`link eth0 mac … mtu
    /// 1400 addr 10.88.0.5/16`, `route default via 10.88.0.1 dev eth0`, `neigh …`): for logs.
    pub fn summary(&self) -> Vec<String> {
        let links = self.interfaces.iter().map(|i| {
            let mut line = format!("link {} mac {}", i.name, i.mac);
            if let Some(m) = i.mtu {
                line += &format!(" mtu {m}");
            }
            for a in &i.addresses {
                line += &format!(" addr {a}");
            }
            line
        });
        let routes = self.routes.iter().map(|r| format!("route {r}"));
        let neighbours = self.neighbours.iter().map(|n| format!("neigh {n}"));
        links.chain(routes).chain(neighbours).collect()
    }
}

/// One guest NIC: found by `mac`, it takes `name`, `mtu` and `addresses`, and is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: MacAddr,
    /// `None`: the NIC keeps its own.
    pub mtu: Option<u32>,
    pub addresses: Vec<IpNet>,
}

/// An address with its prefix length (`10.88.0.5/16`), the prefix within the family's bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// Which IP family a route is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// A route of the main table. Its addresses are all of `family`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub family: Family,
    /// `None`: the default route.
    pub destination: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    /// The output interface: one of the request's interfaces, by its (guest) name.
    pub device: String,
    /// The preferred source address.
    pub source: Option<IpAddr>,
    /// RT_SCOPE_*: 0 universe, 200 site, 253 link, 254 host.
    pub scope: u8,
    /// The route's priority (`metric`); `None`: not set.
    pub metric: Option<u32>,
}

impl fmt::Display for Route {
    /// As `ip route` shows it: `10.99.0.0/16 via 10.88.0.1 dev eth0 src 10.88.0.5 metric 10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.destination {
            Some(d) => write!(f, "{d}")?,
            None => write!(f, "default")?,
        }
        if let Some(g) = &self.gateway {
            write!(f, " via {g}")?;
        }
        write!(f, " dev {}", self.device)?;
        if let Some(s) = &self.source {
            write!(f, " src {s}")?;
        }
        match self.scope {
            0 => {}
            200 => write!(f, " scope site")?,
            253 => write!(f, " scope link")?,
            254 => write!(f, " scope host")?,
            s => write!(f, " scope {s}")?,
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        Ok(())
    }
}

/// A permanent neighbour entry (`ip neigh replace ADDRESS lladdr MAC dev DEVICE nud permanent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub address: IpAddr,
    pub mac: MacAddr,
    pub device: String,
}

impl fmt::Display for Neighbour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lladdr {} dev {}",
            self.address, self.mac, self.device
        )
    }
}

/// An Ethernet address (`02:00:0a:00:00:02`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// From netlink's bytes: `None` unless exactly 6 of them.
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }

    /// Parses `xx:xx:xx:xx:xx:xx` (hex digits, either case).
    pub fn parse(s: &str) -> Option<MacAddr> {
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let part = parts.next()?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        match parts.next() {
            Some(_) => None,
            None => Some(MacAddr(mac)),
        }
    }

    /// The group bit (multicast and broadcast addresses).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}
