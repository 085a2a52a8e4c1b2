//! `sandpod-agent`: PID 1 of the Sandpod guest. Statically linked, packed as `/init` in the
//! guest initramfs.
use sandpod_agent::{init, VERSION};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("sandpod-agent {VERSION}");
        return;
    }
    if std::process::id() != 1 {
        eprintln!("sandpod-agent: must run as PID 1 of the guest (try --version)");
        std::process::exit(2);
    }
    // As PID 1 there is nobody to report an error to but the console; returning from PID 1
    // panics the guest kernel, which (with panic=-1) ends the VM: that is the intended outcome
    // of a fatal agent error, never a hang.
    if let Err(e) = init::run() {
        eprintln!("sandpod-agent: fatal: {e:#}");
        std::process::exit(1);
    }
}
