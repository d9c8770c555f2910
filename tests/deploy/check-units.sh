#!/usr/bin/env bash
# tests/deploy/check-units.sh BUILD_DIR: checks what `cmake --install` puts on a host, as a
# package would ship it, and prints TAP (one line per check):
#   deploy_install_layout          binaries, units, sysusers/tmpfiles/udev, man pages, example
#   deploy_units_verify            systemd-analyze verify of the installed units: no output at all
#   deploy_units_security          systemd-analyze security --offline=true: overall exposure at
#                                  most VB_EXPOSURE_MAX, and every failed item one of the accepted
#                                  ones below (each needed by the broker's design, see the list)
#   deploy_units_security_allow_bind  the same with the allow-bind.conf drop-in installed: at
#                                  most VB_EXPOSURE_BIND_MAX, and root the only further finding
#   deploy_man_<page>              each man page renders with man -l (groff warnings on) silently
#   deploy_man_options_<binary>    every long option of the binary's --help is in its man page
#   deploy_man_conf_example_valid  the EXAMPLE of vfio-brokerd.conf(5) passes --check-config
# Runs on machines without systemd as PID 1: the offline checks need only the systemd package.
# shellcheck disable=SC2154 # the install paths come from install-paths.sh (sourced)
set -u
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
exposure_max=${VB_EXPOSURE_MAX:-2.0}
# With allow-bind.conf (User=root, for [devices] allow_bind = yes): root is the one more finding.
exposure_bind_max=${VB_EXPOSURE_BIND_MAX:-2.2}

# systemd-analyze security items vfio-brokerd.service cannot pass without giving up part of its
# design, with the reason. Anything else failing is a regression.
accepted=(
	"AmbientCapabilities=" # how the four capabilities reach the vfio-broker user (cleared at start)
	"PrivateUsers=" # workers get host uids from [worker] uid_range: the full uid map is needed
	"RootDirectory=/RootImage=" # the host's root, read-only (ProtectSystem=strict)
	"DeviceAllow=" # /dev/vfio/vfio and char-vfio (plus char-rtc:r from ProtectClock)
	"RestrictAddressFamilies=~AF_UNIX" # control, VMM and worker sockets
	"CapabilityBoundingSet=~CAP_(CHOWN|FSETID|SETFCAP)" # CAP_CHOWN: VMM socket owners
	"CapabilityBoundingSet=~CAP_SET(UID|GID|PCAP)" # CAP_SETUID/SETGID: worker uid/gid maps
	"CapabilityBoundingSet=~CAP_IPC_LOCK" # DMA pinning beyond RLIMIT_MEMLOCK
	"SystemCallFilter=~@privileged" # setresuid, setgroups, capset, fchown for the sandbox
	"SystemCallFilter=~@mount" # the worker's mount, pivot_root and umount2 before exec
	"RestrictNamespaces=~user" # each worker's namespaces (policy/sandbox.c) ...
	"RestrictNamespaces=~pid"
	"RestrictNamespaces=~net"
	"RestrictNamespaces=~mnt"
	"RestrictNamespaces=~ipc"
	"RestrictNamespaces=~uts"
	"RestrictNamespaces=~cgroup"
)

