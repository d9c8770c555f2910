#!/usr/bin/env python3
# Writes the seed corpus of fuzz_record (tests/fuzz/corpus/record/), built by hand from the
# state record's layout (broker/record_priv.h) and its entry payloads (broker/record_codec.c).
# Byte 0 odd: structured input {byte 1: entries in the snapshot; then per entry: type u8,
# length u16 le, payload}; bit 1 of byte 0 tears the last entry. Byte 0 even: a record file as is.
import os, struct
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'record')

def crc32c(data, crc=0):
    crc ^= 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xffffffff

(BROKER, VM_PUT, VM_DEL, VM_STATS, DEV_PUT, DEV_DEL, MAP, IRQ, INTENT, COMMIT, ABORT, SHARE,
 UNSHARE, FORGET, RESOLVE) = range(1, 16)
JOP_MAP, JOP_UNMAP, JOP_IRQ = 1, 2, 6

def s(x): return struct.pack('<H', len(x)) + x
def u8(v): return struct.pack('<B', v)
def u32(v): return struct.pack('<I', v)
def u64(v): return struct.pack('<Q', v)

def broker(starts, epoch, nxt): return u64(starts) + u64(epoch) + u64(nxt)
def vm_put(name, maxm=100): return s(name) + u32(maxm) + u64(1 << 30) + u32(1000) + u32(1000) + u32(0)
def vm_stats(name): return s(name) + u64(3) + u64(1) + u64(0)
def dev_put(bdf, vm, state=3): return (s(bdf) + s(vm) + u32(state) + u64(7) + u32(1000) + u32(1000) + u8(1)
                                       + u32(1) + u32(12) + s(b'/run/vfio-broker/vm/sock') + s(b'') + u32(1)
                                       + u32(0) + u32(4242) + u32(60000) + u32(60000) + u32(0) + s(b''))
def mapping(vm, iova, size, owners=(7,)):
    return (s(vm) + u64(iova) + u64(size) + u64(0) + u32(3) + u64(5) + u64(77) + u64(owners[0])
            + u32(len(owners) - 1) + b''.join(u64(o) for o in owners[1:]))
def irq_state(count, enabled, bits): return u32(count) + u32(enabled) + u8(0) + bits
def irq(bdf, index, count, enabled, bits): return s(bdf) + u32(index) + irq_state(count, enabled, bits)
def intent_map(id_, vm, iova, size, kind=JOP_MAP):
    return u64(id_) + u8(kind) + s(vm) + u64(7) + u64(iova) + u64(size) + u64(0) + u32(3) + u64(5) + u64(77)
def intent_irq(id_, bdf, index): return u64(id_) + u8(JOP_IRQ) + s(bdf) + u32(index)
def owner(vm, iova, size, o): return s(vm) + u64(iova) + u64(size) + u64(o)

def structured(entries, nsnap, tear=False):
    b = bytes([1 | (2 if tear else 0), nsnap])
    for t, p in entries:
        b += bytes([t]) + struct.pack('<H', len(p)) + p
    return b

VM, BDF = b'vm-a', b'0000:00:03.0'
base = [(BROKER, broker(2, 0x1234, 0)), (VM_PUT, vm_put(VM)), (VM_STATS, vm_stats(VM)),
        (MAP, mapping(VM, 0x100000, 0x4000, (7, 8))), (DEV_PUT, dev_put(BDF, VM)),
        (IRQ, irq(BDF, 2, 9, 3, b'\x05\x00'))]
seeds = {
    'snapshot_only': structured(base, len(base)),
    'journal_map_commit': structured(base + [(INTENT, intent_map(1, VM, 0x200000, 0x1000)), (COMMIT, u64(1))], len(base)),
    'journal_map_abort': structured(base + [(INTENT, intent_map(1, VM, 0x200000, 0x1000)), (ABORT, u64(1))], len(base)),
    'journal_map_pending': structured(base + [(INTENT, intent_map(1, VM, 0x200000, 0x1000))], len(base)),
    'journal_unmap_commit': structured(base + [(UNSHARE, owner(VM, 0x100000, 0x4000, 8)),
                                               (INTENT, intent_map(1, VM, 0x100000, 0x4000, JOP_UNMAP)), (COMMIT, u64(1))], len(base)),
    'journal_unmap_resolve': structured(base + [(UNSHARE, owner(VM, 0x100000, 0x4000, 7)),
                                                (INTENT, intent_map(1, VM, 0x100000, 0x4000, JOP_UNMAP)), (RESOLVE, u64(1))], len(base)),
    'journal_share': structured(base + [(SHARE, owner(VM, 0x100000, 0x4000, 9))], len(base)),
    'journal_irq_commit': structured(base + [(INTENT, intent_irq(1, BDF, 1)), (COMMIT, u64(1) + irq_state(1, 1, b'\x01'))], len(base)),
    'journal_irq_resolve': structured(base + [(INTENT, intent_irq(1, BDF, 2)), (RESOLVE, u64(1))], len(base)),
    'journal_forget_del': structured(base + [(FORGET, s(VM)), (DEV_DEL, s(BDF)), (VM_DEL, s(VM))], len(base)),
    'journal_puts': structured([(BROKER, broker(1, 1, 0)), (VM_PUT, vm_put(b'x')), (DEV_PUT, dev_put(b'0000:01:00.0', b'x', 2)),
                                (DEV_PUT, dev_put(b'0000:01:00.0', b'x', 5)), (BROKER, broker(2, 2, 9))], 0),
    'torn_tail': structured(base + [(INTENT, intent_map(1, VM, 0x200000, 0x1000)), (COMMIT, u64(1))], len(base), tear=True),
    'pending_in_snapshot': structured(base + [(INTENT, intent_map(4, VM, 0x900000, 0x1000))], len(base) + 1),
    'owner_twice': structured(base[:3] + [(MAP, mapping(VM, 0x900000, 0x1000, (7, 8, 9, 8)))], 4),
    'overlap': structured(base + [(MAP, mapping(VM, 0x102000, 0x1000))], len(base) + 1),
    'commit_unknown': structured(base + [(COMMIT, u64(99))], len(base)),
    'wrong_place': structured(base + [(MAP, mapping(VM, 0x900000, 0x1000))], len(base)),
    'empty': bytes([0]),
}

# One record file as is: slot 0 naming a snapshot of `base` at 4096, an empty journal.
def frame(gen, seq, t, p):
    e = struct.pack('<IQH', 18 + len(p), seq, t) + p
    c = crc32c(e, crc32c(struct.pack('<Q', gen)))
    e = struct.pack('<I', c) + e
    return e + b'\0' * (-len(e) % 8)
snap = b''.join(frame(1, i, t, p) for i, (t, p) in enumerate(base))
slot = b'VBRKSTAT' + struct.pack('<IIQQQQII', 1, 64, 1, 4096, len(snap), 4096, crc32c(snap), 0)
slot += struct.pack('<I', crc32c(slot)) + b'\0' * 4
img = slot + b'\0' * (4096 - len(slot)) + snap + b'\0' * 4096
seeds['raw_file'] = bytes([0]) + img
seeds['raw_version7'] = bytes([0]) + img[:8] + struct.pack('<I', 7) + img[12:56] + struct.pack('<I', crc32c(img[:8] + struct.pack('<I', 7) + img[12:56])) + img[60:]

os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    open(os.path.join(out, name), 'wb').write(data)
print(len(seeds))
