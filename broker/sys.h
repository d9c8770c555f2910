/*
 * sys: the kernel boundary of the broker's VFIO core. Its functions explain failures through the
 * error record of base/err.h.
 *
 * Every VFIO open() and ioctl() of vfio.c, dma.c and irq.c goes through a `struct brk_sys` so that
 * host tests can run the whole core against a fake kernel that records calls and injects errors;
 * `brk_sys_real` is the real one. Paths under /dev and /sys are prefixed with `root` so tests can
 * point them at a directory tree they built.
 */
#ifndef VB_BROKER_SYS_H
#define VB_BROKER_SYS_H

#include <stdarg.h>
#include <stddef.h>

#include "err.h"

struct brk_sys {
	/* Returns a new O_CLOEXEC fd or a negative errno. `path` already carries `root`. */
	int (*open)(void *ctx, const char *path, int flags);
	/* Returns the ioctl's non-negative result or a negative errno. */
	int (*ioctl)(void *ctx, int fd, unsigned long req, void *arg);
	/* pread(2) / pwrite(2) of a device fd's region (config space): bytes moved or a negative
	 * errno. */
	long (*pread)(void *ctx, int fd, void *buf, size_t len, long long off);
	long (*pwrite)(void *ctx, int fd, const void *buf, size_t len, long long off);
	/* Whether `fd` is what `path` names: for a path under /dev (carrying `root`) the same
	 * character device (st_rdev), for "anon_inode:[vfio-device]" a VFIO device fd. 1 yes, 0 no,
	 * or a negative errno. How an adopting broker tells a stored fd is what the record says. */
	int (*fd_is)(void *ctx, int fd, const char *path);
	/* The pid a pidfd refers to (fdinfo "Pid:"); -ESRCH once that process has exited, -EBADF
	 * when `fd` is no pidfd. */
	int (*pidfd_pid)(void *ctx, int fd);
	void *ctx;
	/* Prepended to every /dev and /sys path; "" on a real system. Never NULL. */
	const char *root;
};

/* open(2) and ioctl(2) on the running kernel, root "". */
extern const struct brk_sys brk_sys_real;

/* snprintf() of `root` + `fmt` into buf; -ENAMETOOLONG when it does not fit. */
int brk_sys_path(const struct brk_sys *sys, char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
