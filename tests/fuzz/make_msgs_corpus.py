#!/usr/bin/env python3
# Writes the seed corpora of the fuzz targets that play one side of a conversation, in the record
# format of fuzz_msgs.h (type, flags, length, protobuf body), with bodies encoded by hand from
# proto/*.proto, and the seeds of fuzz_policy (the shipped policies and variants of them):
#   corpus/vmm_req/     byte 0 picks the image (0 edu, 1 e1000e, 2 nvme; bit 2 allows mmap), then
#                       whole VMM sessions: HELLO, info, config writes that enable MSI/MSI-X,
#                       eventfds, DMA maps, BAR accesses, reset, removal ack
#   corpus/worker_brk/  an edu HANDOFF, then heartbeats, removals, a second handoff, stray replies
#   corpus/policy/      policy files
# Run it again after changing the protocol; libFuzzer's -merge=1 then minimizes (tests/fuzz/README.md).
import os
here = os.path.dirname(os.path.abspath(__file__))

def varint(v):
    out = b''
    while True:
        b = v & 0x7f
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])

def u(n, v):  # varint field
    return varint(n << 3) + varint(v)

def b(n, data):  # length-delimited field
    if isinstance(data, str):
        data = data.encode()
    return varint(n << 3 | 2) + varint(len(data)) + data

def sint(v):
    return (v << 1) ^ (v >> 63)

REQ, REPLY, EVENT = 0, 2, 3
EVENTFD, MEMFD_SEALED, MEMFD, MEMFD_RDONLY, DEVNULL, SOCKET, PIPE, MEMFD_SMALL = range(8)

def rec(typ, body=b'', nfds=0, fdkind=0, kind=REQ):
    return bytes([typ, nfds | fdkind << 3 | kind << 6]) + len(body).to_bytes(2, 'little') + body

def write(target, name, data):
    d = os.path.join(here, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)

# ---- device protocol (proto/device.proto) ----
HELLO, DEVICE_INFO, REGION_INFO, IRQ_INFO, CFG_READ, CFG_WRITE, REGION_READ, REGION_WRITE, \
    DMA_MAP, DMA_UNMAP, SET_IRQ_FDS, RESET, REMOVAL_ACK = range(1, 14)

def hello():
    return rec(HELLO, u(1, 1) + b(2, 'fuzz-vmm') + b(3, u(1, 65536) + u(2, 16)))

def cfg_read(off, size):
    return rec(CFG_READ, u(1, off) + u(2, size))

def cfg_write(off, data):
    return rec(CFG_WRITE, u(1, off) + b(2, data))

def region_read(idx, off, size):
    return rec(REGION_READ, u(1, idx) + u(2, off) + u(3, size))

def region_write(idx, off, data):
    return rec(REGION_WRITE, u(1, idx) + u(2, off) + b(3, data))

def dma_map(iova, size, off=0, prot=3, fdkind=MEMFD_SEALED, nfds=1):
    return rec(DMA_MAP, u(1, iova) + u(2, size) + u(3, off) + u(4, prot), nfds, fdkind)

def dma_unmap(iova, size):
    return rec(DMA_UNMAP, u(1, iova) + u(2, size))

def irq_fds(index, start, count, nfds=None, resample=False, fdkind=EVENTFD):
    body = u(1, index) + u(2, start) + u(3, count) + (u(4, 1) if resample else b'')
    return rec(SET_IRQ_FDS, body, count if nfds is None else nfds, fdkind)

def info_all():
    return (rec(DEVICE_INFO) + b''.join(rec(REGION_INFO, u(1, i)) for i in range(9)) +
            b''.join(rec(IRQ_INFO, u(1, i)) for i in range(5)))

LE16 = lambda v: v.to_bytes(2, 'little')
LE32 = lambda v: v.to_bytes(4, 'little')

