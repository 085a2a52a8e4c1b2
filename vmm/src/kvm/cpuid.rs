//! Per-vCPU CPUID, derived from `KVM_GET_SUPPORTED_CPUID`.
//!
//! The topology presented is one socket with one thread per core and `count` cores; APIC id =
//! vCPU index. The edits follow what Firecracker and Cloud Hypervisor do.

use kvm_bindings::{kvm_cpuid_entry2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

/// Topology of one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuTopology {
    /// This vCPU's index (= APIC id).
    pub index: u8,
    /// Total vCPUs.
    pub count: u8,
}

/// Leaf 1 ECX: TSC deadline timer.
pub const ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 1 ECX: running under a hypervisor.
pub const ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: hyper-threading / multi-core package.
pub const EDX_HTT: u32 = 1 << 28;
/// Leaf 6 EAX: APIC timer always running.
pub const EAX_ARAT: u32 = 1 << 2;
/// CLFLUSH line size in 8-byte units (64 bytes).
const CLFLUSH_SIZE: u32 = 8;
/// Leaf 0xb / 0x1f level types.
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// Bits needed to hold `count` distinct ids.
fn id_bits(count: u8) -> u32 {
    if count <= 1 {
        0
    } else {
        u32::from(count - 1).ilog2() + 1
    }
}

/// The extended topology leaf `function` (0xb or 0x1f) for one vCPU: an SMT level (one thread
/// per core), a core level holding all vCPUs, and the terminating invalid level.
pub fn topology_leaf(function: u32, topo: VcpuTopology) -> [kvm_cpuid_entry2; 3] {
    let apic_id = u32::from(topo.index);
    let level = |index: u32, eax: u32, ebx: u32, kind: u32| kvm_cpuid_entry2 {
        function,
        index,
        flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        eax,
        ebx,
        ecx: (kind << 8) | index,
        edx: apic_id,
        ..Default::default()
    };
    [
        level(0, 0, 1, LEVEL_SMT),
        level(
            1,
            id_bits(topo.count),
            u32::from(topo.count.max(1)),
            LEVEL_CORE,
        ),
        level(2, 0, 0, 0),
    ]
}

/// The supported CPUID adjusted for one vCPU. The extended topology leaves (0xb, and 0x1f when
/// the host has it) are rebuilt whole: KVM passes the host's through, which may have fewer
/// levels than the guest's topology needs.
pub fn filter_cpuid(
    supported: &[kvm_cpuid_entry2],
    topo: VcpuTopology,
    tsc_deadline: bool,
) -> Vec<kvm_cpuid_entry2> {
    let max_basic = supported
        .iter()
        .find(|e| e.function == 0)
        .map_or(0, |e| e.eax);
    let has_1f = supported.iter().any(|e| e.function == 0x1f);
    let mut entries: Vec<kvm_cpuid_entry2> = supported
        .iter()
        .filter(|e| e.function != 0xb && e.function != 0x1f)
        .copied()
        .collect();
    if max_basic >= 0xb {
        entries.extend(topology_leaf(0xb, topo));
    }
    if has_1f && max_basic >= 0x1f {
        entries.extend(topology_leaf(0x1f, topo));
    }
    adjust_entries(&mut entries, topo, tsc_deadline);
    entries
}

