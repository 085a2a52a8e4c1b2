//! The sandbox's shared directory: one virtio-fs share per sandbox, served on the host by
//! virtiofsd and mounted by the guest at a fixed place. Each container's rootfs and the files the
//! runtime hands it (hosts, resolv.conf, bind-mount sources) live under it.

/// The virtio-fs tag the VMM gives the share (`mount -t virtiofs sandpod /run/sandpod/shared`).
pub const VIRTIOFS_TAG: &str = "sandpod";
/// Where the guest mounts the share.
pub const GUEST_SHARED_DIR: &str = "/run/sandpod/shared";

/// The guest path of a container's rootfs inside the share.
pub fn guest_rootfs(container_id: &str) -> String {
    format!("{GUEST_SHARED_DIR}/{container_id}/rootfs")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rootfs_path_is_under_the_share() {
        assert_eq!(super::guest_rootfs("c1"), "/run/sandpod/shared/c1/rootfs");
    }
}
