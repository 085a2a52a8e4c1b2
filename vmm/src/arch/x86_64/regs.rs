//! Initial register state for a 64-bit Linux boot: general registers, special registers
//! (long mode with the boot GDT and page tables), FPU and local APIC LINT pins.

use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_regs, kvm_sregs};

use super::gdt::{boot_gdt, segment_from_gdt, BOOT_GDT_LIMIT, BOOT_IDT_LIMIT};
use super::layout::{BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER};

/// CR0.PE: protected mode.
pub const X86_CR0_PE: u64 = 0x1;
/// CR0.ET: extension type (always 1 on modern CPUs).
pub const X86_CR0_ET: u64 = 0x10;
/// CR0.PG: paging.
pub const X86_CR0_PG: u64 = 0x8000_0000;
/// CR4.PAE.
pub const X86_CR4_PAE: u64 = 0x20;
/// EFER.LME.
pub const EFER_LME: u64 = 0x100;
/// EFER.LMA.
pub const EFER_LMA: u64 = 0x400;

/// Local APIC LVT0 register offset.
pub const APIC_LVT0: usize = 0x350;
/// Local APIC LVT1 register offset.
pub const APIC_LVT1: usize = 0x360;
/// Delivery mode NMI.
pub const APIC_MODE_NMI: u32 = 0x4;
/// Delivery mode ExtINT.
pub const APIC_MODE_EXTINT: u32 = 0x7;

/// General registers of the boot vCPU: entry point, stack, and `rsi` pointing at the zero
/// page as the 64-bit boot protocol requires.
pub fn boot_regs(entry: u64, boot_params: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: boot_params,
        ..Default::default()
    }
}

/// Turns `sregs` (as read from KVM) into 64-bit long mode with flat segments from the boot GDT
/// and the page tables at `cr3`.
pub fn setup_long_mode_sregs(sregs: &mut kvm_sregs, cr3: u64) {
    let gdt = boot_gdt();
    let code = segment_from_gdt(gdt[1], 1);
    let data = segment_from_gdt(gdt[2], 2);
    let tss = segment_from_gdt(gdt[3], 3);

    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = BOOT_GDT_LIMIT;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = BOOT_IDT_LIMIT;

    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;

    sregs.cr3 = cr3;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
}

/// FPU state: default control word and MXCSR.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

fn get_apic_reg(lapic: &kvm_lapic_state, offset: usize) -> u32 {
    let b = &lapic.regs[offset..offset + 4];
    // The registers are C chars: each byte as it is.
    u32::from_le_bytes(std::array::from_fn(|i| b[i].to_ne_bytes()[0]))
}

fn set_apic_reg(lapic: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().iter().enumerate() {
        lapic.regs[offset + i] = *byte as _;
    }
}

fn with_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

/// Configures LINT0 as ExtINT (the 8259 PIC) and LINT1 as NMI, as a BIOS would.
pub fn set_lint(lapic: &mut kvm_lapic_state) {
    let lvt0 = get_apic_reg(lapic, APIC_LVT0);
    set_apic_reg(lapic, APIC_LVT0, with_delivery_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = get_apic_reg(lapic, APIC_LVT1);
    set_apic_reg(lapic, APIC_LVT1, with_delivery_mode(lvt1, APIC_MODE_NMI));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regs() {
        let r = boot_regs(0x100_0000, 0x7000);
        assert_eq!(r.rip, 0x100_0000);
        assert_eq!(r.rsi, 0x7000);
        assert_eq!((r.rsp, r.rbp, r.rflags), (0x8ff0, 0x8ff0, 2));
    }

    #[test]
    fn sregs_long_mode() {
        let mut s = kvm_sregs {
            cr0: 0x6000_0010,
            ..Default::default()
        };
        setup_long_mode_sregs(&mut s, 0x9000);
        assert_eq!(s.cr3, 0x9000);
        assert_eq!(s.cr0, 0x8000_0011);
        assert_eq!(s.cr4 & X86_CR4_PAE, X86_CR4_PAE);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!((s.gdt.base, s.gdt.limit), (0x500, 31));
        assert_eq!((s.idt.base, s.idt.limit), (0x520, 7));
        assert_eq!((s.cs.selector, s.cs.l), (8, 1));
        assert_eq!((s.ss.selector, s.ds.selector, s.tr.selector), (16, 16, 24));
    }

    #[test]
    fn fpu() {
        let f = boot_fpu();
        assert_eq!((f.fcw, f.mxcsr), (0x37f, 0x1f80));
    }

    #[test]
    fn lint_pins() {
        let mut l = kvm_lapic_state::default();
        set_apic_reg(&mut l, APIC_LVT0, 0x0001_0700);
        set_apic_reg(&mut l, APIC_LVT1, 0x0001_0000);
        set_lint(&mut l);
        assert_eq!(get_apic_reg(&l, APIC_LVT0), 0x0001_0700);
        assert_eq!(get_apic_reg(&l, APIC_LVT1), 0x0001_0400);
        set_apic_reg(&mut l, APIC_LVT0, 0);
        set_lint(&mut l);
        assert_eq!(get_apic_reg(&l, APIC_LVT0), 0x700);
    }
}
