#!/usr/bin/env bash
# `make fuzz`: builds sandpod-vmm's cargo-fuzz targets (vmm/fuzz) and runs each for a bounded
# time (SANDPOD_FUZZ_SECONDS, default 20). `make fuzz-long` sets SANDPOD_FUZZ_RUNS (default
# 1000000): each target then runs that many executions instead, however long it takes. Stable toolchain only: cargo-fuzz passes nightly
# `-Z` flags (sanitizer, coverage), which RUSTC_BOOTSTRAP=1 lets stable rustc accept; stable's
# rust-std ships the AddressSanitizer runtime (librustc-stable_rt.asan.a). A crash fails the run
# and leaves its input in vmm/fuzz/artifacts/<target>/ (reproduce: `cargo fuzz run --fuzz-dir
# fuzz <target> <file>` in vmm/, with RUSTC_BOOTSTRAP=1); keep it as a unit test in the VMM.
source "$(dirname "$0")/lib.sh"
SECONDS_PER_TARGET=${SANDPOD_FUZZ_SECONDS:-20}
RUNS_PER_TARGET=${SANDPOD_FUZZ_RUNS:-}
TARGETS=(vsock_header vsock_queues virtio_mmio blk_request)
if [ -n "$RUNS_PER_TARGET" ]; then
  [[ $RUNS_PER_TARGET =~ ^[1-9][0-9]*$ ]] || die "SANDPOD_FUZZ_RUNS must be a positive count"
  budget=(-runs="$RUNS_PER_TARGET")
  what="$RUNS_PER_TARGET executions"
else
  budget=(-max_total_time="$SECONDS_PER_TARGET")
  what="${SECONDS_PER_TARGET} s"
fi

command -v cargo-fuzz >/dev/null || die "cargo-fuzz is missing: run make deps"
export RUSTC_BOOTSTRAP=1
cd "$REPO_ROOT/vmm"
# The fuzz targets' sockets go to a directory removed afterwards.
tmp=$(mktemp -d /tmp/sandpod-fuzz.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
if ! cargo fuzz build --fuzz-dir fuzz >"$tmp/build.log" 2>&1; then
  cat "$tmp/build.log" >&2
  die "building the fuzz targets failed"
fi
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log "fuzzing $t for $what (corpus fuzz/corpus/$t, seeds fuzz/seeds/$t)"
  rc=0
  TMPDIR=$tmp cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    "${budget[@]}" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
    >"$tmp/$t.log" 2>&1 || rc=$?
  grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$tmp/$t.log" >&2 || true
  if [ $rc != 0 ]; then
    tail -60 "$tmp/$t.log" >&2
    die "fuzz target $t failed (exit $rc; a crash input is in vmm/fuzz/artifacts/$t/)"
  fi
done
log "fuzzing: no crash in ${#TARGETS[@]} targets, $what each"
