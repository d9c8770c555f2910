"""vbqemu: a stock QEMU 11.1 (Debian trixie-backports, the vfio-user client) run inside the test
guest under qtest, driven from the host: the VMM nobody here wrote, for the vfio_user_qemu_*
tests.

    T = Topology(devices=[Device("edu")], shares=QEMU_SHARES, ports=QEMU_PORTS)
    with Qemu11(g, ["-machine", "q35", ..., "-qtest", "stdio", ...], qmp=True) as vm:
        dev = PciFunction.find(vm.q, 0x1234, 0x11e8)
        vm.qmp("device_del", id="dev0")

The trixie root with QEMU in it is prepared on the host by qemu-root.sh (cached outside the
build tree; built when missing, which needs root and network) and shared read-only into the
guest at /mnt/qemuroot, where rootfs/usr/lib/vbguest/qemu-system-x86_64 runs it. QEMU's qtest
channel (its stdio) and QMP are two virtio-serial ports, "vbqtest" and "vbqmp", whose host ends
this module reads (vbqtest.Qtest speaks the protocol).

Trusts: the root qemu-root.sh made. Everything QEMU says is parsed, never executed.
"""

import json
import os
import re
import select
import shlex
import subprocess
import time
import uuid

from vbimage import ImageError
from vbqtest import Qtest

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "..", "..", "README.md")
README_MARK = "<!-- the vfio_user_qemu tests run this command line -->"
QEMU_PORTS = ("vbqtest", "vbqmp")
GUEST_ROOT = "/mnt/qemuroot"


def qemu_root():
    """The host directory of the trixie root holding QEMU 11.1, built by qemu-root.sh when it is
    missing (minutes; its own log says how long). Raises ImageError with the reason."""
    try:
        r = subprocess.run([os.path.join(HERE, "qemu-root.sh")], capture_output=True, text=True,
                           timeout=1800)
    except subprocess.TimeoutExpired:
        raise ImageError("qemu-root.sh: no root within 30 minutes") from None
    path = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    if r.returncode != 0 or not os.path.isdir(path):
        raise ImageError("the QEMU 11.1 root cannot be prepared (tests/guest/qemu-root.sh, "
                         "exit %d): %s" % (r.returncode, r.stderr.strip()[-1500:]))
    return path


QEMU_SHARES = {"qemuroot": qemu_root}


def readme_command_line(sock):
    """The QEMU command line README.md documents (the block after the marker README_MARK), as
    argv without the binary, its vfio-user socket path replaced by sock: the tests run exactly
    what an operator would copy."""
    with open(README) as f:
        text = f.read()
    m = re.search(re.escape(README_MARK) + r"\s*```[a-z]*\n(.*?)```", text, re.S)
    if not m:
        raise QemuError("README.md lost its tested QEMU command line (marker not found)")
    argv = shlex.split(m.group(1).replace("\\\n", " "))
    if argv[0] != "qemu-system-x86_64":
        raise QemuError("README.md's command line does not start QEMU: %r" % argv)
    out = []
    for a in argv[1:]:
        if a.startswith("{"):
            spec = json.loads(a)
            if spec.get("driver") != "vfio-user-pci":
                raise QemuError("README.md's -device is not vfio-user-pci: %r" % spec)
            spec["socket"]["path"] = sock
            a = json.dumps(spec, separators=(",", ":"))
        out.append(a)
    return out


class QemuError(AssertionError):
    pass


