//! Starting a sandbox's VM (for [`super::lifecycle`]): its configuration (`vm.json`, the jail's
//! plan, `monitor.json`), the monitor that runs it, the first connection to its agent, and — for
//! a start from a template — the files the VMM restores from and the agent's ResumeClone. Also
//! what stopping a VM that failed to restore must remove so that the same sandbox can boot cold.
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use sandpod_protocol::shared::VIRTIOFS_TAG;
use sandpod_protocol::ErrorChain;
use sandpod_vmconfig::FsConfig;
use tokio::process::Child;

use super::layout::Layout;
use super::lifecycle::{console_tail, stop_vm_processes, SandboxConfig};
use super::monitor::{Children, MonitorPlan, VmExit};
use super::process::ProcessIdent;
use super::share::mounts_under;
use super::state::{write_json_atomic, SandboxState};
use super::template::hot_pages::{RecordPlan, HOT_PAGES_FILE};
use super::template::start::{restore_timeout, resume_clone, VmStarter};
use super::template::Template;
use crate::agent_client::{AgentClient, ClientConfig, HybridVsockConnector, LogToken};
use crate::hypervisor::vmm::TEMPLATE_CMDLINE_FLAG;
use crate::hypervisor::{SandboxVm, VirtiofsdCommand, VmmCommand, VM_CONFIG_FILE};

/// Starting the VM, cold or from a template, for [`start_vm`].
pub(crate) struct VmSteps<'a> {
    pub(crate) cfg: &'a SandboxConfig,
    pub(crate) layout: &'a Layout,
    pub(crate) state: &'a mut SandboxState,
    pub(crate) monitor: &'a mut Option<Child>,
    pub(crate) log_token: &'a LogToken,
    pub(crate) net: &'a mut Option<super::network::SandboxNetwork>,
    pub(crate) boot: &'a mut super::boot_phases::BootPhases,
    /// The refill of the template's spare a successful restore owes (started once the sandbox
    /// is up: [`super::lifecycle::Sandbox::started_up`]).
    pub(crate) refill: &'a mut Option<super::template::spare::PendingRefill>,
}

impl VmStarter for VmSteps<'_> {
    type Started = AgentClient;

    async fn start(&mut self, from: Option<&Template>) -> anyhow::Result<AgentClient> {
        let mode = match from {
            Some(t) => VmMode::Restore(t),
            None => VmMode::Boot,
        };
        let child = start_monitor(
            self.cfg,
            self.layout,
            self.log_token,
            self.net.as_ref(),
            mode,
        )?;
        // The monitor holds the tap now (and passes it to the VMM): it lives as long as the VM.
        if let Some(n) = self.net.as_mut() {
            n.tap = None;
        }
        self.state.monitor = child.id().and_then(ProcessIdent::of);
        *self.monitor = Some(child);
        self.state.save(&self.layout.state())?;
        self.boot.mark("monitor");

        let deadline = match from {
            Some(_) => restore_timeout(self.cfg.boot_timeout),
            None => self.cfg.boot_timeout,
        };
        let child = self.monitor.as_mut().context("monitor not started")?;
        let client = reach_agent(self.layout, child, deadline).await?;
        self.boot.mark("vm_to_agent");
        if let Some(c) = std::fs::read(self.layout.children())
            .ok()
            .and_then(|b| serde_json::from_slice::<Children>(&b).ok())
        {
            self.boot.monitor(&c);
        }
        if let Some(t) = from {
            // The VMM has its spare memory open (if it took one) and answered: unlinked, the
            // guest's memory is reachable through the VMM's and virtiofsd's descriptors only,
            // as a memfd is, not by a path another process of the jail's uid could open.
            super::template::spare::unlink_claimed(&self.layout.restore_dir());
            resume_clone(&client).await?;
            self.boot.mark("resume_clone");
            // The next sandbox's spare memory, made in the background once this one is up.
            *self.refill = Some(super::template::spare::PendingRefill::new(
                &self.cfg.self_exe,
                &self.cfg.root,
                self.cfg.log.as_deref(),
                t,
            ));
        }
        Ok(client)
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        stop_vm_processes(self.layout, self.state);
        self.state.monitor = None;
        if let Some(mut m) = self.monitor.take() {
            let _ = m.wait().await;
        }
        self.state.save(&self.layout.state())?;
        remove_vm_files(self.layout)
    }
}

