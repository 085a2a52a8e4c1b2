//! Both halves of the DNS relay together, without a VM: a container's query to the agent's UDP
//! socket goes over the test-mode transport (`<base>_1027`, where the VMM would put the guest's
//! vsock connections) to the monitor's relay, which asks a fake Docker DNS server on
//! 127.0.0.11:53 in a throwaway network namespace (root: `make unit` runs it as root).
use std::fs::File;
use std::net::UdpSocket as StdUdpSocket;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use nix::sched::{unshare, CloneFlags};
use sandpod_agent::dns_relay::DnsRelay as GuestRelay;
use sandpod_agent::transport::Transport;
use sandpod_protocol::DNS_PORT;
use sandpod_runtime::sandbox::dns_relay::{DnsRelay as HostRelay, PodNetns, DNS_SERVER};
use tokio::net::UdpSocket;

/// A new network namespace with `lo` up, and a fake DNS server on 127.0.0.11:53 in it that
/// answers each query with itself, QR set. The server's thread runs until the test ends.
fn namespace_with_docker_dns() -> File {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        sandpod_agent::init::loopback::bring_up().expect("lo up");
        let server = StdUdpSocket::bind(DNS_SERVER).unwrap();
        tx.send(File::open("/proc/thread-self/ns/net").unwrap())
            .unwrap();
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            buf[2] |= 0x80;
            let _ = server.send_to(&buf[..n], from);
        }
    });
    rx.recv().expect("the namespace")
}

#[tokio::test]
#[ignore = "needs root to make network namespaces: run by `make unit` as root (--include-ignored), as in CI"]
async fn a_query_to_the_guest_relay_is_answered_by_docker_dns_in_the_pods_namespace() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let ns = namespace_with_docker_dns();
    let path = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));

    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("v");
    let _host = HostRelay::start(
        Transport::unix_path(&base, DNS_PORT),
        PodNetns::open(&path).unwrap(),
    )
    .unwrap();
    let guest = GuestRelay::bind("127.0.0.1:0".parse().unwrap(), Transport::Unix { base })
        .await
        .unwrap();
    let guest_addr = guest.local_addr().unwrap();
    tokio::spawn(guest.run());

    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut query = vec![0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x02db\x00\x00\x01\x00\x01");
    client.send_to(&query, guest_addr).await.unwrap();
    let mut buf = [0u8; 4096];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .expect("a reply in time")
        .unwrap();
    assert_eq!(from, guest_addr);
    let mut expected = query.clone();
    expected[2] |= 0x80;
    assert_eq!(&buf[..n], &expected[..]);
}
