#!/bin/sh
# tests/guest/run.sh BUILD_DIR: runs the guest tests (tests/guest/cases/*.py) against BUILD_DIR,
# booting Debian's kernel under QEMU (TCG) with an emulated Intel IOMMU. Prints TAP.
#
# Environment:
#   VB_GUEST_TESTS=name,name   run only these tests
#   VB_GUEST_CASES=dir:dir     also load the case files (*.py) in these directories
#   VB_GUEST_LIST=1            list the tests and their topologies, run nothing
#   VB_GUEST_KEEP_LOG=1        keep the console logs of passing guests too (failing ones are
#                              always kept): BUILD_DIR/guest/NN-<first test>.log (+ .qemu)
#   VB_GUEST_BOOT_TIMEOUT=s    seconds a guest may take to boot (default 180)
#   VB_GUEST_KERNEL=path       as 6.1, boot this /boot/vmlinuz-* (default: the newest with modules)
#   VB_GUEST_KERNELS=6.1,6.12  run only on these kernels (default: 6.1, 6.12 and 7.3; vbkernel.py)
#   VB_KERNEL_CACHE=dir        where fetched kernels are kept (default /var/cache/vfio-broker-tests)
#   VB_KERNEL_REFRESH=1        fetch the 6.12 and 7.3 kernels again (the suites' current ones)
#   VB_DEBIAN_MIRROR=url       the Debian archive to fetch them from (default deb.debian.org)
#
# No QEMU outlives this script: Ctrl-C, SIGTERM and SIGHUP stop the guests before it exits.
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
exec python3 -B "$here/runner.py" "$1"
