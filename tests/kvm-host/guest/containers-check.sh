#!/bin/sh
# `sandpod run` of busybox bundles in the KVM test host: output, exit codes, process settings, the
# shared rootfs both ways, terminal mode, guest logs in the runtime log, the initrd's guest memory
# given back, teardown on SIGTERM.
# Prints `check <name> ok|FAIL` lines and ends with `containers-check.sh: N failed`.
. "$(dirname "$0")/containers-lib.sh"

mkbundle echo "$(args '["echo","hello sandpod"]')"
# (SANDPOD_LOG=info: the VMM, whose default is warn, logs giving the initrd back.)
export SANDPOD_LOG=info
run echo
unset SANDPOD_LOG
check echo-output eval "rc_is 0 && out_is echo 'hello sandpod'"
check nothing-left-after-run nothing_left
check guest-logs-in-runtime-log grep -q 'INFO guest' "$work/sandpod.log"
grep 'guest' "$work/sandpod.log" | head -3
# The VMM gave the guest's retained initrd back to the host once the agent answered, or (a VM
# restored from a template) the template's snapshot left it out.
check initrd-given-back grep -Eq "(gave the retained initrd|left the retained initrd) \([1-9][0-9]* KiB" "$work/sandpod.log"
grep "retained initrd" "$work/sandpod.log" | head -1

mkbundle exit1 "$(args '["sh","-c","echo to-stderr >&2; exit 1"]')"
run exit1
check exit-1-and-stderr eval "rc_is 1 && err_has exit1 to-stderr && [ ! -s $work/exit1.out ]"

# (Without a pid namespace: a namespace's init cannot be SIGKILLed from inside it.)
mkbundle killed "$(args '["sh","-c","kill -9 $$; echo survived"]') | .linux.namespaces |= map(select(.type != \"pid\"))"
run killed
check exit-137-on-sigkill rc_is 137

mkbundle settings "$(args '["sh","-c","echo $FOO; pwd; id -u; id -g; id -G; hostname; echo $$"]')
  | .process.env += [\"FOO=bar baz\"] | .process.cwd = \"/home/user\"
  | .process.user = {\"uid\":1000,\"gid\":1000,\"additionalGids\":[100]} | .hostname = \"box1\""
run settings
check env-cwd-user-hostname-pid1 eval "rc_is 0 && out_is settings 'bar baz
/home/user
1000
1000
1000 100
box1
1'"

mkbundle share "$(args '["sh","-c","cat /from-host.txt; echo from-guest > /from-guest.txt"]')"
echo "written on the host" >"$work/share/rootfs/from-host.txt"
run share
check rootfs-host-to-guest eval "rc_is 0 && out_is share 'written on the host'"
check rootfs-guest-to-host eval "[ \"\$(cat $work/share/rootfs/from-guest.txt)\" = from-guest ]"

mkbundle readonly "$(args '["sh","-c","touch /x && echo wrote"]') | .root.readonly = true"
run readonly
check readonly-rootfs eval "! rc_is 0 && err_has readonly 'Read-only file system' && [ ! -e $work/readonly/rootfs/x ]"

mkbundle tty "$(args '["sh","-c","tty; [ -t 0 ] && echo stdin-is-a-tty"]') | .process.terminal = true"
run tty
check terminal-mode eval "rc_is 0 && grep -q '^/dev/pts/[0-9]' $work/tty.out && grep -q stdin-is-a-tty $work/tty.out"

# SIGTERM to `sandpod run`: forwarded, the container (sleep as PID 1 ignores it) is killed after
# --kill-after, everything is removed.
mkbundle sleeper "$(args '["sleep","1000"]')"
"$dir/bin/sandpod" --root "$ROOT" run --kill-after 2 --bundle "$work/sleeper" sleeper </dev/null >"$work/sleeper.out" 2>"$work/sleeper.err" &
runner=$!
i=0
running() { sandpod state sleeper 2>/dev/null | grep -q '"status": "running"'; }
while [ $i -lt 600 ] && ! running; do sleep 0.1; i=$((i + 1)); done
check sleeper-running running
kill -TERM $runner
i=0
while [ $i -lt 300 ] && kill -0 $runner 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
if kill -0 $runner 2>/dev/null; then echo "sandpod run still there 30 s after SIGTERM"; kill -9 $runner; fi
wait $runner; rc=$?
echo "sandpod run after SIGTERM: exit $rc: $(cat "$work/sleeper.err")"
check sigterm-tears-down eval "rc_is 137 && nothing_left"

finish
