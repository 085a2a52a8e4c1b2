#!/usr/bin/env bash
# Builds the offline busybox container image from the busybox bundle's rootfs
# (build/bundles/busybox/rootfs, scripts/build-bundle.sh): build/images/busybox.tar; and from the
# same layer the pod sandbox ("pause") image of the CRI tests, build/images/pause.tar
# (sandpod-test/pause:latest, entrypoint busybox `sleep 2147483647`: containerd's CRI runs the
# image's entrypoint as the pod's first process and stops it with SIGKILL; see
# tests/kvm-host/guest/cri-check.sh).
#
# The one tarball is at the same time
#   - an OCI image layout: oci-layout, index.json (one manifest, annotated with
#     org.opencontainers.image.ref.name and io.containerd.image.name), blobs/sha256/<hex>;
#   - a docker-archive: manifest.json (Config, RepoTags, Layers pointing into blobs/sha256/) and
#     `repositories`,
# like the archives Docker >= 25 writes, so that `docker load -i`, `podman load -i` and
# `ctr images import` all take it. The names it gets (checked in the KVM test host):
#   docker:  sandpod-test/busybox:latest          (from manifest.json's RepoTags)
#   podman:  docker.io/sandpod-test/busybox:latest (from the index's io.containerd.image.name;
#            `podman run sandpod-test/busybox:latest` finds it)
#   ctr:     docker.io/sandpod-test/busybox:latest (io.containerd.image.name; ctr uses that
#            annotation as is, while a bare ref.name would become import-<date>:<ref>)
# Image config: Cmd ["sh"], Env PATH, amd64/linux, one uncompressed layer. (pause: Entrypoint
# ["sleep", "2147483647"] instead of the Cmd, named sandpod-test/pause:latest the same ways.)
#
# Reproducible: entries sorted, mtime 0, the outer archive's entries owned by 0:0; the layer keeps
# the rootfs' numeric owners (root, and 1000:1000 for /home/user) and modes. Same rootfs, same
# bytes. Needs only tar, sha256sum, stat and printf.
source "$(dirname "$0")/lib.sh"

rootfs=$BUILD_DIR/bundles/busybox/rootfs
[ -d "$rootfs" ] || die "no $rootfs (run: make bundle, scripts/build-bundle.sh)"

tmp=$(mktemp -d "$BUILD_DIR/.image.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Common tar flags for reproducible archives (GNU format: no atime/ctime, no pax headers).
tar_repro=(--format=gnu --mtime=@0 --no-recursion --null -T -)

# 1. The layer: the rootfs, entries sorted, relative names without "./" (both images').
(cd "$rootfs" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z |
  tar -C "$rootfs" -cf - --numeric-owner "${tar_repro[@]}") >"$tmp/layer.tar"

# image_tar REPO TAG CONFIG OUT: the image archive OUT of the layer with the image config's
# "config" object CONFIG (JSON), named REPO:TAG.
image_tar() {
  local REPO=$1 TAG=$2 image_config=$3 out=$4
  local FULL_NAME=docker.io/$REPO:$TAG img blobs layer layer_size config config_size manifest manifest_size
  img=$tmp/$(basename "$out" .tar)
  blobs=$img/blobs/sha256
  mkdir -p "$blobs"
  # add_blob FILE: moves FILE into blobs/sha256/<digest>, prints the hex digest.
  add_blob() {
    local hex
    hex=$(sha256sum "$1" | cut -d' ' -f1)
    mv "$1" "$blobs/$hex"
    echo "$hex"
  }
  size_of() { stat -c %s "$blobs/$1"; }

  cp "$tmp/layer.tar" "$img/layer.tar"
  layer=$(add_blob "$img/layer.tar")
  layer_size=$(size_of "$layer")

  # 2. The image config (the layer is uncompressed, so its diff_id is its digest).
  printf '%s' \
    '{"architecture":"amd64","os":"linux",' \
    '"config":'"$image_config"',' \
    '"created":"1970-01-01T00:00:00Z",' \
    '"history":[{"created":"1970-01-01T00:00:00Z","created_by":"sandpod scripts/build-image-tar.sh: busybox-static rootfs"}],' \
    '"rootfs":{"type":"layers","diff_ids":["sha256:'"$layer"'"]}}' >"$img/config.json"
  config=$(add_blob "$img/config.json")
  config_size=$(size_of "$config")

  # 3. The OCI manifest and index.
  printf '%s' \
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",' \
    '"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config"'","size":'"$config_size"'},' \
    '"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:'"$layer"'","size":'"$layer_size"'}]}' \
    >"$img/manifest.oci"
  manifest=$(add_blob "$img/manifest.oci")
  manifest_size=$(size_of "$manifest")

  printf '%s' \
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",' \
    '"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest"'","size":'"$manifest_size"',' \
    '"platform":{"architecture":"amd64","os":"linux"},' \
    '"annotations":{"io.containerd.image.name":"'"$FULL_NAME"'","org.opencontainers.image.ref.name":"'"$REPO:$TAG"'"}}]}' \
    >"$img/index.json"
  printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$img/oci-layout"

  # 4. The docker-archive side: manifest.json and the legacy `repositories`.
  printf '%s' \
    '[{"Config":"blobs/sha256/'"$config"'","RepoTags":["'"$REPO:$TAG"'"],' \
    '"Layers":["blobs/sha256/'"$layer"'"]}]' >"$img/manifest.json"
  printf '%s' '{"'"$REPO"'":{"'"$TAG"'":"'"$layer"'"}}' >"$img/repositories"

  # 5. The archive: sorted, 0:0, mtime 0, fixed modes.
  chmod 0755 "$img/blobs" "$blobs"
  chmod 0644 "$blobs"/* "$img/index.json" "$img/oci-layout" "$img/manifest.json" "$img/repositories"
  mkdir -p "$(dirname "$out")"
  (cd "$img" && printf '%s\0' blobs blobs/sha256 blobs/sha256/* index.json manifest.json oci-layout repositories |
    LC_ALL=C sort -z | tar -C "$img" -cf - --owner=0 --group=0 --numeric-owner "${tar_repro[@]}") >"$out.tmp"
  mv "$out.tmp" "$out"
  log "image $out: $REPO:$TAG, layer sha256:${layer:0:12} ($layer_size bytes), manifest sha256:${manifest:0:12}, $(stat -c %s "$out") bytes"
}

path_env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
image_tar sandpod-test/busybox latest '{"Env":["'"$path_env"'"],"Cmd":["sh"]}' "$BUILD_DIR/images/busybox.tar"
image_tar sandpod-test/pause latest '{"Env":["'"$path_env"'"],"Entrypoint":["sleep","2147483647"]}' \
  "$BUILD_DIR/images/pause.tar"
