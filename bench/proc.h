/*
 * proc: the processes the benchmarks start and measure: a standalone vfio-worker serving a
 * device image (with a VMM handle connected to it), and reading a process's memory figures from
 * /proc/<pid>/smaps_rollup and /proc/<pid>/status.
 */
#ifndef VB_BENCH_PROC_H
#define VB_BENCH_PROC_H

#include <stdbool.h>
#include <sys/types.h>

#include <vfiobroker/client.h>

struct bproc_worker {
	char dir[40];  /* a private temporary directory for the socket and the log */
	char sock[80]; /* the worker's VMM socket */
	char log[80];  /* its stderr */
	pid_t pid;
	struct vfb_dev *dev; /* connected once started, unless asked not to */
	char why[200];	     /* after a failed start: the last line the worker logged, or "" */
};

/*
 * Starts `worker --device-image image --listen <dir>/dev.sock`, its stderr to <dir>/worker.log,
 * dying with this process. With `connect`, waits (up to 5 s) until a VMM handle connects;
 * without, until the socket exists. Errors: negative errno; on failure nothing is left running.
 */
int bproc_worker_start(const char *worker, const char *image, bool connect, struct bproc_worker *w);
/* Closes the handle, ends the worker with SIGTERM, reaps it and removes the directory. */
void bproc_worker_stop(struct bproc_worker *w);

/* A field in kB of /proc/<pid>/<file>: "status" ("VmHWM", ...) or "smaps_rollup" ("Rss",
 * "Pss", ...). -ENOENT when absent. */
int bproc_proc_kib(pid_t pid, const char *file, const char *field, long *ret);

#endif
