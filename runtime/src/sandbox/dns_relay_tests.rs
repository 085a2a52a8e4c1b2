//! The DNS relay's host half: framing and its bounds, the rate limiter, which replies count, the
//! resolv.conf check; end to end (root) with a fake DNS server on 127.0.0.11:53 in a throwaway
//! network namespace.
use std::net::UdpSocket as StdUdpSocket;

use nix::sched::{setns, CloneFlags};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use oci_spec::runtime::{MountBuilder, Spec};
use tokio::net::UnixStream;

use super::*;

const ROOT_ONLY: &str = "needs root to make network namespaces";

fn query(id: u16, marker: u8) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[marker, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(b"\x03web\x00\x00\x01\x00\x01");
    q
}

/// The reply the fake server gives: the query with QR set.
fn answer(q: &[u8]) -> Vec<u8> {
    let mut r = q.to_vec();
    r[2] |= 0x80;
    r
}

/// A relay at a temp path, with its namespace being this thread's (no socket is made in it by
/// the tests that use this: they are closed before).
fn relay_here(limiter: TokenBucket) -> (tempfile::TempDir, DnsRelay) {
    let dir = tempfile::tempdir().unwrap();
    let ns = PodNetns::open(Path::new("/proc/thread-self/ns/net")).unwrap();
    let relay = DnsRelay::start_with(dir.path().join("v_1027"), ns, limiter).unwrap();
    (dir, relay)
}

/// Whether the relay closes `c` (EOF, nothing sent) within 3 s.
async fn closed(c: &mut UnixStream) -> bool {
    let mut rest = Vec::new();
    // Closed with bytes of ours unread, the socket reports a reset.
    match tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut rest)).await {
        Ok(Ok(0)) => true,
        Ok(Err(e)) => e.kind() == io::ErrorKind::ConnectionReset,
        _ => false,
    }
}

#[tokio::test]
async fn frames_too_long_or_shorter_than_a_header_close_the_connection() {
    let (_dir, relay) = relay_here(TokenBucket::new(RATE, BURST));
    for len in [4097u16, 11, 0, u16::MAX] {
        let mut c = UnixStream::connect(relay.path()).await.unwrap();
        c.write_all(&len.to_be_bytes()).await.unwrap();
        c.write_all(&[0; 64]).await.unwrap();
        assert!(closed(&mut c).await, "a frame of {len} bytes was taken");
    }
}

#[tokio::test]
async fn queries_over_the_rate_limit_close_the_connection() {
    let (_dir, relay) = relay_here(TokenBucket::new(0, 0));
    let mut c = UnixStream::connect(relay.path()).await.unwrap();
    c.write_all(&dns::frame(&query(1, 0)).unwrap())
        .await
        .unwrap();
    assert!(closed(&mut c).await);
}

#[tokio::test]
async fn connections_past_the_limit_are_closed() {
    let (_dir, relay) = relay_here(TokenBucket::new(RATE, BURST));
    let mut open = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        open.push(UnixStream::connect(relay.path()).await.unwrap());
    }
    let mut extra = UnixStream::connect(relay.path()).await.unwrap();
    assert!(closed(&mut extra).await);
    // The others are still served (an idle one is kept for IDLE_TIMEOUT).
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(200), open[0].read(&mut buf)).await;
    assert!(read.is_err(), "an admitted connection was closed");
}

#[test]
fn the_token_bucket_refills_at_its_rate_up_to_its_burst() {
    let b = TokenBucket::new(10, 3);
    let t0 = b.state.lock().unwrap().1;
    assert!((0..3).all(|_| b.admit_at(t0)));
    assert!(!b.admit_at(t0));
    // 100 ms: one token.
    let t1 = t0 + Duration::from_millis(100);
    assert!(b.admit_at(t1));
    assert!(!b.admit_at(t1));
    // A long pause refills only up to the burst.
    let t2 = t1 + Duration::from_secs(60);
    assert_eq!((0..10).filter(|_| b.admit_at(t2)).count(), 3);
    // Time going backwards gives nothing.
    assert!(!b.admit_at(t0));
    let none = TokenBucket::new(0, 0);
    assert!(!none.admit());
}

