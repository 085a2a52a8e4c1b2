//! `scan`: the namespace's interfaces, routes and static neighbours, read through netlink.
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkLayerType, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::Handle;
use tracing::{debug, info};

use super::error::{nl, NetworkError};
use super::netns::run_in_netns;
use super::plan::{IpNet, MacAddr, NeighbourPlan, NetworkPlan, PlanInterface, RoutePlan, Scope};
use super::tap::is_our_tap_name;

/// Reads the network namespace at `netns`: its L2 interfaces but `lo` and the taps
/// [`mirror`](super::mirror) made, with their addresses, routes and permanent neighbours.
pub fn scan(netns: &Path) -> Result<NetworkPlan, NetworkError> {
    let plan = run_in_netns(netns, |handle| async move { scan_with(&handle).await })?;
    info!(
        netns = %netns.display(),
        interfaces = ?plan.interfaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        routes = plan.routes.len(),
        neighbours = plan.neighbours.len(),
        "scanned the pod's network namespace"
    );
    Ok(plan)
}

/// Every interface of the handle's namespace.
pub(crate) async fn list_links(handle: &Handle) -> Result<Vec<LinkMessage>, NetworkError> {
    handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing interfaces"))
}

/// [`scan`] with a netlink handle already in the namespace.
pub(crate) async fn scan_with(handle: &Handle) -> Result<NetworkPlan, NetworkError> {
    let links = list_links(handle).await?;
    let mut interfaces: Vec<PlanInterface> = links.iter().filter_map(interface_of).collect();
    interfaces.sort_by_key(|i| i.index);
    if interfaces.is_empty() {
        return Ok(NetworkPlan::default());
    }
    let names: HashMap<u32, String> = interfaces
        .iter()
        .map(|i| (i.index, i.name.clone()))
        .collect();

    let addresses: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing addresses"))?;
    for a in addresses {
        let Some(iface) = interfaces.iter_mut().find(|i| i.index == a.header.index) else {
            continue;
        };
        let local = a.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let address = a.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        let Some(ip) = local.or(address) else {
            continue;
        };
        if let IpAddr::V6(v6) = ip {
            if v6.is_unicast_link_local() {
                continue;
            }
        }
        iface.addresses.push(IpNet {
            address: ip,
            prefix_len: a.header.prefix_len,
        });
    }

    let mut routes = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut query = RouteMessage::default();
        query.header.address_family = family;
        let dump: Vec<RouteMessage> = handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing routes"))?;
        routes.extend(dump.iter().filter_map(|r| route_of(r, &names)));
    }
    // Routes through a gateway after the ones that make the gateway reachable: the order the
    // guest can add them in.
    routes.sort_by_key(|r: &RoutePlan| r.gateway.is_some());

    let dump: Vec<_> = handle
        .neighbours()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing neighbours"))?;
    let neighbours = dump
        .iter()
        .filter(|n| n.header.state == NeighbourState::Permanent)
        .filter_map(|n| {
            let device = names.get(&n.header.ifindex)?.clone();
            let mut address = None;
            let mut mac = None;
            for attr in &n.attributes {
                match attr {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                        address = Some(IpAddr::V4(*ip))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                        address = Some(IpAddr::V6(*ip))
                    }
                    NeighbourAttribute::LinkLayerAddress(bytes) => mac = MacAddr::from_bytes(bytes),
                    _ => {}
                }
            }
            Some(NeighbourPlan {
                address: address?,
                mac: mac?,
                device,
            })
        })
        .collect();

    Ok(NetworkPlan {
        interfaces,
        routes,
        neighbours,
    })
}

/// The interface a link is, if it is one the guest takes over: Ethernet (so not `lo`, not an
/// L3 tunnel), with a MAC, not one of our taps.
fn interface_of(link: &LinkMessage) -> Option<PlanInterface> {
    let mut name = None;
    let mut mac = None;
    let mut mtu = None;
    for attr in &link.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(bytes) => mac = MacAddr::from_bytes(bytes),
            LinkAttribute::Mtu(m) => mtu = Some(*m),
            _ => {}
        }
    }
    let name = name?;
    if link.header.link_layer_type != LinkLayerType::Ether {
        debug!(interface = name, kind = ?link.header.link_layer_type, "not an Ethernet interface: left out");
        return None;
    }
    if is_our_tap_name(&name) {
        return None;
    }
    let (Some(mac), Some(mtu)) = (mac, mtu) else {
        debug!(interface = name, "no MAC or MTU: left out");
        return None;
    };
    Some(PlanInterface {
        name,
        index: link.header.index,
        mac,
        mtu,
        addresses: Vec::new(),
    })
}

/// The plan's form of a route, if it is one the guest needs (see [`NetworkPlan::routes`]).
fn route_of(route: &RouteMessage, names: &HashMap<u32, String>) -> Option<RoutePlan> {
    let h = &route.header;
    let table = route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(h.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN)
        || h.kind != RouteType::Unicast
        || h.protocol == RouteProtocol::Kernel
    {
        return None;
    }
    let mut destination = None;
    let mut gateway = None;
    let mut source = None;
    let mut oif = None;
    let mut metric = None;
    for attr in &route.attributes {
        match attr {
            RouteAttribute::Destination(a) => destination = ip_of(a),
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            RouteAttribute::PrefSource(a) => source = ip_of(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = Some(*p),
            _ => {}
        }
    }
    let device = names.get(&oif?)?.clone();
    if let Some(IpAddr::V6(v6)) = destination {
        if v6.is_multicast() {
            return None;
        }
    }
    let destination = match destination {
        Some(address) if h.destination_prefix_length > 0 => Some(IpNet {
            address,
            prefix_len: h.destination_prefix_length,
        }),
        _ => None,
    };
    Some(RoutePlan {
        destination,
        gateway,
        device,
        source,
        scope: match h.scope {
            RouteScope::Universe => Scope::Universe,
            RouteScope::Site => Scope::Site,
            RouteScope::Link => Scope::Link,
            RouteScope::Host => Scope::Host,
            RouteScope::NoWhere => Scope::Nowhere,
            RouteScope::Other(s) => Scope::Other(s),
            _ => Scope::Other(u8::from(h.scope)),
        },
        metric,
    })
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}