/// Connects to the agent of the VM `monitor` runs, within `deadline`; an error says why (how
/// the VM ended, the guest console's last lines).
async fn reach_agent(
    layout: &Layout,
    monitor: &mut Child,
    deadline: Duration,
) -> anyhow::Result<AgentClient> {
    let connector = HybridVsockConnector::new(layout.vsock());
    let config = ClientConfig {
        connect_deadline: deadline,
        ..ClientConfig::default()
    };
    tokio::select! {
        c = AgentClient::connect(connector, config) => c.map_err(|e| {
            let e = ErrorChain(&e);
            let console = console_tail(layout);
            if console.is_empty() {
                anyhow::anyhow!("the VM's agent did not answer: {e}; the guest console is empty")
            } else {
                anyhow::anyhow!("the VM's agent did not answer: {e}; guest console:\n{console}")
            }
        }),
        _ = monitor.wait() => {
            let why = std::fs::read(layout.vm_exit())
                .ok()
                .and_then(|b| serde_json::from_slice::<VmExit>(&b).ok())
                .map(|x| x.describe())
                .unwrap_or_else(|| "the sandbox monitor ended (see the runtime log)".into());
            let console = console_tail(layout);
            if console.is_empty() {
                bail!("the VM stopped while booting: {why}")
            }
            bail!("the VM stopped while booting: {why}; guest console:\n{console}")
        }
    }
}

/// How [`start_monitor`] starts the VM.
#[derive(Debug, Clone, Copy)]
pub(crate) enum VmMode<'a> {
    /// Boot the kernel.
    Boot,
    /// Boot it to make a template: the guest asks for a snapshot once its agent listens
    /// ([`TEMPLATE_CMDLINE_FLAG`]), the VMM saves it into [`Layout::snapshot_dir`] and exits.
    Snapshot,
    /// Restore this template (its files placed in [`Layout::restore_dir`]).
    Restore(&'a Template),
}

/// The sandbox's VM, in host paths (what vm.json holds for a cold boot).
pub(crate) fn sandbox_vm(
    opts: &SandboxConfig,
    layout: &Layout,
    net: Option<&super::network::SandboxNetwork>,
) -> SandboxVm {
    SandboxVm {
        kernel: opts.paths.kernel.clone(),
        initrd: opts.paths.initrd.clone(),
        size: opts.size,
        vsock_uds: layout.vsock(),
        console_log: layout.console_log(),
        fs: vec![FsConfig::new(VIRTIOFS_TAG, layout.virtiofsd_socket())],
        net: net.and_then(|n| n.net_config()),
        guest_debug: opts.debug,
    }
}

