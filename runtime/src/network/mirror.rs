//! `mirror`: a tap per scanned interface and the tc filters between them; `unmirror` and
//! `teardown`: everything removed again.
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute};
use rtnetlink::{Handle, LinkUnspec};
use tracing::{debug, info, warn};

use super::error::{errno, nl, NetworkError};
use super::netns::run_in_netns;
use super::plan::{NetworkPlan, PlanInterface};
use super::scan::scan_with;
use super::tap::{create_tap, is_our_tap_name, tap_name};
use super::tc::{add_ingress, add_redirect, del_ingress, redirect_targets};

/// One of the namespace's interfaces and the tap mirroring it.
#[derive(Debug)]
pub struct MirroredInterface {
    /// The interface (veth) in the pod's namespace.
    pub interface: String,
    pub index: u32,
    /// The tap (`tap<N>_kata`, N the interface's position in the plan).
    pub tap: String,
    pub tap_index: u32,
    /// The tap: it exists as long as this fd (or a copy of it, such as the VMM's) is open.
    /// Usable from any namespace.
    pub tap_fd: OwnedFd,
}

/// What [`mirror`] made: the plan the agent configures the guest with, and a tap per
/// interface, in the plan's order.
#[derive(Debug)]
pub struct Mirrored {
    pub plan: NetworkPlan,
    pub interfaces: Vec<MirroredInterface>,
}

impl Mirrored {
    /// The taps' fds, in the plan's order (for the VMM's `--net tap-fd=`).
    pub fn tap_fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.interfaces.iter().map(|i| i.tap_fd.as_fd())
    }
}

/// Scans the namespace at `netns` and mirrors each interface found onto a new tap: the tap
/// gets the interface's MTU and is set up, both get an ingress qdisc, and a u32 match-all
/// filter on each redirects what it receives out of the other. A namespace with only `lo`
/// gives an empty plan and no tap. On failure whatever was made is removed again before the
/// error is returned.
pub fn mirror(netns: &Path) -> Result<Mirrored, NetworkError> {
    let mirrored = run_in_netns(netns, |handle| async move { mirror_with(&handle).await })?;
    for m in &mirrored.interfaces {
        info!(netns = %netns.display(), interface = m.interface, tap = m.tap, "mirrored onto a tap");
    }
    Ok(mirrored)
}

/// Removes what [`mirror`] made: the ingress qdiscs of the interfaces and taps (their filters
/// go with them) and the taps (deleted, and their fds closed: a copy of an fd still open
/// elsewhere, such as the VMM's, no longer keeps the interface). Then does what [`teardown`]
/// does. A namespace that no longer exists has nothing left to remove.
pub fn unmirror(netns: &Path, mirrored: Mirrored) -> Result<(), NetworkError> {
    let targets: Vec<(u32, String)> = mirrored
        .interfaces
        .iter()
        .map(|m| (m.index, m.interface.clone()))
        .collect();
    let result = run_gone_ok(netns, move |handle| async move {
        let mut first_err = None;
        for (index, name) in &targets {
            if let Err(e) = del_ingress(&handle, *index, name).await {
                warn!(interface = name, error = %e, "removing the ingress qdisc failed");
                first_err.get_or_insert(e);
            }
        }
        let rest = teardown_with(&handle).await;
        first_err.map_or(rest, Err)
    });
    // Closed after the teardown (not before) so the taps could still be found by name there.
    drop(mirrored);
    result
}

/// Removes our taps (`tap<N>_kata`) from the namespace at `netns`, their ingress qdiscs, and
/// the ingress qdisc of every interface whose u32 filters redirect to one of them (or to an
/// interface that no longer exists, what is left when a tap went away with its last fd). For
/// when the [`Mirrored`] is gone (another process made it, or it was dropped). Idempotent; a
/// namespace that no longer exists has nothing left to remove. Every step is tried even if
/// one fails; the first failure is returned.
pub fn teardown(netns: &Path) -> Result<(), NetworkError> {
    run_gone_ok(netns, |handle| async move { teardown_with(&handle).await })
}

