"""vbguest: boots Debian's kernel under QEMU (TCG) with an emulated Intel IOMMU and PCI devices
bound to vfio-pci inside the guest, and drives the guest from the host. Python 3 stdlib only.

    from vbguest import Guest, Device
    with Guest("build", devices=[Device("edu"), Device("e1000e")]) as g:
        rc, out = g.run("guest_vfio_available " + g.bdf("edu0"))
        image = g.read_file("/sys/bus/pci/devices/%s/config" % g.bdf("edu0"))
        g.qmp("query-pci")

What it trusts: the build directory, the kernel and modules it boots (vbkernel.py), QEMU. What it
does not: the guest. Everything the guest says arrives base64-framed on a channel of its own (a
virtio-serial port, so kernel console noise never mixes with results and no tty line discipline
sits in the way: a second UART lost input under load); the console (ttyS0) goes to a log file.

QEMU never outlives a Guest: it runs in its own process group with PR_SET_PDEATHSIG, and it is
killed on close(), on leaving the `with` block (exceptions, KeyboardInterrupt, SystemExit), at
interpreter exit, and when any wait on the guest times out. install_signal_handlers() turns
SIGTERM/SIGHUP into SystemExit so those paths run for them too.

Guest layout: busybox at /bin, every file of BUILD/bin at /opt/vfio-broker/bin (first on PATH),
shared libraries at the paths ldd resolved on the host, the VFIO modules at
/lib/modules/<kver>, helper scripts at /usr/lib/vbguest (bind-vfio BDF..., vbguest-serve).
/tmp, /run and /dev/shm are tmpfs; commands run as root with cwd /root.
"""

import atexit
import base64
import ctypes
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import vbkernel
from vbimage import ImageError, build_initramfs, kernel_image

# PCI slots on pcie.0: the command channel's virtio-serial device at CHANNEL_SLOT, devices placed
# directly on the root bus from DIRECT_SLOT0, root ports from ROOT_PORT_SLOT0 (one per device that
# asks for one, then the spare hot-plug ports).
CHANNEL_SLOT = 0x03
DIRECT_SLOT0 = 0x04
ROOT_PORT_SLOT0 = 0x10
MAX_SLOT = 0x1E  # 0x1f holds the ICH9 LPC/SATA/SMBus functions

# Longest line sent to the guest at once (see rootfs/usr/lib/vbguest/vbguest-serve).
LINE_MAX = 16384

# Seconds past a command's own timeout (which the guest enforces) before the guest counts as hung.
HANG_GRACE = 15

# Exit codes of sh for a command it cannot find (127) or cannot execute (126).
_RC_NOT_FOUND = (126, 127)

# Every command the harness and tests/guest/cases run in the busybox guest, besides sh builtins.
# Guest.start() checks them all, so a busybox without one fails the boot with its name instead of
# letting a check read the shell's "not found" as an answer. Add a tool here when a case starts
# to rely on it (pgrep is deliberately absent: busybox-static has no pgrep; see Guest.pids()).
GUEST_TOOLS = ("base64", "basename", "cat", "chmod", "cp", "cut", "dd", "dirname", "grep", "head",
               "id", "insmod", "ls", "mkdir", "mv", "readlink", "rm", "sed", "seq", "sleep",
               "stat", "tail", "timeout", "tr", "wc")

# Console lines that start the interesting part of a log when a guest dies.
_CRASH = re.compile(r"Kernel panic|BUG:|Oops|general protection|sysrq: Trigger a crash|"
                    r"watchdog: BUG|INFO: task .* blocked")


def _short(text, n=200):
    text = text.replace("\n", "; ")
    return text if len(text) <= n else text[:n] + "... (%d bytes)" % len(text)


class GuestError(Exception):
    """The guest failed: did not boot, died, hung or broke the channel protocol."""


class GuestBootError(GuestError):
    pass


class GuestDead(GuestError):
    """QEMU is gone (or was killed because the guest stopped answering)."""


class GuestCommandError(GuestError):
    def __init__(self, cmd, rc, output):
        super().__init__("guest command failed (exit %d): %s\n%s"
                         % (rc, _short(cmd), output.rstrip()))
        self.cmd, self.rc, self.output = cmd, rc, output


