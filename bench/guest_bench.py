"""The guest benchmarks of `make bench`: boots the test guest (tests/guest/vbguest.py: Debian's
kernel under QEMU TCG, emulated Intel IOMMU) with two edu devices bound to vfio-pci, starts
vfio-brokerd in it with its real configuration (tests/guest/vbbroker.py), and runs

  - bench_guest dma: DMA map+unmap of 2 MiB through the broker (edu0) against direct
    VFIO_IOMMU_MAP_DMA/UNMAP_DMA on a container of the benchmark's own (edu1);
  - bench_guest msi: MSI delivery from edu0 to an eventfd against an eventfd write;
  - the broker's resident memory with edu0 assigned against the same broker with no device
    (Rss from /proc/PID/smaps_rollup, VmHWM from /proc/PID/status): what one device's
    bookkeeping, worker supervision and channels cost the broker;
  - bench_guest hotplug: AddDevice until the VMM's handshake against the same VFIO steps
    in-process, with the pool of pre-started workers off (prestart = 0) and on (prestart = 1),
    then where the time goes (VB_BENCH_GUEST_PARTS=hotplug: only these and the spawn);
  - bench_guest spawn: the worker's sandboxed start (what AddDevice waits for) against fork and
    exec of the same binary.

Then, each in a guest of its own (VB_BENCH_GUEST_PARTS picks among main, dma-vm, scale):
bench_guest dma-vm (DMA of a VM's RAM, 1 and 2 GiB, 4 KiB and 2 MiB pages, and a booting VM's
map), and 128 devices behind one broker (its memory per device, its control requests, the
workers' PSS).

Every figure is measured under TCG: absolute numbers are those of an emulated machine, far
slower than hardware; the ratios compare two paths through the same emulation.

    python3 guest_bench.py BUILD_DIR

Rows are printed as the host benchmarks print them and appended to $VB_BENCH_TSV. Exits 0, or 1
when something could not run (its rows say why).
"""

import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "guest"))

import vbbroker  # noqa: E402
import vbguest  # noqa: E402
from vbbroker import Broker  # noqa: E402

# Batches and their length inside the guest: a TCG guest is ~20x slower than the host, and the
# boot already costs seconds, so fewer and shorter batches keep `make bench` within minutes.
GUEST_SCALE = os.environ.get("VB_BENCH_GUEST_SCALE", "0.3")
GUEST_TSV = "/tmp/bench.tsv"
CTL_SOCK = "/run/vfio-broker/control.sock"
WORKER = "/opt/vfio-broker/bin/vfio-worker"  # where tests/guest/vbbroker.py's config has it

TSV = os.environ.get("VB_BENCH_TSV")
NAMES = ("dma_map_unmap_2MiB", "msi_raise_to_eventfd", "brokerd_1dev_Rss",
         "brokerd_1dev_VmHWM", "hotplug_add_to_handshake", "hotplug_add_to_handshake_prestart",
         "worker_sandboxed_spawn")
# P4 with the pool of pre-started workers off ([worker] prestart = 0: every AddDevice spawns
# its sandboxed worker) and on (prestart = 1: AddDevice takes the pooled worker).
HOTPLUG_ROWS = (("hotplug_add_to_handshake", 0), ("hotplug_add_to_handshake_prestart", 1))


def emit(line):
    """Appends one TSV row (ok/fail ...) to the run's file."""
    if TSV:
        with open(TSV, "a") as f:
            f.write(line.rstrip("\n") + "\n")


def fail(name, why):
    why = " ".join(str(why).split())[:300]
    print("%-30s NOT RUN: %s" % (name, why), flush=True)
    emit("fail\t%s\t%s" % (name, why))


def report_kib(name, fig, baseline, base):
    ratio = fig / base if base else 0
    print("%-30s %12.1f %12.1f  %-34s %12.1f %12.1f %7.2fx  %-7s %d"
          % (name, fig, fig, baseline, base, base, ratio, "KiB", 1), flush=True)
    emit("ok\t%s\t%.1f\t%.1f\t%s\t%.1f\t%.1f\t%.2f\tKiB\t1"
         % (name, fig, fig, baseline, base, base, ratio))


