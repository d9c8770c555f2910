"""vbimage: what the test guest boots: the kernel (Debian's, unpacked for a fast PVH boot) and
an initramfs built from busybox-static, the VFIO and virtio-console modules, every file of BUILD/bin plus the shared
libraries ldd says they need, and tests/guest/rootfs (the guest's /init and helper scripts).
Python 3 stdlib only. Trusts the host's /boot, /lib/modules, busybox and the build directory.
"""

import gzip
import lzma
import os
import re
import shutil
import stat
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOTFS = os.path.join(HERE, "rootfs")
GUEST_BIN = "/opt/vfio-broker/bin"

# Loaded in this order: each module's dependencies first (modinfo -F depends). virtio_console
# carries the host's command channel; the rest is VFIO.
GUEST_MODULES = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
                 "virtio_pci", "virtio_console",
                 "irqbypass", "vfio", "vfio_iommu_type1", "vfio_virqfd", "vfio-pci-core", "vfio-pci"]


class ImageError(Exception):
    """The kernel or initramfs cannot be prepared (a missing package or file)."""


class _Cpio:
    """Writes a newc ("070701") cpio archive, the format the kernel unpacks as initramfs. Written
    here rather than with cpio(1) so that device nodes and ownership need no root on the host."""

    def __init__(self, f):
        self.f = f
        self.ino = 1
        self.seen = set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        name = name.lstrip("/")
        if name in self.seen:
            return
        self.seen.add(name)
        namez = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(namez), 0]
        self.ino += 1
        hdr = b"070701" + b"".join(b"%08X" % v for v in fields)
        self.f.write(hdr + namez)
        self.f.write(b"\0" * ((4 - (len(hdr) + len(namez)) % 4) % 4))
        self.f.write(data)
        self.f.write(b"\0" * ((4 - len(data) % 4) % 4))

    def dirs(self, path):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self._entry("/".join(parts[:i]), stat.S_IFDIR | 0o755)

    def file(self, path, data, mode=0o644):
        self.dirs(os.path.dirname(path))
        self._entry(path, stat.S_IFREG | mode, data)

    def host_file(self, path, src=None):
        src = src or path
        with open(src, "rb") as f:
            data = f.read()
        self.file(path, data, os.stat(src).st_mode & 0o7777)

    def symlink(self, path, target):
        self.dirs(os.path.dirname(path))
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path, major, minor, mode=0o600):
        self.dirs(os.path.dirname(path))
        self._entry(path, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)


def _is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _shared_libs(path):
    """The absolute paths of the shared libraries (and the loader) that path needs, per ldd."""
    r = subprocess.run(["ldd", path], capture_output=True, text=True)
    if r.returncode != 0:  # static executables say so and exit 1
        return []
    libs = []
    for line in r.stdout.splitlines():
        if "not found" in line:
            raise ImageError("%s: ldd: %s" % (path, line.strip()))
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def kernel_release():
    """The newest kernel in /boot that has its modules installed (override: VB_GUEST_KERNEL)."""
    forced = os.environ.get("VB_GUEST_KERNEL")
    if forced:
        return os.path.basename(forced).replace("vmlinuz-", "")
    cands = []
    for name in os.listdir("/boot"):
        if name.startswith("vmlinuz-"):
            rel = name[len("vmlinuz-"):]
            if os.path.isdir("/lib/modules/" + rel):
                cands.append(rel)
    if not cands:
        raise ImageError("no /boot/vmlinuz-* with modules in /lib/modules "
                             "(install linux-image-amd64)")

    def vkey(rel):
        return [int(x) if x.isdigit() else x for x in re.split(r"[.-]", rel)]
    return sorted(cands, key=vkey)[-1]


