use super::*;

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

fn all() -> Vec<String> {
    CONTROLLERS.iter().map(|c| c.to_string()).collect()
}

fn get<'a>(writes: &'a [CgroupWrite], file: &str) -> Option<&'a str> {
    writes
        .iter()
        .find(|(f, _)| f == file)
        .map(|(_, v)| v.as_str())
}

#[test]
fn shares_to_weight_matches_runc() {
    assert_eq!(shares_to_weight(0), 0);
    assert_eq!(shares_to_weight(1), 1);
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 100);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(1_000_000), 10_000);
    // Monotonic and within 1..=10000 in between.
    let mut last = 1;
    for s in (3..262_144).step_by(97) {
        let w = shares_to_weight(s);
        assert!((1..=10_000).contains(&w), "{s} -> {w}");
        assert!(w >= last, "{s} -> {w} < {last}");
        last = w;
    }
}

#[test]
fn memory_limits() {
    let w = plan(
        &resources(r#"{"memory":{"limit":67108864,"reservation":33554432}}"#),
        &all(),
    )
    .unwrap();
    assert_eq!(get(&w, "memory.max"), Some("67108864"));
    assert_eq!(get(&w, "memory.low"), Some("33554432"));
    assert_eq!(get(&w, "memory.swap.max"), None);

    let w = plan(&resources(r#"{"memory":{"limit":-1}}"#), &all()).unwrap();
    assert_eq!(get(&w, "memory.max"), Some("max"));
    // Unlimited memory with swap unset: swap unlimited too (runc).
    let w = plan(&resources(r#"{"memory":{"limit":-1,"swap":0}}"#), &all()).unwrap();
    assert_eq!(get(&w, "memory.swap.max"), Some("max"));

    let w = plan(&resources(r#"{"memory":{"limit":0}}"#), &all()).unwrap();
    assert!(w.is_empty(), "0 is unset: {w:?}");

    let err = plan(&resources(r#"{"memory":{"limit":-5}}"#), &all()).unwrap_err();
    assert!(format!("{err:#}").contains("-5"), "{err:#}");
}

#[test]
fn swap_is_memory_plus_swap() {
    let w = plan(&resources(r#"{"memory":{"limit":100,"swap":300}}"#), &all()).unwrap();
    assert_eq!(get(&w, "memory.swap.max"), Some("200"));
    let w = plan(&resources(r#"{"memory":{"limit":100,"swap":100}}"#), &all()).unwrap();
    assert_eq!(get(&w, "memory.swap.max"), Some("0"));
    let w = plan(&resources(r#"{"memory":{"limit":100,"swap":-1}}"#), &all()).unwrap();
    assert_eq!(get(&w, "memory.swap.max"), Some("max"));
    for bad in [
        r#"{"memory":{"limit":100,"swap":50}}"#,
        r#"{"memory":{"swap":50}}"#,
        r#"{"memory":{"limit":100,"swap":-2}}"#,
    ] {
        assert!(plan(&resources(bad), &all()).is_err(), "{bad}");
    }
}

#[test]
fn cpu_limits() {
    let w = plan(
        &resources(
            r#"{"cpu":{"shares":1024,"quota":50000,"period":100000,"cpus":"0-1","mems":"0"}}"#,
        ),
        &all(),
    )
    .unwrap();
    assert_eq!(get(&w, "cpu.weight"), Some("100"));
    assert_eq!(get(&w, "cpu.max"), Some("50000 100000"));
    assert_eq!(get(&w, "cpuset.cpus"), Some("0-1"));
    assert_eq!(get(&w, "cpuset.mems"), Some("0"));

    let w = plan(&resources(r#"{"cpu":{"quota":-1}}"#), &all()).unwrap();
    assert_eq!(get(&w, "cpu.max"), Some("max"));
    let w = plan(&resources(r#"{"cpu":{"quota":20000}}"#), &all()).unwrap();
    assert_eq!(get(&w, "cpu.max"), Some("20000"));
    let w = plan(&resources(r#"{"cpu":{"shares":0}}"#), &all()).unwrap();
    assert!(w.is_empty(), "{w:?}");

    for bad in [
        r#"{"cpu":{"quota":500}}"#,
        r#"{"cpu":{"quota":50000,"period":10}}"#,
        r#"{"cpu":{"quota":50000,"period":2000000}}"#,
        r#"{"cpu":{"cpus":"0-x"}}"#,
        r#"{"cpu":{"cpus":"3-1"}}"#,
        r#"{"cpu":{"mems":"0\n1"}}"#,
    ] {
        assert!(plan(&resources(bad), &all()).is_err(), "{bad}");
    }
}

#[test]
fn pids_limit() {
    let w = plan(&resources(r#"{"pids":{"limit":32}}"#), &all()).unwrap();
    assert_eq!(get(&w, "pids.max"), Some("32"));
    let w = plan(&resources(r#"{"pids":{"limit":-1}}"#), &all()).unwrap();
    assert_eq!(get(&w, "pids.max"), Some("max"));
    let w = plan(&resources(r#"{"pids":{"limit":0}}"#), &all()).unwrap();
    assert!(w.is_empty());
}

#[test]
fn missing_controller_is_an_error() {
    let only_cpu = vec!["cpu".to_owned()];
    let err = plan(&resources(r#"{"pids":{"limit":32}}"#), &only_cpu).unwrap_err();
    assert!(err.to_string().contains("pids"), "{err}");
    let err = plan(&resources(r#"{"memory":{"limit":4096}}"#), &only_cpu).unwrap_err();
    assert!(err.to_string().contains("memory"), "{err}");
}

#[test]
fn unified_keys_are_checked() {
    let w = plan(
        &resources(r#"{"unified":{"memory.high":"1000000"}}"#),
        &all(),
    )
    .unwrap();
    assert_eq!(get(&w, "memory.high"), Some("1000000"));
    for bad in ["../memory.max", "cgroup.procs", "nodot", "memory."] {
        let json = format!(r#"{{"unified":{{"{bad}":"1"}}}}"#);
        assert!(plan(&resources(&json), &all()).is_err(), "{bad}");
    }
}

#[test]
fn oom_kill_count() {
    let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
    assert_eq!(parse_oom_kills(events), 2);
    assert_eq!(parse_oom_kills("low 0\noom 0\noom_kill 0\n"), 0);
    assert_eq!(parse_oom_kills(""), 0);
}

#[test]
fn bad_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for id in ["", ".", "..", "a/b"] {
        assert!(
            ContainerCgroup::create_in(dir.path(), id, None).is_err(),
            "{id:?}"
        );
    }
}

/// A cgroup2 root imitated by a plain directory: the layout and the controller writes.
#[test]
fn create_layout_and_remove_on_a_fake_root() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
    fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
    // No device program on a plain directory: create fails closed and leaves nothing behind.
    let err = ContainerCgroup::create_in(root.path(), "c0", None).unwrap_err();
    assert!(format!("{err:#}").contains("device program"), "{err:#}");
    assert!(!root.path().join("sandpod/c0").exists());
    // The kernel would create sandpod/cgroup.subtree_control itself; a plain dir has none, so
    // enabling there fails with a warning, which must not stop create.
    fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
    let cg = ContainerCgroup::create_without_device_program(root.path(), "c1", None).unwrap();
    assert_eq!(cg.path(), root.path().join("sandpod/c1"));
    assert!(cg.path().is_dir());
    // One write per controller, in order; the last one remains in a plain file.
    let sc = fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap();
    assert_eq!(sc, "+pids");
    // Writing into a missing interface file is an error naming it, not a new file.
    let err = cg.add_process(1).unwrap_err();
    assert!(format!("{err:#}").contains("cgroup.procs"), "{err:#}");
    assert!(!cg.path().join("cgroup.procs").exists());
    assert!(!cg.oom_killed());
    // Limits whose files are missing: create fails and leaves no directory behind.
    let r = resources(r#"{"pids":{"limit":5}}"#);
    let err =
        ContainerCgroup::create_without_device_program(root.path(), "c2", Some(&r)).unwrap_err();
    assert!(format!("{err:#}").contains("pids.max"), "{err:#}");
    assert!(!root.path().join("sandpod/c2").exists());
    // Bad device rules: refused before anything is made.
    let r = resources(r#"{"devices":[{"allow":true,"type":"c","access":"rx"}]}"#);
    let err =
        ContainerCgroup::create_without_device_program(root.path(), "c3", Some(&r)).unwrap_err();
    assert!(format!("{err:#}").contains("devices[0]"), "{err:#}");
    assert!(!root.path().join("sandpod/c3").exists());
    cg.remove().unwrap();
    assert!(!cg.path().exists());
    cg.remove().unwrap();
}

#[test]
fn writes_go_to_existing_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("memory.max"), "max\n").unwrap();
    fs::write(dir.path().join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
    let writes = vec![
        ("memory.max".to_owned(), "4096".to_owned()),
        // Missing swap file (no CONFIG_SWAP): skipped, not an error.
        ("memory.swap.max".to_owned(), "0".to_owned()),
    ];
    apply_writes(dir.path(), &writes).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("memory.max")).unwrap(),
        "4096"
    );
    assert!(!dir.path().join("memory.swap.max").exists());
    let cg = ContainerCgroup {
        path: dir.path().to_owned(),
    };
    assert!(cg.oom_killed());
}

/// UpdateContainer on a plain directory imitating a cgroup with only the pids controller: the
/// whole request is checked against it before anything is written.
#[test]
fn update_checks_everything_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("cgroup.controllers"), "pids\n").unwrap();
    fs::write(d.join("pids.max"), "max\n").unwrap();
    let cg = ContainerCgroup::at(d);
    assert_eq!(
        cg.update(&resources(r#"{"pids":{"limit":10}}"#)).unwrap(),
        1
    );
    assert_eq!(fs::read_to_string(d.join("pids.max")).unwrap(), "10");
    // Memory asked too: refused as a whole, pids.max untouched.
    let err = cg
        .update(&resources(
            r#"{"pids":{"limit":20},"memory":{"limit":4096}}"#,
        ))
        .unwrap_err();
    assert!(matches!(err, UpdateError::Invalid(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("memory controller is not available"), "{msg}");
    assert!(msg.contains("has controllers: pids"), "{msg}");
    assert_eq!(fs::read_to_string(d.join("pids.max")).unwrap(), "10");
    // Invalid values: refused before any write.
    let err = cg.update(&resources(r#"{"pids":{"limit":30},"cpu":{"quota":5}}"#));
    assert!(matches!(err, Err(UpdateError::Invalid(_))));
    assert_eq!(fs::read_to_string(d.join("pids.max")).unwrap(), "10");
    // Without controllers at all (a cgroup2 with none enabled): a clear error too.
    fs::write(d.join("cgroup.controllers"), "\n").unwrap();
    let err = cg
        .update(&resources(r#"{"pids":{"limit":5}}"#))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("pids controller is not available"), "{msg}");
    assert!(msg.contains("has controllers: none"), "{msg}");
}

#[test]
fn freezer_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cg = ContainerCgroup::at(d);
    // Missing interface files are errors naming them, never created.
    assert!(format!("{:#}", cg.set_frozen(true).unwrap_err()).contains("cgroup.freeze"));
    assert!(!d.join("cgroup.freeze").exists());
    assert!(format!("{:#}", cg.frozen().unwrap_err()).contains("cgroup.events"));
    fs::write(d.join("cgroup.freeze"), "0").unwrap();
    fs::write(d.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
    cg.set_frozen(true).unwrap();
    assert_eq!(fs::read_to_string(d.join("cgroup.freeze")).unwrap(), "1");
    assert!(!cg.frozen().unwrap());
    fs::write(d.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
    assert!(cg.frozen().unwrap());
}

#[test]
fn test_root_must_be_a_cgroup2_directory() {
    let dir = tempfile::tempdir().unwrap();
    let err = set_test_root(dir.path()).unwrap_err();
    assert!(err.to_string().contains(TEST_ROOT_ENV), "{err}");
    assert!(err.to_string().contains("no cgroup.controllers"), "{err}");
    assert!(set_test_root(Path::new("relative/dir")).is_err());
    assert_eq!(root(), Path::new(CGROUP_ROOT));
}
