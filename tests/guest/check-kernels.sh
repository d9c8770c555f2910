#!/bin/sh
# tests/guest/check-kernels.sh BUILD_DIR: host-side checks of how the guest suite gets its
# kernels (tests/guest/vbkernel.py). Prints TAP. Boots nothing: each case stops before QEMU.
#
#   guest_kernel_fetch_failure_fails_its_tests  a kernel that cannot be fetched (the mirror
#       refuses: loopback port 9, an empty cache) fails each of its tests with apt's reason;
#       nothing is skipped and the primary kernel's tests are not touched.
#   guest_kernel_unknown_label_refused          VB_GUEST_KERNELS naming no known kernel is a
#       usage error (exit 2), not an empty run.
#   guest_kernel_modules_from_modinfo           vbimage.guest_modules on a made-up module tree
#       (.ko, .ko.xz and .ko.gz files whose .modinfo names their dependencies, one module built
#       in): every dependency before its user, compressed ones unpacked, the built-in one
#       skipped; a module neither present nor built in, and a dependency loop, are errors.
set -u
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "1..3"

out=$tmp/fetch.out
VB_KERNEL_CACHE=$tmp/cache VB_DEBIAN_MIRROR=http://127.0.0.1:9/debian VB_GUEST_KERNELS=6.12 \
	VB_GUEST_TESTS=guest_vfio_available "$here/run.sh" "$build" >"$out" 2>&1
rc=$?
if [ $rc = 1 ] && grep -qx 'not ok 1 - guest_vfio_available \[6.12\]' "$out" &&
	grep -q '^# cannot prepare kernel 6.12 for the guest: apt-get -q --error-on=any update' "$out" &&
	! grep -q '^ok ' "$out"; then
	echo "ok 1 - guest_kernel_fetch_failure_fails_its_tests"
else
	echo "not ok 1 - guest_kernel_fetch_failure_fails_its_tests"
	echo "# exit $rc"
	sed 's/^/# /' "$out" | tail -n 20
fi

out=$tmp/label.out
VB_GUEST_KERNELS=5.10 "$here/run.sh" "$build" >"$out" 2>&1
rc=$?
if [ $rc = 2 ] && grep -q 'unknown kernels in VB_GUEST_KERNELS: 5.10' "$out"; then
	echo "ok 2 - guest_kernel_unknown_label_refused"
else
	echo "not ok 2 - guest_kernel_unknown_label_refused"
	echo "# exit $rc"
	sed 's/^/# /' "$out" | tail -n 20
fi

out=$tmp/modules.out
if VB_TMP=$tmp VB_HERE=$here python3 - >"$out" 2>&1 <<'PY'
import gzip, lzma, os, sys
sys.path.insert(0, os.environ.get("VB_HERE", "."))
import vbimage, vbkernel

root = os.path.join(os.environ["VB_TMP"], "mods")
def ko(rel, deps, comp=""):
    elf = b"\x7fELF" + b"\0" * 60 + b"\0license=GPL\0depends=" + deps.encode() + b"\0name=x\0"
    data = {"": elf, ".xz": lzma.compress(elf), ".gz": gzip.compress(elf)}[comp]
    path = os.path.join(root, "kernel", rel + ".ko" + comp)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
ko("drivers/virtio/virtio_console", "", ".gz")
ko("drivers/vfio/vfio", "", ".xz")
ko("virt/lib/irqbypass", "")
ko("drivers/vfio/vfio_iommu_type1", "vfio", ".xz")
ko("drivers/vfio/pci/vfio-pci-core", "vfio,irqbypass", ".xz")
ko("drivers/vfio/pci/vfio-pci", "vfio-pci-core,vfio", ".xz")
with open(os.path.join(root, "modules.builtin"), "w") as f:
    f.write("kernel/drivers/virtio/virtio_pci.ko\n")
k = vbkernel.Kernel("t", "0.0", "/nonexistent", root)
mods = vbimage.guest_modules(k)
names = [os.path.basename(r) for r, _ in mods]
assert all(r.endswith(".ko") for r, _ in mods), mods
assert all(elf.startswith(b"\x7fELF") for _, elf in mods), "not unpacked"
assert sorted(names) == sorted(["virtio_console.ko", "vfio.ko", "irqbypass.ko",
                                "vfio_iommu_type1.ko", "vfio-pci-core.ko", "vfio-pci.ko"]), names
for user, dep in (("vfio_iommu_type1.ko", "vfio.ko"), ("vfio-pci-core.ko", "irqbypass.ko"),
                  ("vfio-pci.ko", "vfio-pci-core.ko"), ("vfio-pci-core.ko", "vfio.ko")):
    assert names.index(dep) < names.index(user), (dep, user, names)
os.unlink(os.path.join(root, "modules.builtin"))
try:
    vbimage.guest_modules(k)
    raise SystemExit("virtio_pci missing and not built in: no error")
except vbimage.ImageError as e:
    assert "virtio_pci" in str(e), e
with open(os.path.join(root, "modules.builtin"), "w") as f:
    f.write("kernel/drivers/virtio/virtio_pci.ko\n")
ko("virt/lib/irqbypass", "vfio-pci")
try:
    vbimage.guest_modules(k)
    raise SystemExit("a dependency loop: no error")
except vbimage.ImageError as e:
    assert "loop" in str(e), e
print("order: " + " ".join(names))
PY
then
	echo "ok 3 - guest_kernel_modules_from_modinfo"
	sed 's/^/# /' "$out"
else
	echo "not ok 3 - guest_kernel_modules_from_modinfo"
	sed 's/^/# /' "$out" | tail -n 20
fi
