//! [`apply`] in throwaway network namespaces (a thread `unshare(CLONE_NEWNET)`s, runs a
//! current-thread tokio runtime there, and the namespace goes with the thread). The NICs stand
//! in as veth pairs with known MACs (a veth is an Ethernet link like virtio-net; `dummy` is not
//! in every kernel). Root only.
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use nix::sched::{unshare, CloneFlags};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, LinkVeth};
use sandpod_protocol::agent as pb;

use super::*;

const NIC_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x58, 0x00, 0x05];
const PEER_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x58, 0x00, 0x09];
const GATEWAY_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x58, 0x00, 0x01];

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (CAP_NET_ADMIN) to make network namespaces"
    );
}

/// Runs `work` with a netlink handle in a new network namespace of its own (gone after).
fn in_new_netns<T, F, Fut>(work: F) -> T
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    require_root();
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            let (connection, handle, _) = rtnetlink::new_connection().expect("netlink socket");
            let conn = tokio::spawn(connection);
            let result = work(handle).await;
            conn.abort();
            result
        })
    })
    .join()
    .expect("the test's namespace thread panicked")
}

/// A veth pair `name` (MAC `mac`, left down, like a fresh NIC) and `peer` (MAC `peer_mac`, up).
async fn add_nic(h: &Handle, name: &str, mac: [u8; 6], peer: &str, peer_mac: [u8; 6]) {
    h.link()
        .add(LinkVeth::new(name, peer).address(mac.to_vec()).build())
        .execute()
        .await
        .expect("adding a veth pair");
    let peer_index = link(h, peer).await.header.index;
    h.link()
        .set(
            LinkUnspec::new_with_index(peer_index)
                .address(peer_mac.to_vec())
                .up()
                .build(),
        )
        .execute()
        .await
        .expect("setting the peer's MAC, up");
}

async fn links(h: &Handle) -> Vec<LinkMessage> {
    h.link().get().execute().try_collect().await.expect("links")
}

fn name_of(l: &LinkMessage) -> Option<&str> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn mtu_of(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

fn mac_of(l: &LinkMessage) -> Option<MacAddr> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(b) => MacAddr::from_bytes(b),
        _ => None,
    })
}

async fn link(h: &Handle, name: &str) -> LinkMessage {
    links(h)
        .await
        .into_iter()
        .find(|l| name_of(l) == Some(name))
        .unwrap_or_else(|| panic!("no link {name}"))
}

/// The addresses on link `index`, but IPv6 link-local ones, with their flags.
async fn addresses(h: &Handle, index: u32) -> Vec<(IpNet, AddressFlags)> {
    let all: Vec<AddressMessage> = h
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .expect("addresses");
    all.iter()
        .filter(|a| a.header.index == index)
        .filter_map(|a| {
            let mut ip = None;
            let mut flags = AddressFlags::empty();
            for attr in &a.attributes {
                match attr {
                    AddressAttribute::Local(l) => ip = Some(*l),
                    AddressAttribute::Address(l) if ip.is_none() => ip = Some(*l),
                    AddressAttribute::Flags(f) => flags = *f,
                    _ => {}
                }
            }
            let ip = ip?;
            if let IpAddr::V6(v6) = ip {
                if v6.is_unicast_link_local() {
                    return None;
                }
            }
            Some((
                IpNet {
                    address: ip,
                    prefix_len: a.header.prefix_len,
                },
                flags,
            ))
        })
        .collect()
}

/// A route as read back: destination (None: default), gateway, output interface, metric.
type RouteRow = (Option<IpNet>, Option<IpAddr>, Option<u32>, Option<u32>);

/// The IPv4 routes of the main table but the kernel's own (from the addresses).
async fn static_routes_v4(h: &Handle) -> Vec<RouteRow> {
    let mut query = RouteMessage::default();
    query.header.address_family = AddressFamily::Inet;
    let dump: Vec<RouteMessage> = h
        .route()
        .get(query)
        .execute()
        .try_collect()
        .await
        .expect("routes");
    let ip = |a: &RouteAddress| match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    dump.iter()
        .filter(|r| {
            r.header.protocol == RouteProtocol::Static
                && r.header.table == RouteHeader::RT_TABLE_MAIN
        })
        .map(|r| {
            let (mut dst, mut gw, mut oif, mut metric) = (None, None, None, None);
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(d) => dst = ip(d),
                    RouteAttribute::Gateway(g) => gw = ip(g),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Priority(p) => metric = Some(*p),
                    _ => {}
                }
            }
            let dst = dst.map(|address| IpNet {
                address,
                prefix_len: r.header.destination_prefix_length,
            });
            (dst, gw, oif, metric)
        })
        .collect()
}

