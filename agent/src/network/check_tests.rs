//! [`check`]: a good request accepted as it is, each kind of bad one refused with its message.
use sandpod_protocol::agent as pb;

use super::*;

fn net(address: &str, prefix_len: u32) -> pb::IpNet {
    let mut n = pb::IpNet::new();
    n.address = address.into();
    n.prefix_len = prefix_len;
    n
}

fn iface(name: &str, mac: &str) -> pb::NetInterface {
    let mut i = pb::NetInterface::new();
    i.name = name.into();
    i.mac = mac.into();
    i
}

fn route(dest: Option<pb::IpNet>, gateway: &str, device: &str) -> pb::NetRoute {
    let mut r = pb::NetRoute::new();
    r.destination = dest.into();
    r.gateway = gateway.into();
    r.device = device.into();
    r
}

fn neighbour(address: &str, mac: &str, device: &str) -> pb::NetNeighbour {
    let mut n = pb::NetNeighbour::new();
    n.address = address.into();
    n.mac = mac.into();
    n.device = device.into();
    n
}

/// eth0 (MTU 1400, 10.88.0.5/16, fd00::5/64), a route, a default route, a neighbour.
fn good() -> pb::UpdateNetworkRequest {
    let mut eth0 = iface("eth0", "02:42:0A:58:00:05");
    eth0.mtu = 1400;
    eth0.addresses = vec![net("10.88.0.5", 16), net("fd00::5", 64)];
    let mut r = route(Some(net("10.99.0.0", 16)), "10.88.0.1", "eth0");
    r.source = "10.88.0.5".into();
    r.scope = 0;
    r.metric = 100;
    let mut req = pb::UpdateNetworkRequest::new();
    req.interfaces = vec![eth0];
    req.routes = vec![r, route(None, "10.88.0.1", "eth0")];
    req.neighbours = vec![neighbour("10.88.0.1", "02:42:0a:58:00:01", "eth0")];
    req
}