# (image selector, MSI cap, MSI-X cap, a memory BAR index)
images = {'edu': (0, 0x40, None, 0), 'e1000e': (1, 0xd0, 0xa0, 0), 'nvme': (2, 0x60, 0x40, 0)}
for name, (sel, msi, msix, bar) in images.items():
    common = hello() + info_all() + cfg_read(0, 4) + cfg_read(0x34, 1)
    write('vmm_req', f'{name}_info', bytes([sel]) + common)
    write('vmm_req', f'{name}_info_mmap', bytes([sel | 4]) + common)
    # BAR sizing, memory enable, BAR accesses
    sizing = (cfg_write(0x10, LE32(0xffffffff)) + cfg_read(0x10, 4) + cfg_write(0x10, LE32(0xfe000000)) +
              cfg_write(4, LE16(0x0006)) + region_read(bar, 0, 4) + region_write(bar, 4, LE32(0x12345678)) +
              region_read(bar, 0x80, 8) + region_read(7, 0, 64))
    write('vmm_req', f'{name}_bars', bytes([sel]) + hello() + sizing)
    # MSI enabled with an eventfd, then torn down by the VMM
    msi_s = (cfg_write(msi + 4, LE32(0xfee00000)) + cfg_write(msi + 8, LE32(0)) +
             cfg_write(msi + 2, LE16(1)) + irq_fds(1, 0, 1) + cfg_read(msi, 8) +
             irq_fds(1, 0, 0, 0) + cfg_write(msi + 2, LE16(0)))
    write('vmm_req', f'{name}_msi', bytes([sel]) + hello() + cfg_write(4, LE16(0x0406)) + msi_s)
    if msix is not None:
        msix_s = (cfg_read(msix, 12) + cfg_write(msix + 2, LE16(0x8000)) + irq_fds(2, 0, 3) +
                  cfg_write(msix + 2, LE16(0xc000)) + cfg_write(msix + 2, LE16(0x8000)) +
                  irq_fds(2, 1, 1, resample=False) + cfg_write(msix + 2, LE16(0)))
        write('vmm_req', f'{name}_msix', bytes([sel]) + hello() + cfg_write(4, LE16(0x0406)) + msix_s)
    # INTx with a resample fd, then the VMM goes
    write('vmm_req', f'{name}_intx', bytes([sel]) + hello() + irq_fds(0, 0, 1, 2, True) +
          cfg_write(4, LE16(0x0002)) + rec(RESET) + rec(REMOVAL_ACK))
    # DMA: maps within and past the quota, wrong fds, unmaps
    dma = (dma_map(0x100000, 0x1000) + dma_map(0x200000, 0x10000) + dma_map(0x300000, 0x1000, 0x1000, 1) +
           dma_map(0x400000, 0x1000, fdkind=MEMFD) + dma_map(0x500000, 0x1000, prot=2, fdkind=MEMFD_RDONLY) +
           dma_map(0x600000, 0x1000, fdkind=DEVNULL) + dma_map(0x700000, 0x1000, nfds=2) +
           dma_map(0x800000, 0x2000, fdkind=MEMFD_SMALL) + dma_unmap(0x100000, 0x1000) +
           dma_unmap(0x200000, 0x1000) + dma_unmap(0, 1 << 63))
    write('vmm_req', f'{name}_dma', bytes([sel]) + hello() + dma)
write('vmm_req', 'no_hello', bytes([0]) + cfg_read(0, 4) + rec(DEVICE_INFO))
write('vmm_req', 'two_hellos', bytes([1]) + hello() + hello())
write('vmm_req', 'unknown_types', bytes([2]) + hello() + rec(14) + rec(99) + rec(0))
write('vmm_req', 'replies_and_events', bytes([0]) + hello() + rec(CFG_READ, u(1, 0) + u(2, 4), kind=REPLY) +
      rec(14, u(1, 1), kind=EVENT))
write('vmm_req', 'big_accesses', bytes([1]) + hello() + region_read(0, 0, 4096) + region_read(0, 0x1f000, 8192) +
      cfg_read(0xffc, 8) + cfg_write(0xfff, b'\xff' * 4) + region_write(3, 0, b'\0' * 4096))
write('vmm_req', 'irq_misuse', bytes([2]) + hello() + irq_fds(2, 60, 10) + irq_fds(2, 0, 3, 2) +
      irq_fds(5, 0, 1) + irq_fds(2, 0, 2, fdkind=PIPE) + irq_fds(1, 0, 1, fdkind=SOCKET))

# ---- broker protocol (proto/broker.proto), the worker's side ----
HANDOFF, B_DMA_MAP, B_DMA_UNMAP, B_UNMAP_ALL, SET_IRQS, B_RESET, HEARTBEAT, REMOVAL, VMM_STATE, VMM_ADMIT, SYNC = \
    range(1, 12)

def region(idx, flags, size, areas=(), msix=False):
    body = u(1, idx) + u(2, flags) + u(3, size) + u(4, idx << 40)
    for off, sz in areas:
        body += b(5, u(1, off) + u(2, sz))
    return b(5, body + (u(6, 1) if msix else b''))

def irq(idx, flags, count):
    return b(6, u(1, idx) + u(2, flags) + u(3, count))

