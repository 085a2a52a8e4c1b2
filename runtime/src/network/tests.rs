//! Tests in real network namespaces (made for each test, gone with it): a veth pair whose pod
//! end (`eth0`) is configured like a CNI plugin would and whose other end is in a second
//! namespace standing for the host. They need root and /dev/net/tun.
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::mirror::link_index;
use super::netns::run_in_netns;
use super::tc::{has_ingress, redirect_targets};
use super::*;

const ROOT_ONLY: &str = "needs root and /dev/net/tun";
const POD_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x01, 0x00, 0x02];
const HOST_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x01, 0x00, 0x01];
const POD_MTU: u32 = 1400;
/// An EtherType for local experiments (IEEE 802 "local experimental 1"): nothing else sends it.
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

fn require_root_and_tun() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test {ROOT_ONLY}: it makes network namespaces, veths and taps (run as root)"
    );
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "this test {ROOT_ONLY}: /dev/net/tun is missing"
    );
}

/// A new network namespace, alive as long as this value (it holds an fd on it).
struct TestNetns(File);

impl TestNetns {
    fn new() -> TestNetns {
        require_root_and_tun();
        let ns = std::thread::spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            File::open("/proc/thread-self/ns/net").expect("opening the new namespace")
        })
        .join()
        .expect("the thread making a namespace panicked");
        TestNetns(ns)
    }

    /// A path to the namespace, as the runtime gets one.
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.0.as_raw_fd()))
    }

    fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Runs `work` in `ns`, panicking on errors.
fn in_ns<T, F, Fut>(ns: &TestNetns, work: F) -> T
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, NetworkError>>,
{
    run_in_netns(&ns.path(), work).expect("netlink work in the test namespace")
}

fn nl_err(what: &'static str) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    move |source| NetworkError::Netlink {
        what: what.into(),
        source,
    }
}

/// The pod and the "host" it is plugged into: `eth0` in the pod (MAC, MTU 1400, 10.1.0.2/24
/// and fd00:1::2/64, a route to 10.2.0.0/16 and a default route via 10.1.0.1, a permanent
/// neighbour for the gateway), its peer `veth-host` up in the host namespace.
struct World {
    pod: TestNetns,
    host: TestNetns,
}

fn world() -> World {
    let pod = TestNetns::new();
    let host = TestNetns::new();
    add_pod_veth(&pod, &host, "eth0", "veth-host", POD_MAC, HOST_MAC);
    in_ns(&pod, |h| async move {
        let eth0 = link_index(&h, "eth0").await?;
        h.address()
            .add(eth0, IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)), 24)
            .execute()
            .await
            .map_err(nl_err("address"))?;
        h.address()
            .add(eth0, "fd00:1::2".parse().unwrap(), 64)
            .execute()
            .await
            .map_err(nl_err("address v6"))?;
        let gw = Ipv4Addr::new(10, 1, 0, 1);
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::new(10, 2, 0, 0), 16)
            .gateway(gw)
            .output_interface(eth0)
            .build();
        h.route()
            .add(route)
            .execute()
            .await
            .map_err(nl_err("route"))?;
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gw)
            .output_interface(eth0)
            .build();
        h.route()
            .add(default)
            .execute()
            .await
            .map_err(nl_err("default route"))?;
        h.neighbours()
            .add(eth0, IpAddr::V4(gw))
            .link_layer_address(&HOST_MAC)
            .state(NeighbourState::Permanent)
            .execute()
            .await
            .map_err(nl_err("neighbour"))?;
        Ok(())
    });
    World { pod, host }
}

/// A veth pair: `name` in `pod` (MTU 1400, MAC `mac`, up), `peer` in `host` (MAC `peer_mac`,
/// up).
fn add_pod_veth(
    pod: &TestNetns,
    host: &TestNetns,
    name: &str,
    peer: &str,
    mac: [u8; 6],
    peer_mac: [u8; 6],
) {
    let host_fd = host.raw_fd();
    let (name, peer) = (name.to_string(), peer.to_string());
    let peer2 = peer.clone();
    in_ns(pod, move |h| async move {
        h.link()
            .add(
                LinkVeth::new(&name, &peer)
                    .mtu(POD_MTU)
                    .address(mac.to_vec())
                    .build(),
            )
            .execute()
            .await
            .map_err(nl_err("veth"))?;
        let peer_index = link_index(&h, &peer).await?;
        h.link()
            .set(
                LinkUnspec::new_with_index(peer_index)
                    .address(peer_mac.to_vec())
                    .setns_by_fd(host_fd)
                    .build(),
            )
            .execute()
            .await
            .map_err(nl_err("moving the peer"))?;
        let index = link_index(&h, &name).await?;
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl_err("veth up"))
    });
    in_ns(host, move |h| async move {
        let index = link_index(&h, &peer2).await?;
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl_err("peer up"))
    });
}

