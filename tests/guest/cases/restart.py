"""Issue 12: the broker may crash, restart or be upgraded without any VM losing a device.

The broker runs as the installed service under systemd (PID 1 of the guest, vbsystemd.py), with
an edu and an e1000e assigned to one VM. Two VMMs (vfio-demo-vmm's loops, tests/vmm/) use them
the whole time: the edu loop maps a DMA window, copies through it with a completion MSI and
unmaps it; the e1000e loop raises, masks, raises and unmasks MSI-X vectors. Both ask the broker
something in every iteration (DMA_MAP, DMA_UNMAP, SET_IRQS), so a restart always lands while
they work. A loop stops at its first error.

Every wait below is for a condition (a unit state, a log line, an iteration count), bounded
against a hang; none is a timing.
"""

import json
import re
import time

from vbguest import Device, guest_test, note
from vbsystemd import SystemdTopology

UNIT = "vfio-brokerd.service"
T = SystemdTopology(devices=[Device("edu"), Device("e1000e")], spare_ports=0)
CTL = "vfio-brokerctl --timeout 60000 --json"
# A restart under TCG on a loaded host: the broker's start and adoption take seconds to tens of
# seconds. Bounds against a hang, not timings.
RESTART_BOUND = 240


def sh(g, cmd, timeout=60):
    return g.check(cmd, timeout).strip()


