"""The soak of vfio-brokerd in a test guest, at any scale: tests/guest/cases/soak.py runs it
small in every `make check` (soak_short), tests/guest/soak/soak.py runs it at full size for
`make soak` (SOAK_SCALE scales it).

vfio-soak (tests/vmm/soak.c) does the counted work inside the guest against one edu device:
trapped accesses, worker SIGKILLs in the middle of a DMA map, a SET_IRQS and a config write,
VMM hang-ups in the middle of the same requests, AddDevice/RemoveDevice cycles. It reads the
broker's Rss (smaps_rollup), fd count and VmLck at the first tenth and at the end of each phase and fails
unless they are flat. This side adds QMP hot-plug cycles (a device plugged into the guest,
assigned, removed, unplugged) and checks at the end that every IOMMU group can be opened again.
Every figure is printed as a `# soak:` line."""

import time

from vbbroker import SOCK, Broker, config
from vbguest import Device, note


def run(g, accesses, kills, disconnects, cycles, qmp, budget):
    """One soak. budget: seconds vfio-soak may take."""
    edu = g.bdf("edu0")
    # Every kill is a restart: allow them all. Heartbeats as in production.
    with Broker(g, config(restart="on-failure", restart_max=1000, extra="")) as b:
        t0 = time.monotonic()
        rc, out = g.run("vfio-soak --control %s --broker-pid %d --bdf %s --accesses %d "
                        "--kills %d --disconnects %d --cycles %d"
                        % (SOCK, b.pid, edu, accesses, kills, disconnects, cycles),
                        timeout=budget)
        for line in out.splitlines():
            if line.startswith("soak:"):
                note(line)
        assert rc == 0, "vfio-soak exit %d:\n%s\nbroker log:\n%s" % (rc, out, b.log_tail())
        note("soak: vfio-soak seconds=%.1f" % (time.monotonic() - t0))

        t0 = time.monotonic()
        for i in range(qmp):
            bdf = g.hotplug(Device("edu", id="soakhp"))
            try:
                b.add(bdf, vm="soakhp")
                b.remove(bdf, "--force")
            finally:
                g.unplug("soakhp")
        if qmp:
            took = time.monotonic() - t0
            note("soak: qmp_hotplug n=%d seconds=%.1f per_cycle=%.2f" % (qmp, took, took / qmp))

        assert b.devices() == [], b.devices()
        for dev in ("edu0", "e1000e0", "nvme0"):
            bdf = g.bdf(dev)
            rc, out = g.run("guest_vfio_available " + bdf, timeout=60)
            assert rc == 0, "IOMMU group of %s not reopenable after the soak:\n%s" % (bdf, out)
        note("soak: every IOMMU group reopenable (edu0, e1000e0, nvme0)")
