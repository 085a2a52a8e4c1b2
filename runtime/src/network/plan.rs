//! What the pod's network namespace holds, as the guest's interface will need it: a plain,
//! serializable description the agent receives to configure the guest (the same MAC, MTU,
//! addresses, routes and static neighbours as the veth it replaces).
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use sandpod_vmconfig::MacAddr;

/// The namespace's L2 interfaces (loopback and our own taps left out), their routes and static
/// neighbours. Empty for a namespace with only `lo` (`--network none`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPlan {
    pub interfaces: Vec<PlanInterface>,
    /// Routes of the main table through the interfaces, except those the kernel derives from an
    /// address (`proto kernel`: the guest's kernel makes the same ones when the address is
    /// added) and IPv6 multicast.
    pub routes: Vec<RoutePlan>,
    /// Permanent (static) neighbour entries on the interfaces.
    pub neighbours: Vec<NeighbourPlan>,
}

impl NetworkPlan {
    pub fn is_empty(&self) -> bool {
        self.interfaces.is_empty()
    }
}

/// One interface of the namespace (a veth from the CNI plugin, typically `eth0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanInterface {
    /// Its name in the pod's namespace: the guest's interface takes it.
    pub name: String,
    /// Its index in the pod's namespace (meaningless in the guest).
    pub index: u32,
    /// The guest's NIC gets this MAC (the host side only knows the veth's).
    pub mac: MacAddr,
    pub mtu: u32,
    /// IPv4 and IPv6 addresses, IPv6 link-local ones left out (the guest makes its own from
    /// the same MAC).
    pub addresses: Vec<IpNet>,
}

/// An address with its prefix length (`10.0.0.2/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpNet {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// A route: `destination` `None` is the default route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutePlan {
    pub destination: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    /// The output interface's name (one of the plan's interfaces).
    pub device: String,
    /// The preferred source address (`src`), if set.
    pub source: Option<IpAddr>,
    pub scope: Scope,
    /// The route's metric (`RTA_PRIORITY`), if set.
    pub metric: Option<u32>,
}

/// A route's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Universe,
    Site,
    Link,
    Host,
    Nowhere,
    Other(u8),
}

/// A static neighbour entry (`ip neigh add ... lladdr ... nud permanent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourPlan {
    pub address: IpAddr,
    pub mac: MacAddr,
    pub device: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips_through_text_and_json() {
        let mac = MacAddr([0x02, 0, 0x0a, 0xff, 0, 0x12]);
        assert_eq!(mac.to_string(), "02:00:0a:ff:00:12");
        assert_eq!("02:00:0A:ff:00:12".parse::<MacAddr>().ok(), Some(mac));
        assert_eq!(
            serde_json::to_string(&mac).unwrap(),
            "\"02:00:0a:ff:00:12\""
        );
        assert_eq!(
            serde_json::from_str::<MacAddr>("\"02:00:0a:ff:00:12\"").unwrap(),
            mac
        );
        for bad in [
            "",
            "02:00:0a:ff:00",
            "02:00:0a:ff:00:12:34",
            "2:00:0a:ff:00:12",
            "zz:00:0a:ff:00:12",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn plan_serializes_to_plain_json() {
        let plan = NetworkPlan {
            interfaces: vec![PlanInterface {
                name: "eth0".into(),
                index: 2,
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                mtu: 1450,
                addresses: vec![IpNet {
                    address: "10.0.0.2".parse().unwrap(),
                    prefix_len: 24,
                }],
            }],
            routes: vec![RoutePlan {
                destination: None,
                gateway: Some("10.0.0.1".parse().unwrap()),
                device: "eth0".into(),
                source: None,
                scope: Scope::Universe,
                metric: None,
            }],
            neighbours: vec![],
        };
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["interfaces"][0]["mac"], "02:00:00:00:00:01");
        assert_eq!(json["interfaces"][0]["addresses"][0]["address"], "10.0.0.2");
        assert_eq!(json["routes"][0]["scope"], "universe");
        let back: NetworkPlan = serde_json::from_value(json).unwrap();
        assert_eq!(back, plan);
    }
}
