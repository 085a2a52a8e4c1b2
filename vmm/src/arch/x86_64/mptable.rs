//! Intel MultiProcessor Specification 1.4 table: lets Linux find the vCPUs, the IOAPIC and the
//! ISA interrupt routing without ACPI. Layout follows Firecracker's: the floating pointer at the
//! start of the EBDA, the configuration table right after it.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::layout::{addr32, APIC_START, EBDA_START, HIMEM_START, IOAPIC_START};
use super::BootError;

const MPF_SIZE: usize = 16;
const MPC_HEADER_SIZE: usize = 44;
const MPC_CPU_SIZE: usize = 20;
const MPC_ENTRY_SIZE: usize = 8;
const MP_PROCESSOR: u8 = 0;
const MP_BUS: u8 = 1;
const MP_IOAPIC: u8 = 2;
const MP_INTSRC: u8 = 3;
const MP_LINTSRC: u8 = 4;
const MP_IRQ_INT: u8 = 0;
const MP_IRQ_NMI: u8 = 1;
const MP_IRQ_EXTINT: u8 = 3;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
const APIC_VERSION: u8 = 0x14;
const CPU_STEPPING: u32 = 0x600;
const CPU_FEATURE_APIC: u32 = 0x200;
const CPU_FEATURE_FPU: u32 = 0x001;
const MPC_SPEC: u8 = 4;
const MPC_APIC_USABLE: u8 = 1;
const BUS_ID_ISA: u8 = 0;
const IOAPIC_ADDR: u32 = addr32(IOAPIC_START);
const APIC_ADDR: u32 = addr32(APIC_START);
/// IOAPIC input pins described (the KVM IOAPIC has 24).
pub const IOAPIC_PINS: u8 = 24;

/// The IOAPIC's APIC id: right after the vCPUs, as Firecracker does.
pub fn ioapic_id(num_cpus: u8) -> u8 {
    num_cpus.saturating_add(1)
}

/// Size in bytes of the whole MP table for `num_cpus` vCPUs.
pub fn mptable_size(num_cpus: u8) -> usize {
    MPF_SIZE
        + MPC_HEADER_SIZE
        + MPC_CPU_SIZE * usize::from(num_cpus)
        + MPC_ENTRY_SIZE * (1 + 1 + usize::from(IOAPIC_PINS) + 2)
}

/// Two's complement checksum: the byte that makes `bytes` sum to 0 mod 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

/// Builds the MP table to be placed at guest address `base`.
pub fn build_mptable(base: u64, num_cpus: u8) -> Result<Vec<u8>, BootError> {
    let size = mptable_size(num_cpus);
    if num_cpus == 0 || num_cpus > 254 || base + size as u64 > HIMEM_START {
        return Err(BootError::MpTableTooLarge(num_cpus));
    }
    let ioapic = ioapic_id(num_cpus);

    // Configuration table entries.
    let mut entries = Vec::with_capacity(size);
    for cpu in 0..num_cpus {
        entries.push(MP_PROCESSOR);
        entries.push(cpu); // APIC id
        entries.push(APIC_VERSION);
        entries.push(CPU_ENABLED | if cpu == 0 { CPU_BOOTPROCESSOR } else { 0 });
        entries.extend_from_slice(&CPU_STEPPING.to_le_bytes());
        entries.extend_from_slice(&(CPU_FEATURE_APIC | CPU_FEATURE_FPU).to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
    }
    entries.extend_from_slice(&[MP_BUS, BUS_ID_ISA]);
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[MP_IOAPIC, ioapic, APIC_VERSION, MPC_APIC_USABLE]);
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    for irq in 0..IOAPIC_PINS {
        // type, irqtype, irqflag (conforming polarity/trigger), bus, bus irq, dst apic, dst pin
        entries.extend_from_slice(&[MP_INTSRC, MP_IRQ_INT, 0, 0, BUS_ID_ISA, irq, ioapic, irq]);
    }
    // LINT0 of every LAPIC is ExtINT (the PIC), LINT1 is NMI.
    entries.extend_from_slice(&[MP_LINTSRC, MP_IRQ_EXTINT, 0, 0, BUS_ID_ISA, 0, 0, 0]);
    entries.extend_from_slice(&[MP_LINTSRC, MP_IRQ_NMI, 0, 0, BUS_ID_ISA, 0, 0xff, 1]);

    // Configuration table header.
    let table_len = MPC_HEADER_SIZE + entries.len();
    let mut mpc = Vec::with_capacity(table_len);
    mpc.extend_from_slice(b"PCMP");
    let too_large = |_| BootError::MpTableTooLarge(num_cpus);
    mpc.extend_from_slice(&u16::try_from(table_len).map_err(too_large)?.to_le_bytes());
    mpc.push(MPC_SPEC);
    mpc.push(0); // checksum, filled below
    mpc.extend_from_slice(b"SANDPOD ");
    mpc.extend_from_slice(b"000000000000");
    mpc.extend_from_slice(&0u32.to_le_bytes()); // oem table pointer
    mpc.extend_from_slice(&0u16.to_le_bytes()); // oem table size
    mpc.extend_from_slice(&((num_cpus as u16) + 1 + 1 + u16::from(IOAPIC_PINS) + 2).to_le_bytes());
    mpc.extend_from_slice(&APIC_ADDR.to_le_bytes());
    mpc.extend_from_slice(&0u32.to_le_bytes()); // reserved
    debug_assert_eq!(mpc.len(), MPC_HEADER_SIZE);
    mpc.extend_from_slice(&entries);
    mpc[7] = checksum(&mpc);

    // Floating pointer structure.
    let mut mpf = Vec::with_capacity(MPF_SIZE);
    mpf.extend_from_slice(b"_MP_");
    // Below 1 MiB (checked above).
    let table_addr = u32::try_from(base + MPF_SIZE as u64).map_err(too_large)?;
    mpf.extend_from_slice(&table_addr.to_le_bytes());
    mpf.push(1); // length in 16-byte units
    mpf.push(MPC_SPEC);
    mpf.push(0); // checksum
    mpf.extend_from_slice(&[0; 5]); // features: 0 = configuration table present
    mpf[10] = checksum(&mpf);

    mpf.extend_from_slice(&mpc);
    debug_assert_eq!(mpf.len(), size);
    Ok(mpf)
}

