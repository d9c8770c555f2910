"""IOMMU group ownership through the broker on a real kernel: a multi-function edu card whose two
functions share one IOMMU group (no ACS between functions), the second one left without a
driver. The broker must say which VM holds a group and why a second VM cannot have part of it,
and tell an operator to bind a member vfio-pci does not drive."""

from vbbroker import Broker
from vbguest import Device, Topology, guest_test, note

MF = Topology(devices=[Device("edu", id="mf0"),
                       Device("edu", id="mf1", function_of="mf0", vfio=False)],
              spare_ports=0)


def group_of(g, bdf):
    return int(g.check("basename $(readlink /sys/bus/pci/devices/%s/iommu_group)" % bdf).strip())


def unbind(g, bdf):
    """Back to no driver, as at boot (a test restores what it changes)."""
    g.run("echo > /sys/bus/pci/devices/%s/driver_override; "
          "[ -e /sys/bus/pci/devices/%s/driver ] && "
          "echo %s > /sys/bus/pci/devices/%s/driver/unbind; true" % (bdf, bdf, bdf, bdf))


@guest_test("group_owner_errors", topology=MF, timeout=240)
def group_owner_errors(g):
    f0, f1 = g.bdf("mf0"), g.bdf("mf1")
    grp = group_of(g, f0)
    assert group_of(g, f1) == grp, "the two functions are not in one IOMMU group"
    assert g.run("test -e /sys/bus/pci/devices/%s/driver" % f1)[0] != 0, "mf1 has a driver"
    try:
        with Broker(g) as b:
            # A member of a viable group without a driver: the kernel says ENODEV; the broker
            # says what to do.
            out = b.ctl("add %s --vm vm1" % f1, expect_rc=1)
            assert "%s (IOMMU group %d) has no driver, not vfio-pci" % (f1, grp) in out, out
            assert "--bind" in out and "driverctl set-override %s vfio-pci" % f1 in out, out
            note("unbound member: " + out.strip().splitlines()[-1])

            # The group goes to vm1 with its first function; vm2 cannot have the second.
            b.add(f0, vm="vm1")
            out = b.ctl("add %s --vm vm2 --bind" % f1, expect_rc=1)
            assert "IOMMU group %d belongs to vm vm1 (%s)" % (grp, f0) in out, out
            assert "an IOMMU group belongs to one VM" in out, out
            assert f1 not in [d["bdf"] for d in b.devices()]
            assert b.status(f0)["state"] == "ready"
            note("second VM: " + out.strip().splitlines()[-1])

            # The same VM may have both: they share the group (and its container).
            b.add(f1, vm="vm1")
            assert {d["bdf"] for d in b.devices()} == {f0, f1}
            b.remove(f0)
            # vm1 still holds the group through f1: the refusal names what is left.
            out = b.ctl("add %s --vm vm2" % f0, expect_rc=1)
            assert "belongs to vm vm1 (%s)" % f1 in out, out
            b.remove(f1)
            # Released: another VM may have the group now.
            b.add(f0, vm="vm2")
            b.remove(f0)
    finally:
        unbind(g, f1)
