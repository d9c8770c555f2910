"""Runs vfio-brokerd inside a test guest the way an operator would, and drives it with
vfio-brokerctl --json: the host side of every end-to-end test that needs the broker.

    with Broker(g) as b:
        sock = b.add(g.bdf("edu0"), vm="vm1")["socket_path"]
        g.check("vfio-demo-vmm edu-dma " + sock)
        assert b.status(g.bdf("edu0"))["dma_mappings"] == 0

The broker runs with its real configuration, sandbox and seccomp policy (kill), as root in the
guest; workers under uids 61000-61999. On exit the broker is stopped with SIGTERM and must exit 0
and leave no worker behind; its log is noted on failure.
"""

import json
import time

from vbguest import note

CONF = "/etc/vfio-broker/vfio-brokerd.conf"
LOG = "/run/vfio-brokerd.log"
SOCK = "/run/vfio-broker/control.sock"


def config(allow="1234:11e8 8086:10d3 1b36:0010", restart="on-failure", restart_max=3,
           heartbeat_interval_ms=500, heartbeat_timeout_ms=3000, extra="", log_level="debug"):
    return """[broker]
control_socket = %s
runtime_dir = /run/vfio-broker/vmm
log_level = %s
seccomp = kill

[devices]
allow = %s
allow_bind = yes

[limits]
remove_timeout_ms = 5000

[worker]
path = /opt/vfio-broker/bin/vfio-worker
uid_range = 61000-61999
seccomp = kill
heartbeat_interval_ms = %d
heartbeat_timeout_ms = %d
restart = %s
restart_max = %d
%s""" % (SOCK, log_level, allow, heartbeat_interval_ms, heartbeat_timeout_ms, restart, restart_max,
       extra)


class BrokerError(AssertionError):
    pass


class Broker:
    def __init__(self, guest, conf=None, stop_timeout=10, worker_log=False):
        """stop_timeout: seconds the broker may take to exit on SIGTERM (it ends every worker
        first: a hundred of them take longer under TCG). worker_log: the broker's stderr is a
        pipe (a FIFO that `cat` copies to the log) instead of the log file itself, so that the
        workers' lines reach the log too: a worker's RLIMIT_FSIZE (rlimit_fsize, 0) makes its
        writes to a regular file fail, as they should (in production its stderr is the
        journal's stream socket)."""
        self.g = guest
        self.conf = conf if conf is not None else config()
        self.stop_timeout = stop_timeout
        self.worker_log = worker_log
        self.pid = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.stop()
        except Exception:
            if exc_type is None:
                raise
        if exc_type is not None:
            note("broker log (tail):\n" + self.log_tail())
        return False

    def start(self):
        g = self.g
        g.check("mkdir -p /etc/vfio-broker && rm -f %s" % LOG)
        g.write_file(CONF, self.conf.encode(), mode=0o600)
        out_to = LOG
        if self.worker_log:
            out_to = LOG + ".fifo"
            g.check("rm -f {f} && mkfifo {f} && (cat {f} >{log} &)".format(f=out_to, log=LOG))
        out = g.check("vfio-brokerd -c %s </dev/null >%s 2>&1 & echo $!" % (CONF, out_to))
        self.pid = int(out.strip().splitlines()[-1])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rc, _ = g.run("test -S %s" % SOCK)
            if rc == 0:
                return
            rc, _ = g.run("kill -0 %d" % self.pid)
            if rc != 0:
                raise BrokerError("vfio-brokerd exited at start:\n" + self.log_tail())
            time.sleep(0.1)
        raise BrokerError("no control socket after 60 s:\n" + self.log_tail())

    def stop(self):
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        self.g.run("kill -TERM %d" % pid)
        rc, out = self.g.run("for i in $(seq %d); do kill -0 %d 2>/dev/null || exit 0; "
                             "sleep 0.1; done; exit 1" % (self.stop_timeout * 10, pid),
                             timeout=self.stop_timeout + 20)
        if rc != 0:
            self.g.run("kill -KILL %d" % pid)
            raise BrokerError("vfio-brokerd did not exit within %d s of SIGTERM"
                              % self.stop_timeout)
        left = self.g.pids("vfio-worker")
        if left:
            raise BrokerError("workers left after the broker exited: pid(s) %s"
                              % " ".join(map(str, left)))

    def alive(self):
        return self.pid is not None and self.g.run("kill -0 %d" % self.pid)[0] == 0

    def log_tail(self, lines=40):
        rc, out = self.g.run("tail -n %d %s" % (lines, LOG))
        return out

    def ctl(self, args, expect_rc=0, timeout=60):
        """Runs vfio-brokerctl --json ARGS; returns the parsed JSON (or None for no output)."""
        rc, out = self.g.run("vfio-brokerctl --json %s" % args, timeout=timeout)
        if expect_rc is not None and rc != expect_rc:
            raise BrokerError("vfio-brokerctl %s: exit %d, expected %d:\n%s\nbroker log:\n%s"
                              % (args, rc, expect_rc, out, self.log_tail()))
        text = out.strip()
        if rc != 0 or not text:
            return out
        return json.loads(text)

    def add(self, bdf, vm="vm1", opts=""):
        return self.ctl("add %s --vm %s %s" % (bdf, vm, opts))

    def remove(self, bdf, opts=""):
        return self.ctl("remove %s %s" % (bdf, opts))

    def status(self, bdf):
        return self.ctl("status %s" % bdf)

    def devices(self):
        return self.ctl("list")["devices"]

    def irqs_enabled(self, bdf):
        return sum(i["enabled"] for i in self.status(bdf)["irqs"])

    def wait_status(self, bdf, pred, what, timeout=60):
        """Polls status until pred(status) holds; returns that status."""
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = self.status(bdf)
            if pred(st):
                return st
            time.sleep(0.2)
        raise BrokerError("%s: not within %d s; last status %r" % (what, timeout, st))
