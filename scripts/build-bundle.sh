#!/usr/bin/env bash
# Builds the busybox OCI bundle the demo and the tests run, offline, from Debian's
# busybox-static: build/bundles/busybox/{config.json, rootfs/}. The rootfs has busybox with a
# symlink per applet in /bin, /etc/passwd and /etc/group with root, a user (1000) and nobody,
# and the usual mount points. config.json is tests/bundles/busybox/config.json.
source "$(dirname "$0")/lib.sh"

BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || die "no $BUSYBOX (run: make deps, it installs busybox-static)"
if readelf -d "$BUSYBOX" 2>/dev/null | grep -q "(NEEDED)"; then
  die "$BUSYBOX is dynamically linked; install busybox-static"
fi

out=$BUILD_DIR/bundles/busybox
mkdir -p "$BUILD_DIR"
tmp=$(mktemp -d "$BUILD_DIR/.bundle.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/rootfs
mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp,root,home/user,var,run,mnt}
chmod 1777 "$root/tmp"
install -m 0755 "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
user:x:1000:
users:x:100:user
nogroup:x:65534:
GROUP
chown 1000:1000 "$root/home/user"
cp "$REPO_ROOT/tests/bundles/busybox/config.json" "$tmp/config.json"
rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$tmp" "$out"
trap - EXIT
log "bundle $out: $(find "$out/rootfs" | wc -l) entries"