def mem_kib(g, pid):
    """The process's Rss (KiB) from /proc/PID/smaps_rollup, a walk of its page tables, and its
    VmHWM from /proc/PID/status. Not VmRSS: since Linux 6.2 it is read from per-CPU counters
    without the changes each CPU still holds (proc_pid_status(5) calls it inaccurate), and one
    device's cost in the broker read 0 that way."""
    out = g.check("grep -E '^Rss:' /proc/%d/smaps_rollup; grep -E '^VmHWM:' /proc/%d/status"
                  % (pid, pid))
    v = {l.split(":")[0]: float(l.split()[1]) for l in out.splitlines()}
    if set(v) != {"Rss", "VmHWM"}:
        raise RuntimeError("the memory figures of pid %d: %r" % (pid, out))
    return v


P4 = {}


def run_bench(g, args, timeout=120):
    """Runs bench_guest in the guest; echoes its table; copies its TSV rows to ours; keeps its
    "p4 ..." lines (medians for the hot-plug breakdown) in P4."""
    env = " ".join("%s=%s" % (k, os.environ.get(k, ""))
                   for k in ("VB_BENCH_DMA_ROUNDS", "VB_BENCH_HOTPLUG_ROUNDS",
                             "VB_BENCH_SPAWN_ROUNDS"))
    rc, out = g.run("rm -f %s; VB_BENCH_TSV=%s VB_BENCH_SCALE=%s %s bench_guest %s"
                    % (GUEST_TSV, GUEST_TSV, GUEST_SCALE, env, args), timeout=timeout)
    for line in out.splitlines():
        if line.startswith("p4 "):
            f = line.split()
            P4[f[1]] = {k: float(v) for k, v in zip(f[2::2], f[3::2])}
        else:
            sys.stdout.write(line + "\n")
    sys.stdout.flush()
    rows = g.run("cat %s" % GUEST_TSV)[1] if rc in (0, 1) else ""
    for line in rows.splitlines():
        if line.startswith(("ok\t", "fail\t")):
            emit(line)
    if rc != 0 and not rows.strip():
        fail("bench_guest " + args.split()[0], "exited with status %d" % rc)
    return rc == 0


# DMA at VM scale needs a guest that can hold its RAM twice over and CPUs to populate it on:
# 2 GiB of 4 KiB pages and, separately, a pool of 2 GiB + 32 MiB of 2 MiB hugetlb pages
# reserved at boot (reserving later fails once memory is fragmented), so 6 GiB and 2 vCPUs.
VM_GIB = 2
VM_TOPOLOGY = dict(mem=6144, smp=2, cmdline="hugepages=%d" % (VM_GIB * 512 + 16))
# The broker's loop waits for a map (populate and pin: seconds per GiB under TCG), and a worker
# whose heartbeat answer arrives in that time is declared hung when the loop returns (its timer
# runs before its socket is read): with the test guest's 3 s timeout, one run lost its worker at
# the first 1 GiB map (every row failed with EPIPE). The benchmark measures DMA, so its broker
# waits a minute for a heartbeat.
VM_BROKER_CONF = vbbroker.config(heartbeat_timeout_ms=60000)


def main_dma_vm(build):
    """bench_guest dma-vm in a guest of its own (VM_TOPOLOGY)."""
    devices = [vbguest.Device("edu"), vbguest.Device("edu")]
    name = "dma_map_unmap_1GiB_4KiBpages"
    try:
        g = vbguest.Guest(build, topology=vbguest.Topology(devices, spare_ports=0, **VM_TOPOLOGY))
        g.start()
    except Exception as e:
        fail(name, "the guest did not start: %s" % e)
        return 1
    ok = True
    try:
        print("guest booted in %.1f s (QEMU TCG, %d vCPUs, %d MiB)"
              % (g.boot_seconds, VM_TOPOLOGY["smp"], VM_TOPOLOGY["mem"]), flush=True)
        print(g.check("grep -E '^(MemTotal|MemAvailable|HugePages_Total|Hugepagesize)' /proc/meminfo; nproc"),
              flush=True)
        edu0, edu1 = g.bdf("edu0"), g.bdf("edu1")
        with Broker(g, conf=VM_BROKER_CONF) as b:
            sock = b.add(edu0)["socket_path"]
            ok &= run_bench(g, "dma-vm %s %s %d" % (sock, edu1, VM_GIB), timeout=3600)
            b.remove(edu0, "--force")
    except Exception as e:
        fail(name, "%s: %s" % (e.__class__.__name__, e))
        ok = False
    finally:
        g.close()
    return 0 if ok else 1


