#!/usr/bin/env python3
"""Writes the seed inputs of fuzz_ring (tests/fuzz/fuzz_ring.c) into corpus/ring/: proper
accesses of each kind through the ring, and the ways a page can be wrong (an op the ring does
not carry, sizes it cannot hold, a sequence number that skips, the worker's own line scribbled).
Run from anywhere: python3 tests/fuzz/make_ring_corpus.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "ring")
CFG_READ, CFG_WRITE, REGION_READ, REGION_WRITE, HELLO = 5, 6, 7, 8, 1


def rec(cmd, off, data=b""):
    return struct.pack("<BHB", cmd, off, len(data)) + data


def slot(op, index, size, offset, data=b"\0" * 8):
    # struct vb_ring_vmm from `op` on (offset 12): op, index, size, offset, data
    return struct.pack("<IIIQ", op, index, size, offset) + data[:8].ljust(8, b"\0")


def access(op, index, size, offset, data=b""):
    return rec(1, 12, slot(op, index, size, offset, data))


seeds = {
    "cfg_read_ids": b"\0" + access(CFG_READ, 0, 4, 0) + access(CFG_READ, 0, 2, 2),
    "cfg_write_command": b"\0" + access(CFG_WRITE, 0, 2, 4, b"\x06\x00")
    + access(CFG_READ, 0, 2, 4),
    "cfg_msi_enable": b"\0" + access(CFG_WRITE, 0, 2, 0x42, b"\x01\x00"),
    "bar_rw_each_size": b"\0" + b"".join(
        access(REGION_WRITE, 0, n, 0x80, b"\x11\x22\x33\x44\x55\x66\x77\x88")
        + access(REGION_READ, 0, n, 0x80) for n in (1, 2, 4, 8)),
    "e1000e_msix_table": b"\1" + access(REGION_WRITE, 3, 4, 0xc, b"\x00\x00\x00\x00")
    + access(REGION_READ, 3, 4, 0),
    "nvme_bar": b"\2" + access(REGION_READ, 0, 8, 0),
    "bad_op_and_sizes": b"\0" + access(HELLO, 0, 4, 0) + access(0xFFFFFFFF, 0, 4, 0)
    + access(CFG_READ, 0, 0, 0) + access(CFG_READ, 0, 9, 0)
    + access(REGION_READ, 0, 0xFFFFFFFF, 0) + access(CFG_READ, 0, 4, 1 << 32),
    "bad_region": b"\0" + access(REGION_READ, 77, 4, 0) + access(REGION_WRITE, 1, 4, 0)
    + access(REGION_READ, 0, 8, 0xFFFFFFFFFFFFFFFC),
    "seq_skips": b"\0" + rec(0, 12, slot(CFG_READ, 0, 4, 0)) + rec(0, 0, b"\xff\x00\x00\x70")
    + rec(2, 0) + access(CFG_READ, 0, 4, 0),
    "worker_line_scribbled": b"\0" + rec(0, 64, b"\xaa" * 64) + access(CFG_READ, 0, 4, 0)
    + rec(0, 0, b"\x55" * 255) + rec(2, 0) + rec(3, 0),
    "doorbell_flood": b"\0" + rec(2, 0) * 40 + access(CFG_READ, 0, 4, 0),
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, "seed_" + name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds in {OUT}")