/// Writes vm.json (the VMM's configuration) and monitor.json, and starts `sandpod` as the
/// sandbox's monitor, in its own process group (a Ctrl-C meant for the caller does not reach it),
/// output to the runtime log.
pub(crate) fn start_monitor(
    opts: &SandboxConfig,
    layout: &Layout,
    log_token: &LogToken,
    net: Option<&super::network::SandboxNetwork>,
    mode: VmMode<'_>,
) -> anyhow::Result<Child> {
    let mut vm = sandbox_vm(opts, layout, net).vm_config();
    let vmm = VmmCommand {
        program: opts.paths.vmm.clone(),
        config: layout.dir.join(VM_CONFIG_FILE),
    };
    let vm_dir = layout.vm_dir();
    std::fs::create_dir(&vm_dir).with_context(|| format!("mkdir {}", vm_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&vm_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let mut hot_pages = None;
    match mode {
        VmMode::Boot => {}
        VmMode::Snapshot => {
            vm.cmdline = format!("{} {TEMPLATE_CMDLINE_FLAG}", vm.cmdline);
            let dir = layout.snapshot_dir();
            make_dir(&dir, 0o700)?;
            if let Some(ids) = opts.jail {
                nix::unistd::chown(
                    &dir,
                    Some(nix::unistd::Uid::from_raw(ids.uid)),
                    Some(nix::unistd::Gid::from_raw(ids.gid)),
                )
                .with_context(|| format!("chown {} to the jail's ids", dir.display()))?;
            }
            vm.snapshot_to = Some(dir);
        }
        VmMode::Restore(t) => {
            // Root's and read-only: the jail's uid reads the files, cannot change them.
            let dir = layout.restore_dir();
            make_dir(&dir, 0o555)?;
            let placed = t
                .place_into(&dir)
                .context("placing the template's files in the VM's directory")?;
            // Its spare memory, if ready, becomes the VM's (no copy; a new one is made once the
            // restore succeeded, see VmSteps::start).
            let spare = super::template::spare::claim(t, &dir, opts.jail.map(|j| (j.uid, j.gid)))
                .unwrap_or_else(|e| {
                    tracing::warn!("taking the template's spare memory: {e}");
                    false
                });
            tracing::debug!(template = %t.dir.display(), ?placed, spare, "restoring the VM");
            // The first clone of a spare records which pages its guest allocates, for the
            // next spares (see template::hot_pages).
            if spare && !t.dir.join(HOT_PAGES_FILE).exists() {
                hot_pages = Some(RecordPlan {
                    vm_memory: dir.join(sandpod_vmconfig::SNAPSHOT_READY_MEMORY_FILE),
                    template_dir: t.dir.clone(),
                });
            }
            vm.restore_from = Some(dir);
        }
    }
    let jail = match opts.jail {
        Some(ids) => {
            // The VMM reads the jail's view (short paths: `/vm/v` fits the vsock path limit
            // whatever the state directory's length); vm.json keeps the host's, for people.
            let plan = super::jail::prepare(layout, ids, &opts.paths.vmm, &vm)?;
            plan.vm_config
                .validate()
                .context("the sandbox's VM configuration")?;
            Some(super::jail::JailLaunch {
                helper: opts.self_exe.clone(),
                plan: layout.jail_plan(),
                ids,
            })
        }
        None => {
            // Unjailed, the VMM reads the host's paths: a state directory longer than 97 bytes
            // (Docker's with a 64-character id) is too long for the vsock socket's limit.
            vm.validate().context("the sandbox's VM configuration")?;
            tracing::warn!(
                "the VMM of {} runs without its jail (--no-jail or [jail] enabled = false): \
                 debugging only",
                opts.id
            );
            None
        }
    };
    write_json_atomic(&vmm.config, &vm)?;
    let fsd = VirtiofsdCommand {
        virtiofsd: opts.paths.virtiofsd.clone(),
        socket: layout.virtiofsd_socket(),
        shared_dir: layout.shared(),
        cache: opts.cache,
        debug: opts.debug,
    };
    let plan = MonitorPlan {
        vmm,
        virtiofsd: Some(fsd),
        guest_log_socket: HybridVsockConnector::new(layout.vsock())
            .host_port_path(sandpod_protocol::LOG_PORT),
        host_cgroup: opts.host_cgroup.clone(),
        log_token: Some(log_token.to_string()),
        jail,
        tap_fd: net.and_then(|n| n.tap_fd()).map(|_| super::network::TAP_FD),
        dns_relay: opts.netns.clone().filter(|_| opts.dns_relay),
        hot_pages,
    };
    write_json_atomic(&layout.monitor_plan(), &plan)?;
    let log_path = opts.log.clone().unwrap_or_else(|| layout.default_log());
    let log = crate::log_file::open_append(&log_path, true)
        .with_context(|| format!("opening the log {}", log_path.display()))?;
    let mut cmd = tokio::process::Command::new(&opts.self_exe);
    cmd.arg("--log")
        .arg(&log_path)
        .arg("--log-format")
        .arg(&opts.log_format);
    if opts.debug {
        cmd.arg("--debug");
        // sandpod-vmm, the monitor's child, has no --debug: it reads the variable (inherited).
        if sandpod_protocol::conventions::log_filter_from_env().is_none() {
            cmd.env(sandpod_protocol::LOG_ENV, "debug");
        }
    }
    cmd.arg("monitor")
        .arg(&layout.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    if let Some(fd) = net.and_then(|n| n.tap_fd()) {
        super::network::pass_fd(cmd.as_std_mut(), fd, super::network::TAP_FD);
    }
    cmd.spawn()
        .with_context(|| format!("starting the monitor {}", opts.self_exe.display()))
}

/// Makes a directory with `mode` (not umask's).
fn make_dir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dir.display()))
}

