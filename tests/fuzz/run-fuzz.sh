#!/bin/sh
# run-fuzz.sh BUILD_DIR [TARGET...]: runs libFuzzer targets (all of them when none is named) one
# after another, at most FUZZ_JOBS at a time, each for FUZZ_SECONDS (default 60) or until
# FUZZ_RUNS executions when that is set, under nice -n 19. Each target starts from its
# checked-in corpus (tests/fuzz/corpus/NAME, read only) and writes what it finds to
# BUILD_DIR/fuzz/NAME/ (new inputs) and BUILD_DIR/fuzz/NAME.crash-* (findings); its log is
# BUILD_DIR/fuzz/NAME.log. FUZZ_FLAGS (default -entropic=0, see tests/fuzz/README.md) goes to
# every target's command line. Prints one line per target (executions, seconds, rate, libFuzzer's
# cov and ft, findings) and exits 1 if any target found something or could not run.
#
# `make fuzz` runs this after building BUILD_DIR with -DVB_FUZZ=ON (clang). To fold new inputs
# into the checked-in corpus, minimized: see tests/fuzz/README.md.
set -u
build=${1:?usage: run-fuzz.sh BUILD_DIR [TARGET...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:--1}
jobs=${FUZZ_JOBS:-1}
# clang 14's libFuzzer looks every feature of every run up in its list of rare features, one by
# one (FuzzerCorpus.h, UpdateFeatureFrequency): with the thousands of features a conversation
# target hits per input that took 63% of fuzz_ctl's time. Without the entropic schedule the
# same executions run 1.1x (image) to 4.3x (ctl) faster; the coverage feedback is unchanged.
flags=${FUZZ_FLAGS--entropic=0}
out="$build/fuzz"
mkdir -p "$out"

if [ $# -eq 0 ]; then
	set -- $(cd "$here/corpus" && ls)
fi
for t in "$@"; do
	if [ ! -x "$build/bin/fuzz_$t" ]; then
		echo "run-fuzz: $build/bin/fuzz_$t is missing (configure with CC=clang -DVB_FUZZ=ON)" >&2
		exit 1
	fi
done

run_one() {
	t=$1
	mkdir -p "$out/$t"
	# -runs bounds the executions, -max_total_time the wall time; whichever comes first.
	if [ "$runs" -ge 0 ]; then
		limit="-runs=$runs -max_total_time=$((seconds > 0 ? seconds : 0))"
	else
		limit="-max_total_time=$seconds"
	fi
	nice -n 19 "$build/bin/fuzz_$t" $limit $flags -print_final_stats=1 -rss_limit_mb=4096 \
		-artifact_prefix="$out/$t." "$out/$t" "$here/corpus/$t" >"$out/$t.log" 2>&1
	echo $? >"$out/$t.rc"
}

# The summary line of one target, from its log.
report() {
	t=$1
	log="$out/$t.log"
	rc=$(cat "$out/$t.rc" 2>/dev/null || echo 1)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
	# The last status line carries the final coverage.
	last=$(tr '\r' '\n' <"$log" | grep -E '^#[0-9]+[[:space:]]+(DONE|NEW|REDUCE|pulse|INITED)' | tail -1)
	cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	found=$(ls "$out/$t".crash-* "$out/$t".leak-* "$out/$t".timeout-* "$out/$t".oom-* 2>/dev/null | wc -l)
	rate=-
	[ -n "$execs" ] && [ -n "$secs" ] && [ "$secs" -gt 0 ] && rate=$((execs / secs))
	printf '%-12s execs %-10s seconds %-6s exec/s %-7s cov %-6s ft %-6s findings %s\n' \
		"$t" "${execs:-?}" "${secs:-?}" "$rate" "${cov:-?}" "${ft:-?}" "$found"
	[ "$rc" = 0 ] && [ "$found" = 0 ]
}

set -- "$@"
pending="$*"
running=""
while [ -n "$pending" ] || [ -n "$running" ]; do
	# Start targets while fewer than FUZZ_JOBS run.
	while [ -n "$pending" ] && [ $(echo $running | wc -w) -lt "$jobs" ]; do
		t=${pending%% *}
		[ "$t" = "$pending" ] && pending="" || pending=${pending#* }
		rm -f "$out/$t.rc"
		run_one "$t" &
		running="$running $t"
	done
	sleep 1
	still=""
	for t in $running; do
		[ -f "$out/$t.rc" ] && continue
		still="$still $t"
	done
	running=$still
done

fail=0
for t in $(cd "$here/corpus" && ls); do
	case " $* " in *" $t "*) report "$t" || fail=1 ;; esac
done
exit $fail
