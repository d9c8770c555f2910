"""An unmodified QEMU 11.1 (Debian trixie-backports) drives brokered devices over vfio-user:
qtest commands from the host play the guest's driver (no guest code runs in that QEMU), QEMU's
own vfio-user-pci client talks to the device's worker, and the worker's requests go through the
broker to the real device, bound to vfio-pci in the test guest behind the emulated IOMMU.
See vbqemu.py for how QEMU 11.1 gets into the test guest.

How QEMU without KVM delivers an interrupt, which the MSI checks rely on: the worker signals
the eventfd QEMU gave it with SET_IRQS; QEMU's vfio-pci handler calls msi_notify/msix_notify,
and msi_send_message stores the message data at the message address through the device's bus
master address space. An address in guest RAM (instead of the APIC's 0xfee00000) turns the
interrupt into a 4-byte memory write that qtest reads back (checked against QEMU's own emulated
edu: the same write lands)."""

import json
import time

from vbbroker import Broker
from vbguest import Device, Topology, guest_test, note
from vbqemu import (QEMU_PORTS, QEMU_SHARES, Qemu11, compare_config, parse_config_dump,
                    readme_command_line, wait_for)
from vbqtest import PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX, PciFunction

# QEMU 11.1 pins its whole RAM through the broker (256 MiB), next to the test guest's own needs.
TOPOLOGY = Topology(devices=[Device("edu"), Device("e1000e")], mem=1536, shares=QEMU_SHARES,
                    ports=QEMU_PORTS)

RAM_SIZE = 256 << 20
BAR_BASE = 0xE0000000  # q35: above the MMCONFIG window (0xb0000000, 256 MiB), below the IOAPIC
EDU_IDS = (0x1234, 0x11E8)
E1000E_IDS = (0x8086, 0x10D3)


def vfu_socket(rep):
    """The vfio-user socket path of an AddDevice reply (vfio-brokerctl --json add)."""
    path = rep.get("vfio_user_socket_path")
    assert path, "AddDevice reply names no vfio-user socket: %r" % rep
    return path


def native_config(g, sock):
    """The first 256 bytes of config space as the native protocol shows them (vfio-demo-vmm)."""
    return parse_config_dump(g.check("vfio-demo-vmm config %s" % sock))


def proc_fds(g, pid):
    return int(g.check("ls /proc/%d/fd | wc -l" % pid).strip())


def vm_locked_kib(g, pid):
    """VmLck of a process: vfio_iommu_type1 charges every page it pins to the mapper's
    locked_vm, so this is the kernel's own count of the broker's pinned memory."""
    out = g.check("grep VmLck /proc/%d/status" % pid)
    return int(out.split()[1])


# ---- edu (QEMU's educational device: MSI, a DMA engine with a 4 KiB buffer at 0x40000)

EDU_ID, EDU_LIVENESS, EDU_FACT, EDU_STATUS = 0x00, 0x04, 0x08, 0x20
EDU_IRQ_STATUS, EDU_IRQ_RAISE, EDU_IRQ_ACK = 0x24, 0x60, 0x64
EDU_DMA_SRC, EDU_DMA_DST, EDU_DMA_CNT, EDU_DMA_CMD = 0x80, 0x88, 0x90, 0x98
EDU_BUF = 0x40000
EDU_DMA_RUN, EDU_DMA_TO_RAM = 1, 2


def edu_dma(q, bar0, src, dst, count, to_ram):
    q.writeq(bar0 + EDU_DMA_SRC, src)
    q.writeq(bar0 + EDU_DMA_DST, dst)
    q.writeq(bar0 + EDU_DMA_CNT, count)
    q.writeq(bar0 + EDU_DMA_CMD, EDU_DMA_RUN | (EDU_DMA_TO_RAM if to_ram else 0))
    wait_for("edu DMA completion", lambda: not q.readl(bar0 + EDU_DMA_CMD) & EDU_DMA_RUN)