async fn links(h: &Handle) -> Result<Vec<LinkMessage>, NetworkError> {
    h.link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl_err("links"))
}

async fn tap_addresses(h: &Handle, index: u32) -> Result<Vec<IpAddr>, NetworkError> {
    let all: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl_err("addresses"))?;
    Ok(all
        .iter()
        .flat_map(|a| &a.attributes)
        .filter_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
        .collect())
}

fn link_names(ns: &TestNetns) -> Vec<String> {
    let all = in_ns(ns, |h| async move { links(&h).await });
    all.iter()
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
        })
        .collect()
}

#[test]
#[ignore = "needs root and /dev/net/tun (network namespaces, veths, taps): run by `make unit` as root (--include-ignored), as in CI"]
fn scan_finds_the_veth_with_its_mac_mtu_addresses_routes_and_neighbours() {
    let w = world();
    let here = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let plan = scan(&w.pod.path()).unwrap();
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        here,
        "the caller's namespace is unchanged"
    );
    assert_eq!(plan.interfaces.len(), 1, "{plan:#?}");
    let eth0 = &plan.interfaces[0];
    assert_eq!(eth0.name, "eth0");
    assert_eq!(
        eth0.index,
        in_ns(&w.pod, |h| async move { link_index(&h, "eth0").await })
    );
    assert_eq!(eth0.mac, MacAddr(POD_MAC));
    assert_eq!(eth0.mtu, POD_MTU);
    let v4 = IpNet {
        address: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)),
        prefix_len: 24,
    };
    let v6 = IpNet {
        address: IpAddr::V6("fd00:1::2".parse::<Ipv6Addr>().unwrap()),
        prefix_len: 64,
    };
    assert_eq!(
        eth0.addresses,
        vec![v4, v6],
        "link-local addresses are left out"
    );

    let gw = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));
    let to_10_2 = RoutePlan {
        destination: Some(IpNet {
            address: IpAddr::V4(Ipv4Addr::new(10, 2, 0, 0)),
            prefix_len: 16,
        }),
        gateway: Some(gw),
        device: "eth0".into(),
        source: None,
        scope: Scope::Universe,
        metric: None,
    };
    let default = RoutePlan {
        destination: None,
        ..to_10_2.clone()
    };
    // The kernel's prefix routes (10.1.0.0/24, fd00:1::/64, fe80::/64) are not in the plan.
    assert_eq!(plan.routes.len(), 2, "{plan:#?}");
    assert!(
        plan.routes.contains(&to_10_2) && plan.routes.contains(&default),
        "{plan:#?}"
    );
    assert_eq!(
        plan.neighbours,
        vec![NeighbourPlan {
            address: gw,
            mac: MacAddr(HOST_MAC),
            device: "eth0".into(),
        }]
    );
    assert_ne!(here, std::fs::read_link(w.pod.path()).unwrap());
}

