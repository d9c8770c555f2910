/*
 * bench: the harness every benchmark of bench/ uses. A benchmark is a pair of operations, the
 * figure (what vfio-broker does) and its baseline (the least the same job can cost without it),
 * measured in the same process, in alternating batches so that both see the same machine state.
 * It reports the median and the 99th percentile of the per-operation time over the batches, and
 * the ratio of the medians (figure / baseline).
 *
 * Timing is CLOCK_MONOTONIC around whole batches (never around one operation: the clock would
 * cost as much as the cheapest operations). Round trips between two ends (threads or processes)
 * are measured once per placement (bench_placements()): both ends pinned to one CPU, then to two
 * different CPUs; the scheduler never decides, so a ratio compares like with like.
 *
 * Results go to stdout as a table and, when the environment names a file in VB_BENCH_TSV, are
 * appended to it as tab-separated rows for bench/run-bench.sh's summary.
 */
#ifndef VB_BENCH_H
#define VB_BENCH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Runs `n` operations; returns 0 or a negative errno (the benchmark is then reported as not run).
 */
typedef int (*bench_fn)(void *ctx, uint64_t n);

struct bench_pair {
	const char *name;     /* the figure, e.g. "ipc_call_32B" */
	const char *baseline; /* what it is compared with, e.g. "raw_seqpacket_pingpong_54B" */
	bench_fn figure;
	bench_fn base;
	/* Optional, untimed: runs before each timed batch of `n` (e.g. queues n datagrams). */
	bench_fn figure_prep;
	bench_fn base_prep;
	void *ctx;
	/* Optional: says which step of an operation failed, for the NOT RUN line. */
	const char *(*explain)(void *ctx);
	/* 0 for the defaults: batches of about BENCH_BATCH_NS of the figure, BENCH_BATCHES each. */
	uint64_t per_batch; /* operations per batch, when the batch size must be bounded */
};

/* Defaults; VB_BENCH_SCALE (a float in the environment, e.g. 0.2 for a quick run) scales the
 * batch count (never below 11) and the batch duration. */
#define BENCH_BATCHES	101
#define BENCH_BATCH_NS	2000000ull  /* 2 ms */
#define BENCH_WARMUP_NS 20000000ull /* 20 ms of each side before the first timed batch */

struct bench_stats {
	double median; /* per operation */
	double p99;
	uint64_t iterations; /* operations timed, all batches */
};

uint64_t bench_now_ns(void);

/* Median and p99 (nearest rank) of `n` values; sorts them. */
void bench_stats_of(double *v, size_t n, struct bench_stats *ret);

/* Measures a pair of time-per-operation benchmarks (units ns/op) and reports it. Returns 0, or
 * the first error of an operation, after reporting the pair as not run. */
int bench_run(const struct bench_pair *p);

/* Reports a pair measured by other means (memory, or timings gathered in child processes). */
void bench_report(const char *name, const struct bench_stats *fig, const char *baseline,
		  const struct bench_stats *base, const char *units);

/* Reports that a benchmark could not run, and why; the program should then exit 1. */
void bench_fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* How many batches and how long a batch should be, after VB_BENCH_SCALE. */
unsigned bench_batches(void);
uint64_t bench_batch_ns(void);

/*
 * Where the two ends of a round trip run. On one CPU (`_1cpu`) every round trip is two context
 * switches on that CPU: the software's own cost. On two CPUs (`_2cpu`) each message wakes a
 * task on the other CPU: the wake-up path, which on a VM can cost more than the software.
 */
struct bench_placement {
	const char
	    *suffix; /* "_1cpu" or "_2cpu", appended to the figure's and the baseline's name */
	int client;  /* CPU of the thread that times the round trips */
	int server;  /* CPU of the end that answers */
};

#define BENCH_PLACEMENTS_MAX 2

/* The placements this process can measure, from the CPUs it may run on: both ends on the first
 * of them, then the first and the second. With only one CPU, only the first, and says so on
 * stdout. Returns how many (1 or 2) or a negative errno. */
int bench_placements(struct bench_placement ret[BENCH_PLACEMENTS_MAX]);

/* Pin the calling thread, another thread of this process, or every thread of a process. */
int bench_pin_self(int cpu);
int bench_pin_thread(pthread_t t, int cpu);
int bench_pin_process(pid_t pid, int cpu);

/*
 * The raw baseline's other end: a forked process answering every datagram on a SOCK_SEQPACKET
 * socketpair with one of `reply_len` bytes (at most BENCH_ECHO_MAX), blocking recv and send,
 * until the peer hangs up. *ret_fd is this end (close-on-exec). bench_echo_stop() hangs up and
 * reaps it.
 */
#define BENCH_ECHO_MAX 256
int bench_echo_start(size_t reply_len, int *ret_fd, pid_t *ret_pid);
void bench_echo_stop(int fd, pid_t pid);

/* bench_run() of `p` with the placement's suffix on both names; the caller has pinned the ends.
 */
int bench_run_placed(const struct bench_pair *p, const struct bench_placement *pl);

/* Prints the table header once per program. */
void bench_header(const char *title);

/* CPU time process `pid` has run, in ns (/proc/<pid>/schedstat: on-CPU time first). */
int bench_cpu_ns(pid_t pid, uint64_t *ret);
/* Sleeps `ns`, through signals. */
void bench_sleep_ns(uint64_t ns);

#endif
