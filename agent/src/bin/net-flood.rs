//! `sandpod-net-flood IFACE SECONDS`: TEST ONLY (copied into a container by the VM-level network
//! check). For SECONDS, sends as fast as it can raw frames of random length (0 to 9000 bytes)
//! and random content out of IFACE through two AF_PACKET sockets: a plain one, and one with
//! PACKET_VNET_HDR, whose frames start with a random `virtio_net_hdr` (flags, GSO type and size,
//! checksum offsets) that the guest kernel passes on to the virtio-net device when it accepts
//! it. What a hostile guest's userspace can throw at the VMM's net device; the check then
//! proves the device still works. Prints `sent=N refused=M` (frames the guest kernel took,
//! frames it refused) and exits 0 if any frame was sent.
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `setsockopt(SOL_PACKET, PACKET_VNET_HDR)` (linux/if_packet.h).
const PACKET_VNET_HDR: libc::c_int = 15;
/// The largest frame tried (above any MTU here: those are refused by the guest kernel).
const MAX_FRAME: usize = 9000;

/// xorshift64*: enough randomness for garbage frames, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A raw AF_PACKET socket bound to interface `index`, with PACKET_VNET_HDR if `vnet`.
fn packet_socket(index: libc::c_int, vnet: bool) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: socket(2) takes no pointers; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    if vnet {
        let one: libc::c_int = 1;
        // SAFETY: the option value points to a c_int that lives for the call, with its size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                PACKET_VNET_HDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: sockaddr_ll is plain data: all zeroes is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = index;
    // SAFETY: `addr` is a sockaddr_ll that lives for the call, passed with its size.
    let r = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sock)
}

fn main() -> ExitCode {
    use std::os::fd::AsRawFd;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(iface), Some(secs)) = (
        args.first(),
        args.get(1).and_then(|a| a.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: sandpod-net-flood IFACE SECONDS");
        return ExitCode::from(64);
    };
    let Ok(name) = std::ffi::CString::new(iface.as_str()) else {
        eprintln!("bad interface name");
        return ExitCode::from(64);
    };
    // SAFETY: `name` is a NUL-terminated string that lives for the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        println!(
            "if_nametoindex {iface}: {}",
            std::io::Error::last_os_error()
        );
        return ExitCode::from(2);
    }
    let socks = match (
        packet_socket(index as libc::c_int, false),
        packet_socket(index as libc::c_int, true),
    ) {
        (Ok(a), Ok(b)) => [a, b],
        (Err(e), _) | (_, Err(e)) => {
            println!("socket: {e}");
            return ExitCode::from(2);
        }
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut rng = Rng(seed);
    let mut buf = vec![0u8; MAX_FRAME];
    let (mut sent, mut refused) = (0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        for sock in &socks {
            let len = (rng.next() % (MAX_FRAME as u64 + 1)) as usize;
            rng.fill(&mut buf[..len]);
            // SAFETY: the buffer holds `len` initialized bytes and lives for the call.
            let r = unsafe {
                libc::send(
                    sock.as_raw_fd(),
                    buf.as_ptr().cast(),
                    len,
                    libc::MSG_DONTWAIT,
                )
            };
            if r < 0 {
                refused += 1;
            } else {
                sent += 1;
            }
        }
    }
    println!("sent={sent} refused={refused}");
    if sent > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
