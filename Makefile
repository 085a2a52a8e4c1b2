# Sandpod: `make demo` runs a microVM, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
CARGO ?= cargo
HOST_TARGET := x86_64-unknown-linux-gnu
AGENT_BIN := target/$(HOST_TARGET)/guest/sandpod-agent
BIN_DIR := build/bin
STAGE := scripts/stage

.PHONY: all deps build agent kernel initramfs virtiofsd bundle artifacts testhost demo test unit install \
        lint integration print-integration-tests engines-control fuzz fuzz-long bench clean

all: artifacts

deps:
	@scripts/install-deps.sh

## Host binaries (release) copied to build/bin; the agent is built static (no musl here) and for
## size (Cargo.toml: profile guest). The host binaries are static too: a start execs `sandpod`
## four times (the command, its stand-in, the monitor, the jail) and the VMM once, and a dynamic
## loader's work at each exec (libraries, symbols, relocations) was most of their start-up time.
## `sandpod` and the others are also not position-independent (no relocations to apply: its
## ~23000 write ~390 KiB of pages at every exec): their code is at fixed addresses (heap, stacks
## and mappings stay randomized). The VMM, which reads guest memory, stays position-independent
## (static-pie: fully randomized), built in a target directory of its own. docs/architecture.md.
HOST_RELEASE := target/$(HOST_TARGET)/release
VMM_RELEASE := target/pie/$(HOST_TARGET)/release
build:
	RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
	    $(CARGO) build --release --workspace --exclude sandpod-agent --exclude sandpod-vmm --target $(HOST_TARGET)
	RUSTFLAGS="-C target-feature=+crt-static" \
	    $(CARGO) build --release -p sandpod-vmm --target $(HOST_TARGET) --target-dir target/pie
	@mkdir -p $(BIN_DIR)
	@cp $(VMM_RELEASE)/sandpod-vmm $(HOST_RELEASE)/sandpod $(HOST_RELEASE)/containerd-shim-kata-v2 \
	    $(HOST_RELEASE)/sandpod-agentctl $(HOST_RELEASE)/sandpod-testhost $(HOST_RELEASE)/sandpod-fake-vmm \
	    $(HOST_RELEASE)/sandpod-cri $(BIN_DIR)/

## The agent is static non-PIE too: it re-executes itself as every container's helper, and its
## ~15000 relocations were ~260 KiB of pages written at each of those execs. Its fixed code
## addresses give away nothing a template does not already: every clone of a template shares
## its agent's whole address-space layout anyway.
agent:
	RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" $(CARGO) build --profile guest -p sandpod-agent --target $(HOST_TARGET)
	@mkdir -p $(BIN_DIR) && cp $(AGENT_BIN) $(dir $(AGENT_BIN))sandpod-vsock-probe $(dir $(AGENT_BIN))sandpod-net-flood $(BIN_DIR)/

kernel:
	@scripts/build-guest-kernel.sh

initramfs: agent
	@scripts/build-initramfs.sh $(AGENT_BIN)

## virtiofsd (the virtio-fs back end), `cargo install --locked` of a pinned version, cached
## under ~/.cache/sandpod/virtiofsd-<version>/ and copied to build/bin.
virtiofsd:
	@scripts/install-virtiofsd.sh

