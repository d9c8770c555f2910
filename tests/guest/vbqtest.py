"""vbqtest: drives a QEMU started with `-accel qtest -qtest stdio` (no guest code runs) through
QEMU's qtest protocol, the way QEMU's own tests/qtest do: port I/O for PCI config space
(0xcf8/0xcfc), MMIO and guest RAM accesses. Python 3 stdlib only; the transport is two callables,
so the same driver runs a QEMU on the host (pipes) or inside the test guest (a virtio-serial
port, see vbqemu.py).

    q = Qtest(send, readline)
    dev = PciFunction.find(q, 0x1234, 0x11e8)
    bars = dev.place_bars(0xe0000000)
    q.readl(bars[0].addr)

Protocol (QEMU's system/qtest.c): one command per line, one reply line per command, "OK
[values]" or "FAIL reason" / "ERR reason"; values in hex. Lines starting with "IRQ" are
asynchronous interrupt notifications (only after irq_intercept_*), skipped here.

What it trusts: nothing the replies say beyond their format; a malformed reply raises.
"""

import struct

PCI_VENDOR_ID = 0x00
PCI_COMMAND = 0x04
PCI_STATUS = 0x06
PCI_BAR0 = 0x10
PCI_CAP_PTR = 0x34
PCI_COMMAND_MEMORY = 0x2
PCI_COMMAND_MASTER = 0x4
PCI_COMMAND_INTX_DISABLE = 0x400
PCI_STATUS_CAP_LIST = 0x10
PCI_CAP_ID_MSI = 0x05
PCI_CAP_ID_MSIX = 0x11

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC


class QtestError(Exception):
    """QEMU refused a qtest command, or its reply made no sense."""


class Qtest:
    """The qtest command set over a line transport: send(bytes), readline(deadline) -> str."""

    def __init__(self, send, readline, timeout=30):
        self._send, self._readline, self.timeout = send, readline, timeout
        self.irqs = []

    def cmd(self, line, timeout=None):
        import time
        self._send((line + "\n").encode())
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._readline(deadline)
            if reply.startswith("IRQ"):
                self.irqs.append(reply)
                continue
            words = reply.split()
            if not words or words[0] != "OK":
                raise QtestError("qtest %r: %r" % (line, reply))
            return words[1:]

    def _value(self, line):
        words = self.cmd(line)
        if len(words) != 1:
            raise QtestError("qtest %r: expected one value, got %r" % (line, words))
        return int(words[0], 16)

    # port I/O
    def outb(self, port, v): self.cmd("outb 0x%x 0x%x" % (port, v))
    def outw(self, port, v): self.cmd("outw 0x%x 0x%x" % (port, v))
    def outl(self, port, v): self.cmd("outl 0x%x 0x%x" % (port, v))
    def inb(self, port): return self._value("inb 0x%x" % port)
    def inw(self, port): return self._value("inw 0x%x" % port)
    def inl(self, port): return self._value("inl 0x%x" % port)

    # memory (RAM or MMIO)
    def writeb(self, addr, v): self.cmd("writeb 0x%x 0x%x" % (addr, v))
    def writew(self, addr, v): self.cmd("writew 0x%x 0x%x" % (addr, v))
    def writel(self, addr, v): self.cmd("writel 0x%x 0x%x" % (addr, v))
    def writeq(self, addr, v): self.cmd("writeq 0x%x 0x%x" % (addr, v))
    def readb(self, addr): return self._value("readb 0x%x" % addr)
    def readw(self, addr): return self._value("readw 0x%x" % addr)
    def readl(self, addr): return self._value("readl 0x%x" % addr)
    def readq(self, addr): return self._value("readq 0x%x" % addr)

    def read(self, addr, size):
        """size bytes of guest memory (the `read` command: one hex string)."""
        words = self.cmd("read 0x%x 0x%x" % (addr, size))
        if len(words) != 1 or not words[0].startswith("0x"):
            raise QtestError("read: malformed reply %r" % words)
        data = bytes.fromhex(words[0][2:])
        if len(data) != size:
            raise QtestError("read: %d bytes asked, %d returned" % (size, len(data)))
        return data

    def write(self, addr, data):
        self.cmd("write 0x%x 0x%x 0x%s" % (addr, len(data), data.hex()))

    # PCI configuration mechanism #1, as firmware and the kernel use it on q35
    def _cfg_addr(self, bdf, off):
        bus, dev, fn = bdf
        self.outl(CONFIG_ADDRESS, 0x80000000 | bus << 16 | dev << 11 | fn << 8 | (off & 0xFC))

    def cfg_read(self, bdf, off, size):
        self._cfg_addr(bdf, off)
        port = CONFIG_DATA + (off & 3)
        return {1: self.inb, 2: self.inw, 4: self.inl}[size](port)

    def cfg_write(self, bdf, off, size, v):
        self._cfg_addr(bdf, off)
        port = CONFIG_DATA + (off & 3)
        {1: self.outb, 2: self.outw, 4: self.outl}[size](port, v)

    def cfg_image(self, bdf, size=256):
        """The first size bytes of a function's config space, read dword by dword."""
        return b"".join(struct.pack("<I", self.cfg_read(bdf, off, 4))
                        for off in range(0, size, 4))


