//! The QEMU command line of the test host: q35, TCG with `-cpu max` (emulated AMD SVM with
//! nested paging), the Debian cloud kernel, the root disk as a throw-away snapshot, the share
//! disk read-only, the serial console on stdout.
use std::path::Path;
use std::process::Command;

use crate::TestHostConfig;

/// Builds the QEMU command for one run with the given share disk.
pub fn command(cfg: &TestHostConfig, share_img: &Path) -> Command {
    let img = &cfg.image_dir;
    let loglevel = if cfg.verbose {
        "loglevel=7"
    } else {
        "quiet loglevel=1"
    };
    let mut cmd = Command::new(&cfg.qemu);
    cmd.args(["-M", "q35", "-accel", "tcg,thread=multi", "-cpu", "max"])
        .args([
            "-smp",
            &cfg.smp.to_string(),
            "-m",
            &format!("{}M", cfg.mem_mib),
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args([
            "-chardev",
            "stdio,id=console,signal=off",
            "-serial",
            "chardev:console",
        ])
        .arg("-kernel")
        .arg(img.join("vmlinuz"))
        .arg("-initrd")
        .arg(img.join("initrd.img"))
        .args([
            "-append",
            &format!("console=ttyS0 reboot=t panic=-1 {loglevel}"),
        ])
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=raw,snapshot=on,cache=unsafe",
            img.join("rootfs.ext4").display()
        ))
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=raw,readonly=on",
            share_img.display()
        ));
    cmd
}
