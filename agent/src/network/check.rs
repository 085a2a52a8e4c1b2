//! Checking UpdateNetwork's request as a whole, before anything is changed.
//!
//! The request comes from the host, but it is checked like any input: limits on the counts,
//! names the kernel takes, MACs of real NICs, addresses and prefixes of one family per route,
//! and devices that are the request's own interfaces.
use std::collections::HashSet;
use std::net::IpAddr;

use sandpod_protocol::agent as pb;

use super::{Family, Interface, IpNet, MacAddr, Neighbour, NetworkConfig, NetworkError, Route};

pub const MAX_INTERFACES: usize = 8;
pub const MAX_ROUTES: usize = 256;
pub const MAX_NEIGHBOURS: usize = 256;
/// IFNAMSIZ less the NUL.
pub const MAX_NAME_LEN: usize = 15;
/// The smallest MTU IPv4 allows (and the kernel's ETH_MIN_MTU).
pub const MIN_MTU: u32 = 68;
pub const MAX_MTU: u32 = 65535;
/// Below this MTU the kernel turns IPv6 off on the interface.
pub const MIN_IPV6_MTU: u32 = 1280;
/// RT_SCOPE_UNIVERSE, RT_SCOPE_SITE, RT_SCOPE_LINK, RT_SCOPE_HOST.
pub const SCOPES: [u32; 4] = [0, 200, 253, 254];

fn invalid(message: String) -> NetworkError {
    NetworkError::InvalidArgument(message)
}