def wait_for(what, pred, timeout=RESTART_BOUND, explain=None):
    """Polls pred() until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %d s%s" % (what, timeout,
                                                          "\n" + explain() if explain else ""))
        time.sleep(0.2)


def props(g, *names):
    out = sh(g, "systemctl show %s -p %s" % (UNIT, ",".join(names)))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal_tail(g, n=60):
    _, out = g.run("journalctl -b --no-pager -n %d -u %s" % (n, UNIT), timeout=120)
    return out


def setup(g):
    """Once per boot: the installed example configuration allowing the guest's edu and e1000e,
    the admin group, the socket enabled; the service itself stopped (a clean slate)."""
    if g.run("test -e /run/vb-restart-setup")[0] == 0:
        sh(g, "systemctl stop %s" % UNIT, timeout=180)
        wait_no_workers(g)
        return
    example = sh(g, "ls /usr/share/doc/vfio-broker/examples/vfio-brokerd.conf.example "
                    "/usr/local/share/doc/vfio-broker/examples/vfio-brokerd.conf.example "
                    "2>/dev/null | head -n 1")
    assert example, "the example configuration is not installed"
    sh(g, "ldconfig && sed -e 's/^# admin_gid = vfio-admin$/admin_gid = vfio-admin/' "
          "-e 's/^allow = 1234:11e8$/allow = 1234:11e8 8086:10d3/' %s "
          "> /etc/vfio-broker/vfio-brokerd.conf && chmod 0644 /etc/vfio-broker/vfio-brokerd.conf"
          % example)
    # daemon-reload takes minutes at a high load under TCG: a bound, not a timing.
    sh(g, "systemctl daemon-reload && systemctl enable --now vfio-brokerd.socket", timeout=300)
    sh(g, "touch /run/vb-restart-setup")


def main_pid(g):
    return int(props(g, "MainPID")["MainPID"])


def wait_running(g, not_pid):
    """The service active and running (READY=1 came) under a main pid other than not_pid."""
    def running():
        p = props(g, "ActiveState", "SubState", "MainPID")
        pid = int(p["MainPID"])
        return pid if p["SubState"] == "running" and pid not in (0, not_pid) else None
    return wait_for("%s running again" % UNIT, running, explain=lambda: journal_tail(g))


def devices(g):
    rc, out = g.run("%s list" % CTL, timeout=120)
    assert rc == 0, "vfio-brokerctl list: exit %d: %s" % (rc, out)
    return {d["bdf"]: d for d in json.loads(out)["devices"]}


# What must be the same before and after a restart: the device, its VM, its worker (the same
# process: adopted, not restarted), its mappings, pinned bytes and interrupt routes.
KEPT = ("vm", "state", "worker_pid", "iommu_group", "dma_mappings", "pinned_bytes", "restarts",
        "socket_path", "irqs")


def snapshot(g):
    return {bdf: {k: d.get(k) for k in KEPT} for bdf, d in devices(g).items()}


def wait_no_workers(g, timeout=60):
    wait_for("no vfio-worker left", lambda: not g.pids("vfio-worker"), timeout)


def vfio_holders(g):
    """Every process (PID 1 and its fd store included) with a VFIO container, group or device
    fd open: 'PID: target' lines. One ls over every process's fds (a readlink per fd is minutes
    under TCG)."""
    out = g.check("ls -l /proc/[0-9]*/fd/ 2>/dev/null; true", timeout=300)
    held, pid = [], None
    for line in out.splitlines():
        if line.startswith("/proc/") and line.endswith(":"):
            pid = line.split("/")[2]
        elif " -> " in line:
            target = line.split(" -> ", 1)[1]
            if target.startswith("/dev/vfio/") or "vfio-device" in target:
                held.append("%s: %s" % (pid, target))
    return held


def bindir(g):
    """Where the build's programs are: /opt/vfio-broker/bin in the busybox guest, the build
    directory itself (the host's, shared) in the systemd guest."""
    return "/opt/vfio-broker/bin" if g.run("test -d /opt/vfio-broker/bin")[0] == 0 \
        else g.build_dir + "/bin"


class Loop:
    """vfio-demo-vmm SCENARIO SOCKET in the background, its output in /run/NAME.log."""

    def __init__(self, g, name, scenario, sock):
        self.g, self.name, self.log = g, name, "/run/%s.log" % name
        sh(g, "rm -f %s; (%s/vfio-demo-vmm %s %s 3600 >%s 2>&1 & echo $! >%s.pid; wait $!; "
              "echo exit=$? >>%s) </dev/null >/dev/null 2>&1 &"
              % (self.log, bindir(g), scenario, sock, self.log, self.log, self.log))
        self.pid = int(wait_for("%s started" % name,
                                lambda: g.run("cat %s.pid" % self.log)[1].strip()))
        wait_for("%s steady" % name, lambda: "steady:" in self.text() or self.failed(),
                 explain=self.text)
        self.check()

    def text(self):
        return self.g.run("cat %s" % self.log)[1]

    def failed(self):
        t = self.text()
        return "FAIL" in t or "exit=" in t

    def check(self):
        if self.failed():
            raise AssertionError("%s failed:\n%s" % (self.name, self.text()[-3000:]))

    def figures(self, kind=None):
        """The last progress/paused/loop line's figures."""
        last = None
        for line in self.text().splitlines():
            word = line.split(":", 1)[0]
            if (kind is None and word in ("progress", "paused", "loop")) or word == kind:
                last = line
        if last is None:
            return {"iterations": 0}
        return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", last)}

    def iterations(self):
        self.check()
        return int(self.figures()["iterations"])

    def wait_iterations(self, n, what):
        wait_for("%s: %d iterations %s" % (self.name, n, what),
                 lambda: self.iterations() >= n or None, explain=self.text)

    def pause(self):
        count = self.text().count("paused:")
        sh(self.g, "kill -USR1 %d" % self.pid)
        wait_for("%s paused" % self.name,
                 lambda: self.text().count("paused:") > count or self.failed(),
                 explain=self.text)
        self.check()

    def resume(self):
        count = self.text().count("resumed")
        sh(self.g, "kill -USR1 %d" % self.pid)
        wait_for("%s resumed" % self.name,
                 lambda: self.text().count("resumed") > count or self.failed(),
                 explain=self.text)
        self.check()

    def stop(self):
        """SIGTERM: the loop ends after its iteration; returns its final figures."""
        self.g.run("kill -TERM %d" % self.pid)
        wait_for("%s exited" % self.name, lambda: "exit=" in self.text(), explain=self.text)
        text = self.text()
        if "exit=0" not in text:
            raise AssertionError("%s failed:\n%s" % (self.name, text[-3000:]))
        return self.figures("loop")

    def kill(self):
        self.g.run("kill -KILL %d 2>/dev/null; true" % self.pid)


def start_vm(g, explain=journal_tail):
    """Both devices assigned to vm1 and a loop on each; returns (loops, snapshot taken with
    both loops paused in their steady state)."""
    edu, nic = g.bdf("edu0"), g.bdf("e1000e0")
    socks = {}
    for bdf in (edu, nic):
        rc, out = g.run("%s add %s --vm vm1 --owner 0:0" % (CTL, bdf), timeout=180)
        assert rc == 0, "add %s: exit %d: %s\n%s" % (bdf, rc, out, explain(g))
        socks[bdf] = json.loads(out)["socket_path"]
    loops = []
    try:
        loops.append(Loop(g, "edu-loop", "edu-loop", socks[edu]))
        loops.append(Loop(g, "e1000e-loop", "e1000e-loop", socks[nic]))
        for lp in loops:
            lp.wait_iterations(3, "before the first restart")
        snap = paused_snapshot(g, loops)
    except BaseException:
        for lp in loops:
            lp.kill()
        raise
    assert snap[edu]["dma_mappings"] == 1 and snap[edu]["pinned_bytes"] == 2 << 20, snap
    assert snap[edu]["state"] == "connected" and snap[nic]["state"] == "connected", snap
    assert sum(i["enabled"] for i in snap[nic]["irqs"]) == 5, snap  # MSI-X, every vector
    note("before: " + json.dumps(snap, sort_keys=True))
    return loops, snap


def pause_all(loops):
    """Both loops between two iterations, before a test ends their devices under them. When
    the e1000e's worker was ended in the middle of an iteration, the next test's VMM saw that
    vector never fire again (QEMU 7.2's e1000e; its per-vector throttle timer, we think)."""
    for lp in loops:
        lp.pause()


def paused_snapshot(g, loops):
    for lp in loops:
        lp.pause()
    try:
        return snapshot(g)
    finally:
        for lp in loops:
            lp.resume()


def stop_service(g, loops=()):
    for lp in loops:
        lp.kill()
    sh(g, "systemctl stop %s" % UNIT, timeout=180)
    wait_no_workers(g)


@guest_test("broker_stop_leaves_nothing", topology=T, timeout=1200)
def broker_stop_leaves_nothing(g):
    """A crash (SIGKILL, systemd restarts the broker), then `systemctl stop`: no worker is left,
    no process (PID 1's fd store included) holds a VFIO container, group or device, so the
    kernel has unmapped and unpinned every page; every group can be opened again."""
    setup(g)
    loops = []
    try:
        loops, _ = start_vm(g)
        pause_all(loops)
        pid = main_pid(g)
        assert vfio_holders(g), "nothing holds a VFIO fd while devices are assigned"
        sh(g, "kill -KILL %d" % pid)
        wait_running(g, pid)
        sh(g, "systemctl stop %s" % UNIT, timeout=180)
        p = props(g, "ActiveState")
        assert p["ActiveState"] == "inactive", p
        wait_no_workers(g)
        held = vfio_holders(g)
        assert not held, "VFIO fds still open after the stop:\n" + "\n".join(held)
        rc, out = g.run("%s/guest_vfio_available %s %s" % (bindir(g), g.bdf("edu0"),
                                                               g.bdf("e1000e0")),
                        timeout=120)
        assert rc == 0, "a group cannot be opened again: " + out
    finally:
        stop_service(g, loops)