#[test]
fn only_replies_from_the_server_with_the_query_id_count() {
    let q = query(0x1234, 0);
    let r = answer(&q);
    assert!(is_reply_to(&q, DNS_SERVER, &r));
    let mut other_id = r.clone();
    other_id[1] ^= 1;
    assert!(!is_reply_to(&q, DNS_SERVER, &other_id));
    assert!(!is_reply_to(&q, "127.0.0.11:5353".parse().unwrap(), &r));
    assert!(!is_reply_to(&q, "127.0.0.1:53".parse().unwrap(), &r));
    assert!(!is_reply_to(&q, DNS_SERVER, &r[..11]));
}

fn spec_with_resolv_conf(source: &Path, typ: &str, options: &[&str]) -> Spec {
    let mut spec = Spec::default();
    let m = MountBuilder::default()
        .destination(RESOLV_CONF)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .unwrap();
    spec.set_mounts(Some(vec![m]));
    spec
}

#[test]
fn docker_dns_is_a_bind_mounted_resolv_conf_naming_127_0_0_11() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let docker = file(
        "docker",
        "# Generated by Docker Engine.\nnameserver 127.0.0.11\nsearch example.com\noptions ndots:0\n",
    );
    let plain = file("plain", "nameserver 8.8.8.8\n# nameserver 127.0.0.11\n");
    let tabs = file("tabs", "search x\n\tnameserver\t127.0.0.11  \n");
    let lookalike = file(
        "lookalike",
        "nameserver 127.0.0.111\nnameserver127.0.0.11\n",
    );
    let far = file(
        "far",
        &format!("{}\nnameserver 127.0.0.11\n", "#".repeat(70 * 1024)),
    );

    assert!(uses_docker_dns(&spec_with_resolv_conf(
        &docker,
        "bind",
        &["rbind", "rprivate"]
    )));
    assert!(uses_docker_dns(&spec_with_resolv_conf(
        &docker,
        "none",
        &["bind", "ro"]
    )));
    assert!(uses_docker_dns(&spec_with_resolv_conf(&tabs, "bind", &[])));
    for (src, why) in [
        (&plain, "another nameserver"),
        (&lookalike, "not quite 127.0.0.11"),
        (&far, "past the first 64 KiB"),
    ] {
        assert!(
            !uses_docker_dns(&spec_with_resolv_conf(src, "bind", &["rbind"])),
            "{why}"
        );
    }
    // Not a bind mount; another destination; no mounts; a relative, missing, non-file source.
    assert!(!uses_docker_dns(&spec_with_resolv_conf(
        &docker,
        "tmpfs",
        &["ro"]
    )));
    let mut elsewhere = spec_with_resolv_conf(&docker, "bind", &[]);
    let m = MountBuilder::default()
        .destination("/etc/hosts")
        .typ("bind")
        .source(&docker)
        .build()
        .unwrap();
    elsewhere.set_mounts(Some(vec![m]));
    assert!(!uses_docker_dns(&elsewhere));
    let mut none = Spec::default();
    none.set_mounts(None);
    assert!(!uses_docker_dns(&none));
    for src in [Path::new("docker"), &dir.path().join("missing"), dir.path()] {
        assert!(!uses_docker_dns(&spec_with_resolv_conf(src, "bind", &[])));
    }
    // A FIFO is not read (and does not hang the caller).
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert!(!uses_docker_dns(&spec_with_resolv_conf(&fifo, "bind", &[])));
}

/// A new network namespace with `lo` up, alive as long as this value.
struct TestNetns(File);

impl TestNetns {
    fn new() -> TestNetns {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test {ROOT_ONLY} (run as root)"
        );
        let ns = std::thread::spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            File::open("/proc/thread-self/ns/net").expect("opening the new namespace")
        })
        .join()
        .expect("the thread making a namespace panicked");
        let ns = TestNetns(ns);
        // `lo` is interface 1 in every new namespace.
        crate::network::netns::run_in_netns(&ns.path(), |h| async move {
            h.link()
                .set(rtnetlink::LinkUnspec::new_with_index(1).up().build())
                .execute()
                .await
                .map_err(|source| crate::network::NetworkError::Netlink {
                    what: "lo up".into(),
                    source,
                })
        })
        .expect("bringing lo up");
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.0.as_raw_fd()))
    }
}

