"""The sandbox, proved on a worker that serves a real device: what /proc says of the worker's
every thread and of the broker, compared with what README.md promises."""

import os
import re
import time

from vbbroker import Broker, config
from vbguest import guest_test, note

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def proc_status(g, path):
    out = g.check("cat %s" % path)
    return dict(l.split(":", 1) for l in out.splitlines() if ":" in l)


def cap_numbers():
    """CAP_* numbers from the host's uAPI header, so that the README's names map to bits."""
    nums = {}
    with open("/usr/include/linux/capability.h") as f:
        for m in re.finditer(r"#define\s+(CAP_[A-Z_]+)\s+(\d+)\b", f.read()):
            nums[m.group(1)] = int(m.group(2))
    return nums


def documented_broker_caps():
    with open(os.path.join(TOP, "README.md")) as f:
        text = f.read()
    section = text.split("## Privileges and the sandbox", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| (CAP_[A-Z_]+) \|", section, re.M)
    assert names, "README lists no broker capability"
    nums = cap_numbers()
    mask = 0
    for n in names:
        mask |= 1 << nums[n]
    return names, mask


def hold(g, sock):
    g.check("vfio-demo-vmm hold %s </dev/null >/tmp/hold.log 2>&1 & echo $!" % sock)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rc, out = g.run("cat /tmp/hold.log")
        if "holding:" in out:
            return
        time.sleep(0.2)
    raise AssertionError("the VMM did not take the device into use:\n" + out)


@guest_test("worker_sandbox_status")
def worker_sandbox_status(g):
    edu = g.bdf("edu0")
    conf = config(extra="rlimit_nofile = 64\n")
    with Broker(g, conf) as b:
        rep = b.add(edu)
        hold(g, rep["socket_path"])  # a real device in use: DMA mapped, MSI routed
        wpid, bpid = rep["worker_pid"], b.pid
        tids = g.check("ls /proc/%d/task" % wpid).split()
        assert tids, "worker %d has no threads?" % wpid
        for tid in tids:
            st = proc_status(g, "/proc/%d/task/%s/status" % (wpid, tid))
            assert st["Seccomp"].strip() == "2", (tid, st["Seccomp"])
            assert st["NoNewPrivs"].strip() == "1", (tid, st["NoNewPrivs"])
            for c in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
                assert int(st[c], 16) == 0, (tid, c, st[c])
            uids = [int(x) for x in st["Uid"].split()]
            gids = [int(x) for x in st["Gid"].split()]
            assert 0 not in uids and 0 not in gids, (tid, st["Uid"], st["Gid"])
        note("worker %d: %d thread(s), Seccomp 2, NoNewPrivs 1, no capabilities, uid %s"
             % (wpid, len(tids), st["Uid"].split()[0]))
        for ns in ("user", "pid", "net", "mnt", "ipc", "uts"):
            w = g.check("readlink /proc/%d/ns/%s" % (wpid, ns)).strip()
            br = g.check("readlink /proc/%d/ns/%s" % (bpid, ns)).strip()
            assert w != br, "worker shares the broker's %s namespace (%s)" % (ns, w)
        # Its root is an empty directory: nothing of the host's files.
        listing = g.check("ls -a /proc/%d/root" % wpid).split()
        assert sorted(listing) == [".", ".."], listing
        limits = g.check("cat /proc/%d/limits" % wpid)
        nofile = [l for l in limits.splitlines() if l.startswith("Max open files")][0].split()
        soft, hard = int(nofile[3]), int(nofile[4])
        # What the device needs, under the configured ceiling of 64: small.
        assert soft == hard and 16 <= hard <= 64, nofile
        # The worker's own view of its fds: the device, the broker channel, the VMM, eventfds;
        # nothing it could use to reach the host's files.
        fds = g.check("ls -l /proc/%d/fd" % wpid)
        assert "/dev/vfio/vfio" not in fds, "the worker holds a container:\n" + fds
        note("namespaces differ from the broker's, empty root, RLIMIT_NOFILE %d" % hard)
        # A device with more vectors than that ceiling allows fds for is refused, with the
        # reason, instead of getting a worker that would fail at its first MSI-X enable.
        out = b.ctl("add %s --vm vm1" % g.bdf("nvme0"), expect_rc=1)
        assert "rlimit_nofile allows 64" in out, out


@guest_test("broker_capabilities_minimal")
def broker_capabilities_minimal(g):
    names, mask = documented_broker_caps()
    with Broker(g) as b:
        st = proc_status(g, "/proc/%d/status" % b.pid)
        for c in ("CapEff", "CapPrm", "CapBnd"):
            assert int(st[c], 16) == mask, "%s 0x%x, README documents 0x%x (%s)" % (
                c, int(st[c], 16), mask, " ".join(names))
        assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0, st
        assert st["Seccomp"].strip() == "2" and st["NoNewPrivs"].strip() == "1", st
        # And it still does its job with that set: a device goes to a worker and back.
        rep = b.add(g.bdf("e1000e0"))
        b.remove(g.bdf("e1000e0"), "--force")
        note("broker CapEff 0x%x = %s; add and remove work" % (mask, " ".join(names)))
        assert rep["worker_pid"] > 0