class GuestToolMissing(GuestCommandError):
    """The shell could not find or execute a command (exit 127 or 126). Raised by every run():
    a check built on a tool the guest lacks would otherwise read the shell's 127 as the tool's
    own answer ("no such process", "not equal"), and pass."""

    def __init__(self, cmd, rc, output):
        GuestError.__init__(self, "a command is missing in the guest (exit %d, %s): %s\n%s"
                            % (rc, "not found" if rc == 127 else "not executable",
                               _short(cmd), output.rstrip()))
        self.cmd, self.rc, self.output = cmd, rc, output


class QmpError(Exception):
    def __init__(self, command, error):
        super().__init__("QMP %s: %s: %s" % (command, error.get("class"), error.get("desc")))
        self.command, self.error = command, error


class Device:
    """One QEMU PCI device of a guest topology.

    driver: QEMU device model ("edu", "e1000e", "nvme", ...).
    id: QEMU id, also the name tests use (guest.bdf(id)); default driver + index ("edu0").
    root_port: place it alone behind its own pcie-root-port (needed for secondary bus reset and
      for hot-unplug); False puts it directly on pcie.0 as an integrated endpoint.
    vfio: bind it to vfio-pci at boot; False leaves it unbound (no driver: the guest loads no
      other device drivers).
    props: extra QEMU properties, e.g. {"msix_qsize": 8}.
    function_of: the id of an earlier device of the topology: this one becomes the next function
      of that device's slot (which is then multifunction). Functions of one slot without ACS share
      an IOMMU group, as on real multi-function cards; root_port is the first function's.
    """

    def __init__(self, driver, id=None, root_port=True, vfio=True, props=None, function_of=None):
        self.driver = driver
        self.id = id
        self.root_port = root_port
        self.vfio = vfio
        self.props = dict(props or {})
        self.function_of = function_of
        if driver == "nvme" and "serial" not in self.props:
            self.props["serial"] = "vbnvme"

    def key(self):
        return (self.driver, self.id, self.root_port, self.vfio, tuple(sorted(self.props.items())),
                self.function_of)

    def __repr__(self):
        return "Device(%r, id=%r, root_port=%r, vfio=%r, function_of=%r)" % (
            self.driver, self.id, self.root_port, self.vfio, self.function_of)


DEFAULT_DEVICES = ("edu", "e1000e", "nvme")


class Topology:
    """What a guest boots with: its devices, spare (empty) root ports for hot-plug, memory (MiB),
    CPUs, extra kernel command line. Tests with equal topologies share one boot (see key()).

    intremap: the emulated IOMMU remaps interrupts (the default, as on any host a broker should
    run on). With intremap=False, vfio_iommu_type1 refuses to attach groups (VFIO_SET_IOMMU
    fails with EPERM) unless allow_unsafe_interrupts=1, which the guest then sets.

    shares: {tag: host_path_function}: host directories the guest mounts read-only (virtio-9p)
    at /mnt/<tag>. Each function is called when the guest starts and returns the directory; an
    ImageError it raises fails the guest's tests with its message (so an expensive preparation
    happens only when a test that needs it runs).
    ports: names of extra virtio-serial ports (besides the command channel): the guest sees
    each as the /sys/class/virtio-ports/*/name it has, the host talks to it with port(name).
    port_functions: root ports per slot (1-8). Above 1 the root ports are the functions of
    multifunction slots, so up to 15 * 8 devices get a root port, each its own IOMMU group
    (QEMU's pcie-root-port has ACS)."""

    def __init__(self, devices=DEFAULT_DEVICES, spare_ports=2, mem=1024, smp=1, cmdline="",
                 intremap=True, shares=None, ports=(), port_functions=1):
        devs = [d if isinstance(d, Device) else Device(d) for d in devices]
        counts = {}
        for d in devs:
            if d.id is None:
                n = counts.get(d.driver, 0)
                counts[d.driver] = n + 1
                d.id = "%s%d" % (d.driver, n)
        ids = [d.id for d in devs]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate device ids: %r" % ids)
        for i, d in enumerate(devs):
            if d.function_of is None:
                continue
            first = [e for e in devs[:i] if e.id == d.function_of and e.function_of is None]
            if not first:
                raise ValueError("%s: function_of=%r names no earlier first function"
                                 % (d.id, d.function_of))
            d.root_port = first[0].root_port
            if sum(1 for e in devs if e.function_of == d.function_of) > 7:
                raise ValueError("%s: more than 8 functions in one slot" % d.function_of)
        self.devices = devs
        self.spare_ports = spare_ports
        self.mem = mem
        self.smp = smp
        self.cmdline = cmdline
        self.intremap = intremap
        self.shares = dict(shares or {})
        self.ports = tuple(ports)
        if not 1 <= port_functions <= 8:
            raise ValueError("port_functions %r: want 1-8" % port_functions)
        self.port_functions = port_functions
        for name in list(self.shares) + list(self.ports):
            if not re.fullmatch(r"[a-z][a-z0-9]{0,30}", name):
                raise ValueError("share/port name %r: want [a-z][a-z0-9]*" % name)
        slots = [d for d in devs if d.function_of is None]
        ports = sum(1 for d in slots if d.root_port) + spare_ports
        if ROOT_PORT_SLOT0 + (ports + port_functions - 1) // port_functions - 1 > MAX_SLOT:
            raise ValueError("too many root ports (%d)" % ports)
        if DIRECT_SLOT0 + sum(1 for d in slots if not d.root_port) > ROOT_PORT_SLOT0:
            raise ValueError("too many devices on pcie.0")

    def key(self):
        return (tuple(d.key() for d in self.devices), self.spare_ports, self.mem, self.smp,
                self.cmdline, self.intremap, tuple(sorted(self.shares)), self.ports,
                self.port_functions)

    def describe(self):
        parts = [d.id + ("" if d.vfio else "(unbound)") for d in self.devices]
        if not self.intremap:
            parts.append("intremap off")
        parts += ["9p %s" % tag for tag in sorted(self.shares)]
        if self.spare_ports:
            parts.append("%d spare port(s)" % self.spare_ports)
        return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# QEMU process lifetime

