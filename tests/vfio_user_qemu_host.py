#!/usr/bin/env python3
"""tests/vfio_user_qemu_host.py BUILD_DIR: QEMU 11.1 (the trixie root of
tests/guest/qemu-root.sh, prepared when missing) on the host, under qtest, against the
standalone worker (`vfio-worker --device-image tests/fixtures/edu.img --vfio-user=PATH`): a
stock VMM drives a device image over vfio-user with no broker and no hardware. Prints TAP.

What it shows that the guest tests cannot: the worker binary as built here (seccomp kill)
serving QEMU's client on the host, and the worker's own fd count across QEMU sessions. What
needs the real device (DMA landing, interrupts arriving) is the guest tests' part.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "guest"))

from vbimage import ImageError  # noqa: E402
from vbqemu import (HostQemu, compare_config, parse_config_dump, qemu_root,  # noqa: E402
                    readme_command_line, wait_for)
from vbqtest import PCI_CAP_ID_MSI, PciFunction  # noqa: E402

IMAGE = os.path.join(HERE, "fixtures", "edu.img")
BAR_BASE = 0xE0000000


def fd_target(pid, fd):
    try:
        return "%s:%s" % (fd, os.readlink("/proc/%d/fd/%s" % (pid, fd)))
    except OSError:
        return fd + ":gone"


def fds(pid):
    return sorted(os.listdir("/proc/%d/fd" % pid), key=int)


class Worker:
    """The standalone worker serving edu.img natively (--listen) and over vfio-user."""

    def __init__(self, build, tmp):
        self.native = os.path.join(tmp, "native.sock")
        self.vfu = os.path.join(tmp, "vfu.sock")
        self.log = os.path.join(tmp, "worker.log")
        self.proc = subprocess.Popen(
            [os.path.join(build, "bin", "vfio-worker"), "--device-image=" + IMAGE,
             "--listen=" + self.native, "--vfio-user=" + self.vfu, "--seccomp=kill"],
            stdin=subprocess.DEVNULL, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        wait_for("worker sockets", lambda: self.proc.poll() is not None or (
            os.path.exists(self.native) and os.path.exists(self.vfu)))
        if self.proc.poll() is not None:
            raise AssertionError("vfio-worker exited %d: %s" % (self.proc.returncode,
                                                                 self.log_tail()))
        self.baseline = fds(self.proc.pid)

    def wait_idle(self, why):
        """Waits until the worker holds exactly the fds it had with no VMM (it notices a
        VMM's end on its own time)."""
        pid = self.proc.pid
        wait_for("worker fds back to %r %s (now %r)" % (
            self.baseline, why, [fd_target(pid, fd) for fd in fds(pid)]),
            lambda: fds(pid) == self.baseline)

    def log_tail(self):
        with open(self.log, errors="replace") as f:
            return f.read()[-2000:]

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def native_config(build, sock):
    out = subprocess.run([os.path.join(build, "bin", "vfio-demo-vmm"), "config", sock],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, "vfio-demo-vmm config: %s%s" % (out.stdout, out.stderr)
    return parse_config_dump(out.stdout)


def edu_checks(q, pattern_addr_value):
    """Finds the image's edu, places BAR0, writes/reads it; returns (function, BAR0)."""
    edu = PciFunction.find(q, 0x1234, 0x11E8)
    bars = edu.place_bars(BAR_BASE)
    assert list(bars) == [0] and bars[0].size == 1 << 20 and not bars[0].is64, bars
    bar0 = bars[0].addr
    assert edu.read(0x10) & 0xFFFFFFF0 == bar0, "BAR0 did not take its address"
    off, value = pattern_addr_value
    q.writel(bar0 + off, value)
    assert q.readl(bar0 + off) == value, "a BAR write did not reach the image"
    return edu, bar0


def test_edu_image(ctx):
    """QEMU realizes vfio-user-pci on the worker's socket with README's command line; its view
    of config space is the native one; BAR0 sizes and places as the image says; MMIO reaches the
    image; MSI enables (SET_IRQS accepted: QEMU stays up)."""
    w = ctx["worker"]
    native = native_config(ctx["build"], w.native)
    vm = HostQemu(ctx["root"], readme_command_line(w.vfu), os.path.join(ctx["tmp"], "q1.log"))
    try:
        edu = PciFunction.find(vm.q, 0x1234, 0x11E8)
        diff = compare_config(native, vm.q.cfg_image(edu.bdf))
        assert not diff, "QEMU's config space differs from the native view: " + "; ".join(diff)
        assert PCI_CAP_ID_MSI in edu.caps(), edu.caps()
        edu, bar0 = edu_checks(vm.q, (0x100, 0xA5C3F00D))
        edu.enable_msi(0x300000, 0x42)
        vm.q.cmd("endianness")  # QEMU is still there after SET_IRQS
        assert w.alive(), "the worker died: " + w.log_tail()
    finally:
        vm.kill()
    w.wait_idle("after QEMU was killed")


def test_kill_and_reconnect(ctx):
    """A QEMU killed mid-session (RAM mapped, MSI on) leaves the worker with the fds it had
    before; the next QEMU finds the device as the last one left it (state is the device's, not
    the session's)."""
    w = ctx["worker"]
    w.wait_idle("before QEMU started")
    before = w.baseline
    vm = HostQemu(ctx["root"], readme_command_line(w.vfu), os.path.join(ctx["tmp"], "q2.log"))
    try:
        edu, bar0 = edu_checks(vm.q, (0x200, 0x600DF00D))
        edu.enable_msi(0x300000, 0x43)
        during = fds(w.proc.pid)
        assert len(during) > len(before), \
            "no connection, DMA or eventfd fds while in use: %r -> %r" % (
                [fd_target(w.proc.pid, fd) for fd in before],
                [fd_target(w.proc.pid, fd) for fd in during])
    finally:
        vm.kill()
    w.wait_idle("after SIGKILL of QEMU")
    vm = HostQemu(ctx["root"], readme_command_line(w.vfu), os.path.join(ctx["tmp"], "q3.log"))
    try:
        edu, bar0 = edu_checks(vm.q, (0x300, 0x12345678))
        assert vm.q.readl(bar0 + 0x200) == 0x600DF00D, "device state lost across sessions"
    finally:
        vm.kill()
    w.wait_idle("after the second QEMU")
    assert w.alive(), "the worker died: " + w.log_tail()


TESTS = [("vfio_user_qemu_host_edu_image", test_edu_image),
         ("vfio_user_qemu_host_kill_and_reconnect", test_kill_and_reconnect)]


def main():
    if len(sys.argv) != 2:
        print("usage: %s BUILD_DIR" % sys.argv[0], file=sys.stderr)
        return 2
    build = os.path.abspath(sys.argv[1])
    print("1..%d" % len(TESTS), flush=True)
    failed = 0
    try:
        root = qemu_root()
        setup_error = None
    except ImageError as e:
        setup_error = str(e)
    with tempfile.TemporaryDirectory(prefix="vfu-qemu-") as tmp:
        worker = None
        try:
            for i, (name, fn) in enumerate(TESTS, 1):
                t0 = time.monotonic()
                try:
                    if setup_error:
                        raise AssertionError(setup_error)
                    if worker is None:
                        worker = Worker(build, tmp)
                    fn({"build": build, "root": root, "tmp": tmp, "worker": worker})
                    print("ok %d - %s" % (i, name), flush=True)
                except Exception as e:
                    failed += 1
                    print("not ok %d - %s" % (i, name), flush=True)
                    tb = traceback.extract_tb(e.__traceback__)[-1]
                    for line in ("%s:%d: %s: %s" % (os.path.basename(tb.filename), tb.lineno,
                                                    e.__class__.__name__, e)).splitlines():
                        print("# " + line, flush=True)
                print("# %s: %.1f s" % (name, time.monotonic() - t0), flush=True)
        finally:
            # Whatever ends this script (a failure, a closed stdout, ^C), the worker goes too.
            if worker:
                worker.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
