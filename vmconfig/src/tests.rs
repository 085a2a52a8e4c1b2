//! [`VmConfig`] as a whole: defaults, validation, the JSON form.

use std::path::PathBuf;

use super::*;

/// An older or hand-written file with only some fields.
const MINIMAL: &str = r#"{"kernel":"/k","initrd":null,"cmdline":"x","mem_mib":128,"vcpus":1}"#;

#[test]
fn defaults_are_valid() {
    let c = VmConfig::new("/vmlinux");
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(c.mem_bytes(), 128 << 20);
}

#[test]
fn rejects_bad_values() {
    let mut c = VmConfig::new("/vmlinux");
    c.mem_mib = 0;
    assert_eq!(c.validate(), Err(ConfigError::MemTooSmall(0)));
    c.mem_mib = MAX_MEM_MIB + 1;
    assert_eq!(c.validate(), Err(ConfigError::MemTooLarge(MAX_MEM_MIB + 1)));
    c.mem_mib = 128;
    c.vcpus = 0;
    assert_eq!(c.validate(), Err(ConfigError::NoVcpus));
    c.vcpus = 255;
    assert_eq!(c.validate(), Err(ConfigError::TooManyVcpus(255)));
    c.vcpus = 2;
    c.cmdline = "console=ttyS0\0".into();
    assert_eq!(c.validate(), Err(ConfigError::BadCmdline));
    c.cmdline = "a\nb".into();
    assert_eq!(c.validate(), Err(ConfigError::BadCmdline));
    let c = VmConfig::new("");
    assert_eq!(c.validate(), Err(ConfigError::NoKernel));
}

#[test]
fn vsock_config() {
    let mut c = VmConfig::new("/k");
    c.vsock = Some(VsockConfig::new("/run/v.sock"));
    assert_eq!(c.validate(), Ok(()));
    let s = serde_json::to_string(&c).unwrap();
    assert!(s.contains("\"guest_cid\":3"));
    assert_eq!(serde_json::from_str::<VmConfig>(&s).unwrap(), c);
    c.vsock.as_mut().unwrap().guest_cid = 2;
    assert_eq!(c.validate(), Err(ConfigError::BadGuestCid(2)));
    assert_eq!(
        serde_json::from_str::<VmConfig>(MINIMAL).unwrap().vsock,
        None
    );
}

#[test]
fn fs_config() {
    let mut c = VmConfig::new("/k");
    c.fs.push(FsConfig::new("a", "/run/a.sock"));
    c.fs.push(FsConfig::new("b", "/run/b.sock"));
    assert_eq!(c.validate(), Ok(()));
    let s = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<VmConfig>(&s).unwrap(), c);
    c.fs[1].tag = "a".into();
    assert_eq!(c.validate(), Err(ConfigError::DuplicateFsTag("a".into())));
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "virtio-fs: tag a used twice"
    );
    c.fs[1].tag = String::new();
    assert_eq!(
        c.validate(),
        Err(ConfigError::Fs(FsConfigError::TagLength(String::new())))
    );
    assert!(serde_json::from_str::<VmConfig>(MINIMAL)
        .unwrap()
        .fs
        .is_empty());
    c.fs[1].tag = "b".into();
    c.fs.push(FsConfig::new("c", "/run/c.sock"));
    assert_eq!(c.validate(), Err(ConfigError::TooManyFs(3)));
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "virtio-fs: 3 devices given but at most 2 are supported"
    );
}