def kernel_image(build_dir, kver):
    """The kernel QEMU should boot. Debian's bzImage spends ~3 s of TCG time decompressing itself,
    so the ELF vmlinux inside it is unpacked once (cached as BUILD/guest/vmlinux-<kver>) and booted
    through its PVH entry point. Falls back to the bzImage when no xz/gzip payload is found."""
    bz = "/boot/vmlinuz-" + kver
    cached = os.path.join(build_dir, "guest", "vmlinux-" + kver)
    try:
        if os.path.getmtime(cached) >= os.path.getmtime(bz):
            return cached
    except OSError:
        pass
    with open(bz, "rb") as f:
        data = f.read()
    for magic, new in ((b"\xfd7zXZ\x00", lzma.LZMADecompressor), (b"\x1f\x8b\x08\x00",
                                                                  lambda: gzip.zlib.decompressobj(31))):
        i = data.find(magic)
        while i >= 0:
            try:
                elf = new().decompress(data[i:])
            except (lzma.LZMAError, gzip.zlib.error):
                elf = b""
            if elf[:4] == b"\x7fELF":
                os.makedirs(os.path.dirname(cached), exist_ok=True)
                with open(cached + ".tmp", "wb") as f:
                    f.write(elf)
                os.replace(cached + ".tmp", cached)
                return cached
            i = data.find(magic, i + 1)
    return bz


def _module_paths(kver):
    moddir = "/lib/modules/" + kver
    found = {}
    for root, _, files in os.walk(os.path.join(moddir, "kernel")):
        for f in files:
            base = f.split(".ko")[0]
            if base in GUEST_MODULES and ".ko" in f:
                found[base] = os.path.relpath(os.path.join(root, f), moddir)
    missing = [m for m in GUEST_MODULES if m not in found]
    if missing:
        raise ImageError("modules not found under %s: %s" % (moddir, ", ".join(missing)))
    for m in GUEST_MODULES:
        if not found[m].endswith(".ko"):
            # Busybox insmod only reads plain .ko files; compressed ones are unpacked first.
            raise ImageError("%s is compressed; unsupported" % found[m])
    return [found[m] for m in GUEST_MODULES]


def build_initramfs(build_dir, out_path, kver):
    """Writes the guest's initramfs to out_path; returns its size in bytes."""
    busybox = shutil.which("busybox")
    if not busybox or _shared_libs(busybox):
        raise ImageError("a static busybox is needed (install busybox-static)")
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        a = _Cpio(f)
        for d in ("dev", "proc", "sys", "tmp", "run", "root", "etc", "usr/bin", "usr/sbin",
                  "sbin", "opt/vfio-broker/bin"):
            a.dirs(d)
        a.chardev("dev/console", 5, 1)
        a.chardev("dev/null", 1, 3, 0o666)
        a.host_file("bin/busybox", busybox)
        applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for app in applets:
            a.symlink(app, "/bin/busybox")
        a.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
        a.file("etc/group", b"root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
        for root, _, files in os.walk(ROOTFS):
            for name in sorted(files):
                src = os.path.join(root, name)
                a.host_file("/" + os.path.relpath(src, ROOTFS), src)
        mods = _module_paths(kver)
        for m in mods:
            a.host_file("lib/modules/%s/%s" % (kver, m), "/lib/modules/%s/%s" % (kver, m))
        a.file("usr/lib/vbguest/modules", ("\n".join(mods) + "\n").encode())
        libs = set()
        bindir = os.path.join(build_dir, "bin")
        for name in sorted(os.listdir(bindir)) if os.path.isdir(bindir) else []:
            src = os.path.join(bindir, name)
            if not os.path.isfile(src):
                continue
            a.host_file(GUEST_BIN + "/" + name, src)
            if _is_elf(src):
                libs.update(_shared_libs(src))
        libc_dir = next((os.path.dirname(l) for l in libs
                         if os.path.basename(l).startswith("libc.so")), None)
        for lib in sorted(libs):
            a.host_file(lib, os.path.realpath(lib))
            # A library of the build tree is found through its RUNPATH, which may lie under a
            # directory the guest mounts over (a build in /tmp): it also goes where the loader
            # always looks.
            if libc_dir and not lib.startswith(("/lib/", "/lib64/", "/usr/lib/")):
                a.host_file(libc_dir + "/" + os.path.basename(lib), os.path.realpath(lib))
        a.finish()
    os.replace(tmp, out_path)
    return os.path.getsize(out_path)
