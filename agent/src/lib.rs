//! The Sandpod guest agent, PID 1 of every Sandpod microVM.
//!
//! - [`init`] brings the guest up as PID 1 (mounts, switch_root out of the initramfs, console,
//!   the ready line, power-off/reboot on the power port), with its settings from [`cmdline`]
//!   (`sandpod.<key>=<value>` on the kernel command line); then
//! - [`clone`]: VM templates (a template guest asks for a snapshot once serving; each guest
//!   restored from it refuses the API until ResumeClone reseeds its RNG and sets its clock);
//! - [`serve`] serves the host: [`rpc`] (the ttrpc API on vsock port 1024) over [`process`]
//!   (the process to run and its one check, credentials, spawning, waiting, signals, reaping),
//!   [`container`] (containers from OCI specs, runc-style: namespaces, mounts, cgroup v2,
//!   capabilities, seccomp; set up by a helper re-exec of the agent), [`sandbox`] (hostname,
//!   DNS, the shared mounts) and [`network`] (the guest's interfaces, routes and neighbours,
//!   through netlink); [`stdio`] (one stream connection per stdio stream, port 1026) and
//!   [`logging`] (JSON lines to the host's port 1025); [`dns_relay`] (Docker's embedded DNS
//!   address, 127.0.0.11:53 in the guest, relayed to the host's port 1027);
//! - shared by those: [`ids`] (the one table of ids: exec ids and container ids, reserved while
//!   being set up) and [`mount_flags`] (the one mount-option parser: the protocol's
//!   classification as mount(2) flags, for sandbox and container mounts);
//! - [`transport`]: vsock in the guest, Unix sockets named like hybrid vsock's in the host-side
//!   test mode (`--test-serve`); [`guest`]: facts about the guest reported to the host.
pub mod boot_times;
pub mod clone;
pub mod cmdline;
pub mod container;
pub mod dns_relay;
pub mod guest;
pub mod ids;
pub mod init;
pub mod logging;
pub mod mount_flags;
pub mod network;
pub mod process;
pub mod rpc;
pub mod sandbox;
pub mod serve;
pub mod stdio;
pub mod transport;

/// The agent's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
