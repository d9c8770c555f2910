/*
 * proc: starting, reaching and measuring the processes of the benchmarks (see proc.h). Trusts
 * the worker binary it is given to be the project's; reads /proc of its own children only.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"

static void child_exec(const char *worker, const char *image, const struct bproc_worker *w)
{
	int log = open(w->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	/* Never outlive the benchmark, whatever happens to it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (log < 0 || null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(log, 2) < 0)
		_exit(127);
	execl(worker, "vfio-worker", "--device-image", image, "--listen", w->sock, (char *)NULL);
	_exit(127);
}

static bool exited(struct bproc_worker *w)
{
	int status;

	if (waitpid(w->pid, &status, WNOHANG) == w->pid) {
		w->pid = -1;
		return true;
	}
	return false;
}

static void last_log(const struct bproc_worker *w, char *buf, size_t len)
{
	char line[512];
	FILE *f = fopen(w->log, "re");

	if (len)
		buf[0] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		size_t n = strcspn(line, "\n");

		if (len == 0)
			continue;
		/* Keeps the head of a long line; the reason comes first in the worker's lines. */
		if (n >= len)
			n = len - 1;
		memcpy(buf, line, n);
		buf[n] = '\0';
	}
	fclose(f);
}

int bproc_worker_start(const char *worker, const char *image, bool connect, struct bproc_worker *w)
{
	struct stat st;
	int r = -ETIMEDOUT;

	memset(w, 0, sizeof(*w));
	w->pid = -1;
	snprintf(w->dir, sizeof(w->dir), "/tmp/vb-bench-XXXXXX");
	if (!mkdtemp(w->dir))
		return -errno;
	snprintf(w->sock, sizeof(w->sock), "%s/dev.sock", w->dir);
	snprintf(w->log, sizeof(w->log), "%s/worker.log", w->dir);
	if (access(worker, X_OK) < 0 || access(image, R_OK) < 0) {
		r = -errno;
		goto fail;
	}
	w->pid = fork();
	if (w->pid < 0) {
		r = -errno;
		goto fail;
	}
	if (w->pid == 0)
		child_exec(worker, image, w);
	for (int i = 0; i < 500; i++) {
		if (exited(w)) {
			r = -ECHILD;
			break;
		}
		if (connect)
			r = vfb_dev_connect(w->sock, "vb-bench", 0, &w->dev);
		else
			r = stat(w->sock, &st) == 0 && S_ISSOCK(st.st_mode) ? 0 : -ENOENT;
		if (r == 0)
			return 0;
		usleep(10000);
	}
fail:
	if (w->pid > 0) {
		kill(w->pid, SIGTERM);
		waitpid(w->pid, NULL, 0);
		w->pid = -1;
	}
	last_log(w, w->why, sizeof(w->why));
	bproc_worker_stop(w);
	return r;
}

void bproc_worker_stop(struct bproc_worker *w)
{
	int status;

	vfb_dev_close(w->dev);
	w->dev = NULL;
	if (w->pid > 0) {
		kill(w->pid, SIGTERM);
		waitpid(w->pid, &status, 0);
		w->pid = -1;
	}
	if (w->dir[0]) {
		unlink(w->sock);
		unlink(w->log);
		rmdir(w->dir);
		w->dir[0] = '\0';
	}
}

int bproc_proc_kib(pid_t pid, const char *file, const char *field, long *ret)
{
	char path[64], line[256];
	size_t flen = strlen(field);
	int r = -ENOENT;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
			*ret = strtol(line + flen + 1, NULL, 10);
			r = 0;
			break;
		}
	}
	fclose(f);
	return r;
}
