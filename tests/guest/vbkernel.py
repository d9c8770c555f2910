"""vbkernel: the kernels the test guest boots. Debian 12's own (6.1, from the host's /boot and
/lib/modules: the Makefile's DEPS install linux-image-amd64), and Debian's next kernels from the
same archive, fetched with `apt-get download` through a private sources list and a private apt
state and cache (the machine's apt sources, lists and dpkg status are never read or changed):

    label  suite              packages (resolved from the suite's linux-image-amd64)
    6.1    the host's         /boot/vmlinuz-*, /lib/modules/*
    6.12   trixie             linux-image-<abi>
    7.3    trixie-backports   linux-image-<abi> -> linux-binary-, linux-modules-, linux-base-<abi>

Fetched kernels are unpacked into a cache outside the build tree, shared by every build and
worktree and reused across runs: $VB_KERNEL_CACHE, else /var/cache/vfio-broker-tests when it can
be written, else ~/.cache/vfio-broker-tests. One lock file per kernel serializes concurrent runs;
an unpacked kernel becomes visible only by an atomic rename, so a run never sees half of one.
A kernel is fetched once and then used without the network; VB_KERNEL_REFRESH=1 fetches again
(to follow the suite). A failed fetch raises ImageError with apt's own words: every test on that
kernel then fails with the reason, none is skipped.

Trusts: Debian's archive as signed by /usr/share/keyrings/debian-archive-keyring.gpg (apt checks
the Release signature and each package's hash), dpkg-deb.
"""

import fcntl
import os
import re
import shutil
import subprocess

from vbimage import ImageError, kernel_release

PRIMARY = "6.1"

# label -> Debian suite (None: the host's installed kernel). The label is the kernel's
# major.minor; a suite that moves on to another series fails loudly (see _check_series) rather
# than testing something else under the old name.
SUITES = {"6.1": None, "6.12": "trixie", "7.3": "trixie-backports"}
ALL = tuple(SUITES)