#[test]
#[ignore = "needs root and /dev/net/tun (network namespaces, veths, taps): run by `make unit` as root (--include-ignored), as in CI"]
fn mirror_redirects_both_ways_and_unmirror_leaves_nothing() {
    let w = world();
    let plan_before = scan(&w.pod.path()).unwrap();
    let m = mirror(&w.pod.path()).unwrap();
    assert_eq!(m.plan, plan_before);
    assert_eq!(m.interfaces.len(), 1);
    let mi = &m.interfaces[0];
    assert_eq!(
        (mi.interface.as_str(), mi.tap.as_str()),
        ("eth0", "tap0_kata")
    );
    let (eth0, tap) = (mi.index, mi.tap_index);

    // The tap: up, the veth's MTU; ingress qdiscs on both, a u32 filter on each redirecting
    // (mirred egress) to the other.
    let state = in_ns(&w.pod, move |h| async move {
        let tap_link = h
            .link()
            .get()
            .match_index(tap)
            .execute()
            .try_next()
            .await
            .map_err(nl_err("tap link"))?
            .expect("the tap exists");
        Ok((
            tap_link,
            has_ingress(&h, eth0).await?,
            has_ingress(&h, tap).await?,
            redirect_targets(&h, eth0).await?,
            redirect_targets(&h, tap).await?,
            tap_addresses(&h, tap).await?,
        ))
    });
    let (tap_link, eth0_ingress, tap_ingress, from_eth0, from_tap, tap_addrs) = state;
    assert!(
        tap_addrs.is_empty(),
        "the tap has no address (no IPv6 link-local): {tap_addrs:?}"
    );
    assert!(
        tap_link.attributes.contains(&LinkAttribute::Mtu(POD_MTU)),
        "{tap_link:?}"
    );
    assert!(tap_link.header.flags.contains(LinkFlags::Up));
    assert!(
        eth0_ingress && tap_ingress,
        "ingress qdiscs: eth0 {eth0_ingress}, tap {tap_ingress}"
    );
    assert_eq!(from_eth0, vec![tap], "eth0's filters redirect to the tap");
    assert_eq!(from_tap, vec![eth0], "the tap's filters redirect to eth0");
    // The tap is not scanned as one of the pod's interfaces.
    assert_eq!(scan(&w.pod.path()).unwrap(), plan_before);

    // Frames: the "host" reads and writes on the peer with a packet socket.
    let peer = in_ns(
        &w.host,
        |h| async move { link_index(&h, "veth-host").await },
    );
    let sock = in_ns(&w.host, move |_| async move { Ok(packet_socket(peer)) });

    // tap -> eth0 (egress) -> veth-host.
    let out = frame([0xff; 6], POD_MAC, b"sandpod: from the guest");
    let mut written = vec![0u8; VNET_HDR_LEN];
    written.extend_from_slice(&out);
    assert_eq!(
        nix::unistd::write(&mi.tap_fd, &written).unwrap(),
        written.len()
    );
    let got = read_until(sock.as_fd(), 0, b"sandpod: from the guest");
    assert_eq!(
        got, out,
        "the frame written into the tap comes out of the veth's peer"
    );

    // veth-host -> eth0 (ingress) -> tap.
    let inbound = frame(POD_MAC, HOST_MAC, b"sandpod: to the guest");
    assert_eq!(nix::unistd::write(&sock, &inbound).unwrap(), inbound.len());
    let got = read_until(mi.tap_fd.as_fd(), VNET_HDR_LEN, b"sandpod: to the guest");
    assert_eq!(
        &got[VNET_HDR_LEN..],
        &inbound[..],
        "the frame sent into the peer reaches the tap"
    );

    unmirror(&w.pod.path(), m).unwrap();
    let names = link_names(&w.pod);
    assert!(
        !names.iter().any(|n| is_our_tap_name(n)),
        "no tap left: {names:?}"
    );
    let eth0_ingress = in_ns(&w.pod, move |h| async move { has_ingress(&h, eth0).await });
    assert!(!eth0_ingress, "no ingress qdisc left on eth0");
    // Idempotent.
    teardown(&w.pod.path()).unwrap();
}

#[test]
#[ignore = "needs root and /dev/net/tun (network namespaces, veths, taps): run by `make unit` as root (--include-ignored), as in CI"]
fn teardown_without_the_fds_removes_the_veths_qdisc_and_a_leftover_tap() {
    let w = world();
    let pod = w.pod.path();
    // The taps' fds closed (the Mirrored dropped): the taps are gone, the veth's qdisc is not.
    let m = mirror(&pod).unwrap();
    let eth0 = m.interfaces[0].index;
    drop(m);
    assert!(in_ns(&w.pod, move |h| async move {
        has_ingress(&h, eth0).await
    }));
    teardown(&pod).unwrap();
    assert!(!in_ns(&w.pod, move |h| async move {
        has_ingress(&h, eth0).await
    }));

    // The taps still open elsewhere (a VMM's copy): teardown deletes them anyway.
    let m = mirror(&pod).unwrap();
    teardown(&pod).unwrap();
    let names = link_names(&w.pod);
    assert!(
        !names.iter().any(|n| is_our_tap_name(n)),
        "no tap left: {names:?}"
    );
    assert!(!in_ns(&w.pod, move |h| async move {
        has_ingress(&h, eth0).await
    }));
    // And unmirror after that has nothing left to do.
    unmirror(&pod, m).unwrap();
    teardown(&pod).unwrap();
    // A namespace that is gone has nothing left to remove.
    teardown(std::path::Path::new("/run/netns/sandpod-no-such-namespace")).unwrap();
}

