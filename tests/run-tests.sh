#!/usr/bin/env bash
# Runs every test of the project and prints one TAP stream: `ok N - name` / `not ok N - name`,
# `ok N - name # SKIP reason` for a test that could not run here (the reason is what the test
# printed last, e.g. why this machine cannot create user namespaces), then the plain line
# `N passed, N failed, N skipped`. Exits non-zero when anything failed, and in CI (CI=true, as
# .ci/run sets) also when anything was skipped: CI must run everything.
#
#   tests/run-tests.sh BUILD_DIR ASAN_BUILD_DIR
#
# Suites, in order: the format check; the declaration check (tests/style_declarations.py: every
# compile carries -Wdeclaration-after-statement, and it catches a planted declaration); every
# unit test binary (build/tests/test_*), with cmocka's TAP output; the same binaries built with
# ASan+UBSan (names suffixed " [asan]"); the guest tests (tests/guest/run.sh), which boot
# Debian's kernel under QEMU. Between the two: QEMU 11.1 on the host against the standalone
# worker over vfio-user (tests/vfio_user_qemu_host.py).
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
build=${1:-build}
asan=${2:-build-asan}
# Per unit binary: only there to end a hang. Not a deadline: on a busy machine test_dma's full
# table (65535 maps) under ASan took over 300 s (50 s of CPU at a load of 17 on 2 cores).
unit_timeout=${VB_UNIT_TIMEOUT:-1800}

n=0
passed=0
failed=0
skipped=0
failed_names=()
skipped_names=()

emit() { # emit ok|notok NAME
	n=$((n + 1))
	if [ "$1" = ok ]; then
		passed=$((passed + 1))
		echo "ok $n - $2"
	else
		failed=$((failed + 1))
		failed_names+=("$2")
		echo "not ok $n - $2"
	fi
}

skip() { # skip NAME REASON
	n=$((n + 1))
	skipped=$((skipped + 1))
	skipped_names+=("$1: $2")
	echo "ok $n - $1 # SKIP $2"
}

# run_tap SUFFIX LABEL CMD...: runs CMD, re-numbers its TAP lines into ours. A command that
# exits non-zero without reporting a failure (a crash, a sanitizer abort, a timeout) is a failure
# of its own, named LABEL; its output is shown so the reason is on the log.
run_tap() {
	local suffix=$1 label=$2 line name out rc saw_fail=0 saw_any=0 note=
	shift 2
	out=$(mktemp)
	"$@" >"$out" 2>&1
	rc=$?
	while IFS= read -r line; do
		case "$line" in
		"ok "*"# SKIP "* | "not ok "*"# SKIP "*)
			# cmocka writes `not ok N # SKIP name` after what the test printed.
			name=${line##*# SKIP }
			skip "$name$suffix" "${note:-no reason printed}"
			saw_any=1
			note=
			;;
		"ok "*)
			name=${line#ok }
			name=${name#* }
			name=${name#- }
			emit ok "$name$suffix"
			saw_any=1
			note=
			;;
		"not ok "*)
			name=${line#not ok }
			name=${name#* }
			name=${name#- }
			emit notok "$name$suffix"
			saw_any=1
			saw_fail=1
			note=
			;;
		"#"*) [ "$saw_fail" = 1 ] && echo "$line" ;;
		"1.."*) ;;
		*) [ -n "$line" ] && note=$line ;;
		esac
	done <"$out"
	if [ "$rc" != 0 ] && [ "$saw_fail" = 0 ]; then
		sed 's/^/# /' "$out" | tail -n 60
		emit notok "$label$suffix (exit $rc)"
	elif [ "$saw_any" = 0 ] && [ "$rc" = 0 ]; then
		sed 's/^/# /' "$out" | tail -n 20
		emit notok "$label$suffix (reported no test)"
	fi
	rm -f "$out"
}

# ARCHITECTURE.md's declaration rule is the compiler's to keep; this proves the build still asks it.
declarations_check() {
	if python3 "$here/style_declarations.py" "$build"; then
		emit ok "style_declarations"
	else
		emit notok "style_declarations"
	fi
}

format_check() {
	local bad="" f
	cd "$top" || return 1
	for f in $(git ls-files '*.c' '*.h' 2>/dev/null); do
		clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad="$bad $f"
	done
	if [ -n "$bad" ]; then
		echo "# not formatted per .clang-format:$bad"
		emit notok "format_clang_format"
	else
		emit ok "format_clang_format"
	fi
}

unit_suite() { # unit_suite BUILD_DIR SUFFIX
	local dir=$1/bin t
	for t in "$dir"/test_*; do
		[ -x "$t" ] || continue
		CMOCKA_MESSAGE_OUTPUT=TAP ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
			UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
			run_tap "$2" "$(basename "$t")" timeout "$unit_timeout" "$t"
	done
}

echo "# vfio-broker tests: $(date -u +%FT%TZ)"
format_check
declarations_check
unit_suite "$build" ""
unit_suite "$asan" " [asan]"
run_tap "" "deploy" "$here/deploy/check-units.sh" "$build"
run_tap "" "vfio_user_qemu_host" python3 -B "$here/vfio_user_qemu_host.py" "$build"
if [ -z "${VB_SKIP_GUEST:-}" ]; then
	run_tap "" "guest_kernels" "$here/guest/check-kernels.sh" "$build"
	run_tap "" "guest" "$here/guest/run.sh" "$build"
else
	echo "# guest tests skipped (VB_SKIP_GUEST set)"
fi

if [ "$skipped" != 0 ]; then
	echo "# skipped:"
	printf '#   %s\n' "${skipped_names[@]}"
fi
if [ "$failed" != 0 ]; then
	echo "# failed:"
	printf '#   %s\n' "${failed_names[@]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
if [ "${CI:-}" = true ] && [ "$skipped" != 0 ]; then
	echo "# CI=true: $skipped test(s) skipped; in CI every test must run"
	exit 1
fi
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