## Everything the guest and the test host need, in build/ (shown at /sandpod in the test host).
artifacts: build kernel initramfs virtiofsd bundle
	@mkdir -p build/scripts && cp tests/kvm-host/guest/*.sh build/scripts/

## The busybox OCI bundle the demo and the container tests run (build/bundles/busybox), and the
## same rootfs as an offline image for docker/podman/ctr (build/images/busybox.tar).
bundle:
	@scripts/build-bundle.sh
	@scripts/build-image-tar.sh

## `make install [PREFIX=/usr/local] [DESTDIR=]`: sandpod, the shim and agentctl in $PREFIX/bin,
## sandpod-vmm and virtiofsd in $PREFIX/libexec/sandpod, the guest kernel and initramfs (and an
## example config) in $PREFIX/share/sandpod, where `sandpod` finds them (see docs/config.toml.example).
PREFIX ?= /usr/local
install: build agent kernel initramfs virtiofsd
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/libexec/sandpod $(DESTDIR)$(PREFIX)/share/sandpod
	install -m 0755 $(BIN_DIR)/sandpod $(BIN_DIR)/containerd-shim-kata-v2 $(BIN_DIR)/sandpod-agentctl $(DESTDIR)$(PREFIX)/bin/
	install -m 0755 $(BIN_DIR)/sandpod-vmm $(BIN_DIR)/virtiofsd $(DESTDIR)$(PREFIX)/libexec/sandpod/
	install -m 0644 build/guest/vmlinux build/guest/initramfs.cpio $(DESTDIR)$(PREFIX)/share/sandpod/
	install -m 0644 docs/config.toml.example $(DESTDIR)$(PREFIX)/share/sandpod/config.toml.example

testhost:
	@tests/kvm-host/build-image.sh >/dev/null

demo: deps
	@$(STAGE) artifacts $(MAKE) -s artifacts
	@$(STAGE) testhost-image $(MAKE) -s testhost
	@scripts/demo.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## The host tests of tests/ (tests/Cargo.toml): the agent client and the sandpod CLI against
## sandpod-fake-vmm (the agent on the host, no KVM; root and the busybox bundle). It runs the
## sandpod-agent beside it, built here first.
HOST_TESTS := fake_vmm cli_lifecycle cli_stdio jail
## Unit tests that need root are `#[ignore = "needs root"]`: run (`--include-ignored`) only as
## root, so that elsewhere they show as ignored, never as passed.
ROOT_ONLY := $(if $(filter 0,$(shell id -u)),-- --include-ignored)

unit: bundle virtiofsd
	$(CARGO) test --workspace --exclude sandpod-tests $(ROOT_ONLY)
	$(CARGO) build -p sandpod-agent -p sandpod-runtime
	$(CARGO) test -p sandpod-tests --lib --bins $(patsubst %,--test %,$(HOST_TESTS))

## The VMM's cargo-fuzz targets (vmm/fuzz), SANDPOD_FUZZ_SECONDS (default 20) each.
fuzz:
	@scripts/fuzz.sh

## The same targets for SANDPOD_FUZZ_RUNS (default 1000000) executions each (not in CI; the
## executions and peak RSS per target are printed).
fuzz-long:
	@SANDPOD_FUZZ_RUNS=$${SANDPOD_FUZZ_RUNS:-1000000} scripts/fuzz.sh

## The test-host tests (each run boots its own L2): every [[test]] of
## tests/Cargo.toml in its order, but the HOST_TESTS (`make -s print-integration-tests`).
INTEGRATION_TESTS := $(filter-out $(HOST_TESTS),$(shell awk -F'"' '/^\[/ { t = ($$0 == "[[test]]") } \
    t && /^name *=/ { print $$2 }' tests/Cargo.toml))

print-integration-tests:
	@echo $(INTEGRATION_TESTS)

## TESTHOST_JOBS test hosts at a time (default 2: each L2 is one emulated CPU, one host core),
## by cargo-nextest, which prints each test's time and the `[testhost]` line of every run
## (boot time, attempts) of the passing ones too; `cargo test`, one at a time, without it. A
## script's own `timeout` is below SANDPOD_TESTHOST_TIMEOUT, so a hang prints what it got to.
TESTHOST_JOBS ?= 2
integration:
	$(if $(INTEGRATION_TESTS),,$(error no test-host tests found in tests/Cargo.toml))
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  set -x; SANDPOD_TESTHOST_TIMEOUT=$${SANDPOD_TESTHOST_TIMEOUT:-900} $(CARGO) nextest run \
	    -p sandpod-tests $(patsubst %,--test %,$(INTEGRATION_TESTS)) -j $(TESTHOST_JOBS) \
	    --no-fail-fast --success-output final --failure-output final --status-level pass; \
	else \
	  set -x; SANDPOD_TESTHOST_TIMEOUT=$${SANDPOD_TESTHOST_TIMEOUT:-900} $(CARGO) test \
	    -p sandpod-tests $(patsubst %,--test %,$(INTEGRATION_TESTS)) -- --test-threads=1 --nocapture; \
	fi

## Docker / Podman / ctr scenarios (tests/kvm-host/guest/docker-check.sh, podman-ctr-check.sh)
## in one test host run, then the CRI scenarios (cri-check.sh) in a second, all against runc: the
## control that proves the checks of tests/integration/docker.rs and cri.rs (the same scripts
## against kata, in INTEGRATION_TESTS) right. Prints every check, the time per scenario group
## and the distinct runtime command lines each engine used (`argv ...`, through a logging wrapper).
engines-control:
	@SANDPOD_TESTHOST_TIMEOUT=$${SANDPOD_TESTHOST_TIMEOUT:-1700} tests/kvm-host/run -- sh -c \
	  'RUNTIME=runc ARGV_LOG=/tmp/docker-argv.log timeout -k 10 1200 /sandpod/scripts/docker-check.sh; a=$$?; \
	   RUNTIME=runc ARGV_LOG=/tmp/podman-ctr-argv.log timeout -k 10 400 /sandpod/scripts/podman-ctr-check.sh; b=$$?; \
	   [ $$a = 0 ] && [ $$b = 0 ]'; a=$$?; \
	SANDPOD_TESTHOST_NOBUILD=1 SANDPOD_TESTHOST_TIMEOUT=$${SANDPOD_TESTHOST_TIMEOUT:-1100} tests/kvm-host/run -- sh -c \
	  'HANDLER=runc CRI_TIMEOUT=700 timeout -k 10 900 /sandpod/scripts/cri-check.sh'; b=$$?; \
	[ $$a = 0 ] && [ $$b = 0 ]

## Each stage with its duration; the guest kernel and the test host image are built in the
## background from the start, and fuzzing runs beside the test-host tests at idle priority
## (scripts/test.sh).
test: deps
	@scripts/test.sh

bench: deps artifacts testhost
	@scripts/bench.sh

clean:
	rm -rf build target/testhost