#[test]
#[ignore = "needs root and /dev/net/tun (network namespaces, veths, taps): run by `make unit` as root (--include-ignored), as in CI"]
fn a_failed_mirror_removes_what_it_made() {
    let w = world();
    // A second interface that already has an ingress qdisc (someone else's): mirroring it
    // fails after eth0 was mirrored.
    add_pod_veth(
        &w.pod,
        &w.host,
        "eth1",
        "veth-host1",
        [2, 0x42, 0x0a, 1, 0, 3],
        [2, 0x42, 0x0a, 1, 0, 4],
    );
    let eth1 = in_ns(&w.pod, |h| async move {
        let eth1 = link_index(&h, "eth1").await?;
        super::tc::add_ingress(&h, eth1, "eth1").await?;
        Ok(eth1)
    });
    let err = mirror(&w.pod.path()).unwrap_err();
    assert!(
        matches!(&err, NetworkError::Netlink { what, .. } if what.contains("eth1")),
        "{err}"
    );
    let names = link_names(&w.pod);
    assert!(
        !names.iter().any(|n| is_our_tap_name(n)),
        "no tap left: {names:?}"
    );
    let (eth0_ingress, eth1_ingress) = in_ns(&w.pod, move |h| async move {
        let eth0 = link_index(&h, "eth0").await?;
        Ok((has_ingress(&h, eth0).await?, has_ingress(&h, eth1).await?))
    });
    assert!(!eth0_ingress, "eth0's qdisc (ours) was removed");
    assert!(eth1_ingress, "eth1's qdisc (not ours) was left alone");
}

#[test]
#[ignore = "needs root and /dev/net/tun (network namespaces, veths, taps): run by `make unit` as root (--include-ignored), as in CI"]
fn mirroring_again_fails_and_leaves_the_first_mirror_alone() {
    let w = world();
    let m = mirror(&w.pod.path()).unwrap();
    let (eth0, tap) = (m.interfaces[0].index, m.interfaces[0].tap_index);
    let err = mirror(&w.pod.path()).unwrap_err();
    assert!(
        matches!(&err, NetworkError::Tap { name, .. } if name == "tap0_kata"),
        "{err}"
    );
    let targets = in_ns(&w.pod, move |h| async move {
        Ok((
            redirect_targets(&h, eth0).await?,
            redirect_targets(&h, tap).await?,
        ))
    });
    assert_eq!(
        targets,
        (vec![tap], vec![eth0]),
        "the first mirror's filters are intact"
    );
    unmirror(&w.pod.path(), m).unwrap();
}

#[test]
#[ignore = "needs root and /dev/net/tun (network namespaces, veths, taps): run by `make unit` as root (--include-ignored), as in CI"]
fn a_namespace_with_only_lo_gives_an_empty_plan_and_no_tap() {
    let ns = TestNetns::new();
    let plan = scan(&ns.path()).unwrap();
    assert!(
        plan.is_empty() && plan.routes.is_empty() && plan.neighbours.is_empty(),
        "{plan:?}"
    );
    let m = mirror(&ns.path()).unwrap();
    assert!(m.plan.is_empty());
    assert!(m.interfaces.is_empty());
    assert_eq!(link_names(&ns), vec!["lo".to_string()]);
    unmirror(&ns.path(), m).unwrap();
}

/// An Ethernet frame of the experimental EtherType carrying `payload`, padded to 60 bytes.
fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE);
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

/// Reads frames from `fd` (each after `skip` bytes of header) until one carries `payload`
/// after its Ethernet header; others (IPv6 neighbour discovery...) are skipped. Fails after
/// 5 seconds.
fn read_until(fd: std::os::fd::BorrowedFd<'_>, skip: usize, payload: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no frame with {payload:?} within 5 s ({seen} others)"
        );
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        if poll(&mut fds, PollTimeout::from(ms)).unwrap() == 0 {
            continue;
        }
        let mut buf = vec![0u8; 65536];
        let n = nix::unistd::read(fd, &mut buf).unwrap();
        buf.truncate(n);
        if buf.len() >= skip + 14
            && buf[skip + 12..skip + 14] == ETHERTYPE
            && buf[skip + 14..].starts_with(payload)
        {
            return buf;
        }
        seen += 1;
    }
}

/// An AF_PACKET socket bound to interface `ifindex` of the calling thread's namespace, for
/// every protocol.
fn packet_socket(ifindex: u32) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the fd it returns is checked and then owned.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    assert!(
        raw >= 0,
        "socket(AF_PACKET): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `raw` was just returned by socket(2): an open fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain data: all zeroes is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::sa_family_t;
    addr.sll_protocol = proto;
    addr.sll_ifindex = i32::try_from(ifindex).unwrap();
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: bind(2) reads `len` bytes at the pointer: `addr` is a sockaddr_ll of that size,
    // alive for the call.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), len) };
    assert_eq!(
        rc,
        0,
        "bind(AF_PACKET): {}",
        std::io::Error::last_os_error()
    );
    fd
}
