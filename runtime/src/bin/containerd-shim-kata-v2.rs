//! `containerd-shim-kata-v2`: the containerd shim v2 for runtime handler "kata" (see
//! `sandpod_runtime::shim`).
fn main() -> std::process::ExitCode {
    sandpod_runtime::shim::main()
}
