#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs (seeds/<target>/): well-formed packets and queues, so a
short run starts deep in the code instead of rediscovering the layouts. Run from vmm/fuzz."""
import os
import struct

HOST, GUEST = 2, 3
REQUEST, RESPONSE, RST, SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST = range(1, 8)
LIVE_PORT = 1025  # the fuzz targets' host listener (src/lib.rs)


def hdr(op, dst_port=LIVE_PORT, src_port=50000, length=0, flags=0, src=GUEST, dst=HOST):
    return struct.pack("<QQIIIHHIII", src, dst, src_port, dst_port, length, 1, op, flags,
                       64 * 1024, 0)


def pkt(op, payload=b"", **kw):
    return hdr(op, length=len(payload), **kw) + payload


def write(target, name, data):
    os.makedirs(f"seeds/{target}", exist_ok=True)
    with open(f"seeds/{target}/{name}", "wb") as f:
        f.write(data)


# vsock_header: [cut count % 4, cuts..., packet]
write("vsock_header", "request", b"\x00" + pkt(REQUEST))
write("vsock_header", "rw-split", b"\x02\x30\xa0" + pkt(RW, b"hello, host"))
write("vsock_header", "shutdown", b"\x01\x10" + pkt(SHUTDOWN, flags=3))
write("vsock_header", "credit-request", b"\x00" + pkt(CREDIT_REQUEST))
write("vsock_header", "bad-len", b"\x00" + hdr(RW, length=100) + b"short")
write("vsock_header", "to-wrong-cid", b"\x00" + pkt(REQUEST, dst=7))


def desc(addr, length, flags=0, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def queues(tx_packets, event_idx=False):
    """[tx exp, rx exp, rounds | EVENT_IDX] + region 0: tx queue at 0 (desc), 0x1000 (avail), 0x1400 (used);
    rx queue at 0x2000/0x3000/0x3400; tx packets from 0x4000; rx buffers at 0x5000.."""
    mem = bytearray(0x4000 + 0x100 * len(tx_packets))
    heads = []
    for i, p in enumerate(tx_packets):
        at = 0x4000 + 0x100 * i
        mem[at:at + len(p)] = p
        # header and payload in two descriptors
        mem[32 * i:32 * i + 32] = desc(at, 44, 1, 2 * i + 1) + desc(at + 44, len(p) - 44)
        heads.append(2 * i)
    mem[0x1000:0x1004] = struct.pack("<HH", 0, len(heads))
    for i, h in enumerate(heads):
        mem[0x1004 + 2 * i:0x1006 + 2 * i] = struct.pack("<H", h)
    for i in range(8):
        mem[0x2000 + 16 * i:0x2010 + 16 * i] = desc(0x5000 + 0x200 * i, 0x200, 2)
    mem[0x3000:0x3004] = struct.pack("<HH", 0, 8)
    for i in range(8):
        mem[0x3004 + 2 * i:0x3006 + 2 * i] = struct.pack("<H", i)
    return bytes([5, 3, 3 | (0x80 if event_idx else 0)]) + bytes(mem)


write("vsock_queues", "connect-send", queues([pkt(REQUEST), pkt(RW, b"data for the host")]))
write("vsock_queues", "unknown-port", queues([pkt(RW, b"x", dst_port=9), pkt(CREDIT_REQUEST)]))
write("vsock_queues", "connect-close", queues([pkt(REQUEST), pkt(SHUTDOWN, flags=3), pkt(RST)]))
write("vsock_queues", "event-idx", queues([pkt(REQUEST), pkt(RW, b"x" * 100)], event_idx=True))


# virtio_mmio: [device (bit 0 vsock), op count, ops (kind, offset u16, value 5 bytes), memory]
def op(kind, offset, value=0, width_index=0):
    return struct.pack("<BH", kind | (width_index << 1), offset) + struct.pack("<Q", value)[:5]


def bring_up(queues_count, size=8):
    """Linux's virtio_mmio probe and virtqueue setup, DRIVER_OK, a notification, an interrupt
    ack, a config read, then a reset."""
    ops = [op(0, 0x0), op(0, 0x4), op(0, 0x8), op(1, 0x70, 0), op(1, 0x70, 1), op(1, 0x70, 3),
           op(1, 0x14, 1), op(0, 0x10), op(1, 0x14, 0), op(0, 0x10),
           op(1, 0x24, 1), op(1, 0x20, 1), op(1, 0x24, 0), op(1, 0x20, 0), op(1, 0x70, 0xb),
           op(0, 0x70)]
    for q in range(queues_count):
        base = 0x1000 * 2 * q
        ops += [op(1, 0x30, q), op(0, 0x44), op(0, 0x34), op(1, 0x38, size),
                op(1, 0x80, base), op(1, 0x84, 0), op(1, 0x90, base + 0x800), op(1, 0x94, 0),
                op(1, 0xa0, base + 0x1000), op(1, 0xa4, 0), op(1, 0x44, 1)]
    ops += [op(1, 0x70, 0xf), op(0, 0x70), op(1, 0x50, 0), op(0, 0x60), op(1, 0x64, 1),
            op(0, 0x100, 0, 6), op(0, 0x102, 0, 5), op(0, 0xfc), op(1, 0x70, 0), op(0, 0x70)]
    return ops


def mmio(device, ops, mem=b""):
    assert len(ops) < 256
    return bytes([device, len(ops)]) + b"".join(ops) + mem


write("virtio_mmio", "blk-bring-up", mmio(0, bring_up(1)))
write("virtio_mmio", "vsock-bring-up", mmio(1, bring_up(3)))
write("virtio_mmio", "blk-bad-widths", mmio(0, [op(0, 0x70, 0, 4), op(1, 0x70, 7, 5), op(0, 0x2, 0),
                                                 op(1, 0x100, 1, 6), op(1, 0x70, 4)]))


# blk_request: [flags, memory]: descriptors at 0, available ring at 0x1000 (idx set by the
# target), used ring at 0x1400; buffers from 0x2000.
def blk(chains, size_exp=3, indirect=False):
    mem = bytearray(0x4000)
    index = 0
    heads = []
    for chain in chains:
        heads.append(index)
        for j, (addr, length, flags) in enumerate(chain):
            last = j + 1 == len(chain)
            mem[16 * index:16 * index + 16] = desc(addr, length, flags | (0 if last else 1),
                                                  0 if last else index + 1)
            index += 1
    for i, h in enumerate(heads):
        mem[0x1004 + 2 * i:0x1006 + 2 * i] = struct.pack("<H", h)
    flags = size_exp | (0x10 if indirect else 0) | ((len(chains) - 1) << 5)
    return bytes([flags]) + bytes(mem)


def blk_hdr(at, type_, sector):
    return (at, struct.pack("<IIQ", type_, 0, sector))


def with_headers(seed, headers):
    mem = bytearray(seed)
    for at, b in headers:
        mem[1 + at:1 + at + len(b)] = b
    return bytes(mem)


write("blk_request", "read-write-flush-id", with_headers(
    blk([[(0x2000, 16, 0), (0x3000, 512, 2), (0x2f00, 1, 2)],
         [(0x2100, 16, 0), (0x3200, 1024, 0), (0x2f01, 1, 2)],
         [(0x2200, 16, 0), (0x2f02, 1, 2)],
         [(0x2300, 16, 0), (0x3800, 20, 2), (0x2f03, 1, 2)]]),
    [blk_hdr(0x2000, 0, 2), blk_hdr(0x2100, 1, 60), blk_hdr(0x2200, 4, 0),
     blk_hdr(0x2300, 8, 0)]))
write("blk_request", "out-of-range", with_headers(
    blk([[(0x2000, 16, 0), (0x3000, 1024, 2), (0x2f00, 1, 2)]]), [blk_hdr(0x2000, 0, 63)]))
# An indirect table at 0x1800 (allowed, then not).
ind = bytearray(blk([[(0x1800, 48, 4)]], indirect=True))
ind[1 + 0x1800:1 + 0x1830] = desc(0x2000, 16, 1, 1) + desc(0x3000, 512, 3, 2) + desc(0x2f00, 1, 2)
write("blk_request", "indirect", with_headers(bytes(ind), [blk_hdr(0x2000, 0, 1)]))
ind[0] &= ~0x10
write("blk_request", "indirect-not-negotiated", with_headers(bytes(ind), [blk_hdr(0x2000, 0, 1)]))


# net_queues: [tx exp, rx exp, flags (rounds - 1 | 0x40 offloads | 0x80 EVENT_IDX), frame
# count, frames (le16 length + bytes), memory]: tx queue at 0/0x1000/0x1400, rx queue at
# 0x2000/0x3000/0x3400 (like vsock_queues); tx frames from 0x4000, rx buffers from 0x5000.
def net_hdr(flags=0, gso=0, gso_size=0, csum_start=0, csum_offset=0):
    return struct.pack("<BBHHHHH", flags, gso, 0, gso_size, csum_start, csum_offset, 0)


def eth(payload=b"", ethertype=0x0800):
    return b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + \
        struct.pack(">H", ethertype) + payload


def net(tx_frames, tap_frames, rx_buffers=8, rx_len=0x200, flags=3):
    mem = bytearray(0x5000 + rx_buffers * rx_len)
    heads = []
    for i, f in enumerate(tx_frames):
        at = 0x4000 + 0x100 * i
        mem[at:at + len(f)] = f
        # header and frame in two descriptors
        mem[32 * i:32 * i + 32] = desc(at, 12, 1, 2 * i + 1) + desc(at + 12, len(f) - 12)
        heads.append(2 * i)
    mem[0x1000:0x1004] = struct.pack("<HH", 0, len(heads))
    for i, h in enumerate(heads):
        mem[0x1004 + 2 * i:0x1006 + 2 * i] = struct.pack("<H", h)
    for i in range(rx_buffers):
        mem[0x2000 + 16 * i:0x2010 + 16 * i] = desc(0x5000 + rx_len * i, rx_len, 2)
    mem[0x3000:0x3004] = struct.pack("<HH", 0, rx_buffers)
    for i in range(rx_buffers):
        mem[0x3004 + 2 * i:0x3006 + 2 * i] = struct.pack("<H", i)
    taps = b"".join(struct.pack("<H", len(f)) + f for f in tap_frames)
    return bytes([5, 4, flags, len(tap_frames)]) + taps + bytes(mem)


ping = eth(b"\x45" + b"\x00" * 19 + b"\x08\x00" + b"\x00" * 30)
write("net_queues", "both-ways", net([net_hdr() + ping, net_hdr() + eth(b"x" * 100)],
                                     [net_hdr() + ping, net_hdr() + eth(b"y" * 300)]))
write("net_queues", "offloads", net([net_hdr(1, 1, 1448, 34, 16) + ping,
                                     net_hdr(1, 0, 0, 34, 16) + ping],
                                    [net_hdr(1, 0, 0, 34, 16) + ping], flags=0x43))
write("net_queues", "no-rx-buffers", net([net_hdr() + ping], [net_hdr() + ping] * 3,
                                         rx_buffers=0, flags=0x83))
write("net_queues", "rx-too-small", net([], [net_hdr() + eth(b"z" * 600)] * 2, rx_len=0x100))
