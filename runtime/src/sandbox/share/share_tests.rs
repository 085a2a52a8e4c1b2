//! The share's mounts for real, in a private mount namespace of a test thread (root only):
//! the flags the host gets, the peer group, and teardown against a guest that renamed the share's
//! directories and planted symlinks.
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Spec;

use super::*;
use crate::sandbox::layout::Layout;

/// Runs `f` on a thread of its own in a new mount namespace where `/` is private (nothing it
/// mounts reaches the host's namespace).
fn in_private_mount_ns(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap();
        f()
    })
    .join()
    .expect("the test thread panicked");
}

/// The mount options (the per-mount ones, field 6) and optional fields of the mount at `path`.
fn mountinfo_of(path: &Path) -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (Path::new(f[4]) == path).then(|| {
            let sep = f.iter().position(|x| *x == "-").unwrap();
            (f[5].to_string(), f[6..sep].join(" "))
        })
    })
}

fn spec_with_volumes(ro_src: &Path, rw_src: &Path) -> Spec {
    serde_json::from_str(&format!(
        r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"mounts":[
            {{"destination":"/proc","type":"proc","source":"proc"}},
            {{"destination":"/ro","type":"bind","source":"{}","options":["rbind","nosuid,ro"]}},
            {{"destination":"/rw","type":"bind","source":"{}","options":["rbind","rw"]}}]}}"#,
        ro_src.display(),
        rw_src.display()
    ))
    .unwrap()
}

struct World {
    _tmp: tempfile::TempDir,
    run: PathBuf,
    rootfs: PathBuf,
    ro_src: PathBuf,
    rw_src: PathBuf,
}

/// A shared `/run`-like tmpfs (as on systemd hosts), a rootfs and two volume sources, the
/// read-only one with a submount (read-only must reach it too).
fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    mount(
        Some("t"),
        &run,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    mount(
        None::<&str>,
        &run,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .unwrap();
    let rootfs = tmp.path().join("rootfs");
    let ro_src = tmp.path().join("ro");
    let rw_src = tmp.path().join("rw");
    for d in [&rootfs, &ro_src, &rw_src] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::create_dir(ro_src.join("sub")).unwrap();
    mount(
        Some("t"),
        &ro_src.join("sub"),
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    World {
        _tmp: tmp,
        run,
        rootfs,
        ro_src,
        rw_src,
    }
}

fn share_container(w: &World, id: &str, mounts: &mut Vec<PathBuf>) -> Layout {
    let layout = Layout::new(&w.run, id);
    std::fs::create_dir(&layout.dir).unwrap();
    prepare_share(&layout, mounts).unwrap();
    let spec = spec_with_volumes(&w.ro_src, &w.rw_src);
    let files = ContainerFiles {
        id,
        bundle_dir: w.rootfs.parent().unwrap(),
        rootfs: &w.rootfs,
        spec: &spec,
        readonly_rootfs: false,
    };
    add_container(&layout, &files).unwrap();
    layout
}

#[test]
#[ignore = "needs root (mount namespaces): run by `make unit` as root (--include-ignored), as in CI"]
fn share_mounts_are_capped_nosuid_nodev_and_read_only_recursively() {
    in_private_mount_ns(|| {
        let w = world();
        let mut mounts = Vec::new();
        let layout = share_container(&w, "c1", &mut mounts);
        let c = layout.container_shared("c1");
        for p in [c.join("rootfs"), c.join("mounts/1"), c.join("mounts/2")] {
            let (opts, _) =
                mountinfo_of(&p).unwrap_or_else(|| panic!("{} not mounted", p.display()));
            assert!(
                opts.contains("nosuid") && opts.contains("nodev"),
                "{}: {opts}",
                p.display()
            );
        }
        assert!(mountinfo_of(&c.join("mounts/1"))
            .unwrap()
            .0
            .starts_with("ro"));
        assert!(mountinfo_of(&c.join("mounts/1/sub"))
            .unwrap()
            .0
            .starts_with("ro"));
        assert!(mountinfo_of(&c.join("mounts/2"))
            .unwrap()
            .0
            .starts_with("rw"));
        // A write through the read-only volume's submount fails on the host.
        let e = std::fs::write(c.join("mounts/1/sub/x"), b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS));
        // The share's top is a capped tmpfs: a guest cannot fill the host's /run through it.
        let e = std::fs::write(layout.shared().join("junk"), vec![0u8; 2 << 20]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        // Its peer group is its own, not /run's.
        let group = |p: &Path| {
            let (_, optional) = mountinfo_of(p).unwrap();
            optional
                .split(' ')
                .find(|f| f.starts_with("shared:"))
                .map(str::to_string)
        };
        let share_group = group(&layout.shared()).expect("the share is shared (virtiofsd)");
        assert_ne!(Some(share_group), group(&w.run));
        assert!(unmount_all(&mounts).is_empty());
        assert!(mounts_under(&layout.dir).is_empty());
    });
}

#[test]
#[ignore = "needs root (mount namespaces): run by `make unit` as root (--include-ignored), as in CI"]
fn the_rootfs_may_not_be_the_host_root() {
    in_private_mount_ns(|| {
        let w = world();
        let layout = Layout::new(&w.run, "c1");
        std::fs::create_dir(&layout.dir).unwrap();
        let mut mounts = Vec::new();
        prepare_share(&layout, &mut mounts).unwrap();
        let spec: Spec = serde_json::from_str(r#"{"ociVersion":"1.0.2"}"#).unwrap();
        let files = ContainerFiles {
            id: "c1",
            bundle_dir: Path::new("/"),
            rootfs: Path::new("/"),
            spec: &spec,
            readonly_rootfs: false,
        };
        let e = add_container(&layout, &files);
        assert!(matches!(e, Err(ShareError::HostRoot(_))), "{e:?}");
        // Nothing of it is left attached.
        assert_eq!(mounts_under(&layout.dir), vec![layout.shared()]);
        assert!(unmount_all(&mounts).is_empty());
    });
}

#[test]
#[ignore = "needs root (mount namespaces): run by `make unit` as root (--include-ignored), as in CI"]
fn teardown_never_follows_what_the_guest_renamed_or_planted() {
    in_private_mount_ns(|| {
        let w = world();
        let mut victim_mounts = Vec::new();
        let victim = share_container(&w, "victim", &mut victim_mounts);
        let mut mounts = Vec::new();
        let attacker = share_container(&w, "evil", &mut mounts);
        // What a guest can do through virtiofsd: rename its container's directory and plant
        // symlinks to the other sandbox's mounts where its own mounts were.
        let c = attacker.container_shared("evil");
        std::fs::rename(&c, attacker.shared().join("moved")).unwrap();
        std::fs::create_dir_all(c.join("mounts")).unwrap();
        let victim_c = victim.container_shared("victim");
        std::os::unix::fs::symlink(victim_c.join("rootfs"), c.join("rootfs")).unwrap();
        std::os::unix::fs::symlink(victim_c.join("mounts/1"), c.join("mounts/1")).unwrap();
        // Both removal paths: the container's and the sandbox's.
        remove_container(&attacker, "evil").unwrap();
        assert!(unmount_all(&mounts).is_empty());
        unmount_all(&[attacker.shared()]);
        for p in [victim_c.join("rootfs"), victim_c.join("mounts/1")] {
            assert!(mountinfo_of(&p).is_some(), "{} was unmounted", p.display());
        }
        assert!(mounts_under(&attacker.dir).is_empty());
        assert!(unmount_all(&victim_mounts).is_empty());
    });
}
