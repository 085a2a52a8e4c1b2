//! The sandbox's network: the pod's network namespace (the CNI plugin's, Docker's, Podman's)
//! mirrored into the VM. At creation the namespace's interface is mirrored onto a tap
//! ([`crate::network::mirror`]); the tap's fd goes to the monitor and from it to the VMM as
//! fd [`TAP_FD`] (`"net": [{"tap_fd": 3, "mac": <the veth's>, "mtu": <its>}]`), and once the
//! agent answers it configures the guest's interface from the plan ([`agent_request`]). The tap
//! lives as long as the VMM (or the monitor) holds it; [`teardown`] removes the ingress qdiscs
//! left on the namespace's interfaces.
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sandpod_vmconfig::NetConfig;

use crate::agent_client::proto::{
    IpNet as ProtoIpNet, NetInterface, NetNeighbour, NetRoute, UpdateNetworkRequest,
};
use crate::network::{self, IpNet, Mirrored, NetworkPlan, Scope};

/// The fd number the monitor receives the tap at, and passes it on to the VMM at.
pub const TAP_FD: RawFd = 3;

/// The VM's NICs: one (the VMM's `MAX_NET`).
const MAX_INTERFACES: usize = 1;

/// The namespace mirrored: the plan for the agent and the tap for the VMM (None with only `lo`).
#[derive(Debug)]
pub struct SandboxNetwork {
    pub plan: NetworkPlan,
    pub tap: Option<OwnedFd>,
}

impl SandboxNetwork {
    /// The VMM's net device: the tap at [`TAP_FD`] with the interface's MAC and MTU.
    pub fn net_config(&self) -> Option<NetConfig> {
        let (_, iface) = self.tap.as_ref().zip(self.plan.interfaces.first())?;
        Some(NetConfig {
            tap: None,
            tap_fd: Some(TAP_FD),
            mac: Some(iface.mac),
            mtu: u16::try_from(iface.mtu).ok(),
        })
    }

    /// The tap's fd in this process (to pass on as [`TAP_FD`]).
    pub fn tap_fd(&self) -> Option<RawFd> {
        self.tap.as_ref().map(|t| t.as_raw_fd())
    }
}

/// Mirrors the namespace at `netns` (blocking netlink work on a thread of its own). A namespace
/// with more interfaces than the VM takes is refused, with nothing left behind.
pub async fn mirror(netns: &Path) -> anyhow::Result<SandboxNetwork> {
    let path = netns.to_path_buf();
    let mirrored: Mirrored = tokio::task::spawn_blocking(move || network::mirror(&path))
        .await
        .context("the network mirroring thread failed")?
        .with_context(|| format!("mirroring the network namespace {}", netns.display()))?;
    if mirrored.interfaces.len() > MAX_INTERFACES {
        let names: Vec<_> = mirrored
            .plan
            .interfaces
            .iter()
            .map(|i| i.name.clone())
            .collect();
        let path = netns.to_path_buf();
        let undo = tokio::task::spawn_blocking(move || network::unmirror(&path, mirrored)).await;
        if let Ok(Err(e)) = undo {
            tracing::warn!("removing the taps again: {e}");
        }
        bail!(
            "the network namespace {} has {} interfaces ({}): a sandbox's VM takes {MAX_INTERFACES}",
            netns.display(),
            names.len(),
            names.join(", ")
        );
    }
    let plan = mirrored.plan;
    let tap = mirrored.interfaces.into_iter().next().map(|m| m.tap_fd);
    Ok(SandboxNetwork { plan, tap })
}

/// Removes what mirroring left in the namespace at `netns` (taps, ingress qdiscs). Idempotent;
/// a namespace that is gone is fine. Blocking.
pub fn teardown(netns: &Path) {
    if let Err(e) = network::teardown(netns) {
        tracing::warn!("network teardown of {}: {e}", netns.display());
    }
}

/// The netns to record in the sandbox state for teardown at delete: only a path that stays
/// meaningful after the process that made it is gone (a bind mount such as
/// `/var/run/netns/cni-…`); a `/proc/PID/…` path could name another process's namespace by then,
/// and is never used after creation.
pub fn recorded(netns: Option<&Path>) -> Option<PathBuf> {
    netns
        .filter(|p| !p.starts_with("/proc"))
        .map(Path::to_path_buf)
}

