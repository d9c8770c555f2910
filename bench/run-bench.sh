#!/usr/bin/env bash
# Runs every benchmark of bench/ against the build in BUILD_DIR and prints, at the end, one
# summary table: each figure beside the baseline measured in the same run, and their ratio.
#
#   bench/run-bench.sh [BUILD_DIR]          (make bench)
#
# Environment:
#   VB_BENCH_SCALE=F   scale batch counts and durations (e.g. 0.2 for a quick look; default 1)
#   VB_BENCH_GUEST=0   skip the guest benchmarks (bench/guest_bench.py: they boot the test guest
#                      under QEMU; by default they run, and a guest that cannot boot makes
#                      their rows NOT RUN)
#   VB_BENCH_GUEST_SCALE=F  VB_BENCH_SCALE inside the guest (default 0.3: TCG is slow)
#   VB_BENCH_GUEST_PARTS=main,dma-vm,scale  which guests boot (default all three: the small
#                      benchmarks and hot-plug; DMA of a VM's RAM; 128 devices)
#   VB_BENCH_HOTPLUG_ROUNDS=N  hot-plug rounds (default 11)
#   VB_BENCH_DMA_ROUNDS=N   rounds per DMA size in the dma-vm guest (default 5)
#
# Exits 0 when every benchmark ran, 1 when any could not (its row says why), 2 on usage errors.
# These are measurements, not tests: nothing here compares a figure with a threshold.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
bin=$build/bin

if [ ! -x "$bin/bench_ipc" ]; then
	echo "run-bench.sh: no benchmarks in $bin (configure with -DVB_BENCH=ON and build)" >&2
	exit 2
fi

tsv=$(mktemp)
trap 'rm -f "$tsv"' EXIT
export VB_BENCH_TSV=$tsv
status=0

echo "vfio-broker benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs:" \
	"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
start=$(date +%s)

run() { # run NAME ARGS...: one benchmark program; a crash or failure marks the run failed
	local name=$1 before rc
	shift
	before=$(grep -c '^fail' "$tsv")
	"$bin/$name" "$@"
	rc=$?
	if [ $rc -ne 0 ]; then
		status=1
		# A program that died without naming what failed still shows up in the summary.
		if [ "$(grep -c '^fail' "$tsv")" = "$before" ]; then
			printf 'fail\t%s\texited with status %d\n' "$name" $rc >>"$tsv"
		fi
	fi
}

run bench_ipc
run bench_worker "$bin/vfio-worker" "$top/tests/fixtures/edu.img"
run bench_vfu "$bin/vfio-worker" "$top/tests/fixtures/edu.img"
run bench_ring
run bench_seccomp
run bench_record
run bench_restart "$bin/vfio-brokerd" "$bin/vfio-worker"
run bench_mem "$bin/vfio-worker" "$top/tests/fixtures/edu.img" "$bin/bench_idle_static"
if [ "${VB_BENCH_GUEST:-1}" != 0 ]; then
	python3 -B "$here/guest_bench.py" "$build" || status=1
fi

echo
echo "== summary ($(($(date +%s) - start)) s): ratio = figure median / baseline median;" \
	"1.00x means no cost over the baseline"
awk -F'\t' '
	BEGIN {
		printf "%-30s %12s %-34s %12s %8s  %-7s %s\n", "benchmark", "median", "baseline",
		       "median", "ratio", "units", "iterations"
	}
	$1 == "ok" {
		printf "%-30s %12s %-34s %12s %7sx  %-7s %s\n", $2, $3, $5, $6, $8, $9, $10
	}
	$1 == "fail" { printf "%-30s NOT RUN: %s\n", $2, $3; failed++ }
	END { if (failed) printf "%d benchmark(s) could not run\n", failed }
' "$tsv"
exit $status
