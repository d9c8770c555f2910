/*
 * bench_restart BROKER WORKER: how long a control request waits while the broker restarts
 * (issue 12), against how long the broker takes to start with no device, both in this run.
 *
 * Baseline, broker_start_no_devices: the broker is executed with a fresh configuration and no
 * device; the time from fork until the first `list` request on a new connection is answered.
 *
 * Figure, ctl_wait_during_restart: one broker, re-executed (SIGUSR2: the same handover of every
 * fd as a systemd restart, the control socket kept listening) again and again while a client
 * thread sends `list` requests back to back, each on a new connection as vfio-brokerctl does. A
 * request's wait runs from its first connect until it is answered; one whose connection the old
 * image took along is sent again on a new one (counted as "cut") and its wait goes on. Every
 * request that was in progress between the signal and the new image's "ready:" log line counts.
 *
 * Both are reported as median and maximum in ms (the summary table's p99 column holds the
 * maximum here: a handful of restarts has no meaningful 99th percentile). No device is needed,
 * so this runs on the host, as root (the broker's privileges), with the broker's own seccomp
 * policy. It measures; it checks no threshold.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vfiobroker/client.h>

#include "bench.h"

#define FIGURE	 "ctl_wait_during_restart"
#define BASELINE "broker_start_no_devices"
#define MAX_REQS 200000

struct broker {
	pid_t pid;
	int log; /* read end of its stderr */
	char buf[8192];
	size_t len;
};

static char dir[64], conf[96], sock[96], runtime[96];
static char *broker_path, *worker_path;

/* The requests the client thread made: start and end, ns; cut connections. */
static struct {
	uint64_t t0[MAX_REQS], t1[MAX_REQS];
	atomic_size_t n;
	atomic_bool stop;
	atomic_ulong cut;
	int err;
} reqs;

static int write_conf(const char *worker)
{
	FILE *f = fopen(conf, "we");

	if (!f)
		return -errno;
	fprintf(f,
		"[broker]\ncontrol_socket = %s\nruntime_dir = %s\nlog_level = info\nseccomp = "
		"kill\n\n[devices]\nallow = 1234:11e8\n\n[worker]\npath = %s\n"
		"uid_range = 61000-61999\n",
		sock, runtime, worker);
	if (fchmod(fileno(f), 0600) < 0 || fclose(f) != 0)
		return -errno;
	return 0;
}