fn ip_net(n: &IpNet) -> ProtoIpNet {
    let mut p = ProtoIpNet::new();
    p.address = n.address.to_string();
    p.prefix_len = n.prefix_len.into();
    p
}

/// The route scopes the agent takes (RT_SCOPE_*); None for the others (`nowhere`, numbered
/// ones), which no CNI plugin gives a pod's route.
fn scope_code(s: Scope) -> Option<u32> {
    match s {
        Scope::Universe => Some(0),
        Scope::Site => Some(200),
        Scope::Link => Some(253),
        Scope::Host => Some(254),
        Scope::Nowhere | Scope::Other(_) => None,
    }
}

/// UpdateNetwork's request for `plan`.
pub fn agent_request(plan: &NetworkPlan) -> UpdateNetworkRequest {
    let mut req = UpdateNetworkRequest::new();
    for i in &plan.interfaces {
        let mut n = NetInterface::new();
        n.name = i.name.clone();
        n.mac = i.mac.to_string();
        n.mtu = i.mtu;
        n.addresses = i.addresses.iter().map(ip_net).collect();
        req.interfaces.push(n);
    }
    for r in &plan.routes {
        let Some(scope) = scope_code(r.scope) else {
            tracing::warn!(route = ?r, "route left out of the guest: its scope cannot be given");
            continue;
        };
        let mut n = NetRoute::new();
        if let Some(d) = &r.destination {
            n.destination = Some(ip_net(d)).into();
        }
        n.gateway = r.gateway.map(|g| g.to_string()).unwrap_or_default();
        n.device = r.device.clone();
        n.source = r.source.map(|s| s.to_string()).unwrap_or_default();
        n.scope = scope;
        n.metric = r.metric.unwrap_or(0);
        req.routes.push(n);
    }
    for nb in &plan.neighbours {
        let mut n = NetNeighbour::new();
        n.address = nb.address.to_string();
        n.mac = nb.mac.to_string();
        n.device = nb.device.clone();
        req.neighbours.push(n);
    }
    req
}

