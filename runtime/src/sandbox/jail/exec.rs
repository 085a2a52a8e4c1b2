//! `sandpod jail PLAN`: carries out a [`JailPlan`]. The monitor execs it (a fresh, single-threaded
//! process) in place of sandpod-vmm. It unshares the mount, IPC, UTS, network and PID
//! namespaces and forks: the child, PID 1 of the new PID namespace, builds the jail's root,
//! pivots into it, drops every privilege and execs the VMM; the parent stays outside, forwards
//! the signals the monitor sends and exits as the child did (so the monitor sees the VMM's
//! status). If the parent dies, the child gets SIGKILL (PR_SET_PDEATHSIG, set after the uid
//! change that would clear it), and with it every process of the namespace.
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::stat::{mknod, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};

use super::plan::{JailPlan, JAIL_CONFIG};

/// The signals the parent forwards to the VMM (the VMM handles SIGTERM and SIGINT; as PID 1 of
/// its namespace it does not see the others unless it handles them).
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];
/// The environment the VMM keeps: its log filter.
const KEPT_ENV: [&str; 2] = [sandpod_protocol::LOG_ENV, "RUST_LOG"];
/// The jail's tmpfs: small (it holds vm.json and the mount points of the binds).
const TMPFS_OPTIONS: &str = "mode=0755,size=4m,nr_inodes=1024";

/// Reads a plan written by the runtime.
pub fn load(path: &Path) -> anyhow::Result<JailPlan> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// `sandpod jail PLAN`: never returns on success of the child; returns the exit code the parent
/// ends with (the VMM's), or an error before anything was started.
pub fn run(plan_path: &Path) -> anyhow::Result<u8> {
    let plan = load(plan_path)?;
    let mut signals = SigSet::empty();
    for s in FORWARDED {
        signals.add(s);
    }
    signals.add(Signal::SIGCHLD);
    signals
        .thread_block()
        .context("blocking the forwarded signals")?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).context("RLIMIT_CORE")?;
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWPID,
    )
    .context("unsharing the namespaces (sandpod jail must run as root, single-threaded)")?;
    // The child learns that the parent is gone from this pipe (the parent holds the write end
    // until it exits): it closes the race between its fork and its PR_SET_PDEATHSIG.
    let (alive_r, alive_w) = nix::unistd::pipe().context("pipe")?;
    // SAFETY: this process is single-threaded (a fresh exec of `sandpod jail`, no thread
    // started), so the child may do anything after fork, allocation included.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Child => {
            drop(alive_w);
            let e = enter(&plan, alive_r).unwrap_err();
            eprintln!("sandpod jail: {e:#}");
            std::process::exit(1);
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(alive_r);
            let code = supervise(child, &signals);
            drop(alive_w);
            code
        }
    }
}

/// The parent: forwards signals until the child ends; its status becomes ours.
fn supervise(child: Pid, signals: &SigSet) -> anyhow::Result<u8> {
    loop {
        let sig = signals.wait().context("sigwait")?;
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(u8::try_from(code).unwrap_or(255)),
            Ok(WaitStatus::Signaled(_, s, _)) => {
                // Die of the same signal (the monitor records it), without a core (RLIMIT_CORE 0).
                let _ = nix::sys::signal::sigprocmask(
                    SigmaskHow::SIG_SETMASK,
                    Some(&SigSet::empty()),
                    None,
                );
                // SAFETY: restoring the default disposition installs no handler code.
                let _ =
                    unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigDfl) };
                let _ = kill(Pid::this(), s);
                return Ok(128 + s as u8);
            }
            Ok(_) => {}
            Err(e) => return Err(e).context("waiting for the VMM"),
        }
    }
}

/// The child: builds the root, pivots, drops privileges, execs the VMM. Returns only an error.
fn enter(plan: &JailPlan, parent_alive: OwnedFd) -> anyhow::Result<std::convert::Infallible> {
    build_root(plan)?;
    pivot(&plan.root)?;
    drop_privileges(plan)?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("PR_SET_PDEATHSIG")?;
    // The parent may have died before PR_SET_PDEATHSIG: then the pipe is at its end.
    let mut fds = [nix::poll::PollFd::new(
        parent_alive.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    if nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).context("poll")? > 0 {
        bail!("the jail's parent is gone");
    }
    drop(parent_alive);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .context("unblocking signals")?;
    let argv: Vec<CString> = plan
        .argv()
        .iter()
        .map(|a| CString::new(a.as_os_str().as_bytes()))
        .collect::<Result<_, _>>()
        .context("the VMM's arguments")?;
    let env: Vec<CString> = KEPT_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
        .filter_map(|kv| CString::new(kv).ok())
        .collect();
    let e = nix::unistd::execve(&argv[0], &argv, &env).unwrap_err();
    Err(e).with_context(|| format!("executing {}", plan.program_in_jail().display()))
}

/// `root` + an absolute jail path (no `..`).
fn in_root(root: &Path, jail_path: &Path) -> anyhow::Result<PathBuf> {
    let rel = jail_path
        .strip_prefix("/")
        .with_context(|| format!("{} is not absolute", jail_path.display()))?;
    if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("{} is not a plain path in the jail", jail_path.display());
    }
    Ok(root.join(rel))
}

fn mkdirs(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))
}