n=0
tap() { # tap ok|notok NAME [DETAIL-FILE]
	n=$((n + 1))
	if [ "$1" = ok ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		[ -n "${3:-}" ] && sed 's/^/# /' "$3" | tail -n 40
	fi
}

# security NAME MAX [EXPECTED]: systemd-analyze security of the installed service (and its
# drop-ins under $root/etc) rates it at most MAX, flags nothing but the accepted items and
# EXPECTED, and does flag EXPECTED (the proof that a drop-in under test was read at all).
security() {
	local name=$1 max=$2 expected=${3:-} item a ok level seen=0
	shift 2
	SYSTEMD_COLORS=0 systemd-analyze security --offline=true --root="$root" --no-pager \
		"$unitdir/vfio-brokerd.service" >"$log" 2>&1
	level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$log")
	bad=()
	while IFS= read -r item; do
		ok=0
		for a in "${accepted[@]}" "$@"; do [ "$item" = "$a" ] && ok=1; done
		[ "$item" = "$expected" ] && seen=1
		[ $ok = 1 ] || bad+=("$item")
	done < <(sed -n 's/^✗ \([^ ]*\) .*/\1/p' "$log")
	if [ -z "$level" ]; then
		tap notok "$name" "$log"
	elif awk -v l="$level" -v m="$max" 'BEGIN { exit !(l <= m) }' && [ ${#bad[@]} = 0 ] &&
		{ [ -z "$expected" ] || [ $seen = 1 ]; }; then
		echo "# $name: exposure $level (at most $max)"
		tap ok "$name"
	else
		{
			echo "exposure $level, at most $max allowed"
			[ ${#bad[@]} = 0 ] || echo "failed items not accepted: ${bad[*]}"
			[ -z "$expected" ] || [ $seen = 1 ] || echo "not flagged, but expected: $expected"
			grep '^✗' "$log"
		} >"$log.why"
		tap notok "$name" "$log.why"
	fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
log=$work/log

# -- install, as a package build would (DESTDIR), with the configured prefix
if ! DESTDIR=$root cmake --install "$build" >"$log" 2>&1; then
	tap notok deploy_install_layout "$log"
	exit 1
fi
# shellcheck source=/dev/null # written by deploy/CMakeLists.txt
. "$build/deploy/install-paths.sh" || exit 1
sbin=$sbindir
man=$mandir
worker=$libexecdir/vfio-broker/vfio-worker

: >"$log"
for f in "$sbin/vfio-brokerd" "$bindir/vfio-brokerctl" "$worker" \
	"$unitdir/vfio-brokerd.service" "$unitdir/vfio-brokerd.socket" \
	"$sysusersdir/vfio-broker.conf" "$tmpfilesdir/vfio-broker.conf" \
	"$udevrulesdir/70-vfio-broker.rules" "$docdir/examples/vfio-brokerd.conf.example" \
	"$man/man8/vfio-brokerd.8" "$man/man8/vfio-worker.8" "$man/man1/vfio-brokerctl.1" \
	"$man/man5/vfio-brokerd.conf.5"; do
	[ -s "$root$f" ] || echo "missing or empty: $f" >>"$log"
done
for x in "$sbin/vfio-brokerd" "$bindir/vfio-brokerctl" "$worker"; do
	[ -x "$root$x" ] || echo "not executable: $x" >>"$log"
done
grep -q "^ExecStart=$sbin/vfio-brokerd " "$root$unitdir/vfio-brokerd.service" ||
	echo "ExecStart does not name $sbin/vfio-brokerd" >>"$log"
if ! grep -q "^path = $worker\$" "$root$docdir/examples/vfio-brokerd.conf.example"; then
	echo "the example's [worker] path is not the installed worker" >>"$log"
fi
if [ -s "$log" ]; then tap notok deploy_install_layout "$log"; else tap ok deploy_install_layout; fi

# -- systemd-analyze verify. --root resolves ExecStart= and the units in the install; the unit
# search path there gets a copy of the host's units (sysinit.target, sockets.target, ...), and
# man(1) finds the installed pages for Documentation=.
mkdir -p "$root/usr/lib/systemd"
cp -a /lib/systemd/system "$root/usr/lib/systemd/" 2>/dev/null ||
	cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
if ! command -v systemd-analyze >/dev/null; then
	echo "systemd-analyze not found (install systemd)" >"$log"
	tap notok deploy_units_verify "$log"
	tap notok deploy_units_security "$log"
	tap notok deploy_units_security_allow_bind "$log"
else
	MANPATH=$root$man: SYSTEMD_LOG_COLOR=0 systemd-analyze verify --root="$root" \
		"$unitdir/vfio-brokerd.socket" "$unitdir/vfio-brokerd.service" >"$log" 2>&1
	rc=$?
	if [ $rc = 0 ] && [ ! -s "$log" ]; then
		tap ok deploy_units_verify
	else
		echo "exit $rc" >>"$log"
		tap notok deploy_units_verify "$log"
	fi

	security deploy_units_security "$exposure_max"
	# The allow-bind.conf drop-in as its comment says to install it: root, same everything else.
	dropins=$root/etc/systemd/system/vfio-brokerd.service.d
	mkdir -p "$dropins"
	cp "$root$docdir/examples/allow-bind.conf" "$dropins/"
	security deploy_units_security_allow_bind "$exposure_bind_max" "User=/DynamicUser="
	rm -r "$dropins"
fi

# -- man pages: render without a single warning
for page in man8/vfio-brokerd.8 man8/vfio-worker.8 man1/vfio-brokerctl.1 \
	man5/vfio-brokerd.conf.5; do
	name=deploy_man_$(basename "$page" | tr '.-' '__')
	f=$root$man/$page
	if command -v man >/dev/null; then
		LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings=all -E UTF-8 -l "$f" >"$work/out" 2>"$log"
	else
		groff -man -wall -Tutf8 "$f" >"$work/out" 2>"$log"
	fi
	rc=$?
	if [ $rc = 0 ] && [ ! -s "$log" ] && grep -q NAME "$work/out"; then
		tap ok "$name"
	else
		echo "exit $rc" >>"$log"
		tap notok "$name" "$log"
	fi
done

# -- every long option of each binary's --help appears in its man page
options_check() { # options_check NAME BINARY PAGE
	local opt text missing=()
	text=$(LC_ALL=C.UTF-8 MANWIDTH=200 man -l "$3" 2>/dev/null || groff -man -Tutf8 "$3" 2>&1)
	for opt in $("$2" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
		grep -q -- "$opt" <<<"$text" || missing+=("$opt")
	done
	if [ ${#missing[@]} = 0 ]; then
		tap ok "deploy_man_options_$1"
	else
		echo "options of $2 --help not in $3: ${missing[*]}" >"$log"
		tap notok "deploy_man_options_$1" "$log"
	fi
}
options_check vfio_brokerd "$root$sbin/vfio-brokerd" "$root$man/man8/vfio-brokerd.8"
options_check vfio_worker "$root$worker" "$root$man/man8/vfio-worker.8"
options_check vfio_brokerctl "$build/bin/vfio-brokerctl" "$root$man/man1/vfio-brokerctl.1"

# -- the configuration example of vfio-brokerd.conf(5) is a valid configuration
conf5=$root$man/man5/vfio-brokerd.conf.5
# The group the packages create (sysusers.d) need not exist on the build machine: root's stands in.
sed -n '/^\.SH EXAMPLE/,/^\.SH/p' "$conf5" | sed -n '/^\.nf/,/^\.fi/p' | sed '1d;$d' |
	sed 's/^admin_gid = vfio-admin$/admin_gid = 0/' >"$work/example.conf"
chmod 0644 "$work/example.conf"
if [ -s "$work/example.conf" ] &&
	"$build/bin/vfio-brokerd" --check-config "$work/example.conf" >"$log" 2>&1; then
	tap ok deploy_man_conf_example_valid
else
	tap notok deploy_man_conf_example_valid "$log"
fi
echo "1..$n"
