#!/bin/sh
# libc_syscalls: keeps out of the sandboxed programs the libc functions that make system calls
# their seccomp policies kill. Such a call passes every unit test that runs without the filter
# and kills the process under it, often only past some size (glibc's qsort() asks sysinfo()
# once its array reaches 1 KiB: the broker died of SIGSYS at 128 devices, see base/sort.h).
#
# usage: libc_syscalls.sh broker|worker FILE... [-- broker|worker FILE...]
# A dynamically linked program is checked by what it imports (nm -D --undefined-only). A static
# one imports nothing, and its libc holds functions nobody calls (scandir's qsort), so it is
# checked through the project's objects and archives it is linked from, given after it; the
# third-party archives (libuv, protobuf-c, json-c) are not ours to change.
# Needs nm (binutils, which the build needs anyway): without it the test fails.
set -u

command -v nm >/dev/null 2>&1 || { echo "FAIL: nm (binutils) not found" >&2; exit 1; }

# Forbidden to both processes: name, then why. Neither policy allows sysinfo, execve or
# clone/vfork outside the broker's own spawn path (execveat, clone3).
common='
qsort            glibc merge sort: sysinfo() for the machine memory once the array is 1 KiB; use vb_sort()
qsort_r          the same merge sort as qsort: sysinfo()
sysinfo          sysinfo: in neither policy
get_phys_pages   sysinfo()
get_avphys_pages sysinfo()
system           fork + execve of /bin/sh: execve is in neither policy
popen            posix_spawn of /bin/sh: execve
execv            execve: the broker execs workers with execveat only
execvp           execve
execve           execve
posix_spawn      clone + execve
posix_spawnp     clone + execve
'
# Forbidden to the worker only: it may make no socket, connect nowhere and open nothing.
worker_only='
syslog           socket + connect to /dev/log: neither in the worker policy
vsyslog          socket + connect to /dev/log
openlog          socket + connect to /dev/log
getaddrinfo      socket, connect (DNS, nscd)
gethostbyname    socket, connect (DNS, nscd)
getpwnam         NSS: socket + connect to nscd, open of /etc/nsswitch.conf and /etc/passwd
getpwuid         NSS: socket + connect to nscd
getpwnam_r       NSS: socket + connect to nscd
getpwuid_r       NSS: socket + connect to nscd
getgrnam         NSS: socket + connect to nscd
getgrgid         NSS: socket + connect to nscd
initgroups       NSS: socket + connect to nscd, setgroups
getlogin         open of utmp, NSS
pthread_create   clone3: the worker is one thread
fork             clone: the worker starts no process
'

fail=0
checked=0

# check ROLE LABEL SYMBOLS: one line per forbidden symbol found among SYMBOLS.
check() {
	list=$common
	[ "$1" = worker ] && list="$list$worker_only"
	found=$(printf '%s\n' "$list" | while read -r sym why; do
		[ -n "$sym" ] || continue
		if printf '%s\n' "$3" | grep -qx "$sym"; then
			printf '  %s: %s\n' "$sym" "$why"
		fi
	done)
	checked=$((checked + 1))
	if [ -n "$found" ]; then
		printf 'FAIL: %s (%s) uses libc functions its seccomp policy kills:\n%s\n' "$2" "$1" "$found"
		fail=1
	else
		printf 'ok: %s (%s)\n' "$2" "$1"
	fi
}

role=
static_pending=
for arg in "$@"; do
	case $arg in
	broker | worker) role=$arg; continue ;;
	--) role=; continue ;;
	esac
	[ -n "$role" ] || { echo "FAIL: $arg: no role (broker|worker) before it" >&2; exit 1; }
	[ -f "$arg" ] || { echo "FAIL: $arg: no such file" >&2; exit 1; }
	case $arg in
	*.o | *.a)
		syms=$(nm --undefined-only "$arg" 2>&1) || { echo "FAIL: nm $arg: $syms" >&2; exit 1; }
		syms=$(printf '%s\n' "$syms" | awk 'NF == 2 && $1 == "U" { print $2 }')
		static_pending=
		;;
	*)
		# nm -D on a static program: "no symbols" on stderr and nothing on stdout.
		syms=$(nm -D --undefined-only "$arg" 2>/dev/null | awk '{ print $NF }' | sed 's/@.*//')
		if [ -z "$syms" ]; then
			if nm "$arg" 2>/dev/null | grep -q ' T main$'; then
				static_pending=$arg
				continue
			fi
			echo "FAIL: $arg: neither dynamic imports nor a symbol table (stripped?)" >&2
			exit 1
		fi
		;;
	esac
	check "$role" "$arg" "$syms"
done
[ -z "$static_pending" ] || {
	echo "FAIL: $static_pending is static and no object or archive of it followed" >&2
	exit 1
}
[ "$checked" -gt 0 ] || { echo "FAIL: nothing checked" >&2; exit 1; }
exit $fail