/// [`run_in_netns`], a namespace that does not exist (any more) being a success.
fn run_gone_ok<F, Fut>(netns: &Path, work: F) -> Result<(), NetworkError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), NetworkError>>,
{
    match run_in_netns(netns, work) {
        Err(NetworkError::OpenNetns { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(())
        }
        other => other,
    }
}

/// What [`mirror_with`] has made so far, to undo on failure.
#[derive(Default)]
struct Made {
    done: Vec<MirroredInterface>,
    /// A tap made for the interface being worked on (not in `done` yet).
    tap: Option<(String, u32, OwnedFd)>,
    /// Interfaces (index, name) given an ingress qdisc.
    qdiscs: Vec<(u32, String)>,
}

async fn mirror_with(handle: &Handle) -> Result<Mirrored, NetworkError> {
    let plan = scan_with(handle).await?;
    let mut made = Made::default();
    for (n, iface) in plan.interfaces.iter().enumerate() {
        if let Err(error) = mirror_one(handle, n, iface, &mut made).await {
            return Err(match undo(handle, made).await {
                Ok(()) => error,
                Err(cleanup) => NetworkError::CleanupFailed {
                    error: Box::new(error),
                    cleanup: Box::new(cleanup),
                },
            });
        }
    }
    Ok(Mirrored {
        plan,
        interfaces: made.done,
    })
}

async fn mirror_one(
    handle: &Handle,
    n: usize,
    iface: &PlanInterface,
    made: &mut Made,
) -> Result<(), NetworkError> {
    let tap = tap_name(n);
    let fd = create_tap(&tap)?;
    let tap_index = link_index(handle, &tap).await?;
    made.tap = Some((tap.clone(), tap_index, fd));
    no_ipv6_address(handle, tap_index, &tap).await;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(tap_index)
                .mtu(iface.mtu)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("setting {tap} up with MTU {}", iface.mtu)))?;
    add_ingress(handle, iface.index, &iface.name).await?;
    made.qdiscs.push((iface.index, iface.name.clone()));
    add_ingress(handle, tap_index, &tap).await?;
    made.qdiscs.push((tap_index, tap.clone()));
    add_redirect(
        handle,
        iface.index,
        tap_index,
        &format!("{} -> {tap}", iface.name),
    )
    .await?;
    add_redirect(
        handle,
        tap_index,
        iface.index,
        &format!("{tap} -> {}", iface.name),
    )
    .await?;
    if let Some((tap, tap_index, tap_fd)) = made.tap.take() {
        made.done.push(MirroredInterface {
            interface: iface.name.clone(),
            index: iface.index,
            tap,
            tap_index,
            tap_fd,
        });
    }
    Ok(())
}

/// Keeps the tap without an IPv6 link-local address (`addr_gen_mode none`), so the pod
/// namespace's own stack does not send neighbour discovery and MLD into the guest through it.
/// Set before the tap is up (the address is made then). Without IPv6 in the kernel the request
/// fails: that is only logged.
async fn no_ipv6_address(handle: &Handle, index: u32, name: &str) {
    let spec =
        LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
            In6AddrGenMode::None,
        )])]);
    let req = LinkUnspec::new_with_index(index)
        .append_extra_attribute(spec)
        .build();
    if let Err(e) = handle.link().set(req).execute().await {
        debug!(tap = name, error = %e, "cannot turn IPv6 address generation off");
    }
}

/// Undoes a failed [`mirror_with`]: the qdiscs it added (newest first), then the taps (deleted
/// and their fds closed). Every step is tried; the first failure is returned.
async fn undo(handle: &Handle, made: Made) -> Result<(), NetworkError> {
    let mut first_err = None;
    for (index, name) in made.qdiscs.iter().rev() {
        if let Err(e) = del_ingress(handle, *index, name).await {
            first_err.get_or_insert(e);
        }
    }
    let taps = made.tap.into_iter().chain(
        made.done
            .into_iter()
            .map(|m| (m.tap, m.tap_index, m.tap_fd)),
    );
    for (name, index, fd) in taps {
        if let Err(e) = del_link(handle, index, &name).await {
            first_err.get_or_insert(e);
        }
        drop(fd);
    }
    first_err.map_or(Ok(()), Err)
}

async fn teardown_with(handle: &Handle) -> Result<(), NetworkError> {
    let links = super::scan::list_links(handle).await?;
    let named: Vec<(u32, String)> = links
        .iter()
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some((l.header.index, n.clone())),
                _ => None,
            })
        })
        .collect();
    let (taps, others): (Vec<_>, Vec<_>) = named
        .into_iter()
        .partition(|(_, name)| is_our_tap_name(name));
    let tap_indexes: Vec<u32> = taps.iter().map(|(i, _)| *i).collect();
    let mut first_err = None;
    for (index, name) in &others {
        let ours = match redirect_targets(handle, *index).await {
            Ok(targets) => targets.iter().any(|t| *t == 0 || tap_indexes.contains(t)),
            Err(e) => {
                first_err.get_or_insert(e);
                false
            }
        };
        if ours {
            match del_ingress(handle, *index, name).await {
                Ok(_) => info!(
                    interface = name,
                    "removed the ingress qdisc redirecting to a tap"
                ),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    for (index, name) in &taps {
        if let Err(e) = del_ingress(handle, *index, name).await {
            first_err.get_or_insert(e);
        }
        match del_link(handle, *index, name).await {
            Ok(()) => info!(tap = name, "removed the tap"),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The index of interface `name`.
pub(crate) async fn link_index(handle: &Handle, name: &str) -> Result<u32, NetworkError> {
    let link = handle
        .link()
        .get()
        .match_name(name)
        .execute()
        .try_next()
        .await
        .map_err(|e| match errno(&e) {
            Some(libc::ENODEV) => NetworkError::NoSuchInterface(name.to_string()),
            _ => nl(format!("looking up {name}"))(e),
        })?;
    link.map(|l| l.header.index)
        .ok_or_else(|| NetworkError::NoSuchInterface(name.to_string()))
}

/// Deletes interface `index`; gone already is fine.
async fn del_link(handle: &Handle, index: u32, name: &str) -> Result<(), NetworkError> {
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(nl(format!("deleting {name}"))(e)),
    }
}
