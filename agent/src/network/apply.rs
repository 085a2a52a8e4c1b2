//! Configuring the guest's network through netlink (`rtnetlink`), from a checked request.
//!
//! Per interface (found by MAC among the guest's links): set down and renamed if its name
//! differs (the kernel renames only a link that is down), the MTU, the addresses (IPv6 ones
//! with IFA_F_NODAD: the host's side already owns the address, so it is usable at once rather
//! than tentative for a second of duplicate detection), up. Then the routes in order, then the
//! neighbours (replaced if present). An address or route that exists already is no error, so a
//! retry after a failure half way goes through.
use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::packet_route::route::{RouteMessage, RouteScope};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use tokio::sync::Mutex;
use tracing::{debug, info};

use super::error::{errno, nl};
use super::{Family, Interface, IpNet, MacAddr, NetworkConfig, NetworkError, Route};

/// One UpdateNetwork at a time: two interleaved would rename and flush each other's links.
static APPLYING: Mutex<()> = Mutex::const_new(());

/// Applies `config` to the caller's network namespace (the guest's). Must run in a tokio
/// runtime (the netlink connection is a task of it while this runs).
pub async fn apply(config: &NetworkConfig) -> Result<(), NetworkError> {
    let _one = APPLYING.lock().await;
    let (connection, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Connection)?;
    let conn = tokio::spawn(connection);
    let result = apply_with(&handle, config).await;
    conn.abort();
    result
}

/// A guest link: its index and current name.
struct Link {
    index: u32,
    name: String,
}

/// [`apply`] with a netlink handle already open.
pub(crate) async fn apply_with(
    handle: &Handle,
    config: &NetworkConfig,
) -> Result<(), NetworkError> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing network interfaces"))?;
    // Every MAC is found, every device named, before anything changes.
    let found = config
        .interfaces
        .iter()
        .map(|iface| find_by_mac(&links, iface.mac).ok_or(NetworkError::NoSuchMac(iface.mac)))
        .collect::<Result<Vec<Link>, _>>()?;
    let route_links = config
        .routes
        .iter()
        .map(|r| index_of(config, &found, &r.device))
        .collect::<Result<Vec<u32>, _>>()?;
    let neighbour_links = config
        .neighbours
        .iter()
        .map(|n| index_of(config, &found, &n.device))
        .collect::<Result<Vec<u32>, _>>()?;

    // A target name held by another of our links (eth0 and eth1 swapped): those links get a
    // temporary name first, so that no rename finds its name taken by a link yet to be renamed.
    let mut current: Vec<String> = found.iter().map(|l| l.name.clone()).collect();
    for (i, (iface, link)) in config.interfaces.iter().zip(&found).enumerate() {
        let taken_by_ours = found
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other.name == iface.name);
        if link.name != iface.name && taken_by_ours {
            // At most 15 bytes: "spnet" and up to 10 digits.
            let temp = format!("spnet{}", link.index);
            set_down(handle, link.index, &current[i]).await?;
            rename(handle, link.index, &current[i], &temp).await?;
            current[i] = temp;
        }
    }
    for ((iface, link), name) in config.interfaces.iter().zip(&found).zip(current.iter_mut()) {
        configure(handle, iface, link.index, name).await?;
    }
    for (route, &index) in config.routes.iter().zip(&route_links) {
        add_route(handle, route, index).await?;
    }
    for (n, &index) in config.neighbours.iter().zip(&neighbour_links) {
        handle
            .neighbours()
            .add(index, n.address)
            .link_layer_address(&n.mac.0)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("adding neighbour {n}")))?;
        debug!("added neighbour {n} nud permanent");
    }
    info!(
        interfaces = ?config.interfaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        routes = config.routes.len(),
        neighbours = config.neighbours.len(),
        "configured the guest's network"
    );
    Ok(())
}