/// Removes what starting a VM made in the state directory (its directory, jail, plans,
/// records, sockets), so that another VM can start there; the share and the state stay.
pub(crate) fn remove_vm_files(layout: &Layout) -> anyhow::Result<()> {
    let left = mounts_under(&layout.vm_dir());
    if !left.is_empty() {
        bail!("{} still has mounts: {left:?}", layout.vm_dir().display());
    }
    match std::fs::remove_dir_all(layout.vm_dir()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", layout.vm_dir().display())),
    }
    // The jail's root is an empty mount point on the host (its tmpfs is in the jail's mount
    // namespace): remove_dir refuses anything else.
    for dir in [layout.jail_root()] {
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
        }
    }
    for f in [
        layout.jail_plan(),
        layout.dir.join(VM_CONFIG_FILE),
        layout.monitor_plan(),
        layout.children(),
        layout.vm_exit(),
        layout.virtiofsd_socket(),
        layout.monitor_socket(),
    ] {
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", f.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    use sandpod_vmconfig::{VmConfig, SNAPSHOT_MEMORY_FILE, SNAPSHOT_STATE_FILE};

    use super::*;
    use crate::sandbox::jail::{JailIds, JailPlan};
    use crate::sandbox::template::store_tests::fake_build;
    use crate::sandbox::template::{KeyInputs, TemplateStore};

    /// A sandbox whose "monitor" is /bin/true (it only has to start), jailed.
    fn config(root: &Path, files: &Path) -> SandboxConfig {
        for n in ["vmlinux", "initrd"] {
            std::fs::write(files.join(n), n).unwrap();
        }
        SandboxConfig {
            root: root.to_path_buf(),
            id: "c1".into(),
            size: crate::hypervisor::VmSize {
                vcpus: 1,
                mem_mib: 64,
            },
            hostname: None,
            paths: crate::paths::RuntimePaths {
                vmm: "/bin/true".into(),
                virtiofsd: "/bin/true".into(),
                kernel: files.join("vmlinux"),
                initrd: files.join("initrd"),
            },
            log: None,
            log_format: "text".into(),
            debug: false,
            cache: crate::hypervisor::CacheMode::Auto,
            boot_timeout: Duration::from_secs(5),
            self_exe: "/bin/true".into(),
            host_cgroup: None,
            jail: Some(JailIds {
                uid: 65534,
                gid: 65534,
            }),
            netns: None,
            dns_relay: false,
            template: true,
        }
    }

    fn read<T: serde::de::DeserializeOwned>(p: PathBuf) -> T {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_restore_names_the_templates_files_in_the_jails_view() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let cfg = config(&root, d.path());
        let layout = Layout::new(&root, "c1");
        std::fs::create_dir_all(&layout.dir).unwrap();
        let vm = sandbox_vm(&cfg, &layout, None).vm_config();
        let inputs = KeyInputs::of(&vm, &cfg.paths.vmm).unwrap();
        let store = TemplateStore::new(&root);
        let t = store
            .ensure(&inputs, false, |tmp| fake_build(tmp, 64))
            .await
            .unwrap();
        let token = LogToken::generate().unwrap();

        let mut child = start_monitor(&cfg, &layout, &token, None, VmMode::Restore(&t)).unwrap();
        child.wait().await.unwrap();
        let host: VmConfig = read(layout.dir.join(VM_CONFIG_FILE));
        assert_eq!(host.restore_from, Some(layout.restore_dir()));
        assert_eq!(host.snapshot_to, None);
        assert_eq!(host.cmdline, crate::hypervisor::vmm::SANDBOX_CMDLINE);
        let jail: JailPlan = read(layout.jail_plan());
        assert_eq!(jail.vm_config.restore_from, Some(PathBuf::from("/vm/t")));
        // The template's files, linked (same file system), root's and read-only.
        let dir = std::fs::metadata(layout.restore_dir()).unwrap();
        assert_eq!((dir.uid(), dir.permissions().mode() & 0o777), (0, 0o555));
        for name in [SNAPSHOT_STATE_FILE, SNAPSHOT_MEMORY_FILE] {
            let placed = std::fs::metadata(layout.restore_dir().join(name)).unwrap();
            let orig = std::fs::metadata(t.dir.join(name)).unwrap();
            assert_eq!(placed.ino(), orig.ino(), "{name}");
            assert_eq!(placed.permissions().mode() & 0o222, 0, "{name}");
        }

        // Stopping the VM that failed to restore leaves the sandbox ready for a cold boot...
        remove_vm_files(&layout).unwrap();
        assert!(!layout.vm_dir().exists());
        assert!(!layout.jail_plan().exists() && !layout.jail_root().exists());
        assert!(t.memory_file().is_file(), "the template's own file stays");
        let mut child = start_monitor(&cfg, &layout, &token, None, VmMode::Boot).unwrap();
        child.wait().await.unwrap();
        let host: VmConfig = read(layout.dir.join(VM_CONFIG_FILE));
        assert_eq!((host.restore_from, host.snapshot_to), (None, None));
        let jail: JailPlan = read(layout.jail_plan());
        assert_eq!(jail.vm_config.restore_from, None);
    }

    #[tokio::test]
    async fn a_template_build_asks_the_guest_for_a_snapshot_into_the_jails_directory() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let cfg = config(&root, d.path());
        let layout = Layout::new(&root, "b");
        std::fs::create_dir_all(&layout.dir).unwrap();
        let token = LogToken::generate().unwrap();
        let mut child = start_monitor(&cfg, &layout, &token, None, VmMode::Snapshot).unwrap();
        child.wait().await.unwrap();
        let host: VmConfig = read(layout.dir.join(VM_CONFIG_FILE));
        assert_eq!(host.snapshot_to, Some(layout.snapshot_dir()));
        assert!(
            host.cmdline.ends_with(" sandpod.template=1"),
            "{}",
            host.cmdline
        );
        let jail: JailPlan = read(layout.jail_plan());
        assert_eq!(jail.vm_config.snapshot_to, Some(PathBuf::from("/vm/s")));
        // The jail's uid writes it.
        let m = std::fs::metadata(layout.snapshot_dir()).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534));
        // The key of what a build boots is the sandboxes' (host sides aside).
        let sandbox = sandbox_vm(&cfg, &Layout::new(&root, "c1"), None).vm_config();
        let built = sandbox_vm(&cfg, &layout, None).vm_config();
        assert_eq!(
            KeyInputs::of(&sandbox, &cfg.paths.vmm).unwrap().key(),
            KeyInputs::of(&built, &cfg.paths.vmm).unwrap().key()
        );
    }
}