def edu_dma_roundtrip(q, bar0, seed, src=0x100000, dst=0x200000, size=2048):
    """Guest RAM -> edu buffer -> other guest RAM, both directions through the real IOMMU of the
    test guest (the broker mapped QEMU's memfd RAM there); compared byte for byte with qtest
    reads of QEMU's RAM. 2 KiB at a time: QEMU 7.2's edu aborts on a DMA ending at its buffer's
    end (see README)."""
    pattern = bytes((seed + i * 131) & 0xFF for i in range(size))
    q.write(src, pattern)
    q.write(dst, bytes(size))
    edu_dma(q, bar0, src, EDU_BUF, size, to_ram=False)
    edu_dma(q, bar0, EDU_BUF, dst, size, to_ram=True)
    got = q.read(dst, size)
    assert got == pattern, "DMA result differs from byte %d on" % next(
        i for i in range(size) if got[i] != pattern[i])
    return size


def edu_msi(q, edu, bar0, addr, data):
    """Points MSI at guest RAM (addr, message data), raises an edu interrupt, and returns once
    QEMU has stored the message there."""
    q.writel(addr, 0)
    edu.enable_msi(addr, data)
    q.writel(bar0 + EDU_IRQ_RAISE, 0x1)
    wait_for("MSI write of 0x%x at 0x%x" % (data, addr), lambda: q.readl(addr) == data)
    q.writel(bar0 + EDU_IRQ_ACK, 0x1)


def edu_session(vm, seed):
    """Finds the edu, places its BAR, checks identification, factorial, DMA and MSI. Returns
    (PciFunction, BAR0 address)."""
    q = vm.q
    edu = PciFunction.find(q, *EDU_IDS)
    bars = edu.place_bars(BAR_BASE)
    assert 0 in bars and bars[0].size == 1 << 20 and not bars[0].is64, bars
    bar0 = bars[0].addr
    assert edu.read(0x10) & 0xFFFFFFF0 == bar0, "BAR0 did not take its address"
    ident = q.readl(bar0 + EDU_ID)
    assert ident & 0xFF == 0xED, "edu identification 0x%08x" % ident
    q.writel(bar0 + EDU_LIVENESS, 0x12345678 ^ seed)
    assert q.readl(bar0 + EDU_LIVENESS) == (~(0x12345678 ^ seed)) & 0xFFFFFFFF
    q.writel(bar0 + EDU_FACT, 10)
    wait_for("edu factorial", lambda: not q.readl(bar0 + EDU_STATUS) & 1)
    assert q.readl(bar0 + EDU_FACT) == 3628800
    edu_dma_roundtrip(q, bar0, seed)
    edu_msi(q, edu, bar0, 0x300000, 0x4560 + seed)
    return edu, bar0


@guest_test("guest_qemu11_qtest_runs", topology=TOPOLOGY, timeout=180)
def qemu11_qtest_runs(g):
    """QEMU 11.1 from the trixie root starts in the guest under qtest, with no device of ours,
    and answers: the prerequisite of every vfio_user_qemu_* test, failing on its own when the
    root or the guest's way of running it is broken."""
    out = g.check("qemu-system-x86_64 --version")
    assert "version 11.1" in out, out
    note(out.splitlines()[0])
    args = ["-machine", "q35", "-accel", "qtest", "-qtest", "stdio", "-display", "none",
            "-nodefaults"]
    with Qemu11(g, args, qmp=True) as vm:
        host = PciFunction.find(vm.q, 0x8086, 0x29C0)  # q35's host bridge (MCH)
        assert host.bdf == (0, 0, 0), host.bdf
        types = [t["name"] for t in vm.qmp("qom-list-types", implements="pci-device")]
        assert "vfio-user-pci" in types, types
        # RAM is RAM: what qtest writes, it reads back.
        vm.q.write(0x100000, b"vfio-user")
        assert vm.q.read(0x100000, 9) == b"vfio-user"