# 128 devices behind one broker: edu functions are cheap, and each needs an IOMMU group of its
# own, so 120 sit behind root ports that are the functions of 15 multifunction slots (QEMU's
# root ports have ACS) and 8 directly on pcie.0 (integrated endpoints, one per slot). The guest
# does not bind them at boot (128 BDFs do not fit the kernel's 2048-byte command line): the
# broker binds each at AddDevice (--bind, allow_bind = yes).
SCALE_DEVICES = 128
SCALE_DIRECT = 8


def scale_topology():
    devs = [vbguest.Device("edu", id="edu%d" % i, root_port=i >= SCALE_DIRECT, vfio=False)
            for i in range(SCALE_DEVICES)]
    return vbguest.Topology(devs, spare_ports=0, mem=2048, port_functions=8)


def ctl_latency(g, bdf):
    """bench_guest ctl: {op: (p50, p99, max, devices listed)} in ms."""
    out = g.check("VB_BENCH_CTL_ROUNDS=200 bench_guest ctl %s %s" % (CTL_SOCK, bdf), timeout=600)
    res = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 6 and f[0] == "ctl":
            res[f[1]] = (float(f[2]), float(f[3]), float(f[4]), int(f[5]))
    if set(res) != {"status", "list", "raw"}:
        raise RuntimeError("bench_guest ctl printed no figures: %s" % out.strip()[:300])
    return res


def report(name, fig, fig99, baseline, base, base99, units, n):
    ratio = fig / base if base else 0
    print("%-30s %12.1f %12.1f  %-34s %12.1f %12.1f %7.2fx  %-7s %d"
          % (name, fig, fig99, baseline, base, base99, ratio, units, n), flush=True)
    emit("ok\t%s\t%.1f\t%.1f\t%s\t%.1f\t%.1f\t%.2f\t%s\t%d"
         % (name, fig, fig99, baseline, base, base99, ratio, units, n))


