"""IOMMU group ownership through the broker on a real kernel. On a multi-function edu card whose
two functions share one IOMMU group (no ACS between functions), the second one left without a
driver, the broker must say which VM holds a group and why a second VM cannot have part of it,
and tell an operator to bind a member vfio-pci does not drive. With an mmap grant, a VMM holds
a device file of its own: removal must revoke its mappings, and the group it keeps open must be
refused to another VM naming that VMM (README, "Mmap grants")."""

import time

from vbbroker import Broker
import vbkernel
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


@guest_test("group_owner_errors", topology=MF, timeout=240, kernels=vbkernel.ALL)
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


def wait_log(g, log, what, timeout=60):
    """Waits until the VMM's log has `what` (a line it prints once it got there)."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = g.run("cat %s" % log)[1]
        assert "FAIL" not in out, out
        if what in out:
            return out
        time.sleep(0.2)
    raise AssertionError("vfio-grant-vmm did not get to %r:\n%s" % (what, out))


@guest_test("mmap_grant_revoked_at_removal", timeout=240, kernels=vbkernel.ALL)
def mmap_grant_revoked_at_removal(g):
    """Issue 13 #3: a VMM's mmap grant is a device file of its own; removal turns decoding off,
    so its mapping faults and BAR reads fail; the group it keeps open is refused to another VM
    naming that VMM, and is free again once the VMM lets go."""
    edu = g.bdf("edu0")
    grp = group_of(g, edu)
    fifo, log = "/tmp/grant.fifo", "/tmp/grant.log"
    with Broker(g) as b:
        # Without allow_mmap there is no grant at all.
        rc, out = g.run("vfio-grant-vmm --none %s" % b.add(edu, vm="vm1")["socket_path"])
        assert rc == 0 and "no grant offered" in out, out
        b.remove(edu)

        sock = b.add(edu, vm="vm1", opts="--allow-mmap")["socket_path"]
        g.check("rm -f %s && mkfifo %s" % (fifo, fifo))
        pid = int(g.check("vfio-grant-vmm %s %s </dev/null >%s 2>&1 & echo $!"
                          % (sock, fifo, log)).split()[-1])
        try:
            out = wait_log(g, log, "holding: pid %d" % pid)
            assert "mapped and trapped reads agree" in out, out
            assert "grant is a VFIO device file" in out, out
            assert "mmap grant 1 to VMM pid %d" % pid in b.log_tail(200), b.log_tail()

            b.remove(edu, "--force")
            held = "IOMMU group %d stays open: the mmap grant of %s (vm vm1) went to VMM pid %d" \
                % (grp, edu, pid)
            assert held in b.log_tail(200), b.log_tail()

            g.check("echo removed > %s" % fifo)
            out = wait_log(g, log, "holding after removal")
            assert "the mapping is revoked (a read gets SIGBUS)" in out, out
            assert "a BAR read through the grant gets EIO" in out, out
            for line in out.splitlines():
                note(line)

            # The group is still the holder's: another VM is told whose.
            out = b.ctl("add %s --vm vm2" % edu, expect_rc=1)
            assert "IOMMU group %d is still open" % grp in out, out
            assert "went to VMM pid %d" % pid in out, out
            note("refused while held: " + out.strip().splitlines()[-1])

            g.check("echo release > %s" % fifo)
            wait_log(g, log, "released")
            g.run("wait %d 2>/dev/null; for i in $(seq 100); do kill -0 %d 2>/dev/null || "
                  "exit 0; sleep 0.1; done; exit 1" % (pid, pid), timeout=30)
        finally:
            g.run("kill -KILL %d 2>/dev/null; rm -f %s" % (pid, fifo))
        # Let go of: the next VM may have it.
        b.add(edu, vm="vm2")
        b.remove(edu)
