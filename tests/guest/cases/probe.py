"""The generic probe (tests/vmm/probe_vmm.c, vfio-probe-vmm) on every device of every guest
topology: one test per distinct busybox-guest topology any case file registered, named
vmm_probe_every_device@<device ids>, run on every kernel. A device added to a topology is probed
with no new code. Devices a topology leaves unbound (vfio=False) are the subject of their own
tests and stay unbound; the systemd guests hold no device model the busybox guests lack.

The probe adds each device to its own broker itself (with mmap allowed, so that mapped and
trapped reads can be compared), removes and re-adds it, and counts the broker's fds; the broker
allows exactly the topology's devices, as their vendor:device pairs from the guest's sysfs."""

import vbguest
import vbkernel
from vbbroker import Broker, config
from vbguest import guest_test, note

NAME = "vmm_probe_every_device"

# Device models no other case uses, so that the probe also meets what they bring: virtio's
# vendor-specific capabilities and 64-bit prefetchable BAR, a conventional PCI device with I/O
# ports and an option ROM (rtl8139), an audio function with MSI only (ich9-intel-hda). Add a
# model here (or to any case's topology) and it is probed.
MODELS = vbguest.Topology(devices=["virtio-net-pci", "rtl8139", "ich9-intel-hda"],
                          spare_ports=0)


def probe_topology(g):
    bdfs = g.bdfs()
    assert bdfs, "a topology without a device bound to vfio-pci"
    ids = sorted({g.check("cat /sys/bus/pci/devices/%s/vendor /sys/bus/pci/devices/%s/device"
                          % (b, b)).replace("0x", "").strip().replace("\n", ":")
                  for b in bdfs})
    with Broker(g, config(allow=" ".join(ids))) as b:
        rc, out = g.run("vfio-probe-vmm --broker-pid %d %s" % (b.pid, " ".join(bdfs)),
                        timeout=600)
        fails = [l for l in out.splitlines() if l.startswith("FAIL")]
        assert rc == 0 and not fails, "vfio-probe-vmm: exit %d\n%s\nbroker log:\n%s" % (
            rc, "\n".join(fails) or out, b.log_tail())
        for line in out.splitlines():
            if line.startswith(("probe:", "figures:")):
                note(line)
        for line in out.splitlines():
            if line.startswith("note:"):
                note(line)
        for bdf in bdfs:
            for check in ("ident", "bars", "readonly", "caps", "irqs", "regs", "reset", "fds"):
                # A device whose BARs are all too small to map and has no I/O ports leaves
                # nothing to compare register reads with; the probe says so in a note.
                held = "ok: %s %s:" % (bdf, check) in out
                told = check == "regs" and "note: %s regs: no BAR with" % bdf in out
                assert held or told, "%s: no '%s' check held:\n%s" % (bdf, check, out)


@vbguest.after_load
def register_every_topology():
    seen = {}
    for topo in [t.topology for t in vbguest.REGISTRY] + [MODELS]:
        if getattr(topo, "guest_class", vbguest.Guest) is not vbguest.Guest:
            continue
        if not any(d.vfio for d in topo.devices):
            continue
        seen.setdefault(topo.key(), topo)
    for topo in seen.values():
        name = "%s@%s" % (NAME, "+".join(d.id for d in topo.devices if d.vfio))
        if not topo.intremap:
            name += "+nointremap"
        n, base = 1, name
        while any(t.name == name for t in vbguest.REGISTRY):
            n += 1
            name = "%s#%d" % (base, n)
        guest_test(name, topology=topo, timeout=900, kernels=vbkernel.ALL)(probe_topology)
