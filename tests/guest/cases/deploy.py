"""vfio-broker as an operator deploys it: installed by `cmake --install`, configured from the
installed example, run by systemd (PID 1 of the guest: see vbsystemd.py) from
vfio-brokerd.socket with every hardening option of vfio-brokerd.service, passing a device through
to a VMM, and stopped cleanly."""

import json
import shlex
import time

from vbguest import Device, guest_test, note
from vbsystemd import SystemdTopology

CAPS = {"cap_chown": 0, "cap_setgid": 6, "cap_setuid": 7, "cap_ipc_lock": 14}  # broker/caps.c


def sh(g, cmd, timeout=60):
    return g.check(cmd, timeout).strip()


def props(g, unit, *names):
    out = sh(g, "systemctl show %s -p %s" % (unit, ",".join(names)))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(g, *match):
    """The broker's journal entries (as dicts) matching the journalctl match words."""
    out = sh(g, "journalctl -o json --no-pager _COMM=vfio-brokerd %s" % " ".join(match))
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def explain(g):
    _, out = g.run("systemctl status --no-pager vfio-brokerd.service vfio-brokerd.socket; "
                   "journalctl -b --no-pager -n 40 -u vfio-brokerd.service")
    return out


def wait_workers_gone(g, timeout=60):
    """After a final stop no worker may be left. With the fd store (KillMode=process) a worker
    ends when systemd empties the store and its broker channel hangs up, which is after the unit
    went inactive, not before: wait for that, bounded against a hang."""
    deadline = time.monotonic() + timeout
    while True:
        left = g.pids("vfio-worker")
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError("workers left %d s after the stop: %r\n%s"
                                 % (timeout, left, explain(g)))
        time.sleep(0.2)


def check_boot_snippets(g):
    """What the installed sysusers.d, tmpfiles.d and udev files did while the guest booted."""
    assert sh(g, "cat /proc/1/comm") == "systemd"
    sh(g, "getent group vfio-admin && getent passwd vfio-worker && getent passwd vfio-broker")
    assert sh(g, "stat -c '%a %U:%G' /run/vfio-broker") == "755 root:root"
    nodes = sh(g, "ls /dev/vfio").split()
    assert "vfio" in nodes and len(nodes) >= 2, nodes
    for node in nodes:
        assert sh(g, "stat -c '%a %U:%G' /dev/vfio/" + node) == "660 root:vfio-broker", \
            "udev rule not applied to /dev/vfio/" + node


def configure(g, edu):
    """/etc/vfio-broker/vfio-brokerd.conf from the installed example: the admin group enabled and
    the guest's edu device allowed."""
    example = sh(g, "ls /usr/share/doc/vfio-broker/examples/vfio-brokerd.conf.example "
                    "/usr/local/share/doc/vfio-broker/examples/vfio-brokerd.conf.example "
                    "2>/dev/null | head -n 1")
    assert example, "the example configuration is not installed"
    sh(g, "sed -e 's/^# admin_gid = vfio-admin$/admin_gid = vfio-admin/' "
          "-e 's/^allow = 1234:11e8$/allow = %s/' %s > /etc/vfio-broker/vfio-brokerd.conf && "
          "chmod 0644 /etc/vfio-broker/vfio-brokerd.conf" % (edu, example))
    out = sh(g, "vfio-brokerd --check-config 2>&1")
    assert "admin_gid" in out and edu in out, out


def check_metrics(g, edu):
    """vfio-brokerctl metrics under the service: Prometheus text with every family an operator
    graphs, and values that match what just happened (one device, one VMM session that mapped
    DMA through its worker and has gone)."""
    text = sh(g, "vfio-brokerctl metrics")
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    for family, kind in (("vfio_broker_devices", "gauge"), ("vfio_broker_workers", "gauge"),
                         ("vfio_broker_worker_restarts_total", "counter"),
                         ("vfio_broker_dma_mappings", "gauge"),
                         ("vfio_broker_pinned_bytes", "gauge"),
                         ("vfio_broker_interrupts_routed", "gauge"),
                         ("vfio_broker_control_requests_total", "counter"),
                         ("vfio_broker_control_request_duration_seconds", "histogram"),
                         ("vfio_broker_worker_requests_total", "counter"),
                         ("vfio_broker_worker_request_duration_seconds", "histogram")):
        assert "# TYPE %s %s" % (family, kind) in text, "no %s %s:\n%s" % (kind, family, text)
    assert samples['vfio_broker_devices{state="ready"}'] == 1, text
    assert samples["vfio_broker_workers"] == 1, text
    assert samples["vfio_broker_worker_restarts_total"] == 0, text
    assert samples['vfio_broker_control_requests_total{type="add_device",result="ok"}'] == 1, text
    assert samples['vfio_broker_worker_requests_total{type="dma_map",result="ok"}'] >= 1, text
    assert samples['vfio_broker_dma_mappings{vm="vm1"}'] == 0, text  # the VMM has gone
    assert samples['vfio_broker_interrupts_routed{bdf="%s",vm="vm1"}' % edu] == 0, text
    assert samples['vfio_broker_control_request_duration_seconds_count{type="add_device"}'] == 1