fn adjust_entries(entries: &mut [kvm_cpuid_entry2], topo: VcpuTopology, tsc_deadline: bool) {
    let apic_id = u32::from(topo.index);
    let count = u32::from(topo.count.max(1));
    let core_bits = id_bits(topo.count);
    for e in entries.iter_mut() {
        match e.function {
            0x1 => {
                // EBX: [31:24] initial APIC id, [23:16] logical processors per package,
                // [15:8] CLFLUSH line size.
                e.ebx = (apic_id << 24) | (count << 16) | (CLFLUSH_SIZE << 8) | (e.ebx & 0xff);
                e.ecx |= ECX_HYPERVISOR;
                if tsc_deadline {
                    e.ecx |= ECX_TSC_DEADLINE;
                }
                if count > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            0x4 => {
                // Deterministic cache parameters: [31:26] cores per package - 1,
                // [25:14] logical processors sharing this cache - 1.
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 { count - 1 } else { 0 };
                e.eax = (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((count - 1) & 0x3f) << 26);
            }
            0x6 => {
                // Thermal and power management: nothing of it is virtualized but ARAT.
                e.eax &= EAX_ARAT;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0x8000_0008 => {
                // AMD: [15:12] APIC id size, [7:0] number of cores - 1.
                e.ecx = (e.ecx & !0xf0ff) | (core_bits << 12) | ((count - 1) & 0xff);
            }
            0x8000_001d => {
                // AMD cache topology: [25:14] logical processors sharing the cache - 1.
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 { count - 1 } else { 0 };
                e.eax = (e.eax & !(0xfff << 14)) | ((sharing & 0xfff) << 14);
            }
            0x8000_001e => {
                // AMD: extended APIC id, compute unit id (1 thread each), node 0.
                e.eax = apic_id;
                e.ebx = apic_id & 0xff;
                e.ecx = 0;
                e.edx = 0;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        function: u32,
        index: u32,
        eax: u32,
        ebx: u32,
        ecx: u32,
        edx: u32,
    ) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    fn sample() -> Vec<kvm_cpuid_entry2> {
        vec![
            entry(0x0, 0, 0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65),
            entry(0x1, 0, 0x00a0_0f11, 0x0001_0800, 0x7ed8_320b, 0x178b_fbff),
            entry(0x4, 0, 0x0000_0121, 0, 0, 0),
            entry(0x4, 3, 0x0000_0163, 0, 0, 0),
            entry(0x6, 0, 0x0000_0077, 0x2, 0x9, 0x1),
            entry(0xb, 0, 0x1, 0x2, 0x100, 0xff),
            entry(0xb, 1, 0x4, 0x10, 0x201, 0xff),
            entry(0xb, 2, 0x0, 0x0, 0x2, 0xff),
            entry(0x4000_0000, 0, 0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d),
            entry(0x8000_0008, 0, 0x3030, 0, 0x700f, 0),
            entry(0x8000_001e, 0, 7, 0x105, 0x300, 0),
        ]
    }

    fn find(v: &[kvm_cpuid_entry2], f: u32, i: u32) -> kvm_cpuid_entry2 {
        *v.iter().find(|e| e.function == f && e.index == i).unwrap()
    }

    #[test]
    fn leaf1_apic_id_and_hypervisor() {
        let v = filter_cpuid(&sample(), VcpuTopology { index: 3, count: 4 }, true);
        let l1 = find(&v, 1, 0);
        assert_eq!(l1.ebx >> 24, 3);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_eq!((l1.ebx >> 8) & 0xff, 8);
        assert_ne!(l1.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(l1.ecx & ECX_TSC_DEADLINE, 0);
        assert_ne!(l1.edx & EDX_HTT, 0);

        let v = filter_cpuid(&sample(), VcpuTopology { index: 0, count: 1 }, false);
        let l1 = find(&v, 1, 0);
        assert_eq!(l1.ebx >> 16, 0x0001);
        assert_eq!(l1.edx & EDX_HTT, 0);
    }

    #[test]
    fn extended_topology() {
        // The host reports only one level of leaf 0xb: the guest still gets all three.
        let mut host = sample();
        host.retain(|e| !(e.function == 0xb && e.index > 0));
        let v = filter_cpuid(&host, VcpuTopology { index: 5, count: 6 }, false);
        assert_eq!(v.iter().filter(|e| e.function == 0xb).count(), 3);
        assert!(v.iter().all(|e| e.function != 0x1f));
        let smt = find(&v, 0xb, 0);
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (0, 1, 0x100, 5));
        let core = find(&v, 0xb, 1);
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (3, 6, 0x201, 5));
        let inval = find(&v, 0xb, 2);
        assert_eq!((inval.eax, inval.ebx, inval.ecx, inval.edx), (0, 0, 2, 5));
        assert_eq!(core.flags, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
        // No leaf 0xb at all when the max basic leaf is below it.
        let mut low = sample();
        low[0].eax = 0xa;
        low.retain(|e| e.function != 0xb);
        let v = filter_cpuid(&low, VcpuTopology { index: 0, count: 2 }, false);
        assert!(v.iter().all(|e| e.function != 0xb));
    }

    #[test]
    fn cache_and_amd_leaves() {
        let v = filter_cpuid(&sample(), VcpuTopology { index: 2, count: 4 }, false);
        let l1d = find(&v, 4, 0);
        assert_eq!(l1d.eax & 0x3fff, 0x121);
        assert_eq!((l1d.eax >> 14) & 0xfff, 0);
        assert_eq!(l1d.eax >> 26, 3);
        let l3 = find(&v, 4, 3);
        assert_eq!((l3.eax >> 14) & 0xfff, 3);
        let ext8 = find(&v, 0x8000_0008, 0);
        assert_eq!(ext8.ecx & 0xff, 3);
        assert_eq!((ext8.ecx >> 12) & 0xf, 2);
        let ext1e = find(&v, 0x8000_001e, 0);
        assert_eq!((ext1e.eax, ext1e.ebx, ext1e.ecx), (2, 2, 0));
    }

    #[test]
    fn leaf6_cleared_and_kvm_leaves_kept() {
        let v = filter_cpuid(&sample(), VcpuTopology { index: 0, count: 1 }, false);
        let l6 = find(&v, 6, 0);
        assert_eq!((l6.eax, l6.ebx, l6.ecx, l6.edx), (EAX_ARAT, 0, 0, 0));
        let kvm = find(&v, 0x4000_0000, 0);
        assert_eq!(
            (kvm.ebx, kvm.ecx, kvm.edx),
            (0x4b4d_564b, 0x564b_4d56, 0x4d)
        );
        assert_eq!(find(&v, 0, 0), sample()[0]);
    }

    #[test]
    fn id_bits_values() {
        assert_eq!(id_bits(1), 0);
        assert_eq!(id_bits(2), 1);
        assert_eq!(id_bits(3), 2);
        assert_eq!(id_bits(4), 2);
        assert_eq!(id_bits(5), 3);
        assert_eq!(id_bits(254), 8);
    }
}
