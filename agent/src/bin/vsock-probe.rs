//! `sandpod-vsock-probe CID PORT [LINE]`: TEST ONLY (packed in the test initramfs, copied into
//! containers by the VM-level security check). Tries to reach vsock `CID:PORT` from wherever it
//! runs and prints what happened, one line:
//! `socket: <errno>` (exit 2), `connect: <errno>` (exit 3), or `connected` then, after sending
//! LINE (if given) and waiting up to 2 s for an answer, `read: <n> bytes` or `read: <errno>`
//! (exit 0). busybox has no vsock client.
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::Duration;

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, VsockAddr};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(cid), Some(port)) = (
        args.first().and_then(|a| a.parse::<u32>().ok()),
        args.get(1).and_then(|a| a.parse::<u32>().ok()),
    ) else {
        eprintln!("usage: sandpod-vsock-probe CID PORT [LINE]");
        return ExitCode::from(64);
    };
    let fd: OwnedFd = match socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) {
        Ok(fd) => fd,
        Err(e) => {
            println!("socket: {e:?}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &VsockAddr::new(cid, port),
    ) {
        println!("connect: {e:?}");
        return ExitCode::from(3);
    }
    println!("connected");
    let mut stream = std::os::unix::net::UnixStream::from(fd);
    match args.get(2).map(String::as_str) {
        Some("-") => match std::io::copy(&mut std::io::stdin().lock(), &mut stream) {
            Ok(n) => println!("sent: {n} bytes"),
            Err(e) => println!("sent: {:?}", e.kind()),
        },
        Some(line) => {
            let _ = stream.write_all(format!("{line}\n").as_bytes());
        }
        None => {}
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(n) => println!("read: {n} bytes"),
        Err(e) => println!("read: {:?}", e.kind()),
    }
    ExitCode::SUCCESS
}
