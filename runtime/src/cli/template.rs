//! `sandpod template build|rm|clear`: the VM templates sandboxes start from (see
//! `crate::sandbox::template`), for this config (kernel, initramfs, VMM, jail) and a VM size.
use clap::Subcommand;

use super::VmArgs;
use crate::container::RuntimeOptions;
use crate::hypervisor::VmSize;
use crate::paths::RuntimePaths;
use crate::sandbox::jail::JailIds;
use crate::sandbox::template::{build, spare, TemplateKey, TemplateStore};
use crate::sandbox::SandboxConfig;

#[derive(Subcommand, Debug)]
pub enum TemplateCommand {
    /// Make the template of this config and VM size (unless there is one, or with --rebuild)
    /// and print its directory.
    Build(TemplateArgs),
    /// Remove the template of this config and VM size.
    Rm(TemplateArgs),
    /// Remove every template under the state root.
    Clear,
    /// Make the spare memory of the template KEY, if it has none (started in the background
    /// after each restore, at the idle scheduling class).
    #[command(hide = true)]
    Refill {
        /// The template's key (its directory's name).
        key: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct TemplateArgs {
    /// vCPUs (default: the config file's default_vcpus, else 1): a sandbox uses the template
    /// of its own VM's size.
    #[arg(long)]
    pub vcpus: Option<u8>,
    /// Memory in MiB (default: the config file's default_memory_mib, else 256).
    #[arg(long)]
    pub memory_mib: Option<u32>,
    /// Remove the template first and make it again.
    #[arg(long)]
    pub rebuild: bool,
    #[command(flatten)]
    pub vm: VmArgs,
}

fn sandbox_config(rt: &RuntimeOptions, a: &TemplateArgs) -> anyhow::Result<SandboxConfig> {
    let h = &rt.config.hypervisor;
    let size = VmSize {
        vcpus: a.vcpus.or(h.default_vcpus).unwrap_or(VmSize::DEFAULT.vcpus),
        mem_mib: a
            .memory_mib
            .or(h.default_memory_mib)
            .unwrap_or(VmSize::DEFAULT.mem_mib),
    };
    let vm = a.vm.options(&rt.config);
    Ok(SandboxConfig {
        root: rt.root.clone(),
        // Only names the layout the key's VM is described with (its paths are not hashed).
        id: "template".into(),
        size,
        hostname: None,
        paths: RuntimePaths::discover(h)?,
        log: rt.log.clone(),
        log_format: rt.log_format.clone(),
        debug: rt.debug,
        cache: vm.cache,
        boot_timeout: vm.boot_timeout,
        self_exe: rt.self_exe.clone(),
        host_cgroup: None,
        jail: rt.config.jail.enabled.then_some(JailIds {
            uid: rt.config.jail.uid,
            gid: rt.config.jail.gid,
        }),
        netns: None,
        dns_relay: false,
        template: true,
    })
}

pub async fn run(rt: &RuntimeOptions, cmd: &TemplateCommand) -> anyhow::Result<u8> {
    let store = TemplateStore::new(&rt.root);
    match cmd {
        TemplateCommand::Build(a) => {
            let cfg = sandbox_config(rt, a)?;
            let inputs = build::inputs_for(&cfg)?;
            if a.rebuild {
                store.remove(&inputs)?;
            }
            let t = build::ensure(&cfg, &store, &inputs, true).await?;
            println!("{}", t.dir.display());
        }
        TemplateCommand::Rm(a) => {
            let cfg = sandbox_config(rt, a)?;
            if !store.remove(&build::inputs_for(&cfg)?)? {
                eprintln!("no template for this config and VM size");
            }
        }
        TemplateCommand::Clear => {
            let n = store.clear()?;
            eprintln!("{n} template(s) removed");
        }
        TemplateCommand::Refill { key } => {
            let key = TemplateKey::parse(key)
                .ok_or_else(|| anyhow::anyhow!("{key:?} is not a template key"))?;
            let started = std::time::Instant::now();
            let t = store.check_key(&key)?;
            let done = spare::refill(&store, &t)?;
            tracing::info!(
                "template {key}: spare memory {done:?} in {} ms",
                started.elapsed().as_millis()
            );
        }
    }
    Ok(0)
}