def handoff(gen=0, mmap=True, extra=b''):
    body = (u(1, 1) + b(2, '0000:01:00.0') + b(3, 'vm1') + u(4, 3) +
            region(0, 7, 0x100000, [(0, 0x100000)]) + region(7, 3, 0x100) +
            irq(0, 7, 1) + irq(1, 9, 1) + irq(4, 9, 1) + b(7, u(3, 64) + u(4, 1 << 30)) +
            (u(8, 1) if mmap else b'') + u(9, 4096) + u(10, 0) + u(11, 0) + u(12, gen) + extra)
    return rec(HANDOFF, body, 2)

hb = lambda seq: rec(HEARTBEAT, u(1, seq))
rm = lambda ms: rec(REMOVAL, u(1, ms))
write('worker_brk', 'handoff', handoff())
write('worker_brk', 'handoff_restarted', handoff(gen=3, mmap=False))
write('worker_brk', 'handoff_heartbeats', handoff() + hb(1) + hb(2) + hb(1 << 40))
write('worker_brk', 'handoff_removal', handoff() + rm(1000) + rm(0) + hb(3))
write('worker_brk', 'handoff_twice', handoff() + handoff(gen=1))
# Issue 12: the handoff's broker (epoch 7), then a restarted one (epoch 8) while a removal waits,
# then a heartbeat of no epoch and the first broker again.
hbe = lambda seq, epoch: rec(HEARTBEAT, u(1, seq) + u(2, epoch))
write('worker_brk', 'handoff_new_epoch', handoff(extra=u(14, 7)) + hbe(1, 7) + rm(1000) +
      hbe(1 << 63, 8) + hbe(2, 0) + hbe(3, 7) + rec(VMM_STATE, b'', kind=REPLY))
# A new broker that answers SYNC (Heartbeat.answers_sync): the worker sends its fence; a stray
# SYNC answer and a SYNC request (the broker's type only) follow.
write('worker_brk', 'handoff_new_epoch_sync', handoff(extra=u(14, 7)) + hbe(1, 7) +
      rec(HEARTBEAT, u(1, 2) + u(2, 8) + u(3, 1)) + rec(SYNC, b'', kind=REPLY) + rec(SYNC) + hbe(3, 8))
write('worker_brk', 'handoff_stray', handoff() + rec(B_DMA_MAP, b'', kind=REPLY) +
      rec(VMM_ADMIT, u(1, 1), kind=REPLY) + rec(HEARTBEAT, b'', kind=EVENT) + rec(B_RESET) + rec(42))
write('worker_brk', 'handoff_bad_version', rec(HANDOFF, u(1, 2) + b(2, '0000:01:00.0') + b(3, 'vm'), 2))
write('worker_brk', 'handoff_region_twice', handoff(extra=region(0, 7, 0x1000)))
write('worker_brk', 'handoff_irq_range', handoff(extra=irq(9, 9, 1)))
write('worker_brk', 'handoff_area_outside', rec(HANDOFF, u(1, 1) + b(2, '0000:01:00.0') + b(3, 'vm') +
                                                  region(0, 7, 0x1000, [(0x800, 0x1000)]), 2))
write('worker_brk', 'handoff_pgsize', handoff(extra=u(9, 3000)))
write('worker_brk', 'handoff_no_config', rec(HANDOFF, u(1, 1) + b(2, '0000:01:00.0') + b(3, 'vm') +
                                               region(0, 7, 0x1000), 2))
write('worker_brk', 'first_not_handoff', hb(1) + handoff())

# ---- broker protocol, the broker's side: what a worker asks (fuzz_brk_worker) ----
# byte 0: 0 acknowledge the handoff, 2 refuse it, 3 leave it unanswered; | 4: REMOVAL at once
TRIGGER, MASK, UNMASK = 0x20, 0x08, 0x10

def packed_sint(n, vals):
    return b(n, b''.join(varint(sint(v) & (2**64 - 1)) for v in vals))

def bmap(iova, size, off=0, prot=3, fdkind=MEMFD_SEALED, nfds=1):
    return rec(B_DMA_MAP, u(1, iova) + u(2, size) + u(3, off) + u(4, prot), nfds, fdkind)

def bunmap(iova, size):
    return rec(B_DMA_UNMAP, u(1, iova) + u(2, size))

