#!/usr/bin/env python3
# Writes the seed corpus of fuzz_ipc_recv (tests/fuzz/corpus/ipc_recv/): one datagram per case
# the receive path distinguishes, built by hand from the wire layout in proto/common.proto.
# Seeds for fuzz_ipc_recv: byte 0 = setup (bits 0-2 fds, bits 3-4 protocol), then a datagram.
import struct, os
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'ipc_recv')
MAGIC = 0x4b524256
REQ, REP, ERR, EV = 1, 2, 3, 4
PROTOS = {0: (0x7e, 3), 1: (3, 1), 2: (2, 1), 3: (1, 1)}  # setup -> (proto id, version)

def varint(v):
    b = b''
    while True:
        x = v & 0x7f; v >>= 7
        if v: b += bytes([x | 0x80])
        else: return b + bytes([x])

def field_bytes(n, data): return varint(n << 3 | 2) + varint(len(data)) + data
def field_int(n, v): return varint(n << 3) + varint(v)

def dgram(setup, nfds, typ, kind, id_, body, hdr_nfds=None, length=None, magic=MAGIC, proto=None, version=None):
    pid, ver = PROTOS[setup]
    h = struct.pack('<IHHHBBII', magic, pid if proto is None else proto, ver if version is None else version,
                    typ, kind, nfds if hdr_nfds is None else hdr_nfds, id_, len(body) if length is None else length)
    return bytes([setup << 3 | nfds]) + h + body

seeds = {
    'test_request_ping': dgram(0, 0, 1, REQ, 7, field_bytes(1, b'hello')),
    'test_request_fds': dgram(0, 2, 2, REQ, 8, field_bytes(1, b'x'), ),
    'test_event_note_fd': dgram(0, 1, 3, EV, 0, field_bytes(1, b'n')),
    'test_reply_id1': dgram(0, 1, 2, REP, 1, field_bytes(1, b'r')),
    'test_reply_wrong_type': dgram(0, 0, 1, REP, 1, b''),
    'test_error_id1': dgram(0, 0, 2, ERR, 1, field_int(1, 22) + field_bytes(2, b'EINVAL')),
    'test_error_bad_code': dgram(0, 0, 2, ERR, 1, field_int(1, 0)),
    'test_big_handoff_budget': dgram(0, 0, 4, REQ, 9, bytes([0x2a, 0]) * 900),
    'test_too_many_fds': dgram(0, 6, 5, REQ, 10, b''),
    'test_nfds_mismatch': dgram(0, 1, 5, REQ, 11, b'', hdr_nfds=3),
    'test_truncated': dgram(0, 0, 1, REQ, 12, field_bytes(1, b'abc'), length=40),
    'test_short': bytes([0]) + struct.pack('<IHH', MAGIC, 0x7e, 3),
    'test_bad_magic': dgram(0, 1, 1, REQ, 13, b'', magic=0x4b524257),
    'test_bad_version': dgram(0, 0, 1, REQ, 14, b'', version=4),
    'test_bad_kind': dgram(0, 0, 1, 9, 15, b''),
    'test_unknown_type': dgram(0, 0, 42, REQ, 16, b''),
    'test_oversize': dgram(0, 0, 1, REQ, 17, field_bytes(1, b'A' * 2100)),
    'test_bad_body': dgram(0, 0, 1, REQ, 18, bytes([0x0a, 0x64, 1, 2])),
    'device_dma_map_memfd': dgram(1, 1, 9, REQ, 3, field_int(1, 0x100000) + field_int(2, 4096) + field_int(4, 3)),
    'device_region_info_reply_fd': dgram(1, 1, 3, REP, 1, field_int(1, 2) + field_int(3, 4096)
                                         + field_bytes(5, field_int(1, 0) + field_int(2, 4096))),
    'device_set_irq_fds': dgram(1, 4, 11, REQ, 4, field_int(1, 2) + field_int(3, 4)),
    'device_event': dgram(1, 0, 14, EV, 0, field_int(1, 1) + field_bytes(3, field_int(1, 0) + field_int(2, 0xfe000000))),
    'broker_handoff': dgram(2, 2, 1, REQ, 5, field_bytes(2, b'0000:00:03.0') + field_bytes(3, b'vm1')),
    'broker_unmap_all_reply': dgram(2, 0, 4, REP, 1, field_int(1, 3) + field_int(2, 1 << 20)),
    'broker_set_irqs': dgram(2, 3, 5, REQ, 6, field_int(1, 2) + field_int(3, 3) + field_bytes(5, b'\x00\x02\x04')),
    'control_add_device': dgram(3, 0, 1, REQ, 2, field_bytes(1, b'0000:00:03.0') + field_bytes(2, b'vm') + field_int(3, 1000)),
    'control_list_reply': dgram(3, 0, 3, REP, 1, field_bytes(1, field_bytes(1, b'0000:00:03.0') + field_int(3, 2)) * 3),
    'control_list_reply_budget': dgram(3, 0, 3, REP, 1, bytes([0x0a, 0]) * 1000),
    'control_event': dgram(3, 0, 6, EV, 0, field_int(1, 3) + field_bytes(2, b'0000:00:03.0')),
    'empty': bytes([0]),
}
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    open(os.path.join(out, name), 'wb').write(data)
print(len(seeds))
