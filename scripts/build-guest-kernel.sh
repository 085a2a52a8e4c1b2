#!/usr/bin/env bash
# Builds the guest kernel (uncompressed vmlinux, for direct 64-bit/PVH boot) from Debian's
# linux-source package: tinyconfig + guest-kernel-config/*.config. Cached under
# $SANDPOD_CACHE/guest-kernel/<key>/ where key = hash(source version, fragments, this script),
# so a second run is instant. Fails if a requested option did not survive olddefconfig.
# Copies vmlinux and its .config to $BUILD_DIR/guest/.
source "$(dirname "$0")/lib.sh"

SRC_PKG=${SANDPOD_KERNEL_SOURCE_PKG:-linux-source-6.12}
FRAGMENTS=("$REPO_ROOT"/guest-kernel-config/*.config)

src_ver=$(dpkg-query -W -f='${Version}' "$SRC_PKG" 2>/dev/null) ||
  die "$SRC_PKG is not installed (run: make deps)"
tarball=$(ls /usr/src/"$SRC_PKG".tar.* 2>/dev/null | head -1)
[ -n "$tarball" ] || die "no /usr/src/$SRC_PKG.tar.* (package $SRC_PKG broken?)"

key=$( (echo "$SRC_PKG $src_ver"; hash_inputs "${FRAGMENTS[@]}" "$0") | sha256sum | cut -c1-16)
out=$SANDPOD_CACHE/guest-kernel/$key

# check_config FINAL_CONFIG FRAGMENT... : print each requested option that did not stick.
check_config() {
  local final=$1; shift
  grep -hE '^(CONFIG_[A-Za-z0-9_]+=.*|# CONFIG_[A-Za-z0-9_]+ is not set)$' "$@" | while read -r line; do
    if [[ $line == "# "* ]]; then
      opt=${line#\# }; opt=${opt%% *}
      grep -qE "^$opt=" "$final" && echo "$opt: requested off, got $(grep -E "^$opt=" "$final")"
    else
      opt=${line%%=*}
      grep -qxF "$line" "$final" || echo "$opt: requested ${line#*=}, got $(grep -E "^$opt=" "$final" || echo 'not set')"
    fi
  done
  return 0
}

if [ ! -f "$out/vmlinux" ]; then
  start=$(date +%s)
  srcdir=$SANDPOD_CACHE/src/$SRC_PKG-$src_ver
  if [ ! -f "$srcdir/.unpacked" ]; then
    log "unpacking $tarball"
    rm -rf "$srcdir"; mkdir -p "$srcdir"
    tar -xf "$tarball" -C "$srcdir" --strip-components=1
    touch "$srcdir/.unpacked"
  fi
  objdir=$SANDPOD_CACHE/guest-kernel/obj-$SRC_PKG-$src_ver  # kept: fragment edits rebuild incrementally
  mkdir -p "$objdir"
  log "configuring ($SRC_PKG $src_ver, tinyconfig + ${#FRAGMENTS[@]} fragment(s))"
  make -s -C "$srcdir" O="$objdir" tinyconfig >/dev/null
  "$srcdir/scripts/kconfig/merge_config.sh" -m -O "$objdir" "$objdir/.config" "${FRAGMENTS[@]}" >/dev/null
  make -s -C "$srcdir" O="$objdir" olddefconfig >/dev/null
  missing=$(check_config "$objdir/.config" "${FRAGMENTS[@]}")
  if [ -n "$missing" ]; then
    printf '%s\n' "$missing" >&2
    die "the options above did not survive olddefconfig (fix guest-kernel-config/)"
  fi
  log "building vmlinux (make -j$(nproc)); a cold build takes several minutes"
  make -s -C "$srcdir" O="$objdir" -j"$(nproc)" vmlinux >"$objdir/build.log" 2>&1 || {
    tail -40 "$objdir/build.log" >&2; die "kernel build failed"; }
  tmp=$(mktemp -d "$SANDPOD_CACHE/guest-kernel/.out.XXXXXX")
  cp "$objdir/vmlinux" "$tmp/vmlinux"
  cp "$objdir/.config" "$tmp/config"
  echo "$SRC_PKG $src_ver" >"$tmp/source"
  atomic_publish "$tmp" "$out"
  log "kernel built in $(( $(date +%s) - start )) s"
fi

mkdir -p "$BUILD_DIR/guest"
cp "$out/vmlinux" "$BUILD_DIR/guest/vmlinux"
cp "$out/config" "$BUILD_DIR/guest/kernel.config"
log "vmlinux: $(stat -c %s "$out/vmlinux") bytes ($(cat "$out/source"), cache $out)"
