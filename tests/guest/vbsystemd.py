"""vbsystemd: a test guest whose PID 1 is systemd, for testing vfio-broker as a real service.

    from vbsystemd import SystemdTopology
    topo = SystemdTopology(devices=[Device("edu")])
    with topo.guest_class("build", topology=topo) as g:   # a vbguest.Guest
        g.check("systemctl is-active vfio-brokerd.socket")

The root filesystem is the host's own, shared read-only over virtio-9p (no debootstrap, no
mirror): the initramfs (tests/guest/systemd/init) mounts the host's / (9p tag hostroot) and the
project installed by `cmake --install` into BUILD/guest/systemd-destdir (9p tag vbinst) as the
lower layers of an overlay with a tmpfs upper layer, adds the guest's unit files
(tests/guest/systemd/files), and switch_roots into the host's /lib/systemd/systemd. The command
channel is the busybox guest's vbguest-serve, run by a service (vbguest-serve.service) inside
the target the guest boots into (vbguest.target). Everything else - QEMU's process handling, the
channel protocol, QMP, PCI helpers - is vbguest.Guest's.

Trusts: the host's root filesystem, kernel, modules and systemd; the build directory.
"""

import os
import shutil
import subprocess

import vbguest
import vbimage
import vbkernel

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMD_DIR = os.path.join(HERE, "systemd")

# Module order: each module's dependencies first (modinfo -F depends).
SYSTEMD_MODULES = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
                   "virtio_pci", "virtio_console", "netfs", "fscache", "9pnet", "9pnet_virtio",
                   "9p", "overlay", "irqbypass", "vfio", "vfio_iommu_type1", "vfio_virqfd",
                   "vfio-pci-core", "vfio-pci"]


def _module_paths(kver):
    paths = []
    for m in SYSTEMD_MODULES:
        r = subprocess.run(["modinfo", "-k", kver, "-n", m], capture_output=True, text=True)
        path = r.stdout.strip()
        if r.returncode != 0 or not path.endswith(".ko"):
            raise vbimage.ImageError("module %s: not found as a plain .ko for %s (%s)"
                                     % (m, kver, (r.stderr or path).strip()))
        paths.append(os.path.relpath(path, "/lib/modules/" + kver))
    return paths


def build_initramfs(out_path, kver):
    """Writes the systemd guest's initramfs: static busybox, the modules, /init, the guest's
    files (below /files, copied into the root by /init). Returns its size in bytes."""
    busybox = shutil.which("busybox")
    if not busybox:
        raise vbimage.ImageError("a static busybox is needed (install busybox-static)")
    if not os.path.exists("/lib/systemd/systemd"):
        raise vbimage.ImageError("no /lib/systemd/systemd on the host (install systemd)")
    mods = _module_paths(kver)
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        a = vbimage._Cpio(f)
        for d in ("dev", "proc", "sys", "bin"):
            a.dirs(d)
        a.chardev("dev/console", 5, 1)
        a.chardev("dev/null", 1, 3, 0o666)
        a.host_file("bin/busybox", busybox)
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for app in applets:
            a.symlink("bin/" + app, "/bin/busybox")
        a.host_file("init", os.path.join(SYSTEMD_DIR, "init"))
        files = os.path.join(SYSTEMD_DIR, "files")
        for root, _, names in os.walk(files):
            for name in sorted(names):
                src = os.path.join(root, name)
                a.host_file("files/" + os.path.relpath(src, files), src)
        # The busybox guest's channel server and bind helper, unchanged.
        for name in ("vbguest-serve", "bind-vfio"):
            a.host_file("files/usr/lib/vbguest/" + name,
                        os.path.join(vbimage.ROOTFS, "usr/lib/vbguest", name))
        for m in mods:
            a.host_file("lib/modules/%s/%s" % (kver, m), "/lib/modules/%s/%s" % (kver, m))
        a.file("modules", ("\n".join(mods) + "\n").encode())
        a.finish()
    os.replace(tmp, out_path)
    return os.path.getsize(out_path)


def install_project(build_dir, destdir):
    """cmake --install BUILD with DESTDIR=destdir (emptied first), as a package build would."""
    shutil.rmtree(destdir, ignore_errors=True)
    os.makedirs(destdir)
    env = dict(os.environ, DESTDIR=destdir)
    r = subprocess.run(["cmake", "--install", build_dir], env=env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise vbimage.ImageError("cmake --install failed:\n" + (r.stderr or r.stdout)[-2000:])


class SystemdGuest(vbguest.Guest):
    """A vbguest.Guest booted with systemd as PID 1 on an overlay of the host's root. The runner
    passes the busybox initramfs; this guest builds and uses its own instead."""

    # The host's tools the deploy cases run, besides the busybox guest's.
    tools = vbguest.GUEST_TOOLS + ("getent", "install", "journalctl", "ldconfig", "setpriv",
                                   "systemctl")

    def __init__(self, build_dir, initramfs=None, **kw):
        super().__init__(build_dir, **kw)
        self.destdir = os.path.join(self.build_dir, "guest", "systemd-destdir")

    def start(self):
        gdir = os.path.join(self.build_dir, "guest")
        os.makedirs(gdir, exist_ok=True)
        if self.kspec and self.kspec.label != vbkernel.PRIMARY:
            raise vbguest.GuestBootError("the systemd guest boots only the host's kernel (%s)"
                                         % vbkernel.PRIMARY)
        try:
            kver = vbimage.kernel_release()
            self.initramfs = os.path.join(gdir, "systemd-initramfs.cpio")
            build_initramfs(self.initramfs, kver)
            install_project(self.build_dir, self.destdir)
        except (vbimage.ImageError, OSError, subprocess.CalledProcessError) as e:
            raise vbguest.GuestBootError("cannot prepare the systemd guest: %s" % e) from None
        return super().start()

    def _qemu_args(self, kver, initramfs):
        args = super()._qemu_args(kver, initramfs)
        i = args.index("-append")
        args[i + 1] += (" systemd.unit=vbguest.target systemd.show_status=1"
                        " systemd.log_target=console")
        for tag, path in (("hostroot", "/"), ("vbinst", self.destdir)):
            args.extend(["-virtfs", "local,path=%s,mount_tag=%s,security_model=none,readonly=on,"
                         "multidevs=remap" % (path, tag)])
        return args


class SystemdTopology(vbguest.Topology):
    """A Topology whose guests boot systemd (SystemdGuest); never shares a boot with the busybox
    guests of an equal device list."""

    guest_class = SystemdGuest

    def key(self):
        return ("systemd",) + super().key()

    def describe(self):
        return "systemd PID 1; " + super().describe()