/// Makes `fd` the child's fd `target` (inherited across exec) in a command about to be spawned:
/// `dup2` onto it, or, when it already is `target`, its close-on-exec flag cleared.
pub fn pass_fd(cmd: &mut std::process::Command, fd: RawFd, target: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls dup2(2) and
    // fcntl(2) (async-signal-safe) on fd numbers; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            let r = if fd == target {
                libc::fcntl(target, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, target)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// In the monitor: takes the tap the creator passed at [`TAP_FD`] (checked to be an open
/// `/dev/net/tun` file, so that no other fd is ever taken for it) and marks it close-on-exec
/// (virtiofsd must not get it; the VMM gets it through [`pass_fd`]).
pub fn claim_inherited_tap() -> anyhow::Result<OwnedFd> {
    let link = std::fs::read_link(format!("/proc/self/fd/{TAP_FD}"))
        .with_context(|| format!("the tap was to be passed as fd {TAP_FD}; it is not open"))?;
    if link != Path::new("/dev/net/tun") {
        bail!(
            "fd {TAP_FD} is {}, not the tap (/dev/net/tun) the plan says",
            link.display()
        );
    }
    // SAFETY: fd TAP_FD is open (checked just above) and was inherited from the creator for
    // this purpose: nothing else in this process owns it.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(TAP_FD) };
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .context("marking the tap close-on-exec")?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{MacAddr, NeighbourPlan, PlanInterface, RoutePlan};

    fn plan() -> NetworkPlan {
        NetworkPlan {
            interfaces: vec![PlanInterface {
                name: "eth0".into(),
                index: 7,
                mac: MacAddr([2, 0x42, 0xac, 0x11, 0, 2]),
                mtu: 1450,
                addresses: vec![
                    IpNet {
                        address: "172.17.0.2".parse().unwrap(),
                        prefix_len: 16,
                    },
                    IpNet {
                        address: "fd00::2".parse().unwrap(),
                        prefix_len: 64,
                    },
                ],
            }],
            routes: vec![
                RoutePlan {
                    destination: Some(IpNet {
                        address: "10.9.0.0".parse().unwrap(),
                        prefix_len: 16,
                    }),
                    gateway: None,
                    device: "eth0".into(),
                    source: Some("172.17.0.2".parse().unwrap()),
                    scope: Scope::Link,
                    metric: Some(5),
                },
                RoutePlan {
                    destination: None,
                    gateway: Some("172.17.0.1".parse().unwrap()),
                    device: "eth0".into(),
                    source: None,
                    scope: Scope::Universe,
                    metric: None,
                },
            ],
            neighbours: vec![NeighbourPlan {
                address: "172.17.0.9".parse().unwrap(),
                mac: MacAddr([2, 0, 0, 0, 0, 9]),
                device: "eth0".into(),
            }],
        }
    }

    #[test]
    fn the_agent_request_carries_the_whole_plan() {
        let req = agent_request(&plan());
        let i = &req.interfaces[0];
        assert_eq!(
            (i.name.as_str(), i.mac.as_str(), i.mtu),
            ("eth0", "02:42:ac:11:00:02", 1450)
        );
        let addrs: Vec<_> = i
            .addresses
            .iter()
            .map(|a| format!("{}/{}", a.address, a.prefix_len))
            .collect();
        assert_eq!(addrs, ["172.17.0.2/16", "fd00::2/64"]);
        let r = &req.routes[0];
        assert_eq!(r.destination.address, "10.9.0.0");
        assert_eq!(r.destination.prefix_len, 16);
        assert_eq!(
            (r.gateway.as_str(), r.source.as_str(), r.scope, r.metric),
            ("", "172.17.0.2", 253, 5)
        );
        let d = &req.routes[1];
        assert!(d.destination.is_none());
        assert_eq!(
            (d.gateway.as_str(), d.scope, d.metric),
            ("172.17.0.1", 0, 0)
        );
        assert_eq!(req.routes.len(), 2);
        let mut odd = plan();
        odd.routes[0].scope = Scope::Nowhere;
        odd.routes[1].scope = Scope::Other(17);
        assert!(agent_request(&odd).routes.is_empty());
        let n = &req.neighbours[0];
        assert_eq!(
            (n.address.as_str(), n.mac.as_str(), n.device.as_str()),
            ("172.17.0.9", "02:00:00:00:00:09", "eth0")
        );
    }

    #[test]
    fn the_vmm_gets_the_tap_at_its_fd_with_the_mac_and_mtu() {
        let tap = std::fs::File::open("/dev/null").unwrap();
        let net = SandboxNetwork {
            plan: plan(),
            tap: Some(tap.into()),
        };
        let c = net.net_config().unwrap();
        assert_eq!(c.tap_fd, Some(TAP_FD));
        assert_eq!(c.mac, Some(MacAddr([2, 0x42, 0xac, 0x11, 0, 2])));
        assert_eq!(c.mtu, Some(1450));
        assert_eq!(c.validate(), Ok(()));
        let lo_only = SandboxNetwork {
            plan: NetworkPlan::default(),
            tap: None,
        };
        assert!(lo_only.net_config().is_none());
    }

    #[test]
    fn only_bind_mounted_namespaces_are_used_after_creation() {
        assert_eq!(recorded(Some(Path::new("/proc/123/ns/net"))), None);
        assert_eq!(
            recorded(Some(Path::new("/var/run/netns/cni-1"))),
            Some(PathBuf::from("/var/run/netns/cni-1"))
        );
        assert_eq!(recorded(None), None);
    }

    #[test]
    fn passed_fds_reach_the_child_at_their_number() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "readlink /proc/self/fd/7"]);
        pass_fd(&mut cmd, f.as_raw_fd(), 7);
        let out = cmd.output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "/dev/null");
        // Without it, the close-on-exec fd does not reach the child.
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("readlink /proc/self/fd/{}", f.as_raw_fd())])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
    }
}
