#!/usr/bin/env python3
"""Seeds for fuzz_vfu (tests/fuzz/corpus/vfu/): one input per command and a few framing cases.
The first byte of each input chooses whether fuzz_vfu sends a VERSION first (even) or not (odd);
the rest is the vfio-user stream."""
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "vfu")


def msg(mid, cmd, payload=b"", flags=0):
    return struct.pack("<HHIII", mid, cmd, 16 + len(payload), flags, 0) + payload


seeds = {
    "version": b"\x01" + msg(1, 1, struct.pack("<HH", 0, 1) +
                             b'{"capabilities":{"max_msg_fds":16,"pgsizes":4096}}\0'),
    "device_info": b"\x00" + msg(2, 4, struct.pack("<IIII", 16, 0, 0, 0)),
    "region_info": b"\x00" + b"".join(msg(3 + i, 5, struct.pack("<IIIIQQ", 256, 0, i, 0, 0, 0))
                                      for i in range(9)),
    "irq_info": b"\x00" + b"".join(msg(20 + i, 7, struct.pack("<IIII", 16, 0, i, 0))
                                   for i in range(5)),
    "cfg_rw": b"\x00" + msg(30, 9, struct.pack("<QII", 0, 7, 64)) +
    msg(31, 10, struct.pack("<QII", 4, 7, 2) + b"\x06\x00", flags=0x10) +
    msg(32, 10, struct.pack("<QII", 0x52, 7, 2) + b"\x00\x80"),
    "bar_rw": b"\x00" + msg(33, 9, struct.pack("<QII", 0, 0, 4)) +
    msg(34, 10, struct.pack("<QII", 0x3000, 3, 16) + bytes(16)),
    "set_irqs": b"\x00" + msg(40, 8, struct.pack("<IIIII", 20, 0x24, 2, 0, 5)) +
    msg(41, 8, struct.pack("<IIIII", 25, 0x22, 0, 0, 1) + b"\x01") +
    msg(42, 8, struct.pack("<IIIII", 20, 0x21, 2, 0, 0)),
    "dma": b"\x00" + msg(50, 2, struct.pack("<IIQQQ", 32, 3, 0, 0x100000, 0x1000)) +
    msg(51, 3, struct.pack("<IIQQ", 24, 2, 0, 0)),
    "reset": b"\x00" + msg(60, 13),
    "bad_size": b"\x00" + struct.pack("<HHIII", 70, 9, 8, 0, 0),
    "oversize": b"\x00" + struct.pack("<HHIII", 71, 10, 0xfffffff0, 0, 0),
    "lying_size": b"\x00" + struct.pack("<HHIII", 72, 9, 40, 0, 0) + bytes(24) + msg(73, 4, bytes(16)),
    "garbage_json": b"\x01" + msg(74, 1, struct.pack("<HH", 0, 1) + b'{"capabilities":[}\0'),
}
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