# edu1 starts without a driver: deploy_systemd_allow_bind binds it through the broker.
TOPOLOGY = SystemdTopology(devices=[Device("edu"), Device("edu", id="edu1", vfio=False)],
                           spare_ports=0)


@guest_test("deploy_systemd_service", topology=TOPOLOGY, timeout=900)
def deploy_systemd_service(g):
    edu = g.bdf("edu0")
    check_boot_snippets(g)
    sh(g, "ldconfig")
    configure(g, edu)
    # A shorter watchdog than the shipped 30 s, so that a few keep-alives fit in the test.
    sh(g, "mkdir -p /etc/systemd/system/vfio-brokerd.service.d && printf '[Service]\\n"
          "WatchdogSec=4s\\n' > /etc/systemd/system/vfio-brokerd.service.d/test.conf")
    # daemon-reload re-reads every unit: minutes, not seconds, on a loaded host under TCG (it
    # passed 60 s at load 16). A bound against a hang, not a timing.
    sh(g, "systemctl daemon-reload && systemctl enable --now vfio-brokerd.socket", timeout=300)
    assert sh(g, "systemctl is-active vfio-brokerd.socket") == "active"
    rc, state = g.run("systemctl is-active vfio-brokerd.service")
    assert state.strip() == "inactive", "started before any connection: " + state
    assert sh(g, "stat -c '%a %U:%G %F' /run/vfio-broker/control.sock") == \
        "660 root:vfio-admin socket"

    # The first connection starts the service; Type=notify: active means READY=1 arrived.
    rc, out = g.run("vfio-brokerctl --timeout 60000 list", timeout=120)
    assert rc == 0, "vfio-brokerctl list (socket activation): %s\n%s" % (out, explain(g))
    p = props(g, "vfio-brokerd.service", "ActiveState", "SubState", "Type", "NotifyAccess",
              "MainPID", "StatusText", "WatchdogUSec", "CapabilityBoundingSet")
    note("service: " + ", ".join("%s=%s" % kv for kv in sorted(p.items())))
    assert p["ActiveState"] == "active" and p["SubState"] == "running", explain(g)
    assert p["Type"] == "notify" and p["NotifyAccess"] == "main", p
    assert p["StatusText"].startswith("serving"), p
    pid = int(p["MainPID"])
    want = sum(1 << b for b in CAPS.values())
    status = dict(line.split(":\t", 1) for line in
                  sh(g, "cat /proc/%d/status" % pid).splitlines() if ":\t" in line)
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[field], 16) == want, "%s %s, expected %#x" % (field, status[field], want)
    # Not root: the service user, its ambient capabilities cleared once it had them.
    uid = sh(g, "id -u vfio-broker")
    assert status["Uid"].split() == [uid] * 4 and uid != "0", status["Uid"]
    assert int(status["CapAmb"], 16) == 0 and int(status["CapInh"], 16) == 0, status
    assert status["NoNewPrivs"].strip() == "1", status
    assert status["Seccomp"].strip() == "2", status
    # Its view of the file system (TemporaryFileSystem=/etc, ProtectHome, PrivateDevices).
    view = sh(g, "cd /proc/%d/root && ls -A etc; echo --; ls -A dev/vfio; echo --; "
                 "ls -A home 2>&1; ls -A root 2>&1; echo --; ls dev" % pid)
    etc, vfio, home, dev = [part.split() for part in view.split("--")]
    assert set(etc) - {"localtime"} == {"vfio-broker", "passwd", "group", "nsswitch.conf",
                                        "ld.so.cache"}, etc
    assert "vfio" in vfio and len(vfio) >= 2, vfio
    assert not home, home
    assert "mem" not in dev and "kmsg" not in dev and "vfio" in dev, dev
    ready = [e for e in journal(g) if e.get("MESSAGE", "").startswith("ready:")]
    assert ready and ready[-1]["PRIORITY"] == "5" and \
        ready[-1]["SYSLOG_IDENTIFIER"] == "vfio-brokerd", ready

    # The control socket: members of vfio-admin are served, anyone else is not even connected.
    gid = sh(g, "getent group vfio-admin | cut -d: -f3")
    rc, out = g.run("setpriv --reuid=65534 --regid=65534 --clear-groups vfio-brokerctl list")
    assert rc == 3, "a non-member reached the broker: exit %d: %s" % (rc, out)
    sh(g, "setpriv --reuid=65534 --regid=%s --clear-groups vfio-brokerctl list" % gid)

    # Passthrough under the hardened unit: a worker in its sandbox, DMA through the IOMMU.
    rep = json.loads(sh(g, "vfio-brokerctl --json --timeout 60000 add %s --vm vm1 --owner 0:0"
                           % edu, timeout=120))
    assert rep["socket_path"].startswith("/run/vfio-broker/vmm/vm1/"), rep
    worker = int(rep["worker_pid"])
    rc, out = g.run("%s/bin/vfio-demo-vmm edu-dma %s" % (g.build_dir, shlex.quote(
        rep["socket_path"])), timeout=180)
    assert rc == 0, "vfio-demo-vmm: exit %d\n%s\n%s" % (rc, out, explain(g))
    line = [l for l in out.splitlines() if l.startswith("figures:")][-1]
    figures = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    assert figures["dma_bytes_verified"] == 4 * 2048, out
    note(line)

    # Structured journal entries about the device.
    entries = journal(g, "VFIO_BDF=" + edu)
    assert entries, "no journal entry with VFIO_BDF=" + edu
    ready_dev = [e for e in entries if "ready" in e.get("MESSAGE", "")]
    assert ready_dev and ready_dev[-1].get("VFIO_VM") == "vm1" and \
        ready_dev[-1].get("VFIO_WORKER_PID") == str(worker), ready_dev
    note("journal: %d entries with VFIO_BDF=%s, e.g. %r" % (len(entries), edu,
                                                             ready_dev[-1]["MESSAGE"]))
    check_metrics(g, edu)

    # Keep-alives: the watchdog (4 s here) would have killed a broker that did not send them.
    t0 = int(props(g, "vfio-brokerd.service", "WatchdogTimestampMonotonic")
             ["WatchdogTimestampMonotonic"])
    time.sleep(9)
    p2 = props(g, "vfio-brokerd.service", "MainPID", "WatchdogTimestampMonotonic", "NRestarts")
    assert int(p2["MainPID"]) == pid and p2["NRestarts"] == "0", p2
    assert int(p2["WatchdogTimestampMonotonic"]) > t0, (t0, p2)

    # Stop: the broker leaves everything to the fd store and exits; the final stop empties the
    # store, every worker ends and the device is released; the service ends cleanly. The socket
    # stays, so the next connection starts a fresh broker that knows no device.
    sh(g, "systemctl stop vfio-brokerd.service", timeout=120)
    p3 = props(g, "vfio-brokerd.service", "ActiveState", "Result", "ExecMainStatus")
    assert p3 == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, \
        "%r\n%s" % (p3, explain(g))
    wait_workers_gone(g)
    assert [e for e in journal(g) if "every device stays with its VM for the next broker"
            in e.get("MESSAGE", "")], journal(g)
    assert sh(g, "systemctl is-active vfio-brokerd.socket") == "active"
    out = sh(g, "vfio-brokerctl --timeout 60000 --json list", timeout=120)
    assert edu not in out, out
    sh(g, "systemctl stop vfio-brokerd.service", timeout=120)

    # A bad configuration: the broker refuses to start with FILE:LINE: reason in the journal,
    # exit status 3, and systemd does not keep restarting it.
    conf = "/etc/vfio-broker/vfio-brokerd.conf"
    lines = len(g.read_file(conf).splitlines())
    sh(g, "cp %s %s.good && printf '[broker]\\nbogus_key = 1\\n' >> %s" % (conf, conf, conf))
    rc, _ = g.run("systemctl start vfio-brokerd.service", timeout=120)
    assert rc != 0, "the broker started with an unknown key"
    time.sleep(4)  # two RestartSec= periods
    p4 = props(g, "vfio-brokerd.service", "ActiveState", "ExecMainStatus", "NRestarts")
    assert p4 == {"ActiveState": "failed", "ExecMainStatus": "3", "NRestarts": "0"}, p4
    where = "%s:%d:" % (conf, lines + 2)
    refused = [e for e in journal(g) if e.get("MESSAGE", "").startswith(where)]
    assert refused and "bogus_key" in refused[-1]["MESSAGE"], (where, journal(g)[-3:])
    note("refused: " + refused[-1]["MESSAGE"])
    sh(g, "mv %s.good %s && systemctl reset-failed vfio-brokerd.service" % (conf, conf))

    sh(g, "systemctl disable --now vfio-brokerd.socket vfio-brokerd.service", timeout=120)
    rc, out = g.run("systemctl is-active vfio-brokerd.service vfio-brokerd.socket")
    assert out.split() == ["inactive", "inactive"], out


