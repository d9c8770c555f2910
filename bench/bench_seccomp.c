/*
 * bench_seccomp: what the seccomp filters add to a system call the confined process is allowed
 * to make. Each measurement runs in a forked child, since a filter can never be removed:
 *
 *   none     no filter (the baseline);
 *   worker   the worker's policy (policy/worker.policy), as a standalone worker runs;
 *   stacked  the broker's policy, then the worker's on top, as a broker-spawned worker runs
 *            (the kernel runs every filter of the stack on each call).
 *
 * Two calls: pread64 of 4 bytes from a memfd (the worker's device access; an unconditional rule,
 * which the kernel answers from its per-syscall action cache without running the BPF) and
 * fcntl(F_GETFL) (a rule on an argument, so the BPF runs on every call).
 *
 * The children run in rounds, in a rotating order, so that drift over the run (another process
 * waking up, frequency changes) is spread over all three. Needs no privilege: sbx_seccomp_load()
 * sets no_new_privs first.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "seccomp.h"

enum stack { STACK_NONE, STACK_WORKER, STACK_BOTH, NSTACKS };
enum call { CALL_PREAD, CALL_FCNTL, NCALLS };

#define ROUNDS 5

static const char *const stack_name[NSTACKS] = {"none", "worker", "broker+worker"};
static const char *const call_name[NCALLS] = {"pread_memfd_4B", "fcntl_getfl"};

static int do_calls(enum call c, int fd, uint64_t n)
{
	char buf[4];

	for (uint64_t i = 0; i < n; i++) {
		if (c == CALL_PREAD ? pread(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf)
				    : fcntl(fd, F_GETFL) < 0)
			return -errno;
	}
	return 0;
}

static uint64_t calibrate(enum call c, int fd)
{
	uint64_t n = 1000, t0, ns;

	do_calls(c, fd, n); /* warm */
	t0 = bench_now_ns();
	do_calls(c, fd, n);
	ns = bench_now_ns() - t0;
	n = bench_batch_ns() * n / (ns ? ns : 1);
	return n ? n : 1;
}

static int load(enum stack s)
{
	int r = 0;

	if (s == STACK_BOTH)
		r = sbx_seccomp_load(SBX_ROLE_BROKER, SBX_SECCOMP_KILL);
	if (r == 0 && s != STACK_NONE)
		r = sbx_seccomp_load(SBX_ROLE_WORKER, SBX_SECCOMP_KILL);
	return r;
}

/* The child: loads its stack, warms up, then writes `nb` ns/op values per call to `out`. */
static void child(enum stack s, int fd, int out, const uint64_t n[NCALLS], unsigned nb, double *v)
{
	uint64_t t0;
	int r = load(s);
	size_t len;

	if (r < 0)
		_exit(100 + (-r & 0x7f));
	for (int c = 0; c < NCALLS; c++)
		do_calls((enum call)c, fd, n[c]);
	for (unsigned b = 0; b < nb; b++) {
		for (int c = 0; c < NCALLS; c++) {
			t0 = bench_now_ns();
			if (do_calls((enum call)c, fd, n[c]) < 0)
				_exit(99);
			v[c * nb + b] = (double)(bench_now_ns() - t0) / (double)n[c];
		}
	}
	len = sizeof(double) * NCALLS * nb;
	for (size_t at = 0; at < len;) {
		ssize_t k = write(out, (char *)v + at, len - at);

		if (k <= 0)
			_exit(98);
		at += (size_t)k;
	}
	_exit(0);
}

/* Runs one child and stores its values at v[call][round * nb ...]. */
static int run_child(enum stack s, int fd, const uint64_t n[NCALLS], unsigned nb, double *tmp,
		     double *dst[NCALLS], char *why, size_t whylen)
{
	size_t len = sizeof(double) * NCALLS * nb, at = 0;
	int p[2], status;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (pid == 0) {
		close(p[0]);
		child(s, fd, p[1], n, nb, tmp);
	}
	close(p[1]);
	while (at < len) {
		ssize_t k = read(p[0], (char *)tmp + at, len - at);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		at += (size_t)k;
	}
	close(p[0]);
	waitpid(pid, &status, 0);
	if (WIFSIGNALED(status)) {
		/* SIGSYS: a call outside the policy, e.g. by a sanitizer's runtime. */
		snprintf(why, whylen, "the %s child died of signal %d%s", stack_name[s],
			 WTERMSIG(status),
			 WTERMSIG(status) == SIGSYS ? " (a system call outside the policy)" : "");
		return -ECHILD;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || at < len) {
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;

		if (code >= 100)
			snprintf(why, whylen, "loading the %s filter: %s", stack_name[s],
				 strerror(code - 100));
		else
			snprintf(why, whylen, "the %s child failed (status %d)", stack_name[s],
				 code);
		return -ECHILD;
	}
	for (int c = 0; c < NCALLS; c++)
		memcpy(dst[c], tmp + (size_t)c * nb, sizeof(double) * nb);
	return 0;
}

int main(void)
{
	unsigned nb = (bench_batches() + ROUNDS - 1) / ROUNDS, total = nb * ROUNDS;
	double *v[NSTACKS][NCALLS], *tmp = calloc((size_t)NCALLS * nb, sizeof(double));
	struct bench_stats st[NSTACKS][NCALLS];
	char why[160] = "", name[64], base[64];
	uint64_t n[NCALLS];
	int fd, r = 0;

	bench_header("seccomp: an allowed system call under the filters against no filter");
	fd = memfd_create("vb-bench-seccomp", MFD_CLOEXEC);
	if (fd < 0 || !tmp || write(fd, "abcd", 4) != 4) {
		bench_fail("seccomp", "setup: %s", strerror(errno));
		return 1;
	}
	for (int s = 0; s < NSTACKS; s++)
		for (int c = 0; c < NCALLS; c++) {
			v[s][c] = calloc(total, sizeof(double));
			if (!v[s][c])
				return 1;
		}
	for (int c = 0; c < NCALLS; c++)
		n[c] = calibrate((enum call)c, fd);
	for (unsigned round = 0; round < ROUNDS && r == 0; round++) {
		for (int k = 0; k < NSTACKS && r == 0; k++) {
			enum stack s = (enum stack)((k + round) % NSTACKS);
			double *dst[NCALLS];

			for (int c = 0; c < NCALLS; c++)
				dst[c] = v[s][c] + (size_t)round * nb;
			r = run_child(s, fd, n, nb, tmp, dst, why, sizeof(why));
		}
	}
	for (int c = 0; c < NCALLS; c++) {
		for (int s = STACK_WORKER; s < NSTACKS; s++) {
			snprintf(name, sizeof(name), "%s_%s",
				 s == STACK_WORKER ? "seccomp_worker" : "seccomp_stacked",
				 call_name[c]);
			if (r < 0) {
				bench_fail(name, "%s", why[0] ? why : strerror(-r));
				continue;
			}
			snprintf(base, sizeof(base), "nofilter_%s", call_name[c]);
			bench_stats_of(v[s][c], total, &st[s][c]);
			bench_stats_of(v[STACK_NONE][c], total, &st[STACK_NONE][c]);
			st[s][c].iterations = st[STACK_NONE][c].iterations = (uint64_t)total * n[c];
			bench_report(name, &st[s][c], base, &st[STACK_NONE][c], "ns/op");
		}
	}
	for (int s = 0; s < NSTACKS; s++)
		for (int c = 0; c < NCALLS; c++)
			free(v[s][c]);
	free(tmp);
	close(fd);
	return r < 0;
}
