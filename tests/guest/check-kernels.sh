#!/bin/sh
# tests/guest/check-kernels.sh BUILD_DIR: host-side checks of how the guest suite gets its
# kernels (tests/guest/vbkernel.py). Prints TAP. Boots nothing: each case stops before QEMU.
#
#   guest_kernel_fetch_failure_fails_its_tests  a kernel that cannot be fetched (the mirror
#       refuses: loopback port 9, an empty cache) fails each of its tests with apt's reason;
#       nothing is skipped and the primary kernel's tests are not touched.
#   guest_kernel_unknown_label_refused          VB_GUEST_KERNELS naming no known kernel is a
#       usage error (exit 2), not an empty run.
set -u
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "1..2"

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
