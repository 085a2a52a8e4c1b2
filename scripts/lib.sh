# Shared helpers for Sandpod's build scripts (sourced, not executed).
set -euo pipefail

SANDPOD_CACHE=${SANDPOD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandpod}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${SANDPOD_BUILD_DIR:-$REPO_ROOT/build}

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# hash_inputs FILE... : a short, stable hash of the files' names and contents.
hash_inputs() {
  local f
  for f in "$@"; do
    printf '%s\n' "${f#"$REPO_ROOT"/}"
    sha256sum <"$f"
  done | sha256sum | cut -c1-16
}

# atomic_publish TMPDIR DEST : move a finished build into the cache in one step.
atomic_publish() {
  local tmp=$1 dest=$2
  rm -rf "$dest.old"
  [ -e "$dest" ] && mv "$dest" "$dest.old"
  mv "$tmp" "$dest"
  rm -rf "$dest.old"
}