static int broker_start(struct broker *b)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	b->len = 0;
	b->pid = fork();
	if (b->pid < 0) {
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (b->pid == 0) {
		dup2(p[1], STDERR_FILENO);
		execl(broker_path, broker_path, "-c", conf, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	b->log = p[0];
	return 0;
}

/* Reads the broker's log up to the next line with "ready:" (each start, re-execs included,
 * logs one); -EPIPE if the broker went away first. */
static int broker_wait_ready(struct broker *b)
{
	for (;;) {
		char *nl, *line = b->buf;
		ssize_t n;

		while ((nl = memchr(line, '\n', b->len - (size_t)(line - b->buf)))) {
			*nl = 0;
			if (strstr(line, ": ready:")) {
				size_t rest = b->len - (size_t)(nl + 1 - b->buf);

				memmove(b->buf, nl + 1, rest);
				b->len = rest;
				return 0;
			}
			line = nl + 1;
		}
		b->len -= (size_t)(line - b->buf);
		memmove(b->buf, line, b->len);
		if (b->len == sizeof(b->buf))
			b->len = 0; /* a line longer than the buffer: not a ready line */
		n = read(b->log, b->buf + b->len, sizeof(b->buf) - b->len);
		if (n <= 0)
			return -EPIPE;
		b->len += (size_t)n;
	}
}

static void broker_stop(struct broker *b)
{
	char buf[4096];

	if (b->pid > 0) {
		kill(b->pid, SIGTERM);
		while (read(b->log, buf, sizeof(buf)) > 0)
			;
		waitpid(b->pid, NULL, 0);
	}
	if (b->log >= 0)
		close(b->log);
	b->pid = -1;
	b->log = -1;
}

/* One `list` on a new connection; 0, or the error of the connect or the request. */
static int list_once(void)
{
	struct vfb_ctl_device *list;
	struct vfb_ctl *ctl;
	size_t n;
	int r = vfb_ctl_connect(sock, 0, &ctl);

	if (r < 0)
		return r;
	vfb_ctl_set_timeout(ctl, 60000);
	r = vfb_ctl_list(ctl, &list, &n);
	if (r >= 0)
		vfb_ctl_device_list_free(list, n);
	vfb_ctl_close(ctl);
	return r;
}

static void *client(void *arg)
{
	(void)arg;
	while (!atomic_load(&reqs.stop)) {
		size_t i = atomic_load(&reqs.n);
		int r;

		if (i == MAX_REQS)
			break;
		reqs.t0[i] = bench_now_ns();
		/* Refused or cut while no image listens or answers: send it again. A connect
		 * to the kept listening socket never fails; only the taken-along connection. */
		while ((r = list_once()) < 0 && !atomic_load(&reqs.stop)) {
			if (r != -EPIPE && r != -ECONNRESET && r != -ECONNREFUSED && r != -ENOENT) {
				reqs.err = r;
				return NULL;
			}
			atomic_fetch_add(&reqs.cut, 1);
		}
		reqs.t1[i] = bench_now_ns();
		atomic_store(&reqs.n, i + 1);
	}
	return NULL;
}

static int cold_starts(unsigned n, double *ms)
{
	for (unsigned i = 0; i < n; i++) {
		struct broker b = {.pid = -1, .log = -1};
		uint64_t t0 = bench_now_ns();
		int r = broker_start(&b);

		while (r == 0 && (r = list_once()) < 0) {
			if (waitpid(b.pid, NULL, WNOHANG) != 0) {
				b.pid = -1;
				r = -ECHILD;
				break;
			}
			r = 0;
			poll(NULL, 0, 1); /* the socket is not there yet */
		}
		ms[i] = (double)(bench_now_ns() - t0) / 1e6;
		broker_stop(&b);
		unlink(sock);
		if (r < 0)
			return r;
	}
	return 0;
}

static void report_line(const char *what, const struct bench_stats *s, double max)
{
	printf("  %-28s p50 %8.1f ms   max %8.1f ms   (%llu measured)\n", what, s->median, max,
	       (unsigned long long)s->iterations);
}

int main(int argc, char **argv)
{
	unsigned n = (unsigned)lround(fmax(5, 20 * (double)bench_batches() / BENCH_BATCHES));
	double *cold, *waits = NULL, max_cold = 0, max_wait = 0;
	struct bench_stats sc, sw;
	struct broker b = {.pid = -1, .log = -1};
	uint64_t *sig_t = NULL, *ready_t = NULL;
	size_t nw = 0;
	pthread_t th;
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: bench_restart BROKER WORKER\n");
		return 2;
	}
	/* The configuration wants an absolute worker path, and a re-exec runs the broker's. */
	broker_path = realpath(argv[1], NULL);
	worker_path = realpath(argv[2], NULL);
	if (!broker_path || !worker_path) {
		fprintf(stderr, "bench_restart: %s: %s\n", broker_path ? argv[2] : argv[1],
			strerror(errno));
		return 2;
	}
	bench_header("broker restart (issue 12): control requests during a re-exec");
	if (geteuid() != 0) {
		bench_fail(FIGURE, "needs root (the broker's capabilities)");
		return 1;
	}
	snprintf(dir, sizeof(dir), "/tmp/vb-bench-restart-XXXXXX");
	if (!mkdtemp(dir)) {
		bench_fail(FIGURE, "mkdtemp: %s", strerror(errno));
		return 1;
	}
	snprintf(conf, sizeof(conf), "%s/brokerd.conf", dir);
	snprintf(sock, sizeof(sock), "%s/control.sock", dir);
	snprintf(runtime, sizeof(runtime), "%s/vmm", dir);
	cold = calloc(n, sizeof(*cold));
	sig_t = calloc(n, sizeof(*sig_t));
	ready_t = calloc(n, sizeof(*ready_t));
	r = cold && sig_t && ready_t ? write_conf(worker_path) : -ENOMEM;
	if (r == 0 && (r = cold_starts(n, cold)) < 0)
		bench_fail(BASELINE, "the broker did not start and answer: %s", strerror(-r));
	if (r == 0 && (r = broker_start(&b)) == 0 && (r = broker_wait_ready(&b)) < 0)
		bench_fail(FIGURE, "the broker did not start: %s", strerror(-r));
	if (r == 0 && (r = -pthread_create(&th, NULL, client, NULL)) == 0) {
		size_t last;

		for (unsigned i = 0; i < n && r == 0; i++) {
			size_t before = atomic_load(&reqs.n);

			/* A few answered requests between restarts: the client is in its loop. */
			while (atomic_load(&reqs.n) < before + 3 && !reqs.err)
				poll(NULL, 0, 1);
			sig_t[i] = bench_now_ns();
			kill(b.pid, SIGUSR2);
			r = broker_wait_ready(&b);
			ready_t[i] = bench_now_ns();
			if (r < 0)
				bench_fail(FIGURE,
					   "re-exec %u of %u: the broker exited instead (a broker "
					   "without SIGUSR2 re-exec?)",
					   i + 1, n);
		}
		/* The request in progress at the last ready line completes. */
		last = atomic_load(&reqs.n);
		while (r == 0 && atomic_load(&reqs.n) < last + 1 && !reqs.err)
			poll(NULL, 0, 1);
		atomic_store(&reqs.stop, true);
		pthread_join(th, NULL);
		if (r == 0 && reqs.err) {
			r = reqs.err;
			bench_fail(FIGURE, "a list request failed: %s", strerror(-r));
		}
	}
	broker_stop(&b);
	if (r == 0) {
		size_t nr = atomic_load(&reqs.n);

		waits = calloc(nr ? nr : 1, sizeof(*waits));
		for (size_t k = 0; waits && k < nr; k++)
			for (unsigned i = 0; i < n; i++)
				if (reqs.t0[k] < ready_t[i] && reqs.t1[k] > sig_t[i]) {
					waits[nw++] = (double)(reqs.t1[k] - reqs.t0[k]) / 1e6;
					break;
				}
		for (unsigned i = 0; i < n; i++)
			max_cold = fmax(max_cold, cold[i]);
		for (size_t k = 0; k < nw; k++)
			max_wait = fmax(max_wait, waits[k]);
		bench_stats_of(cold, n, &sc);
		bench_stats_of(waits, nw, &sw);
		sc.p99 = max_cold;
		sw.p99 = max_wait;
		sc.iterations = n;
		sw.iterations = nw;
		printf(
		    "  %u cold starts; %u re-execs with %zu requests in progress during them, %lu "
		    "sent again on a new connection\n",
		    n, n, nw, atomic_load(&reqs.cut));
		report_line(BASELINE, &sc, max_cold);
		report_line(FIGURE, &sw, max_wait);
		bench_report(FIGURE, &sw, BASELINE, &sc, "ms");
	}
	free(waits);
	free(cold);
	free(sig_t);
	free(ready_t);
	free(broker_path);
	free(worker_path);
	unlink(conf);
	unlink(sock);
	rmdir(runtime);
	rmdir(dir);
	return r == 0 ? 0 : 1;
}