_live = set()


def _kill_all_live():
    for g in list(_live):
        g.close()


atexit.register(_kill_all_live)


def install_signal_handlers():
    """Makes SIGTERM and SIGHUP raise SystemExit in the main thread (SIGINT already raises
    KeyboardInterrupt), so every Guest's cleanup runs on those paths too."""
    def handler(signum, frame):
        signal.signal(signum, signal.SIG_IGN)
        raise SystemExit(128 + signum)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


def _child_setup():
    # Dies with its parent even if the parent is SIGKILLed (PR_SET_PDEATHSIG = 1).
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _listen(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.bind(path)
    s.listen(1)
    return s


class _Line:
    """Line reader over a socket with deadlines; checks that QEMU still runs while it waits."""

    def __init__(self, sock, alive):
        self.sock, self.alive, self.buf = sock, alive, b""
        self.sent = 0

    def send(self, data):
        self.sock.sendall(data)
        self.sent += len(data)

    def readline(self, deadline):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1:]
                return line.rstrip(b"\r").decode("utf-8", "replace")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            r, _, _ = select.select([self.sock], [], [], min(left, 0.5))
            if not r:
                if not self.alive():
                    raise GuestDead("QEMU exited")
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise GuestDead("channel closed (QEMU exited)")
            self.buf += chunk