MIRROR = os.environ.get("VB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
META = "linux-image-amd64"
# The packages a kernel's image, modules and module metadata come in (7.x splits linux-image
# into these; 6.12's linux-image holds all of them).
PARTS = re.compile(r"^linux-(image|binary|modules|base)-\d")


class Kernel:
    """A bootable kernel: label ("6.12"), release ("6.12.117+deb13-amd64"), vmlinuz (its
    bzImage) and moddir (its /lib/modules/<release>)."""

    def __init__(self, label, release, vmlinuz, moddir):
        self.label, self.release, self.vmlinuz, self.moddir = label, release, vmlinuz, moddir

    def __repr__(self):
        return "Kernel(%s, %s)" % (self.label, self.release)


def cache_root():
    forced = os.environ.get("VB_KERNEL_CACHE")
    if forced:
        return forced
    system = "/var/cache/vfio-broker-tests"
    try:
        os.makedirs(system, exist_ok=True)
        if os.access(system, os.W_OK):
            return system
    except OSError:
        pass
    return os.path.join(os.path.expanduser("~"), ".cache", "vfio-broker-tests")


def _series(release):
    m = re.match(r"(\d+\.\d+)[.+-]", release + "-")
    return m.group(1) if m else release


def _check_series(label, release, suite):
    if _series(release) != label:
        raise ImageError("%s now carries kernel %s, not %s: update vbkernel.SUITES"
                         % (suite, release, label))


def _host(label):
    rel = kernel_release()
    forced = os.environ.get("VB_GUEST_KERNEL")
    return Kernel(label, rel, forced or "/boot/vmlinuz-" + rel, "/lib/modules/" + rel)


class _Apt:
    """apt-get/apt-cache on a private configuration: sources.list naming only `suite`, its own
    lists, package cache and an empty dpkg status (so the host's installed kernel is no
    candidate)."""

    def __init__(self, base, suite):
        self.base, self.suite = base, suite
        for d in ("state/lists/partial", "cache/archives/partial"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        with open(os.path.join(base, "sources.list"), "w") as f:
            f.write("deb [signed-by=%s] %s %s main\n" % (KEYRING, MIRROR, suite))
        open(os.path.join(base, "status"), "a").close()
        try:
            import pwd
            user = pwd.getpwuid(os.getuid()).pw_name
        except (ImportError, KeyError):
            user = "root"
        self.opts = ["-o", "Dir::Etc::SourceList=" + os.path.join(base, "sources.list"),
                     "-o", "Dir::Etc::SourceParts=" + os.path.join(base, "sources.list.d"),
                     "-o", "Dir::Etc::Preferences=/dev/null",
                     "-o", "Dir::Etc::PreferencesParts=" + os.path.join(base, "preferences.d"),
                     "-o", "Dir::State=" + os.path.join(base, "state"),
                     "-o", "Dir::State::status=" + os.path.join(base, "status"),
                     "-o", "Dir::Cache=" + os.path.join(base, "cache"),
                     "-o", "Debug::NoLocking=1",
                     # Downloads land in a directory of ours, not one _apt may write.
                     "-o", "APT::Sandbox::User=" + user]

    def run(self, tool, *args, cwd=None):
        if not shutil.which(tool):
            raise ImageError("%s is missing (kernel %s needs it)" % (tool, self.suite))
        r = subprocess.run([tool] + self.opts + list(args), cwd=cwd, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise ImageError("%s %s (suite %s) failed: %s"
                             % (tool, " ".join(args), self.suite,
                                (r.stderr or r.stdout).strip()[-1500:]))
        return r.stdout

    def depends(self, pkg):
        """(version, [dependency package names]) of pkg's candidate in the suite."""
        out = self.run("apt-cache", "show", "--no-all-versions", pkg)
        version = re.search(r"^Version: (\S+)", out, re.M)
        deps = re.search(r"^Depends: (.*)$", out, re.M)
        if not version:
            raise ImageError("apt-cache show %s (suite %s): no Version" % (pkg, self.suite))
        names = []
        for alt in (deps.group(1).split(",") if deps else []):
            names.extend(a.strip().split(" ")[0] for a in alt.split("|"))
        return version.group(1), names


def _fetch(label, suite, dest):
    """Downloads and unpacks the suite's kernel into dest (a new directory)."""
    apt = _Apt(os.path.join(os.path.dirname(dest), "apt-" + suite), suite)
    # --error-on=any: a mirror that cannot be reached is an error, not a warning and a stale list.
    apt.run("apt-get", "-q", "--error-on=any", "update")
    todo, pkgs = [META], []
    while todo:
        pkg = todo.pop()
        _, deps = apt.depends(pkg)
        for d in deps:
            if PARTS.match(d) and d not in pkgs:
                pkgs.append(d)
                todo.append(d)
    if not any(p.startswith("linux-image-") for p in pkgs):
        raise ImageError("%s in %s depends on no linux-image-<abi>" % (META, suite))
    debs = os.path.join(dest + ".debs")
    shutil.rmtree(debs, ignore_errors=True)
    os.makedirs(debs)
    apt.run("apt-get", "-q", "download", *pkgs, cwd=debs)
    root = dest + ".tmp"
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    for deb in sorted(os.listdir(debs)):
        r = subprocess.run(["dpkg-deb", "-x", os.path.join(debs, deb), root],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise ImageError("dpkg-deb -x %s: %s" % (deb, r.stderr.strip()))
    with open(os.path.join(root, "PACKAGES"), "w") as f:
        f.write("\n".join(sorted(os.listdir(debs))) + "\n")
    shutil.rmtree(debs)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(root, dest)


def _unpacked(label, root):
    """The Kernel inside an unpacked tree: its vmlinuz is /boot/vmlinuz-<rel> (6.12) or
    /usr/lib/modules/<rel>/vmlinuz (7.x); its modules under /usr/lib/modules or /lib/modules."""
    for base in ("usr/lib/modules", "lib/modules"):
        mods = os.path.join(root, base)
        rels = sorted(os.listdir(mods)) if os.path.isdir(mods) else []
        for rel in rels:
            for vml in (os.path.join(root, "boot", "vmlinuz-" + rel),
                        os.path.join(mods, rel, "vmlinuz")):
                if os.path.isfile(vml):
                    return Kernel(label, rel, vml, os.path.join(mods, rel))
    raise ImageError("no vmlinuz with modules in %s (packages: %s)" % (root, _packages(root)))


def _packages(root):
    try:
        with open(os.path.join(root, "PACKAGES")) as f:
            return " ".join(f.read().split())
    except OSError:
        return "?"


def get(label):
    """The Kernel for label (one of ALL), fetching and unpacking it on first use."""
    if label not in SUITES:
        raise ImageError("unknown kernel %r (known: %s)" % (label, ", ".join(ALL)))
    suite = SUITES[label]
    if suite is None:
        return _host(label)
    base = os.path.join(cache_root(), "kernels")
    os.makedirs(base, exist_ok=True)
    dest = os.path.join(base, label)
    with open(os.path.join(base, label + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.environ.get("VB_KERNEL_REFRESH") or not os.path.isdir(dest):
            _fetch(label, suite, dest)
        k = _unpacked(label, dest)
    _check_series(label, k.release, suite)
    return k


def selected():
    """The labels VB_GUEST_KERNELS names (default: all), checked."""
    want = [w for w in os.environ.get("VB_GUEST_KERNELS", "").replace(",", " ").split() if w]
    unknown = [w for w in want if w not in SUITES]
    if unknown:
        raise ValueError("unknown kernels in VB_GUEST_KERNELS: %s (known: %s)"
                         % (", ".join(unknown), ", ".join(ALL)))
    return [k for k in ALL if not want or k in want]