/// The permanent neighbours: (address, MAC, interface index).
async fn permanent_neighbours(h: &Handle) -> Vec<(IpAddr, MacAddr, u32)> {
    let dump: Vec<NeighbourMessage> = h
        .neighbours()
        .get()
        .execute()
        .try_collect()
        .await
        .expect("neighbours");
    dump.iter()
        .filter(|n| n.header.state == NeighbourState::Permanent)
        .filter_map(|n| {
            let mut ip = None;
            let mut mac = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                        ip = Some(IpAddr::V4(*v4))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                        ip = Some(IpAddr::V6(*v6))
                    }
                    NeighbourAttribute::LinkLayerAddress(b) => mac = MacAddr::from_bytes(b),
                    _ => {}
                }
            }
            Some((ip?, mac?, n.header.ifindex))
        })
        .collect()
}

fn net(address: &str, prefix_len: u32) -> pb::IpNet {
    let mut n = pb::IpNet::new();
    n.address = address.into();
    n.prefix_len = prefix_len;
    n
}

fn interface(name: &str, mac: [u8; 6]) -> pb::NetInterface {
    let mut i = pb::NetInterface::new();
    i.name = name.into();
    i.mac = MacAddr(mac).to_string();
    i
}

/// The plan of the brief: `eth0` with MTU 1400, 10.88.0.5/16 and fd00::5/64; a route to
/// 10.99.0.0/16 via 10.88.0.1 (metric 50) and a default route via 10.88.0.1; a permanent
/// neighbour for the gateway.
fn plan(mac: [u8; 6]) -> NetworkConfig {
    let mut eth0 = interface("eth0", mac);
    eth0.mtu = 1400;
    eth0.addresses = vec![net("10.88.0.5", 16), net("fd00::5", 64)];
    let mut to_net = pb::NetRoute::new();
    to_net.destination = Some(net("10.99.0.0", 16)).into();
    to_net.gateway = "10.88.0.1".into();
    to_net.device = "eth0".into();
    to_net.metric = 50;
    let mut default = pb::NetRoute::new();
    default.gateway = "10.88.0.1".into();
    default.device = "eth0".into();
    let mut gw = pb::NetNeighbour::new();
    gw.address = "10.88.0.1".into();
    gw.mac = MacAddr(GATEWAY_MAC).to_string();
    gw.device = "eth0".into();
    let mut req = pb::UpdateNetworkRequest::new();
    req.interfaces = vec![eth0];
    req.routes = vec![to_net, default];
    req.neighbours = vec![gw];
    check(&req).expect("the test's plan is valid")
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[test]
#[ignore = "needs root (CAP_NET_ADMIN) to make network namespaces: run by `make unit` as root (--include-ignored), as in CI"]
fn applies_the_plan_and_again() {
    in_new_netns(|h| async move {
        add_nic(&h, "ens3", NIC_MAC, "peer0", PEER_MAC).await;
        let index = link(&h, "ens3").await.header.index;
        let config = plan(NIC_MAC);
        apply(&config).await.expect("apply");

        let eth0 = link(&h, "eth0").await;
        assert_eq!(
            eth0.header.index, index,
            "the NIC was renamed, not replaced"
        );
        assert_eq!(mac_of(&eth0), Some(MacAddr(NIC_MAC)));
        assert_eq!(mtu_of(&eth0), Some(1400));
        assert!(eth0.header.flags.contains(LinkFlags::Up), "eth0 is up");

        let addrs = addresses(&h, index).await;
        let nets: Vec<IpNet> = addrs.iter().map(|(n, _)| *n).collect();
        assert_eq!(nets.len(), 2, "{nets:?}");
        for a in &config.interfaces[0].addresses {
            assert!(nets.contains(a), "{a} missing from {nets:?}");
        }
        let (_, v6_flags) = addrs.iter().find(|(n, _)| n.address.is_ipv6()).unwrap();
        assert!(v6_flags.contains(AddressFlags::Nodad), "{v6_flags:?}");
        assert!(!v6_flags.contains(AddressFlags::Tentative), "{v6_flags:?}");

        let routes = static_routes_v4(&h).await;
        let gw = Some(v4(10, 88, 0, 1));
        let to_net = Some(IpNet {
            address: v4(10, 99, 0, 0),
            prefix_len: 16,
        });
        assert!(
            routes.contains(&(to_net, gw, Some(index), Some(50))),
            "{routes:?}"
        );
        assert!(
            routes.contains(&(None, gw, Some(index), None)),
            "{routes:?}"
        );
        assert_eq!(routes.len(), 2, "{routes:?}");

        let neighbours = permanent_neighbours(&h).await;
        assert_eq!(
            neighbours,
            vec![(v4(10, 88, 0, 1), MacAddr(GATEWAY_MAC), index)]
        );

        // A retry (the host's call timed out, say) finds everything there and succeeds.
        apply(&config).await.expect("apply again");
        assert_eq!(addresses(&h, index).await.len(), 2);
        assert_eq!(static_routes_v4(&h).await.len(), 2);
        assert_eq!(permanent_neighbours(&h).await.len(), 1);
    });
}

#[test]
#[ignore = "needs root (CAP_NET_ADMIN) to make network namespaces: run by `make unit` as root (--include-ignored), as in CI"]
fn an_unknown_mac_changes_nothing() {
    in_new_netns(|h| async move {
        add_nic(&h, "ens3", NIC_MAC, "peer0", PEER_MAC).await;
        let index = link(&h, "ens3").await.header.index;
        let before_mtu = mtu_of(&link(&h, "ens3").await);
        // The known NIC first: nothing may be done to it either.
        let mut config = plan(NIC_MAC);
        let missing = MacAddr([0x02, 0, 0, 0, 0, 0x77]);
        config.interfaces.push(Interface {
            name: "eth1".into(),
            mac: missing,
            mtu: None,
            addresses: vec![],
        });
        let e = apply(&config).await.unwrap_err();
        assert!(
            matches!(e, NetworkError::NoSuchMac(m) if m == missing),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "no network interface with MAC 02:00:00:00:00:77"
        );
        let ens3 = link(&h, "ens3").await;
        assert_eq!(mtu_of(&ens3), before_mtu);
        assert!(!ens3.header.flags.contains(LinkFlags::Up));
        assert!(addresses(&h, index).await.is_empty());
        assert!(static_routes_v4(&h).await.is_empty());
        assert!(permanent_neighbours(&h).await.is_empty());
    });
}

#[test]
#[ignore = "needs root (CAP_NET_ADMIN) to make network namespaces: run by `make unit` as root (--include-ignored), as in CI"]
fn swaps_names_and_says_which_route_failed() {
    in_new_netns(|h| async move {
        // Two NICs named the wrong way round: the one to become eth0 is eth1 and back.
        let other_mac = [0x02, 0x42, 0x0a, 0x58, 0x00, 0x06];
        add_nic(&h, "eth1", NIC_MAC, "eth0", other_mac).await;
        let mut req = pb::UpdateNetworkRequest::new();
        req.interfaces = vec![interface("eth0", NIC_MAC), interface("eth1", other_mac)];
        req.interfaces[0].addresses = vec![net("10.88.0.5", 16)];
        let mut r = pb::NetRoute::new();
        r.destination = Some(net("10.99.0.0", 16)).into();
        r.gateway = "192.168.7.1".into();
        r.device = "eth0".into();
        req.routes = vec![r];
        let config = check(&req).unwrap();
        let e = apply(&config).await.unwrap_err();
        let message = e.to_string();
        assert!(
            message.starts_with("adding route 10.99.0.0/16 via 192.168.7.1 dev eth0: "),
            "{message}"
        );
        assert!(
            message.ends_with("(os error 101)"),
            "ENETUNREACH: {message}"
        );
        assert_eq!(mac_of(&link(&h, "eth0").await), Some(MacAddr(NIC_MAC)));
        assert_eq!(mac_of(&link(&h, "eth1").await), Some(MacAddr(other_mac)));
        assert!(link(&h, "eth1").await.header.flags.contains(LinkFlags::Up));
    });
}