/// The message `check` refuses `req` with (panics if it accepts it).
fn refused(req: &pb::UpdateNetworkRequest) -> String {
    match check(req) {
        Err(NetworkError::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn refused_with(change: impl FnOnce(&mut pb::UpdateNetworkRequest), expected: &str) {
    let mut req = good();
    change(&mut req);
    assert_eq!(refused(&req), expected);
}

#[test]
fn accepts_a_good_request() {
    let config = check(&good()).unwrap();
    assert_eq!(
        config.interfaces,
        vec![Interface {
            name: "eth0".into(),
            mac: MacAddr([0x02, 0x42, 0x0a, 0x58, 0, 5]),
            mtu: Some(1400),
            addresses: vec![
                IpNet {
                    address: "10.88.0.5".parse().unwrap(),
                    prefix_len: 16
                },
                IpNet {
                    address: "fd00::5".parse().unwrap(),
                    prefix_len: 64
                },
            ],
        }]
    );
    assert_eq!(
        config
            .routes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "10.99.0.0/16 via 10.88.0.1 dev eth0 src 10.88.0.5 metric 100",
            "default via 10.88.0.1 dev eth0"
        ]
    );
    assert_eq!(config.routes[1].family, Family::V4);
    assert_eq!(config.routes[1].metric, None);
    assert_eq!(
        config.summary(),
        [
            "link eth0 mac 02:42:0a:58:00:05 mtu 1400 addr 10.88.0.5/16 addr fd00::5/64",
            "route 10.99.0.0/16 via 10.88.0.1 dev eth0 src 10.88.0.5 metric 100",
            "route default via 10.88.0.1 dev eth0",
            "neigh 10.88.0.1 lladdr 02:42:0a:58:00:01 dev eth0",
        ]
    );
}

#[test]
fn accepts_empty_and_minimal_requests() {
    assert_eq!(
        check(&pb::UpdateNetworkRequest::new()).unwrap(),
        NetworkConfig::default()
    );
    let mut req = pb::UpdateNetworkRequest::new();
    req.interfaces = vec![iface("e", "02:00:00:00:00:01")];
    let mut v6 = route(None, "", "e");
    v6.source = "fd00::1".into();
    v6.scope = 253;
    req.routes = vec![v6];
    let config = check(&req).unwrap();
    assert_eq!(config.interfaces[0].mtu, None);
    assert_eq!(config.routes[0].family, Family::V6);
    assert_eq!(
        config.routes[0].to_string(),
        "default dev e src fd00::1 scope link"
    );
}

#[test]
fn refuses_too_many_of_anything() {
    refused_with(
        |r| {
            r.interfaces = (0..9)
                .map(|i| iface(&format!("eth{i}"), &format!("02:00:00:00:00:{i:02x}")))
                .collect()
        },
        "9 interfaces: at most 8",
    );
    refused_with(
        |r| r.routes = vec![r.routes[1].clone(); 257],
        "257 routes: at most 256",
    );
    refused_with(
        |r| r.neighbours = vec![r.neighbours[0].clone(); 257],
        "257 neighbours: at most 256",
    );
}

#[test]
fn refuses_bad_names() {
    for (name, expected) in [
        ("", "interface 0: name \"\": expected 1 to 15 bytes"),
        (
            "a-very-long-name",
            "interface 0: name \"a-very-long-name\": expected 1 to 15 bytes",
        ),
        (
            "eth/0",
            "interface 0: name \"eth/0\": no '/', ':', whitespace or control characters allowed",
        ),
        (
            "eth0:1",
            "interface 0: name \"eth0:1\": no '/', ':', whitespace or control characters allowed",
        ),
        (
            "eth 0",
            "interface 0: name \"eth 0\": no '/', ':', whitespace or control characters allowed",
        ),
        (
            "eth\n",
            "interface 0: name \"eth\\n\": no '/', ':', whitespace or control characters allowed",
        ),
        ("lo", "interface 0: name \"lo\" is reserved"),
        ("..", "interface 0: name \"..\" is reserved"),
    ] {
        refused_with(|r| r.interfaces[0].name = name.into(), expected);
    }
}

#[test]
fn refuses_duplicate_names_and_macs() {
    refused_with(
        |r| r.interfaces.push(iface("eth0", "02:00:00:00:00:09")),
        "interface 1: the name \"eth0\" is given twice",
    );
    refused_with(
        |r| r.interfaces.push(iface("eth1", "02:42:0a:58:00:05")),
        "interface 1: the MAC 02:42:0a:58:00:05 is given twice",
    );
}

#[test]
fn refuses_bad_macs() {
    for (mac, expected) in [
        (
            "02:42:0a:58:00",
            "interface 0: \"02:42:0a:58:00\" is not a MAC (xx:xx:xx:xx:xx:xx)",
        ),
        (
            "02:42:0a:58:00:05:06",
            "interface 0: \"02:42:0a:58:00:05:06\" is not a MAC (xx:xx:xx:xx:xx:xx)",
        ),
        (
            "02-42-0a-58-00-05",
            "interface 0: \"02-42-0a-58-00-05\" is not a MAC (xx:xx:xx:xx:xx:xx)",
        ),
        (
            "+2:42:0a:58:00:05",
            "interface 0: \"+2:42:0a:58:00:05\" is not a MAC (xx:xx:xx:xx:xx:xx)",
        ),
        (
            "00:00:00:00:00:00",
            "interface 0: MAC 00:00:00:00:00:00 is all zeros",
        ),
        (
            "01:00:5e:00:00:01",
            "interface 0: MAC 01:00:5e:00:00:01 is a multicast address",
        ),
        (
            "ff:ff:ff:ff:ff:ff",
            "interface 0: MAC ff:ff:ff:ff:ff:ff is a multicast address",
        ),
    ] {
        refused_with(|r| r.interfaces[0].mac = mac.into(), expected);
    }
    refused_with(
        |r| r.neighbours[0].mac = "ff:ff:ff:ff:ff:ff".into(),
        "neighbour 0: MAC ff:ff:ff:ff:ff:ff is a multicast address",
    );
}

#[test]
fn refuses_bad_mtus() {
    for mtu in [1, 67, 65536] {
        refused_with(
            |r| r.interfaces[0].mtu = mtu,
            &format!("interface 0: MTU {mtu}: expected 0 (keep the NIC's) or 68 to 65535"),
        );
    }
    refused_with(
        |r| r.interfaces[0].mtu = 1000,
        "interface 0: address fd00::5/64: IPv6 needs an MTU of at least 1280, not 1000",
    );
    for mtu in [68, 65535] {
        let mut req = good();
        req.interfaces[0].mtu = mtu;
        req.interfaces[0].addresses.truncate(1);
        assert_eq!(check(&req).unwrap().interfaces[0].mtu, Some(mtu));
    }
}

#[test]
fn refuses_bad_addresses() {
    for (a, expected) in [
        (
            net("10.88.0", 16),
            "interface 0: address \"10.88.0\" is not an IPv4 or IPv6 address",
        ),
        (
            net("10.88.0.5", 33),
            "interface 0: 10.88.0.5/33: the prefix length is at most 32",
        ),
        (
            net("fd00::5", 129),
            "interface 0: fd00::5/129: the prefix length is at most 128",
        ),
        (
            net("0.0.0.0", 0),
            "interface 0: address 0.0.0.0/0: not an interface address (unspecified or multicast)",
        ),
        (
            net("ff02::1", 64),
            "interface 0: address ff02::1/64: not an interface address (unspecified or multicast)",
        ),
    ] {
        refused_with(|r| r.interfaces[0].addresses.push(a), expected);
    }
}

#[test]
fn refuses_bad_routes() {
    refused_with(
        |r| r.routes[0].device = "eth1".into(),
        "route 0: device \"eth1\" is none of the request's interfaces",
    );
    refused_with(
        |r| r.routes[1].gateway = "10.88.0.256".into(),
        "route 1: gateway \"10.88.0.256\" is not an IPv4 or IPv6 address",
    );
    refused_with(
        |r| r.routes[0].source = "me".into(),
        "route 0: source \"me\" is not an IPv4 or IPv6 address",
    );
    refused_with(
        |r| r.routes[0].destination = Some(net("10.99.0.0", 40)).into(),
        "route 0: 10.99.0.0/40: the prefix length is at most 32",
    );
    refused_with(
        |r| r.routes[0].destination = Some(net("10.99.0.1", 16)).into(),
        "route 0: destination 10.99.0.1/16: bits set past the prefix length",
    );
    refused_with(
        |r| r.routes[0].gateway = "fd00::1".into(),
        "route 0: destination, gateway and source mix IPv4 and IPv6",
    );
    refused_with(
        |r| r.routes[0].source = "fd00::5".into(),
        "route 0: destination, gateway and source mix IPv4 and IPv6",
    );
    refused_with(
        |r| r.routes[1].gateway = String::new(),
        "route 1: a default route needs a gateway or a source address (to know its family)",
    );
    refused_with(
        |r| r.routes[1].gateway = "224.0.0.1".into(),
        "route 1: gateway 224.0.0.1: unspecified or multicast",
    );
    for scope in [1, 252, 255] {
        refused_with(
            |r| r.routes[0].scope = scope,
            &format!(
                "route 0: scope {scope}: expected 0 (universe), 200 (site), 253 (link) or 254 (host)"
            ),
        );
    }
    // A /0 destination and full-length prefixes are networks.
    let mut req = good();
    req.routes[0].destination = Some(net("0.0.0.0", 0)).into();
    req.routes[1].destination = Some(net("10.88.0.7", 32)).into();
    check(&req).unwrap();
    req.routes[1] = route(Some(net("fd00:1::", 64)), "fd00::1", "eth0");
    check(&req).unwrap();
    req.routes[1].destination = Some(net("fd00:1::1", 64)).into();
    assert_eq!(
        refused(&req),
        "route 1: destination fd00:1::1/64: bits set past the prefix length"
    );
}

#[test]
fn refuses_bad_neighbours() {
    refused_with(
        |r| r.neighbours[0].device = "eth9".into(),
        "neighbour 0: device \"eth9\" is none of the request's interfaces",
    );
    refused_with(
        |r| r.neighbours[0].address = "gateway".into(),
        "neighbour 0: address \"gateway\" is not an IPv4 or IPv6 address",
    );
    refused_with(
        |r| r.neighbours[0].address = "::".into(),
        "neighbour 0: address ::: unspecified or multicast",
    );
    refused_with(
        |r| r.neighbours[0].mac = "02:42".into(),
        "neighbour 0: \"02:42\" is not a MAC (xx:xx:xx:xx:xx:xx)",
    );
}

#[test]
fn mac_parses_and_prints() {
    let mac = MacAddr::parse("02:00:0A:ff:00:12").unwrap();
    assert_eq!(mac.to_string(), "02:00:0a:ff:00:12");
    assert_eq!(MacAddr::from_bytes(&mac.0), Some(mac));
    assert_eq!(MacAddr::from_bytes(&[1, 2, 3]), None);
    assert_eq!(MacAddr::parse("02:00:0a:ff:00:"), None);
}

#[test]
fn a_refusal_is_invalid_argument_to_the_host() {
    let mut req = good();
    req.interfaces[0].name = "lo".into();
    let e: ttrpc::Error = check(&req).unwrap_err().into();
    match e {
        ttrpc::Error::RpcStatus(s) => {
            assert_eq!(s.code(), ttrpc::Code::INVALID_ARGUMENT);
            assert_eq!(s.message(), "interface 0: name \"lo\" is reserved");
        }
        other => panic!("{other:?}"),
    }
}
