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
#   VB_GUEST_KERNEL=path       boot this /boot/vmlinuz-* (default: the newest with modules)
#
# No QEMU outlives this script: Ctrl-C, SIGTERM and SIGHUP stop the guests before it exits.
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
exec python3 -B "$here/runner.py" "$1"
