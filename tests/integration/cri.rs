//! Kubernetes' CRI: containerd 1.6's CRI plugin in the KVM test host driven by sandpod-cri
//! (tests/src/bin/sandpod-cri.rs, a CRI v1 client playing kubelet), through the runtime handler
//! HANDLER of tests/kvm-host/guest/cri-check.sh: pods of two containers sharing their pid
//! namespace and a volume, exec, stats, resource updates, two pods on the CNI bridge reaching
//! each other and reached from the host, five pods at once, bad input, the
//! pod-start bench, and nothing left behind.
//!
//! It runs with HANDLER=kata, Sandpod's containerd-shim-kata-v2. The control that proves the
//! checks themselves right, the same script with HANDLER=runc (io.containerd.runc.v2), is in
//! `make engines-control` beside Docker's and Podman's (not in CI, for its time).
mod common;

use std::time::Duration;

use common::{assert_checks, host, run};

/// The checks of cri-check.sh (sandpod-cri's own among them), in the order they are printed.
const CHECKS: &[&str] = &[
    "containerd-starts-with-cri",
    "cri-images-imported",
    // the leak check sees a running pod
    "hold-pod-running",
    "leak-check-sees-running-pod",
    "remove-all-pods",
    "held-pod-removed",
    // version
    "cri-version-v1",
    // pod
    "pod-run-pod-sandbox",
    "pod-create-and-start-two-containers",
    "pod-one-shim-for-the-pod",
    "pod-spec-annotations",
    "pod-exec-sync-exact-stdout",
    "pod-exec-sync-exit-code-3",
    "pod-shared-pid-namespace",
    "pod-shared-volume",
    "pod-container-stats-memory",
    "pod-update-resources-in-cgroup",
    "pod-stop-pod-sandbox",
    "pod-remove-pod-sandbox",
    "pod-list-empty",
    // net
    "net-two-pods-with-ips",
    "net-pod-ip-is-eth0-address",
    "net-host-to-pod",
    "net-pod-to-pod",
    "net-pods-removed",
    // five
    "five-pods-ready",
    "five-one-shim-per-pod",
    "five-pods-stopped-and-removed",
    // bad-input
    "bad-container-status-unknown-id",
    "bad-exec-sync-unknown-id",
    "bad-stop-pod-unknown-id",
    "bad-create-in-missing-sandbox",
    "bad-run-pod-unknown-handler",
    "bad-run-pod-without-metadata",
    "bad-pod-runs",
    "bad-create-empty-image",
    "bad-create-without-metadata",
    "bad-exec-missing-binary",
    "bad-pod-removed",
    // pod-start
    "pod-start-bench",
    // the script's
    "sandpod-cri-all-passed",
    "cri-nothing-left",
    "containerd-stopped",
];

/// Runs cri-check.sh with HANDLER=`handler` in the test host, bounded by `secs` (its scenarios'
/// sandpod-cri run by `secs` - 200: containerd's start, the images and the leak checks take the
/// rest), and asserts every check.
fn run_checks(handler: &str, secs: u64) {
    let mut host = host();
    host.config.timeout = host.config.timeout.max(Duration::from_secs(secs + 120));
    let scenarios_secs = secs.saturating_sub(200).max(100);
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            &format!(
                "HANDLER={handler} CRI_TIMEOUT={scenarios_secs} timeout -k 10 {secs} \
                 /sandpod/scripts/cri-check.sh"
            ),
        ],
    );
    assert_checks(&out, "cri-check.sh", CHECKS);
}

/// The scenarios through Sandpod's containerd-shim-kata-v2: one VM per pod, the pod's
/// containers in it sharing their pid namespace and a volume.
#[test]
fn cri_scenarios_with_kata_runtime() {
    run_checks("kata", 1500);
}
