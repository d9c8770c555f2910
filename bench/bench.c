/*
 * bench: the shared harness (see bench.h). Responsible for calibration, alternating batches,
 * statistics and the two output formats. Trusts the operations it is given to do the same work
 * on every call.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double scale(void)
{
	const char *s = getenv("VB_BENCH_SCALE");
	double v;
	char *end;

	if (!s || !*s)
		return 1.0;
	v = strtod(s, &end);
	if (*end || !(v > 0.0) || v > 100.0)
		return 1.0;
	return v;
}

unsigned bench_batches(void)
{
	unsigned n = (unsigned)(BENCH_BATCHES * scale());

	return n < 11 ? 11 : n;
}

uint64_t bench_batch_ns(void)
{
	uint64_t ns = (uint64_t)((double)BENCH_BATCH_NS * scale());

	return ns < 100000 ? 100000 : ns;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

void bench_stats_of(double *v, size_t n, struct bench_stats *ret)
{
	size_t rank;

	memset(ret, 0, sizeof(*ret));
	if (n == 0)
		return;
	qsort(v, n, sizeof(*v), cmp_double);
	ret->median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	/* Nearest rank: the smallest value that at least 99% of the batches do not exceed. */
	rank = (size_t)ceil(0.99 * (double)n);
	ret->p99 = v[rank - 1];
}

static int timed(bench_fn fn, bench_fn prep, void *ctx, uint64_t n, uint64_t *ret_ns)
{
	uint64_t t0;
	int r;

	if (prep) {
		r = prep(ctx, n);
		if (r < 0)
			return r;
	}
	t0 = bench_now_ns();
	r = fn(ctx, n);
	*ret_ns = bench_now_ns() - t0;
	return r;
}

/* Warms a side up for BENCH_WARMUP_NS and returns how many of its operations fill a batch. */
static int calibrate(bench_fn fn, bench_fn prep, void *ctx, uint64_t *ret_n)
{
	uint64_t n = 1, ns = 0, spent = 0, target = bench_batch_ns();
	int r;

	while (spent < BENCH_WARMUP_NS || ns < target / 4) {
		r = timed(fn, prep, ctx, n, &ns);
		if (r < 0)
			return r;
		spent += ns;
		if (ns < target / 4 && n < (1ull << 30))
			n *= 2;
	}
	n = (uint64_t)((double)n * (double)target / (double)(ns ? ns : 1));
	*ret_n = n ? n : 1;
	return 0;
}

static void warm(bench_fn fn, bench_fn prep, void *ctx, uint64_t n)
{
	uint64_t spent = 0, ns;

	while (spent < BENCH_WARMUP_NS / 2 && timed(fn, prep, ctx, n, &ns) == 0)
		spent += ns;
}

int bench_run(const struct bench_pair *p)
{
	unsigned nb = bench_batches();
	double *fv = calloc(nb, sizeof(double)), *bv = calloc(nb, sizeof(double));
	struct bench_stats fs, bs;
	uint64_t n, ns;
	int r = -ENOMEM;

	if (!fv || !bv)
		goto out;
	if (p->per_batch) {
		n = p->per_batch;
		warm(p->figure, p->figure_prep, p->ctx, n);
	} else {
		r = calibrate(p->figure, p->figure_prep, p->ctx, &n);
		if (r < 0)
			goto out;
	}
	/* The baseline is warmed up too, with the figure's batch size so both do the same count. */
	warm(p->base, p->base_prep, p->ctx, n);
	for (unsigned i = 0; i < nb; i++) {
		/* Alternate which side goes first so neither always follows the other. */
		int first = i % 2;

		for (int side = 0; side < 2; side++) {
			bool fig = (side ^ first) == 0;

			r = timed(fig ? p->figure : p->base, fig ? p->figure_prep : p->base_prep,
				  p->ctx, n, &ns);
			if (r < 0)
				goto out;
			(fig ? fv : bv)[i] = (double)ns / (double)n;
		}
	}
	bench_stats_of(fv, nb, &fs);
	bench_stats_of(bv, nb, &bs);
	fs.iterations = bs.iterations = (uint64_t)nb * n;
	bench_report(p->name, &fs, p->baseline, &bs, "ns/op");
	r = 0;
out:
	if (r < 0) {
		const char *why = p->explain ? p->explain(p->ctx) : NULL;

		bench_fail(p->name, "%s%s%s", strerror(-r), why && *why ? ": " : "",
			   why ? why : "");
	}
	free(fv);
	free(bv);
	return r;
}

static void tsv(const char *line)
{
	const char *path = getenv("VB_BENCH_TSV");
	FILE *f;

	if (!path || !*path)
		return;
	f = fopen(path, "ae");
	if (!f)
		return;
	fputs(line, f);
	fclose(f);
}

void bench_header(const char *title)
{
	printf("\n== %s\n", title);
#ifdef VB_BENCH_SANITIZED
	printf("warning: a sanitizer build: these figures measure ASan/UBSan, not vfio-broker\n");
#endif
	printf("%-30s %12s %12s  %-34s %12s %12s %8s  %-7s %s\n", "benchmark", "median", "p99",
	       "baseline", "median", "p99", "ratio", "units", "iterations");
	fflush(stdout);
}