@guest_test("vfio_user_qemu_edu", topology=TOPOLOGY, timeout=600)
def vfio_user_qemu_edu(g):
    bdf = g.bdf("edu0")
    with Broker(g) as b:
        rep = b.add(bdf, opts="--protocol both")
        native = native_config(g, rep["socket_path"])
        t0 = time.monotonic()
        with Qemu11(g, readme_command_line(vfu_socket(rep))) as vm:
            q = vm.q
            edu = PciFunction.find(q, *EDU_IDS)
            qemu = q.cfg_image(edu.bdf)
            diff = compare_config(native, qemu)
            assert not diff, "QEMU's config space differs from the native view: " + \
                "; ".join(diff)
            assert set(edu.caps()) >= {PCI_CAP_ID_MSI}, edu.caps()
            st = b.status(bdf)
            # All of QEMU's RAM but the legacy holes below 1 MiB (VGA window, option ROMs, BIOS
            # shadow: ROM without an fd, refused).
            assert st["dma_mappings"] >= 1, st
            assert RAM_SIZE - (1 << 20) <= st["pinned_bytes"] <= RAM_SIZE, st
            edu, bar0 = edu_session(vm, 1)
            # A second message to another address and value: not a stale write being read.
            q.writel(0x300000, 0)
            edu_msi(q, edu, bar0, 0x300040, 0x7777)
            assert q.readl(0x300000) == 0, "the first MSI address was written again"
            note("edu through QEMU 11.1: %d pinned bytes in %d mappings, %.1f s"
                 % (st["pinned_bytes"], st["dma_mappings"], time.monotonic() - t0))
        st = b.wait_status(bdf, lambda s: s["dma_mappings"] == 0 and s["pinned_bytes"] == 0,
                           "mappings dropped after QEMU went away")
        assert sum(i["enabled"] for i in st["irqs"]) == 0, st


# ---- e1000e (82574: MSI-X with 5 vectors, table and PBA in BAR 3)

E1000E_ICR, E1000E_ICS, E1000E_IMS, E1000E_IVAR = 0x00C0, 0x00C8, 0x00D0, 0x00E4
E1000E_NVEC = 5
MSIX_SLOTS = 0x300000  # vector v writes its message at MSIX_SLOTS + 16 * v


def e1000e_cause(v):
    return 1 << (20 + v)  # RXQ0, RXQ1, TXQ0, TXQ1, OTHER; IVAR routes cause v to vector v


def msix_data(v):
    return 0x5150 + v


def msix_irq_count(g, bdf, v):
    """How many times the test guest's kernel took MSI-X vector v of the device (vfio-pci's
    handler, which signals the VMM's eventfd)."""
    out = g.check("grep 'vfio-msix\\[%d\\](%s)' /proc/interrupts" % (v, bdf))
    return sum(int(x) for x in out.split()[1:-3] if x.isdigit())


def e1000e_echo_window():
    """QEMU 7.2's e1000e (the device in the test guest) re-notifies a vector when its throttle
    timer (EITR, 128 us) expires, and asserts if that timer finds MSI-X disabled (see README):
    let the window pass before judging other vectors or letting go of the device."""
    time.sleep(0.2)