/// Checks the whole request; the checked form is what [`apply`](super::apply) takes.
pub fn check(req: &pb::UpdateNetworkRequest) -> Result<NetworkConfig, NetworkError> {
    for (what, count, max) in [
        ("interfaces", req.interfaces.len(), MAX_INTERFACES),
        ("routes", req.routes.len(), MAX_ROUTES),
        ("neighbours", req.neighbours.len(), MAX_NEIGHBOURS),
    ] {
        if count > max {
            return Err(invalid(format!("{count} {what}: at most {max}")));
        }
    }
    let mut names = HashSet::new();
    let mut macs = HashSet::new();
    let mut interfaces = Vec::with_capacity(req.interfaces.len());
    for (i, iface) in req.interfaces.iter().enumerate() {
        let iface = check_interface(iface).map_err(|e| invalid(format!("interface {i}: {e}")))?;
        if !names.insert(iface.name.clone()) {
            return Err(invalid(format!(
                "interface {i}: the name {:?} is given twice",
                iface.name
            )));
        }
        if !macs.insert(iface.mac) {
            return Err(invalid(format!(
                "interface {i}: the MAC {} is given twice",
                iface.mac
            )));
        }
        interfaces.push(iface);
    }
    let routes = req
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| check_route(r, &names).map_err(|e| invalid(format!("route {i}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let neighbours = req
        .neighbours
        .iter()
        .enumerate()
        .map(|(i, n)| {
            check_neighbour(n, &names).map_err(|e| invalid(format!("neighbour {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetworkConfig {
        interfaces,
        routes,
        neighbours,
    })
}

fn check_interface(iface: &pb::NetInterface) -> Result<Interface, String> {
    check_name(&iface.name)?;
    let mac = check_mac(&iface.mac)?;
    let mtu = match iface.mtu {
        0 => None,
        m if (MIN_MTU..=MAX_MTU).contains(&m) => Some(m),
        m => {
            return Err(format!(
                "MTU {m}: expected 0 (keep the NIC's) or {MIN_MTU} to {MAX_MTU}"
            ))
        }
    };
    let mut addresses = Vec::with_capacity(iface.addresses.len());
    for a in &iface.addresses {
        let net = check_net(a)?;
        if net.address.is_unspecified() || net.address.is_multicast() {
            return Err(format!(
                "address {net}: not an interface address (unspecified or multicast)"
            ));
        }
        if let (IpAddr::V6(_), Some(m)) = (net.address, mtu) {
            if m < MIN_IPV6_MTU {
                return Err(format!(
                    "address {net}: IPv6 needs an MTU of at least {MIN_IPV6_MTU}, not {m}"
                ));
            }
        }
        addresses.push(net);
    }
    Ok(Interface {
        name: iface.name.clone(),
        mac,
        mtu,
        addresses,
    })
}

/// A name the kernel takes for a link (`dev_valid_name`), and not `lo`'s.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("name {name:?}: expected 1 to {MAX_NAME_LEN} bytes"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "name {name:?}: no '/', ':', whitespace or control characters allowed"
        ));
    }
    if name == "." || name == ".." || name == "lo" {
        return Err(format!("name {name:?} is reserved"));
    }
    Ok(())
}

/// A MAC a NIC can have: unicast and not all zeros.
fn check_mac(s: &str) -> Result<MacAddr, String> {
    let mac = MacAddr::parse(s).ok_or_else(|| format!("{s:?} is not a MAC (xx:xx:xx:xx:xx:xx)"))?;
    if mac.is_zero() {
        return Err(format!("MAC {mac} is all zeros"));
    }
    if mac.is_multicast() {
        return Err(format!("MAC {mac} is a multicast address"));
    }
    Ok(mac)
}

fn check_ip(what: &str, s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("{what} {s:?} is not an IPv4 or IPv6 address"))
}

fn check_net(net: &pb::IpNet) -> Result<IpNet, String> {
    let address = check_ip("address", &net.address)?;
    let max = match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    if net.prefix_len > max {
        return Err(format!(
            "{}/{}: the prefix length is at most {max}",
            net.address, net.prefix_len
        ));
    }
    Ok(IpNet {
        address,
        prefix_len: net.prefix_len as u8,
    })
}

/// True if `net`'s address has no bit set past its prefix (`10.99.0.0/16`, not `10.99.0.1/16`).
fn is_network(net: &IpNet) -> bool {
    let host_bits = |bits: u32, addr: u128| {
        let keep = u32::from(net.prefix_len);
        keep >= bits || addr & (u128::MAX >> (128 - bits + keep)) == 0
    };
    match net.address {
        IpAddr::V4(a) => host_bits(32, u128::from(u32::from(a))),
        IpAddr::V6(a) => host_bits(128, u128::from(a)),
    }
}

fn check_device(device: &str, names: &HashSet<String>) -> Result<(), String> {
    if names.contains(device) {
        Ok(())
    } else {
        Err(format!(
            "device {device:?} is none of the request's interfaces"
        ))
    }
}

fn check_route(r: &pb::NetRoute, names: &HashSet<String>) -> Result<Route, String> {
    check_device(&r.device, names)?;
    let destination = r.destination.as_ref().map(check_net).transpose()?;
    if let Some(d) = &destination {
        if !is_network(d) {
            return Err(format!("destination {d}: bits set past the prefix length"));
        }
    }
    let gateway = match r.gateway.as_str() {
        "" => None,
        g => Some(check_ip("gateway", g)?),
    };
    let source = match r.source.as_str() {
        "" => None,
        s => Some(check_ip("source", s)?),
    };
    let families: Vec<Family> = [destination.map(|d| d.address), gateway, source]
        .iter()
        .flatten()
        .map(Family::of)
        .collect();
    let Some(&family) = families.first() else {
        return Err(
            "a default route needs a gateway or a source address (to know its family)".into(),
        );
    };
    if families.iter().any(|f| *f != family) {
        return Err("destination, gateway and source mix IPv4 and IPv6".into());
    }
    if let Some(g) = gateway {
        if g.is_unspecified() || g.is_multicast() {
            return Err(format!("gateway {g}: unspecified or multicast"));
        }
    }
    if !SCOPES.contains(&r.scope) {
        return Err(format!(
            "scope {}: expected 0 (universe), 200 (site), 253 (link) or 254 (host)",
            r.scope
        ));
    }
    Ok(Route {
        family,
        destination,
        gateway,
        device: r.device.clone(),
        source,
        scope: r.scope as u8,
        metric: (r.metric != 0).then_some(r.metric),
    })
}

fn check_neighbour(n: &pb::NetNeighbour, names: &HashSet<String>) -> Result<Neighbour, String> {
    check_device(&n.device, names)?;
    let address = check_ip("address", &n.address)?;
    if address.is_unspecified() || address.is_multicast() {
        return Err(format!("address {address}: unspecified or multicast"));
    }
    let mac = check_mac(&n.mac)?;
    Ok(Neighbour {
        address,
        mac,
        device: n.device.clone(),
    })
}
