#!/bin/sh
# Runs inside the KVM test host: a container's rootfs I/O under sandpod (virtio-fs, virtiofsd
# reading the host's files) vs runc (the same files, directly), on the same bundle contents.
# Each container run, timed inside the container (its /proc/uptime, 10 ms steps):
#   read  - `dd bs=1M` of a 64 MiB file of random bytes (host page cache warm in both cases; the
#           guest's page cache is cold: a new VM per run);
#   small - unpack a tar of 2000 files of 2.5 KiB in 20 directories onto the rootfs, then
#           `find` them and `cat` every one.
#   fs-bench.sh [RUNS [VARIANTS]]
# VARIANTS: space-separated sandpod configurations run in the same rounds, each `NAME` or
# `NAME:TOML` (TOML lines of `[hypervisor]`, `;`-separated), e.g.
#   "kata kata-always:virtiofs_cache=\"always\""
# Prints `fs_read <variant>|runc <MiB/s>|fail`, `fs_small <variant>|runc <ms>|fail` per run
# and, under sandpod, `fs_irqs <variant> <n>`.
set -u
runs=${1:-3}
variants=${2:-kata}
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/fs-bench.XXXXXX)
root=/run/sandpod-fsbench
mib=64

# The files, in a bundle of their own (copied from the busybox bundle).
cp -a "$dir/bundles/busybox" "$work/bundle"
head -c $((mib * 1024 * 1024)) /dev/urandom >"$work/bundle/rootfs/big"
mkdir "$work/tree"
d=0
while [ $d -lt 20 ]; do
  mkdir "$work/tree/d$d"
  head -c 256000 /dev/urandom | split -b 2560 -a 3 - "$work/tree/d$d/f"
  d=$((d + 1))
done
tar cf "$work/bundle/rootfs/files.tar" -C "$work/tree" .
rm -rf "$work/tree"
# In the container: the two timings (ms), the count of files found, the bytes `cat` read.
# shellcheck disable=SC2016 # (expanded in the container)
# Under sandpod also `fs_irqs`: the interrupts of the guest's virtio-fs device (0x1a) in the
# small-files part, about one per request answered.
script='u() { read a b </proc/uptime; echo "${a%.*}${a#*.}0"; }
irqs() { for d in /sys/bus/virtio/devices/*; do [ "$(cat "$d/device" 2>/dev/null)" = 0x001a ] &&
  awk -v n="${d##*/}" '"'"'$NF == n { s = 0; for (i = 2; $i ~ /^[0-9]+$/; i++) s += $i; print s }'"'"' /proc/interrupts; done; }
t0=$(u); dd if=/big of=/dev/null bs=1M 2>/dev/null || exit 3; t1=$(u); i0=$(irqs)
mkdir /x && tar xf /files.tar -C /x || exit 4
n=$(find /x -type f | wc -l); c=$(find /x -type f | xargs cat | wc -c); t2=$(u); i1=$(irqs)
echo "fs $((t1 - t0)) $((t2 - t1)) $n $c"; [ -z "$i0" ] || echo "fs_irqs $((i1 - i0))"
rm -rf /x 2>/dev/null; [ ! -e /x ] || echo "rm-left $(find /x | wc -l) $(ls /x/* | head -3)"'
jq --arg s "$script" '.process.args = ["sh", "-c", $s] | .process.terminal = false' \
  "$dir/bundles/busybox/config.json" >"$work/bundle/config.json"

for v in $variants; do
  name=${v%%:*}
  printf '[hypervisor]\n' >"$work/$name.toml"
  case $v in *:*) echo "${v#*:}" | tr ';' '\n' >>"$work/$name.toml" ;; esac
done

# report NAME OUTPUT_FILE: the two lines of one run (or `fail`).
report() {
  # shellcheck disable=SC2046 # (split on purpose: the five fields)
  set -- "$1" $(sed -n 's/^fs //p' "$2")
  if [ $# -eq 5 ] && [ "$2" -gt 0 ] && [ "$4" = 2000 ] && [ "$5" = 5120000 ]; then
    echo "fs_read $1 $(awk -v ms="$2" -v m=$mib 'BEGIN { printf "%.1f", m * 1000 / ms }')"
    echo "fs_small $1 $3"
  else
    echo "fs_read $1 fail ($(head -c 200 "$work/out" | tr '\n' '|') $(head -c 300 "$work/err" | tr '\n' '|'))"
    echo "fs_small $1 fail"
  fi
}

i=0
while [ "$i" -lt "$runs" ]; do
  for v in $variants runc; do
    name=${v%%:*}
    if [ "$name" = runc ]; then
      timeout -k 5 600 runc --root /run/runc-fsbench run --bundle "$work/bundle" "f$i" \
        </dev/null >"$work/out" 2>"$work/err"
    else
      SANDPOD_CONFIG=$work/$name.toml timeout -k 5 600 "$dir/bin/sandpod" --root "$root" \
        run --bundle "$work/bundle" "f$i" </dev/null >"$work/out" 2>"$work/err"
    fi
    report "$name" "$work/out"
    sed -n "s/^fs_irqs /fs_irqs $name /p" "$work/out"
    grep '^rm-left' "$work/out"
    rm -rf "$work/bundle/rootfs/x"
  done
  i=$((i + 1))
done
rm -rf "$work"
exit 0
