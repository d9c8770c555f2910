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

from vbbroker import LOG as BROKER_LOG, Broker
from vbguest import Device, Topology, guest_test, note
from vbsystemd import SystemdTopology

UNIT = "vfio-brokerd.service"
T = SystemdTopology(devices=[Device("edu"), Device("e1000e")], spare_ports=0)
# The same devices in the busybox guest, for the broker run by hand (re-exec, no systemd).
TB = Topology(devices=[Device("edu"), Device("e1000e")], spare_ports=0)
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


def finish(g, loops, before, max_retries):
    """Same devices, workers, mappings, pinned bytes and routes as before; loops stopped
    without an error; returns their final figures."""
    after = paused_snapshot(g, loops)
    assert after == before, "before:\n%s\nafter:\n%s" % (json.dumps(before, sort_keys=True),
                                                          json.dumps(after, sort_keys=True))
    figures = {lp.name: lp.stop() for lp in loops}
    for name, f in figures.items():
        note("%s: %s" % (name, " ".join("%s=%g" % kv for kv in sorted(f.items()))))
        assert f["retries"] <= max_retries, (name, f)
    return figures


def stop_service(g, loops=()):
    for lp in loops:
        lp.kill()
    sh(g, "systemctl stop %s" % UNIT, timeout=180)
    wait_no_workers(g)


@guest_test("broker_restart_keeps_devices", topology=T, timeout=1800)
def broker_restart_keeps_devices(g):
    """`systemctl restart` three times while both loops run: no loop sees an error (nothing even
    needs a retry), and the broker lists the same devices, workers, mappings, pinned bytes and
    interrupt routes afterwards."""
    setup(g)
    loops = []
    try:
        loops, before = start_vm(g)
        pid = main_pid(g)
        starts = broker_status(g)["starts"]
        for i in range(3):
            sh(g, "systemctl restart %s" % UNIT, timeout=RESTART_BOUND)
            marks = [lp.iterations() for lp in loops]
            pid = wait_running(g, pid)
            # Each loop completes iterations (each asking the new broker) after the restart.
            for lp, n in zip(loops, marks):
                lp.wait_iterations(n + 3, "after restart %d" % (i + 1))
        assert int(props(g, "NRestarts")["NRestarts"]) == 0
        # What the operator sees: three more starts, the last one a take-over of both devices.
        st = broker_status(g)
        assert st["starts"] == starts + 3, (starts, st)
        last = st["last_start"]
        assert last["took_over"] and last["untrusted_state"] is None, st
        assert (last["devices_adopted"], last["devices_quiesced"]) == (2, 0), st
        note("last take-over: %d ms" % last["milliseconds"])
        figures = finish(g, loops, before, max_retries=0)
        note("longest wait for the broker: edu %.0f ms, e1000e %.0f ms" % (
            figures["edu-loop"]["longest_broker_call_ms"],
            figures["e1000e-loop"]["longest_broker_call_ms"]))
        loops = []
    finally:
        stop_service(g, loops)


@guest_test("broker_sigkill_keeps_devices", topology=T, timeout=1800)
def broker_sigkill_keeps_devices(g):
    """SIGKILL of the broker inside its VFIO_IOMMU_MAP_DMA ioctl (the kernel mapped, the broker
    had not answered), then inside a VFIO_DEVICE_SET_IRQS, each time at the ioctl's exit
    (guest_kill_at traces the broker's system calls: an exact point, not a moment); systemd
    restarts it. The killed request times out in its worker and is retried by the VMM (at most
    once per kill); nothing else fails, and the devices, workers, mappings, pinned bytes and
    routes are the same as before."""
    setup(g)
    loops = []
    try:
        loops, before = start_vm(g)
        pid = main_pid(g)
        for point in ("dma-map", "set-irqs"):
            rc, out = g.run("%s/guest_kill_at %d %s exit" % (bindir(g), pid, point),
                            timeout=400)
            assert rc == 0, "guest_kill_at %s: exit %d: %s" % (point, rc, out)
            note(out.strip())
            marks = [lp.iterations() for lp in loops]
            pid = wait_running(g, pid)
            for lp, n in zip(loops, marks):
                lp.wait_iterations(n + 3, "after the kill in %s" % point)
        assert int(props(g, "NRestarts")["NRestarts"]) == 2, props(g, "NRestarts")
        finish(g, loops, before, max_retries=2)
        loops = []
    finally:
        stop_service(g, loops)


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


def broker_status(g):
    """`vfio-brokerctl --json status`: the broker's starts and its last take-over."""
    rc, out = g.run(CTL + " status", timeout=120)
    assert rc == 0, "vfio-brokerctl status: exit %d: %s" % (rc, out)
    return json.loads(out)


