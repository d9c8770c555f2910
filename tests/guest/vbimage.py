"""vbimage: what the test guest boots: the kernel (Debian's, unpacked for a fast PVH boot) and
an initramfs built from busybox-static, the VFIO and virtio-console modules (of the kernel
chosen, see vbkernel.py), every file of BUILD/bin plus the shared
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

# What the guest loads: the virtio console (the host's command channel) and VFIO. Everything
# they depend on comes first, in dependency order, read from each module's own .modinfo; a
# module the kernel has built in (modules.builtin) is skipped.
GUEST_MODULES = ["virtio_pci", "virtio_console", "vfio_iommu_type1", "vfio_pci"]

# What a guest with shared host directories (Topology shares, virtio-9p) loads, after the
# above, with their dependencies (6.1's 9p needs netfs and fscache, later ones only netfs).
# Loaded only when the kernel command line names a share (vb.9p=), so they cost the other
# guests nothing but initramfs bytes.
SHARE_MODULES = ["9pnet_virtio", "9p"]


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


def kernel_image(build_dir, kernel):
    """The kernel QEMU should boot (kernel: a vbkernel.Kernel). Debian's bzImage spends ~3 s of
    TCG time decompressing itself, so the ELF vmlinux inside it is unpacked once (cached as
    BUILD/guest/vmlinux-<release>) and booted through its PVH entry point. Falls back to the
    bzImage when no xz/gzip payload is found."""
    bz = kernel.vmlinuz
    cached = os.path.join(build_dir, "guest", "vmlinux-" + kernel.release)
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


def _norm(name):
    return name.replace("-", "_")


def _ko_bytes(path):
    """A module file's ELF bytes: plain .ko, or .ko.xz / .ko.gz / .ko.zst (Debian compresses
    modules from 6.12 on; busybox insmod reads only plain ELF)."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        if not shutil.which("zstd"):
            raise ImageError("%s is zstd-compressed and zstd is missing (install zstd)" % path)
        return subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout
    return data


def _modinfo(elf, key):
    """Values of key in a module's .modinfo ("key=value" NUL-separated strings)."""
    vals = []
    for m in re.finditer(rb"(?:^|\0)" + key.encode() + rb"=([^\0]*)", elf):
        vals.append(m.group(1).decode())
    return vals


def guest_modules(kernel, wanted=GUEST_MODULES):
    """[(path relative to the module directory, ending .ko), ELF bytes)] of the modules wanted
    (GUEST_MODULES by default) and their dependencies, each after what it depends on."""
    moddir = kernel.moddir
    files = {}
    for root, _, names in os.walk(os.path.join(moddir, "kernel")):
        for f in names:
            if ".ko" in f:
                files.setdefault(_norm(f.split(".ko")[0]), os.path.join(root, f))
    builtin = set()
    try:
        with open(os.path.join(moddir, "modules.builtin")) as f:
            builtin = {_norm(os.path.basename(l.strip()).split(".ko")[0]) for l in f}
    except OSError:
        pass
    order, seen = [], set()

    def visit(name, chain):
        name = _norm(name)
        if name in seen:
            return
        if name in chain:
            raise ImageError("module dependency loop: %s" % " -> ".join(chain + [name]))
        if name not in files:
            if name in builtin:
                seen.add(name)
                return
            raise ImageError("module %s: neither under %s/kernel nor in modules.builtin"
                             % (name, moddir))
        elf = _ko_bytes(files[name])
        if elf[:4] != b"\x7fELF":
            raise ImageError("%s is not an ELF module" % files[name])
        for deps in _modinfo(elf, "depends"):
            for d in filter(None, deps.split(",")):
                visit(d, chain + [name])
        seen.add(name)
        rel = os.path.relpath(files[name], moddir)
        order.append((rel[:rel.index(".ko") + 3], elf))
    for m in wanted:
        visit(m, [])
    return order


def share_modules(kernel, have):
    """SHARE_MODULES and their dependencies not already in have (guest_modules' paths), in
    load order; [] when the kernel lacks them (a guest with shares then fails at boot, saying
    so, and no other guest is affected)."""
    try:
        return [(rel, elf) for rel, elf in guest_modules(kernel, SHARE_MODULES) if rel not in have]
    except ImageError:
        return []


def build_initramfs(build_dir, out_path, kernel):
    """Writes the guest's initramfs for kernel (a vbkernel.Kernel) to out_path; returns its size
    in bytes."""
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
        mods = guest_modules(kernel)
        for rel, elf in mods:
            a.file("lib/modules/%s/%s" % (kernel.release, rel), elf)
        a.file("usr/lib/vbguest/modules", "".join(rel + "\n" for rel, _ in mods).encode())
        share_mods = share_modules(kernel, {rel for rel, _ in mods})
        for rel, elf in share_mods:
            a.file("lib/modules/%s/%s" % (kernel.release, rel), elf)
        a.file("usr/lib/vbguest/modules-9p",
               "".join(rel + "\n" for rel, _ in share_mods).encode())
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
