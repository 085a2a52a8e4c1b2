//! The KVM test host: a QEMU-TCG machine ("L2") with an emulated AMD SVM CPU, in which
//! `kvm_amd` loads and a real `/dev/kvm` exists, so Sandpod's VMs can be booted and tested on
//! hosts without hardware KVM (see docs/testing.md, "Working without hardware KVM").
//!
//! [`TestHost::run`] boots the L2 from the cached image (`tests/kvm-host/build-image.sh`), shows
//! the build outputs at `/sandpod` inside, runs a command there and returns its output and exit
//! status. Used by `tests/kvm-host/run` (through the `sandpod-testhost` binary) and by the
//! integration tests.
//!
//! [`fakevm`]: the pieces of `sandpod-fake-vmm`, a test-only stand-in for sandpod-vmm that runs
//! the agent on the host (no KVM).
pub mod config;
pub mod console;
pub mod fakevm;
pub mod qemu;
pub mod runner;
pub mod share;

pub use config::TestHostConfig;
pub use runner::{Outcome, TestHost, TestHostError};
