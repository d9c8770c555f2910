#!/usr/bin/env python3
# Writes the seed corpora of the worker's fuzz targets:
#   corpus/image/: the device-image fixtures, small valid images and one image per parser error;
#   corpus/cfg/:   config spaces taken from the fixtures, each followed by operation lists that
#                  size BARs, enable MSI and MSI-X, unmask vectors, hand over fds, release, reset
#                  (format in fuzz_cfg.c).
import os, re, struct
here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, '..', 'fixtures')

def write(kind, name, data):
    d = os.path.join(here, 'corpus', kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)

HEAD = 'vfio-device-image 1\ndevice flags=0x3\nregion 7 size=256 flags=3\n'
images = {
    'minimal': HEAD,
    'bars': HEAD + 'region 0 size=0x1000 flags=7 mmap=0+0x800\nregion 2 size=32 flags=3\n'
            'config 0x10 04 00 00 00 00 00 00 00 01 00 00 00\n',
    'msix': HEAD + 'region 0 size=0x4000 flags=7\nirq 2 count=4 flags=1\n'
            'config 0x06 10 00\nconfig 0x34 40\nconfig 0x40 11 00 03 00 00 20 00 00 00 30 00 00\n',
    'caploop': HEAD + 'config 0x06 10\nconfig 0x34 40\nconfig 0x40 01 50\nconfig 0x50 05 40\n',
    'ext': 'vfio-device-image 1\ndevice flags=3\nregion 7 size=4096 flags=3\n'
           'config 0x100 10 00 01 10\n',
    'data': HEAD + 'region 0 size=16 flags=3\ndata 0 0 01 02 03\n',
    'bad_keyword': HEAD + 'bogus\n',
    'bad_version': 'vfio-device-image 9\n',
    'bad_number': HEAD + 'region 0 size=0xzz flags=1\n',
    'bad_late': 'vfio-device-image 1\ndevice flags=3\nconfig 0xff 00 01\nregion 7 size=256 flags=3\n',
}
for name, text in images.items():
    write('image', name, text.encode())
cfgs = {}
for fx in sorted(os.listdir(fixtures)):
    if not fx.endswith('.img'):
        continue
    text = open(os.path.join(fixtures, fx), 'rb').read()
    write('image', 'fixture_' + fx[:-4], text)
    space = bytearray(512)
    for m in re.finditer(rb'^config (\S+)((?: [0-9a-fA-F]{2})+)', text, re.M):
        off = int(m.group(1), 0)
        for i, b in enumerate(m.group(2).split()):
            if off + i < 512:
                space[off + i] = int(b, 16)
    cfgs[fx[:-4]] = bytes(space)

def op(code, off, length, data=b''):
    return struct.pack('<BHB', code, off, length) + data

def find_cap(space, cid):
    pos = space[0x34] & 0xfc
    seen = set()
    while pos and pos not in seen:
        seen.add(pos)
        if space[pos] == cid:
            return pos
        pos = space[pos + 1] & 0xfc
    return None

for name, space in cfgs.items():
    sizing = b''.join(op(1, 0x10 + 4 * i, 4, b'\xff\xff\xff\xff') + op(0, 0x10 + 4 * i, 4)
                      for i in range(6))
    sizing += op(1, 0x30, 4, b'\x00\xf8\xff\xff') + op(1, 0x04, 2, b'\x07\x00')
    write('cfg', name + '_sizing', space + sizing)
    msi = find_cap(space, 0x05)
    if msi:
        seq = op(4, 0, 1 | 8, b'\x01') + op(1, msi + 2, 2, b'\x31\x00') + op(5, 0, 0)
        seq += op(1, msi + 2, 2, b'\x00\x00') + op(6, 0, 0) + op(0x81, msi + 2, 2, b'\x01\x00')
        write('cfg', name + '_msi', space + seq)
    msix = find_cap(space, 0x11)
    if msix:
        bir = space[msix + 4] & 7
        seq = op(4, 0, 2, b'\x05') + op(1, msix + 2, 2, b'\x00\xc0') + op(1, msix + 2, 2, b'\x00\x80')
        seq += op(3, (bir << 12) | 12, 4, b'\x00\x00\x00\x00') + op(2, (bir << 12), 8)
        seq += op(5, 0, 0) + op(6, 0, 0) + op(4, 0, 2, b'\x02') + op(7, 0, 0)
        write('cfg', name + '_msix', space + seq)
write('cfg', 'empty', b'')
write('cfg', 'garbage_caps', bytes([0x34, 0x12, 0x78, 0x56, 0, 0, 0x10, 0]) + bytes(44) +
      bytes([0x40]) + bytes(11) + bytes([0x11, 0x40, 0xff, 0x07, 0xff, 0xff, 0xff, 0xff]) +
      bytes(512 - 72))