fn build_root(plan: &JailPlan) -> anyhow::Result<()> {
    let none: Option<&str> = None;
    // Nothing done here reaches the host; what the host unmounts leaves the jail too.
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none)
        .context("making the mounts slaves")?;
    let root = &plan.root;
    // nosuid; not nodev (the KVM node), not noexec (the VMM).
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some(TMPFS_OPTIONS),
    )
    .with_context(|| format!("mounting the jail's tmpfs on {}", root.display()))?;
    for dev in &plan.devices {
        let host = &dev.host;
        let meta = std::fs::metadata(host).with_context(|| format!("stat {}", host.display()))?;
        if !meta.file_type().is_char_device() {
            bail!("{} is not a character device", host.display());
        }
        let target = in_root(root, &dev.path)?;
        mkdirs(target.parent().unwrap_or(root))?;
        mknod(
            &target,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            meta.rdev(),
        )
        .with_context(|| format!("mknod {}", target.display()))?;
        nix::unistd::chown(
            &target,
            Some(Uid::from_raw(plan.uid)),
            Some(Gid::from_raw(plan.gid)),
        )
        .with_context(|| format!("chown {}", target.display()))?;
    }
    for b in &plan.binds {
        let target = in_root(root, &b.target)?;
        mkdirs(target.parent().unwrap_or(root))?;
        let meta =
            std::fs::metadata(&b.source).with_context(|| format!("stat {}", b.source.display()))?;
        if meta.is_dir() {
            mkdirs(&target)?;
        } else {
            std::fs::File::create(&target)
                .with_context(|| format!("creating {}", target.display()))?;
        }
        mount(Some(&b.source), &target, none, MsFlags::MS_BIND, none)
            .with_context(|| format!("binding {} at {}", b.source.display(), b.target.display()))?;
        let mut flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if !b.writable {
            flags |= MsFlags::MS_RDONLY;
        }
        if !b.exec {
            flags |= MsFlags::MS_NOEXEC;
        }
        mount(none, &target, none, flags, none)
            .with_context(|| format!("restricting {}", b.target.display()))?;
    }
    for l in &plan.symlinks {
        let path = in_root(root, &l.path)?;
        mkdirs(path.parent().unwrap_or(root))?;
        std::os::unix::fs::symlink(&l.target, &path)
            .with_context(|| format!("symlink {}", path.display()))?;
    }
    // The shared exec-only copy (root's, mode 0111, see `program_copy`), bound read-only: the
    // jail's uid cannot read it, so the kernel makes the VMM non-dumpable at exec (no ptrace,
    // no /proc/<pid>/mem by its own uid, no core).
    let size = std::fs::metadata(&plan.program)
        .with_context(|| format!("stat {}", plan.program.display()))?
        .len();
    if !super::program_copy::is_sound_copy(&plan.program, size) {
        bail!(
            "{} is not an exec-only copy made by the runtime (root's, mode 0111)",
            plan.program.display()
        );
    }
    let program = in_root(root, &plan.program_in_jail())?;
    std::fs::File::create(&program).with_context(|| format!("creating {}", program.display()))?;
    mount(Some(&plan.program), &program, none, MsFlags::MS_BIND, none).with_context(|| {
        format!(
            "binding {} at {}",
            plan.program.display(),
            program.display()
        )
    })?;
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV;
    mount(none, &program, none, flags, none)
        .with_context(|| format!("restricting {}", program.display()))?;
    let config = in_root(root, Path::new(JAIL_CONFIG))?;
    std::fs::write(&config, serde_json::to_vec_pretty(&plan.vm_config)?)
        .with_context(|| format!("writing {}", config.display()))?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o444))?;
    mount(
        none,
        root,
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
        none,
    )
    .context("making the jail's root read-only")?;
    Ok(())
}

/// pivot_root into `root`; the old root is detached (nothing of the host's tree stays).
fn pivot(root: &Path) -> anyhow::Result<()> {
    nix::unistd::chdir(root).with_context(|| format!("chdir {}", root.display()))?;
    nix::unistd::pivot_root(".", ".").context("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).context("detaching the old root")?;
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

fn drop_privileges(plan: &JailPlan) -> anyhow::Result<()> {
    use caps::CapSet;
    let limit =
        |r, v: u64, name: &str| setrlimit(r, v, v).with_context(|| format!("setrlimit {name} {v}"));
    limit(Resource::RLIMIT_NOFILE, plan.rlimits.nofile, "NOFILE")?;
    limit(Resource::RLIMIT_CORE, plan.rlimits.core, "CORE")?;
    limit(Resource::RLIMIT_FSIZE, plan.rlimits.fsize, "FSIZE")?;
    // The bounding set first (CAP_SETPCAP is still ours), then the sets the uid change keeps.
    caps::clear(None, CapSet::Bounding).context("clearing the bounding set")?;
    caps::clear(None, CapSet::Ambient).context("clearing the ambient set")?;
    caps::clear(None, CapSet::Inheritable).context("clearing the inheritable set")?;
    let groups: Vec<Gid> = plan.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).context("setgroups")?;
    let gid = Gid::from_raw(plan.gid);
    nix::unistd::setresgid(gid, gid, gid).context("setresgid")?;
    let uid = Uid::from_raw(plan.uid);
    // Leaving uid 0 clears the permitted and effective sets (no PR_SET_KEEPCAPS).
    nix::unistd::setresuid(uid, uid, uid).context("setresuid")?;
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
        CapSet::Bounding,
    ] {
        let left = caps::read(None, set).with_context(|| format!("reading {set:?}"))?;
        if !left.is_empty() {
            bail!("capabilities left in {set:?}: {left:?}");
        }
    }
    nix::sys::prctl::set_no_new_privs().context("PR_SET_NO_NEW_PRIVS")?;
    nix::sys::prctl::set_dumpable(false).context("PR_SET_DUMPABLE")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jail_paths_stay_in_the_root() {
        let r = Path::new("/run/s/c/jail");
        assert_eq!(
            in_root(r, Path::new("/dev/kvm")).unwrap(),
            r.join("dev/kvm")
        );
        for bad in ["relative", "/", "/a/../../etc", "/a/.."] {
            assert!(in_root(r, Path::new(bad)).is_err(), "{bad}");
        }
    }
}