def worker_mem(g, pids):
    """Median Pss and Rss (KiB) of the workers, from /proc/PID/smaps_rollup."""
    pss, rss = [], []
    for pid in pids:
        out = g.check("grep -E '^(Rss|Pss):' /proc/%d/smaps_rollup" % pid)
        v = {l.split(":")[0]: float(l.split()[1]) for l in out.splitlines()}
        pss.append(v["Pss"])
        rss.append(v["Rss"])
    pss.sort()
    rss.sort()
    return pss[len(pss) // 2], rss[len(rss) // 2]


def main_scale(build):
    """128 devices behind one broker: its memory per device, its control requests, the
    workers' proportional memory."""
    name = "brokerd_per_device_Rss"
    try:
        g = vbguest.Guest(build, topology=scale_topology(), boot_timeout=900)
        g.start()
    except Exception as e:
        fail(name, "the guest did not start: %s" % e)
        return 1
    ok = True
    try:
        print("guest booted in %.1f s (QEMU TCG, 1 vCPU, %d edu devices)"
              % (g.boot_seconds, SCALE_DEVICES), flush=True)
        bdfs = [g.bdf("edu%d" % i) for i in range(SCALE_DEVICES)]
        groups = g.check("for d in %s; do readlink /sys/bus/pci/devices/$d/iommu_group; done"
                         % " ".join(bdfs)).split()
        if len(set(groups)) != SCALE_DEVICES:
            raise RuntimeError("%d devices in %d IOMMU groups" % (SCALE_DEVICES, len(set(groups))))
        # Heartbeats as a production broker sends them (every second; the test guest's
        # 500 ms doubles the broker's traffic at 128 workers).
        conf = vbbroker.config(heartbeat_interval_ms=1000, heartbeat_timeout_ms=3000)
        with Broker(g, conf=conf, stop_timeout=600) as b:
            rss0 = mem_kib(g, b.pid)
            pids = [b.add(bdfs[0], vm="vm0", opts="--bind")["worker_pid"]]
            rss1 = mem_kib(g, b.pid)
            lat1 = ctl_latency(g, bdfs[0])
            for i in range(1, SCALE_DEVICES):
                pids.append(b.add(bdfs[i], vm="vm%d" % (i % 16), opts="--bind")["worker_pid"])
            rssn = mem_kib(g, b.pid)
            latn = ctl_latency(g, bdfs[0])
            # The broker's own time per request (from its receipt to its reply), beside the
            # client's: what the broker spends against what the request waited for.
            print("# the broker's request durations at %d devices (both ctl runs):\n%s"
                  % (SCALE_DEVICES, g.check(
                      "vfio-brokerctl metrics | grep -E 'request_duration_seconds_"
                      "(bucket|sum|count).type=.(device_status|list_devices)'")), flush=True)
            pss, rss = worker_mem(g, pids)
            if latn["list"][3] != SCALE_DEVICES:
                raise RuntimeError("ListDevices listed %d devices" % latn["list"][3])
            print("\n== guest: %d devices behind one broker" % SCALE_DEVICES)
            n = SCALE_DEVICES
            per = (rssn["Rss"] - rss1["Rss"]) / (n - 1)
            first = rss1["Rss"] - rss0["Rss"]
            report("brokerd_%ddev_Rss" % n, rssn["Rss"], rssn["VmHWM"], "brokerd_1dev_Rss",
                   rss1["Rss"], rss1["VmHWM"], "KiB", 1)
            report("brokerd_per_device_Rss", per, per, "brokerd_first_device_Rss", first,
                   first, "KiB", n - 1)
            for op in ("status", "list"):
                report("ctl_%s_%ddev" % (op, n), latn[op][0] * 1e3, latn[op][1] * 1e3,
                       "ctl_%s_1dev" % op, lat1[op][0] * 1e3, lat1[op][1] * 1e3, "us/op", 200)
            # What the guest's scheduling alone costs a round trip, in the same rounds: the
            # p99 a control request cannot go below on this guest.
            for label, lat in (("%ddev" % n, latn), ("1dev", lat1)):
                report("ctl_status_%s_vs_raw" % label, lat["status"][0] * 1e3,
                       lat["status"][1] * 1e3, "raw_seqpacket_34B_180B_%s" % label,
                       lat["raw"][0] * 1e3, lat["raw"][1] * 1e3, "us/op", 200)
            report("worker_%ddev_Pss" % n, pss, pss, "worker_%ddev_Rss" % n, rss, rss, "KiB", n)
            t0 = time.monotonic()
            b.stop()
            print("# the broker ended %d workers and exited in %.1f s"
                  % (n, time.monotonic() - t0), flush=True)
    except Exception as e:
        fail(name, "%s: %s" % (e.__class__.__name__, e))
        ok = False
    finally:
        g.close()
    return 0 if ok else 1


def metric(g, name):
    for line in g.check("vfio-brokerctl metrics").splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise RuntimeError("no metric " + name)


# What the broker and the worker log of each hot-plug's steps (info level: the broker runs at
# info here, as in production, not at the test guest's debug, whose lines are more writes):
# the broker's AddDevice steps until its answer, the worker's from its HANDOFF to its answer,
# the worker's admission of the VMM (VMM_ADMIT to the broker and back) and its HELLO's answer,
# and when the broker heard that the VMM is in, after AddDevice's answer.
STEP_LINES = (
    ("broker", re.compile(r"AddDevice answered after ([0-9.]+) ms: (.*)$")),
    ("worker", re.compile(r"answered ([0-9.]+) ms after the HANDOFF: (.*)$")),
    ("admit", re.compile(r"connected, ([0-9.]+) ms after its connect")),
    ("first_vmm", re.compile(r"connected, the first ([0-9.]+) ms after AddDevice's answer$")),
)
STEPS = {}


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else float("nan")


def collect_steps(g, row):
    """The step lines of the broker's log (this row's broker only) into STEPS[row]: for each
    source its totals and, per step name, its durations (ms)."""
    out = g.check("grep -E 'AddDevice answered after|after the HANDOFF|after its connect|"
                  "after AddDevice.s answer' %s || true" % vbbroker.LOG)
    res = {src: {"total": [], "steps": {}} for src, _ in STEP_LINES}
    for line in out.splitlines():
        for src, rx in STEP_LINES:
            m = rx.search(line.strip())
            if not m:
                continue
            res[src]["total"].append(float(m.group(1)))
            if m.lastindex == 2:
                f = m.group(2).split()
                for k, v in zip(f[0::2], f[1::2]):
                    res[src]["steps"].setdefault(k, []).append(float(v))
    STEPS[row] = res


def print_steps(row):
    """Each step's median for one row, the broker's and the worker's own figures beside what
    the client measured (bench_guest's p4 line)."""
    s, p = STEPS.get(row), P4.get(row)
    if not s or not p or not s["broker"]["total"]:
        print("# %s: no step lines in the broker's log" % row, flush=True)
        return
    print("\n== P4 steps, %s (medians of %d AddDevice, ms, TCG)"
          % (row, len(s["broker"]["total"])))
    line = "%-64s %8.2f"
    print(line % ("client: AddDevice until its answer", p["add"]))
    print(line % ("  broker: from the request to its answer (its steps below)",
                  median(s["broker"]["total"])))
    for k, v in s["broker"]["steps"].items():
        print(line % ("    " + k, median(v)))
        if k == "handoff" and s["worker"]["total"]:
            print(line % ("      worker: from the HANDOFF's receipt to its answer",
                          median(s["worker"]["total"])))
            for wk, wv in s["worker"]["steps"].items():
                print(line % ("        " + wk, median(wv)))
    print(line % ("  the control socket, both ends (client - broker)",
                  p["add"] - median(s["broker"]["total"])))
    print(line % ("client: handshake after AddDevice's answer (median of the rounds')",
                  p.get("handshake", p["total"] - p["add"])))
    print(line % ("  broker: its answer until the worker says the VMM is in",
                  median(s["first_vmm"]["total"])))
    print(line % ("    worker: the VMM's accept until admitted and HELLO answered",
                  median(s["admit"]["total"])))
    print(line % ("client: total (AddDevice until the handshake is done)", p["total"]))
    print(line % ("baseline: the same VFIO steps in-process", p["vfio"]))
    for k, label in (("vfio_group", "sysfs, container, group, attach, IOMMU"),
                     ("vfio_device", "VFIO_GROUP_GET_DEVICE_FD"), ("vfio_reset", "VFIO_DEVICE_RESET")):
        if k in p:
            print(line % ("  " + label, p[k]))
    sys.stdout.flush()


def p4_breakdown():
    """Where a hot-plug's time goes (medians, ms): the VFIO steps are the baseline's own (the
    same ioctls in-process); the sandboxed spawn is bench_guest spawn's, split at the parent's
    release; the rest of AddDevice's answer is the worker's start-up after its exec (its
    HANDOFF: device model, server, seccomp filter), the HANDOFF round trip and the broker's
    bookkeeping; the handshake is the VMM's connection after AddDevice's answer."""
    off, on = P4.get("hotplug_add_to_handshake"), P4.get("hotplug_add_to_handshake_prestart")
    sp = P4.get("spawn")
    if not off or not on or not sp:
        print("# P4 breakdown: not every part ran", flush=True)
        return
    spawn = sp["parent"] + sp["child"]
    print("\n== P4: where a hot-plug's time goes (medians, ms, TCG)")
    print("%-58s %10s %10s" % ("step", "prestart=0", "prestart=1"))
    rows = (
        ("VFIO steps (the baseline: group, container, device fd, reset)", off["vfio"],
         on["vfio"]),
        ("sandboxed spawn, parent: clone3 (user, pid), id maps", sp["parent"], 0.0),
        ("sandboxed spawn, child: 5 namespaces, root, creds, execveat", sp["child"], 0.0),
        ("worker start-up + HANDOFF + bookkeeping (AddDevice answer - above)",
         off["add"] - off["vfio"] - spawn, on["add"] - on["vfio"]),
        ("VMM connection and handshake (after AddDevice's answer)", off["total"] - off["add"],
         on["total"] - on["add"]),
        ("hotplug_add_to_handshake (total)", off["total"], on["total"]),
    )
    for label, a, b in rows:
        print("%-58s %10.1f %10.1f" % (label, a, b))
    print("ratio against the baseline: %.2fx (prestart=0), %.2fx (prestart=1)\n"
          % (off["total"] / off["vfio"], on["total"] / on["vfio"]), flush=True)


def main(build):
    vbguest.install_signal_handlers()
    parts = os.environ.get("VB_BENCH_GUEST_PARTS", "main,dma-vm,scale").split(",")
    rc = 0
    if "main" in parts:
        rc |= main_small(build)
    elif "hotplug" in parts:
        rc |= main_small(build, only_p4=True)
    if "dma-vm" in parts:
        rc |= main_dma_vm(build)
    if "scale" in parts:
        rc |= main_scale(build)
    return rc


def main_small(build, only_p4=False):
    """The small guest; only_p4: the hot-plug rows and the spawn alone (VB_BENCH_GUEST_PARTS=
    hotplug), for iterating on P4."""
    devices = [vbguest.Device("edu"), vbguest.Device("edu")]
    ok = True
    try:
        g = vbguest.Guest(build, devices=devices, spare_ports=0)
        g.start()
    except Exception as e:
        for n in NAMES:
            fail(n, "the guest did not start: %s" % e)
        return 1
    try:
        print("guest booted in %.1f s (QEMU TCG, 1 vCPU)" % g.boot_seconds, flush=True)
        edu0, edu1 = g.bdf("edu0"), g.bdf("edu1")
        if not only_p4:
            with Broker(g) as b:
                idle = mem_kib(g, b.pid)
                rep = b.add(edu0, opts="--allow-mmap")
                sock = rep["socket_path"]
                one = mem_kib(g, b.pid)
                print("\n== guest: vfio-brokerd memory with one device against none")
                for field in ("Rss", "VmHWM"):
                    report_kib("brokerd_1dev_" + field, one[field], "brokerd_0dev_" + field,
                               idle[field])
                ok &= run_bench(g, "dma %s %s" % (sock, edu1))
                ok &= run_bench(g, "msi %s" % sock)
                b.remove(edu0, "--force")
    except Exception as e:
        fail("guest", "%s: %s" % (e.__class__.__name__, e))
        g.close()
        return 1
    try:
        for row, prestart in HOTPLUG_ROWS:
            conf = vbbroker.config(extra="prestart = %d\n" % prestart, log_level="info")
            with Broker(g, conf, worker_log=True) as b:
                ok &= run_bench(g, "hotplug %s %s %s %s" % (CTL_SOCK, edu0, edu1, row),
                                timeout=900)
                taken = metric(g, "vfio_broker_pool_taken_total")
                print("# %s: prestart = %d, %d AddDevice served by a pre-started worker"
                      % (row, prestart, taken), flush=True)
                collect_steps(g, row)
        # What of AddDevice is the worker's sandboxed start (the broker waits for its exec).
        ok &= run_bench(g, "spawn %s" % WORKER, timeout=600)
        p4_breakdown()
        for row, _ in HOTPLUG_ROWS:
            print_steps(row)
    except Exception as e:
        fail("guest", "%s: %s" % (e.__class__.__name__, e))
        ok = False
    finally:
        g.close()
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: guest_bench.py BUILD_DIR\n")
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
