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
