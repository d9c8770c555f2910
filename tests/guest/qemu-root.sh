#!/bin/sh
# tests/guest/qemu-root.sh [--refresh]: makes sure the Debian trixie root that holds QEMU 11.1
# (trixie-backports' qemu-system-x86, whose vfio-user-pci is the vfio-user client the
# vfio_user_qemu_* guest tests drive) exists, and prints its path on stdout.
#
# The root is cached outside every build tree, shared by each clone and worktree:
#   ${VB_QEMU_ROOT_CACHE:-/var/cache/vfio-broker-tests}/trixie-qemu
# It is made by `debootstrap --variant=minbase trixie` plus, inside it,
# `apt-get install -t trixie-backports --no-install-recommends qemu-system-x86`. The host's apt
# sources are not touched: the root has its own sources.list. It is built in a temporary
# directory next to the cache and renamed into place when complete, under a lock, so two
# preparations at once (two worktrees running make check) build it once and neither ever sees
# half a root. A root counts as complete only with its stamp file (.vb-qemu-root), written last.
#
#   --refresh       build a new root even if one is cached (replaces it when done)
#
# Environment:
#   VB_QEMU_ROOT_CACHE=dir   cache directory (default /var/cache/vfio-broker-tests)
#   VB_DEBIAN_MIRROR=url     mirror for debootstrap and the root (default http://deb.debian.org/debian)
#
# Exit status 0 with the path on stdout; otherwise non-zero with the reason on stderr. Progress
# and timings go to stderr and to the build log kept next to the root (trixie-qemu.log).
set -eu

cache=${VB_QEMU_ROOT_CACHE:-/var/cache/vfio-broker-tests}
mirror=${VB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$cache/trixie-qemu
stamp=.vb-qemu-root
refresh=0
case "${1:-}" in
"") ;;
--refresh) refresh=1 ;;
*)
	echo "usage: $0 [--refresh]" >&2
	exit 2
	;;
esac

die() {
	echo "qemu-root: $*" >&2
	exit 1
}

ready() { [ -f "$root/$stamp" ] && [ -x "$root/usr/bin/qemu-system-x86_64" ]; }

if [ "$refresh" = 0 ] && ready; then
	echo "$root"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "$root is missing and only root can build it (debootstrap, chroot): run 'sudo $0'"
command -v debootstrap >/dev/null || die "debootstrap is not installed (make deps installs it)"
command -v unshare >/dev/null || die "unshare (util-linux) is not installed"
mkdir -p "$cache" || die "cannot create $cache"

# One preparation at a time; whoever waited finds the root the other one made.
exec 9>"$cache/.trixie-qemu.lock"
flock 9 || die "cannot lock $cache/.trixie-qemu.lock"
if [ "$refresh" = 0 ] && ready; then
	echo "$root"
	exit 0
fi

tmp=$(mktemp -d "$cache/trixie-qemu.tmp.XXXXXX") || die "cannot create a directory in $cache"
chmod 755 "$tmp"
log=$cache/trixie-qemu.log
trap 'rm -rf "$tmp"' EXIT
: >"$log"
t0=$(date +%s)
echo "qemu-root: building $root (log: $log)" >&2
debootstrap --variant=minbase trixie "$tmp" "$mirror" >>"$log" 2>&1 ||
	die "debootstrap trixie failed; tail of $log:
$(tail -n 15 "$log")"
t1=$(date +%s)

cat >"$tmp/etc/apt/sources.list" <<EOF
deb $mirror trixie main
deb $mirror trixie-backports main
EOF
rm -f "$tmp/etc/apt/sources.list.d/debian.sources"

# apt and the packages' maintainer scripts want /proc; a private mount namespace takes the mount
# away with the process, whatever happens to this script.
unshare --mount --propagation private sh -c '
	set -e
	mount -t proc proc "$1/proc"
	chroot "$1" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 apt-get update -q
	chroot "$1" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
		apt-get install -y -q -t trixie-backports --no-install-recommends qemu-system-x86
	chroot "$1" apt-get clean
' sh "$tmp" >>"$log" 2>&1 ||
	die "installing qemu-system-x86 from trixie-backports failed; tail of $log:
$(tail -n 15 "$log")"
rm -rf "$tmp/var/lib/apt/lists/"*
t2=$(date +%s)

[ -x "$tmp/usr/bin/qemu-system-x86_64" ] || die "no usr/bin/qemu-system-x86_64 in the new root"
version=$(chroot "$tmp" dpkg-query -W -f '${Version}' qemu-system-x86) ||
	die "cannot read the installed qemu-system-x86 version"
size=$(du -sm "$tmp" | cut -f1)
printf 'qemu-system-x86 %s\ndebootstrap %ss, qemu install %ss, %s MiB\n' \
	"$version" $((t1 - t0)) $((t2 - t1)) "$size" >"$tmp/$stamp"
echo "qemu-root: qemu-system-x86 $version; debootstrap $((t1 - t0)) s," \
	"qemu install $((t2 - t1)) s, $size MiB" >&2

# Swap in the new root; a reader that resolved the old path keeps its files until it is done.
if [ -e "$root" ]; then
	mv "$root" "$tmp.old"
fi
mv "$tmp" "$root"
trap - EXIT
rm -rf "$tmp.old"
echo "$root"
