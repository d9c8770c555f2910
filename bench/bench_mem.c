/*
 * bench_mem: resident memory of an idle vfio-worker serving a device image, against a static
 * program that does nothing (bench_idle_static: the same glibc, also static), once the process
 * has settled:
 *
 *   Rss    resident now, from /proc/<pid>/smaps_rollup (a walk of the page tables: exact);
 *   VmHWM  the peak resident size since the process started, from /proc/<pid>/status.
 *
 * Not VmRSS: since Linux 6.2 it is read from per-CPU counters without the changes each CPU
 * still holds (proc_pid_status(5) calls it inaccurate), up to 32 pages per counter and CPU:
 * as much as the differences measured here.
 *
 * The worker is measured twice: listening with no VMM, and idle after a VMM connected and
 * made one config read and one BAR read (buffers of the connection are then allocated). The
 * image's memfd is not mapped by the worker, so its pages are not in these figures.
 *
 * Each figure is the median of SAMPLES processes started one after the other.
 *
 * Usage: bench_mem [WORKER [IMAGE [IDLE_STATIC]]].
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "proc.h"

#define SAMPLES	  5
#define SETTLE_US 100000 /* let a process finish whatever it does after it answered */

enum { RSS, HWM, NFIELDS };
static const char *const field[NFIELDS] = {"Rss", "VmHWM"};
static const char *const file[NFIELDS] = {"smaps_rollup", "status"};

static int read_fields(pid_t pid, double out[NFIELDS])
{
	long kib;
	int r;

	for (int f = 0; f < NFIELDS; f++) {
		r = bproc_proc_kib(pid, file[f], field[f], &kib);
		if (r < 0)
			return r;
		out[f] = (double)kib;
	}
	return 0;
}

/* Starts the idle static program, waits until it is up, reads its figures, ends it. */
static int idle_sample(const char *exe, double out[NFIELDS])
{
	int p[2], status, r;
	pid_t pid;
	char c;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(p[0]);
		close(p[1]);
		return r;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(p[1], 1) < 0)
			_exit(127);
		execl(exe, "bench_idle_static", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	r = read(p[0], &c, 1) == 1 ? 0 : -ECHILD;
	close(p[0]);
	if (r == 0) {
		usleep(SETTLE_US);
		r = read_fields(pid, out);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return r;
}

static int worker_sample(const char *worker, const char *image, bool connected, double out[NFIELDS],
			 char *why, size_t whylen)
{
	struct bproc_worker w;
	uint8_t buf[4];
	int r;

	r = bproc_worker_start(worker, image, connected, &w);
	if (r < 0) {
		snprintf(why, whylen, "starting %s: %s%s%s", worker, strerror(-r),
			 w.why[0] ? ": " : "", w.why);
		return r;
	}
	if (connected) {
		r = vfb_dev_cfg_read(w.dev, 0, buf, sizeof(buf));
		if (r == 0)
			r = vfb_dev_region_read(w.dev, 0, 0, buf, sizeof(buf));
	}
	if (r == 0) {
		usleep(SETTLE_US);
		r = read_fields(w.pid, out);
	}
	if (r < 0)
		snprintf(why, whylen, "%s", strerror(-r));
	bproc_worker_stop(&w);
	return r;
}

int main(int argc, char **argv)
{
	const char *worker = argc > 1 ? argv[1] : VB_WORKER_PATH;
	const char *image = argc > 2 ? argv[2] : VB_FIXTURES "/edu.img";
	const char *idle = argc > 3 ? argv[3] : VB_IDLE_STATIC_PATH;
	static const char *const kind[2] = {"worker_listening", "worker_connected"};
	double base[NFIELDS][SAMPLES], fig[2][NFIELDS][SAMPLES], one[NFIELDS] = {0};
	struct bench_stats bs, fs;
	char why[300] = "", name[64], bname[64];
	int r = 0;

	bench_header("memory: an idle vfio-worker against an idle static program");
	for (int i = 0; i < SAMPLES && r == 0; i++) {
		r = idle_sample(idle, one);
		if (r < 0) {
			snprintf(why, sizeof(why), "running %s: %s", idle, strerror(-r));
			break;
		}
		for (int f = 0; f < NFIELDS; f++)
			base[f][i] = one[f];
		for (int k = 0; k < 2 && r == 0; k++) {
			r = worker_sample(worker, image, k == 1, one, why, sizeof(why));
			for (int f = 0; f < NFIELDS && r == 0; f++)
				fig[k][f][i] = one[f];
		}
	}
	for (int k = 0; k < 2; k++) {
		for (int f = 0; f < NFIELDS; f++) {
			snprintf(name, sizeof(name), "%s_%s", kind[k], field[f]);
			if (r < 0) {
				bench_fail(name, "%s", why);
				continue;
			}
			snprintf(bname, sizeof(bname), "idle_static_%s", field[f]);
			bench_stats_of(fig[k][f], SAMPLES, &fs);
			bench_stats_of(base[f], SAMPLES, &bs);
			fs.iterations = bs.iterations = SAMPLES;
			bench_report(name, &fs, bname, &bs, "KiB");
		}
	}
	return r < 0;
}