def metrics(g):
    rc, out = g.run("vfio-brokerctl --timeout 60000 metrics", timeout=120)
    assert rc == 0, "vfio-brokerctl metrics: exit %d: %s" % (rc, out)
    samples = {}
    for line in out.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def store_fds(g):
    """What PID 1 holds for the service: its fds that are VFIO objects or the state record (a
    memfd), as 'N -> target' lines."""
    out = sh(g, "ls -l /proc/1/fd/ | grep -E 'vfio|vfio-brokerd-state'; true")
    return [m.group(1) + " -> " + m.group(2) for m in
            (re.search(r"(\d+) -> (.*)$", line) for line in out.splitlines()) if m]


@guest_test("broker_restart_untrusted_state_quiesces", topology=T, timeout=1200)
def broker_restart_untrusted_state_quiesces(g):
    """The broker is stopped (SIGSTOP) so that it cannot react, one worker is killed (its pidfd
    and channel in the store go stale), the state record in the store is damaged (bytes
    overwritten through PID 1's fd of the memfd), and the broker is killed: the next one must
    trust nothing. Every device is quiesced and reported, no worker is left, nothing is pinned
    or held (no process, PID 1 included, has a VFIO fd), and every group can be opened again."""
    setup(g)
    loops = []
    try:
        loops, before = start_vm(g)
        pause_all(loops)
        pid = main_pid(g)
        record = [line.split(" -> ")[0] for line in store_fds(g)
                  if "vfio-brokerd-state" in line]
        assert record, "no state record in the fd store:\n%s" % "\n".join(store_fds(g))
        record = "/proc/1/fd/" + record[0]
        sh(g, "kill -STOP %d" % pid)
        sh(g, "kill -KILL %d" % before[g.bdf("e1000e0")]["worker_pid"])
        # The whole first page (both header slots: damaging only the first, as this test once
        # did, leaves a record whose second slot is live after a compaction, which the broker
        # rightly trusts) and 64 bytes from the middle: whatever lies there.
        sh(g, "size=$(stat -L -c %%s %s) && "
              "dd if=/dev/urandom of=%s bs=4096 count=1 conv=notrunc 2>/dev/null && "
              "dd if=/dev/urandom of=%s bs=1 count=64 seek=$((size / 2)) conv=notrunc "
              "2>/dev/null" % (record, record, record))
        sh(g, "kill -KILL %d" % pid)
        wait_running(g, pid)
        wait_no_workers(g)
        left = devices(g)
        assert not left, "devices kept from an untrusted record: %r" % left
        m = metrics(g)
        untrusted = [k for k, v in m.items()
                     if k.startswith("vfio_broker_adoption_untrusted") and v == 1]
        assert untrusted, "the untrusted record is not reported:\n%r" % m
        assert m['vfio_broker_adoption_devices{outcome="quiesced"}'] == 2, m
        st = broker_status(g)["last_start"]
        assert st["took_over"] and st["devices_quiesced"] == 2, st
        assert st["untrusted_state"], "status does not say why: %r" % st
        note("reported: " + untrusted[0])
        held = vfio_holders(g)
        assert not held, "VFIO fds still open after quiescing:\n" + "\n".join(held)
        rc, out = g.run("%s/guest_vfio_available %s %s" % (bindir(g), g.bdf("edu0"),
                                                               g.bdf("e1000e0")), timeout=120)
        assert rc == 0, "a group cannot be opened again: " + out
    finally:
        stop_service(g, loops)


@guest_test("broker_reexec_upgrade", topology=TB, timeout=1200)
def broker_reexec_upgrade(g):
    """Without systemd: the broker run by hand re-executes itself on SIGUSR2 (an upgrade puts a
    new binary at its path first) three times while both loops run: the same process, the same
    devices, workers, mappings, pinned bytes and routes, and no loop sees an error."""
    with Broker(g) as b:
        loops = []
        try:
            loops, before = start_vm(g, explain=lambda g: b.log_tail())
            def readies():
                return int(g.run("grep -c ': ready:' %s" % BROKER_LOG)[1].strip() or 0)
            for i in range(3):
                n0 = readies()
                marks = [lp.iterations() for lp in loops]
                sh(g, "kill -USR2 %d" % b.pid)
                wait_for("re-exec %d ready" % (i + 1),
                         lambda: readies() > n0,
                         explain=b.log_tail)
                assert b.alive(), "the broker exited instead of re-executing:\n" + b.log_tail()
                for lp, n in zip(loops, marks):
                    lp.wait_iterations(n + 3, "after re-exec %d" % (i + 1))
            finish(g, loops, before, max_retries=0)
            loops = []
        finally:
            for lp in loops:
                lp.kill()
