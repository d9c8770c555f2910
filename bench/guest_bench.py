"""The guest benchmarks of `make bench`: boots the test guest (tests/guest/vbguest.py: Debian's
kernel under QEMU TCG, emulated Intel IOMMU) with two edu devices bound to vfio-pci, starts
vfio-brokerd in it with its real configuration (tests/guest/vbbroker.py), and runs

  - bench_guest dma: DMA map+unmap of 2 MiB through the broker (edu0) against direct
    VFIO_IOMMU_MAP_DMA/UNMAP_DMA on a container of the benchmark's own (edu1);
  - bench_guest msi: MSI delivery from edu0 to an eventfd against an eventfd write;
  - the broker's resident memory with edu0 assigned against the same broker with no device
    (VmRSS and VmHWM from /proc): what one device's bookkeeping, worker supervision and
    channels cost the broker.

Every figure is measured under TCG: absolute numbers are those of an emulated machine, far
slower than hardware; the ratios compare two paths through the same emulation.

    python3 guest_bench.py BUILD_DIR

Rows are printed as the host benchmarks print them and appended to $VB_BENCH_TSV. Exits 0, or 1
when something could not run (its rows say why).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "guest"))

import vbguest  # noqa: E402
from vbbroker import Broker  # noqa: E402

# Batches and their length inside the guest: a TCG guest is ~20x slower than the host, and the
# boot already costs seconds, so fewer and shorter batches keep `make bench` within minutes.
GUEST_SCALE = os.environ.get("VB_BENCH_GUEST_SCALE", "0.3")
GUEST_TSV = "/tmp/bench.tsv"

TSV = os.environ.get("VB_BENCH_TSV")
NAMES = ("dma_map_unmap_2MiB", "msi_raise_to_eventfd", "brokerd_1dev_VmRSS",
         "brokerd_1dev_VmHWM")


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


def status_kib(g, pid):
    out = g.check("grep -E '^(VmRSS|VmHWM):' /proc/%d/status" % pid)
    return {l.split(":")[0]: float(l.split()[1]) for l in out.splitlines()}


def run_bench(g, args):
    """Runs bench_guest in the guest; echoes its table; copies its TSV rows to ours."""
    rc, out = g.run("rm -f %s; VB_BENCH_TSV=%s VB_BENCH_SCALE=%s bench_guest %s"
                    % (GUEST_TSV, GUEST_TSV, GUEST_SCALE, args), timeout=120)
    sys.stdout.write(out)
    sys.stdout.flush()
    rows = g.run("cat %s" % GUEST_TSV)[1] if rc in (0, 1) else ""
    for line in rows.splitlines():
        if line.startswith(("ok\t", "fail\t")):
            emit(line)
    if rc != 0 and not rows.strip():
        fail("bench_guest " + args.split()[0], "exited with status %d" % rc)
    return rc == 0


def main(build):
    vbguest.install_signal_handlers()
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
        with Broker(g) as b:
            idle = status_kib(g, b.pid)
            rep = b.add(edu0, opts="--allow-mmap")
            sock = rep["socket_path"]
            one = status_kib(g, b.pid)
            print("\n== guest: vfio-brokerd memory with one device against none")
            for field in ("VmRSS", "VmHWM"):
                report_kib("brokerd_1dev_" + field, one[field], "brokerd_0dev_" + field,
                           idle[field])
            ok &= run_bench(g, "dma %s %s" % (sock, edu1))
            ok &= run_bench(g, "msi %s" % sock)
            b.remove(edu0, "--force")
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
