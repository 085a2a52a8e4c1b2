//! spec → InitConfig translation.
use nix::mount::MsFlags;
use serde_json::{json, Value};

use super::*;

/// oci-spec's default spec (runc's `spec` output, roughly) as JSON, changed by `edit`.
fn spec_json(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = serde_json::to_value(Spec::default()).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn translate_json(json: &[u8]) -> Result<Translated, ContainerError> {
    translate("c1", parse(json)?, Path::new("/run/rootfs"))
}

fn err_of(edit: impl FnOnce(&mut Value)) -> String {
    translate_json(&spec_json(edit)).unwrap_err().to_string()
}

#[test]
fn default_spec_translates() {
    let t = translate_json(&spec_json(|v| {
        v["hostname"] = json!("box");
        v["root"]["readonly"] = json!(true);
        v["process"]["args"] = json!(["echo", "hi"]);
        v["process"]["user"] =
            json!({"uid": 1000, "gid": 1001, "additionalGids": [10], "umask": 63});
        v["process"]["terminal"] = json!(true);
    }))
    .unwrap();
    let init = &t.init;
    assert_eq!(init.container_id, "c1");
    assert_eq!(init.rootfs, Path::new("/run/rootfs"));
    assert!(init.readonly_rootfs);
    assert_eq!(init.hostname.as_deref(), Some("box"));
    // network (no path) is the VM's: not created.
    for k in [
        NsKind::Pid,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::Mount,
        NsKind::Cgroup,
    ] {
        assert!(init.new_namespaces.contains(&k), "{k:?}");
    }
    assert!(!init.new_namespaces.contains(&NsKind::Net));
    assert!(init.join_namespaces.is_empty() && t.join_pid_ns.is_none());
    assert_eq!(
        init.rootfs_propagation,
        (MsFlags::MS_SLAVE | MsFlags::MS_REC).bits()
    );
    let p = &init.process;
    assert_eq!(p.args, vec!["echo", "hi"]);
    assert_eq!(
        (p.creds.uid, p.creds.gid, p.creds.additional_gids.clone()),
        (1000, 1001, vec![10])
    );
    assert_eq!(p.umask, Some(63));
    assert!(p.terminal);
    assert_eq!(p.cwd, Path::new("/"));
    let cgroup = init
        .mounts
        .iter()
        .find(|m| m.destination == Path::new("/sys/fs/cgroup"))
        .unwrap();
    assert_eq!(cgroup.fstype, "cgroup2");
    let dev = init
        .mounts
        .iter()
        .find(|m| m.destination == Path::new("/dev"))
        .unwrap();
    assert_eq!(dev.fstype, "tmpfs");
    assert!(dev.data.contains("mode=755"), "{}", dev.data);
    assert!(!dev.bind);
}

#[test]
fn bind_mounts_get_bind_flags_and_propagation() {
    let t = translate_json(&spec_json(|v| {
        v["mounts"] = json!([{"destination": "/data", "type": "bind", "source": "/run/share/x",
                              "options": ["rbind", "ro", "rprivate"]},
                             {"destination": "/etc/hosts", "source": "/run/share/hosts",
                              "options": ["bind"]}]);
        v["linux"]["rootfsPropagation"] = json!("private");
    }))
    .unwrap();
    let m = &t.init.mounts;
    assert!(m[0].bind && m[0].fstype.is_empty());
    assert_eq!(
        m[0].flags,
        (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY).bits()
    );
    assert_eq!(
        m[0].propagation,
        vec![(MsFlags::MS_PRIVATE | MsFlags::MS_REC).bits()]
    );
    assert!(m[1].bind);
    assert_eq!(m[1].flags, MsFlags::MS_BIND.bits());
    assert_eq!(t.init.rootfs_propagation, MsFlags::MS_PRIVATE.bits());
}

#[test]
fn namespace_paths_are_joined() {
    let t = translate_json(&spec_json(|v| {
        v["linux"]["namespaces"] = json!([
            {"type": "mount"}, {"type": "pid", "path": "/proc/7/ns/pid"},
            {"type": "network", "path": "/var/run/netns/pod"}, {"type": "ipc", "path": "/proc/7/ns/ipc"}
        ]);
        v["hostname"] = json!("");
    }))
    .unwrap();
    assert_eq!(t.init.new_namespaces, vec![NsKind::Mount]);
    assert_eq!(t.join_pid_ns.as_deref(), Some(Path::new("/proc/7/ns/pid")));
    let kinds: Vec<NsKind> = t.init.join_namespaces.iter().map(|j| j.kind).collect();
    assert_eq!(kinds, vec![NsKind::Net, NsKind::Ipc]);
    assert_eq!(t.init.hostname, None);
}

#[test]
fn refusals_name_their_cause() {
    let e = err_of(|v| v["process"]["args"] = json!([]));
    assert!(e.contains("process.args is empty"), "{e}");
    let e = err_of(|v| v["process"]["env"] = json!(["NOEQUALS"]));
    assert!(e.contains("NOEQUALS"), "{e}");
    let e = err_of(|v| v["process"]["cwd"] = json!("work"));
    assert!(e.contains("process.cwd"), "{e}");
    let e = err_of(|v| v["linux"]["namespaces"] = json!([{"type": "pid"}]));
    assert!(e.contains("mount namespace is required"), "{e}");
    let e = err_of(|v| {
        v["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "user"}]);
    });
    assert!(e.contains("user namespaces are not supported"), "{e}");
    let e = err_of(|v| {
        v["linux"]["namespaces"] = json!([{"type": "mount"}]);
        v["hostname"] = json!("h");
    });
    assert!(e.contains("no new uts namespace"), "{e}");
    let e = err_of(|v| {
        v["mounts"] =
            json!([{"destination": "/d", "type": "bind", "source": "rel", "options": ["bind"]}]);
    });
    assert!(e.contains("not an absolute guest path"), "{e}");
    let e = err_of(|v| {
        v["mounts"] = json!([{"destination": "d", "type": "tmpfs", "source": "tmpfs"}]);
    });
    assert!(e.contains("not absolute"), "{e}");
    let e = err_of(|v| {
        v["mounts"] =
            json!([{"destination": "/d", "type": "bind", "source": "/s", "options": ["idmap"]}]);
    });
    assert!(e.contains("idmap"), "{e}");
    let e = err_of(|v| v["linux"]["rootfsPropagation"] = json!("sideways"));
    assert!(e.contains("rootfsPropagation"), "{e}");
    let e = translate("c1", Spec::default(), Path::new("rel"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an absolute path"), "{e}");
    let e = parse(b"{not json").unwrap_err().to_string();
    assert!(e.starts_with("oci_spec: "), "{e}");
}

#[test]
fn devices_are_translated() {
    let t = translate_json(&spec_json(|v| {
        v["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                       "fileMode": 438, "uid": 0, "gid": 0}]);
    }))
    .unwrap();
    let d = &t.init.devices[0];
    assert_eq!((d.kind, d.major, d.minor, d.mode), ('c', 10, 229, 0o666));
}

#[test]
fn vsock_only_with_the_annotation() {
    let t = translate_json(&spec_json(|_| {})).unwrap();
    assert!(!t.init.security.allow_vsock);
    for (value, allowed) in [("true", true), ("false", false), ("1", false)] {
        let t = translate_json(&spec_json(|v| {
            v["annotations"] = json!({"io.sandpod.allow-vsock": value});
        }))
        .unwrap();
        assert_eq!(t.init.security.allow_vsock, allowed, "{value}");
    }
}

#[test]
fn the_cgroup_namespace_is_not_made_by_the_clone() {
    let t = translate_json(&spec_json(|_| {})).unwrap();
    let new = &t.init.new_namespaces;
    assert!(new.contains(&NsKind::Cgroup));
    let flags = crate::container::namespaces::clone_flags(new);
    assert!(!flags.contains(nix::sched::CloneFlags::CLONE_NEWCGROUP));
    assert!(
        flags.contains(nix::sched::CloneFlags::CLONE_NEWPID | nix::sched::CloneFlags::CLONE_NEWNS)
    );
}
