//! Loading the guest: ELF kernel, initrd, command line and the x86 boot structures.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use linux_loader::loader::{load_cmdline, Cmdline, Elf, KernelLoader};
use vm_memory::{Bytes, GuestAddress};

use crate::arch::x86_64::boot_params::{
    build_boot_params, initrd_address, write_boot_params, InitrdInfo,
};
use crate::arch::x86_64::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START};
use crate::arch::x86_64::{gdt, mptable, paging};
use crate::config::VmConfig;
use crate::error::{Error, Result};
use crate::kvm::memory::GuestMem;
use crate::kvm::vcpu::BootEntry;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// The guest's input files, opened and checked before any KVM work.
pub struct BootFiles {
    kernel: File,
    initrd: Option<(File, u64)>,
}

/// Opens the kernel (checking it is ELF) and the initrd (checking it fits in memory), and
/// checks the command line length.
pub fn open_boot_files(config: &VmConfig) -> Result<BootFiles> {
    let kernel_err = |source| Error::KernelOpen {
        path: config.kernel.clone(),
        source,
    };
    let mut kernel = File::open(&config.kernel).map_err(kernel_err)?;
    if kernel.metadata().map_err(kernel_err)?.is_dir() {
        return Err(kernel_err(std::io::Error::from_raw_os_error(libc::EISDIR)));
    }
    check_elf(&mut kernel, &config.kernel)?;

    let initrd = match &config.initrd {
        None => None,
        Some(path) => {
            let err = |source| Error::InitrdOpen {
                path: path.clone(),
                source,
            };
            let file = File::open(path).map_err(err)?;
            let meta = file.metadata().map_err(err)?;
            if meta.is_dir() {
                return Err(err(std::io::Error::from_raw_os_error(libc::EISDIR)));
            }
            let size = meta.len();
            if size >= config.mem_bytes() {
                return Err(Error::InitrdTooLarge {
                    path: path.clone(),
                    size,
                    mem_mib: config.mem_mib,
                });
            }
            Some((file, size))
        }
    };

    if config.cmdline.len() + 1 > CMDLINE_MAX_SIZE {
        return Err(Error::CmdlineTooLong {
            len: config.cmdline.len(),
            max: CMDLINE_MAX_SIZE - 1,
        });
    }
    Ok(BootFiles { kernel, initrd })
}

fn check_elf(kernel: &mut File, path: &Path) -> Result<()> {
    let mut head = [0u8; 0x206];
    let mut n = 0;
    while n < head.len() {
        match kernel.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Error::KernelOpen {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    if n >= 4 && &head[..4] == ELF_MAGIC {
        return Ok(());
    }
    let hint = if n >= 0x206 && &head[0x202..0x206] == b"HdrS" {
        " (it is a bzImage: pass the uncompressed vmlinux)"
    } else {
        ""
    };
    Err(Error::KernelNotElf {
        path: path.to_path_buf(),
        hint,
    })
}

/// Loads everything into guest memory and returns the boot vCPU's entry state.
pub fn load_guest(config: &VmConfig, files: BootFiles, mem: &GuestMem) -> Result<BootEntry> {
    let BootFiles { mut kernel, initrd } = files;
    let loaded =
        Elf::load(mem, None, &mut kernel, Some(GuestAddress(HIMEM_START))).map_err(|source| {
            Error::KernelLoad {
                path: config.kernel.clone(),
                mem_mib: config.mem_mib,
                source,
            }
        })?;
    let entry = loaded.kernel_load.0;
    tracing::debug!(
        "kernel loaded: entry {entry:#x}, end {:#x}",
        loaded.kernel_end
    );

    let mem_size = config.mem_bytes();
    let initrd_info = match initrd {
        None => None,
        Some((mut file, size)) => {
            let addr = initrd_address(mem_size, loaded.kernel_end, size)?;
            let path = config.initrd.clone().unwrap_or_default();
            mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
                .map_err(|source| Error::InitrdLoad { path, source })?;
            tracing::debug!("initrd at {addr:#x}, {size} bytes");
            Some(InitrdInfo { addr, size })
        }
    };

    let cmdline = Cmdline::try_from(&config.cmdline, CMDLINE_MAX_SIZE)
        .map_err(|e| Error::Cmdline(e.to_string()))?;
    load_cmdline(mem, GuestAddress(CMDLINE_START), &cmdline)
        .map_err(|e| Error::Cmdline(e.to_string()))?;
    let cmdline_size = cmdline
        .as_cstring()
        .map_err(|e| Error::Cmdline(e.to_string()))?
        .as_bytes_with_nul()
        .len();

    let params = build_boot_params(mem_size, cmdline_size, initrd_info)?;
    let zero_page = write_boot_params(mem, &params)?;
    mptable::write_mptable(mem, config.vcpus)?;
    gdt::write_gdt_idt(mem)?;
    let cr3 = paging::write_page_tables(mem)?;
    // Sanity: the zero page must be readable back (catches a layout bug, not guest input).
    let _: u16 = mem
        .read_obj(GuestAddress(zero_page.0 + 0x1fe))
        .map_err(|source| crate::arch::x86_64::BootError::Write {
            what: "zero page",
            source,
        })?;
    Ok(BootEntry {
        entry,
        zero_page: zero_page.0,
        cr3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp(name: &str, content: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("sandpod-loader-{}-{name}", std::process::id()));
        std::fs::File::create(&p)
            .unwrap()
            .write_all(content)
            .unwrap();
        p
    }

    #[test]
    fn missing_kernel() {
        let c = VmConfig::new("/nonexistent/vmlinux");
        let e = open_boot_files(&c).err().unwrap();
        assert!(
            e.to_string()
                .starts_with("cannot read kernel /nonexistent/vmlinux"),
            "{e}"
        );
    }

    #[test]
    fn non_elf_kernel() {
        let p = temp("notelf", b"hello world");
        let e = open_boot_files(&VmConfig::new(&p)).err().unwrap();
        assert!(e.to_string().ends_with("is not an ELF vmlinux"), "{e}");
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let p2 = temp("bz", &bz);
        let e = open_boot_files(&VmConfig::new(&p2)).err().unwrap();
        assert!(e.to_string().contains("bzImage"), "{e}");
        std::fs::remove_file(p).unwrap();
        std::fs::remove_file(p2).unwrap();
    }

    #[test]
    fn initrd_larger_than_memory() {
        let k = temp("elf", b"\x7fELF\x02\x01\x01");
        let i = temp("initrd", &vec![0u8; 9 << 20]);
        let mut c = VmConfig::new(&k);
        c.mem_mib = 8;
        c.initrd = Some(i.clone());
        let e = open_boot_files(&c).err().unwrap();
        assert!(e.to_string().contains("larger than guest memory"), "{e}");
        c.initrd = Some("/nonexistent/initrd".into());
        assert!(open_boot_files(&c).is_err());
        c.initrd = None;
        c.cmdline = "x".repeat(5000);
        assert!(matches!(
            open_boot_files(&c),
            Err(Error::CmdlineTooLong { .. })
        ));
        std::fs::remove_file(k).unwrap();
        std::fs::remove_file(i).unwrap();
    }
}
