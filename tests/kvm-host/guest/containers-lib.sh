# Helpers for the `sandpod run` checks (sourced; sources lib.sh for `check`, `finish`, out_is,
# err_has, rc_is): bundles made from the busybox bundle with a jq filter, `sandpod run` with a
# bounded time, leftover checks.
. "$(dirname "$0")/lib.sh"
ROOT=${SANDPOD_ROOT:-/run/sandpod-test}
work=$(mktemp -d /tmp/containers.XXXXXX)
sandpod() { "$dir/bin/sandpod" --root "$ROOT" "$@"; }

# mkbundle NAME JQ_FILTER: $work/NAME with a private copy of the busybox rootfs.
mkbundle() {
  b=$work/$1
  mkdir -p "$b"
  cp -a "$dir/bundles/busybox/rootfs" "$b/rootfs"
  jq "$2" "$dir/bundles/busybox/config.json" >"$b/config.json" || { echo "jq failed for $1"; return 1; }
}

# args JSON_ARRAY: a jq filter setting process.args.
args() { printf '.process.args = %s' "$1"; }

# run NAME [sandpod run flags]: runs bundle NAME as container NAME; stdout in $work/NAME.out,
# stderr in $work/NAME.err, status in $rc.
run() {
  n=$1; shift
  timeout -k 5 120 "$dir/bin/sandpod" --root "$ROOT" --log "$work/sandpod.log" run --bundle "$work/$n" "$@" "$n" \
    </dev/null >"$work/$n.out" 2>"$work/$n.err"
  rc=$?
  echo "run $n: exit $rc, stdout: $(head -c 300 "$work/$n.out" | tr '\n' '|') stderr: $(head -c 300 "$work/$n.err" | tr '\n' '|')"
}

# nothing_left: no VMM, virtiofsd or monitor process, no mount, socket or state dir of ours.
# The VM template cache ($ROOT/.templates: templates and their lock files) and the jails' shared
# exec-only VMM binary ($ROOT/.vmm/<key>/sandpod-vmm) stay by design; a template build's state
# directory (b-*), an unfinished template (*.tmp) or a copy still staged (.vmm/.tmp-*) does not.
nothing_left() {
  ok=0
  wait_refills
  # The monitor, the VMM and virtiofsd all have a path under $ROOT/ on their command line.
  if pgrep -f "$ROOT/" >/dev/null; then
    echo "leftover processes:"; pgrep -af "$ROOT/"; ok=1
  fi
  if grep -q " $ROOT" /proc/self/mountinfo; then
    echo "leftover mounts:"; grep " $ROOT" /proc/self/mountinfo; ok=1
  fi
  if [ -n "$(ls -A "$ROOT" 2>/dev/null | grep -vx -e '.templates' -e '.vmm')" ]; then
    echo "leftover state: $(ls -A "$ROOT")"; find "$ROOT" -maxdepth 2; ok=1
  fi
  if [ -n "$(find "$ROOT/.templates" -mindepth 1 -maxdepth 1 \( -name 'b-*' -o -name '*.tmp' \) 2>/dev/null)" ]; then
    echo "leftover template build:"; find "$ROOT/.templates" -maxdepth 2; ok=1
  fi
  if [ -n "$(find "$ROOT/.vmm" -mindepth 1 -maxdepth 1 -name '.tmp-*' 2>/dev/null)" ]; then
    echo "leftover staged VMM copy:"; find "$ROOT/.vmm" -maxdepth 2; ok=1
  fi
  return $ok
}