def set_irqs(index, start, count, action=TRIGGER, slots=None, nfds=None, disable=False, fdkind=EVENTFD):
    slots = list(range(count)) if slots is None else slots
    body = u(1, index) + u(2, start) + u(3, count) + u(4, action) + (packed_sint(5, slots) if slots else b'')
    body += u(6, 1) if disable else b''
    return rec(SET_IRQS, body, len([x for x in slots if x >= 0]) if nfds is None else nfds, fdkind)

vmm_state = lambda c: rec(VMM_STATE, u(1, c) + u(2, 1234) + u(3, 1000))
write('brk_worker', 'dma', bytes([0]) + bmap(0x100000, 0x1000) + bmap(0x200000, 0x10000) +
      bmap(0x100000, 0x1000) + bunmap(0x100000, 0x1000) + rec(B_UNMAP_ALL) + bunmap(0x200000, 0x10000))
write('brk_worker', 'dma_quota', bytes([0]) + b''.join(bmap(0x100000 * (i + 1), 0x10000) for i in range(10)) +
      bmap(0x2000000, 0x200000) + rec(B_UNMAP_ALL))
write('brk_worker', 'dma_bad_fds', bytes([0]) + bmap(0x100000, 0x1000, fdkind=MEMFD) +
      bmap(0x100000, 0x1000, fdkind=MEMFD_RDONLY) + bmap(0x100000, 0x1000, fdkind=DEVNULL) +
      bmap(0x100000, 0x2000, fdkind=MEMFD_SMALL) + bmap(0x100000, 0x1000, nfds=0))
write('brk_worker', 'dma_bad_ranges', bytes([0]) + bmap(0x100001, 0x1000) + bmap(0, 0) +
      bmap(2**64 - 0x1000, 0x2000) + bmap(0x100000, 0x1000, 2**64 - 0x1000) + bmap(0x100000, 0x1000, prot=0) +
      bunmap(0, 2**63))
write('brk_worker', 'irqs', bytes([0]) + set_irqs(2, 0, 3) + set_irqs(2, 3, 2) + set_irqs(2, 0, 1, MASK, []) +
      set_irqs(2, 0, 1, UNMASK, []) + set_irqs(2, 0, 0, disable=True, slots=[]) + set_irqs(1, 0, 1) +
      set_irqs(0, 0, 1) + set_irqs(0, 0, 1, UNMASK, []) + set_irqs(4, 0, 1))
write('brk_worker', 'irqs_bad', bytes([0]) + set_irqs(2, 6, 4) + set_irqs(2, 0, 2, slots=[0, 5], nfds=1) +
      set_irqs(2, 0, 2, slots=[-1, 0], nfds=1) + set_irqs(9, 0, 1) + set_irqs(2, 0, 1, action=0x40) +
      set_irqs(2, 0, 1, disable=True) + set_irqs(1, 0, 1, fdkind=PIPE))
write('brk_worker', 'reset_state', bytes([0]) + rec(B_RESET) + vmm_state(1) + vmm_state(1) + vmm_state(0) +
      rec(VMM_ADMIT, b'', 1, SOCKET) + rec(VMM_ADMIT, b'', 0) + rec(VMM_ADMIT, b'', 1, EVENTFD))
write('brk_worker', 'removal', bytes([4]) + bmap(0x100000, 0x1000) + bunmap(0x100000, 0x1000) + rec(B_UNMAP_ALL) +
      set_irqs(2, 0, 0, disable=True, slots=[]) + vmm_state(0) + rec(REMOVAL, u(1, 1), kind=REPLY))
write('brk_worker', 'before_ack', bytes([3]) + bmap(0x100000, 0x1000) + rec(B_RESET))
write('brk_worker', 'refused', bytes([2]) + bmap(0x100000, 0x1000))
# Issue 12: heartbeat answers with a stale sequence number and another broker's id.
write('brk_worker', 'heartbeat_replies_stale', bytes([0]) + rec(HEARTBEAT, u(1, 1), kind=REPLY) +
      rec(HEARTBEAT, u(1, 1 << 62), kind=REPLY) + rec(HEARTBEAT, b'', kind=REPLY))
# Issue 12: a worker's fence after a restart, before and after others, and while removing.
write('brk_worker', 'sync', bytes([0]) + rec(SYNC) + bmap(0x100000, 0x1000) + rec(SYNC) + vmm_state(1) +
      rec(SYNC, b'', 1, EVENTFD) + rec(SYNC, b'', kind=REPLY))
write('brk_worker', 'sync_removal', bytes([4]) + rec(SYNC) + rec(REMOVAL, u(1, 1), kind=REPLY) + rec(SYNC))
write('brk_worker', 'broker_types', bytes([0]) + rec(HANDOFF, b'', 2) + rec(HEARTBEAT) + rec(42) +
      rec(HEARTBEAT, u(1, 1), kind=REPLY) + rec(VMM_STATE, b'', kind=EVENT))

