//! The device program: run by a small eBPF interpreter against `DeviceRules::allows` on many
//! accesses, then loaded by the running kernel's verifier and, in a cgroup of its own, enforced.
use super::*;
use crate::container::device_rules::{Exception, ACC_MKNOD, ACC_READ, ACC_WRITE};
use crate::container::testutil::in_child;
use oci_spec::runtime::LinuxDeviceCgroup;

/// Runs `prog` on a bpf_cgroup_dev_ctx as the kernel would (the instructions `program` uses;
/// anything else panics). Registers are 64-bit, 32-bit ALU results are zero-extended, jump
/// immediates are sign-extended.
fn run(prog: &[Insn], access_type: u32, major: u32, minor: u32) -> u64 {
    let ctx = [access_type, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let i = prog.get(pc).expect("ran off the end of the program");
        let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
        let k = i.imm as i64 as u64;
        pc += 1;
        let jump = |cond: bool, pc: &mut usize| {
            if cond {
                *pc = (*pc as isize + isize::from(i.off)) as usize;
            }
        };
        match i.code {
            LDX_MEM_W => {
                assert_eq!(src, 1, "loads from the context only");
                r[dst] = u64::from(ctx[usize::try_from(i.off / 4).unwrap()]);
            }
            ALU32_AND_K => r[dst] = u64::from(r[dst] as u32 & i.imm as u32),
            ALU32_RSH_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
            ALU32_MOV_K => r[dst] = u64::from(i.imm as u32),
            ALU32_MOV_X => r[dst] = u64::from(r[src] as u32),
            JMP_JEQ_K => jump(r[dst] == k, &mut pc),
            JMP_JNE_K => jump(r[dst] != k, &mut pc),
            JMP_JNE_X => jump(r[dst] != r[src], &mut pc),
            JMP_EXIT => return r[0],
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    panic!("no exit")
}

fn spec_rules(json: &str) -> DeviceRules {
    let list: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
    DeviceRules::from_spec(&list).unwrap()
}

/// Every combination of type, access and a set of devices: the program answers like the rules.
fn agrees(rules: &DeviceRules) {
    let prog = program(rules);
    let devices = [
        (1, 3),
        (1, 1),
        (1, 7),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
        (8, 0),
        (8, 17),
        (10, 200),
        (10, 229),
        (136, 0),
        (136, 77),
        (254, 0),
        (0x000f_ffff, 0x000f_ffff),
    ];
    let accesses = [
        ACC_MKNOD,
        ACC_READ,
        ACC_WRITE,
        ACC_READ | ACC_WRITE,
        ACC_MKNOD | ACC_READ | ACC_WRITE,
    ];
    for typ in [DevType::Char, DevType::Block] {
        for &(maj, min) in &devices {
            for &acc in &accesses {
                let ctx = (acc << 16) | bpf_type(typ) as u32;
                let got = run(&prog, ctx, maj, min) == 1;
                assert_eq!(
                    got,
                    rules.allows(typ, maj, min, acc),
                    "{typ:?} {maj}:{min} access {acc:#b} with {rules:?}"
                );
            }
        }
    }
}

#[test]
fn the_program_answers_like_the_rules() {
    agrees(&spec_rules(r#"[{"allow": false, "access": "rwm"}]"#));
    agrees(&spec_rules("[]"));
    agrees(&spec_rules(
        r#"[{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"},
            {"allow": true, "type": "b", "major": 8, "access": "r"}]"#,
    ));
    agrees(&spec_rules(
        r#"[{"allow": true, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 1, "access": "w"},
            {"allow": false, "type": "b", "access": "rwm"}]"#,
    ));
    agrees(&spec_rules(r#"[{"allow": true, "type": "a"}]"#));
    // A major beyond what an immediate holds matches nothing.
    agrees(&DeviceRules {
        default_allow: false,
        exceptions: vec![Exception {
            typ: DevType::Char,
            major: Some(u32::MAX),
            minor: None,
            access: ACC_ALL,
        }],
    });
}

#[test]
fn jumps_stay_inside_the_program() {
    let rules = spec_rules(r#"[{"allow": false, "access": "rwm"}]"#);
    let prog = program(&rules);
    for (i, ins) in prog.iter().enumerate() {
        if matches!(ins.code, JMP_JEQ_K | JMP_JNE_K | JMP_JNE_X) {
            let target = i as isize + 1 + isize::from(ins.off);
            assert!(
                target > i as isize && (target as usize) < prog.len(),
                "insn {i}"
            );
        }
    }
    assert_eq!(prog.last().unwrap().code, JMP_EXIT);
    // Deny by default: the last word is "refuse".
    assert_eq!(prog[prog.len() - 2], insn(ALU32_MOV_K, 0, 0, 0, 0));
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The running kernel's verifier takes the programs. Needs root (CAP_BPF): ignored unless run
/// with `--include-ignored` (`make unit` does as root), and then fails without it.
#[test]
#[ignore = "needs root: run by `make unit` as root (--include-ignored), as in CI"]
fn the_kernel_verifier_accepts_the_programs() {
    assert!(is_root(), "needs root (CAP_BPF)");
    for json in [
        r#"[{"allow": false, "access": "rwm"}]"#,
        r#"[{"allow": true, "access": "rwm"}, {"allow": false, "type": "b", "access": "w"}]"#,
    ] {
        load(&program(&spec_rules(json))).unwrap_or_else(|e| panic!("{json}: {e:#}"));
    }
}

/// The cgroup2 mount of this machine, from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        post.starts_with("cgroup2 ")
            .then(|| pre.split(' ').nth(4).map(Into::into))
            .flatten()
    })
}

/// Attached to a cgroup of its own, the program lets a process in it open /dev/null and
/// refuses /dev/zero. Needs root and a cgroup2 mount: ignored unless run with
/// `--include-ignored` (`make unit` does as root), and then fails without them.
#[test]
#[ignore = "needs root: run by `make unit` as root (--include-ignored), as in CI"]
fn an_attached_program_is_enforced() {
    assert!(is_root(), "needs root");
    let root = cgroup2_mount().expect("needs a cgroup2 mount");
    let cg = root.join(format!("sandpod-devtest-{}", std::process::id()));
    std::fs::create_dir(&cg).unwrap();
    let rules = DeviceRules {
        default_allow: false,
        exceptions: vec![Exception {
            typ: DevType::Char,
            major: Some(1),
            minor: Some(3),
            access: ACC_READ | ACC_WRITE,
        }],
    };
    let attached = attach(&cg, &rules);
    let procs = cg.join("cgroup.procs");
    let result = attached.map_err(|e| format!("{e:#}")).and_then(|()| {
        in_child(move || {
            std::fs::write(&procs, std::process::id().to_string())
                .map_err(|e| format!("joining the cgroup: {e}"))?;
            std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
            match std::fs::File::open("/dev/zero") {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
                other => Err(format!("/dev/zero under the program: {other:?}")),
            }
        })
    });
    let _ = std::fs::remove_dir(&cg);
    assert_eq!(result, Ok(()));
    // Outside the cgroup nothing changed.
    std::fs::File::open("/dev/zero").unwrap();
}
