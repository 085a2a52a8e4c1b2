//! Traffic control through netlink: the ingress qdisc (`tc qdisc add dev X ingress`, handle
//! `ffff:`) and the match-all u32 filter that redirects everything it receives out of another
//! interface (`tc filter add dev X parent ffff: protocol all u32 match u8 0 0 action mirred
//! egress redirect dev Y`). Deleting the qdisc deletes its filters.
use futures_util::TryStreamExt;
use rtnetlink::packet_route::tc::{
    TcActionAttribute, TcActionMirrorOption, TcActionOption, TcAttribute, TcFilterU32Option,
    TcHandle, TcMessage, TcMirrorActionType, TcOption,
};
use rtnetlink::Handle;

use super::error::{errno, nl, NetworkError};

/// The ingress qdisc's handle, `ffff:0`; its filters' parent.
const INGRESS_HANDLE: u32 = 0xffff_0000;

/// Adds an ingress qdisc to interface `index`. Fails if it has one already (someone else's:
/// it is not taken over).
pub(crate) async fn add_ingress(
    handle: &Handle,
    index: u32,
    name: &str,
) -> Result<(), NetworkError> {
    handle
        .qdisc()
        .add(ifindex(index))
        .ingress()
        .execute()
        .await
        .map_err(nl(format!("adding an ingress qdisc to {name}")))
}

/// Deletes interface `index`'s ingress qdisc (and so its filters). `Ok(false)` if there was
/// none, or no such interface.
pub(crate) async fn del_ingress(
    handle: &Handle,
    index: u32,
    name: &str,
) -> Result<bool, NetworkError> {
    let mut req = handle.qdisc().del(ifindex(index));
    req.message_mut().header.parent = TcHandle::INGRESS;
    match req.execute().await {
        Ok(()) => Ok(true),
        Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::EINVAL | libc::ENODEV)) => {
            Ok(false)
        }
        Err(e) => Err(nl(format!("deleting the ingress qdisc of {name}"))(e)),
    }
}

/// Whether interface `index` has an ingress qdisc.
#[cfg(test)]
pub(crate) async fn has_ingress(handle: &Handle, index: u32) -> Result<bool, NetworkError> {
    // Without strict checking the kernel dumps every interface's qdiscs: filtered here.
    let qdiscs: Vec<TcMessage> = handle
        .qdisc()
        .get()
        .index(ifindex(index))
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing qdiscs"))?;
    Ok(qdiscs.iter().any(|q| {
        u32::try_from(q.header.index).ok() == Some(index)
            && q.header.parent == TcHandle::INGRESS
            && q.attributes
                .iter()
                .any(|a| matches!(a, TcAttribute::Kind(k) if k == "ingress"))
    }))
}

/// Adds to interface `from` (which has an ingress qdisc) the u32 match-all filter that
/// redirects every frame it receives out of interface `to`.
pub(crate) async fn add_redirect(
    handle: &Handle,
    from: u32,
    to: u32,
    what: &str,
) -> Result<(), NetworkError> {
    let eth_p_all = (libc::ETH_P_ALL as u16).to_be();
    handle
        .traffic_filter(ifindex(from))
        .add()
        .parent(INGRESS_HANDLE)
        .protocol(eth_p_all)
        .redirect(to)
        .map_err(nl(format!("building the redirect filter {what}")))?
        .execute()
        .await
        .map_err(nl(format!("adding the redirect filter {what}")))
}

/// The u32 filters on interface `index`'s ingress qdisc, as the interfaces their mirred
/// actions redirect to (egress).
pub(crate) async fn redirect_targets(
    handle: &Handle,
    index: u32,
) -> Result<Vec<u32>, NetworkError> {
    let filters: Vec<TcMessage> = handle
        .traffic_filter(ifindex(index))
        .get()
        .root()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing filters"))?;
    Ok(filters.iter().flat_map(u32_redirects).collect())
}

/// The egress-redirect targets of a u32 filter's mirred actions (none for another kind).
pub(crate) fn u32_redirects(filter: &TcMessage) -> Vec<u32> {
    let is_u32 = filter
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(k) if k == "u32"));
    if !is_u32 {
        return Vec::new();
    }
    let mut targets = Vec::new();
    for attr in &filter.attributes {
        let TcAttribute::Options(options) = attr else {
            continue;
        };
        for option in options {
            let TcOption::U32(TcFilterU32Option::Action(actions)) = option else {
                continue;
            };
            for action in actions {
                let mirred = action
                    .attributes
                    .iter()
                    .any(|a| matches!(a, TcActionAttribute::Kind(k) if k == "mirred"));
                if !mirred {
                    continue;
                }
                for a in &action.attributes {
                    let TcActionAttribute::Options(opts) = a else {
                        continue;
                    };
                    for o in opts {
                        if let TcActionOption::Mirror(TcActionMirrorOption::Parms(p)) = o {
                            if p.eaction == TcMirrorActionType::EgressRedir {
                                targets.push(p.ifindex);
                            }
                        }
                    }
                }
            }
        }
    }
    targets
}

/// Interface indexes are u32 in link messages and i32 in tc ones; the kernel's are positive
/// ints, so the conversion never saturates in practice.
fn ifindex(index: u32) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}