class Bar:
    def __init__(self, index, size, is64, io, prefetch):
        self.index, self.size, self.is64, self.io, self.prefetch = index, size, is64, io, prefetch
        self.addr = None

    def __repr__(self):
        return "BAR%d(size=0x%x%s%s at %s)" % (self.index, self.size, ", 64-bit" if self.is64
                                                else "", ", io" if self.io else "",
                                                "0x%x" % self.addr if self.addr else "-")


class PciFunction:
    """One function on bus 0 of a qtest machine."""

    def __init__(self, q, bdf):
        self.q, self.bdf = q, bdf

    @classmethod
    def find(cls, q, vendor, device, bus=0):
        """The function with these IDs on bus; raises QtestError naming what is there instead."""
        seen = []
        for slot in range(32):
            ids = q.cfg_read((bus, slot, 0), PCI_VENDOR_ID, 4)
            if ids == 0xFFFFFFFF:
                continue
            seen.append("%02x.0 %04x:%04x" % (slot, ids & 0xFFFF, ids >> 16))
            if ids == vendor | device << 16:
                return cls(q, (bus, slot, 0))
        raise QtestError("no %04x:%04x on bus %d; found: %s" % (vendor, device, bus,
                                                                 ", ".join(seen) or "nothing"))

    def read(self, off, size=4):
        return self.q.cfg_read(self.bdf, off, size)

    def write(self, off, size, v):
        self.q.cfg_write(self.bdf, off, size, v)

    def caps(self):
        """{capability id: offset} of the standard capability list (first of each id)."""
        found = {}
        if not self.read(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST:
            return found
        off, hops = self.read(PCI_CAP_PTR, 1) & 0xFC, 0
        while off and hops < 48:
            cap = self.read(off, 2)
            found.setdefault(cap & 0xFF, off)
            off, hops = (cap >> 8) & 0xFC, hops + 1
        return found

    def size_bars(self):
        """Sizes every BAR the way firmware does (all ones, read back, restore); returns the
        implemented ones as Bar objects. Memory decoding is off while sizing."""
        cmd = self.read(PCI_COMMAND, 2)
        self.write(PCI_COMMAND, 2, cmd & ~(PCI_COMMAND_MEMORY | 1))
        bars, i = [], 0
        while i < 6:
            off = PCI_BAR0 + 4 * i
            orig = self.read(off)
            self.write(off, 4, 0xFFFFFFFF)
            probe = self.read(off)
            self.write(off, 4, orig)
            io = bool(orig & 1)
            is64 = not io and (orig & 0x6) == 0x4
            mask = 0xFFFFFFFC if io else 0xFFFFFFF0
            low = probe & mask
            size = 0
            if is64:
                hi_orig = self.read(off + 4)
                self.write(off + 4, 4, 0xFFFFFFFF)
                hi = self.read(off + 4)
                self.write(off + 4, 4, hi_orig)
                full = (hi << 32 | low) if low or hi else 0
                size = ((~full) & 0xFFFFFFFFFFFFFFFF) + 1 if full else 0
            elif low:
                size = ((~low) & 0xFFFFFFFF) + 1
                if io:
                    size &= 0xFFFF
            if size:
                bars.append(Bar(i, size, is64, io, bool(orig & 0x8)))
            i += 2 if is64 else 1
        self.write(PCI_COMMAND, 2, cmd)
        return bars

    def place_bars(self, base, bus_master=True):
        """Sizes the memory BARs, places each naturally aligned from base upwards, and turns on
        memory decoding (and bus mastering); returns {index: Bar}. I/O BARs are left off."""
        placed, addr = {}, base
        for bar in self.size_bars():
            if bar.io:
                continue
            addr = (addr + bar.size - 1) & ~(bar.size - 1)
            off = PCI_BAR0 + 4 * bar.index
            self.write(off, 4, addr & 0xFFFFFFFF)
            if bar.is64:
                self.write(off + 4, 4, addr >> 32)
            bar.addr = addr
            placed[bar.index] = bar
            addr += bar.size
        cmd = self.read(PCI_COMMAND, 2) | PCI_COMMAND_MEMORY
        if bus_master:
            cmd |= PCI_COMMAND_MASTER
        self.write(PCI_COMMAND, 2, cmd)
        return placed

    def enable_msi(self, addr, data):
        """Points the MSI capability (one vector) at addr/data and enables it."""
        cap = self.caps().get(PCI_CAP_ID_MSI)
        if cap is None:
            raise QtestError("no MSI capability")
        ctrl = self.read(cap + 2, 2)
        self.write(cap + 4, 4, addr & 0xFFFFFFFF)
        if ctrl & 0x80:  # 64-bit address
            self.write(cap + 8, 4, addr >> 32)
            self.write(cap + 12, 2, data)
        else:
            self.write(cap + 8, 2, data)
        self.write(cap + 2, 2, (ctrl & ~0x70) | 1)

    def disable_msi(self):
        cap = self.caps()[PCI_CAP_ID_MSI]
        self.write(cap + 2, 2, self.read(cap + 2, 2) & ~1)

    def msix(self, bars):
        """(table address, PBA address, vector count) of the MSI-X capability, given placed
        BARs."""
        cap = self.caps().get(PCI_CAP_ID_MSIX)
        if cap is None:
            raise QtestError("no MSI-X capability")
        ctrl = self.read(cap + 2, 2)
        table = self.read(cap + 4)
        pba = self.read(cap + 8)
        return (bars[table & 7].addr + (table & ~7), bars[pba & 7].addr + (pba & ~7),
                (ctrl & 0x7FF) + 1, cap)
