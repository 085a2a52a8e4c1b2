use std::path::PathBuf;

use clap::Parser;

use super::*;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    vm: VmmArgs,
}

fn parse(args: &[&str]) -> Result<VmmArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("sandpod-vmm").chain(args.iter().copied())).map(|c| c.vm)
}

/// A file of its own under the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!("sandpod-cli-{}-{name}", std::process::id()));
        std::fs::write(&p, contents).unwrap();
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every field away from its default, as flags.
const FLAGS: &[&str] = &[
    "--kernel",
    "/g/vmlinux",
    "--initrd",
    "/g/initramfs.cpio",
    "--cmdline",
    "console=ttyS0 quiet",
    "--mem-mib",
    "384",
    "--vcpus",
    "2",
    "--console",
    "file:/s/console.log",
    "--vsock-uds",
    "/s/v",
    "--vsock-cid",
    "7",
    "--fs",
    "tag=sandpod,socket=/s/fs.sock,queue-size=512",
    "--disk",
    "/d/a.img,ro",
    "--disk",
    "/d/b.img",
    "--net",
    "tap=tap0,mac=02:00:00:00:00:07,mtu=1400",
];

#[test]
fn flags_and_file_give_the_same_config() {
    let from_flags = parse(FLAGS).unwrap().vm_config().unwrap();
    assert_eq!(from_flags.validate(), Ok(()));
    assert_eq!(from_flags.mem_mib, 384);
    assert_eq!(from_flags.vsock.as_ref().unwrap().guest_cid, 7);
    assert_eq!(from_flags.fs[0].queue_size, 512);
    assert_eq!(from_flags.disks.len(), 2);
    assert_eq!(from_flags.net[0].mtu, Some(1400));
    let file = TempFile::new(
        "all.json",
        &serde_json::to_string_pretty(&from_flags).unwrap(),
    );
    let args = parse(&["--config", file.0.to_str().unwrap()]).unwrap();
    assert_eq!(args.vm_config().unwrap(), from_flags);
}

#[test]
fn defaults_are_the_same_both_ways() {
    let from_flags = parse(&["--kernel", "/k"]).unwrap().vm_config().unwrap();
    assert_eq!(from_flags, VmConfig::new("/k"));
    let file = TempFile::new("min.json", r#"{"kernel":"/k"}"#);
    let from_file = parse(&["--config", file.0.to_str().unwrap()])
        .unwrap()
        .vm_config()
        .unwrap();
    assert_eq!(from_file, from_flags);
}

#[test]
fn config_excludes_the_flags() {
    for flag in [
        &["--kernel", "/k"][..],
        &["--initrd", "/i"],
        &["--cmdline", "x"],
        &["--mem-mib", "256"],
        &["--vcpus", "2"],
        &["--console", "none"],
        &["--vsock-uds", "/v"],
        &["--fs", "tag=t,socket=/s"],
        &["--disk", "/d.img"],
        &["--net", "tap=tap0"],
    ] {
        let mut args = vec!["--config", "/vm.json"];
        args.extend_from_slice(flag);
        let e = parse(&args).unwrap_err();
        assert_eq!(
            e.kind(),
            clap::error::ErrorKind::ArgumentConflict,
            "{args:?}"
        );
        assert!(e.to_string().contains("cannot be used with"), "{e}");
    }
    let e = parse(&[]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    assert!(e.to_string().contains("--kernel"), "{e}");
}

#[test]
fn bad_values_are_errors() {
    let e = parse(&["--kernel", "/k", "--disk", "/d,rw"]).unwrap_err();
    assert!(e.to_string().contains("invalid disk option"), "{e}");
    let e = parse(&["--kernel", "/k", "--fs", "tag=t"]).unwrap_err();
    assert!(e.to_string().contains("socket=PATH is missing"), "{e}");
    let e = parse(&["--kernel", "/k", "--net", "tap=t,mac=ff:ff:ff:ff:ff:ff"]).unwrap_err();
    assert!(e.to_string().contains("not a unicast address"), "{e}");
    let e = parse(&["--vsock-cid", "4", "--kernel", "/k"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    let e = parse(&["--kernel", "/k", "--vcpus", "300"])
        .unwrap()
        .vm_config()
        .unwrap_err();
    assert!(matches!(
        e,
        CliError::Config(ConfigError::TooManyVcpus(300))
    ));
}

#[test]
fn bad_files_are_clear_errors() {
    let e = parse(&["--config", "/nonexistent/vm.json"])
        .unwrap()
        .vm_config()
        .unwrap_err();
    assert!(matches!(e, CliError::Read { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/vm.json"), "{e}");

    let file = TempFile::new("typo.json", "{\"kernel\":\"/k\",\n\"mem\":256}");
    let e = parse(&["--config", file.0.to_str().unwrap()])
        .unwrap()
        .vm_config()
        .unwrap_err();
    // The parser's message is the cause (the error's source), printed by the chain.
    let e = sandpod_vmconfig::conventions::ErrorChain(&e).to_string();
    assert!(e.contains("invalid VM configuration"), "{e}");
    assert!(e.contains("unknown field `mem`"), "{e}");
    assert!(e.contains("line 2"), "{e}");

    let file = TempFile::new("flags.json", "--kernel /k");
    let e = parse(&["--config", file.0.to_str().unwrap()])
        .unwrap()
        .vm_config()
        .unwrap_err();
    assert!(matches!(e, CliError::Parse { .. }), "{e}");
}

#[test]
fn seccomp_flags() {
    let c = parse(&["--kernel", "/k"]).unwrap();
    assert_eq!(c.debug_seccomp_violation, None);
    assert!(!c.vm_config().unwrap().no_seccomp);
    let c = parse(&["--kernel", "/k", "--no-seccomp"]).unwrap();
    assert!(c.vm_config().unwrap().no_seccomp);
    // With a file: the flag or the field.
    let f = TempFile::new("seccomp.json", r#"{"kernel": "/k"}"#);
    let path = f.0.to_str().unwrap();
    let c = parse(&["--config", path]).unwrap();
    assert!(!c.vm_config().unwrap().no_seccomp);
    let c = parse(&["--config", path, "--no-seccomp"]).unwrap();
    assert!(c.vm_config().unwrap().no_seccomp);
    let f = TempFile::new(
        "seccomp-off.json",
        r#"{"kernel": "/k", "no_seccomp": true}"#,
    );
    let c = parse(&["--config", f.0.to_str().unwrap()]).unwrap();
    assert!(c.vm_config().unwrap().no_seccomp);
    // The debug trigger, hidden from --help.
    for kind in ThreadKind::ALL {
        let c = parse(&[
            "--kernel",
            "/k",
            "--debug-seccomp-violation",
            &kind.to_string(),
        ]);
        assert_eq!(c.unwrap().debug_seccomp_violation, Some(kind));
    }
    assert!(parse(&["--kernel", "/k", "--debug-seccomp-violation", "api"]).is_err());
    let help = Cli::try_parse_from(["sandpod-vmm", "--help"])
        .unwrap_err()
        .to_string();
    assert!(help.contains("--no-seccomp") && !help.contains("debug-seccomp-violation"));
}
