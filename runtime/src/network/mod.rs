//! The host side of pod networking, Kata's "tcfilter" model: the pod's network namespace
//! (made by the CNI plugin or Docker, holding a veth whose peer is on the host's bridge) gets,
//! for each of its L2 interfaces, a tap the VMM can use as the guest's NIC, and traffic control
//! redirects everything arriving on the veth out of the tap and everything arriving on the tap
//! out of the veth:
//!
//! ```text
//!   host bridge ── veth peer ══ eth0 (pod netns) ─ingress ffff: u32 → mirred redirect─▶ tap0_kata
//!                                   ◀─mirred redirect ← u32 ingress ffff:─ tap0_kata ── VMM ── guest eth0
//! ```
//!
//! The guest's interface then takes the veth's MAC, MTU, addresses, routes and static
//! neighbours ([`NetworkPlan`], from [`scan`]), so the veth's IP and the pod's traffic move into
//! the VM unchanged.
//!
//! - [`scan`]: what the namespace holds, as a plan for the agent;
//! - [`mirror`]: the taps and the filters (returns the taps' fds: the tap lives as long as they);
//! - [`unmirror`] / [`teardown`]: removes the qdiscs (and with them the filters) and the taps.
//!
//! All netlink work happens on a thread of its own that enters the namespace ([`netns`]): the
//! caller's namespace is never changed. The calls block; from async code, run them with
//! `spawn_blocking`.
mod error;
mod mirror;
pub mod netns;
mod plan;
mod scan;
mod tap;
mod tc;
#[cfg(test)]
mod tests;

pub use error::NetworkError;
pub use mirror::{mirror, teardown, unmirror, Mirrored, MirroredInterface};
pub use plan::{IpNet, MacAddr, NeighbourPlan, NetworkPlan, PlanInterface, RoutePlan, Scope};
pub use scan::scan;
pub use tap::{is_our_tap_name, tap_name, VNET_HDR_LEN};
