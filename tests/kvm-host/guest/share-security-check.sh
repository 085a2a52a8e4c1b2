#!/bin/sh
# The host side of the virtio-fs share against a hostile guest, with `sandpod create/start`:
# every mount in the share nosuid+nodev, the share's top capped (also against a write from the
# guest), read-only volumes (`rro`, `nosuid,ro`, with a
# submount) read-only on the host, the share's top a capped tmpfs in a peer group of its own (a
# rootfs does not appear in another mount namespace), a setuid binary and a device node planted
# from a container ineffective on the host, and teardown of a sandbox whose share was renamed
# and seeded with symlinks to another sandbox's mounts (what a guest can do through virtiofsd;
# done here from the host on the same files) leaving the other sandbox's mounts alone.
# Prints `check <name> ok|FAIL` lines, ends with `share-security-check: N failed`.
# The state root sits on a tmpfs with shared propagation, as /run is on systemd hosts.
base=/run/sandpod-share-check
mkdir -p "$base"
mount -t tmpfs sp-run "$base" && mount --make-shared "$base"
SANDPOD_ROOT=$base/root
. "$(dirname "$0")/containers-lib.sh"

# start NAME: create + start bundle NAME detached (a sleeper); waits for "running".
start() {
  sandpod create --bundle "$work/$1" "$1" </dev/null >"$work/$1.out" 2>"$work/$1.err" &&
    sandpod start "$1" 2>>"$work/$1.err" || { echo "starting $1: $(cat "$work/$1.err")"; return 1; }
  i=0
  while [ $i -lt 600 ] && ! sandpod state "$1" 2>/dev/null | grep -q '"status": "running"'; do
    sleep 0.1; i=$((i + 1))
  done
}
# Mount options (mountinfo field 6) of the mount at PATH in namespace of PID (default: ours).
opts_of() { awk -v p="$1" '$5 == p { o = $6 } END { print o }' "/proc/${2:-self}/mountinfo"; }

# Volume sources: the read-only ones hold a submount (read-only must reach it).
for v in rro nosuid_ro rw; do
  mkdir -p "$work/vol_$v/sub"
  mount -t tmpfs "vol-$v" "$work/vol_$v/sub"
done
vols=$(printf '[{"destination":"/rro","type":"bind","source":"%s","options":["rbind","rro"]},
  {"destination":"/nsro","type":"bind","source":"%s","options":["rbind","nosuid,ro"]},
  {"destination":"/rw","type":"bind","source":"%s","options":["rbind","rw"]}]' \
  "$work/vol_rro" "$work/vol_nosuid_ro" "$work/vol_rw")

# An observer in another mount namespace made before the sandboxes (its mounts are peers of
# ours): the share's contents must not propagate into it.
unshare -m --propagation unchanged sleep 600 &
observer=$!

mkbundle victim "$(args '["sleep","600"]') | .mounts += $vols"
mkbundle evil "$(args '["sh","-c","cp /bin/busybox /suid && chmod 4755 /suid; mknod /devnode c 1 3; echo planted; sleep 600"]')"
check victim-started start victim
check evil-started start evil
share=$SANDPOD_ROOT/victim/shared
vic=$share/victim

every_share_mount_nosuid_nodev() {
  n=0
  for o in $(awk -v s="$share" 'index($5, s) == 1 { print $6 }' /proc/self/mountinfo); do
    n=$((n + 1))
    case ",$o," in *,nosuid,*) ;; *) echo "without nosuid: $o"; return 1 ;; esac
    case ",$o," in *,nodev,*) ;; *) echo "without nodev: $o"; return 1 ;; esac
  done
  echo "$n mounts in the share"
  [ "$n" -ge 7 ]  # the share, the rootfs, three volumes with their submounts
}
check share-mounts-nosuid-nodev every_share_mount_nosuid_nodev
ro_volume() { # guest mount index
  for p in "$vic/mounts/$1" "$vic/mounts/$1/sub"; do
    case "$(opts_of "$p")" in ro,*) ;; *) echo "$p: $(opts_of "$p")"; return 1 ;; esac
  done
  ! touch "$vic/mounts/$1/sub/x" 2>/dev/null
}
# The bundle's mounts come first: the volumes are the last three.
nm=$(jq '.mounts | length' "$work/victim/config.json")
check rro-volume-read-only-on-host ro_volume $((nm - 3))
check nosuid-ro-volume-read-only-on-host ro_volume $((nm - 2))
check rw-volume-control eval "case \"\$(opts_of $vic/mounts/$((nm - 1)))\" in rw,*) true;; *) false;; esac"
check share-top-capped eval "! dd if=/dev/zero of=$share/junk bs=1M count=4 2>$work/dd.err && grep -q 'No space' $work/dd.err"
rm -f "$share/junk"
# The same from inside a guest: a container given its own sandbox's share top as a volume (its
# source exists once the share is made) writes 4 MiB into it through virtiofsd.
mkbundle filler "$(args '["sh","-c","dd if=/dev/zero of=/sharetop/junk bs=64k count=64 2>&1; ls -l /sharetop/junk"]') | .mounts += [{\"destination\":\"/sharetop\",\"type\":\"bind\",\"source\":\"$SANDPOD_ROOT/filler/shared\",\"options\":[\"bind\"]}]"
run filler
check guest-write-stops-at-share-cap eval "grep -q 'No space' $work/filler.out"
check share-not-in-other-namespaces eval "[ -n \"\$(opts_of $vic/rootfs)\" ] && [ -z \"\$(opts_of $vic/rootfs $observer)\" ]"

# What the evil container planted in its rootfs: a setuid copy of busybox (unreachable for other
# users: the state directory is 0700; nosuid on the host's view) and no device node at all.
evil_root=$SANDPOD_ROOT/evil/shared/evil/rootfs
i=0
while [ $i -lt 300 ] && ! grep -q planted "$work/evil.out"; do sleep 0.1; i=$((i + 1)); done
check planted-setuid-unreachable eval "[ -u $evil_root/suid ] && [ \"\$(stat -c %a $SANDPOD_ROOT/evil)\" = 700 ] &&
  ! setpriv --reuid 65534 --regid 65534 --clear-groups $evil_root/suid id -u 2>/dev/null"
check no-device-node-on-host eval "grep -q planted $work/evil.out && [ ! -e $work/evil/rootfs/devnode ]"

# The evil guest renames its container directory in the share and plants symlinks to the victim's
# mounts where its own were; deleting the evil sandbox must leave the victim's mounts alone.
eshare=$SANDPOD_ROOT/evil/shared
mv "$eshare/evil" "$eshare/moved" && mkdir -p "$eshare/evil/mounts" &&
  ln -s "$vic/rootfs" "$eshare/evil/rootfs" &&
  for i in 0 1 2 3 4 5 6 7 8 9 10 11; do ln -s "$vic/mounts/$((nm - 3))" "$eshare/evil/mounts/$i"; done
sandpod delete --force evil 2>"$work/evil-delete.err" || cat "$work/evil-delete.err"
check teardown-ignores-planted-symlinks eval "[ -n \"\$(opts_of $vic/rootfs)\" ] &&
  [ -n \"\$(opts_of $vic/mounts/$((nm - 3)))\" ] && sandpod exec victim true"

sandpod delete --force victim || true
kill $observer 2>/dev/null; wait $observer 2>/dev/null
for v in rro nosuid_ro rw; do umount "$work/vol_$v/sub"; done
check nothing-left-after-share-checks nothing_left
umount "$base" 2>/dev/null
finish