/// A fake Docker DNS server on 127.0.0.11:53 in `ns`: answers each query with [`answer`]. For
/// a query whose third byte is 0x01 it first sends the answer from another address and an
/// answer with another id; to one whose third byte is 0x02 it sends a reply of 5000 bytes. Stops
/// when the returned flag is set.
fn fake_docker_dns(ns: &TestNetns) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let ns = ns.0.try_clone().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stopping = stop.clone();
    std::thread::spawn(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
        let server = StdUdpSocket::bind(DNS_SERVER).unwrap();
        let other = StdUdpSocket::bind("127.0.0.11:5353").unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 4096];
        let mut long = vec![0u8; 5000];
        while !stopping.load(Ordering::Relaxed) {
            let Ok((n, from)) = server.recv_from(&mut buf) else {
                continue;
            };
            let reply = answer(&buf[..n]);
            if buf[2] == 0x02 {
                long[..n].copy_from_slice(&reply);
                server.send_to(&long, from).unwrap();
                continue;
            }
            if buf[2] == 0x01 {
                other.send_to(&reply, from).unwrap();
                let mut wrong = reply.clone();
                wrong[0] ^= 0xff;
                server.send_to(&wrong, from).unwrap();
            }
            server.send_to(&reply, from).unwrap();
        }
    });
    ready_rx.recv().unwrap();
    stop
}

async fn exchange(c: &mut UnixStream, q: &[u8]) -> Vec<u8> {
    c.write_all(&dns::frame(q).unwrap()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), read_frame(c))
        .await
        .expect("a reply in time")
        .expect("a frame")
        .expect("not the end")
}

#[tokio::test]
#[ignore = "needs root to make network namespaces: run by `make unit` as root (--include-ignored), as in CI"]
async fn relays_queries_to_127_0_0_11_in_the_pods_namespace() {
    let ns = TestNetns::new();
    let stop = fake_docker_dns(&ns);
    let dir = tempfile::tempdir().unwrap();
    let relay = DnsRelay::start(
        dir.path().join("v_1027"),
        PodNetns::open(&ns.path()).unwrap(),
    )
    .unwrap();

    // Two queries on one connection, one on another.
    let mut c = UnixStream::connect(relay.path()).await.unwrap();
    for id in [1, 2] {
        let q = query(id, 0);
        assert_eq!(exchange(&mut c, &q).await, answer(&q));
    }
    let mut c2 = UnixStream::connect(relay.path()).await.unwrap();
    let q = query(3, 0);
    assert_eq!(exchange(&mut c2, &q).await, answer(&q));

    // The answers from another address and with another id are ignored: the right one comes.
    let q = query(0xabcd, 0x01);
    assert_eq!(exchange(&mut c, &q).await, answer(&q));
    // The guest's end of the stream ends the connection quietly.
    drop(c);
    // A reply too long to relay closes the connection.
    c2.write_all(&dns::frame(&query(4, 0x02)).unwrap())
        .await
        .unwrap();
    assert!(closed(&mut c2).await);

    // The host's namespace has no server at 127.0.0.11:53: the relay's socket is the pod's.
    stop.store(true, Ordering::Relaxed);
    drop(relay);
    assert!(!dir.path().join("v_1027").exists());
}

#[tokio::test]
#[ignore = "needs root to make network namespaces: run by `make unit` as root (--include-ignored), as in CI"]
async fn with_nothing_at_127_0_0_11_the_connection_is_closed() {
    let ns = TestNetns::new();
    let dir = tempfile::tempdir().unwrap();
    let relay = DnsRelay::start(
        dir.path().join("v_1027"),
        PodNetns::open(&ns.path()).unwrap(),
    )
    .unwrap();
    let mut c = UnixStream::connect(relay.path()).await.unwrap();
    c.write_all(&dns::frame(&query(9, 0)).unwrap())
        .await
        .unwrap();
    // ICMP port unreachable, not the 5 s timeout.
    let start = Instant::now();
    assert!(closed(&mut c).await);
    assert!(start.elapsed() < Duration::from_secs(3));
}
