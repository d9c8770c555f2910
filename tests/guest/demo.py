"""make demo: one real passthrough session, narrated.

Boots Debian's kernel under QEMU with an emulated Intel IOMMU and two PCI devices (edu and
e1000e) that the guest binds to vfio-pci, starts vfio-brokerd in it as an operator would,
assigns both devices to a VM with vfio-brokerctl, runs vfio-demo-vmm (a VMM built on
libvfiobroker) against the two workers, shows the broker's view, removes the devices and shuts
everything down. The last line is
    demo complete: <N> devices, <B> DMA bytes verified, <I> interrupts delivered
and the exit status is 0 only if every step worked.

    python3 tests/guest/demo.py BUILD_DIR
"""

import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import vbguest  # noqa: E402
from vbbroker import Broker  # noqa: E402


def say(msg=""):
    print(msg, flush=True)


def shell(g, cmd, timeout=120, show=True):
    """Runs a command in the guest, printing it and its output as a session transcript."""
    if show:
        say("  guest# " + cmd)
    t0 = time.monotonic()
    rc, out = g.run(cmd, timeout=timeout)
    dt = time.monotonic() - t0
    if show:
        for line in out.rstrip().splitlines():
            say("    " + line)
    if rc != 0:
        raise RuntimeError("'%s' failed with exit %d" % (cmd, rc))
    return out, dt


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: demo.py BUILD_DIR\n")
        return 2
    build = os.path.abspath(sys.argv[1])
    vbguest.install_signal_handlers()
    topo = vbguest.Topology(devices=["edu", "e1000e"], spare_ports=0)
    say("vfio-broker demo: a real passthrough session in a QEMU guest")
    say("")
    say("1. Boot Debian's kernel under QEMU (TCG) with an emulated Intel IOMMU (interrupt")
    say("   remapping on) and two PCI devices: edu (DMA engine, MSI) and e1000e (MSI-X).")
    t0 = time.monotonic()
    log = os.path.join(build, "guest", "demo.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with vbguest.Guest(build, topology=topo, log=log) as g:
        edu, nic = g.bdf("edu0"), g.bdf("e1000e0")
        say("   booted in %.1f s; the guest bound %s (edu) and %s (e1000e) to vfio-pci."
            % (g.boot_seconds, edu, nic))
        say("   (guest console log: %s)" % log)
        say("")
        say("2. Start vfio-brokerd, the only privileged process, with its seccomp policy on.")
        with Broker(g) as b:
            out, _ = shell(g, "grep -E '^Cap(Eff|Bnd)|^Seccomp:' /proc/%d/status" % b.pid)
            say("   It keeps CAP_CHOWN, CAP_SETUID, CAP_SETGID and CAP_IPC_LOCK, nothing more.")
            say("")
            say("3. Assign both devices to VM 'demo' with vfio-brokerctl. Each gets its own")
            say("   sandboxed vfio-worker; both share one IOMMU container, as one VM's devices do.")
            socks = {}
            for bdf in (edu, nic):
                t1 = time.monotonic()
                rep = b.add(bdf, vm="demo")
                socks[bdf] = rep["socket_path"]
                say("  guest# vfio-brokerctl add %s --vm demo" % bdf)
                say("    worker pid %d, IOMMU group %d, %s, VMM socket %s (%.0f ms)"
                    % (rep["worker_pid"], rep["iommu_group"], rep["iommu_backend"],
                       rep["socket_path"], (time.monotonic() - t1) * 1000))
            wpid = b.status(edu)["worker_pid"]
            out, _ = shell(g, "grep -E '^(Uid|Seccomp|NoNewPrivs|CapEff):' /proc/%d/status; "
                           "ls -a /proc/%d/root | tr '\\n' ' '; echo" % (wpid, wpid))
            say("   The edu worker: unprivileged uid, seccomp filter, no capabilities, and an")
            say("   empty root (the listing above).")
            say("")
            say("4. Run the demo VMM: it maps guest RAM (a memfd) for DMA through the broker,")
            say("   programs edu's DMA engine to copy it into the device and back, enables MSI")
            say("   and MSI-X, and counts interrupts arriving on its own eventfds.")
            out, dt = shell(g, "vfio-demo-vmm session %s %s" % (socks[edu], socks[nic]),
                            timeout=300)
            m = re.search(r"figures: devices=(\d+) dma_bytes_verified=(\d+) interrupts=(\d+)",
                          out)
            if not m:
                raise RuntimeError("the demo VMM printed no figures")
            devices, dma, irqs = (int(x) for x in m.groups())
            say("   VMM session: %.1f s" % dt)
            say("")
            say("5. The broker's view while the devices are assigned:")
            shell(g, "vfio-brokerctl list")
            shell(g, "vfio-brokerctl status %s" % edu)
            for bdf in (edu, nic):
                st = b.status(bdf)
                if st["dma_mappings"] != 0 or st["pinned_bytes"] != 0:
                    raise RuntimeError("%s: mappings left after the VMM ended: %r" % (bdf, st))
            say("   No DMA mapping is left: the VMM unmapped, and what it had not the worker")
            say("   dropped when it disconnected.")
            say("")
            say("6. Remove both devices (hot-unplug): interrupts off, DMA unmapped, device reset,")
            say("   worker ended, IOMMU group released.")
            for bdf in (edu, nic):
                shell(g, "vfio-brokerctl remove %s --force" % bdf)
            if b.devices():
                raise RuntimeError("devices still assigned after remove: %r" % b.devices())
            shell(g, "guest_vfio_available %s %s" % (edu, nic))
            say("   Both groups can be opened again: the broker let go of everything.")
        say("")
        say("7. vfio-brokerd stopped on SIGTERM with no worker left; shutting the guest down.")
    say("   whole session: %.1f s" % (time.monotonic() - t0))
    say("")
    say("demo complete: %d devices, %d DMA bytes verified, %d interrupts delivered"
        % (devices, dma, irqs))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, AssertionError, vbguest.GuestError) as e:
        sys.stderr.write("\nmake demo: FAILED: %s\n" % e)
        sys.exit(1)