@guest_test("vfio_user_qemu_e1000e_msix", topology=TOPOLOGY, timeout=600)
def vfio_user_qemu_e1000e_msix(g):
    """MSI-X through QEMU's own table emulation: QEMU 11.1 keeps the table and PBA the guest
    sees and hands the worker one eventfd per vector (SET_IRQS); every vector is delivered as a
    memory write of its own message; a vector masked in QEMU's table, raised by the device, is
    held (QEMU traces vfio_msix_pba_enable, nothing is written) and delivered when unmasked.
    QEMU's PBA itself reads 0 through qtest even then, so the test does not lean on it."""
    bdf = g.bdf("e1000e0")
    with Broker(g) as b:
        rep = b.add(bdf, opts="--protocol vfio-user")
        # QEMU's own trace says when it took a masked vector's interrupt and held it.
        args = readme_command_line(vfu_socket(rep)) + ["-trace", "vfio_msix_pba_enable"]
        with Qemu11(g, args) as vm:
            q = vm.q
            nic = PciFunction.find(q, *E1000E_IDS)
            bars = nic.place_bars(BAR_BASE)
            table, pba, nvec, cap = nic.msix(bars)
            assert nvec == E1000E_NVEC, nvec
            bar0 = bars[0].addr
            slots = [MSIX_SLOTS + 16 * v for v in range(nvec)]
            q.write(MSIX_SLOTS, bytes(16 * nvec))
            # As Linux brings MSI-X up: enable with the function masked, program each entry,
            # route the causes, lift the function mask.
            ctrl = nic.read(cap + 2, 2)
            nic.write(cap + 2, 2, ctrl | 0xC000)
            for v in range(nvec):
                e = table + 16 * v
                q.writel(e, slots[v])
                q.writel(e + 4, 0)
                q.writel(e + 8, msix_data(v))
                q.writel(e + 12, 0)
            q.writel(bar0 + E1000E_IVAR, 0x000CBA98)
            q.writel(bar0 + E1000E_IMS, 0x01F00000)
            nic.write(cap + 2, 2, (ctrl | 0x8000) & ~0x4000)
            st = b.status(bdf)
            assert any(i["index"] == 2 and i["enabled"] for i in st["irqs"]), st

            for v in range(nvec):
                q.write(MSIX_SLOTS, bytes(16 * nvec))
                q.writel(bar0 + E1000E_ICS, e1000e_cause(v))
                wait_for("vector %d's message at 0x%x" % (v, slots[v]),
                         lambda: q.readl(slots[v]) == msix_data(v))
                e1000e_echo_window()
                others = [o for o in range(nvec) if o != v and q.readl(slots[o])]
                assert not others, "vector %d raised, vectors %r wrote too" % (v, others)
                q.writel(bar0 + E1000E_ICR, e1000e_cause(v))
                q.readl(bar0 + E1000E_ICR)
            note("MSI-X: %d vectors delivered through QEMU 11.1's table" % nvec)

            v = 2
            fired = msix_irq_count(g, bdf, v)
            q.writel(table + 16 * v + 12, 1)  # mask the vector in QEMU's table
            q.write(MSIX_SLOTS, bytes(16 * nvec))
            q.writel(bar0 + E1000E_ICS, e1000e_cause(v))
            # The device raised it: the test guest's kernel took the MSI-X interrupt and
            # signalled the eventfd QEMU gave for the vector.
            wait_for("vector %d raised by the device" % v,
                     lambda: msix_irq_count(g, bdf, v) > fired)
            wait_for("QEMU holding vector %d (trace vfio_msix_pba_enable)" % v,
                     lambda: g.run("grep -q vfio_msix_pba_enable %s" % vm.log)[0] == 0)
            assert q.readl(slots[v]) == 0, "a masked vector was delivered"
            q.writel(table + 16 * v + 12, 0)  # unmask: QEMU delivers what it held
            wait_for("vector %d delivered on unmask" % v,
                     lambda: q.readl(slots[v]) == msix_data(v))
            q.writel(bar0 + E1000E_ICR, e1000e_cause(v))
            e1000e_echo_window()
        st = b.wait_status(bdf, lambda s: s["dma_mappings"] == 0 and s["pinned_bytes"] == 0,
                           "mappings dropped after QEMU went away")
        assert sum(i["enabled"] for i in st["irqs"]) == 0, st


# ---- unplug, re-attach, kill

HOTPLUG_ARGS = [
    # Native PCIe hot-plug on the root port (q35 defaults to ACPI hot-plug, which needs the
    # guest's ACPI code to eject): device_del presses the attention button, and the slot's
    # power going off (the driver's answer, written here with qtest) completes the removal.
    "-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
    "-device", "pcie-root-port,id=vbrp0,bus=pcie.0,addr=0x10,chassis=1"]
PCI_EXP_SLTCTL, SLTCTL_PCC, SLTCTL_PIC = 0x18, 0x400, 0x300
SLTCTL_PIC_ON, SLTCTL_PIC_OFF = 0x100, 0x300


def vfu_device(sock, dev_id):
    return {"driver": "vfio-user-pci", "id": dev_id, "bus": "vbrp0",
            "socket": {"path": sock, "type": "unix"}, "x-msg-timeout": 120000}


def root_port_up(q):
    """What firmware would do for the root port: secondary bus 1, a memory window over
    BAR_BASE (16 MiB), no I/O or prefetchable window, memory and bus mastering on (the device's
    DMA and MSI go upstream through it). Returns (port, its PCIe capability offset)."""
    rp = PciFunction.find(q, 0x1B36, 0x000C)
    rp.write(0x18, 4, 0x00010100)  # primary 0, secondary 1, subordinate 1
    rp.write(0x1C, 2, 0x00F0)  # I/O base above limit: closed
    rp.write(0x20, 4, ((BAR_BASE >> 16) + 0xF0) << 16 | (BAR_BASE >> 16))
    rp.write(0x24, 4, 0x0000FFF0)  # prefetchable base above limit: closed
    rp.write(0x04, 2, 0x0006)
    return rp, rp.caps()[0x10]