#[test]
fn disk_config() {
    let mut c = VmConfig::new("/k");
    c.disks.push("/d.img,ro".parse().unwrap());
    assert_eq!(c.validate(), Ok(()));
    let s = serde_json::to_string(&c).unwrap();
    assert!(
        s.contains(r#""disks":[{"path":"/d.img","read_only":true}]"#),
        "{s}"
    );
    assert_eq!(serde_json::from_str::<VmConfig>(&s).unwrap(), c);
    c.disks = vec![c.disks[0].clone(); MAX_DISKS + 1];
    assert_eq!(c.validate(), Err(ConfigError::TooManyDisks(MAX_DISKS + 1)));
    c.disks = vec![DiskConfig {
        path: "".into(),
        read_only: false,
    }];
    assert_eq!(c.validate(), Err(ConfigError::EmptyDiskPath));
    assert!(serde_json::from_str::<VmConfig>(MINIMAL)
        .unwrap()
        .disks
        .is_empty());
}

#[test]
fn net_config() {
    let mut c = VmConfig::new("/k");
    c.net.push(NetConfig::tap("tap0"));
    assert_eq!(c.validate(), Ok(()));
    let s = serde_json::to_string(&c).unwrap();
    assert!(s.contains(r#""net":[{"tap":"tap0","#), "{s}");
    assert_eq!(serde_json::from_str::<VmConfig>(&s).unwrap(), c);
    c.net[0].mtu = Some(10);
    assert_eq!(c.validate(), Err(ConfigError::Net(NetConfigError::Mtu(10))));
    c.net[0].mtu = None;
    c.net.push(NetConfig::tap("tap1"));
    assert_eq!(c.validate(), Err(ConfigError::TooManyNet(2)));
    assert!(serde_json::from_str::<VmConfig>(MINIMAL)
        .unwrap()
        .net
        .is_empty());
    let e = serde_json::from_str::<VmConfig>(r#"{"kernel":"/k","net":[{"tap":"t","mac":"x"}]}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not six hex bytes"), "{e}");
}

#[test]
fn error_messages_are_clear() {
    assert_eq!(
        ConfigError::NoVcpus.to_string(),
        "the VM needs at least 1 vCPU"
    );
    assert!(ConfigError::MemTooSmall(0).to_string().contains("0 MiB"));
    assert_eq!(
        crate::conventions::ErrorChain(&ConfigError::Fs(FsConfigError::TagControl("a\tb".into())))
            .to_string(),
        "virtio-fs: tag \"a\\tb\" contains control characters"
    );
    // The device's own error is the cause, not part of the message.
    assert_eq!(
        ConfigError::Fs(FsConfigError::TagControl("a".into())).to_string(),
        "virtio-fs"
    );
}

#[test]
fn serde_round_trip_of_every_field() {
    let c = VmConfig {
        kernel: "/g/vmlinux".into(),
        initrd: Some("/g/initramfs.cpio".into()),
        cmdline: "console=ttyS0 quiet".into(),
        mem_mib: 384,
        vcpus: 2,
        console: ConsoleConfig::File("/s/console.log".into()),
        console_limits: ConsoleLimits {
            max_file_bytes: 4096,
            bytes_per_sec: 100,
            burst_bytes: 2048,
        },
        vsock: Some(VsockConfig {
            guest_cid: 7,
            uds_path: "/s/v".into(),
        }),
        fs: vec![FsConfig {
            tag: "sandpod".into(),
            socket: "/s/fs.sock".into(),
            request_queues: 1,
            queue_size: 512,
        }],
        disks: vec![
            DiskConfig {
                path: "/d/a.img".into(),
                read_only: true,
            },
            DiskConfig {
                path: "/d/b.img".into(),
                read_only: false,
            },
        ],
        net: vec!["tap=tap0,mac=02:00:00:00:00:01,mtu=1400".parse().unwrap()],
        no_seccomp: true,
        snapshot_to: Some("/t/snap".into()),
        restore_from: None,
    };
    assert_eq!(c.validate(), Ok(()));
    let s = serde_json::to_string_pretty(&c).unwrap();
    assert_eq!(serde_json::from_str::<VmConfig>(&s).unwrap(), c);
}

#[test]
fn missing_fields_take_the_flags_defaults() {
    let c: VmConfig = serde_json::from_str(r#"{"kernel":"/k"}"#).unwrap();
    assert_eq!(c, VmConfig::new("/k"));
    assert_eq!(c.cmdline, DEFAULT_CMDLINE);
    assert_eq!((c.mem_mib, c.vcpus), (DEFAULT_MEM_MIB, DEFAULT_VCPUS));
    assert_eq!(c.console, ConsoleConfig::Stdout);
    let e = serde_json::from_str::<VmConfig>(r#"{"initrd":"/i"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing field `kernel`"), "{e}");
}

#[test]
fn unknown_fields_are_refused() {
    for (json, field) in [
        (r#"{"kernel":"/k","mem":256}"#, "mem"),
        (
            r#"{"kernel":"/k","vsock":{"uds_path":"/v","cid":3}}"#,
            "cid",
        ),
        (r#"{"kernel":"/k","disks":[{"path":"/d","ro":true}]}"#, "ro"),
    ] {
        let e = serde_json::from_str::<VmConfig>(json)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("unknown field `{field}`")), "{e}");
    }
}

#[test]
fn wrong_types_are_refused() {
    for json in [
        r#"{"kernel":"/k","vcpus":300}"#,
        r#"{"kernel":"/k","mem_mib":-1}"#,
        r#"{"kernel":"/k","console":"tty"}"#,
        r#"{"kernel":"/k","fs":{"tag":"t","socket":"/s"}}"#,
    ] {
        assert!(serde_json::from_str::<VmConfig>(json).is_err(), "{json}");
    }
    // Parses, but validation still applies.
    let c: VmConfig = serde_json::from_str(r#"{"kernel":"/k","vcpus":0}"#).unwrap();
    assert_eq!(c.validate(), Err(ConfigError::NoVcpus));
    let c: VmConfig = serde_json::from_str(r#"{"kernel":"","console":{"file":"/c"}}"#).unwrap();
    assert_eq!(c.console, ConsoleConfig::File(PathBuf::from("/c")));
    assert_eq!(c.validate(), Err(ConfigError::NoKernel));
}

#[test]
fn console_limits_are_validated_with_the_config() {
    let c: VmConfig =
        serde_json::from_str(r#"{"kernel":"/k","console_limits":{"burst_bytes":1}}"#).unwrap();
    assert_eq!(
        c.validate(),
        Err(ConfigError::ConsoleLimits(
            ConsoleLimitsError::BurstTooSmall(1)
        ))
    );
    let c: VmConfig = serde_json::from_str(r#"{"kernel":"/k"}"#).unwrap();
    assert_eq!(c.console_limits, ConsoleLimits::default());
}

#[test]
fn a_template_is_booted_not_restored() {
    let mut c = VmConfig::new("/k");
    c.snapshot_to = Some("/t/a".into());
    assert_eq!(c.validate(), Ok(()));
    c.restore_from = Some("/t/b".into());
    assert_eq!(c.validate(), Err(ConfigError::SnapshotAndRestore));
    c.snapshot_to = None;
    assert_eq!(c.validate(), Ok(()));
}