/// The link with `mac`, if any (`lo` and other MAC-less links never match).
fn find_by_mac(links: &[LinkMessage], mac: MacAddr) -> Option<Link> {
    links.iter().find_map(|link| {
        let mut name = None;
        let mut matches = false;
        for attr in &link.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Address(bytes) => matches = MacAddr::from_bytes(bytes) == Some(mac),
                _ => {}
            }
        }
        matches.then(|| Link {
            index: link.header.index,
            name: name.unwrap_or_default(),
        })
    })
}

/// The index of the interface the request names `device` ([`check`](super::check) made sure it
/// is one of them).
fn index_of(config: &NetworkConfig, found: &[Link], device: &str) -> Result<u32, NetworkError> {
    config
        .interfaces
        .iter()
        .position(|i| i.name == device)
        .map(|i| found[i].index)
        .ok_or_else(|| {
            NetworkError::InvalidArgument(format!(
                "device {device:?} is none of the request's interfaces"
            ))
        })
}

async fn set_down(handle: &Handle, index: u32, name: &str) -> Result<(), NetworkError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).down().build())
        .execute()
        .await
        .map_err(nl(format!("setting {name} down")))
}

async fn rename(handle: &Handle, index: u32, from: &str, to: &str) -> Result<(), NetworkError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).name(to).build())
        .execute()
        .await
        .map_err(nl(format!("renaming {from} to {to}")))?;
    debug!("renamed {from} to {to}");
    Ok(())
}

/// One interface: its name, MTU and addresses, then up. `name` is the link's current name, the
/// requested one once renamed.
async fn configure(
    handle: &Handle,
    iface: &Interface,
    index: u32,
    name: &mut String,
) -> Result<(), NetworkError> {
    if *name != iface.name {
        set_down(handle, index, name).await?;
        rename(handle, index, name, &iface.name).await?;
        *name = iface.name.clone();
    }
    if let Some(mtu) = iface.mtu {
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await
            .map_err(nl(format!("setting the MTU of {name} to {mtu}")))?;
    }
    for net in &iface.addresses {
        add_address(handle, index, name, net).await?;
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl(format!("setting {name} up")))?;
    info!(
        interface = %name,
        mac = %iface.mac,
        mtu = ?iface.mtu,
        addresses = ?iface.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "interface configured and up"
    );
    Ok(())
}

async fn add_address(
    handle: &Handle,
    index: u32,
    name: &str,
    net: &IpNet,
) -> Result<(), NetworkError> {
    let mut req = handle.address().add(index, net.address, net.prefix_len);
    if net.address.is_ipv6() {
        let msg = req.message_mut();
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => {
            debug!("address {net} on {name} exists already");
            Ok(())
        }
        Err(e) => Err(nl(format!("adding address {net} to {name}"))(e)),
    }
}

/// The netlink message for `route` through the link `index`.
fn route_message(route: &Route, index: u32) -> Result<RouteMessage, String> {
    let mut b = RouteMessageBuilder::<IpAddr>::new();
    b.get_mut().header.address_family = match route.family {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    let mut b = b
        .output_interface(index)
        .scope(RouteScope::from(route.scope));
    if let Some(d) = route.destination {
        b = b
            .destination_prefix(d.address, d.prefix_len)
            .map_err(|e| e.to_string())?;
    }
    if let Some(g) = route.gateway {
        b = b.gateway(g).map_err(|e| e.to_string())?;
    }
    if let Some(s) = route.source {
        b = b.pref_source(s).map_err(|e| e.to_string())?;
    }
    if let Some(m) = route.metric {
        b = b.priority(m);
    }
    Ok(b.build())
}

async fn add_route(handle: &Handle, route: &Route, index: u32) -> Result<(), NetworkError> {
    let what = format!("adding route {route}");
    let msg = route_message(route, index)
        .map_err(|e| NetworkError::InvalidArgument(format!("{what}: {e}")))?;
    match handle.route().add(msg).execute().await {
        Ok(()) => {
            debug!("added route {route}");
            Ok(())
        }
        Err(e) if errno(&e) == Some(libc::EEXIST) => {
            debug!("route {route} exists already");
            Ok(())
        }
        Err(e) => Err(nl(what)(e)),
    }
}
