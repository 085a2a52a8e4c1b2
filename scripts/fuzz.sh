#!/usr/bin/env bash
# `make fuzz`: builds the cargo-fuzz targets of what parses the guest's input — sandpod-vmm's
# (vmm/fuzz) and the runtime's (runtime/fuzz: agent replies, guest log lines) — and runs each
# for a bounded time (SANDPOD_FUZZ_SECONDS, default 20). That build is cargo-fuzz's `--dev`
# (AddressSanitizer and coverage all the same; the opt-level of each fuzz crate's dev profile,
# vmm/fuzz/Cargo.toml and runtime/fuzz/Cargo.toml, says what it costs): it builds in about half
# the time of an optimized build, which was most of the stage, for fewer executions in 20 s. `make
# fuzz-long` sets SANDPOD_FUZZ_RUNS (default 1000000): each target then runs that many
# executions instead, however long it takes, in an optimized build. SANDPOD_FUZZ_BUILD=release|dev
# chooses either way. Stable toolchain only: cargo-fuzz passes nightly
# `-Z` flags (sanitizer, coverage), which RUSTC_BOOTSTRAP=1 lets stable rustc accept; stable's
# rust-std ships the AddressSanitizer runtime (librustc-stable_rt.asan.a). A crash fails the run
# and leaves its input in <crate>/fuzz/artifacts/<target>/ (reproduce: `cargo fuzz run
# --fuzz-dir fuzz <target> <file>` in vmm/ or runtime/, with RUSTC_BOOTSTRAP=1); keep it as a
# unit test of that crate.
source "$(dirname "$0")/lib.sh"
SECONDS_PER_TARGET=${SANDPOD_FUZZ_SECONDS:-20}
RUNS_PER_TARGET=${SANDPOD_FUZZ_RUNS:-}
# <crate directory>:<target>
TARGETS=(vmm:vsock_header vmm:vsock_queues vmm:virtio_mmio vmm:blk_request vmm:net_queues
  runtime:agent_replies runtime:guest_log_lines)
if [ -n "$RUNS_PER_TARGET" ]; then
  [[ $RUNS_PER_TARGET =~ ^[1-9][0-9]*$ ]] || die "SANDPOD_FUZZ_RUNS must be a positive count"
  budget=(-runs="$RUNS_PER_TARGET")
  what="$RUNS_PER_TARGET executions"
  build=${SANDPOD_FUZZ_BUILD:-release}
else
  budget=(-max_total_time="$SECONDS_PER_TARGET")
  what="${SECONDS_PER_TARGET} s"
  build=${SANDPOD_FUZZ_BUILD:-dev}
fi
case $build in
  release) build_flags=() ;;
  dev) build_flags=(--dev) ;;
  *) die "SANDPOD_FUZZ_BUILD must be release or dev" ;;
esac

command -v cargo-fuzz >/dev/null || die "cargo-fuzz is missing: run make deps"
export RUSTC_BOOTSTRAP=1
# The fuzz targets' sockets go to a directory removed afterwards.
tmp=$(mktemp -d /tmp/sandpod-fuzz.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for crate in vmm runtime; do
  if ! (cd "$REPO_ROOT/$crate" && cargo fuzz build "${build_flags[@]}" --fuzz-dir fuzz) >"$tmp/build-$crate.log" 2>&1; then
    cat "$tmp/build-$crate.log" >&2
    die "building the fuzz targets of $crate failed"
  fi
done
for ct in "${TARGETS[@]}"; do
  crate=${ct%%:*} t=${ct#*:}
  cd "$REPO_ROOT/$crate"
  mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
  log "fuzzing $crate's $t for $what, $build build (corpus $crate/fuzz/corpus/$t, seeds $crate/fuzz/seeds/$t)"
  rc=0
  TMPDIR=$tmp cargo fuzz run "${build_flags[@]}" --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    "${budget[@]}" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
    >"$tmp/$t.log" 2>&1 || rc=$?
  grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$tmp/$t.log" >&2 || true
  if [ $rc != 0 ]; then
    tail -60 "$tmp/$t.log" >&2
    die "fuzz target $t failed (exit $rc; a crash input is in $crate/fuzz/artifacts/$t/)"
  fi
done
log "fuzzing: no crash in ${#TARGETS[@]} targets, $what each"