/// Writes the MP table at the start of the EBDA.
pub fn write_mptable<M: GuestMemory>(mem: &M, num_cpus: u8) -> Result<(), BootError> {
    let table = build_mptable(EBDA_START, num_cpus)?;
    mem.write_slice(&table, GuestAddress(EBDA_START))
        .map_err(BootError::write("MP table"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
    }

    #[test]
    fn checksums_are_valid() {
        for n in [1u8, 2, 7, 32, 254] {
            let t = build_mptable(EBDA_START, n).unwrap();
            assert_eq!(t.len(), mptable_size(n));
            assert_eq!(&t[0..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0, "mpf checksum for {n} cpus");
            let mpc = &t[16..];
            assert_eq!(&mpc[0..4], b"PCMP");
            let len = u16::from_le_bytes([mpc[4], mpc[5]]) as usize;
            assert_eq!(len, mpc.len());
            assert_eq!(sum(mpc), 0, "mpc checksum for {n} cpus");
        }
    }

    #[test]
    fn pointer_and_cpu_entries() {
        let t = build_mptable(EBDA_START, 4).unwrap();
        let ptr = u32::from_le_bytes(t[4..8].try_into().unwrap());
        assert_eq!(u64::from(ptr), EBDA_START + 16);
        let cpus = &t[16 + 44..];
        for i in 0..4u8 {
            let e = &cpus[20 * i as usize..20 * (i as usize + 1)];
            assert_eq!(e[0], MP_PROCESSOR);
            assert_eq!(e[1], i);
            assert_eq!(e[3] & CPU_ENABLED, CPU_ENABLED);
            assert_eq!(e[3] & CPU_BOOTPROCESSOR != 0, i == 0);
        }
        let rest = &cpus[80..];
        assert_eq!(
            &rest[0..8],
            &[MP_BUS, 0, b'I', b'S', b'A', b' ', b' ', b' ']
        );
        assert_eq!(&rest[8..12], &[MP_IOAPIC, 5, APIC_VERSION, 1]);
        assert_eq!(&rest[12..16], &0xfec0_0000u32.to_le_bytes());
        // IRQ 4 (serial) routed to IOAPIC pin 4.
        let irq4 = &rest[16 + 4 * 8..16 + 5 * 8];
        assert_eq!(irq4, &[MP_INTSRC, MP_IRQ_INT, 0, 0, 0, 4, 5, 4]);
        // Entry count in the header.
        let mpc = &t[16..];
        assert_eq!(u16::from_le_bytes([mpc[34], mpc[35]]), 4 + 2 + 24 + 2);
    }

    #[test]
    fn rejects_impossible_counts() {
        assert!(build_mptable(EBDA_START, 0).is_err());
        assert!(build_mptable(EBDA_START, 255).is_err());
        assert!(build_mptable(HIMEM_START - 100, 1).is_err());
    }

    #[test]
    fn checksum_helper() {
        assert_eq!(checksum(&[]), 0);
        assert_eq!(checksum(&[1, 2, 3]), 250);
        assert_eq!(sum(&[1, 2, 3, checksum(&[1, 2, 3])]), 0);
    }
}
