//! Creating a container in the pod's VM: its files shared over virtio-fs, its stdio relayed,
//! CreateContainer through the agent; undone if any step fails.
use std::sync::Arc;

use anyhow::Context;
use sandpod_protocol::ErrorChain;

use super::io;
use super::process::Proc;
use super::rootfs;
use super::task::{CreateRequest, Result};
use crate::agent_client::StreamToken;
use crate::bundle::Bundle;
use crate::container::lifecycle::guest_spec;
use crate::sandbox::Sandbox;

/// Shares the container's files with the VM, relays its stdio and creates it in the guest.
pub(super) async fn create_in(
    sb: &Sandbox,
    req: &CreateRequest,
    bundle: &Bundle,
) -> Result<(Arc<Proc>, tokio::task::JoinHandle<()>)> {
    // A rootfs that is this container's own writable snapshot (containerd's overlay with its
    // upper dir) is shared writable even when root.readonly is set: the agent creates the mount
    // points in it, then makes the root read-only, as runc does (CRI's pause container is
    // read-only and binds /etc/resolv.conf and /etc/hostname, which an image may lack). Writes
    // can only reach that container's own upper dir. Any other rootfs keeps the host-side
    // read-only share.
    let shared_view = if rootfs::is_own_writable_snapshot(&req.rootfs) {
        let mut view = bundle.clone();
        if let Some(root) = view.spec.root_mut() {
            root.set_readonly(Some(false));
        }
        view
    } else {
        bundle.clone()
    };
    let (spec_json, guest_rootfs) =
        sb.share_container(&req.id, &shared_view, &guest_spec(&bundle.spec))?;
    let r = async {
        let mut stdio = req.stdio.clone();
        stdio.terminal = bundle.terminal();
        let token = StreamToken::generate().context("drawing a stream token")?;
        let relay = io::start(&sb.client, &req.id, &stdio, &token).await?;
        let pid = sb
            .client
            .create_container(&req.id, spec_json, &guest_rootfs, stdio.streams(), &token)
            .await
            .context("creating the container")?;
        let proc = Arc::new(Proc::new("", &req.id, stdio));
        proc.set_pid(pid);
        let output = proc.attach(relay);
        anyhow::Ok((proc, output))
    }
    .await;
    if r.is_err() {
        if let Err(e) = crate::sandbox::share::remove_container(&sb.layout, &req.id) {
            tracing::warn!("unsharing {}: {}", req.id, ErrorChain(&e));
        }
    }
    Ok(r?)
}