void bench_report(const char *name, const struct bench_stats *fig, const char *baseline,
		  const struct bench_stats *base, const char *units)
{
	double ratio = base->median > 0 ? fig->median / base->median : 0;
	char line[512];

	printf("%-30s %12.1f %12.1f  %-34s %12.1f %12.1f %7.2fx  %-7s %llu\n", name, fig->median,
	       fig->p99, baseline, base->median, base->p99, ratio, units,
	       (unsigned long long)fig->iterations);
	fflush(stdout);
	snprintf(line, sizeof(line), "ok\t%s\t%.1f\t%.1f\t%s\t%.1f\t%.1f\t%.2f\t%s\t%llu\n", name,
		 fig->median, fig->p99, baseline, base->median, base->p99, ratio, units,
		 (unsigned long long)fig->iterations);
	tsv(line);
}

void bench_fail(const char *name, const char *fmt, ...)
{
	char why[256], line[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	printf("%-30s NOT RUN: %s\n", name, why);
	fflush(stdout);
	snprintf(line, sizeof(line), "fail\t%s\t%s\n", name, why);
	tsv(line);
}

int bench_placements(struct bench_placement ret[BENCH_PLACEMENTS_MAX])
{
	/* The CPUs this process was started with: once pinned, its own affinity is one CPU. */
	static cpu_set_t set;
	static bool have;
	int cpus[BENCH_PLACEMENTS_MAX], n = 0;

	if (!have && sched_getaffinity(0, sizeof(set), &set) < 0)
		return -errno;
	have = true;
	for (int i = 0; i < CPU_SETSIZE && n < BENCH_PLACEMENTS_MAX; i++)
		if (CPU_ISSET(i, &set))
			cpus[n++] = i;
	if (n == 0)
		return -ESRCH;
	ret[0] = (struct bench_placement){.suffix = "_1cpu", .client = cpus[0], .server = cpus[0]};
	if (n == 1) {
		/* Not a failure: the cross-CPU figures do not exist here, and the table says why.
		 */
		printf("note: one CPU available to this process (%ld online): round trips are "
		       "measured "
		       "with both ends on CPU %d only, no _2cpu rows\n",
		       sysconf(_SC_NPROCESSORS_ONLN), cpus[0]);
		fflush(stdout);
		return 1;
	}
	ret[1] = (struct bench_placement){.suffix = "_2cpu", .client = cpus[0], .server = cpus[1]};
	return 2;
}

static void one_cpu(int cpu, cpu_set_t *set)
{
	CPU_ZERO(set);
	CPU_SET(cpu, set);
}

int bench_pin_self(int cpu)
{
	cpu_set_t set;

	one_cpu(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : 0;
}

int bench_pin_thread(pthread_t t, int cpu)
{
	cpu_set_t set;

	one_cpu(cpu, &set);
	return -pthread_setaffinity_np(t, sizeof(set), &set);
}

/* sched_setaffinity() of a pid moves one thread; a peer may have more (a libuv pool), and any of
 * them left on the other CPU would turn a one-CPU figure into a cross-CPU one. */
int bench_pin_process(pid_t pid, int cpu)
{
	char path[64];
	cpu_set_t set;
	struct dirent *e;
	DIR *d;
	int r = 0, pinned = 0;

	one_cpu(cpu, &set);
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		char *end;
		long tid = strtol(e->d_name, &end, 10);

		if (e->d_name[0] == '.' || *end || tid <= 0)
			continue;
		/* A thread that exited since readdir() has nothing left to place. */
		if (sched_setaffinity((pid_t)tid, sizeof(set), &set) < 0) {
			if (errno != ESRCH)
				r = -errno;
		} else {
			pinned++;
		}
	}
	closedir(d);
	if (r == 0 && pinned == 0)
		r = -ESRCH;
	return r;
}

int bench_run_placed(const struct bench_pair *p, const struct bench_placement *pl)
{
	char name[96], base[96];
	struct bench_pair q = *p;

	snprintf(name, sizeof(name), "%s%s", p->name, pl->suffix);
	snprintf(base, sizeof(base), "%s%s", p->baseline, pl->suffix);
	q.name = name;
	q.baseline = base;
	return bench_run(&q);
}

static void echo_loop(int fd, size_t reply_len)
{
	uint8_t buf[BENCH_ECHO_MAX] = {0};

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n <= 0)
			_exit(n < 0);
		if (send(fd, buf, reply_len, MSG_NOSIGNAL) < 0)
			_exit(1);
	}
}

int bench_echo_start(size_t reply_len, int *ret_fd, pid_t *ret_pid)
{
	int sv[2], r;
	pid_t pid;

	if (reply_len == 0 || reply_len > BENCH_ECHO_MAX)
		return -EINVAL;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(sv[0]);
		close(sv[1]);
		return r;
	}
	if (pid == 0) {
		close(sv[0]);
		echo_loop(sv[1], reply_len);
	}
	close(sv[1]);
	*ret_fd = sv[0];
	*ret_pid = pid;
	return 0;
}

void bench_echo_stop(int fd, pid_t pid)
{
	if (fd >= 0)
		close(fd); /* the echo process sees the hang-up and exits */
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

int bench_cpu_ns(pid_t pid, uint64_t *ret)
{
	char path[64];
	unsigned long long v;
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	n = fscanf(f, "%llu", &v);
	fclose(f);
	if (n != 1)
		return -EIO;
	*ret = v;
	return 0;
}

void bench_sleep_ns(uint64_t ns)
{
	struct timespec t = {.tv_sec = (time_t)(ns / 1000000000u),
			     .tv_nsec = (long)(ns % 1000000000u)};

	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}