def slot_power(rp, exp, on):
    ctl = rp.read(exp + PCI_EXP_SLTCTL, 2) & ~(SLTCTL_PCC | SLTCTL_PIC)
    ctl |= SLTCTL_PIC_ON if on else SLTCTL_PCC | SLTCTL_PIC_OFF
    rp.write(exp + PCI_EXP_SLTCTL, 2, ctl)


def edu_behind_port(vm, seed):
    """edu_session for the edu on bus 1; returns the pinned bytes the broker then reports."""
    q = vm.q
    edu = PciFunction.find(q, *EDU_IDS, bus=1)
    bars = edu.place_bars(BAR_BASE)
    bar0 = bars[0].addr
    assert q.readl(bar0 + EDU_ID) & 0xFF == 0xED
    edu_dma_roundtrip(q, bar0, seed)
    edu_msi(q, edu, bar0, 0x300000, 0x6000 + seed)
    return edu


def held(g, b, bdf, bpid, wpid):
    st = b.status(bdf)
    return (st["dma_mappings"], st["pinned_bytes"], sum(i["enabled"] for i in st["irqs"]),
            proc_fds(g, bpid), proc_fds(g, wpid), vm_locked_kib(g, bpid))


def wait_released(g, b, bdf, bpid, wpid, idle, what):
    """Waits until the broker and the worker hold exactly what they held with no VMM: no
    mapping, no pinned byte (the broker's count and the kernel's locked_vm), no interrupt
    route, and the same number of open fds in each process."""
    last = []

    def back():
        last[:] = [held(g, b, bdf, bpid, wpid)]
        return last[0] == idle
    try:
        wait_for(what, back)
    except AssertionError as e:
        raise AssertionError("%s: (mappings, pinned, irqs, broker fds, worker fds, VmLck kB) "
                             "%r, idle %r" % (e, last[0], idle)) from None


@guest_test("vfio_user_qemu_unplug_and_kill", topology=TOPOLOGY, timeout=900)
def vfio_user_qemu_unplug_and_kill(g):
    """QEMU 11.1 unplugs the device (QMP device_del, the slot powered off), plugs it back
    (device_add) and is then killed mid-session; after each, the broker and the worker hold no
    mapping, no pinned page, no interrupt route and no fd more than before the first VMM came,
    and the device serves the next VMM."""
    bdf = g.bdf("edu0")
    with Broker(g) as b:
        rep = b.add(bdf, opts="--protocol vfio-user")
        sock, wpid = vfu_socket(rep), rep["worker_pid"]
        idle = held(g, b, bdf, b.pid, wpid)
        assert idle[:3] == (0, 0, 0), idle
        args = [a for a in readme_command_line(sock) if not a.startswith("{")]
        assert args[-1] == "-device", args
        args = args[:-1] + HOTPLUG_ARGS + ["-device", json.dumps(vfu_device(sock, "vfu0"))]
        with Qemu11(g, args, qmp=True) as vm:
            rp, exp = root_port_up(vm.q)
            edu_behind_port(vm, 1)
            assert held(g, b, bdf, b.pid, wpid)[0] >= 1

            vm.qmp("device_del", id="vfu0")
            slot_power(rp, exp, on=False)
            vm.wait_event("DEVICE_DELETED", match=lambda d: d.get("device") == "vfu0")
            wait_released(g, b, bdf, b.pid, wpid, idle, "released after device_del")
            note("device_del: everything released")

            vm.qmp("device_add", vfu_device(sock, "vfu1"), timeout=300)
            slot_power(rp, exp, on=True)
            edu_behind_port(vm, 2)
            st = b.status(bdf)
            assert st["dma_mappings"] >= 1 and st["pinned_bytes"] > 0, st
            vm.kill()  # SIGKILL with RAM mapped and MSI on
        wait_released(g, b, bdf, b.pid, wpid, idle, "released after QEMU was killed")
        note("SIGKILL: everything released")
        with Qemu11(g, readme_command_line(sock)) as vm:
            edu_session(vm, 3)
        wait_released(g, b, bdf, b.pid, wpid, idle, "released after the next VMM")
        st = b.status(bdf)
        assert st["worker_pid"] == wpid and st["restarts"] == 0, st
