"""Guest tests: the guest's VFIO setup itself, before any broker code relies on it. Each case
runs tests/guest/guest_vfio_available.c in the default guest (edu, e1000e, nvme, each behind
its own root port, plus spare root ports for hot-plug)."""

import vbkernel
from vbguest import Device, Topology, guest_test, note


def run_available(g, bdfs):
    return g.run("guest_vfio_available " + " ".join(bdfs), timeout=60)


def assert_device_ok(out, bdf):
    for what in ("ok: %s bound to vfio-pci", "ok: %s IOMMU group", "ok: %s device fd"):
        assert what % bdf in out, "missing '%s' in:\n%s" % (what % bdf, out)


@guest_test("guest_vfio_available", kernels=vbkernel.ALL)
def vfio_available(g):
    bdfs = g.bdfs()
    assert len(bdfs) == 3, bdfs
    rc, out = run_available(g, bdfs)
    assert rc == 0, "guest_vfio_available exit %d:\n%s" % (rc, out)
    for bdf in bdfs:
        assert_device_ok(out, bdf)
    assert "ok: type1 IOMMU supported" in out, out
    note("type1v2: %s" % ("yes" if "ok: type1v2 IOMMU supported" in out else "no"))
    # Cross-check against sysfs as the host sees it: each device is on vfio-pci, alone in its
    # IOMMU group (the root ports have ACS), so each group can go to a different VM.
    devs = {d["bdf"]: d for d in g.pci_devices()}
    groups = [devs[b]["iommu_group"] for b in bdfs]
    assert all(devs[b]["driver"] == "vfio-pci" for b in bdfs), [devs[b] for b in bdfs]
    assert None not in groups and len(set(groups)) == len(groups), groups
    for gr in groups:
        members = [b for b, d in devs.items() if d["iommu_group"] == gr]
        assert len(members) == 1, "group %d holds %r" % (gr, members)


@guest_test("guest_vfio_available_unbound_device_fails")
def vfio_available_unbound_fails(g):
    # The check must notice a device that is not on vfio-pci, and still pass the others.
    edu, nic = g.bdf("edu0"), g.bdf("e1000e0")
    g.check("echo %s > /sys/bus/pci/devices/%s/driver/unbind" % (nic, nic))
    try:
        rc, out = run_available(g, [edu, nic])
        assert rc == 1, "exit %d with an unbound device:\n%s" % (rc, out)
        assert "FAIL: %s: not bound to vfio-pci (no driver)" % nic in out, out
        assert_device_ok(out, edu)
    finally:
        g.bind_vfio(nic)
    rc, out = run_available(g, [edu, nic])
    assert rc == 0, "exit %d after rebinding:\n%s" % (rc, out)


@guest_test("guest_vfio_available_bad_usage_fails")
def vfio_available_bad_usage(g):
    for args in ("", "0000:1:00.0", "../../../x", "0000:01:00.0 nonsense"):
        rc, out = g.run("guest_vfio_available " + args)
        assert rc == 2, "args %r: exit %d:\n%s" % (args, rc, out)
    rc, out = g.run("guest_vfio_available 0000:7f:00.0")
    assert rc == 1 and "FAIL: 0000:7f:00.0: not bound to vfio-pci (no driver)" in out, out


@guest_test("guest_hotplug_edu_binds_to_vfio")
def hotplug_edu(g):
    # QMP device_add into the spare root port: the guest must see the device, bind it to
    # vfio-pci and give it a viable group of its own; device_del must take it away again.
    bdf = g.hotplug(Device("edu", id="hp_available"))
    unplugged = False
    try:
        rc, out = run_available(g, [bdf])
        assert rc == 0, "hot-plugged %s: exit %d:\n%s" % (bdf, rc, out)
        assert_device_ok(out, bdf)
        g.unplug("hp_available")
        unplugged = True
    finally:
        if not unplugged:
            g.unplug("hp_available")
    rc, out = g.run("ls /sys/bus/pci/devices/%s" % bdf)
    assert rc != 0, "%s still present after device_del" % bdf


@guest_test("guest_vfio_available_without_intremap",
            topology=Topology(devices=["edu"], spare_ports=0, intremap=False))
def vfio_available_without_intremap(g):
    # Without interrupt remapping type1 attaches only because the guest sets
    # allow_unsafe_interrupts: make sure that path (Topology(intremap=False)) stays usable.
    rc, out = g.run("cat /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts")
    assert rc == 0 and out.strip() == "Y", out
    rc, out = run_available(g, g.bdfs())
    assert rc == 0, "exit %d:\n%s" % (rc, out)
    assert_device_ok(out, g.bdf("edu0"))
