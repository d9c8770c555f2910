"""An unmodified QEMU 11.1 (Debian trixie-backports) drives brokered devices over vfio-user:
qtest commands from the host play the guest's driver (no guest code runs in that QEMU), QEMU's
own vfio-user-pci client talks to the device's worker, and the worker's requests go through the
broker to the real device, bound to vfio-pci in the test guest behind the emulated IOMMU.
See vbqemu.py for how QEMU 11.1 gets into the test guest."""

from vbguest import Device, Topology, guest_test, note
from vbqemu import QEMU_PORTS, QEMU_SHARES, Qemu11
from vbqtest import PciFunction

# QEMU 11.1 pins its whole RAM through the broker (256 MiB), next to the test guest's own needs.
TOPOLOGY = Topology(devices=[Device("edu"), Device("e1000e")], mem=1536, shares=QEMU_SHARES,
                    ports=QEMU_PORTS)

QTEST_ARGS = ["-machine", "q35", "-accel", "qtest", "-qtest", "stdio", "-display", "none",
              "-nodefaults"]


@guest_test("guest_qemu11_qtest_runs", topology=TOPOLOGY, timeout=180)
def qemu11_qtest_runs(g):
    """QEMU 11.1 from the trixie root starts in the guest under qtest, with no device of ours,
    and answers: the prerequisite of every vfio_user_qemu_* test, failing on its own when the
    root or the guest's way of running it is broken."""
    out = g.check("qemu-system-x86_64 --version")
    assert "version 11.1" in out, out
    note(out.splitlines()[0])
    with Qemu11(g, QTEST_ARGS, qmp=True) as vm:
        host = PciFunction.find(vm.q, 0x8086, 0x29C0)  # q35's host bridge (MCH)
        assert host.bdf == (0, 0, 0), host.bdf
        assert "vfio-user-pci" in json_names(vm.qmp("qom-list-types", implements="pci-device"))
        # RAM is RAM: what qtest writes, it reads back.
        vm.q.write(0x100000, b"vfio-user")
        assert vm.q.read(0x100000, 9) == b"vfio-user"


def json_names(types):
    return [t["name"] for t in types]
