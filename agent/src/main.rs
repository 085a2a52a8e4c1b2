//! `sandpod-agent`: PID 1 of the Sandpod guest. Statically linked, packed as `/init` in the
//! guest initramfs.
//!
//! Hidden test mode: `sandpod-agent --test-serve unix:///path/base` serves the same API as in
//! the guest, but on Unix sockets `<base>_1024` (ttrpc) and `<base>_1026` (stdio), sending its
//! logs to `<base>_1025`, without being PID 1 (CreateSandbox then skips hostname and mounts).
//! There, `SANDPOD_AGENT_CGROUP_ROOT` names the cgroup2 directory the containers' cgroups go
//! under (default /sys/fs/cgroup); the guest ignores it.
use sandpod_agent::transport::Transport;
use sandpod_agent::{init, serve, VERSION};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // First: the container helper (the agent re-executed by itself, see container::launch).
    if sandpod_agent::container::helper::is_helper(&args) {
        sandpod_agent::container::helper::main();
    }
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("sandpod-agent {VERSION}");
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--test-serve") {
        let transport = match args.get(i + 1).map(|a| Transport::parse_test_addr(a)) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                eprintln!("sandpod-agent: --test-serve {e}");
                std::process::exit(2);
            }
            None => {
                eprintln!("sandpod-agent: --test-serve needs unix:///path/base");
                std::process::exit(2);
            }
        };
        // Never a template here: reseeding and clock setting are for the guest only.
        if let Err(e) = serve::run(transport, serve::Boot::Fresh) {
            eprintln!("sandpod-agent: fatal: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if std::process::id() != 1 {
        eprintln!("sandpod-agent: must run as PID 1 of the guest (try --version)");
        std::process::exit(2);
    }
    // As PID 1 there is nobody to report an error to but the console; returning from PID 1
    // panics the guest kernel, which (with panic=-1) ends the VM: that is the intended outcome
    // of a fatal agent error, never a hang.
    if let Err(e) = init::run(&args) {
        eprintln!("sandpod-agent: fatal: {e:#}");
        std::process::exit(1);
    }
}
