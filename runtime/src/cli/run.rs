//! `sandpod run [--bundle DIR] ID`: like `runc run` — create, start, wait for the container with
//! this process's stdio (or terminal), exit with its status, delete everything (on success,
//! failure, Ctrl-C or SIGTERM alike).
use std::path::PathBuf;
use std::time::Duration;

use super::VmArgs;
use crate::bundle::Bundle;
use crate::container::foreground::{self, Signals};
use crate::container::state::ContainerState;
use crate::container::{CreateOptions, RuntimeOptions};
use crate::io::IoConfig;
use crate::sandbox::Layout;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The bundle directory (config.json and the rootfs it names).
    #[arg(long, short, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the pid of the process that stands for the container's init to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Seconds a container gets after a forwarded SIGINT/SIGTERM/SIGHUP before it is killed.
    #[arg(long, default_value_t = 10)]
    pub kill_after: u64,
    #[command(flatten)]
    pub vm: VmArgs,
    /// The container id.
    pub id: String,
}

pub async fn run(rt: &RuntimeOptions, args: &RunArgs) -> anyhow::Result<u8> {
    // Everything about the input is checked before anything is created.
    crate::sandbox::validate_id(&args.id)?;
    let bundle = Bundle::load(&args.bundle)?;
    // Signals are caught from here on: one during create is acted on once create is done.
    let mut signals = Signals::new()?;
    let opts = CreateOptions {
        id: args.id.clone(),
        bundle,
        pid_file: args.pid_file.clone(),
        io: IoConfig::Inherit,
        vm: args.vm.options(&rt.config),
    };
    let standin = foreground::create_or_undo(rt, opts, &mut signals).await?;
    let result = async {
        crate::container::start(rt, &args.id).await?;
        let kill_after = Some(Duration::from_secs(args.kill_after));
        foreground::wait(standin, &mut signals, kill_after).await
    }
    .await;
    let layout = Layout::new(&rt.root, &args.id);
    if ContainerState::exit(&layout, &args.id).is_some_and(|e| e.oom_killed) {
        eprintln!(
            "sandpod: container {} was killed by the OOM killer (memory limit reached)",
            args.id
        );
        tracing::warn!("container {}: OOM kill in its cgroup", args.id);
    }
    let teardown = crate::container::delete(rt, &args.id, true).await;
    let code = result?;
    teardown?;
    Ok(code)
}