class Qemu11:
    """One QEMU 11.1 process in guest g, started with args (its whole command line after the
    binary name, which must include -qtest stdio). With qmp=True, "-qmp pipe:PORT" is appended
    and the QMP handshake done. The qtest driver is .q; stderr goes to the guest file .log."""

    # QEMU's start includes realizing the device, whose DMA maps the broker pins and maps
    # through the test guest's emulated IOMMU under TCG: 16 s for 256 MiB on a loaded host.
    START_TIMEOUT = 300

    def __init__(self, g, args, qmp=False, log="/tmp/qemu11.log", timeout=60):
        self.g, self.args, self.use_qmp, self.log = g, list(args), qmp, log
        self.timeout = timeout
        self.pid = None
        self.q = None
        self._seq = 0
        self.events = []

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            from vbguest import note
            note("QEMU 11.1 stderr (tail):\n" + self.log_tail())
        self.kill()
        return False

    def _drain(self, port):
        port.buf = b""
        port.sock.setblocking(False)
        try:
            while port.sock.recv(65536):
                pass
        except BlockingIOError:
            pass
        finally:
            port.sock.setblocking(True)

    def start(self):
        g = self.g
        qt = g.port("vbqtest")
        self._drain(qt)
        args = list(self.args)
        if self.use_qmp:
            self._qmp = g.port("vbqmp")
            self._drain(self._qmp)
            args += ["-qmp", "pipe:" + g.check("vbport vbqmp").strip()]
        token = uuid.uuid4().hex
        cmd = "vbport vbqtest %s qemu-system-x86_64 %s 2>%s & echo $!" % (
            token, " ".join(shlex.quote(a) for a in args), self.log)
        self.pid = int(g.check(cmd).strip().splitlines()[-1])
        deadline = time.monotonic() + self.START_TIMEOUT
        try:
            while qt.readline(deadline) != "@@VBPORT " + token:
                pass
        except TimeoutError:
            raise QemuError("QEMU's qtest port never opened:\n" + self.log_tail()) from None
        self.q = Qtest(qt.send, self._alive_readline(qt), self.timeout)
        # The first reply proves QEMU is up and reading (or shows why it is not).
        try:
            self.q.cmd("endianness", timeout=self.START_TIMEOUT)
        except (TimeoutError, QemuError) as e:
            raise QemuError("QEMU 11.1 did not answer qtest (%s):\n%s"
                            % (e.__class__.__name__, self.log_tail())) from None
        if self.use_qmp:
            greeting = json.loads(self._qmp.readline(time.monotonic() + self.timeout))
            if "QMP" not in greeting:
                raise QemuError("unexpected QMP greeting %r" % greeting)
            self.qmp("qmp_capabilities")
        return self

    def _alive_readline(self, port):
        def readline(deadline):
            while True:
                try:
                    return port.readline(min(deadline, time.monotonic() + 2))
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
                    if not self.alive():
                        raise QemuError("QEMU 11.1 exited:\n" + self.log_tail()) from None
        return readline

    def alive(self):
        return self.pid is not None and self.g.run("kill -0 %d" % self.pid)[0] == 0

    def log_tail(self, lines=30):
        return self.g.run("tail -n %d %s" % (lines, self.log))[1]

    def qmp(self, command, args=None, timeout=30, **kw):
        """Runs a QMP command on this QEMU; returns its "return" value, raises QemuError."""
        self._seq += 1
        msg = {"execute": command, "id": self._seq}
        a = dict(args or {}, **kw)
        if a:
            msg["arguments"] = a
        self._qmp.send(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self._qmp.readline(deadline))
            if "event" in reply:
                self.events.append(reply)
            elif reply.get("id") == self._seq:
                break
        if "error" in reply:
            raise QemuError("QMP %s: %s" % (command, reply["error"]))
        return reply.get("return")

    def wait_event(self, name, timeout=30, match=None):
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name and (match is None or match(ev.get("data", {}))):
                    return self.events.pop(i)
            try:
                self.events.append(json.loads(self._qmp.readline(deadline)))
            except TimeoutError:
                raise QemuError("no QMP event %s within %d s" % (name, timeout)) from None

    def kill(self, sig="KILL"):
        """Kills QEMU with sig and waits until it has gone (the guest reaps it)."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        self.g.run("kill -%s %d" % (sig, pid))
        rc, _ = self.g.run("i=0; while kill -0 %d 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; "
                           "i=$((i+1)); done; ! kill -0 %d 2>/dev/null" % (pid, pid), timeout=40)
        if rc != 0:
            raise QemuError("QEMU 11.1 (pid %d) still runs 20 s after SIGKILL" % pid)


def wait_for(what, pred, timeout=60, poll=0.05):
    """Polls pred() until it returns something true (returned); raises AssertionError naming
    what after timeout seconds: the bound for any device-side event on a loaded machine."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %d s" % (what, timeout))
        time.sleep(poll)


def parse_config_dump(out):
    """The 256 config bytes `vfio-demo-vmm config` printed (lines "config OFF: XX ...")."""
    data = bytearray()
    for line in out.splitlines():
        if line.startswith("config "):
            data += bytes(int(x, 16) for x in line.split(":", 1)[1].split())
    if len(data) != 256:
        raise AssertionError("vfio-demo-vmm config printed %d bytes:\n%s" % (len(data), out))
    return bytes(data)


def compare_config(native, qemu):
    """QEMU's view of config space (qtest reads through its vfio-pci) against the native
    protocol's view of the same device. Equal except where QEMU's vfio-pci owns the register
    (hw/vfio/pci.c emulates it and never shows the device's value): the command register (QEMU's
    reset value, no firmware ran), the BARs and the ROM BAR (QEMU's own, unassigned) and the
    interrupt line (a firmware value). Returns the differing offsets outside those, described."""
    owned = set(range(0x04, 0x06)) | set(range(0x10, 0x28)) | set(range(0x30, 0x34)) | {0x3C}
    return ["0x%02x: native %02x qemu %02x" % (i, native[i], qemu[i])
            for i in range(min(len(native), len(qemu))) if i not in owned and native[i] != qemu[i]]


class HostQemu:
    """QEMU 11.1 from the root run on the host (the same wrapper the guest uses, pointed at
    the host's copy of the root), qtest on its stdio, QMP on a unix socket when qmp_path is
    given. For the host tests against the standalone worker."""

    WRAPPER = os.path.join(HERE, "rootfs", "usr", "lib", "vbguest", "qemu-system-x86_64")

    def __init__(self, root, args, log, qmp_path=None, timeout=60):
        env = dict(os.environ, VB_QEMU_ROOT=root)
        argv = [self.WRAPPER] + list(args)
        if qmp_path:
            argv += ["-qmp", "unix:%s,server=on,wait=off" % qmp_path]
        self.log = log
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(log, "wb"), env=env, start_new_session=True)
        self._buf = b""
        self.q = Qtest(self._send, self._readline, timeout)
        try:
            self.q.cmd("endianness")
        except Exception as e:
            self.kill()
            raise QemuError("QEMU 11.1 did not answer qtest (%s): %s"
                            % (e.__class__.__name__, self.log_tail())) from None

    def _send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _readline(self, deadline):
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise QemuError("QEMU 11.1 exited: " + self.log_tail())
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def log_tail(self, n=2000):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
