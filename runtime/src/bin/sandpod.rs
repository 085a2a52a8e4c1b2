//! `sandpod`: the runc-compatible OCI command line.
fn main() -> std::process::ExitCode {
    sandpod_runtime::cli::main()
}
