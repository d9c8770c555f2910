"""The guest test runner: loads every tests/guest/cases/*.py (each registers tests with
vbguest.guest_test), boots one guest per distinct topology, runs that topology's tests in it and
prints one TAP line per test. See run.sh for the environment variables it reads.

A failing test does not stop the others. A guest that does not boot fails all of its tests with
the reason; a guest that hangs or dies is killed and its remaining tests are reported not ok.
"""

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import traceback

import vbguest
import vbimage
import vbkernel

HERE = os.path.dirname(os.path.abspath(__file__))


class TestTimeout(Exception):
    pass


def load_cases():
    dirs = [os.path.join(HERE, "cases")]
    dirs += [d for d in os.environ.get("VB_GUEST_CASES", "").split(":") if d]
    for i, cases in enumerate(dirs):
        for name in sorted(os.listdir(cases)):
            if name.endswith(".py") and not name.startswith("_"):
                spec = importlib.util.spec_from_file_location(
                    "vbcase%d_%s" % (i, name[:-3]), os.path.join(cases, name))
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
    for func in vbguest.AFTER_LOAD:
        func()
    return list(vbguest.REGISTRY)


class Run:
    """One test on one kernel: its TAP name carries the kernel unless it is the primary one."""

    def __init__(self, test, label):
        self.test, self.label = test, label
        self.name = test.name + ("" if label == vbkernel.PRIMARY else " [%s]" % label)
        self.func, self.timeout, self.topology = test.func, test.timeout, test.topology


def _wanted(test, want):
    # "name" picks the test (on every kernel); a generated "base@variant" name is picked by its
    # base too.
    return test.name in want or test.name.split("@")[0] in want


class Tap:
    def __init__(self, total):
        self.n = 0
        self.failed = []
        print("1..%d" % total, flush=True)

    def result(self, name, ok, why=None):
        self.n += 1
        print("%s %d - %s" % ("ok" if ok else "not ok", self.n, name), flush=True)
        if not ok:
            self.failed.append(name)
            vbguest.note(why or "failed")


def _reason(e):
    if isinstance(e, AssertionError):
        tb = traceback.extract_tb(e.__traceback__)[-1]
        where = "%s:%d" % (os.path.basename(tb.filename), tb.lineno)
        return "assertion failed at %s: %s" % (where, e if str(e) else tb.line)
    return "%s: %s" % (e.__class__.__name__, e)


def _on_alarm(signum, frame):
    raise TestTimeout()


def run_group(build, image, topo, tests, tap, index, keep_log):
    kspec, initramfs, kernel = image
    slug = re.sub(r"[^A-Za-z0-9]+", "-", tests[0].name)[:40]
    log = os.path.join(build, "guest", "%02d-%s.log" % (index, slug))
    vbguest.note("guest %d: kernel %s, %s (%d test(s)), console log %s"
                 % (index, kspec.release, topo.describe(), len(tests), log))
    left = list(tests)
    ok = True
    guest = getattr(topo, "guest_class", vbguest.Guest)(build, topology=topo, log=log,
                                                      initramfs=initramfs, kernel=kernel,
                                                      kspec=kspec)
    try:
        try:
            guest.start()
        except vbguest.GuestError as e:
            for t in left:
                tap.result(t.name, False, "guest did not start: %s" % e)
            return False
        vbguest.note("guest %d booted in %.1fs" % (index, guest.boot_seconds))
        while left:
            t = left.pop(0)
            t0 = time.monotonic()
            signal.signal(signal.SIGALRM, _on_alarm)
            signal.alarm(t.timeout)
            try:
                t.func(guest)
                signal.alarm(0)
                tap.result(t.name, True)
            except TestTimeout:
                ok = False
                tap.result(t.name, False, "timed out after %ds; guest killed" % t.timeout)
                guest.close()
            except vbguest.GuestDead as e:
                signal.alarm(0)
                guest.close()
                ok = False
                tap.result(t.name, False, "guest died: %s\nconsole tail:\n%s"
                           % (e, guest.console_tail(20)))
            except Exception as e:
                signal.alarm(0)
                ok = False
                tap.result(t.name, False, _reason(e))
            finally:
                signal.alarm(0)
            vbguest.note("%s: %.1fs" % (t.name, time.monotonic() - t0))
            if not guest.alive():
                for rest in left:
                    tap.result(rest.name, False, "not run: the guest was killed or died "
                               "during %s" % t.name)
                left = []
    finally:
        guest.close()
    if ok and not keep_log:
        for p in (log, log + ".qemu"):
            try:
                os.unlink(p)
            except OSError:
                pass
    return ok


def main(argv):
    if len(argv) != 2:
        print("usage: runner.py BUILD_DIR", file=sys.stderr)
        return 2
    vbguest.install_signal_handlers()
    build = os.path.abspath(argv[1])
    t_start = time.monotonic()
    tests = load_cases()
    try:
        labels = vbkernel.selected()
    except ValueError as e:
        print("runner: %s" % e, file=sys.stderr)
        return 2
    if os.environ.get("VB_GUEST_LIST"):
        for t in tests:
            print("%s\t%s\tkernels %s" % (t.name, t.topology.describe(), ",".join(t.kernels)))
        return 0
    want = [w for w in os.environ.get("VB_GUEST_TESTS", "").replace(",", " ").split() if w]
    if want:
        unknown = [w for w in want if not any(_wanted(t, [w]) for t in tests)]
        if unknown:
            print("runner: unknown guest tests: %s" % ", ".join(unknown), file=sys.stderr)
            return 2
        tests = [t for t in tests if _wanted(t, want)]
    keep_log = bool(os.environ.get("VB_GUEST_KEEP_LOG"))
    runs = [Run(t, k) for k in labels for t in tests if k in t.kernels]
    groups = {}
    for r in runs:
        groups.setdefault((r.label, r.topology.key()), (r.label, r.topology, []))[2].append(r)
    tap = Tap(len(runs))
    os.makedirs(os.path.join(build, "guest"), exist_ok=True)
    images = {}
    for i, (label, topo, group) in enumerate(groups.values()):
        if label not in images:
            # Each kernel is prepared just before its first guest, so that its failure (a
            # download, a module) fails its own tests with the reason and nothing else.
            try:
                kspec = vbkernel.get(label)
                initramfs = os.path.join(build, "guest", "initramfs-%s.cpio" % label)
                image = vbimage.kernel_image(build, kspec)
                size = vbimage.build_initramfs(build, initramfs, kspec)
                vbguest.note("kernel %s (%s): %s, initramfs %s (%.1f MiB)"
                             % (label, kspec.release, image, initramfs, size / 1048576))
                images[label] = (kspec, initramfs, image)
            except (vbimage.ImageError, OSError, subprocess.CalledProcessError) as e:
                images[label] = "cannot prepare kernel %s for the guest: %s" % (label, e)
        if isinstance(images[label], str):
            for r in group:
                tap.result(r.name, False, images[label])
            continue
        run_group(build, images[label], topo, group, tap, i, keep_log)
    vbguest.note("guest suite: %d test(s), %d failed, %.1fs"
                 % (tap.n, len(tap.failed), time.monotonic() - t_start))
    return 1 if tap.failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except KeyboardInterrupt:
        # Every Guest was closed on the way out (run_group's finally, atexit for the rest).
        print("# interrupted", flush=True)
        sys.exit(130)