# ---- control protocol (proto/control.proto), the orchestrator's side (fuzz_ctl) ----
# byte 0: bit 0 the fake workers refuse their handoff, bit 1 they ignore REMOVAL
ADD, REMOVE, LIST, STATUS, SUBSCRIBE, C_EVENT, METRICS = range(1, 8)

def add(bdf, vm='vm1', uid=1000, mmap=False, bind=False, limits=None):
    body = b(1, bdf) + b(2, vm) + u(3, uid) + u(4, uid)
    if limits:
        body += b(5, u(1, limits[0]) + u(2, limits[1]))
    return rec(ADD, body + (u(6, 1) if bind else b'') + (u(7, 1) if mmap else b''))

def remove(bdf, timeout=0, force=False):
    return rec(REMOVE, b(1, bdf) + u(2, timeout) + (u(3, 1) if force else b''))

status = lambda bdf: rec(STATUS, b(1, bdf))
E, N1, N2, X = '0000:00:03.0', '0000:00:04.0', '0000:00:04.1', '0000:00:05.0'
write('ctl', 'add_remove', bytes([0]) + add(E) + rec(LIST) + status(E) + remove(E) + rec(LIST))
write('ctl', 'add_two_vms', bytes([0]) + rec(SUBSCRIBE) + add(E, 'a') + add(N1, 'b') + add(N2, 'b') +
      rec(LIST) + status(N2) + remove(N1, force=True) + remove(N2, 50) + remove(E) + rec(METRICS))
write('ctl', 'add_errors', bytes([0]) + add(X) + add('0000:00:03.7') + add('bogus') + add(E, 'bad vm name') +
      add(E, '') + add(E, uid=2**32 - 1) + add(E, limits=(1, 1)) + add(E) + add(E) + add(N1, 'vm2', limits=(10, 4096)))
write('ctl', 'same_group_two_vms', bytes([0]) + add(N1, 'a') + add(N2, 'b') + remove(N1) + add(N2, 'b'))
write('ctl', 'refused_handoff', bytes([1]) + add(E) + status(E) + rec(LIST) + remove(E))
write('ctl', 'ignored_removal', bytes([2]) + add(E, mmap=True) + remove(E, 10) + status(E) + remove(E, force=True))
write('ctl', 'bind', bytes([0]) + add(E, bind=True) + remove(E))
write('ctl', 'quotas', bytes([0]) + add(E, 'v', limits=(4, 65536)) + add(N1, 'v', limits=(8, 65536)) + add(N1, 'v'))
write('ctl', 'unknown', bytes([0]) + rec(42) + rec(C_EVENT, b'', kind=EVENT) + rec(ADD, b'', kind=REPLY) + rec(0))
write('ctl', 'metrics_status', bytes([0]) + rec(METRICS) + status(E) + status('') + remove(E) + rec(SUBSCRIBE) +
      rec(SUBSCRIBE))

# ---- policy files ----
pol = os.path.join(here, '..', '..', 'policy')
for role in ('worker', 'broker'):
    with open(os.path.join(pol, role + '.policy'), 'rb') as f:
        text = f.read()
    write('policy', role, text)
    write('policy', role + '_no_default', text.replace(b'default kill_process', b''))
write('policy', 'small', b'allow read  # r\nallow write arg0 == 2  # stderr\ndefault kill_process\n')
write('policy', 'conds', b'allow ioctl arg1 == VFIO_DEVICE_RESET  # r\n'
      b'allow mmap arg2 & PROT_EXEC == 0 arg3 != 1  # m\n'
      b'deny openat ENOENT  # quiet\nallow futex arg1 <= 10 arg1 >= 0  # f\ndefault kill_process\n')
write('policy', 'overlap', b'allow read  # a\nallow read arg0 == 1  # b\ndefault kill_process\n')
write('policy', 'unknown', b'allow frobnicate  # x\nallow read arg9 == 1  # y\ndefault kill_process\n')
write('policy', 'no_reason', b'allow read\ndefault kill_process\n')
write('policy', 'bad_default', b'allow read  # r\ndefault allow\n')
write('policy', 'values', b'allow clone3 arg0 == 0x10|CLONE_NEWUSER  # v\n'
      b'allow prctl arg0 == 18446744073709551615  # max\ndefault kill_process\n')
write('policy', 'empty', b'')
