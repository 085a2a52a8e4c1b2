#!/usr/bin/env bash
# Builds (or reuses from the cache) the KVM test host: the L2 machine that QEMU-TCG boots with an
# emulated AMD SVM CPU, so that a real /dev/kvm exists inside it (see docs/testing.md, "Working
# without hardware KVM").
#
# Output (cached under $SANDPOD_CACHE/testhost/<key>/, key = hash of the inputs below):
#   vmlinuz     Debian's cloud kernel (linux-image-*-cloud-amd64, unpacked, never installed)
#   initrd.img  busybox-static + virtio modules: mounts the root disk and switch_roots
#   rootfs.ext4 debootstrapped Debian bookworm (minbase + containerd, runc, docker.io, podman,
#               qemu-system-x86, ...) with the kernel's modules and our init
# Prints the cache directory on stdout.
source "$(dirname "$0")/../../scripts/lib.sh"

HERE=$REPO_ROOT/tests/kvm-host
MIRROR=${SANDPOD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
KERNEL_META=linux-image-cloud-amd64
PACKAGES=(
  busybox-static kmod procps iproute2 iptables util-linux e2fsprogs
  containerd runc docker.io podman containernetworking-plugins
  qemu-system-x86 libseccomp2 libcap-ng0 strace jq
)
ROOTFS_SIZE=${SANDPOD_TESTHOST_ROOTFS_SIZE:-4G}

need() { command -v "$1" >/dev/null || die "$1 is missing (run: make deps)"; }
need debootstrap; need mkfs.ext4; need cpio; need depmod; need dpkg-deb; need apt-get
[ -x /bin/busybox ] || die "busybox-static is missing (run: make deps)"

kernel_pkg=$(apt-cache depends "$KERNEL_META" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$kernel_pkg" ] || die "cannot resolve $KERNEL_META (run: apt-get update)"
kernel_ver=$(apt-cache policy "$kernel_pkg" | awk '/Candidate:/{print $2}')

key=$( (printf '%s %s %s %s\n' "$SUITE" "$kernel_pkg" "$kernel_ver" "${PACKAGES[*]} $ROOTFS_SIZE"
        cat "$0" "$HERE"/l2-init "$HERE"/l2-initrd-init) | sha256sum | cut -c1-16)
out=$SANDPOD_CACHE/testhost/$key
if [ -f "$out/rootfs.ext4" ] && [ -f "$out/initrd.img" ] && [ -f "$out/vmlinuz" ]; then
  echo "$out"; exit 0
fi

log "building the KVM test host image ($kernel_pkg $kernel_ver, Debian $SUITE) into $out"
start=$(date +%s)
mkdir -p "$SANDPOD_CACHE/testhost"
tmp=$(mktemp -d "$SANDPOD_CACHE/testhost/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# 1. The L2 kernel and its modules, unpacked from the .deb.
(cd "$tmp" && apt-get download -q "$kernel_pkg" >/dev/null 2>&1) || die "apt-get download $kernel_pkg failed"
dpkg-deb -x "$tmp"/"$kernel_pkg"_*.deb "$tmp/kernel"
kver=$(ls "$tmp/kernel/lib/modules")
depmod -b "$tmp/kernel" "$kver"
cp "$tmp/kernel/boot/vmlinuz-$kver" "$tmp/vmlinuz"

# 2. A tiny initramfs: busybox + what it takes to reach the root disk (virtio-pci, virtio-blk).
ird=$tmp/initrd
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,modules}
cp /bin/busybox "$ird/bin/busybox"
for applet in sh mount umount insmod switch_root mkdir sleep cat echo; do ln -s busybox "$ird/bin/$applet"; done
: >"$ird/modules/order"
for m in virtio_pci virtio_blk; do modprobe -d "$tmp/kernel" -S "$kver" --show-depends "$m"; done |
  awk '$1=="insmod"{print $2}' | while read -r ko; do
    name=$(basename "$ko")
    grep -qx "$name" "$ird/modules/order" && continue
    cp "$ko" "$ird/modules/$name"
    echo "$name" >>"$ird/modules/order"
  done
install -m 0755 "$HERE/l2-initrd-init" "$ird/init"
(cd "$ird" && find . -print0 | LC_ALL=C sort -z | cpio --null --reproducible -o -H newc --quiet) >"$tmp/initrd.img"

# 3. The root filesystem: Debian bookworm with the container engines and QEMU.
root=$tmp/rootfs
log "debootstrap $SUITE (${#PACKAGES[@]} extra packages)"
debootstrap --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  "$SUITE" "$root" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 || {
  tail -30 "$tmp/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
mkdir -p "$root/lib/modules"
cp -a "$tmp/kernel/lib/modules/$kver" "$root/lib/modules/"
install -m 0755 "$HERE/l2-init" "$root/sbin/sandpod-testhost-init"
echo testhost >"$root/etc/hostname"
printf '127.0.0.1 localhost testhost\n::1 localhost\n' >"$root/etc/hosts"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
mkdir -p "$root/sandpod"

log "mkfs.ext4 ($ROOTFS_SIZE, sparse)"
mkfs.ext4 -q -F -L sandpod-l2 -E root_owner=0:0 -d "$root" "$tmp/rootfs.ext4" "$ROOTFS_SIZE"
rm -rf "$root" "$tmp/kernel" "$ird" "$tmp"/*.deb

trap - EXIT
atomic_publish "$tmp" "$out"
log "test host image ready in $(( $(date +%s) - start )) s: $out"
echo "$out"
