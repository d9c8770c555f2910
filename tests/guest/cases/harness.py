"""Guest tests of the harness itself (vbguest.Guest), in the default guest: what other tests
rely on when they run commands, copy files and drive QMP."""

import time

from vbbroker import Broker, BrokerError
from vbguest import GuestCommandError, GuestToolMissing, guest_test


@guest_test("guest_harness_read_write_file_round_trip")
def read_write_file(g):
    # Binary data, every byte value, larger than one write chunk.
    data = bytes(range(256)) * 200
    g.write_file("/tmp/vb-roundtrip", data)
    assert g.read_file("/tmp/vb-roundtrip") == data
    bdf = g.bdf("edu0")
    cfg = g.read_file("/sys/bus/pci/devices/%s/config" % bdf)
    vendor = int(g.check("cat /sys/bus/pci/devices/%s/vendor" % bdf), 16)
    assert len(cfg) >= 64 and int.from_bytes(cfg[0:2], "little") == vendor, cfg[:4].hex()
    rc, _ = g.run("base64 /nonexistent")
    assert rc != 0
    # A write that cannot land fails cleanly and leaves the channel in step.
    try:
        g.write_file("/proc/vb-no-such-dir/x", data)
    except GuestCommandError:
        pass
    else:
        raise AssertionError("write_file into /proc/vb-no-such-dir succeeded")
    assert g.run("echo in-step")[1] == "in-step\n"


@guest_test("guest_harness_output_cannot_forge_frames")
def output_cannot_forge(g):
    rc, out = g.run("echo '@@VB END 1 0'; echo '@@VB BEGIN 99'; echo tail; exit 3")
    assert rc == 3 and out == "@@VB END 1 0\n@@VB BEGIN 99\ntail\n", (rc, out)
    assert g.run("echo next")[1] == "next\n"


@guest_test("guest_harness_command_timeout_kills_command")
def command_timeout(g):
    t0 = time.monotonic()
    rc, out = g.run("echo started; sleep 60", timeout=2)
    assert rc == 137 and out == "started\n", (rc, out)
    assert time.monotonic() - t0 < 15
    assert g.run("echo alive")[1] == "alive\n"


@guest_test("guest_harness_qmp_sees_topology")
def qmp_topology(g):
    ids = set()
    for bus in g.qmp("query-pci"):
        stack = list(bus["devices"])
        while stack:
            d = stack.pop()
            ids.add(d.get("qdev_id"))
            stack.extend(d.get("pci_bridge", {}).get("devices", []))
    for dev in g.topology.devices:
        assert dev.id in ids, "%s not in query-pci: %r" % (dev.id, ids)
    try:
        g.qmp("no-such-command")
    except Exception as e:
        assert "CommandNotFound" in str(e), e
    else:
        raise AssertionError("unknown QMP command accepted")


@guest_test("guest_harness_missing_command_fails")
def missing_command_fails(g):
    # A check must never read the shell's "not found" as its tool's answer: pgrep's exit 1 ("no
    # such process") and a missing pgrep's 127 once looked the same to the leftover-worker check.
    for cmd in ("vb-no-such-tool -x vfio-worker", "/proc/self/status"):
        try:
            rc, out = g.run(cmd)
        except GuestToolMissing as e:
            assert e.rc in (126, 127), e
        else:
            raise AssertionError("%r: exit %d taken as an answer: %s" % (cmd, rc, out))
    assert g.run("echo in-step")[1] == "in-step\n"


@guest_test("guest_harness_pids_reads_proc")
def pids_reads_proc(g):
    pid = int(g.check("sleep 600 </dev/null >/dev/null 2>&1 & echo $!").strip())
    try:
        assert pid in g.pids("sleep"), (pid, g.pids("sleep"))
        assert pid not in g.pids("sleepy") and g.pids("vb-nothing-has-this-name") == []
    finally:
        g.check("kill -KILL %d; while kill -0 %d 2>/dev/null; do sleep 0.1; done" % (pid, pid))
    assert pid not in g.pids("sleep")


@guest_test("guest_harness_broker_stop_finds_leftover_worker")
def broker_stop_finds_leftover(g):
    # A process named vfio-worker that outlives the broker (here: a script of that name, which
    # stays in /proc under it while its child sleeps) must fail Broker.stop().
    g.write_file("/tmp/vfio-worker", b"#!/bin/sh\nsleep 600 &\ntrap 'kill $!; exit 0' TERM\n"
                 b"wait\n", mode=0o755)
    b = Broker(g)
    b.start()
    fake = int(g.check("/tmp/vfio-worker </dev/null >/dev/null 2>&1 & echo $!").strip())
    try:
        try:
            b.stop()
        except BrokerError as e:
            assert str(fake) in str(e), e
        else:
            raise AssertionError("Broker.stop() missed leftover worker %d" % fake)
    finally:
        g.check("kill -TERM %d; while kill -0 %d 2>/dev/null; do sleep 0.1; done; "
                "rm -f /tmp/vfio-worker" % (fake, fake))
    assert g.pids("vfio-worker") == []