class Guest:
    """A running test guest. Use as a context manager; see the module docstring.

    build_dir: the CMake build (its bin/ goes into the guest).
    devices / spare_ports / mem / smp: see Topology (or pass topology=).
    log: console log path (default BUILD/guest/console.log).
    boot_timeout: seconds from QEMU start to the guest's READY.
    """

    def __init__(self, build_dir, devices=DEFAULT_DEVICES, spare_ports=2, mem=1024, smp=1,
                 log=None, boot_timeout=None, topology=None, initramfs=None, kernel=None,
                 kspec=None):
        self.build_dir = os.path.abspath(build_dir)
        self.topology = topology or Topology(devices, spare_ports, mem, smp)
        self.log_path = log or os.path.join(self.build_dir, "guest", "console.log")
        self.boot_timeout = boot_timeout or float(os.environ.get("VB_GUEST_BOOT_TIMEOUT", 180))
        self.initramfs = initramfs
        self.kernel = kernel  # the image QEMU boots (a path)
        self.kspec = kspec  # which kernel (vbkernel.Kernel); default: vbkernel.PRIMARY
        self.proc = None
        self.boot_seconds = None
        self.setup_status = None
        self._dir = None
        self._cmd = self._qmp = None
        self._seq = 0
        self._events = []
        self._slots = {}  # device id -> sysfs glob below /sys/devices/pci0000:00
        self._ports = []  # (root port id, sysfs path of the port, hot-plugged device id or None)
        self._bdf = {}
        self._share_paths = {}  # tag -> host directory
        self._port_socks = {}  # port name -> _Line

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- start / stop

    def _qemu_args(self, kver, initramfs):
        t = self.topology
        args = ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-cpu", "max",
                "-m", str(t.mem), "-smp", str(t.smp), "-nodefaults", "-display", "none",
                "-no-reboot", "-device",
                "intel-iommu,intremap=%s" % ("on" if t.intremap else "off"),
                "-chardev", "file,id=vbcon,append=on,path=" + self.log_path,
                "-device", "isa-serial,chardev=vbcon,index=0",
                "-device", "virtio-serial-pci,id=vbser,bus=pcie.0,addr=0x%x" % CHANNEL_SLOT,
                "-chardev", "socket,id=vbcmd,path=" + os.path.join(self._dir, "cmd.sock"),
                "-device", "virtserialport,bus=vbser.0,chardev=vbcmd,name=vbcmd",
                "-chardev", "socket,id=vbqmp,path=" + os.path.join(self._dir, "qmp.sock"),
                "-mon", "chardev=vbqmp,mode=control",
                "-kernel", self.kernel, "-initrd", initramfs]
        direct, port = DIRECT_SLOT0, ROOT_PORT_SLOT0
        nport = 0

        def add_port():
            nonlocal port, nport
            rp = "vbrp%d" % nport
            fn = nport % t.port_functions
            nport += 1
            multi = ",multifunction=on" if fn == 0 and t.port_functions > 1 else ""
            args.extend(["-device", "pcie-root-port,id=%s,bus=pcie.0,addr=0x%x.%d,chassis=%d,"
                         "slot=%d%s" % (rp, port, fn, nport, nport, multi)])
            path = "0000:00:%02x.%d" % (port, fn)
            if fn == t.port_functions - 1:
                port += 1
            return rp, path
        vfio = []
        place = {}  # first function's id -> [bus, slot, sysfs path prefix, functions so far]
        multi = {d.function_of for d in t.devices if d.function_of}
        for d in t.devices:
            props = "".join(",%s=%s" % (k, v) for k, v in d.props.items())
            if d.id in multi:
                props += ",multifunction=on"
            if d.function_of:
                p = place[d.function_of]
                fn = p[3]
                p[3] += 1
                args.extend(["-device", "%s,id=%s,bus=%s,addr=0x%x.%d%s"
                             % (d.driver, d.id, p[0], p[1], fn, props)])
                self._slots[d.id] = "%s%02x.%d" % (p[2], p[1], fn)
            elif d.root_port:
                rp, path = add_port()
                args.extend(["-device", "%s,id=%s,bus=%s,addr=0%s" % (d.driver, d.id, rp, props)])
                self._slots[d.id] = path + "/0000:*:00.0"
                self._ports.append([rp, path, d.id])
                place[d.id] = [rp, 0, path + "/0000:*:", 1]
            else:
                args.extend(["-device", "%s,id=%s,bus=pcie.0,addr=0x%x%s"
                             % (d.driver, d.id, direct, props)])
                self._slots[d.id] = "0000:00:%02x.0" % direct
                place[d.id] = ["pcie.0", direct, "0000:00:", 1]
                direct += 1
            if d.vfio:
                vfio.append(self._slots[d.id])
        for _ in range(t.spare_ports):
            rp, path = add_port()
            self._ports.append([rp, path, None])
        # no_timer_check: the kernel's boot-time check that the IO-APIC timer ticks counts
        # ticks against a busy-wait, which a loaded host running TCG loses ("timer doesn't
        # work through Interrupt-remapped IO-APIC", a panic); the guest's timer works.
        cmdline = ("console=ttyS0 quiet loglevel=4 panic=-1 intel_iommu=on rdinit=/init "
                   "8250.nr_uarts=1 mitigations=off random.trust_cpu=on no_timer_check")
        if not t.intremap:
            cmdline += " vfio_iommu_type1.allow_unsafe_interrupts=1"
        if vfio:
            cmdline += " vb.vfio=" + ",".join(vfio)
        if t.cmdline:
            cmdline += " " + t.cmdline
        for name in t.ports:
            args.extend(["-chardev", "socket,id=vbp%s,path=%s"
                         % (name, os.path.join(self._dir, "port-%s.sock" % name)),
                         "-device", "virtserialport,bus=vbser.0,chardev=vbp%s,name=%s"
                         % (name, name)])
        for tag, path in sorted(self._share_paths.items()):
            args.extend(["-virtfs", "local,path=%s,mount_tag=%s,security_model=none,readonly=on,"
                         "multidevs=remap" % (path, tag)])
        if self._share_paths:
            cmdline += " vb.9p=" + ",".join(sorted(self._share_paths))
        args.extend(["-append", cmdline])
        return args

    def start(self):
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self._dir = tempfile.mkdtemp(prefix="vbguest-")
        initramfs = self.initramfs
        try:
            if not self.kspec:
                self.kspec = vbkernel.get(vbkernel.PRIMARY)
            kver = self.kspec.release
            if not self.kernel:
                self.kernel = kernel_image(self.build_dir, self.kspec)
            if not initramfs:
                initramfs = os.path.join(self._dir, "initramfs.cpio")
                build_initramfs(self.build_dir, initramfs, self.kspec)
            for tag, prepare in self.topology.shares.items():
                self._share_paths[tag] = prepare()
        except (ImageError, OSError) as e:
            self.close()
            raise GuestBootError("cannot prepare the guest: %s" % e) from None
        cmd_l = _listen(os.path.join(self._dir, "cmd.sock"))
        qmp_l = _listen(os.path.join(self._dir, "qmp.sock"))
        port_l = {name: _listen(os.path.join(self._dir, "port-%s.sock" % name))
                  for name in self.topology.ports}
        args = self._qemu_args(kver, initramfs)
        with open(self.log_path, "wb") as f:
            f.write(("# %s\n" % " ".join(shlex.quote(a) for a in args)).encode())
        self.qemu_args = args
        t0 = time.monotonic()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=open(self.log_path + ".qemu", "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_child_setup, close_fds=True)
        _live.add(self)
        try:
            deadline = t0 + 20
            self._cmd = _Line(self._accept(cmd_l, deadline), self.alive)
            self._qmp = _Line(self._accept(qmp_l, deadline), self.alive)
            for name, listener in port_l.items():
                self._port_socks[name] = _Line(self._accept(listener, deadline), self.alive)
                listener.close()
            cmd_l.close()
            qmp_l.close()
            self._qmp_handshake(deadline)
            self._wait_ready(t0 + self.boot_timeout)
            self.boot_seconds = time.monotonic() - t0
            if self.setup_status != "ok":
                _, out = self.run("cat /run/vbguest/setup.log", timeout=30)
                raise GuestBootError("guest setup failed:\n" + out.rstrip())
            self._check_tools()
        except BaseException as e:
            self.close()
            if isinstance(e, (TimeoutError, GuestDead)):
                raise GuestBootError("guest did not boot: %s; console tail:\n%s"
                                     % (e.__class__.__name__ + (" " + str(e) if str(e) else ""),
                                        self.console_tail())) from None
            raise
        return self

    # What _check_tools() requires of this kind of guest (a subclass adds its own).
    tools = GUEST_TOOLS

    def _check_tools(self):
        """Fails the boot naming every command of self.tools the guest cannot run."""
        out = self.check("for t in %s; do command -v $t >/dev/null || echo $t; done; true"
                         % " ".join(self.tools), timeout=30)
        if out.split():
            raise GuestBootError("the guest lacks commands the tests rely on: %s"
                                 % " ".join(out.split()))

    def _accept(self, listener, deadline):
        while True:
            r, _, _ = select.select([listener], [], [], 0.2)
            if r:
                s, _ = listener.accept()
                s.setblocking(True)
                return s
            if not self.alive():
                raise GuestDead("QEMU exited at start: " + self._qemu_output())
            if time.monotonic() > deadline:
                raise TimeoutError("QEMU did not connect its sockets")

    def _qemu_output(self):
        try:
            with open(self.log_path + ".qemu", errors="replace") as f:
                return f.read().strip()[-2000:]
        except OSError:
            return ""

    def _wait_ready(self, deadline):
        while True:
            line = self._cmd.readline(deadline)
            if line.startswith("@@VB READY "):
                self.setup_status = line.split()[2]
                return

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def close(self):
        """Stops QEMU (SIGTERM, then SIGKILL to its process group) and removes the sockets."""
        _live.discard(self)
        for s in [self._cmd, self._qmp] + list(self._port_socks.values()):
            if s:
                s.sock.close()
        self._cmd = self._qmp = None
        self._port_socks = {}
        p = self.proc
        if p is not None:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(3)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    pass
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _die(self, why):
        self.close()
        raise GuestDead(why)

    def console_tail(self, lines=30):
        """The end of the console log, or from the first crash line on when there is one."""
        try:
            with open(self.log_path, errors="replace") as f:
                log = f.read().splitlines()
        except OSError:
            return "(no console log)"
        crash = [i for i, line in enumerate(log) if _CRASH.search(line)]
        tail = log[crash[0]:crash[0] + lines] if crash else log[-lines:]
        q = self._qemu_output()
        return "\n".join(tail) + ("\nqemu: " + q if q else "")

    def port(self, name):
        """The host end of the extra virtio-serial port name (Topology ports): an object with
        send(bytes) and readline(deadline) -> str, and .sock. What the guest writes before the
        host reads stays queued in the port; the host never sees the guest open or close it."""
        if name not in self._port_socks:
            raise GuestDead("no port %r (guest not running, or not in its Topology)" % name)
        return self._port_socks[name]

    # -- command channel

    def run(self, cmd, timeout=60):
        """Runs a sh command line in the guest; returns (exit code, stdout+stderr as str).
        Exit 127 or 126 (a command sh cannot find or execute) raises GuestToolMissing: no
        caller may take that for an answer. The guest kills the command after timeout seconds
        (exit code 137). A guest that does not answer within timeout + HANG_GRACE seconds is
        declared hung and killed (GuestDead)."""
        if not self._cmd:
            raise GuestDead("guest is not running")
        self._seq += 1
        sid = str(self._seq)
        payload = base64.b64encode(cmd.encode()).decode()
        deadline = time.monotonic() + timeout + HANG_GRACE
        try:
            self._cmd.sock.settimeout(timeout + HANG_GRACE)
            if len(payload) > LINE_MAX:
                for i in range(0, len(payload), LINE_MAX):
                    self._cmd.send(("PART %s\n" % payload[i:i + LINE_MAX]).encode())
                    while self._cmd.readline(deadline) != "@@VB ACK":
                        pass
                payload = "@"
            self._cmd.send(("RUN %s %d %s\n" % (sid, max(1, int(timeout)), payload))
                                   .encode())
            while self._cmd.readline(deadline) != "@@VB BEGIN " + sid:
                pass
            body = []
            while True:
                line = self._cmd.readline(deadline)
                if line.startswith("@@VB END "):
                    parts = line.split()
                    if len(parts) != 4 or parts[2] != sid:
                        self._die("command channel out of step: %r" % line)
                    rc = int(parts[3])
                    break
                body.append(line)
        except GuestDead:
            self.close()
            raise
        except (TimeoutError, OSError) as e:
            self._die("guest did not answer within %ds (%s): %s"
                      % (timeout + HANG_GRACE, e.__class__.__name__, _short(cmd)))
        try:
            out = base64.b64decode("".join(body), validate=True)
        except ValueError:
            self._die("undecodable reply to: %s" % _short(cmd))
        text = out.decode("utf-8", "replace")
        if rc in _RC_NOT_FOUND:
            raise GuestToolMissing(cmd, rc, text)
        return rc, text

    def pids(self, comm):
        """The pids of the guest's processes whose name (/proc/PID/comm) is comm, read from /proc
        with sh builtins only (busybox has no pgrep). A process that exits during the scan is
        simply not listed (stderr goes first: a redirection fails before the ones after it)."""
        out = self.check("for d in /proc/[0-9]*; do read -r c 2>/dev/null <$d/comm && "
                         "echo \"${d#/proc/} $c\"; done; true")
        pids = []
        for line in out.splitlines():
            pid, _, name = line.partition(" ")
            if not pid.isdigit():
                raise GuestError("unexpected /proc listing line: %r" % line)
            if name == comm:
                pids.append(int(pid))
        return pids

    def check(self, cmd, timeout=60):
        """run(), but raises GuestCommandError unless the exit code is 0; returns the output."""
        rc, out = self.run(cmd, timeout)
        if rc != 0:
            raise GuestCommandError(cmd, rc, out)
        return out

    def read_file(self, path, timeout=60):
        """Copies a file (or a sysfs attribute, e.g. a device's config space) out of the guest;
        returns its bytes. Raises GuestCommandError if the guest cannot read it."""
        out = self.check("base64 %s" % shlex.quote(path), timeout)
        return base64.b64decode("".join(out.split()), validate=True)

    def write_file(self, path, data, mode=0o644, timeout=60):
        """Writes bytes to a file in the guest (replacing it), sent raw over the channel."""
        if not self._cmd:
            raise GuestDead("guest is not running")
        deadline = time.monotonic() + timeout
        try:
            self._cmd.send(b"RECV %d\n" % len(data))
            self._cmd.send(data)
            while True:
                line = self._cmd.readline(deadline)
                if line.startswith("@@VB RECVD "):
                    break
        except GuestDead:
            self.close()
            raise
        except (TimeoutError, OSError) as e:
            self._die("guest did not take %d bytes within %ds (%s)"
                      % (len(data), timeout, e.__class__.__name__))
        if line.split()[2:] != [str(len(data))]:
            raise GuestError("guest stored %s of %d bytes" % (line.split()[2:], len(data)))
        self.check("chmod %o /run/vbguest/cmd/recv && mv /run/vbguest/cmd/recv %s"
                   % (mode, shlex.quote(path)), timeout)

    # -- PCI

    def pci_devices(self):
        """Every PCI function in the guest, as dicts: bdf, vendor, device, class (ints), driver
        (None when unbound), iommu_group (int or None), path (sysfs path below
        /sys/devices)."""
        out = self.check(
            "cd /sys/bus/pci/devices && for d in *; do "
            "drv=-; [ -e $d/driver ] && drv=$(basename $(readlink $d/driver)); "
            "grp=-; [ -e $d/iommu_group ] && grp=$(basename $(readlink $d/iommu_group)); "
            "echo $d $(cat $d/vendor $d/device $d/class) $drv $grp $(readlink -f $d); done")
        devs = []
        for line in out.splitlines():
            f = line.split()
            if len(f) != 7:
                raise GuestError("unexpected pci listing line: %r" % line)
            devs.append({"bdf": f[0], "vendor": int(f[1], 16), "device": int(f[2], 16),
                         "class": int(f[3], 16), "driver": None if f[4] == "-" else f[4],
                         "iommu_group": None if f[5] == "-" else int(f[5]), "path": f[6]})
        return devs

    def bdf(self, dev_id):
        """The guest's BDF (e.g. "0000:01:00.0") of the device with QEMU id dev_id."""
        if dev_id not in self._bdf:
            glob = self._slots.get(dev_id)
            if glob is None:
                raise KeyError("no device %r in this guest" % dev_id)
            out = self.check("for d in /sys/devices/pci0000:00/%s; do "
                             "[ -e $d/config ] && basename $d; done; true" % glob).split()
            if len(out) != 1:
                raise GuestError("device %s: expected one function at %s, found %r"
                                 % (dev_id, glob, out))
            self._bdf[dev_id] = out[0]
        return self._bdf[dev_id]

    def bdfs(self, vfio_only=True):
        """BDFs of the topology's boot-time devices (only those bound at boot, by default)."""
        return [self.bdf(d.id) for d in self.topology.devices if d.vfio or not vfio_only]

    def bind_vfio(self, *bdfs):
        self.check("bind-vfio " + " ".join(bdfs))

    # -- QMP

    def _qmp_handshake(self, deadline):
        greeting = json.loads(self._qmp.readline(deadline))
        if "QMP" not in greeting:
            raise GuestBootError("unexpected QMP greeting: %r" % greeting)
        self.qmp("qmp_capabilities")

    def qmp(self, command, args=None, timeout=30, **kw):
        """Sends a QMP command; returns its "return" value or raises QmpError. Arguments come
        from args (a dict, for names with dashes) and keyword arguments. Events that arrive
        meanwhile are kept for wait_event()."""
        if not self._qmp:
            raise GuestDead("guest is not running")
        self._seq += 1
        msg = {"execute": command, "id": self._seq}
        a = dict(args or {})
        a.update(kw)
        if a:
            msg["arguments"] = a
        deadline = time.monotonic() + timeout
        try:
            self._qmp.send(json.dumps(msg).encode() + b"\n")
            while True:
                reply = json.loads(self._qmp.readline(deadline))
                if "event" in reply:
                    self._events.append(reply)
                elif reply.get("id") == self._seq:
                    break
        except GuestDead:
            self.close()
            raise
        except (TimeoutError, OSError) as e:
            self._die("QMP %s: no answer (%s)" % (command, e.__class__.__name__))
        if "error" in reply:
            raise QmpError(command, reply["error"])
        return reply.get("return")

    def wait_event(self, name, timeout=30, match=None):
        """Waits for (and consumes) a QMP event named name whose "data" satisfies match(data)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self._events):
                if ev["event"] == name and (match is None or match(ev.get("data", {}))):
                    return self._events.pop(i)
            try:
                self._events.append(json.loads(self._qmp.readline(deadline)))
            except TimeoutError:
                raise GuestError("no QMP event %s within %ds" % (name, timeout)) from None

    # -- hot-plug

    def hotplug(self, device, vfio=True, timeout=60):
        """Hot-plugs device (a Device; its id must be set) into a free spare root port, waits
        until the guest sees it, binds it to vfio-pci unless vfio=False; returns its BDF."""
        if device.id is None or device.id in self._slots:
            raise ValueError("hot-plugged devices need a new, unique id")
        free = [p for p in self._ports if p[2] is None]
        if not free:
            raise GuestError("no free root port (Topology spare_ports)")
        port = free[0]
        args = {"driver": device.driver, "id": device.id, "bus": port[0]}
        args.update(device.props)
        self.qmp("device_add", args)
        port[2] = device.id
        self._slots[device.id] = port[1] + "/0000:*:00.0"
        glob = "/sys/devices/pci0000:00/" + self._slots[device.id]
        self.check("i=0; while [ $i -lt %d ]; do for d in %s; do [ -e $d/config ] && exit 0; "
                   "done; sleep 0.2; i=$((i+1)); done; echo 'not seen by the guest'; exit 1"
                   % (timeout * 5, glob), timeout + 5)
        bdf = self.bdf(device.id)
        if vfio:
            self.bind_vfio(bdf)
        return bdf

    def unplug(self, dev_id, timeout=60):
        """Hot-unplugs a device (QMP device_del), waits for DEVICE_DELETED and for the guest
        to drop it from sysfs."""
        bdf = self.bdf(dev_id)
        self.qmp("device_del", id=dev_id)
        self.wait_event("DEVICE_DELETED", timeout, lambda d: d.get("device") == dev_id)
        self.check("i=0; while [ -e /sys/bus/pci/devices/%s ] && [ $i -lt %d ]; do sleep 0.2; "
                   "i=$((i+1)); done; [ ! -e /sys/bus/pci/devices/%s ]" % (bdf, timeout * 5, bdf),
                   timeout + 5)
        for p in self._ports:
            if p[2] == dev_id:
                p[2] = None
        del self._slots[dev_id]
        del self._bdf[dev_id]


# ---------------------------------------------------------------------------------------------
# test registration (used by tests/guest/cases/*.py, run by tests/guest/runner.py)

REGISTRY = []
AFTER_LOAD = []


class GuestTest:
    def __init__(self, name, func, topology, timeout, kernels):
        self.name, self.func, self.topology, self.timeout = name, func, topology, timeout
        self.kernels = kernels


def guest_test(name, topology=None, timeout=300, kernels=(vbkernel.PRIMARY,)):
    """Registers func(guest) as the guest test `name` (its TAP name). It fails by raising
    (assert, GuestCommandError, ...). Tests whose topologies are equal (Topology.key()) share one
    boot and run in registration order, so a test that changes guest state restores it. timeout
    bounds the whole test in seconds; past it the guest is killed. kernels: the vbkernel labels
    it runs on (vbkernel.ALL for every kernel); on any but vbkernel.PRIMARY its TAP name is
    "name [label]". The name must have no space: what follows a space only qualifies it."""
    topo = topology or Topology()
    if " " in name or not name:
        raise ValueError("guest test name %r: empty or has a space" % name)
    unknown = [k for k in kernels if k not in vbkernel.ALL]
    if unknown:
        raise ValueError("guest test %s: unknown kernels %r" % (name, unknown))

    def register(func):
        if any(t.name == name for t in REGISTRY):
            raise ValueError("guest test %s registered twice" % name)
        REGISTRY.append(GuestTest(name, func, topo, timeout, tuple(kernels)))
        return func
    return register


def after_load(func):
    """Registers func() to run once every case file is loaded: for tests generated from what the
    others registered (the generic probe runs on every registered topology)."""
    AFTER_LOAD.append(func)
    return func


def note(msg):
    """Prints an informational TAP comment line (shown in the runner's output)."""
    for line in str(msg).splitlines():
        print("# " + line, flush=True)