@guest_test("deploy_systemd_allow_bind", topology=TOPOLOGY, timeout=600)
def deploy_systemd_allow_bind(g):
    """[devices] allow_bind = yes needs the shipped allow-bind.conf drop-in and both of its
    settings: without it the service user may not write root's sysfs attributes, as root alone
    the service's read-only /sys refuses the rebind; with it the broker binds the device to
    vfio-pci and passes it through."""
    edu1 = g.bdf("edu1")
    driver = "basename $(readlink /sys/bus/pci/devices/%s/driver) 2>/dev/null; true" % edu1
    assert sh(g, driver) == "", "edu1 already has a driver"
    doc = sh(g, "dirname $(ls /usr/share/doc/vfio-broker/examples/allow-bind.conf "
                "/usr/local/share/doc/vfio-broker/examples/allow-bind.conf 2>/dev/null | head -n 1)")
    sh(g, "ldconfig; sed -e 's/^allow_bind = no$/allow_bind = yes/' "
          "-e 's/^# admin_gid = vfio-admin$/admin_gid = vfio-admin/' "
          "%s/vfio-brokerd.conf.example > /etc/vfio-broker/vfio-brokerd.conf && "
          "rm -rf /etc/systemd/system/vfio-brokerd.service.d && systemctl daemon-reload && "
          "systemctl enable --now vfio-brokerd.socket" % doc, timeout=300)
    add = "vfio-brokerctl --timeout 60000 add %s --vm vm2 --owner 0:0 --bind" % edu1
    rc, out = g.run(add, timeout=120)
    assert rc == 1 and "Permission denied" in out, "exit %d: %s" % (rc, out)
    assert sh(g, driver) == "", "a refused bind changed the driver"
    note("without the drop-in: " + out.strip().splitlines()[-1])

    sh(g, "mkdir -p /etc/systemd/system/vfio-brokerd.service.d && printf '[Service]\\n"
          "User=root\\n' > /etc/systemd/system/vfio-brokerd.service.d/root.conf && "
          "systemctl daemon-reload && systemctl stop vfio-brokerd.service", timeout=300)
    rc, out = g.run(add, timeout=120)
    assert rc == 1 and "Read-only file system" in out, "exit %d: %s" % (rc, out)
    assert sh(g, driver) == "", "a refused bind changed the driver"
    note("as root without ReadWritePaths=: " + out.strip().splitlines()[-1])
    sh(g, "rm /etc/systemd/system/vfio-brokerd.service.d/root.conf")

    sh(g, "install -D -m 0644 %s/allow-bind.conf "
          "/etc/systemd/system/vfio-brokerd.service.d/allow-bind.conf && "
          "systemctl daemon-reload && systemctl stop vfio-brokerd.service" % doc, timeout=300)
    rc, out = g.run(add, timeout=120)
    assert rc == 0, "exit %d: %s\n%s" % (rc, out, explain(g))
    assert sh(g, driver) == "vfio-pci"
    # The drop-in's price: uid 0 (root's sysfs attributes), the same four capabilities.
    pid = props(g, "vfio-brokerd.service", "MainPID")["MainPID"]
    status = sh(g, "grep -E '^(Uid|CapEff|CapBnd):' /proc/%s/status" % pid).split()
    want = "%016x" % sum(1 << b for b in CAPS.values())
    assert status == ["Uid:", "0", "0", "0", "0", "CapEff:", want, "CapBnd:", want], status
    sh(g, "vfio-brokerctl --timeout 60000 remove %s --force" % edu1, timeout=120)
    sh(g, "systemctl disable --now vfio-brokerd.socket vfio-brokerd.service && "
          "rm -rf /etc/systemd/system/vfio-brokerd.service.d && systemctl daemon-reload",
       timeout=300)
